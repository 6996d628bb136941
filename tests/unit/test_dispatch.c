/*
 * Unit tests for the dispatcher's scheduling (src/dispatch/): a real
 * store, the real worker pool and http_client, and a small HTTP sink on a
 * loopback port that records, per path, how many requests it holds at
 * once. Checked: max_in_flight_per_trigger per trigger while other
 * triggers go on in parallel, every delivery sent exactly once, and a
 * retryable answer waits its backoff before the next attempt.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "config.h"
#include "dispatch.h"
#include "http_client.h"
#include "ingest.h"
#include "store.h"
#include "util.h"

#define JOB "0b9d5c55-6c2e-4d0a-9b6f-3f8e2a1c7d10"
#define NPATHS 3 /* /a, /b, /c */
#define HOLD_MS 40 /* the sink answers after this, so requests overlap */

static char tmpdir[64];

/* ---- the sink ---- */

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static int now_in[NPATHS], max_in[NPATHS], total[NPATHS], max_all, now_all;
static int fail_first_c = 1;	      /* /c answers 503 once */
static int64_t c_times[4];	      /* when /c requests arrived (mono ms) */

static int path_index(const char *req)
{
	const char *p = strchr(req, ' ');
	return p && p[1] == '/' && p[2] >= 'a' && p[2] < 'a' + NPATHS
		   ? p[2] - 'a'
		   : -1;
}

/* Reads one request (headers and Content-Length body) into buf; its
 * length, or -1 at end of connection. */
static int read_request(int fd, char *buf, size_t cap)
{
	size_t len = 0;
	char *end = NULL;

	while (!(end = strstr(buf, "\r\n\r\n"))) {
		ssize_t n = read(fd, buf + len, cap - 1 - len);
		if (n <= 0)
			return -1;
		len += (size_t)n;
		buf[len] = '\0';
	}
	const char *cl = strcasestr(buf, "Content-Length:");
	size_t want = (size_t)(end + 4 - buf) +
		      (cl ? strtoul(cl + 15, NULL, 10) : 0);
	while (len < want && len < cap - 1) {
		ssize_t n = read(fd, buf + len, cap - 1 - len);
		if (n <= 0)
			return -1;
		len += (size_t)n;
	}
	buf[len] = '\0';
	return (int)len;
}

static void *conn_main(void *arg)
{
	int fd = (int)(intptr_t)arg;
	char buf[16384];

	memset(buf, 0, sizeof buf);
	while (read_request(fd, buf, sizeof buf) > 0) {
		int i = path_index(buf), fail = 0;
		struct timespec hold = {0, HOLD_MS * 1000000L};
		pthread_mutex_lock(&mu);
		if (i >= 0) {
			if (i == 2 && total[2] < 4)
				c_times[total[2]] = util_mono_ms();
			fail = i == 2 && fail_first_c && total[2] == 0;
			total[i]++;
			if (++now_in[i] > max_in[i])
				max_in[i] = now_in[i];
		}
		if (++now_all > max_all)
			max_all = now_all;
		pthread_mutex_unlock(&mu);
		nanosleep(&hold, NULL);
		pthread_mutex_lock(&mu);
		if (i >= 0)
			now_in[i]--;
		now_all--;
		pthread_mutex_unlock(&mu);
		const char *answer =
		    fail ? "HTTP/1.1 503 Service Unavailable\r\n"
			   "Content-Length: 0\r\n\r\n"
			 : "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
		if (write(fd, answer, strlen(answer)) < 0)
			break;
		memset(buf, 0, sizeof buf);
	}
	close(fd);
	return NULL;
}

static void *sink_main(void *arg)
{
	int lfd = (int)(intptr_t)arg;

	for (;;) {
		int fd = accept(lfd, NULL, NULL);
		pthread_t t;
		if (fd < 0)
			return NULL;
		if (pthread_create(&t, NULL, conn_main, (void *)(intptr_t)fd) == 0)
			pthread_detach(t);
		else
			close(fd);
	}
}

/* Starts the sink; its port. */
static int sink_start(void)
{
	struct sockaddr_in a = {.sin_family = AF_INET};
	socklen_t alen = sizeof a;
	int lfd = socket(AF_INET, SOCK_STREAM, 0);
	pthread_t t;

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&a, sizeof a) < 0 ||
	    listen(lfd, 64) < 0 ||
	    getsockname(lfd, (struct sockaddr *)&a, &alen) < 0 ||
	    pthread_create(&t, NULL, sink_main, (void *)(intptr_t)lfd) != 0)
		return -1;
	pthread_detach(t);
	return ntohs(a.sin_port);
}

/* ---- the daemon's parts ---- */

static struct config *load(int port, int max_in_flight)
{
	char path[128];
	struct config_diag diag = {0};
	FILE *f;

	snprintf(path, sizeof path, "%s/triggerd.yaml", tmpdir);
	if (!(f = fopen(path, "w")))
		return NULL;
	fprintf(f,
		"dispatch:\n"
		"  workers: 4\n"
		"  max_in_flight_per_trigger: %d\n"
		"  retry: {initial_backoff: 300ms, max_backoff: 300ms}\n"
		"triggers:\n",
		max_in_flight);
	for (char c = 'a'; c < 'a' + NPATHS; c++)
		fprintf(f,
			"  - name: %c\n"
			"    method: POST\n"
			"    url: http://127.0.0.1:%d/%c\n"
			"    body: {n: \"${{erathos.n}}\"}\n"
			"    rules: [{variable_name: STATUS, operation: EQUAL,"
			" value: %s}]\n"
			"    jobs: [\"" JOB "\"]\n",
			c, port, c, c == 'c' ? "RETRY" : "FINISHED");
	fclose(f);
	struct config *cfg = config_load(path, &diag);
	for (size_t i = 0; i < diag.nlines && !cfg; i++)
		fprintf(stderr, "%s\n", diag.lines[i]);
	config_diag_clear(&diag);
	return cfg;
}

static void wake(void *d)
{
	dispatch_notify(d);
}

static void post(const struct ingest *in, const char *status, int n)
{
	char body[256];
	struct ingest_result res;

	snprintf(body, sizeof body,
		 "{\"job_id\":\"" JOB "\",\"status\":\"%s\",\"n\":%d}", status,
		 n);
	ingest_event(in, body, strlen(body), &res);
	CHECK_INT(res.status, 202);
	free(res.json);
}

/* Waits (10 s at most) until nothing is pending; 1 if so. */
static int drained(struct store *st)
{
	struct timespec poll = {0, 10 * 1000000L};

	for (int i = 0; i < 1000; i++) {
		if (store_count_pending(st) == 0)
			return 1;
		nanosleep(&poll, NULL);
	}
	return 0;
}

static void reset_sink(void)
{
	pthread_mutex_lock(&mu);
	memset(max_in, 0, sizeof max_in);
	memset(total, 0, sizeof total);
	max_all = 0;
	pthread_mutex_unlock(&mu);
}

/* A config, a store named name, a dispatcher and the ingest that feeds
 * it, with the sink's counters reset. NULL store on failure. */
static struct store *start(int port, int max, const char *name,
			   struct config_slot *slot, struct dispatch **d,
			   struct ingest *in)
{
	char path[128], err[256];
	struct config *cfg = load(port, max);
	struct store *st;

	CHECK(cfg != NULL);
	if (!cfg)
		return NULL;
	snprintf(path, sizeof path, "%s/%s.db", tmpdir, name);
	st = store_open(path, err, sizeof err);
	CHECK(st != NULL);
	if (!st) {
		config_release(cfg);
		return NULL;
	}
	config_slot_init(slot, cfg);
	reset_sink();
	*d = dispatch_start(st, slot, 4);
	*in = (struct ingest){.slot = slot, .store = st, .wake = wake,
			      .wake_ctx = *d};
	return st;
}

/* n events for triggers a and b under a per-trigger limit of max. */
static void run_round(int port, int max, int n, const char *name)
{
	struct config_slot slot;
	struct dispatch *d;
	struct ingest in;
	struct store *st = start(port, max, name, &slot, &d, &in);

	if (!st)
		return;
	for (int i = 0; i < n; i++)
		post(&in, "FINISHED", i);
	CHECK(drained(st));
	dispatch_stop(d, util_mono_ms() + 5000);
	pthread_mutex_lock(&mu);
	/* every delivery once; each trigger at its limit, never past it */
	CHECK_INT(total[0], n);
	CHECK_INT(total[1], n);
	CHECK_INT(max_in[0], max);
	CHECK_INT(max_in[1], max);
	/* one trigger's limit does not hold the other back */
	CHECK(max_all > max);
	pthread_mutex_unlock(&mu);
	store_close(st);
	config_slot_destroy(&slot);
}

/* A 503 is retried after the backoff (300 ms ± 20 %), then delivered. */
static void test_retry_backoff(int port)
{
	struct config_slot slot;
	struct dispatch *d;
	struct ingest in;
	struct store *st = start(port, 1, "retry", &slot, &d, &in);

	if (!st)
		return;
	post(&in, "RETRY", 0);
	CHECK(drained(st));
	dispatch_stop(d, util_mono_ms() + 5000);
	pthread_mutex_lock(&mu);
	CHECK_INT(total[2], 2);
	int64_t gap = c_times[1] - c_times[0];
	CHECK(gap >= 240 - HOLD_MS);
	CHECK(gap < 2000);
	pthread_mutex_unlock(&mu);
	struct store_delivery_list l;
	CHECK_INT(store_list(st, "delivered", "c", 10, &l), 0);
	CHECK_INT(l.n, 1);
	if (l.n == 1) {
		CHECK_INT(l.v[0].attempts, 2);
		CHECK_INT(l.v[0].last_status, 200);
	}
	store_list_clear(&l);
	store_close(st);
	config_slot_destroy(&slot);
}

int main(void)
{
	if (check_tmpdir(tmpdir, sizeof tmpdir, "test_dispatch") < 0 ||
	    http_client_global_init() < 0)
		return 1;
	int port = sink_start();
	CHECK(port > 0);
	if (port <= 0)
		return check_report();
	run_round(port, 1, 8, "limit1");
	run_round(port, 2, 8, "limit2");
	test_retry_backoff(port);
	http_client_global_cleanup();
	check_rmtree(tmpdir);
	return check_report();
}
