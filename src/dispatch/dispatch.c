/*
 * dispatch — the worker pool that sends due deliveries (see dispatch.h):
 * its life cycle and the workers' loop.
 *
 * DESIGN (after redis's bio.c): dispatch.workers threads share one mutex
 * and one condition variable (on the monotonic clock). Under the mutex a
 * worker takes the next piece of work from the flight list
 * (dispatch_flight.c); it drops the lock and does the slow part alone
 * (dispatch_deliver.c); idle workers sleep until the next due time (at
 * most 1 s, so a clock step or a missed wake-up costs little) or until
 * dispatch_notify(). New work or a freed slot wakes one worker, which
 * wakes the next if more is ready.
 *
 * Threads: dispatch_start/stop from main; dispatch_notify from any thread;
 * the workers; dispatch_flight_done from the store's writer thread.
 * Workers run with every signal blocked: signals belong to the main
 * thread.
 *
 * Owned here: the workers, each with its http_client and cancel flag. A
 * delivery is in flight only in memory; on disk it stays pending, so after
 * a crash it is simply due again (at-least-once).
 */
#include "dispatch.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "dispatch_int.h"
#include "http_client.h"
#include "log.h"

#define IDLE_MAX_MS 1000    /* longest sleep without looking at the store */
#define CANCEL_LEAD_MS 1000 /* libcurl sees a cancel within a second */
#define EXIT_GRACE_MS 1000  /* past the deadline, before abandoning d */

/* With d->mu held: new work or a free slot wakes ONE idle worker (a
 * broadcast per accepted event made every worker query the store); that
 * worker wakes the next if more is ready. Stopping wakes everyone, the
 * thread waiting in dispatch_stop included. */
void dispatch_wake_one_locked(struct dispatch *d)
{
	if (d->stopping)
		pthread_cond_broadcast(&d->cond);
	else
		pthread_cond_signal(&d->cond);
}static void timed_wait(struct dispatch *d, int64_t ms)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (ms % 1000) * 1000000;
	if (ts.tv_nsec >= 1000000000) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000;
	}
	pthread_cond_timedwait(&d->cond, &d->mu, &ts);
}

/* With d->mu held: sleeps until wall-clock wake_at_ms (IDLE_MAX_MS at
 * most), a notify, or an outcome being committed. */
static void wait_for_work(struct dispatch *d, int64_t wake_at_ms)
{
	int64_t now = util_now_ms();
	int64_t ms = wake_at_ms > now ? wake_at_ms - now : 1;

	timed_wait(d, ms > IDLE_MAX_MS ? IDLE_MAX_MS : ms);
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct dispatch *d = w->d;
	struct store_due due;
	struct flight *f = NULL;

	pthread_mutex_lock(&d->mu);
	while (!d->stopping) {
		int64_t wake_at = INT64_MAX;
		int rc = dispatch_flight_take_locked(d, &due, &f, &wake_at);
		if (rc == 1) {
			if (d->ready)
				dispatch_wake_one_locked(d); /* more is ready: a second pair of hands */
			pthread_mutex_unlock(&d->mu);
			if (f->poll)
				dispatch_poll(w, f, &due);
			else
				dispatch_deliver(w, f, &due);
			store_due_clear(&due);
			pthread_mutex_lock(&d->mu);
			continue;
		}
		wait_for_work(d, rc < 0 ? INT64_MAX : wake_at);
	}
	d->nexited++;
	pthread_cond_broadcast(&d->cond);
	pthread_mutex_unlock(&d->mu);
	return NULL;
}

/* ---- life cycle ---- */

static int dispatch_init(struct dispatch *d, struct store *st,
			 struct config_slot *slot, int nworkers)
{
	pthread_condattr_t ca;
	int rc = -1;

	d->st = st;
	d->slot = slot;
	d->deliveries_dirty = d->polls_dirty = 1;
	d->nworkers = nworkers;
	d->workers = calloc((size_t)nworkers, sizeof *d->workers);
	if (!d->workers || pthread_condattr_init(&ca) != 0)
		return -1;
	if (pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) == 0 &&
	    pthread_cond_init(&d->cond, &ca) == 0) {
		if (pthread_mutex_init(&d->mu, NULL) == 0)
			rc = 0;
		else
			pthread_cond_destroy(&d->cond);
	}
	pthread_condattr_destroy(&ca);
	return rc;
}

struct dispatch *dispatch_start(struct store *st, struct config_slot *slot,
				int nworkers)
{
	struct dispatch *d = calloc(1, sizeof *d);
	sigset_t all, old;
	int ok = 1;

	if (nworkers < 1)
		nworkers = 1;
	if (!d || dispatch_init(d, st, slot, nworkers) < 0) {
		if (d)
			free(d->workers);
		free(d);
		return NULL;
	}
	/* Threads inherit the mask: block everything so only main gets signals.
	 */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	for (int i = 0; i < nworkers && ok; i++) {
		struct worker *w = &d->workers[i];
		char name[16];
		w->d = d;
		w->http = http_client_new("triggerd/" TRIGGERD_VERSION);
		ok = w->http &&
		     pthread_create(&w->tid, NULL, worker_main, w) == 0;
		w->started = ok;
		snprintf(name, sizeof name, "dispatch-%d", i % 1000);
		if (ok)
			pthread_setname_np(w->tid, name);
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (!ok) {
		log_kv(LOG_ERROR, "cannot start the dispatch workers", LOG_END);
		dispatch_stop(d, util_mono_ms());
		return NULL;
	}
	return d;
}

void dispatch_notify(struct dispatch *d)
{
	if (!d)
		return;
	pthread_mutex_lock(&d->mu);
	d->deliveries_dirty = 1;
	dispatch_wake_one_locked(d);
	pthread_mutex_unlock(&d->mu);
}

/* With d->mu held: 1 once every worker has exited and every queued
 * outcome is committed; else waits until deadline (mono) and says 0. */
static int wait_idle(struct dispatch *d, int nstarted, int64_t deadline)
{
	for (;;) {
		if (d->nexited == nstarted && d->nrecording == 0)
			return 1;
		int64_t ms = deadline - util_mono_ms();
		if (ms <= 0)
			return 0;
		timed_wait(d, ms);
	}
}

/*
 * Workers finish the delivery they hold and take no other. Transfers still
 * running CANCEL_LEAD_MS before the deadline are cancelled, so that libcurl
 * (which looks at the flag about once a second) has ended them by the
 * deadline; they are not recorded. If a worker or a store commit is still
 * not done EXIT_GRACE_MS after the deadline, d is left allocated (the
 * process is exiting) rather than freed under a thread that may touch it.
 */
void dispatch_stop(struct dispatch *d, int64_t deadline_mono_ms)
{
	int nstarted = 0, idle;

	if (!d)
		return;
	for (int i = 0; i < d->nworkers; i++)
		nstarted += d->workers[i].started;
	pthread_mutex_lock(&d->mu);
	d->stopping = 1;
	pthread_cond_broadcast(&d->cond);
	idle = wait_idle(d, nstarted, deadline_mono_ms - CANCEL_LEAD_MS);
	pthread_mutex_unlock(&d->mu);
	if (!idle)
		for (int i = 0; i < d->nworkers; i++)
			__atomic_store_n(&d->workers[i].cancel, 1,
					 __ATOMIC_RELEASE);
	pthread_mutex_lock(&d->mu);
	if (!idle)
		idle = wait_idle(d, nstarted, deadline_mono_ms + EXIT_GRACE_MS);
	pthread_mutex_unlock(&d->mu);
	if (!idle) {
		log_kv(LOG_WARN,
		       "dispatcher did not stop in time; abandoning it", LOG_END);
		return;
	}
	for (int i = 0; i < d->nworkers; i++) {
		if (d->workers[i].started)
			pthread_join(d->workers[i].tid, NULL);
		http_client_free(d->workers[i].http);
	}
	while (d->flights)
		dispatch_flight_remove_locked(d, d->flights);
	pthread_cond_destroy(&d->cond);
	pthread_mutex_destroy(&d->mu);
	free(d->workers);
	free(d);
}
