/*
 * dispatch_dbt — the dispatcher's dbt Cloud work (SPEC section 8): the
 * look-up before posting again, if_running: reuse, and one poll of a
 * followed run.
 *
 * DESIGN: runs on a worker thread without d->mu, on the worker's own
 * http_client; dbt.c does the text. A poll is one short GET: the worker
 * queues its outcome (the run's status and next poll time) to the store
 * and goes back to the flight list, so a followed run holds no thread
 * between polls; the store keeps the next poll time, so following
 * survives a restart.
 */
#include "dispatch_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "dbt.h"
#include "event.h"
#include "http_client.h"
#include "log.h"
#include "metrics.h"
#include "request.h"

#define LOOKUP_PAGES 20 /* at most 2,000 runs looked at */
/* dbt's answers are read whole: a page of 100 runs with their trigger is
 * some 250 KB */
#define ANSWER_MAX (8u << 20)

/* One GET or POST to the runs API with the trigger's headers. */
static void call(struct worker *w, const struct config *cfg,
		 const struct request *req, const char *method,
		 const char *url, struct http_response *resp)
{
	struct http_request hr = {
	    .method = method,
	    .url = url,
	    .headers = req->headers,
	    .nheaders = req->nheaders,
	    .timeout_ms = cfg->timeout_ms,
	    .connect_timeout_ms = cfg->connect_timeout_ms,
	    .body_max = ANSWER_MAX,
	    .cancel = &w->cancel,
	};

	memset(resp, 0, sizeof *resp);
	resp->retry_after_ms = -1;
	http_client_send(w->http, &hr, resp);
}

/* Lists tg's runs (active: only queued/starting/running) for one with
 * marker (NULL: any). 1 found, 0 none, -1 failed (b says why). */
static int lookup(struct worker *w, const struct config *cfg,
		  const struct request *req, const struct dbt_target *tg,
		  int active, const char *marker, int64_t since_ms,
		  struct dbt_run *run, struct dbt_before *b)
{
	char url[DBT_URL_MAX], host[256];
	struct http_response resp;
	int rc = -1;

	http_url_host(req->url, host, sizeof host);
	for (int page = 0; page < LOOKUP_PAGES; page++) {
		int n = 0;
		int64_t oldest = -1;
		if (dbt_list_url(tg, active, page * DBT_LIST_LIMIT, url,
				 sizeof url) < 0)
			break;
		call(w, cfg, req, "GET", url, &resp);
		b->status = resp.status;
		b->ms += resp.ms;
		b->retry_after_ms = resp.retry_after_ms;
		if (resp.status < 200 || resp.status > 299) {
			char what[384];
			if (resp.status == 0)
				snprintf(what, sizeof what, "%s", resp.error);
			else
				dispatch_http_error(resp.status, host, resp.body,
						    resp.body_len, what,
						    sizeof what);
			snprintf(b->error, sizeof b->error,
				 "looking up dbt runs before posting again "
				 "failed (%s); nothing was posted",
				 what);
			http_response_clear(&resp);
			return -1;
		}
		rc = dbt_find_run(resp.body, resp.body_len, marker, run, &n,
				  &oldest);
		http_response_clear(&resp);
		if (rc < 0) {
			snprintf(b->error, sizeof b->error,
				 "looking up dbt runs before posting again: "
				 "%s did not answer a runs list; nothing was "
				 "posted",
				 host);
			return -1;
		}
		/* newest first: older pages matter only while this page's
		 * oldest run was created after the delivery was accepted */
		if (rc == 1 || n < DBT_LIST_LIMIT || oldest < 0 ||
		    oldest < since_ms)
			return rc;
	}
	return 0;
}

int dispatch_dbt_before(struct worker *w, const struct config *cfg,
			const struct config_trigger *t,
			const struct store_due *due, const struct request *req,
			struct dbt_run *run, struct dbt_before *b)
{
	struct dbt_target tg;
	char marker[DBT_MARKER_MAX];
	int rc;

	memset(b, 0, sizeof *b);
	b->retry_after_ms = -1;
	if (!dbt_url_parse(req->url, &tg))
		return 0;
	if (due->unsure && t->dbt.mark && t->body_is_json) {
		dbt_marker(due->id, marker);
		/* a second of slack for clocks: created_at is dbt's */
		rc = lookup(w, cfg, req, &tg, 0, marker,
			    due->accepted_at_ms - 1000, run, b);
		if (rc < 0)
			return 2;
		if (rc == 1) {
			snprintf(b->error, sizeof b->error,
				 "dbt run %lld was found, started by an "
				 "earlier attempt; no new run was started",
				 (long long)run->id);
			metrics_dbt_avoided(due->trigger, METRICS_DBT_FOUND);
			return 1;
		}
	}
	if (t->dbt.reuse) {
		rc = lookup(w, cfg, req, &tg, 1, NULL, 0, run, b);
		if (rc < 0)
			return 2;
		if (rc == 1) {
			snprintf(b->error, sizeof b->error,
				 "dbt run %lld of job %s was already %s; it "
				 "was reused (if_running: reuse), no new run "
				 "was started",
				 (long long)run->id, tg.job,
				 dbt_status_name(run->status)
				     ? dbt_status_name(run->status)
				     : "running");
			metrics_dbt_avoided(due->trigger, METRICS_DBT_REUSED);
			return 1;
		}
	}
	return 0;
}

/* ---- polls ---- */

static enum metrics_run_status metric_of(int status)
{
	switch (status) {
	case DBT_SUCCESS: return METRICS_RUN_SUCCESS;
	case DBT_ERROR: return METRICS_RUN_ERROR;
	case DBT_CANCELLED: return METRICS_RUN_CANCELLED;
	case DBT_TIMEOUT: return METRICS_RUN_TIMEOUT;
	case DBT_LOST: return METRICS_RUN_LOST;
	default: return METRICS_RUN_UNKNOWN;
	}
}

static void log_finished(const struct store_due *due, int status,
			 int64_t now)
{
	char run[24], ms[24];

	snprintf(run, sizeof run, "%lld", (long long)due->run_id);
	snprintf(ms, sizeof ms, "%lld",
		 (long long)(now - due->run_started_at_ms));
	log_kv(status == DBT_SUCCESS ? LOG_INFO : LOG_WARN, "dbt run finished",
	       "trigger", due->trigger, "delivery", due->id, "run", run,
	       "status", dbt_status_name(status), "ms", ms, LOG_END);
	metrics_dbt_run(due->trigger, metric_of(status));
}

/* What one poll decided. */
struct poll_out {
	struct dbt_run run;
	int status;   /* the run's status after it, DBT_NONE: unchanged */
	int64_t next; /* next poll, -1: stop following */
	char error[512];
};

static void poll_once(struct worker *w, const struct config *cfg,
		      const struct config_trigger *t,
		      const struct store_due *due, struct poll_out *p)
{
	struct request req;
	struct dbt_target tg;
	struct http_response resp;
	char url[DBT_URL_MAX], host[256], rerr[256];
	int64_t now = util_now_ms(), wait = t->dbt.poll_interval_ms;

	p->next = -1;
	if (dispatch_render(cfg, t, due, &req, rerr, sizeof rerr) < 0)
		return;
	if (!dbt_url_parse(req.url, &tg) ||
	    dbt_run_url(&tg, due->run_id, url, sizeof url) < 0)
		goto out;
	http_url_host(req.url, host, sizeof host);
	if (now - due->run_started_at_ms >= t->dbt.run_timeout_ms) {
		p->status = DBT_TIMEOUT;
		if (t->dbt.cancel_on_timeout &&
		    dbt_cancel_url(&tg, due->run_id, url, sizeof url) == 0) {
			call(w, cfg, &req, "POST", url, &resp);
			snprintf(p->error, sizeof p->error,
				 "run_timeout passed: dbt run %lld was "
				 "cancelled (HTTP %d from %s)",
				 (long long)due->run_id, resp.status, host);
			http_response_clear(&resp);
		} else {
			snprintf(p->error, sizeof p->error,
				 "run_timeout passed: stopped following dbt "
				 "run %lld",
				 (long long)due->run_id);
		}
		goto out;
	}
	call(w, cfg, &req, "GET", url, &resp);
	if (resp.status >= 200 && resp.status <= 299 &&
	    dbt_parse_run(resp.body, resp.body_len, &p->run) == 0) {
		p->status = dbt_status_name(p->run.status) ? p->run.status
							   : DBT_NONE;
		if (!dbt_status_final(p->status))
			p->next = now + wait;
	} else if (resp.status == 404) {
		p->status = DBT_LOST;
		snprintf(p->error, sizeof p->error,
			 "dbt run %lld answered 404 from %s: it is lost",
			 (long long)due->run_id, host);
	} else if (resp.status == 401 || resp.status == 403) {
		p->status = DBT_UNKNOWN;
		dispatch_http_error(resp.status, host, resp.body, resp.body_len,
				    url, sizeof url);
		snprintf(p->error, sizeof p->error,
			 "stopped following dbt run %lld: %s; check the "
			 "token's permissions",
			 (long long)due->run_id, url);
	} else {
		/* a failed poll: again at the next interval, Retry-After a
		 * floor */
		if (resp.retry_after_ms > wait)
			wait = resp.retry_after_ms;
		p->next = now + wait;
	}
	http_response_clear(&resp);
out:
	request_clear(&req);
}

void dispatch_poll(struct worker *w, struct flight *f,
		   const struct store_due *due)
{
	struct dispatch *d = w->d;
	struct config *cfg = config_slot_acquire(d->slot);
	const struct config_trigger *t =
	    cfg ? config_trigger_by_name(cfg, due->trigger) : NULL;
	struct poll_out p;
	struct store_run sr;

	memset(&p, 0, sizeof p);
	p.next = -1;
	/* a trigger removed, deactivated or no longer following: stop */
	if (t && t->active && t->dbt.is_dbt && t->dbt.follow)
		poll_once(w, cfg, t, due, &p);
	if (__atomic_load_n(&w->cancel, __ATOMIC_ACQUIRE)) {
		dispatch_flight_abandon(d, f);
		config_release(cfg);
		return;
	}
	memset(&sr, 0, sizeof sr);
	sr.id = due->run_id;
	sr.status = p.status ? dbt_status_name(p.status) : NULL;
	sr.finished_at = p.run.finished_at[0] ? p.run.finished_at : NULL;
	sr.status_message = p.run.status_message[0] ? p.run.status_message
						     : NULL;
	sr.href = p.run.href[0] ? p.run.href : NULL;
	sr.started_at_ms = due->run_started_at_ms;
	sr.poll_at_ms = p.next;
	if (p.next < 0 && dbt_status_final(p.status))
		log_finished(due, p.status, util_now_ms());
	dispatch_flight_sent(d, f);
	if (store_record_run(d->st, due->id, &sr, p.error[0] ? p.error : NULL,
			     dispatch_flight_done, f) < 0)
		dispatch_flight_done(f, -1);
	config_release(cfg);
}
