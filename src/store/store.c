/*
 * store — the store's front door (see store.h): picks the backend at open
 * and forwards every call to it; owns the parts of the contract that do
 * not depend on a database (state names, freeing rows).
 *
 * DESIGN: no state of its own; any thread, as the backend allows.
 */
#include "store_backend.h"

#include <stdlib.h>
#include <string.h>

static const char *const state_names[] = {
    [STORE_PENDING] = "pending",
    [STORE_DELIVERED] = "delivered",
    [STORE_FAILED] = "failed",
    [STORE_CANCELLED] = "cancelled",
};

const char *store_state_name(enum store_state s)
{
	if ((unsigned)s >= sizeof state_names / sizeof state_names[0])
		return "unknown";
	return state_names[s];
}

int store_state_parse(const char *s, enum store_state *out)
{
	for (size_t i = 0; s && i < sizeof state_names / sizeof state_names[0]; i++) {
		if (strcmp(s, state_names[i]) == 0) {
			*out = (enum store_state)i;
			return 0;
		}
	}
	return -1;
}

struct store *store_open(const char *location, char *err, size_t errlen)
{
	return sqlite_store_open(location, err, errlen);
}

struct store *store_open_url(const char *url, char *err, size_t errlen)
{
	return pg_store_open(url, err, errlen);
}

void store_close(struct store *st)
{
	if (st)
		st->ops->close(st);
}

int store_writable(struct store *st)
{
	return st->ops->writable(st);
}

int64_t store_coalesce_close_ms(int64_t coalesce_ms)
{
	return coalesce_ms / 10 < 200 ? coalesce_ms / 10 : 200;
}

int store_accept(struct store *st, const struct store_event_in *in,
		 struct store_event_out *out)
{
	if (in->ntriggers > 0 && (!in->triggers || !out->delivery_ids))
		return -1;
	if (in->batching &&
	    (!out->results || !in->job_id || !st->ops->fanin_progress))
		return -1; /* a backend without batching refuses, never guesses */
	for (size_t i = 0; out->results && i < in->ntriggers; i++)
		out->results[i] = (struct store_result){STORE_NEW, 0, 0};
	return st->ops->accept(st, in, out);
}

int store_dedup_lookup(struct store *st, const char *key, int64_t window_ms,
		       char event_id[UTIL_ID_LEN])
{
	if (!key || window_ms <= 0)
		return 0;
	return st->ops->dedup_lookup(st, key, window_ms, event_id);
}

int store_claim_due(struct store *st, const struct store_claim *c,
		    struct store_due *out, size_t max, int64_t *wake_at_ms)
{
	memset(out, 0, max * sizeof *out);
	*wake_at_ms = INT64_MAX;
	if (max == 0)
		return -1;
	return st->ops->claim_due(st, c, out, max, wake_at_ms);
}

void store_due_clear(struct store_due *d)
{
	if (!d)
		return;
	free(d->trigger);
	free(d->body);
	for (size_t i = 0; i < d->nbatch; i++)
		free(d->batch_bodies[i]);
	free(d->batch_bodies);
	free(d->batch_lens);
	memset(d, 0, sizeof *d);
}

int store_release(struct store *st, const char *id)
{
	return st->ops->release(st, id);
}

int store_record_attempt(struct store *st, const char *id,
			 const struct store_attempt *a, enum store_state state,
			 int64_t next_at_ms, void (*done)(void *ctx, int rc),
			 void *ctx)
{
	if ((unsigned)state > STORE_CANCELLED)
		return -1;
	return st->ops->record_attempt(st, id, a, state, next_at_ms, done, ctx);
}

int store_cancel_inactive(struct store *st, const char *const *active,
			  size_t nactive,
			  void (*each)(void *ctx, const char *trigger),
			  void *ctx)
{
	return st->ops->cancel_inactive(st, active, nactive, each, ctx);
}

int store_claim_polls(struct store *st, const struct store_claim *c,
		      struct store_due *out, size_t max, int64_t *wake_at_ms)
{
	memset(out, 0, max * sizeof *out);
	*wake_at_ms = INT64_MAX;
	return st->ops->claim_polls(st, c, out, max, wake_at_ms);
}

int store_record_run(struct store *st, const char *id,
		     const struct store_run *run, const char *error,
		     void (*done)(void *ctx, int rc), void *ctx)
{
	return st->ops->record_run(st, id, run, error, done, ctx);
}

int64_t store_count_followed(struct store *st)
{
	return st->ops->count_followed(st);
}

int64_t store_count_pending(struct store *st)
{
	return st->ops->count_pending(st);
}

int store_list(struct store *st, const char *state, const char *trigger,
	       int limit, struct store_delivery_list *out)
{
	memset(out, 0, sizeof *out);
	return st->ops->list(st, state, trigger, limit > 0 ? limit : 100, out);
}

void store_delivery_clear(struct store_delivery *d)
{
	if (!d)
		return;
	free(d->trigger);
	free(d->last_error);
	free(d->run_href);
	free(d->run_status);
	free(d->run_finished_at);
	free(d->run_message);
	free(d->events);
	d->events = NULL;
	d->nevents = 0;
	d->trigger = d->last_error = NULL;
	d->run_href = d->run_status = d->run_finished_at = d->run_message =
	    NULL;
}

void store_list_clear(struct store_delivery_list *l)
{
	if (!l)
		return;
	for (size_t i = 0; i < l->n; i++)
		store_delivery_clear(&l->v[i]);
	free(l->v);
	memset(l, 0, sizeof *l);
}

int store_get(struct store *st, const char *id,
	      struct store_delivery_full *out)
{
	memset(out, 0, sizeof *out);
	return st->ops->get(st, id, out);
}

void store_get_clear(struct store_delivery_full *f)
{
	if (!f)
		return;
	store_delivery_clear(&f->d);
	for (size_t i = 0; i < f->nhistory; i++)
		free(f->history[i].error);
	free(f->history);
	free(f->event_body);
	memset(f, 0, sizeof *f);
}

int store_retry(struct store *st, const char *id, int64_t now_ms)
{
	return st->ops->retry(st, id, now_ms);
}

int store_fanin_keep(struct store *st, const char *const *triggers,
		     const char *const *jobs, size_t n)
{
	if (!st->ops->fanin_keep)
		return n ? -1 : 0;
	return st->ops->fanin_keep(st, triggers, jobs, n);
}

int store_fanin_progress(struct store *st, const char *trigger,
			 const char *const *jobs, size_t njobs,
			 int64_t within_ms, int64_t now_ms, int *done)
{
	memset(done, 0, njobs * sizeof *done);
	if (!st->ops->fanin_progress)
		return -1;
	return st->ops->fanin_progress(st, trigger, jobs, njobs, within_ms,
				       now_ms, done);
}
