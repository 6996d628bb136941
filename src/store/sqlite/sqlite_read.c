/*
 * sqlite_read — the SQLite backend's reads: the dedup fast path, claiming
 * due deliveries, the pending count, and the admin API's rows.
 *
 * DESIGN: every read goes through the second connection (query_only),
 * behind st->rlock, with statements prepared at open. WAL lets these reads
 * run beside the writer's transaction and fsync, so they never wait for a
 * commit. Each statement is reset before rlock is released, so no read
 * transaction stays open to hold back a checkpoint. Any thread.
 */
#include "sqlite_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>


#define DELIVERY_COLS                                                          \
	"id, event_id, \"trigger\", state, attempts, last_status, "            \
	"last_error, next_at, created_at, run_id, run_href, run_status, "     \
	"run_finished_at, run_message, batched"

/* The distinct triggers that have pending deliveries, one index seek each
 * (a loose index scan), as the CTE "trig(name)"; a comma follows. */
#define PENDING_TRIGGERS                                                       \
	"WITH RECURSIVE trig(name) AS ("                                       \
	" SELECT (SELECT MIN(\"trigger\") FROM deliveries"                     \
	"  WHERE state = 'pending')"                                           \
	" UNION ALL"                                                           \
	" SELECT (SELECT MIN(\"trigger\") FROM deliveries"                     \
	"  WHERE state = 'pending' AND \"trigger\" > trig.name)"                \
	" FROM trig WHERE trig.name IS NOT NULL),"

const char *const sqlite_read_dedup_sql =
    "SELECT event_id FROM dedup WHERE \"key\" = ?1 AND at > ?2";

const char *const sqlite_read_sql[R_COUNT_STMTS] = {
    [R_BEGIN] = "BEGIN",
    [R_END] = "COMMIT",
    /*
     * A loose index scan: walk the distinct triggers that have pending
     * deliveries (one index seek each), drop skipped triggers, take each
     * remaining trigger's earliest pending delivery not in the skip ids,
     * then the earliest of those. Cost grows with the number of triggers,
     * not with the backlog of a skipped one, so a trigger with thousands
     * of pending rows never starves the others.
     */
    [R_DUE] = PENDING_TRIGGERS
	      "cand(rid) AS ("
	      " SELECT (SELECT rowid FROM deliveries"
	      "  WHERE state = 'pending' AND \"trigger\" = trig.name"
	      "  AND id NOT IN (SELECT value FROM json_each(?1))"
	      "  ORDER BY next_at LIMIT 1)"
	      " FROM trig WHERE trig.name IS NOT NULL"
	      " AND trig.name NOT IN (SELECT value FROM json_each(?2)))"
	      "SELECT d.id, d.event_id, d.\"trigger\", d.attempts,"
	      " d.accepted_at, d.next_at, e.body"
	      " FROM cand JOIN deliveries d ON d.rowid = cand.rid"
	      " LEFT JOIN events e ON e.id = d.event_id"
	      " ORDER BY d.next_at, d.rowid LIMIT 1",
    /* The same walk, taking up to ?4 due deliveries of each trigger. */
    [R_DUE_BATCH] = PENDING_TRIGGERS
		    "cand(rid) AS ("
		    " SELECT d.rowid FROM trig JOIN deliveries d"
		    "  ON d.rowid IN (SELECT rowid FROM deliveries"
		    "   WHERE state = 'pending' AND \"trigger\" = trig.name"
		    "   AND next_at <= ?3"
		    "   AND id NOT IN (SELECT value FROM json_each(?1))"
		    "   ORDER BY next_at LIMIT ?4)"
		    " WHERE trig.name IS NOT NULL"
		    " AND trig.name NOT IN (SELECT value FROM json_each(?2)))"
		    "SELECT d.id, d.event_id, d.\"trigger\", d.attempts,"
		    " d.accepted_at, d.next_at, e.body, d.unsure, d.batched"
		    " FROM cand JOIN deliveries d ON d.rowid = cand.rid"
		    " LEFT JOIN events e ON e.id = d.event_id"
		    " ORDER BY d.next_at, d.rowid LIMIT ?4",
    [R_COUNT] = "SELECT COUNT(*) FROM deliveries WHERE state = 'pending'",
    /* The four listings number state ?1, trigger ?2, limit ?3 alike
     * (a parameter a statement does not use can still be bound). */
    [R_LIST_ALL] = "SELECT " DELIVERY_COLS " FROM deliveries"
		   " ORDER BY rowid DESC LIMIT ?3",
    [R_LIST_STATE] = "SELECT " DELIVERY_COLS " FROM deliveries"
		     " WHERE state = ?1 ORDER BY rowid DESC LIMIT ?3",
    [R_LIST_TRIGGER] = "SELECT " DELIVERY_COLS " FROM deliveries"
		       " WHERE \"trigger\" = ?2"
		       " ORDER BY rowid DESC LIMIT ?3",
    [R_LIST_BOTH] = "SELECT " DELIVERY_COLS " FROM deliveries"
		    " WHERE state = ?1 AND \"trigger\" = ?2"
		    " ORDER BY rowid DESC LIMIT ?3",
    /* column 15: the event's body, for the admin console */
    [R_GET] = "SELECT " DELIVERY_COLS ","
	      " (SELECT body FROM events WHERE events.id = event_id)"
	      " FROM deliveries WHERE id = ?1",
    [R_HISTORY] = "SELECT at, status, error, ms FROM attempts"
		  " WHERE delivery_id = ?1 ORDER BY rowid",
    /* Polls of followed runs: the partial index on poll_at holds only
     * those, so a thousand of them cost one short index walk. */
    [R_POLL_BATCH] = "SELECT d.id, d.event_id, d.\"trigger\", d.attempts,"
		     " d.accepted_at, d.poll_at, e.body, d.unsure, d.run_id,"
		     " d.run_started_at FROM deliveries d"
		     " LEFT JOIN events e ON e.id = d.event_id"
		     " WHERE d.poll_at IS NOT NULL AND d.poll_at <= ?2"
		     " AND d.id NOT IN (SELECT value FROM json_each(?1))"
		     " ORDER BY d.poll_at LIMIT ?3",
    [R_POLL_WAKE] = "SELECT MIN(poll_at) FROM deliveries"
		    " WHERE poll_at IS NOT NULL"
		    " AND id NOT IN (SELECT value FROM json_each(?1))",
    [R_COUNT_FOLLOWED] = "SELECT COUNT(*) FROM deliveries"
			 " WHERE poll_at IS NOT NULL",
    [R_BATCH_BODIES] = "SELECT e.body FROM batch_events b"
		       " JOIN events e ON e.id = b.event_id"
		       " WHERE b.delivery_id = ?1 ORDER BY b.seq",
    [R_BATCH_IDS] = "SELECT event_id FROM batch_events"
		    " WHERE delivery_id = ?1 ORDER BY seq",
    [R_FANIN] = "SELECT job FROM fanin WHERE \"trigger\" = ?1 AND at > ?2",
};

int sqlite_read_dedup_lookup(struct store *s, const char *key,
			     int64_t window_ms, char event_id[UTIL_ID_LEN])
{
	struct sqlite_store *st = sqlite_of(s);
	int64_t since = sqlite_store_window_start(util_now_ms(), window_ms);
	int rc;

	pthread_mutex_lock(&st->dlock);
	rc = sqlite_store_dedup_find(st->dedup, key, since, event_id);
	pthread_mutex_unlock(&st->dlock);
	return rc;
}

/* Copies the due row into d; 0, or -1 out of memory (d cleared). */
static int due_fill(sqlite3_stmt *s, struct store_due *d)
{
	const void *body = sqlite3_column_blob(s, 6);
	size_t len = (size_t)sqlite3_column_bytes(s, 6);
	const unsigned char *t;

	snprintf(d->id, UTIL_ID_LEN, "%s", sqlite3_column_text(s, 0));
	t = sqlite3_column_text(s, 1);
	snprintf(d->event_id, UTIL_ID_LEN, "%s", t ? (const char *)t : "");
	d->trigger = strdup((const char *)sqlite3_column_text(s, 2));
	d->attempts = sqlite3_column_int(s, 3);
	d->accepted_at_ms = sqlite3_column_int64(s, 4);
	/* NUL-terminated for convenience; body_len counts the bytes */
	d->body = malloc(len + 1);
	if (!d->trigger || !d->body) {
		store_due_clear(d);
		return -1;
	}
	if (len)
		memcpy(d->body, body, len);
	d->body[len] = '\0';
	d->body_len = len;
	d->unsure = sqlite3_column_int(s, 7);
	return 0;
}

/* Appends a copy of blob column 0 to a growing array; 0, or -1. */
static int push_blob(sqlite3_stmt *q, char ***v, size_t **lens, size_t *n)
{
	size_t len = (size_t)sqlite3_column_bytes(q, 0);
	const void *p = sqlite3_column_blob(q, 0);
	char **nv = realloc(*v, (*n + 1) * sizeof *nv);
	size_t *nl = nv ? realloc(*lens, (*n + 1) * sizeof *nl) : NULL;
	char *copy = nl ? malloc(len + 1) : NULL;

	if (nv)
		*v = nv;
	if (nl)
		*lens = nl;
	if (!copy)
		return -1;
	if (len)
		memcpy(copy, p, len);
	copy[len] = '\0';
	(*v)[*n] = copy;
	(*lens)[(*n)++] = len;
	return 0;
}

/* With rlock held, in the claim's read transaction: the bodies of d's
 * batch, arrival order. 0, or -1. */
static int batch_bodies(struct sqlite_store *st, struct store_due *d)
{
	sqlite3_stmt *q = st->r[R_BATCH_BODIES];
	int step, rc = 0;

	sqlite3_bind_text(q, 1, d->id, -1, SQLITE_STATIC);
	while (rc == 0 && (step = sqlite3_step(q)) == SQLITE_ROW)
		rc = push_blob(q, &d->batch_bodies, &d->batch_lens, &d->nbatch);
	sqlite_store_done_stmt(q);
	return rc == 0 && step == SQLITE_DONE ? 0 : -1;
}

/* With rlock held: up to max due deliveries into out; their count or -1. */
static int due_batch(struct sqlite_store *st, int64_t now_ms, const char *ids,
		     const char *trigs, struct store_due *out, size_t max)
{
	sqlite3_stmt *s = st->r[R_DUE_BATCH];
	int n = 0, step;

	sqlite3_bind_text(s, 1, ids, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, trigs, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 3, now_ms);
	sqlite3_bind_int64(s, 4, (sqlite3_int64)max);
	unsigned char *batched = calloc(max, 1);

	if (!batched)
		return -1;
	while ((size_t)n < max && (step = sqlite3_step(s)) == SQLITE_ROW) {
		if (due_fill(s, &out[n]) < 0)
			break;
		batched[n++] = sqlite3_column_int(s, 8) != 0;
	}
	if ((size_t)n == max)
		step = SQLITE_DONE;
	sqlite_store_done_stmt(s);
	for (int i = 0; step == SQLITE_DONE && i < n; i++)
		if (batched[i] && batch_bodies(st, &out[i]) < 0)
			step = SQLITE_ERROR;
	free(batched);
	if (step != SQLITE_DONE) {
		while (n > 0)
			store_due_clear(&out[--n]);
		n = -1;
	}
	return n;
}

/* With rlock held: the earliest next_at among pending deliveries not
 * skipped (INT64_MAX if none) into *wake_at_ms. 0, or -1. */
static int due_wake(struct sqlite_store *st, const char *ids, const char *trigs,
		    int64_t *wake_at_ms)
{
	sqlite3_stmt *s = st->r[R_DUE];
	int step;

	sqlite3_bind_text(s, 1, ids, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, trigs, -1, SQLITE_STATIC);
	step = sqlite3_step(s);
	if (step == SQLITE_ROW)
		*wake_at_ms = sqlite3_column_int64(s, 5);
	sqlite_store_done_stmt(s);
	return step == SQLITE_ROW || step == SQLITE_DONE ? 0 : -1;
}

/*
 * One process owns this database, so a claim is the claimant's own
 * record: the skip lists say what it holds, and c->lease_ms has nothing to
 * mark on disk (a crash ends every claim with the process).
 */
int sqlite_read_claim_due(struct store *s, const struct store_claim *c,
			  struct store_due *out, size_t max,
			  int64_t *wake_at_ms)
{
	struct sqlite_store *st = sqlite_of(s);
	char *ids = sqlite_store_json_list(c->skip_ids, c->nskip_ids);
	char *trigs = sqlite_store_json_list(c->skip_triggers,
					     c->nskip_triggers);
	int rc = -1;

	if (!ids || !trigs)
		goto out;
	pthread_mutex_lock(&st->rlock);
	/* one read transaction: a batch and its delivery's event agree */
	if (sqlite_store_run_stmt(st->r[R_BEGIN]) == SQLITE_DONE) {
		rc = due_batch(st, c->now_ms, ids, trigs, out, max);
		if (rc == 0 && due_wake(st, ids, trigs, wake_at_ms) < 0)
			rc = -1;
		sqlite_store_run_stmt(st->r[R_END]);
	}
	pthread_mutex_unlock(&st->rlock);
out:
	free(ids);
	free(trigs);
	return rc;
}

int sqlite_read_claim_polls(struct store *s, const struct store_claim *c,
			    struct store_due *out, size_t max,
			    int64_t *wake_at_ms)
{
	struct sqlite_store *st = sqlite_of(s);
	char *ids = sqlite_store_json_list(c->skip_ids, c->nskip_ids);
	sqlite3_stmt *q;
	int n = 0, step = SQLITE_DONE;

	if (!ids)
		return -1;
	pthread_mutex_lock(&st->rlock);
	q = st->r[R_POLL_BATCH];
	sqlite3_bind_text(q, 1, ids, -1, SQLITE_STATIC);
	sqlite3_bind_int64(q, 2, c->now_ms);
	sqlite3_bind_int64(q, 3, (sqlite3_int64)max);
	while ((size_t)n < max && (step = sqlite3_step(q)) == SQLITE_ROW) {
		if (due_fill(q, &out[n]) < 0)
			break;
		out[n].poll = 1;
		out[n].run_id = sqlite3_column_int64(q, 8);
		out[n].run_started_at_ms = sqlite3_column_int64(q, 9);
		n++;
	}
	if ((size_t)n < max && step != SQLITE_DONE) {
		while (n > 0)
			store_due_clear(&out[--n]);
		n = -1;
	}
	sqlite_store_done_stmt(q);
	if (n == 0) {
		q = st->r[R_POLL_WAKE];
		sqlite3_bind_text(q, 1, ids, -1, SQLITE_STATIC);
		step = sqlite3_step(q);
		if (step == SQLITE_ROW &&
		    sqlite3_column_type(q, 0) != SQLITE_NULL)
			*wake_at_ms = sqlite3_column_int64(q, 0);
		else if (step != SQLITE_ROW)
			n = -1;
		sqlite_store_done_stmt(q);
	}
	pthread_mutex_unlock(&st->rlock);
	free(ids);
	return n;
}

/* One COUNT(*) statement's answer, or -1. */
static int64_t count_of(struct sqlite_store *st, enum rstmt k)
{
	sqlite3_stmt *q = st->r[k];
	int64_t n = -1;

	pthread_mutex_lock(&st->rlock);
	if (sqlite3_step(q) == SQLITE_ROW)
		n = sqlite3_column_int64(q, 0);
	sqlite_store_done_stmt(q);
	pthread_mutex_unlock(&st->rlock);
	return n;
}

int64_t sqlite_read_count_followed(struct store *s)
{
	return count_of(sqlite_of(s), R_COUNT_FOLLOWED);
}

int64_t sqlite_read_count_pending(struct store *s)
{
	return count_of(sqlite_of(s), R_COUNT);
}

/* ---- admin rows ---- */

/* Column col as a copy (NULL for SQL NULL); *oom set if out of memory. */
static char *col_text(sqlite3_stmt *q, int col, int *oom)
{
	const unsigned char *t = sqlite3_column_text(q, col);
	char *copy;

	if (!t)
		return NULL;
	if (!(copy = strdup((const char *)t)))
		*oom = 1;
	return copy;
}

static int64_t col_int(sqlite3_stmt *q, int col)
{
	if (sqlite3_column_type(q, col) == SQLITE_NULL)
		return -1;
	return sqlite3_column_int64(q, col);
}

/* A row of DELIVERY_COLS into d; 0, or -1 (d cleared). */
static int delivery_row(sqlite3_stmt *q, struct store_delivery *d)
{
	const unsigned char *t;
	int oom = 0;

	memset(d, 0, sizeof *d);
	t = sqlite3_column_text(q, 0);
	snprintf(d->id, sizeof d->id, "%s", t ? (const char *)t : "");
	t = sqlite3_column_text(q, 1);
	snprintf(d->event_id, sizeof d->event_id, "%s",
		 t ? (const char *)t : "");
	d->trigger = col_text(q, 2, &oom);
	t = sqlite3_column_text(q, 3);
	if (!t || store_state_parse((const char *)t, &d->state) < 0)
		d->state = STORE_PENDING;
	d->attempts = (int)col_int(q, 4);
	d->last_status = (int)col_int(q, 5);
	d->last_error = col_text(q, 6, &oom);
	d->next_attempt_at_ms = col_int(q, 7);
	d->created_at_ms = col_int(q, 8);
	d->run_id = col_int(q, 9);
	d->run_href = col_text(q, 10, &oom);
	d->run_status = col_text(q, 11, &oom);
	d->run_finished_at = col_text(q, 12, &oom);
	d->run_message = col_text(q, 13, &oom);
	d->batched = sqlite3_column_int(q, 14);
	if (oom || !d->trigger) {
		store_delivery_clear(d);
		return -1;
	}
	return 0;
}

/* With rlock held: the event ids of d's batch, arrival order. 0, or -1. */
static int batch_ids(struct sqlite_store *st, struct store_delivery *d)
{
	sqlite3_stmt *q = st->r[R_BATCH_IDS];
	size_t cap = 0;
	int step, rc = 0;

	sqlite3_bind_text(q, 1, d->id, -1, SQLITE_STATIC);
	while (rc == 0 && (step = sqlite3_step(q)) == SQLITE_ROW) {
		if (d->nevents == cap) {
			size_t ncap = cap ? cap * 2 : 8;
			char(*v)[UTIL_ID_LEN] =
			    realloc(d->events, ncap * UTIL_ID_LEN);
			if (!v) {
				rc = -1;
				break;
			}
			d->events = v;
			cap = ncap;
		}
		snprintf(d->events[d->nevents++], UTIL_ID_LEN, "%s",
			 sqlite3_column_text(q, 0));
	}
	sqlite_store_done_stmt(q);
	return rc == 0 && step == SQLITE_DONE ? 0 : -1;
}

int sqlite_read_list(struct store *s, const char *state, const char *trigger,
		     int limit, struct store_delivery_list *out)
{
	struct sqlite_store *st = sqlite_of(s);
	enum rstmt k = state ? (trigger ? R_LIST_BOTH : R_LIST_STATE)
			     : (trigger ? R_LIST_TRIGGER : R_LIST_ALL);
	sqlite3_stmt *q = st->r[k];
	int step = SQLITE_ERROR;

	out->v = calloc((size_t)limit, sizeof *out->v);
	if (!out->v)
		return -1;
	pthread_mutex_lock(&st->rlock);
	sqlite_store_bind_opt_text(q, 1, state);
	sqlite_store_bind_opt_text(q, 2, trigger);
	sqlite3_bind_int(q, 3, limit);
	while (out->n < (size_t)limit &&
	       (step = sqlite3_step(q)) == SQLITE_ROW) {
		if (delivery_row(q, &out->v[out->n]) < 0)
			break;
		out->n++;
	}
	if (out->n == (size_t)limit)
		step = SQLITE_DONE;
	sqlite_store_done_stmt(q);
	for (size_t i = 0; step == SQLITE_DONE && i < out->n; i++)
		if (out->v[i].batched && batch_ids(st, &out->v[i]) < 0)
			step = SQLITE_ERROR;
	pthread_mutex_unlock(&st->rlock);
	if (step != SQLITE_DONE) {
		store_list_clear(out);
		return -1;
	}
	return 0;
}

/* With rlock held: every attempt of id, oldest first, into f. */
static int history_rows(struct sqlite_store *st, const char *id,
			struct store_delivery_full *f)
{
	sqlite3_stmt *q = st->r[R_HISTORY];
	size_t cap = 0;
	int step, oom = 0;

	sqlite3_bind_text(q, 1, id, -1, SQLITE_STATIC);
	while (!oom && (step = sqlite3_step(q)) == SQLITE_ROW) {
		if (f->nhistory == cap) {
			size_t ncap = cap ? cap * 2 : 8;
			struct store_history *v =
			    realloc(f->history, ncap * sizeof *v);
			if (!v) {
				oom = 1;
				break;
			}
			f->history = v;
			cap = ncap;
		}
		struct store_history *h = &f->history[f->nhistory++];
		h->at_ms = col_int(q, 0);
		h->status = (int)col_int(q, 1);
		h->error = col_text(q, 2, &oom);
		h->ms = col_int(q, 3);
	}
	sqlite_store_done_stmt(q);
	return !oom && step == SQLITE_DONE ? 0 : -1;
}

int sqlite_read_get(struct store *s, const char *id,
		    struct store_delivery_full *out)
{
	struct sqlite_store *st = sqlite_of(s);
	sqlite3_stmt *q = st->r[R_GET];
	int rc = -1, step, got = 0;

	pthread_mutex_lock(&st->rlock);
	/* one read transaction: the delivery and its history agree */
	if (sqlite_store_run_stmt(st->r[R_BEGIN]) != SQLITE_DONE)
		goto unlock;
	sqlite3_bind_text(q, 1, id, -1, SQLITE_STATIC);
	step = sqlite3_step(q);
	if (step == SQLITE_ROW) {
		int oom = 0;
		got = delivery_row(q, &out->d) == 0;
		out->event_body = col_text(q, 15, &oom);
		got = got && !oom;
	}
	sqlite_store_done_stmt(q);
	if (step == SQLITE_DONE)
		rc = 1;
	else if (got && history_rows(st, id, out) == 0 &&
		 (!out->d.batched || batch_ids(st, &out->d) == 0))
		rc = 0;
	sqlite_store_run_stmt(st->r[R_END]);
unlock:
	pthread_mutex_unlock(&st->rlock);
	if (rc != 0)
		store_get_clear(out);
	return rc;
}

int sqlite_read_fanin_progress(struct store *s, const char *trigger,
			       const char *const *jobs, size_t njobs,
			       int64_t within_ms, int64_t now_ms, int *done)
{
	struct sqlite_store *st = sqlite_of(s);
	sqlite3_stmt *q = st->r[R_FANIN];
	int step;

	pthread_mutex_lock(&st->rlock);
	sqlite3_bind_text(q, 1, trigger, -1, SQLITE_STATIC);
	sqlite3_bind_int64(q, 2, within_ms > 0
				     ? sqlite_store_window_start(now_ms, within_ms)
				     : INT64_MIN);
	while ((step = sqlite3_step(q)) == SQLITE_ROW) {
		const char *job = (const char *)sqlite3_column_text(q, 0);
		for (size_t i = 0; job && i < njobs; i++)
			if (strcmp(job, jobs[i]) == 0)
				done[i] = 1;
	}
	sqlite_store_done_stmt(q);
	pthread_mutex_unlock(&st->rlock);
	return step == SQLITE_DONE ? 0 : -1;
}
