/*
 * server_guard — a deadline for every request on every connection, and a
 * count of open connections (see server_guard.h).
 *
 * DESIGN: libmicrohttpd's own timeout counts only silence, so a client
 * that sends one byte every few seconds would hold a connection (and a
 * slot under the connection limit) for ever. The server registers every
 * connection here when MHD opens it (MHD_OPTION_NOTIFY_CONNECTION) and
 * restarts its clock when a request completes; one reaper thread wakes
 * twice a second and shuts down (shutdown(2), not close: the descriptor
 * stays MHD's) every connection whose current request has run past the
 * deadline. MHD then sees the end of the stream and closes it as for any
 * client that went away. MHD calls the "closed" notification before it
 * closes the socket, and both that and the reaper hold the guard's mutex,
 * so the reaper never touches a descriptor that may have been reused.
 * Threads: MHD's pool threads call open/touch/close; the reaper is ours.
 */
#include "server_guard.h"

#include <pthread.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>

#include "util.h"

#define REAP_EVERY_MS 500

struct server_conn {
	struct server_conn *prev, *next;
	int fd;
	int64_t start_ms; /* atomic: when the current request began */
	int shut;         /* under the guard's lock */
};

struct server_guard {
	pthread_mutex_t lock; /* guards the list and stop */
	pthread_cond_t wake;
	struct server_conn *head;
	int64_t deadline_ms;
	long open;   /* atomic: connections registered */
	long reaped; /* atomic: connections shut by the deadline */
	int stop;
	pthread_t reaper;
};

static void *reaper_main(void *arg)
{
	struct server_guard *g = arg;

	pthread_mutex_lock(&g->lock);
	while (!g->stop) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += REAP_EVERY_MS * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&g->wake, &g->lock, &ts);
		int64_t now = util_mono_ms();
		for (struct server_conn *c = g->head; c && !g->stop; c = c->next) {
			int64_t t = __atomic_load_n(&c->start_ms, __ATOMIC_RELAXED);
			if (c->shut || now - t < g->deadline_ms)
				continue;
			shutdown(c->fd, SHUT_RDWR);
			c->shut = 1;
			__atomic_add_fetch(&g->reaped, 1, __ATOMIC_RELAXED);
		}
	}
	pthread_mutex_unlock(&g->lock);
	return NULL;
}

struct server_guard *server_guard_new(int64_t deadline_ms)
{
	struct server_guard *g = calloc(1, sizeof *g);

	if (!g)
		return NULL;
	g->deadline_ms = deadline_ms;
	pthread_mutex_init(&g->lock, NULL);
	pthread_cond_init(&g->wake, NULL);
	if (pthread_create(&g->reaper, NULL, reaper_main, g) != 0) {
		pthread_cond_destroy(&g->wake);
		pthread_mutex_destroy(&g->lock);
		free(g);
		return NULL;
	}
	return g;
}

void server_guard_free(struct server_guard *g)
{
	if (!g)
		return;
	pthread_mutex_lock(&g->lock);
	g->stop = 1;
	pthread_cond_signal(&g->wake);
	pthread_mutex_unlock(&g->lock);
	pthread_join(g->reaper, NULL);
	while (g->head) {
		struct server_conn *c = g->head;
		g->head = c->next;
		free(c);
	}
	pthread_cond_destroy(&g->wake);
	pthread_mutex_destroy(&g->lock);
	free(g);
}

struct server_conn *server_guard_open(struct server_guard *g, int fd)
{
	struct server_conn *c = calloc(1, sizeof *c);

	if (!c)
		return NULL; /* not guarded; MHD's idle timeout still holds */
	c->fd = fd;
	c->start_ms = util_mono_ms();
	pthread_mutex_lock(&g->lock);
	c->next = g->head;
	if (g->head)
		g->head->prev = c;
	g->head = c;
	pthread_mutex_unlock(&g->lock);
	__atomic_add_fetch(&g->open, 1, __ATOMIC_RELAXED);
	return c;
}

void server_guard_touch(struct server_conn *c)
{
	if (c)
		__atomic_store_n(&c->start_ms, util_mono_ms(), __ATOMIC_RELAXED);
}

void server_guard_close(struct server_guard *g, struct server_conn *c)
{
	if (!c)
		return;
	pthread_mutex_lock(&g->lock);
	if (c->prev)
		c->prev->next = c->next;
	else
		g->head = c->next;
	if (c->next)
		c->next->prev = c->prev;
	pthread_mutex_unlock(&g->lock);
	__atomic_sub_fetch(&g->open, 1, __ATOMIC_RELAXED);
	free(c);
}

long server_guard_count(struct server_guard *g)
{
	return __atomic_load_n(&g->open, __ATOMIC_RELAXED);
}

long server_guard_reaped(struct server_guard *g)
{
	return __atomic_load_n(&g->reaped, __ATOMIC_RELAXED);
}
