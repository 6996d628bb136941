/*
 * pg_read — the PostgreSQL backend's claims and reads: due deliveries and
 * polls claimed with a lease, release, the counts (cluster gauges), the
 * dedup fast path and the admin API's rows.
 *
 * DESIGN: claims run on the claim connection (the dispatcher's, under
 * clock), everything else on the read connection (under rlock). A claim
 * is one statement, River's way: pick due rows FOR UPDATE SKIP LOCKED
 * (two instances claiming at once take different rows and never wait for
 * each other), skip rows whose lease has not run out, and stamp the
 * picked ones with this instance and lease_until = now + lease. A row
 * whose lease ran out is simply due again: the claim is also the rescuer,
 * and it marks such a delivery unsure (its claimant died, so it may have
 * been on the wire). Claims commit with synchronous_commit off: a claim
 * lost with the server only makes the delivery due again.
 *
 * Other instances add work this one is not told of, so the wake time a
 * claim returns is never more than PG_IDLE_WAKE_MS away. Any thread.
 */
#include "pg_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DELIVERY_COLS                                                          \
	"id, event_id, \"trigger\", state, attempts, last_status, "            \
	"last_error, next_at, created_at, run_id, run_href, run_status, "     \
	"run_finished_at, run_message"

/* $1 now, $2 skip ids, $3 skip triggers, $4 max, $5 lease until, $6 me */
static const char SQL_CLAIM[] =
    "WITH c AS (SELECT id FROM deliveries WHERE state = 'pending'"
    "  AND next_at <= $1 AND (lease_until IS NULL OR lease_until <= $1)"
    "  AND NOT (id = ANY ($2::text[]))"
    "  AND NOT (\"trigger\" = ANY ($3::text[]))"
    "  ORDER BY next_at, seq LIMIT $4 FOR UPDATE SKIP LOCKED),"
    " u AS (UPDATE deliveries d SET lease_until = $5, lease_owner = $6,"
    "  unsure = d.unsure OR d.lease_until IS NOT NULL"
    "  FROM c WHERE d.id = c.id RETURNING d.*)"
    " SELECT u.id, u.event_id, u.\"trigger\", u.attempts, u.accepted_at,"
    " u.next_at, e.body, u.unsure::integer FROM u"
    " LEFT JOIN events e ON e.id = u.event_id ORDER BY u.next_at, u.seq";
/* The earliest moment a pending delivery not skipped may be claimed. */
static const char SQL_DUE_WAKE[] =
    "SELECT min(GREATEST(next_at, COALESCE(lease_until, 0)))"
    " FROM deliveries WHERE state = 'pending'"
    " AND NOT (id = ANY ($1::text[]))"
    " AND NOT (\"trigger\" = ANY ($2::text[]))";
/* $1 now, $2 skip ids, $3 max, $4 lease until, $5 me */
static const char SQL_CLAIM_POLLS[] =
    "WITH c AS (SELECT id FROM deliveries WHERE poll_at IS NOT NULL"
    "  AND poll_at <= $1 AND (lease_until IS NULL OR lease_until <= $1)"
    "  AND NOT (id = ANY ($2::text[]))"
    "  ORDER BY poll_at LIMIT $3 FOR UPDATE SKIP LOCKED),"
    " u AS (UPDATE deliveries d SET lease_until = $4, lease_owner = $5"
    "  FROM c WHERE d.id = c.id RETURNING d.*)"
    " SELECT u.id, u.event_id, u.\"trigger\", u.attempts, u.accepted_at,"
    " u.poll_at, e.body, u.unsure::integer, u.run_id, u.run_started_at"
    " FROM u LEFT JOIN events e ON e.id = u.event_id ORDER BY u.poll_at";
static const char SQL_POLL_WAKE[] =
    "SELECT min(GREATEST(poll_at, COALESCE(lease_until, 0)))"
    " FROM deliveries WHERE poll_at IS NOT NULL"
    " AND NOT (id = ANY ($1::text[]))";
/* Given back untouched but for the mark: it may have been on the wire. */
static const char SQL_RELEASE[] =
    "UPDATE deliveries SET lease_until = NULL, lease_owner = NULL,"
    " unsure = unsure OR state = 'pending'"
    " WHERE id = $1 AND lease_owner = $2";

/* ---- claims ---- */

/* Copies a claimed row into d; 0, or -1 out of memory (d cleared). */
static int due_fill(const PGresult *r, int i, struct store_due *d)
{
	size_t len = 0;
	unsigned char *body = NULL;

	snprintf(d->id, UTIL_ID_LEN, "%s", PQgetvalue(r, i, 0));
	snprintf(d->event_id, UTIL_ID_LEN, "%s", PQgetvalue(r, i, 1));
	d->trigger = strdup(PQgetvalue(r, i, 2));
	d->attempts = (int)pg_int(r, i, 3);
	d->accepted_at_ms = pg_int(r, i, 4);
	if (!PQgetisnull(r, i, 6))
		body = PQunescapeBytea(
		    (const unsigned char *)PQgetvalue(r, i, 6), &len);
	d->body = malloc(len + 1);
	if (!d->trigger || !d->body || (!body && !PQgetisnull(r, i, 6))) {
		PQfreemem(body);
		store_due_clear(d);
		return -1;
	}
	if (len && body)
		memcpy(d->body, body, len);
	PQfreemem(body);
	d->body[len] = '\0';
	d->body_len = len;
	d->unsure = pg_int(r, i, 7) > 0;
	return 0;
}

/* Runs a claim statement; its rows into out (poll rows with their run).
 * How many, or -1. With clock held. */
static int claim_rows(struct pg_store *st, PGconn *c, const char *sql,
		      const struct pg_params *p, struct store_due *out,
		      size_t max, int poll)
{
	PGresult *r = pg_exec(c, sql, p);
	int n = 0;

	if (!pg_ok(r)) {
		PQclear(r);
		pg_conn_check(&st->cc);
		return -1;
	}
	for (int i = 0; i < PQntuples(r) && (size_t)n < max; i++) {
		if (due_fill(r, i, &out[n]) < 0) {
			/* out of memory: give it back, or the heartbeat
			 * would hold it for as long as this process lives */
			struct pg_params g = {0};
			pg_p_text(&g, PQgetvalue(r, i, 0));
			pg_p_text(&g, st->owner);
			PQclear(pg_exec(c, SQL_RELEASE, &g));
			continue;
		}
		if (poll) {
			out[n].poll = 1;
			out[n].run_id = pg_int(r, i, 8);
			out[n].run_started_at_ms = pg_int(r, i, 9);
		}
		n++;
	}
	PQclear(r);
	return n;
}

/* With clock held: the wake time a wake statement answers, capped. */
static int wake_of(struct pg_store *st, PGconn *c, const char *sql,
		   const struct pg_params *p, int64_t now, int64_t *wake_at_ms)
{
	PGresult *r = pg_exec(c, sql, p);
	int64_t w = INT64_MAX;

	if (!pg_ok(r)) {
		PQclear(r);
		pg_conn_check(&st->cc);
		return -1;
	}
	if (PQntuples(r) == 1 && !PQgetisnull(r, 0, 0))
		w = pg_int(r, 0, 0);
	PQclear(r);
	if (w > now + PG_IDLE_WAKE_MS)
		w = now + PG_IDLE_WAKE_MS;
	*wake_at_ms = w;
	return 0;
}

static PGconn *claim_conn(struct pg_store *st)
{
	PGconn *c = st->cc.c;
	int fresh = !c || PQstatus(c) != CONNECTION_OK;

	c = pg_conn_get(st, &st->cc);
	if (c && fresh) {
		PGresult *r = pg_exec(c, "SET synchronous_commit = off", NULL);
		PQclear(r);
	}
	return c;
}

int pg_read_claim_due(struct store *s, const struct store_claim *cl,
		      struct store_due *out, size_t max, int64_t *wake_at_ms)
{
	struct pg_store *st = pg_of(s);
	struct pg_params p = {0}, w = {0};
	char *ids = NULL, *trigs = NULL;
	PGconn *c;
	int n = -1;

	__atomic_store_n(&st->lease_ms, cl->lease_ms, __ATOMIC_RELAXED);
	pthread_mutex_lock(&st->clock);
	if (!(c = claim_conn(st)))
		goto out;
	pg_p_int(&p, cl->now_ms);
	if (pg_p_array(&p, cl->skip_ids, cl->nskip_ids, &ids) < 0 ||
	    pg_p_array(&p, cl->skip_triggers, cl->nskip_triggers, &trigs) < 0)
		goto out;
	pg_p_int(&p, (int64_t)max);
	pg_p_int(&p, cl->now_ms + cl->lease_ms);
	pg_p_text(&p, st->owner);
	n = claim_rows(st, c, SQL_CLAIM, &p, out, max, 0);
	if (n == 0) {
		pg_p_text(&w, ids);
		pg_p_text(&w, trigs);
		if (wake_of(st, c, SQL_DUE_WAKE, &w, cl->now_ms, wake_at_ms) < 0)
			n = -1;
	}
out:
	pthread_mutex_unlock(&st->clock);
	free(ids);
	free(trigs);
	return n;
}

int pg_read_claim_polls(struct store *s, const struct store_claim *cl,
			struct store_due *out, size_t max,
			int64_t *wake_at_ms)
{
	struct pg_store *st = pg_of(s);
	struct pg_params p = {0}, w = {0};
	char *ids = NULL;
	PGconn *c;
	int n = -1;

	__atomic_store_n(&st->lease_ms, cl->lease_ms, __ATOMIC_RELAXED);
	pthread_mutex_lock(&st->clock);
	if (!(c = claim_conn(st)))
		goto out;
	pg_p_int(&p, cl->now_ms);
	if (pg_p_array(&p, cl->skip_ids, cl->nskip_ids, &ids) < 0)
		goto out;
	pg_p_int(&p, (int64_t)max);
	pg_p_int(&p, cl->now_ms + cl->lease_ms);
	pg_p_text(&p, st->owner);
	n = claim_rows(st, c, SQL_CLAIM_POLLS, &p, out, max, 1);
	if (n == 0) {
		pg_p_text(&w, ids);
		if (wake_of(st, c, SQL_POLL_WAKE, &w, cl->now_ms, wake_at_ms) < 0)
			n = -1;
	}
out:
	pthread_mutex_unlock(&st->clock);
	free(ids);
	return n;
}

int pg_read_release(struct store *s, const char *id)
{
	struct pg_store *st = pg_of(s);
	struct pg_params p = {0};
	PGconn *c;
	int rc = -1;

	pthread_mutex_lock(&st->clock);
	if ((c = claim_conn(st))) {
		pg_p_text(&p, id);
		pg_p_text(&p, st->owner);
		PGresult *r = pg_exec(c, SQL_RELEASE, &p);
		rc = pg_ok(r) ? 0 : -1;
		PQclear(r);
		if (rc < 0)
			pg_conn_check(&st->cc);
	}
	pthread_mutex_unlock(&st->clock);
	return rc;
}

/* ---- reads ---- */

/* Runs sql on the read connection with rlock held; NULL on failure. */
static PGresult *read_exec(struct pg_store *st, const char *sql,
			   const struct pg_params *p)
{
	PGconn *c = pg_conn_get(st, &st->rc);
	PGresult *r;

	if (!c)
		return NULL;
	r = pg_exec(c, sql, p);
	if (!pg_ok(r)) {
		PQclear(r);
		pg_conn_check(&st->rc);
		return NULL;
	}
	return r;
}

int pg_read_dedup_lookup(struct store *s, const char *key, int64_t window_ms,
			 char event_id[UTIL_ID_LEN])
{
	struct pg_store *st = pg_of(s);
	struct pg_params p = {0};
	PGresult *r;
	int rc = -1;

	pg_p_text(&p, key);
	pg_p_int(&p, pg_window_start(util_now_ms(), window_ms));
	pthread_mutex_lock(&st->rlock);
	r = read_exec(st,
		      "SELECT event_id FROM dedup WHERE \"key\" = $1 AND at > $2",
		      &p);
	if (r) {
		rc = PQntuples(r) == 1;
		if (rc)
			snprintf(event_id, UTIL_ID_LEN, "%s",
				 PQgetvalue(r, 0, 0));
	}
	PQclear(r);
	pthread_mutex_unlock(&st->rlock);
	return rc;
}

static int64_t count_of(struct pg_store *st, const char *sql)
{
	PGresult *r;
	int64_t n = -1;

	pthread_mutex_lock(&st->rlock);
	if ((r = read_exec(st, sql, NULL)) && PQntuples(r) == 1)
		n = pg_int(r, 0, 0);
	PQclear(r);
	pthread_mutex_unlock(&st->rlock);
	return n;
}

int64_t pg_read_count_pending(struct store *s)
{
	return count_of(pg_of(s),
			"SELECT count(*) FROM deliveries WHERE state = 'pending'");
}

int64_t pg_read_count_followed(struct store *s)
{
	return count_of(pg_of(s), "SELECT count(*) FROM deliveries"
				  " WHERE poll_at IS NOT NULL");
}

/* Cell as a copy (NULL for SQL NULL); *oom set if out of memory. */
static char *cell_text(const PGresult *r, int i, int col, int *oom)
{
	char *copy;

	if (PQgetisnull(r, i, col))
		return NULL;
	if (!(copy = strdup(PQgetvalue(r, i, col))))
		*oom = 1;
	return copy;
}

/* Row i of DELIVERY_COLS into d; 0, or -1 (d cleared). */
static int delivery_row(const PGresult *r, int i, struct store_delivery *d)
{
	int oom = 0;

	memset(d, 0, sizeof *d);
	snprintf(d->id, sizeof d->id, "%s", PQgetvalue(r, i, 0));
	snprintf(d->event_id, sizeof d->event_id, "%s", PQgetvalue(r, i, 1));
	d->trigger = cell_text(r, i, 2, &oom);
	if (store_state_parse(PQgetvalue(r, i, 3), &d->state) < 0)
		d->state = STORE_PENDING;
	d->attempts = (int)pg_int(r, i, 4);
	d->last_status = (int)pg_int(r, i, 5);
	d->last_error = cell_text(r, i, 6, &oom);
	d->next_attempt_at_ms = pg_int(r, i, 7);
	d->created_at_ms = pg_int(r, i, 8);
	d->run_id = pg_int(r, i, 9);
	d->run_href = cell_text(r, i, 10, &oom);
	d->run_status = cell_text(r, i, 11, &oom);
	d->run_finished_at = cell_text(r, i, 12, &oom);
	d->run_message = cell_text(r, i, 13, &oom);
	if (oom || !d->trigger) {
		store_delivery_clear(d);
		return -1;
	}
	return 0;
}

int pg_read_list(struct store *s, const char *state, const char *trigger,
		 int limit, struct store_delivery_list *out)
{
	struct pg_store *st = pg_of(s);
	struct pg_params p = {0};
	PGresult *r;
	int rc = -1;

	pg_p_text(&p, state);
	pg_p_text(&p, trigger);
	pg_p_int(&p, limit);
	pthread_mutex_lock(&st->rlock);
	r = read_exec(st,
		      "SELECT " DELIVERY_COLS " FROM deliveries"
		      " WHERE ($1::text IS NULL OR state = $1)"
		      " AND ($2::text IS NULL OR \"trigger\" = $2)"
		      " ORDER BY seq DESC LIMIT $3",
		      &p);
	pthread_mutex_unlock(&st->rlock);
	if (!r)
		return -1;
	out->v = calloc((size_t)PQntuples(r) + 1, sizeof *out->v);
	if (out->v) {
		rc = 0;
		for (int i = 0; i < PQntuples(r) && rc == 0; i++) {
			if (delivery_row(r, i, &out->v[out->n]) < 0)
				rc = -1;
			else
				out->n++;
		}
	}
	PQclear(r);
	if (rc < 0)
		store_list_clear(out);
	return rc;
}

/* History rows of r into f; 0, or -1 out of memory. */
static int history_rows(const PGresult *r, struct store_delivery_full *f)
{
	int n = PQntuples(r), oom = 0;

	if (n == 0)
		return 0;
	if (!(f->history = calloc((size_t)n, sizeof *f->history)))
		return -1;
	for (int i = 0; i < n; i++) {
		struct store_history *h = &f->history[f->nhistory++];
		h->at_ms = pg_int(r, i, 0);
		h->status = (int)pg_int(r, i, 1);
		h->error = cell_text(r, i, 2, &oom);
		h->ms = pg_int(r, i, 3);
	}
	return oom ? -1 : 0;
}

int pg_read_get(struct store *s, const char *id,
		struct store_delivery_full *out)
{
	struct pg_store *st = pg_of(s);
	struct pg_params p = {0};
	PGresult *d = NULL, *h = NULL, *e = NULL;
	int rc = -1;

	pg_p_text(&p, id);
	pthread_mutex_lock(&st->rlock);
	/* one snapshot: the delivery and its history agree */
	PQclear(read_exec(st, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
			  NULL));
	d = read_exec(st, "SELECT " DELIVERY_COLS " FROM deliveries"
			  " WHERE id = $1", &p);
	if (d && PQntuples(d) == 1)
		h = read_exec(st, "SELECT at, status, error, ms FROM attempts"
				  " WHERE delivery_id = $1 ORDER BY seq", &p);
	if (h)
		e = read_exec(st, "SELECT convert_from(e.body, 'UTF8')"
				  " FROM deliveries d JOIN events e"
				  " ON e.id = d.event_id WHERE d.id = $1", &p);
	if (st->rc.c)
		PQclear(pg_exec(st->rc.c, "COMMIT", NULL));
	pthread_mutex_unlock(&st->rlock);
	if (d && PQntuples(d) == 0)
		rc = 1;
	else if (d && h && delivery_row(d, 0, &out->d) == 0 &&
		 history_rows(h, out) == 0)
		rc = 0;
	/* the event as received; NULL when gone or not valid UTF-8 text */
	if (rc == 0 && e && PQntuples(e) == 1 && !PQgetisnull(e, 0, 0) &&
	    !(out->event_body = strdup(PQgetvalue(e, 0, 0))))
		rc = -1;
	PQclear(d);
	PQclear(h);
	PQclear(e);
	if (rc != 0)
		store_get_clear(out);
	return rc;
}
