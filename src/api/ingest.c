/*
 * ingest — parse, deduplicate, match and store one event (see ingest.h).
 *
 * DESIGN: called concurrently from HTTP connection threads; owns nothing
 * between calls. The order matters: an event that no trigger matches is
 * answered "unmatched" at once and writes nothing (its id exists only in
 * the answer and the log) — a dedup key is only remembered for accepted
 * events, so it could at most have been a duplicate of an event accepted
 * under an older config, and either answer queues nothing. A matched
 * event is checked against the dedup keys (a fast read, then again inside
 * the commit) and answered 202 only after store_accept() has committed it
 * with fsync.
 */
#include "ingest.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "config.h"
#include "event.h"
#include "log.h"
#include "match.h"
#include "request.h"
#include "sha256.h"
#include "store.h"
#include "util.h"

static void answer_error(struct ingest_result *res, int status,
			 const char *msg)
{
	res->status = status;
	snprintf(res->error, sizeof res->error, "%s", msg);
	res->result = status == 400 ? METRICS_REJECTED : METRICS_UNAVAILABLE;
}

/* {"status":status,"event":id[,"deliveries":[...]][,"waiting":[...]]}:
 * with results (SPEC section 9), a joined batch is marked "coalesced" and
 * an event that only advanced a fan-in is listed under "waiting". */
static void answer_event(struct ingest_result *res, int status,
			 enum metrics_result result, const char *event_id,
			 const struct config *cfg, const size_t *idx,
			 char (*ids)[UTIL_ID_LEN],
			 const struct store_result *results, size_t n,
			 int with_list)
{
	static const char *const words[] = {
	    [METRICS_ACCEPTED] = "accepted",
	    [METRICS_DUPLICATE] = "duplicate",
	    [METRICS_UNMATCHED] = "unmatched",
	};
	json_t *o = json_pack("{s:s,s:s}", "status", words[result], "event",
			      event_id);
	if (o && with_list) {
		json_t *list = json_array(), *waiting = NULL;
		for (size_t i = 0; list && i < n; i++) {
			const char *name = cfg->triggers[idx[i]].name;
			enum store_outcome oc =
			    results ? results[i].outcome : STORE_NEW;

			if (oc == STORE_WAITING) {
				if (!waiting)
					waiting = json_array();
				json_array_append_new(
				    waiting,
				    json_pack("{s:s,s:i,s:i}", "trigger", name,
					      "done", results[i].done, "of",
					      results[i].of));
			} else if (oc == STORE_JOINED) {
				json_array_append_new(
				    list, json_pack("{s:s,s:s,s:b}", "id", ids[i],
						    "trigger", name, "coalesced",
						    1));
			} else {
				json_array_append_new(
				    list, json_pack("{s:s,s:s}", "id", ids[i],
						    "trigger", name));
			}
		}
		json_object_set_new(o, "deliveries", list);
		if (waiting)
			json_object_set_new(o, "waiting", waiting);
	}
	res->status = status;
	res->result = result;
	res->json = o ? json_dumps(o, JSON_COMPACT) : NULL;
	json_decref(o);
}

/*
 * Renders the dedup key and puts its SHA-256 digest (hex) into digest: the
 * store keeps digests only, so a key of any length deduplicates and a row
 * costs 64 bytes. 0 if the event has every field the key names, 1 if it
 * lacks one (not deduplicated), -1 if the key is over
 * REQUEST_MAX_DEDUP_KEY (not deduplicated either, and logged).
 */
static int dedup_digest(const struct config *cfg, const struct event *ev,
			struct buf *key, char digest[SHA256_HEX_LEN])
{
	int k = request_dedup_key(cfg, ev, key);

	if (k < 0) {
		log_kv(LOG_WARN, "event not deduplicated", "reason",
		       "dedup key too long", LOG_END);
		return -1;
	}
	sha256_hex(key->data ? key->data : "", key->len, digest);
	return k;
}

/* The event's job_id, lower case, into job (empty if it has none). */
static void job_of(const struct event *ev, char *job, size_t len)
{
	const struct event_field *f = event_get(ev, "job_id");
	size_t n = f && f->len < len ? f->len : 0;

	for (size_t i = 0; i < n; i++)
		job[i] = (char)(f->value[i] >= 'A' && f->value[i] <= 'Z'
				    ? f->value[i] - 'A' + 'a'
				    : f->value[i]);
	job[n] = '\0';
}

/* The batching of each matched trigger (SPEC section 9) into b; 1 if
 * any trigger batches, else 0. */
static int batching_of(const struct config *cfg, const size_t *idx, size_t n,
		       struct store_batching *b)
{
	int any = 0;

	for (size_t i = 0; i < n; i++) {
		const struct config_trigger *t = &cfg->triggers[idx[i]];

		memset(&b[i], 0, sizeof b[i]);
		if (t->wait_all) {
			b[i].jobs = (const char *const *)t->jobs;
			b[i].njobs = t->njobs;
			b[i].within_ms = t->within_ms;
			any = 1;
		} else if (t->coalesce_ms > 0) {
			b[i].coalesce_ms = t->coalesce_ms;
			any = 1;
		}
	}
	return any;
}

static void log_accepted(const char *event_id, const char *delivery,
			 const char *trigger, const struct store_result *r)
{
	char done[16], of[16];

	if (r->outcome == STORE_WAITING) {
		snprintf(done, sizeof done, "%d", r->done);
		snprintf(of, sizeof of, "%d", r->of);
		log_kv(LOG_INFO, "event counted toward a fan-in", "event",
		       event_id, "trigger", trigger, "done", done, "of", of,
		       LOG_END);
	} else {
		log_kv(LOG_INFO,
		       r->outcome == STORE_JOINED ? "event joined a batch"
						  : "event accepted",
		       "event", event_id, "delivery", delivery, "trigger",
		       trigger, LOG_END);
	}
}

static void accept_matched(const struct ingest *in, const struct config *cfg,
			   const struct event *ev, const char *body,
			   size_t len, const char *key, const size_t *idx,
			   size_t n, struct ingest_result *res)
{
	const char **names = calloc(n, sizeof *names);
	char(*ids)[UTIL_ID_LEN] = calloc(n, UTIL_ID_LEN);
	struct store_batching *batching = calloc(n, sizeof *batching);
	struct store_result *results = calloc(n, sizeof *results);
	char job[128];
	struct store_event_in sin = {
		.body = body, .body_len = len, .dedup_key = key,
		.dedup_window_ms = cfg->dedup_window_ms, .triggers = names,
		.ntriggers = n, .job_id = job,
	};
	struct store_event_out sout = {.delivery_ids = ids, .results = results};

	if (!names || !ids || !batching || !results) {
		answer_error(res, 503, "out of memory");
		res->retry_after = 1;
		goto out;
	}
	for (size_t i = 0; i < n; i++)
		names[i] = cfg->triggers[idx[i]].name;
	if (batching_of(cfg, idx, n, batching))
		sin.batching = batching;
	job_of(ev, job, sizeof job);
	if (store_accept(in->store, &sin, &sout) < 0) {
		log_kv(LOG_ERROR, "event not stored", "reason",
		       "store cannot commit", LOG_END);
		answer_error(res, 503, "the store cannot commit the event right now; retry later");
		res->retry_after = 5;
		goto out;
	}
	if (sout.duplicate) {
		log_kv(LOG_INFO, "duplicate event", "event", sout.event_id, LOG_END);
		answer_event(res, 200, METRICS_DUPLICATE, sout.event_id, cfg, NULL,
			     NULL, NULL, 0, 0);
		goto out;
	}
	for (size_t i = 0; i < n; i++)
		log_accepted(sout.event_id, ids[i], names[i], &results[i]);
	answer_event(res, 202, METRICS_ACCEPTED, sout.event_id, cfg, idx, ids,
		     results, n, 1);
	ingest_wake(in);
out:
	free(names);
	free(ids);
	free(batching);
	free(results);
}

void ingest_event(const struct ingest *in, const char *body, size_t len,
		  struct ingest_result *res)
{
	char err[256], event_id[UTIL_ID_LEN], digest[SHA256_HEX_LEN];
	struct config *cfg = NULL;
	struct event *ev;
	struct buf key;
	size_t *idx = NULL;
	int k;

	memset(res, 0, sizeof *res);
	buf_init(&key, REQUEST_MAX_DEDUP_KEY);
	ev = event_parse(body, len, err, sizeof err);
	if (!ev) {
		answer_error(res, 400, err);
		goto out;
	}
	cfg = config_slot_acquire(in->slot);
	idx = calloc(cfg->ntriggers ? cfg->ntriggers : 1, sizeof *idx);
	if (!idx) {
		answer_error(res, 503, "out of memory");
		res->retry_after = 1;
		goto out;
	}
	/* Matching first: an event no trigger wants touches no store. */
	size_t n = match_event(cfg, ev, idx, cfg->ntriggers);
	if (n == 0) {
		util_new_id(event_id, "ev");
		log_kv(LOG_INFO, "event unmatched", "event", event_id, LOG_END);
		answer_event(res, 200, METRICS_UNMATCHED, event_id, cfg, NULL, NULL,
			     NULL, 0, 1);
		goto out;
	}
	k = dedup_digest(cfg, ev, &key, digest);
	if (k == 0 && store_dedup_lookup(in->store, digest,
					 cfg->dedup_window_ms, event_id) == 1) {
		log_kv(LOG_INFO, "duplicate event", "event", event_id, LOG_END);
		answer_event(res, 200, METRICS_DUPLICATE, event_id, cfg, NULL, NULL,
			     NULL, 0, 0);
		goto out;
	}
	accept_matched(in, cfg, ev, body, len, k == 0 ? digest : NULL,
		       idx, n, res);
out:
	if (!res->json && !res->error[0]) {
		answer_error(res, 503, "out of memory");
		res->retry_after = 1;
	}
	free(idx);
	buf_free(&key);
	event_free(ev);
	config_release(cfg);
}

void ingest_wake(const struct ingest *in)
{
	if (in->wake)
		in->wake(in->wake_ctx);
}
