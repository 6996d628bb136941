/*
 * store_read — the store's reads: the dedup fast path, due deliveries, the
 * pending count, and the admin API's JSON (jansson).
 *
 * DESIGN: every read goes through the second connection (query_only),
 * behind st->rlock, with statements prepared at open. WAL lets these reads
 * run beside the writer's transaction and fsync, so they never wait for a
 * commit. Each statement is reset before rlock is released, so no read
 * transaction stays open to hold back a checkpoint. Any thread.
 */
#include "store_int.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"

#define DELIVERY_COLS                                                          \
	"id, event_id, \"trigger\", state, attempts, last_status, "            \
	"last_error, next_at, created_at"

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

const char *const store_dedup_sql =
    "SELECT event_id FROM dedup WHERE \"key\" = ?1 AND at > ?2";

const char *const store_read_sql[R_COUNT_STMTS] = {
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
		    " d.accepted_at, d.next_at, e.body"
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
    [R_GET] = "SELECT " DELIVERY_COLS " FROM deliveries WHERE id = ?1",
    [R_HISTORY] = "SELECT at, status, error, ms FROM attempts"
		  " WHERE delivery_id = ?1 ORDER BY rowid",
};

int store_dedup_lookup(struct store *st, const char *key, int64_t window_ms,
		       char event_id[UTIL_ID_LEN])
{
	int64_t since = store_window_start(util_now_ms(), window_ms);
	int rc;

	if (!key || window_ms <= 0)
		return 0;
	pthread_mutex_lock(&st->dlock);
	rc = store_dedup_find(st->dedup, key, since, event_id);
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
	return 0;
}

/* With rlock held: up to max due deliveries into out; their count or -1. */
static int due_batch(struct store *st, int64_t now_ms, const char *ids,
		     const char *trigs, struct store_due *out, size_t max)
{
	sqlite3_stmt *s = st->r[R_DUE_BATCH];
	int n = 0, step;

	sqlite3_bind_text(s, 1, ids, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, trigs, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 3, now_ms);
	sqlite3_bind_int64(s, 4, (sqlite3_int64)max);
	while ((size_t)n < max && (step = sqlite3_step(s)) == SQLITE_ROW) {
		if (due_fill(s, &out[n]) < 0)
			break;
		n++;
	}
	if ((size_t)n < max && step != SQLITE_DONE) {
		while (n > 0)
			store_due_clear(&out[--n]);
		n = -1;
	}
	store_done_stmt(s);
	return n;
}

/* With rlock held: the earliest next_at among pending deliveries not
 * skipped (INT64_MAX if none) into *wake_at_ms. 0, or -1. */
static int due_wake(struct store *st, const char *ids, const char *trigs,
		    int64_t *wake_at_ms)
{
	sqlite3_stmt *s = st->r[R_DUE];
	int step;

	sqlite3_bind_text(s, 1, ids, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, trigs, -1, SQLITE_STATIC);
	step = sqlite3_step(s);
	if (step == SQLITE_ROW)
		*wake_at_ms = sqlite3_column_int64(s, 5);
	store_done_stmt(s);
	return step == SQLITE_ROW || step == SQLITE_DONE ? 0 : -1;
}

int store_next_due(struct store *st, int64_t now_ms,
		   const char *const *skip_ids, size_t nskip_ids,
		   const char *const *skip_triggers, size_t nskip_triggers,
		   struct store_due *out, size_t max, int64_t *wake_at_ms)
{
	char *ids = store_json_list(skip_ids, nskip_ids);
	char *trigs = store_json_list(skip_triggers, nskip_triggers);
	int rc = -1;

	memset(out, 0, max * sizeof *out);
	*wake_at_ms = INT64_MAX;
	if (!ids || !trigs || max == 0)
		goto out;
	pthread_mutex_lock(&st->rlock);
	rc = due_batch(st, now_ms, ids, trigs, out, max);
	if (rc == 0 && due_wake(st, ids, trigs, wake_at_ms) < 0)
		rc = -1;
	pthread_mutex_unlock(&st->rlock);
out:
	free(ids);
	free(trigs);
	return rc;
}

void store_due_clear(struct store_due *d)
{
	if (!d)
		return;
	free(d->trigger);
	free(d->body);
	memset(d, 0, sizeof *d);
}

int64_t store_count_pending(struct store *st)
{
	sqlite3_stmt *s = st->r[R_COUNT];
	int64_t n = -1;

	pthread_mutex_lock(&st->rlock);
	if (sqlite3_step(s) == SQLITE_ROW)
		n = sqlite3_column_int64(s, 0);
	store_done_stmt(s);
	pthread_mutex_unlock(&st->rlock);
	return n;
}

/* ---- admin JSON ---- */

/* Column col as a JSON string, or null. Text that is not valid UTF-8 (an
 * error sentence quoting a server) keeps its ASCII, other bytes become '?'. */
static json_t *jtext(sqlite3_stmt *s, int col)
{
	const unsigned char *t = sqlite3_column_text(s, col);
	json_t *v;
	char *copy;

	if (!t)
		return json_null();
	v = json_string((const char *)t);
	if (v || !(copy = strdup((const char *)t)))
		return v;
	for (char *p = copy; *p; p++)
		if ((unsigned char)*p >= 0x80)
			*p = '?';
	v = json_string(copy);
	free(copy);
	return v;
}

static json_t *jtime(sqlite3_stmt *s, int col)
{
	char t[40];

	if (sqlite3_column_type(s, col) == SQLITE_NULL)
		return json_null();
	util_rfc3339(sqlite3_column_int64(s, col), t, sizeof t);
	return json_string(t);
}

static json_t *jint(sqlite3_stmt *s, int col)
{
	if (sqlite3_column_type(s, col) == SQLITE_NULL)
		return json_null();
	return json_integer(sqlite3_column_int64(s, col));
}

/* The SPEC section 7 delivery object from a row of DELIVERY_COLS. */
static json_t *delivery_json(sqlite3_stmt *s)
{
	json_t *o = json_object();

	if (!o || json_object_set_new(o, "id", jtext(s, 0)) ||
	    json_object_set_new(o, "event", jtext(s, 1)) ||
	    json_object_set_new(o, "trigger", jtext(s, 2)) ||
	    json_object_set_new(o, "state", jtext(s, 3)) ||
	    json_object_set_new(o, "attempts", jint(s, 4)) ||
	    json_object_set_new(o, "last_status", jint(s, 5)) ||
	    json_object_set_new(o, "last_error", jtext(s, 6)) ||
	    json_object_set_new(o, "next_attempt_at", jtime(s, 7)) ||
	    json_object_set_new(o, "created_at", jtime(s, 8))) {
		json_decref(o);
		return NULL;
	}
	return o;
}

static int dump_cb(const char *p, size_t n, void *data)
{
	return buf_append(data, p, n);
}

/* Appends v as compact JSON; on failure out is left as it was. */
static int dump_json(json_t *v, struct buf *out)
{
	size_t len0 = out->len;

	if (json_dump_callback(v, dump_cb, out, JSON_COMPACT) == 0)
		return 0;
	out->len = len0;
	if (out->data)
		out->data[len0] = '\0';
	return -1;
}

int store_list_json(struct store *st, const char *state, const char *trigger,
		    int limit, struct buf *out)
{
	enum rstmt k = state ? (trigger ? R_LIST_BOTH : R_LIST_STATE)
			     : (trigger ? R_LIST_TRIGGER : R_LIST_ALL);
	sqlite3_stmt *s = st->r[k];
	json_t *root = json_object(), *list = json_array();
	int rc = -1, step = SQLITE_ERROR;

	if (!root || !list || json_object_set(root, "deliveries", list) < 0)
		goto out;
	pthread_mutex_lock(&st->rlock);
	store_bind_opt_text(s, 1, state);
	store_bind_opt_text(s, 2, trigger);
	sqlite3_bind_int(s, 3, limit > 0 ? limit : 100);
	while ((step = sqlite3_step(s)) == SQLITE_ROW)
		if (json_array_append_new(list, delivery_json(s)) < 0)
			break;
	store_done_stmt(s);
	pthread_mutex_unlock(&st->rlock);
	if (step == SQLITE_DONE)
		rc = dump_json(root, out);
out:
	json_decref(list);
	json_decref(root);
	return rc;
}

/* Appends every attempt of id, oldest first, to history. */
static int history_json(struct store *st, const char *id, json_t *history)
{
	sqlite3_stmt *s = st->r[R_HISTORY];
	int step;

	sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
	while ((step = sqlite3_step(s)) == SQLITE_ROW) {
		json_t *a = json_object();
		if (json_array_append_new(history, a) < 0 ||
		    json_object_set_new(a, "at", jtime(s, 0)) ||
		    json_object_set_new(a, "status", jint(s, 1)) ||
		    json_object_set_new(a, "error", jtext(s, 2)) ||
		    json_object_set_new(a, "ms", jint(s, 3)))
			break;
	}
	store_done_stmt(s);
	return step == SQLITE_DONE ? 0 : -1;
}

int store_get_json(struct store *st, const char *id, struct buf *out)
{
	sqlite3_stmt *s = st->r[R_GET];
	json_t *o = NULL, *history = json_array();
	int rc = -1, step;

	if (!history)
		return -1;
	pthread_mutex_lock(&st->rlock);
	/* one read transaction: the delivery and its history agree */
	if (store_run_stmt(st->r[R_BEGIN]) != SQLITE_DONE)
		goto unlock;
	sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
	step = sqlite3_step(s);
	if (step == SQLITE_ROW)
		o = delivery_json(s);
	store_done_stmt(s);
	if (step == SQLITE_DONE)
		rc = 1;
	else if (o && history_json(st, id, history) == 0)
		rc = 0;
	store_run_stmt(st->r[R_END]);
unlock:
	pthread_mutex_unlock(&st->rlock);
	if (rc == 0 && (json_object_set(o, "history", history) < 0 ||
			dump_json(o, out) < 0))
		rc = -1;
	json_decref(history);
	json_decref(o);
	return rc;
}
