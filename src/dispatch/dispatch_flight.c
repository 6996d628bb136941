/*
 * dispatch_flight — the dispatcher's flight list (see dispatch_int.h).
 *
 * DESIGN: one struct flight per delivery claimed from the store and whose
 * outcome is not yet committed — ready (claimed a batch at a time, waiting
 * in a FIFO), sending (counts against max_in_flight_per_trigger), or
 * recording (outcome queued, id still skipped). Under d->mu a worker takes
 * the first ready delivery whose trigger has a free slot; when there is
 * none it claims the next batch of due deliveries, skipping every known id
 * and every full or still stocked trigger, so no delivery is ever sent
 * twice at once and one read serves many deliveries. The store's writer
 * thread ends a flight with dispatch_flight_done() once its outcome is
 * committed.
 */
#include "dispatch_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "log.h"

#define HOLD_MS 30000	     /* an outcome the store refused: wait, resend */
#define READY_BATCH 32	     /* due deliveries claimed at once */
#define LEASE_MARGIN_MS 5000 /* a claim's lease past dispatch.timeout */

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
	f->poll = f->due.poll;
	snprintf(f->id, sizeof f->id, "%s", f->due.id);
	f->next = d->flights;
	d->flights = f;
	if (f->poll) {
		if (d->polls_tail)
			d->polls_tail->ready_next = f;
		else
			d->polls = f;
		d->polls_tail = f;
		return f;
	}
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
void dispatch_flight_remove_locked(struct dispatch *d, struct flight *f)
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
		if (f->sending && !f->poll && strcmp(f->trigger, trigger) == 0)
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
void dispatch_flight_done(void *ctx, int rc)
{
	struct flight *f = ctx;
	struct dispatch *d = f->d;
	char id[UTIL_ID_LEN];

	pthread_mutex_lock(&d->mu);
	d->nrecording--;
	/* a retry or a new poll may now be due sooner than the store said */
	d->deliveries_dirty = d->polls_dirty = 1;
	if (rc == 0) {
		dispatch_flight_remove_locked(d, f);
	} else {
		snprintf(id, sizeof id, "%s", f->id);
		f->hold_until = util_mono_ms() + HOLD_MS;
	}
	dispatch_wake_one_locked(d);
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
static int refill(struct dispatch *d, int max, int64_t lease_ms,
		  int64_t *wake_at_ms)
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
		if (f->poll)
			continue;
		if (!f->ready && (!f->sending || in_flight_for(d, f->trigger) < max))
			continue;
		size_t i = 0;
		while (i < ntrig && strcmp(trig[i], f->trigger) != 0)
			i++;
		if (i == ntrig)
			trig[ntrig++] = f->trigger;
	}
	struct store_claim c = {
	    .now_ms = util_now_ms(), .lease_ms = lease_ms,
	    .skip_ids = ids, .nskip_ids = nids,
	    .skip_triggers = trig, .nskip_triggers = ntrig,
	};
	got = store_claim_due(d->st, &c, batch, READY_BATCH, wake_at_ms);
	for (int i = 0; i < got; i++)
		if (!flight_add(d, &batch[i]))
			store_due_clear(&batch[i]);
out:
	free(ids);
	free(trig);
	return got;
}

/* With d->mu held: takes the first due poll, if fewer than max are on
 * the wire. 1, or 0. */
static int take_poll(struct dispatch *d, int max, struct store_due *due,
		     struct flight **fp)
{
	struct flight *f = d->polls;

	if (!f || d->npolling >= max)
		return 0;
	d->polls = f->ready_next;
	if (!d->polls)
		d->polls_tail = NULL;
	f->ready_next = NULL;
	f->ready = 0;
	f->sending = 1;
	d->npolling++;
	*due = f->due;
	memset(&f->due, 0, sizeof f->due);
	*fp = f;
	return 1;
}

/* With d->mu held: claims the next batch of due polls (skipping every id
 * known here). How many, or -1; *wake_at_ms the next poll when none. */
static int refill_polls(struct dispatch *d, int64_t lease_ms,
			int64_t *wake_at_ms)
{
	struct store_due batch[READY_BATCH];
	size_t n = 0;
	const char **ids;
	int got;

	for (struct flight *f = d->flights; f; f = f->next)
		n++;
	if (!(ids = calloc(n + 1, sizeof *ids)))
		return -1;
	n = 0;
	for (struct flight *f = d->flights; f; f = f->next)
		ids[n++] = f->id;
	struct store_claim c = {.now_ms = util_now_ms(), .lease_ms = lease_ms,
				.skip_ids = ids, .nskip_ids = n};
	got = store_claim_polls(d->st, &c, batch, READY_BATCH, wake_at_ms);
	for (int i = 0; i < got; i++)
		if (!flight_add(d, &batch[i]))
			store_due_clear(&batch[i]);
	free(ids);
	return got;
}

/*
 * With d->mu held: work for a worker. Deliveries come first: the store is
 * asked for due deliveries only when something changed (a notify, an
 * outcome committed) or their next due time has come, and a poll is taken
 * only when no delivery can be; polls never hold more than all workers
 * but one, so a new delivery always finds a worker free within one short
 * request. Polls are claimed a batch at a time like deliveries.
 */
static int take_any(struct dispatch *d, int max, int64_t lease_ms,
		    struct store_due *due, struct flight **fp,
		    int64_t *wake_at_ms)
{
	int64_t now = util_now_ms(), pw = INT64_MAX;
	int poll_max = d->nworkers > 1 ? d->nworkers - 1 : 1;
	int rc = 0, prc;

	if (take_ready(d, max, due, fp))
		return 1;
	if (d->deliveries_dirty || now >= d->deliveries_wake_at) {
		d->deliveries_dirty = 0;
		d->deliveries_wake_at = INT64_MAX;
		rc = refill(d, max, lease_ms, &d->deliveries_wake_at);
		if (rc > 0) {
			d->deliveries_dirty = 1; /* more may be due */
			if (take_ready(d, max, due, fp))
				return 1;
			rc = 0;
		} else if (rc < 0) {
			d->deliveries_dirty = 1;
		}
	}
	if (take_poll(d, poll_max, due, fp))
		return 1;
	if (!d->polls && d->npolling < poll_max &&
	    (d->polls_dirty || now >= d->polls_wake_at)) {
		d->polls_dirty = 0;
		d->polls_wake_at = INT64_MAX;
		prc = refill_polls(d, lease_ms, &pw);
		if (prc > 0 && take_poll(d, poll_max, due, fp))
			return 1;
		if (prc == 0)
			d->polls_wake_at = pw;
		if (prc < 0)
			rc = -1;
	}
	*wake_at_ms = d->deliveries_wake_at < d->polls_wake_at
			  ? d->deliveries_wake_at
			  : d->polls_wake_at;
	if (d->polls && d->npolling < poll_max)
		*wake_at_ms = now;
	return rc;
}

/*
 * With d->mu held: the earliest due delivery that is not in flight and
 * whose trigger is under its in-flight limit, marked sending. Deliveries
 * are read from the store a batch at a time (one read transaction serves
 * READY_BATCH of them) and wait in the ready FIFO. 1 with *due and *fp
 * filled, 0 if none is due (*wake_at_ms: the next due time, wall clock),
 * -1 on error.
 */
int dispatch_flight_take_locked(struct dispatch *d, struct store_due *due,
				struct flight **fp, int64_t *wake_at_ms)
{
	struct config *cfg = config_slot_acquire(d->slot);
	int max = cfg && cfg->max_in_flight_per_trigger > 0
		      ? cfg->max_in_flight_per_trigger
		      : 1;
	/* SPEC section 11: a claim outlives the longest attempt by 5 s */
	int64_t lease_ms = (cfg ? cfg->timeout_ms : 30000) + LEASE_MARGIN_MS;
	int rc;

	config_release(cfg);
	*wake_at_ms = INT64_MAX;
	flights_prune(d, util_mono_ms());
	rc = take_any(d, max, lease_ms, due, fp, wake_at_ms);
	if (rc == 1)
		return 1;
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
void dispatch_flight_sent(struct dispatch *d, struct flight *f)
{
	pthread_mutex_lock(&d->mu);
	d->nrecording++;
	f->sending = 0;
	if (f->poll)
		d->npolling--;
	dispatch_wake_one_locked(d);
	pthread_mutex_unlock(&d->mu);
}

void dispatch_flight_abandon(struct dispatch *d, struct flight *f)
{
	store_release(d->st, f->id);
	pthread_mutex_lock(&d->mu);
	if (f->poll && f->sending)
		d->npolling--;
	dispatch_flight_remove_locked(d, f);
	pthread_cond_broadcast(&d->cond);
	pthread_mutex_unlock(&d->mu);
}
