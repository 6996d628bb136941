/*
 * dispatch — the worker pool that sends due deliveries (see dispatch.h).
 *
 * DESIGN (after redis's bio.c): dispatch.workers threads share one mutex
 * and one condition variable (on the monotonic clock). The mutex guards
 * the flight list: one struct flight per delivery read from the store and
 * whose outcome is not yet committed — ready (read a batch at a time, in a
 * FIFO), sending (counts against max_in_flight_per_trigger), or recording
 * (outcome queued, id still skipped). Under the mutex a worker takes the
 * first ready delivery whose trigger has a free slot; when there is none it
 * reads the next batch of due deliveries, skipping every known id and
 * every full or still stocked trigger, so no delivery is ever sent twice
 * at once and one read transaction serves many deliveries.
 * Then it drops the lock and does the slow part alone: render the request
 * from the stored event and the live config (secrets in memory only, see
 * request.c), send it with its own http_client (keep-alive per worker),
 * classify the result (backoff.c) and queue the outcome to the store. The
 * store's writer thread calls flight_done() once the outcome is committed;
 * that removes the flight and wakes the workers. Idle workers sleep until
 * the next due time (at most 1 s, so a clock step or a missed wake-up costs
 * little) or until dispatch_notify().
 *
 * Threads: dispatch_start/stop from main; dispatch_notify from any thread;
 * the workers; flight_done from the store's writer thread. Workers run with
 * every signal blocked: signals belong to the main thread.
 *
 * Owned here: the in-flight list, each worker's http_client and cancel
 * flag. A delivery is in flight only in memory; on disk it stays pending,
 * so after a crash it is simply due again (at-least-once).
 */
#include "dispatch.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backoff.h"
#include "buf.h"
#include "config.h"
#include "dispatch_int.h"
#include "event.h"
#include "http_client.h"
#include "log.h"
#include "metrics.h"
#include "request.h"
#include "store.h"
#include "util.h"

#define IDLE_MAX_MS 1000    /* longest sleep without looking at the store */
#define HOLD_MS 30000	    /* an outcome the store refused: wait, resend */
#define CANCEL_LEAD_MS 1000 /* libcurl sees a cancel within a second */
#define EXIT_GRACE_MS 1000  /* past the deadline, before abandoning d */
#define READY_BATCH 32 /* due deliveries read from the store at once */
#define ERROR_MAX 512
#define CAUSE_MAX 384 /* a cause, inside an ERROR_MAX sentence */

struct dispatch;

/* A delivery read from the store, until its outcome is committed: first
 * ready (waiting in d->ready for a worker and a free slot of its trigger),
 * then sending, then recording. */
struct flight {
	struct flight *next;
	struct flight *ready_next; /* in d->ready while ready */
	struct dispatch *d;
	char id[UTIL_ID_LEN];
	char *trigger;
	struct store_due due; /* while ready: handed to the worker */
	int ready;
	int64_t hold_until; /* mono ms; 0 while in flight, else the store
			       refused the outcome: skip the id until then */
	int sending; /* its request is on the wire (counts against
			max_in_flight_per_trigger); 0 once the outcome is
			queued to the store, while the id is still skipped */
};

struct worker {
	struct dispatch *d;
	pthread_t tid;
	int started;
	int cancel; /* atomic: set by dispatch_stop to abort the transfer */
	struct http_client *http;
};

struct dispatch {
	struct store *st;
	struct config_slot *slot;
	pthread_mutex_t mu;
	pthread_cond_t cond;
	/* guarded by mu */
	int stopping;
	int nexited;
	int nrecording;	   /* outcomes queued to the store, not yet committed */
	int store_failing; /* log a failing store once, not every second */
	struct flight *flights;
	struct flight *ready, *ready_tail; /* FIFO, earliest due first */
	/* fixed after dispatch_start */
	struct worker *workers;
	int nworkers;
};

/* What one turn of a worker decided about a delivery. */
struct outcome {
	enum store_state state;
	int64_t at_ms; /* wall clock, when the attempt started */
	int sent;      /* a request went out (counts in the metrics) */
	struct http_response resp;
	char host[256];
	char error[ERROR_MAX]; /* "" when delivered */
	int64_t next_at_ms;    /* for a retry */
	int64_t delay_ms;
};

/* With d->mu held: new work or a free slot wakes ONE idle worker (a
 * broadcast per accepted event made every worker query the store); that
 * worker wakes the next if more is ready. Stopping wakes everyone, the
 * thread waiting in dispatch_stop included. */
static void wake_one(struct dispatch *d)
{
	if (d->stopping)
		pthread_cond_broadcast(&d->cond);
	else
		pthread_cond_signal(&d->cond);
}

/* ---- the in-flight list (all with d->mu held) ---- */

/* Adds a ready flight for due (taking over what due holds). */
static struct flight *flight_add(struct dispatch *d, struct store_due *due)
{
	struct flight *f = calloc(1, sizeof *f);

	if (!f || !(f->trigger = strdup(due->trigger))) {
		free(f);
		return NULL;
	}
	f->d = d;
	f->due = *due;
	memset(due, 0, sizeof *due);
	f->ready = 1;
	snprintf(f->id, sizeof f->id, "%s", f->due.id);
	f->next = d->flights;
	d->flights = f;
	if (d->ready_tail)
		d->ready_tail->ready_next = f;
	else
		d->ready = f;
	d->ready_tail = f;
	return f;
}

static void flight_free(struct flight *f)
{
	store_due_clear(&f->due);
	free(f->trigger);
	free(f);
}

/* Removes f, which is not (or no longer) in the ready FIFO. */
static void flight_remove(struct dispatch *d, struct flight *f)
{
	for (struct flight **p = &d->flights; *p; p = &(*p)->next) {
		if (*p == f) {
			*p = f->next;
			break;
		}
	}
	flight_free(f);
}

/* Drops the holds that have expired: those ids may be sent again. */
static void flights_prune(struct dispatch *d, int64_t now_mono)
{
	struct flight **p = &d->flights;

	while (*p) {
		struct flight *f = *p;
		if (f->hold_until && f->hold_until <= now_mono) {
			*p = f->next;
			flight_free(f);
		} else {
			p = &f->next;
		}
	}
}

static int in_flight_for(const struct dispatch *d, const char *trigger)
{
	int n = 0;

	for (const struct flight *f = d->flights; f; f = f->next)
		if (f->sending && strcmp(f->trigger, trigger) == 0)
			n++;
	return n;
}

/*
 * Called by the store's writer thread once an outcome is committed (rc 0)
 * or could not be (rc -1), or by the worker when it could not even be
 * queued. On failure the delivery is still pending on disk with its old
 * due time; holding its id for HOLD_MS keeps a broken disk from turning
 * into a stream of repeated requests to the remote API.
 */
static void flight_done(void *ctx, int rc)
{
	struct flight *f = ctx;
	struct dispatch *d = f->d;
	char id[UTIL_ID_LEN];

	pthread_mutex_lock(&d->mu);
	d->nrecording--;
	if (rc == 0) {
		flight_remove(d, f);
	} else {
		snprintf(id, sizeof id, "%s", f->id);
		f->hold_until = util_mono_ms() + HOLD_MS;
	}
	wake_one(d);
	pthread_mutex_unlock(&d->mu);
	if (rc != 0)
		log_kv(LOG_ERROR,
		       "could not store the outcome of an attempt; "
		       "the delivery will be sent again",
		       "delivery", id, LOG_END);
}

/* ---- taking a due delivery ---- */

/* With d->mu held: takes the first ready flight whose trigger has a free
 * slot, moving its delivery into *due. 1, or 0 if there is none. */
static int take_ready(struct dispatch *d, int max, struct store_due *due,
		      struct flight **fp)
{
	for (struct flight **p = &d->ready, *prev = NULL; *p;
	     prev = *p, p = &(*p)->ready_next) {
		struct flight *f = *p;
		if (in_flight_for(d, f->trigger) >= max)
			continue;
		*p = f->ready_next;
		if (d->ready_tail == f)
			d->ready_tail = prev;
		f->ready_next = NULL;
		f->ready = 0;
		f->sending = 1;
		*due = f->due;
		memset(&f->due, 0, sizeof f->due);
		*fp = f;
		return 1;
	}
	return 0;
}

/*
 * With d->mu held: reads up to READY_BATCH due deliveries into the ready
 * FIFO, skipping every id already known here and every trigger that is at
 * its limit or still has ready deliveries. Returns how many, or -1;
 * *wake_at_ms is the next due time when none is due.
 */
static int refill(struct dispatch *d, int max, int64_t *wake_at_ms)
{
	struct store_due batch[READY_BATCH];
	size_t n = 0, nids = 0, ntrig = 0;
	const char **ids, **trig;
	int got = -1;

	for (struct flight *f = d->flights; f; f = f->next)
		n++;
	ids = calloc(n + 1, sizeof *ids);
	trig = calloc(n + 1, sizeof *trig);
	if (!ids || !trig)
		goto out;
	for (struct flight *f = d->flights; f; f = f->next) {
		ids[nids++] = f->id;
		if (!f->ready && (!f->sending || in_flight_for(d, f->trigger) < max))
			continue;
		size_t i = 0;
		while (i < ntrig && strcmp(trig[i], f->trigger) != 0)
			i++;
		if (i == ntrig)
			trig[ntrig++] = f->trigger;
	}
	got = store_next_due(d->st, util_now_ms(), ids, nids, trig, ntrig,
			     batch, READY_BATCH, wake_at_ms);
	for (int i = 0; i < got; i++)
		if (!flight_add(d, &batch[i]))
			store_due_clear(&batch[i]);
out:
	free(ids);
	free(trig);
	return got;
}

/*
 * With d->mu held: the earliest due delivery that is not in flight and
 * whose trigger is under its in-flight limit, marked sending. Deliveries
 * are read from the store a batch at a time (one read transaction serves
 * READY_BATCH of them) and wait in the ready FIFO. 1 with *due and *fp
 * filled, 0 if none is due (*wake_at_ms: the next due time, wall clock),
 * -1 on error.
 */
static int take_due(struct dispatch *d, struct store_due *due,
		    struct flight **fp, int64_t *wake_at_ms)
{
	struct config *cfg = config_slot_acquire(d->slot);
	int max = cfg && cfg->max_in_flight_per_trigger > 0
		      ? cfg->max_in_flight_per_trigger
		      : 1;
	int rc;

	config_release(cfg);
	*wake_at_ms = INT64_MAX;
	flights_prune(d, util_mono_ms());
	if (take_ready(d, max, due, fp))
		return 1;
	rc = refill(d, max, wake_at_ms);
	if (rc > 0)
		rc = take_ready(d, max, due, fp);
	if ((rc < 0) != d->store_failing) {
		d->store_failing = rc < 0;
		log_kv(rc < 0 ? LOG_ERROR : LOG_INFO,
		       rc < 0 ? "cannot read due deliveries from the store"
			      : "reading due deliveries again",
		       LOG_END);
	}
	return rc;
}

/* With d->mu held: waits on d->cond for at most ms milliseconds. */
static void timed_wait(struct dispatch *d, int64_t ms)
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

/* ---- one delivery ---- */

static void policy_of(const struct config *cfg, struct backoff_policy *p)
{
	p->max_attempts = cfg->max_attempts;
	p->initial_ms = cfg->initial_backoff_ms;
	p->max_ms = cfg->max_backoff_ms;
	p->max_age_ms = cfg->max_age_ms;
	p->rate_limited_ms = cfg->rate_limited_backoff_ms;
}

/*
 * Decides what the attempt's result means: delivered, failed for good
 * (a permanent status, or a retryable one past max_attempts or max_age),
 * or pending again after a backoff.
 */
static void classify(const struct config *cfg, const struct store_due *due,
		     struct outcome *o)
{
	struct backoff_policy p;
	char what[CAUSE_MAX], age[32];
	int attempt = due->attempts + 1;
	int status = o->resp.status;

	policy_of(cfg, &p);
	if (status == 0)
		snprintf(what, sizeof what, "%s", o->resp.error);
	else
		dispatch_http_error(status, o->host, o->resp.body,
				    o->resp.body_len, what, sizeof what);
	switch (backoff_classify(status)) {
	case BACKOFF_DELIVERED: o->state = STORE_DELIVERED; return;
	case BACKOFF_PERMANENT:
		o->state = STORE_FAILED;
		snprintf(o->error, sizeof o->error, "%s", what);
		return;
	case BACKOFF_RETRY: break;
	}
	int64_t now = util_now_ms();
	o->delay_ms = backoff_delay_ms(&p, attempt, status,
				       o->resp.retry_after_ms, util_random32());
	if (!backoff_give_up(&p, attempt, due->accepted_at_ms, now,
			     o->delay_ms)) {
		o->state = STORE_PENDING;
		o->next_at_ms = now + o->delay_ms;
		snprintf(o->error, sizeof o->error, "%s", what);
		return;
	}
	o->state = STORE_FAILED;
	dispatch_fmt_duration(p.max_age_ms, age, sizeof age);
	if (p.max_attempts > 0 && attempt >= p.max_attempts)
		snprintf(o->error, sizeof o->error,
			 "gave up after %d attempts: %s", attempt, what);
	else
		snprintf(o->error, sizeof o->error,
			 "too old: max_age %s passes before the next try; "
			 "last attempt: %s",
			 age, what);
}

/*
 * Renders and sends one delivery, then classifies the result. Returns 0
 * with *o filled, or -1 if dispatch_stop aborted the transfer: that
 * attempt counts as not made and is not recorded.
 */
static int attempt(struct worker *w, const struct config *cfg,
		   const struct config_trigger *t, const struct store_due *due,
		   struct outcome *o)
{
	struct request req;
	char err[CAUSE_MAX];
	struct event *ev =
	    event_parse(due->body, due->body_len, err, sizeof err);

	if (!ev) {
		o->state = STORE_FAILED;
		snprintf(o->error, sizeof o->error,
			 "the stored event cannot be parsed: %s", err);
		return 0;
	}
	if (request_render(cfg, t, ev, due->id, 0, &req, err, sizeof err) < 0) {
		o->state = STORE_FAILED;
		snprintf(o->error, sizeof o->error, "%s", err);
		event_free(ev);
		return 0;
	}
	struct http_request hr = {
	    .method = req.method,
	    .url = req.url,
	    .headers = req.headers,
	    .nheaders = req.nheaders,
	    .body = req.body,
	    .body_len = req.body_len,
	    .timeout_ms = cfg->timeout_ms,
	    .connect_timeout_ms = cfg->connect_timeout_ms,
	    .cancel = &w->cancel,
	};
	http_url_host(req.url, o->host, sizeof o->host);
	http_client_send(w->http, &hr, &o->resp);
	request_clear(&req); /* wipes the rendered secrets */
	event_free(ev);
	if (o->resp.status == 0 &&
	    __atomic_load_n(&w->cancel, __ATOMIC_ACQUIRE))
		return -1;
	o->sent = 1;
	classify(cfg, due, o);
	return 0;
}

/* Replaces the kept response body by a copy with cfg's secrets masked. */
static void redact_body(const struct config *cfg, struct http_response *r)
{
	struct buf b;

	if (!r->body)
		return;
	buf_init(&b, r->body_len + 4096);
	if (request_redact(cfg, r->body, r->body_len, &b) == 0) {
		free(r->body);
		r->body_len = b.len;
		r->body = buf_steal(&b);
	}
	buf_free(&b);
}

static void redact_error(const struct config *cfg, struct outcome *o)
{
	struct buf b;

	buf_init(&b, sizeof o->error - 1);
	if (request_redact(cfg, o->error, strlen(o->error), &b) == 0)
		snprintf(o->error, sizeof o->error, "%s", buf_str(&b));
	buf_free(&b);
}

/* One logfmt line per outcome: ids, status, latency; never a URL. */
static void log_outcome(const struct store_due *due, const struct outcome *o)
{
	static const char *const msg[] = {
	    [STORE_PENDING] = "retrying",
	    [STORE_DELIVERED] = "delivered",
	    [STORE_FAILED] = "failed",
	    [STORE_CANCELLED] = "cancelled",
	};
	static const enum log_level level[] = {
	    [STORE_PENDING] = LOG_WARN,
	    [STORE_DELIVERED] = LOG_INFO,
	    [STORE_FAILED] = LOG_ERROR,
	    [STORE_CANCELLED] = LOG_WARN,
	};
	char att[16], status[16], ms[24], next[24];

	snprintf(att, sizeof att, "%d", due->attempts + 1);
	snprintf(status, sizeof status, "%d", o->resp.status);
	snprintf(ms, sizeof ms, "%lld", (long long)o->resp.ms);
	snprintf(next, sizeof next, "%lld", (long long)o->delay_ms);
	log_kv(level[o->state], msg[o->state], "delivery", due->id, "event",
	       due->event_id, "trigger", due->trigger, "attempt", att, "host",
	       o->sent ? o->host : NULL, "status",
	       o->resp.status ? status : NULL, "ms", o->sent ? ms : NULL,
	       "next_in_ms", o->state == STORE_PENDING ? next : NULL, "error",
	       o->error[0] ? o->error : NULL, LOG_END);
}

/* Queues the outcome; flight_done() finishes the flight once committed. */
static void record(struct dispatch *d, struct flight *f,
		   const struct store_due *due, const struct outcome *o)
{
	struct store_attempt a = {
	    .at_ms = o->at_ms,
	    .status = o->resp.status,
	    .error = o->error[0] ? o->error : NULL,
	    .ms = o->resp.ms,
	    .response = o->resp.body,
	    .response_len = o->resp.body_len < STORE_RESPONSE_MAX
				? o->resp.body_len
				: STORE_RESPONSE_MAX,
	};

	/* The request is done: the trigger's slot is free for the next one,
	 * while the id stays skipped until its outcome is committed. */
	pthread_mutex_lock(&d->mu);
	d->nrecording++;
	f->sending = 0;
	wake_one(d);
	pthread_mutex_unlock(&d->mu);
	if (store_record_attempt(d->st, due->id, &a, o->state, o->next_at_ms,
				 flight_done, f) < 0)
		flight_done(f, -1);
}

/* Metrics hook: one attempt counted when a request went out, one final
 * outcome when the delivery leaves the pending state. */
static void count(const struct store_due *due, const struct outcome *o)
{
	static const char *const outcome[] = {
	    [STORE_DELIVERED] = "delivered",
	    [STORE_FAILED] = "failed",
	    [STORE_CANCELLED] = "cancelled",
	};

	if (o->sent)
		metrics_attempt(due->trigger, o->resp.status,
				(double)o->resp.ms / 1000.0);
	if (o->state != STORE_PENDING)
		metrics_delivery(due->trigger, outcome[o->state]);
}

static void deliver(struct worker *w, struct flight *f,
		    const struct store_due *due)
{
	struct dispatch *d = w->d;
	struct config *cfg = config_slot_acquire(d->slot);
	const struct config_trigger *t =
	    cfg ? config_trigger_by_name(cfg, due->trigger) : NULL;
	struct outcome o = {.at_ms = util_now_ms()};
	char age[32];

	o.resp.retry_after_ms = -1;
	if (!t || !t->active) {
		o.state = STORE_CANCELLED;
		snprintf(o.error, sizeof o.error,
			 "trigger %s was removed or deactivated by a reload",
			 due->trigger);
	} else if (cfg->max_age_ms > 0 &&
		   o.at_ms - due->accepted_at_ms > cfg->max_age_ms) {
		o.state = STORE_FAILED;
		dispatch_fmt_duration(cfg->max_age_ms, age, sizeof age);
		snprintf(o.error, sizeof o.error, "too old: max_age %s passed",
			 age);
	} else if (attempt(w, cfg, t, due, &o) < 0) {
		log_kv(LOG_INFO, "abandoned at shutdown; it stays pending",
		       "delivery", due->id, "event", due->event_id, "trigger",
		       due->trigger, LOG_END);
		pthread_mutex_lock(&d->mu);
		flight_remove(d, f);
		pthread_cond_broadcast(&d->cond);
		pthread_mutex_unlock(&d->mu);
		goto out;
	}
	/* An upstream may echo a secret back: mask it before the answer
	 * reaches the log or the store. */
	redact_body(cfg, &o.resp);
	redact_error(cfg, &o);
	log_outcome(due, &o);
	count(due, &o);
	record(d, f, due, &o);
out:
	http_response_clear(&o.resp);
	config_release(cfg);
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
		int rc = take_due(d, &due, &f, &wake_at);
		if (rc == 1) {
			if (d->ready)
				wake_one(d); /* more is ready: a second pair of hands */
			pthread_mutex_unlock(&d->mu);
			deliver(w, f, &due);
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
	wake_one(d);
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
		flight_remove(d, d->flights);
	pthread_cond_destroy(&d->cond);
	pthread_mutex_destroy(&d->mu);
	free(d->workers);
	free(d);
}
