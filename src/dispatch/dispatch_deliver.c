/*
 * dispatch_deliver — one attempt of one delivery (see dispatch_int.h).
 *
 * DESIGN: runs on a worker thread without d->mu: renders the request from
 * the stored event and the live config (secrets in memory only, see
 * request.c), sends it with the worker's own http_client (keep-alive per
 * worker), classifies the result (backoff.c), masks any secret an upstream
 * echoed, logs once, counts, and queues the outcome to the store; the
 * flight ends when the store has committed it.
 */
#include "dispatch_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backoff.h"
#include "buf.h"
#include "config.h"
#include "dbt.h"
#include "event.h"
#include "http_client.h"
#include "log.h"
#include "metrics.h"
#include "request.h"

#define ERROR_MAX 512
#define CAUSE_MAX 384 /* a cause, inside an ERROR_MAX sentence */

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
	int unsure;            /* dbt: ambiguous, look up before the next */
	int has_run;           /* dbt: the run started, found or reused */
	struct dbt_run run;
	int64_t poll_at_ms;    /* its first poll, -1: not followed */
};


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

/* A failed look-up is a retryable attempt: nothing was posted. */
static void lookup_failed(const struct config *cfg, const struct store_due *due,
			  const struct dbt_before *b, struct outcome *o)
{
	struct backoff_policy p;
	int attempt = due->attempts + 1;
	int64_t now = util_now_ms();

	policy_of(cfg, &p);
	o->resp.status = b->status;
	o->resp.ms = b->ms;
	o->unsure = due->unsure;
	o->delay_ms = backoff_delay_ms(&p, attempt, 0, b->retry_after_ms,
				       util_random32());
	if (!backoff_give_up(&p, attempt, due->accepted_at_ms, now,
			     o->delay_ms)) {
		o->state = STORE_PENDING;
		o->next_at_ms = now + o->delay_ms;
		snprintf(o->error, sizeof o->error, "%s", b->error);
		return;
	}
	o->state = STORE_FAILED;
	snprintf(o->error, sizeof o->error, "gave up after %d attempts: %s",
		 attempt, b->error);
}

/* The run is known: followed from now on if the trigger says so. */
static void run_known(const struct config_trigger *t, struct outcome *o)
{
	o->has_run = 1;
	o->poll_at_ms = t->dbt.follow && !dbt_status_final(o->run.status)
			    ? util_now_ms() + t->dbt.poll_interval_ms
			    : -1;
}

/* dbt: what an answer to the POST means beyond its class. */
static void after_post(const struct config_trigger *t, struct outcome *o)
{
	int s = o->resp.status;

	/* SPEC section 8: the request may have reached dbt Cloud but no
	 * clear answer came back */
	o->unsure = (s == 0 && !o->resp.unsent) || s == 500 || s == 502 ||
		    s == 504;
	if (s >= 200 && s <= 299 &&
	    dbt_parse_run(o->resp.body, o->resp.body_len, &o->run) == 0)
		run_known(t, o);
}

int dispatch_render(const struct config *cfg, const struct config_trigger *t,
		    const struct store_due *due, struct request *req, char *err,
		    size_t errlen)
{
	size_t n = due->nbatch ? due->nbatch : 1, got = 0;
	/* NOLINTNEXTLINE(bugprone-sizeof-expression): an array of pointers */
	struct event **evs = calloc(n, sizeof *evs);
	char perr[256];
	int rc = -1;

	if (!evs) {
		snprintf(err, errlen, "out of memory rendering the request");
		return -1;
	}
	for (; got < n; got++) {
		const char *b = due->nbatch ? due->batch_bodies[got] : due->body;
		size_t len = due->nbatch ? due->batch_lens[got] : due->body_len;

		if (!(evs[got] = event_parse(b, len, perr, sizeof perr))) {
			snprintf(err, errlen,
				 "the stored event cannot be parsed: %s", perr);
			break;
		}
	}
	if (got == n)
		rc = request_render(cfg, t, evs[n - 1],
				    (const struct event *const *)evs, n,
				    due->id, 0, req, err, errlen);
	while (got > 0)
		event_free(evs[--got]);
	free(evs);
	return rc;
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

	if (dispatch_render(cfg, t, due, &req, err, sizeof err) < 0) {
		o->state = STORE_FAILED;
		snprintf(o->error, sizeof o->error, "%s", err);
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
	if (t->dbt.is_dbt) {
		struct dbt_before b;
		int rc = dispatch_dbt_before(w, cfg, t, due, &req, &o->run, &b);
		if (rc != 0) {
			request_clear(&req);
			if (o->resp.status == 0 &&
			    __atomic_load_n(&w->cancel, __ATOMIC_ACQUIRE))
				return -1;
			if (rc == 1) {
				o->state = STORE_DELIVERED;
				o->resp.status = 200;
				o->resp.ms = b.ms;
				snprintf(o->error, sizeof o->error, "%s",
					 b.error);
				run_known(t, o);
			} else {
				lookup_failed(cfg, due, &b, o);
			}
			return 0;
		}
	}
	http_client_send(w->http, &hr, &o->resp);
	request_clear(&req); /* wipes the rendered secrets */
	if (o->resp.status == 0 &&
	    __atomic_load_n(&w->cancel, __ATOMIC_ACQUIRE))
		return -1;
	o->sent = 1;
	classify(cfg, due, o);
	if (t->dbt.is_dbt)
		after_post(t, o);
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
	struct store_run run = {
	    .id = o->run.id,
	    .href = o->run.href[0] ? o->run.href : NULL,
	    .status = dbt_status_name(o->run.status),
	    .finished_at = o->run.finished_at[0] ? o->run.finished_at : NULL,
	    .status_message =
		o->run.status_message[0] ? o->run.status_message : NULL,
	    .started_at_ms = o->at_ms,
	    .poll_at_ms = o->poll_at_ms,
	};
	struct store_attempt a = {
	    .at_ms = o->at_ms,
	    .unsure = o->unsure,
	    .run = o->has_run ? &run : NULL,
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
	dispatch_flight_sent(d, f);
	if (store_record_attempt(d->st, due->id, &a, o->state, o->next_at_ms,
				 dispatch_flight_done, f) < 0)
		dispatch_flight_done(f, -1);
}

/* Metrics hook: one attempt counted when a request went out, one final
 * outcome when the delivery leaves the pending state. */
static void count(const struct store_due *due, const struct outcome *o)
{
	static const enum metrics_outcome outcome[] = {
	    [STORE_DELIVERED] = METRICS_DELIVERED,
	    [STORE_FAILED] = METRICS_FAILED,
	    [STORE_CANCELLED] = METRICS_CANCELLED,
	};

	if (o->sent)
		metrics_attempt(due->trigger, o->resp.status,
				(double)o->resp.ms / 1000.0);
	if (o->state != STORE_PENDING)
		metrics_delivery(due->trigger, outcome[o->state]);
}

void dispatch_deliver(struct worker *w, struct flight *f,
		      const struct store_due *due)
{
	struct dispatch *d = w->d;
	struct config *cfg = config_slot_acquire(d->slot);
	const struct config_trigger *t =
	    cfg ? config_trigger_by_name(cfg, due->trigger) : NULL;
	struct outcome o = {.at_ms = util_now_ms(), .poll_at_ms = -1};
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
		dispatch_flight_abandon(d, f);
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
