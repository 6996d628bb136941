/*
 * sqlite_writer — the SQLite backend's writer thread and the operations
 * that queue work for it (accept, record_attempt, retry, cancel_inactive,
 * writable; see store.h for their contracts).
 *
 * DESIGN: one thread owns the write connection. Callers queue a job under
 * qlock; the writer takes every job queued at that moment, runs them in one
 * BEGIN IMMEDIATE transaction, each inside SAVEPOINT job (one failing job
 * is rolled back alone), prunes a bounded number of expired dedup rows and
 * COMMITs: one fsync (synchronous=FULL) for the whole batch (a batch of
 * attempt outcomes only skips the fsync, see set_sync_mode). Then it
 * completes the jobs: a blocking job's caller waits on the job's own
 * condition variable, an attempt job gets its callback. A failed COMMIT
 * (disk full, I/O error) is rolled back and fails every job of the batch;
 * the next batch simply tries again. After completing a batch the writer
 * checkpoints the WAL if it has grown, so no caller waits for that.
 */
#include "sqlite_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

#define PRUNE_PER_BATCH 256    /* expired dedup rows deleted per commit */
#define CHECKPOINT_FRAMES 1000 /* SQLite's default autocheckpoint size */

const char *const sqlite_writer_sql[W_COUNT] = {
    [W_BEGIN] = "BEGIN IMMEDIATE",
    [W_COMMIT] = "COMMIT",
    [W_ROLLBACK] = "ROLLBACK",
    [W_SAVEPOINT] = "SAVEPOINT job",
    [W_RELEASE] = "RELEASE job",
    [W_ROLLBACK_TO] = "ROLLBACK TO job",
    [W_DEDUP_GET] = "SELECT event_id FROM dedup"
		    " WHERE \"key\" = ?1 AND at > ?2",
    [W_DEDUP_PUT] = "INSERT OR REPLACE INTO dedup(\"key\", event_id, at)"
		    " VALUES (?1, ?2, ?3)",
    [W_DEDUP_PRUNE] = "DELETE FROM dedup WHERE rowid IN (SELECT rowid"
		      " FROM dedup WHERE at < ?1 ORDER BY at LIMIT ?2)",
    [W_EVENT_PUT] = "INSERT INTO events(id, body, accepted_at)"
		    " VALUES (?1, ?2, ?3)",
    [W_DELIVERY_PUT] = "INSERT INTO deliveries(id, event_id, \"trigger\","
		       " state, attempts, next_at, created_at,"
		       " accepted_at, updated_at) VALUES"
		       " (?1, ?2, ?3, 'pending', 0, ?4, ?4, ?4, ?4)",
    /* Both CASEs see the old row: an attempt that was in flight when a
     * reload cancelled its delivery must not revive it as pending. */
    [W_ATTEMPT_APPLY] = "UPDATE deliveries SET attempts = attempts + 1,"
			" last_status = ?1, last_error = ?2,"
			" updated_at = ?3, unsure = ?7, open_until = NULL,"
			" next_at = CASE WHEN ?4 = 'pending' AND"
			"  state <> 'cancelled' THEN ?5 END,"
			" state = CASE WHEN ?4 = 'pending' AND"
			"  state = 'cancelled' THEN state ELSE ?4 END"
			" WHERE id = ?6",
    [W_ATTEMPT_PUT] = "INSERT INTO attempts(delivery_id, at, status,"
		      " error, ms, response) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    [W_RETRY] = "UPDATE deliveries SET state = 'pending', attempts = 0,"
		" next_at = ?2, accepted_at = ?2, updated_at = ?2"
		" WHERE id = ?1 AND state IN ('failed', 'cancelled')",
    [W_EXISTS] = "SELECT 1 FROM deliveries WHERE id = ?1",
    [W_CANCEL] = "UPDATE deliveries SET state = 'cancelled',"
		 " next_at = NULL, updated_at = ?2"
		 " WHERE state = 'pending' AND \"trigger\" NOT IN"
		 " (SELECT value FROM json_each(?1)) RETURNING \"trigger\"",
    [W_PROBE] = "INSERT OR REPLACE INTO meta(\"key\", value)"
		" VALUES ('probe_at', ?1)",
    /* NULL keeps what is known: a poll learns the status, not the href */
    [W_RUN_SET] = "UPDATE deliveries SET run_id = ?2,"
		  " run_href = COALESCE(?3, run_href),"
		  " run_status = COALESCE(?4, run_status),"
		  " run_finished_at = COALESCE(?5, run_finished_at),"
		  " run_message = COALESCE(?6, run_message),"
		  " run_started_at = COALESCE(run_started_at, ?7),"
		  " poll_at = ?8, updated_at = ?9,"
		  " last_error = COALESCE(?10, last_error) WHERE id = ?1",
    /* fan-in progress: per (trigger, job) the latest counting event; a
     * replaced row gets a new rowid, so rowid is arrival order */
    [W_FANIN_PUT] = "INSERT OR REPLACE INTO fanin(\"trigger\", job,"
		    " event_id, at) VALUES (?1, ?2, ?3, ?4)",
    [W_FANIN_COUNTING] = "SELECT job, event_id FROM fanin"
			 " WHERE \"trigger\" = ?1 AND at > ?2"
			 " ORDER BY at, rowid",
    [W_FANIN_CLEAR] = "DELETE FROM fanin WHERE \"trigger\" = ?1",
    [W_FANIN_KEEP] = "DELETE FROM fanin WHERE \"trigger\" || char(10) || job"
		     " NOT IN (SELECT value FROM json_each(?1))",
    [W_OPEN_FIND] = "SELECT id FROM deliveries WHERE \"trigger\" = ?1"
		    " AND open_until > ?2 AND state = 'pending'"
		    " AND attempts = 0 ORDER BY rowid DESC LIMIT 1",
    [W_BATCHED_PUT] = "INSERT INTO deliveries(id, event_id, \"trigger\","
		      " state, attempts, next_at, created_at, accepted_at,"
		      " updated_at, batched, open_until) VALUES"
		      " (?1, ?2, ?3, 'pending', 0, ?4, ?5, ?5, ?5, 1, ?6)",
    [W_BATCH_ADD] = "INSERT INTO batch_events(delivery_id, seq, event_id)"
		    " SELECT ?1, COALESCE(MAX(seq) + 1, 0), ?2"
		    " FROM batch_events WHERE delivery_id = ?1",
    [W_BATCH_LATEST] = "UPDATE deliveries SET event_id = ?2, updated_at = ?3"
		       " WHERE id = ?1",
};

enum job_kind {
	JOB_ACCEPT,
	JOB_ATTEMPT,
	JOB_RUN,
	JOB_RETRY,
	JOB_CANCEL,
	JOB_FANIN_KEEP,
	JOB_PROBE
};

/* A store_run copied into a job. */
struct run_copy {
	int has;
	int64_t id, started_at_ms, poll_at_ms;
	char *href, *status, *finished_at, *message;
};

/* One change for the writer. Blocking jobs live on their caller's stack;
 * attempt jobs are heap copies freed by the writer after their callback. */
struct job {
	enum job_kind kind;
	struct job *next;
	int rc;	  /* the job's result; -1 if its batch did not commit */
	int done; /* blocking jobs: set under qlock once rc is final */
	pthread_cond_t cond;
	union {
		struct {
			const struct store_event_in *in;
			struct store_event_out *out;
		} acc;
		struct {
			char *id, *error, *response;
			size_t response_len;
			int status;
			int64_t at_ms, ms, next_at_ms;
			int unsure;
			struct run_copy run;
			enum store_state state;
			void (*done)(void *ctx, int rc);
			void *ctx;
		} att;
		struct {
			const char *id;
			int64_t now_ms;
		} retry;
		struct { /* also JOB_FANIN_KEEP's (each NULL) */
			const char *active_json;
			void (*each)(void *ctx, const char *trigger);
			void *ctx;
		} cancel;
	} u;
};

/* Replaces the automatic checkpoint: only notes the WAL's size. */
int sqlite_writer_wal_hook(void *arg, sqlite3 *db, const char *name, int frames)
{
	struct sqlite_store *st = arg;

	st->wal_frames = frames;
	return SQLITE_OK;
}

/* Inserts a pending delivery of trigger for event_id, due at due, with
 * its id into id. A batched one (SPEC section 9) takes joiners until
 * open_until (-1: none, a fan-in's); its batch rows are the caller's. 0,
 * or -1. */
static int put_delivery(struct sqlite_store *st, const char *event_id,
			const char *trigger, int64_t now, int64_t due,
			int batched, int64_t open_until, char id[UTIL_ID_LEN])
{
	sqlite3_stmt *s = st->w[batched ? W_BATCHED_PUT : W_DELIVERY_PUT];

	util_new_id(id, "dl");
	sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, event_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 3, trigger, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 4, due);
	if (batched) {
		sqlite3_bind_int64(s, 5, now);
		if (open_until >= 0)
			sqlite3_bind_int64(s, 6, open_until);
	}
	return sqlite_store_run_stmt(s) == SQLITE_DONE ? 0 : -1;
}

/* Appends event_id to delivery id's batch. 0, or -1. */
static int batch_add(struct sqlite_store *st, const char *id,
		     const char *event_id)
{
	sqlite3_stmt *s = st->w[W_BATCH_ADD];

	sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, event_id, -1, SQLITE_STATIC);
	return sqlite_store_run_stmt(s) == SQLITE_DONE ? 0 : -1;
}

static int is_listed(const char *job, const char *const *jobs, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(job, jobs[i]) == 0)
			return 1;
	return 0;
}

/*
 * Counts the event toward trigger i's fan-in (SPEC section 9): it becomes
 * its job's latest event; when every job has a counting event, they make
 * one delivery (this event, the latest, last) and the set starts over.
 */
static int accept_fanin(struct sqlite_store *st,
			const struct store_event_in *in,
			struct store_event_out *out, size_t i, int64_t now)
{
	const struct store_batching *b = &in->batching[i];
	const char *trigger = in->triggers[i];
	struct store_result *r = &out->results[i];
	sqlite3_stmt *s = st->w[W_FANIN_PUT];
	char (*ids)[UTIL_ID_LEN] = NULL;
	size_t n = 0;
	int step, rc = -1;

	sqlite3_bind_text(s, 1, trigger, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, in->job_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 3, out->event_id, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 4, now);
	if (sqlite_store_run_stmt(s) != SQLITE_DONE)
		return -1;
	if (!(ids = calloc(b->njobs, UTIL_ID_LEN)))
		return -1;
	s = st->w[W_FANIN_COUNTING];
	sqlite3_bind_text(s, 1, trigger, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 2, b->within_ms > 0
				     ? sqlite_store_window_start(now, b->within_ms)
				     : INT64_MIN);
	while ((step = sqlite3_step(s)) == SQLITE_ROW)
		if (n < b->njobs &&
		    is_listed((const char *)sqlite3_column_text(s, 0), b->jobs,
			      b->njobs))
			snprintf(ids[n++], UTIL_ID_LEN, "%s",
				 sqlite3_column_text(s, 1));
	sqlite_store_done_stmt(s);
	if (step != SQLITE_DONE)
		goto out;
	if (n < b->njobs) {
		*r = (struct store_result){STORE_WAITING, (int)n, (int)b->njobs};
		out->delivery_ids[i][0] = '\0';
		rc = 0;
		goto out;
	}
	if (put_delivery(st, out->event_id, trigger, now, now, 1, -1,
			 out->delivery_ids[i]) < 0)
		goto out;
	for (size_t k = 0; k < n; k++)
		if (batch_add(st, out->delivery_ids[i], ids[k]) < 0)
			goto out;
	s = st->w[W_FANIN_CLEAR];
	sqlite3_bind_text(s, 1, trigger, -1, SQLITE_STATIC);
	if (sqlite_store_run_stmt(s) != SQLITE_DONE)
		goto out;
	*r = (struct store_result){STORE_NEW, (int)n, (int)b->njobs};
	rc = 0;
out:
	free(ids);
	return rc;
}

/*
 * Adds the event to trigger i's open coalescing batch, whose request is
 * then rendered from it (the latest), or opens a batch: a delivery due at
 * the window's end (SPEC section 9).
 */
static int accept_coalesce(struct sqlite_store *st,
			   const struct store_event_in *in,
			   struct store_event_out *out, size_t i, int64_t now)
{
	int64_t w = in->batching[i].coalesce_ms;
	char *id = out->delivery_ids[i];
	sqlite3_stmt *s = st->w[W_OPEN_FIND];
	int step;

	sqlite3_bind_text(s, 1, in->triggers[i], -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 2, now);
	step = sqlite3_step(s);
	if (step == SQLITE_ROW)
		snprintf(id, UTIL_ID_LEN, "%s", sqlite3_column_text(s, 0));
	sqlite_store_done_stmt(s);
	if (step == SQLITE_DONE) {
		if (put_delivery(st, out->event_id, in->triggers[i], now,
				 now + w, 1, now + w - store_coalesce_close_ms(w),
				 id) < 0)
			return -1;
		return batch_add(st, id, out->event_id);
	}
	if (step != SQLITE_ROW || batch_add(st, id, out->event_id) < 0)
		return -1;
	s = st->w[W_BATCH_LATEST];
	sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, out->event_id, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 3, now);
	if (sqlite_store_run_stmt(s) != SQLITE_DONE)
		return -1;
	out->results[i].outcome = STORE_JOINED;
	return 0;
}

/* Stores the event and its deliveries unless the key is a duplicate. The
 * dedup row is written only when there is a delivery: SPEC remembers keys
 * of accepted (202) events only, and an event that matched nothing is not
 * one. */
static int apply_accept(struct sqlite_store *st, struct job *j, int64_t now)
{
	const struct store_event_in *in = j->u.acc.in;
	struct store_event_out *out = j->u.acc.out;
	int dedup = in->dedup_key && in->dedup_window_ms > 0;
	sqlite3_stmt *s;

	out->duplicate = 0;
	if (dedup) {
		int64_t since = sqlite_store_window_start(now, in->dedup_window_ms);
		int r = sqlite_store_dedup_find(st->w[W_DEDUP_GET], in->dedup_key,
					 since, out->event_id);
		if (r != 0) {
			out->duplicate = r == 1;
			return r < 0 ? -1 : 0;
		}
	}
	util_new_id(out->event_id, "ev");
	s = st->w[W_EVENT_PUT];
	sqlite3_bind_text(s, 1, out->event_id, -1, SQLITE_STATIC);
	/* a non-NULL pointer keeps an empty body an empty blob, not NULL */
	sqlite3_bind_blob64(s, 2, in->body ? in->body : "", in->body_len,
			    SQLITE_STATIC);
	sqlite3_bind_int64(s, 3, now);
	if (sqlite_store_run_stmt(s) != SQLITE_DONE)
		return -1;
	for (size_t i = 0; i < in->ntriggers; i++) {
		const struct store_batching *b =
		    in->batching ? &in->batching[i] : NULL;
		int rc;

		if (b && b->jobs)
			rc = accept_fanin(st, in, out, i, now);
		else if (b && b->coalesce_ms > 0)
			rc = accept_coalesce(st, in, out, i, now);
		else
			rc = put_delivery(st, out->event_id, in->triggers[i],
					  now, now, 0, -1,
					  out->delivery_ids[i]);
		if (rc < 0)
			return -1;
	}
	if (!dedup || in->ntriggers == 0)
		return 0;
	s = st->w[W_DEDUP_PUT];
	sqlite3_bind_text(s, 1, in->dedup_key, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, out->event_id, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 3, now);
	if (sqlite_store_run_stmt(s) != SQLITE_DONE)
		return -1;
	if (in->dedup_window_ms > st->max_window_ms)
		st->max_window_ms = in->dedup_window_ms;
	return 0;
}

/* Sets the delivery's run (and last_error when the job has an error and
 * is a JOB_RUN). */
static int apply_run(struct sqlite_store *st, struct job *j, int64_t now)
{
	sqlite3_stmt *s = st->w[W_RUN_SET];
	const struct run_copy *r = &j->u.att.run;

	sqlite3_bind_text(s, 1, j->u.att.id, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 2, r->id);
	sqlite_store_bind_opt_text(s, 3, r->href);
	sqlite_store_bind_opt_text(s, 4, r->status);
	sqlite_store_bind_opt_text(s, 5, r->finished_at);
	sqlite_store_bind_opt_text(s, 6, r->message);
	sqlite3_bind_int64(s, 7, r->started_at_ms);
	if (r->poll_at_ms >= 0)
		sqlite3_bind_int64(s, 8, r->poll_at_ms);
	sqlite3_bind_int64(s, 9, now);
	if (j->kind == JOB_RUN)
		sqlite_store_bind_opt_text(s, 10, j->u.att.error);
	if (sqlite_store_run_stmt(s) != SQLITE_DONE)
		return -1;
	return sqlite3_changes(st->wdb) ? 0 : -1;
}

/* Moves the delivery, then appends the attempt to its history; an unknown
 * id fails the job. */
static int apply_attempt(struct sqlite_store *st, struct job *j, int64_t now)
{
	sqlite3_stmt *s = st->w[W_ATTEMPT_APPLY];

	if (j->u.att.status > 0)
		sqlite3_bind_int(s, 1, j->u.att.status);
	sqlite_store_bind_opt_text(s, 2, j->u.att.error);
	sqlite3_bind_int64(s, 3, now);
	sqlite3_bind_text(s, 4, store_state_name(j->u.att.state), -1,
			  SQLITE_STATIC);
	sqlite3_bind_int64(s, 5, j->u.att.next_at_ms);
	sqlite3_bind_text(s, 6, j->u.att.id, -1, SQLITE_STATIC);
	sqlite3_bind_int(s, 7, j->u.att.unsure);
	if (sqlite_store_run_stmt(s) != SQLITE_DONE)
		return -1;
	if (sqlite3_changes(st->wdb) == 0) {
		log_kv(LOG_WARN, "attempt for an unknown delivery", "delivery",
		       j->u.att.id, LOG_END);
		return -1;
	}
	s = st->w[W_ATTEMPT_PUT];
	sqlite3_bind_text(s, 1, j->u.att.id, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 2, j->u.att.at_ms);
	if (j->u.att.status > 0)
		sqlite3_bind_int(s, 3, j->u.att.status);
	sqlite_store_bind_opt_text(s, 4, j->u.att.error);
	sqlite3_bind_int64(s, 5, j->u.att.ms);
	if (j->u.att.response)
		sqlite3_bind_blob64(s, 6, j->u.att.response,
				    j->u.att.response_len, SQLITE_STATIC);
	if (sqlite_store_run_stmt(s) != SQLITE_DONE)
		return -1;
	return j->u.att.run.has ? apply_run(st, j, now) : 0;
}

static int apply_retry(struct sqlite_store *st, struct job *j)
{
	sqlite3_stmt *s = st->w[W_RETRY];
	int rc;

	sqlite3_bind_text(s, 1, j->u.retry.id, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 2, j->u.retry.now_ms);
	if (sqlite_store_run_stmt(s) != SQLITE_DONE)
		return -1;
	if (sqlite3_changes(st->wdb) > 0)
		return 0;
	s = st->w[W_EXISTS];
	sqlite3_bind_text(s, 1, j->u.retry.id, -1, SQLITE_STATIC);
	rc = sqlite3_step(s);
	sqlite_store_done_stmt(s);
	return rc == SQLITE_ROW ? 2 : rc == SQLITE_DONE ? 1 : -1;
}

static int apply_simple(struct sqlite_store *st, struct job *j, int64_t now)
{
	sqlite3_stmt *s;

	if (j->kind == JOB_CANCEL) {
		s = st->w[W_CANCEL];
		sqlite3_bind_text(s, 1, j->u.cancel.active_json, -1,
				  SQLITE_STATIC);
		sqlite3_bind_int64(s, 2, now);
		int n = 0, rc;
		while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
			if (j->u.cancel.each)
				j->u.cancel.each(
					j->u.cancel.ctx,
					(const char *)sqlite3_column_text(s, 0));
			n++;
		}
		sqlite_store_done_stmt(s);
		return rc == SQLITE_DONE ? n : -1;
	}
	if (j->kind == JOB_FANIN_KEEP) {
		s = st->w[W_FANIN_KEEP];
		sqlite3_bind_text(s, 1, j->u.cancel.active_json, -1,
				  SQLITE_STATIC);
		return sqlite_store_run_stmt(s) == SQLITE_DONE ? 0 : -1;
	}
	s = st->w[W_PROBE];
	sqlite3_bind_int64(s, 1, now);
	return sqlite_store_run_stmt(s) == SQLITE_DONE ? 0 : -1;
}

/* Runs one job inside its own savepoint: its result, or -1 with every
 * change it made undone. */
static int run_job(struct sqlite_store *st, struct job *j, int64_t now)
{
	int rc;

	if (sqlite_store_run_stmt(st->w[W_SAVEPOINT]) != SQLITE_DONE)
		return -1;
	switch (j->kind) {
	case JOB_ACCEPT: rc = apply_accept(st, j, now); break;
	case JOB_ATTEMPT: rc = apply_attempt(st, j, now); break;
	case JOB_RUN: rc = apply_run(st, j, now); break;
	case JOB_RETRY: rc = apply_retry(st, j); break;
	default: rc = apply_simple(st, j, now); break;
	}
	if (rc < 0)
		sqlite_store_run_stmt(st->w[W_ROLLBACK_TO]);
	sqlite_store_run_stmt(st->w[W_RELEASE]);
	return rc;
}

/* Deletes a bounded number of dedup rows older than the largest window
 * any accept has used, so the table does not grow without end. */
static void prune_dedup(struct sqlite_store *st, int64_t now)
{
	sqlite3_stmt *s = st->w[W_DEDUP_PRUNE];

	if (st->max_window_ms <= 0)
		return;
	sqlite3_bind_int64(s, 1, sqlite_store_window_start(now, st->max_window_ms));
	sqlite3_bind_int(s, 2, PRUNE_PER_BATCH);
	sqlite_store_run_stmt(s); /* a failure here only delays pruning */
}

static void fail_batch(struct job *batch)
{
	for (struct job *j = batch; j; j = j->next)
		j->rc = -1;
}

/*
 * A batch of attempt outcomes only is committed with synchronous=NORMAL:
 * it survives a crash of the process (the WAL is in the kernel's cache)
 * and, should the machine lose power first, the attempt is simply made
 * again (at-least-once). Everything else — accepted events above all —
 * waits for the fsync of synchronous=FULL. The mode is switched only when
 * it changes.
 */
static void set_sync_mode(struct sqlite_store *st, const struct job *batch)
{
	int full = 0;
	for (const struct job *j = batch; j && !full; j = j->next)
		full = j->kind != JOB_ATTEMPT && j->kind != JOB_RUN;
	if (full == st->sync_full)
		return;
	if (sqlite3_exec(st->wdb, full ? "PRAGMA synchronous = FULL"
				       : "PRAGMA synchronous = NORMAL",
			 NULL, NULL, NULL) == SQLITE_OK)
		st->sync_full = full;
}

/* Commits every job of batch in one transaction, or none of them. */
static void run_batch(struct sqlite_store *st, struct job *batch)
{
	int64_t now = util_now_ms();
	int rc;

	/* a file deleted under us would take every commit with it */
	if (sqlite_file_gone(st)) {
		fail_batch(batch);
		return;
	}
	set_sync_mode(st, batch);

	/* a transaction left open by a failed ROLLBACK would block BEGIN */
	if (!sqlite3_get_autocommit(st->wdb))
		sqlite_store_run_stmt(st->w[W_ROLLBACK]);
	rc = sqlite_store_run_stmt(st->w[W_BEGIN]);
	for (struct job *j = batch; rc == SQLITE_DONE && j; j = j->next) {
		j->rc = run_job(st, j, now);
		/* On disk full or I/O errors SQLite may roll back the whole
		 * transaction by itself: then earlier jobs are gone too. */
		if (j->rc < 0 && sqlite3_get_autocommit(st->wdb))
			rc = sqlite3_errcode(st->wdb);
	}
	if (rc == SQLITE_DONE) {
		prune_dedup(st, now);
		rc = sqlite_store_run_stmt(st->w[W_COMMIT]);
	}
	if (rc == SQLITE_DONE) {
		if (st->failing)
			log_kv(LOG_INFO, "store commits again", LOG_END);
		st->failing = 0;
		return;
	}
	if (!sqlite3_get_autocommit(st->wdb))
		sqlite_store_run_stmt(st->w[W_ROLLBACK]);
	fail_batch(batch);
	/* Logged once when commits start failing, not at every request or
	 * readiness probe while the disk stays full. */
	if (!st->failing)
		log_kv(LOG_ERROR, "store cannot commit", "error",
		       sqlite3_errstr(rc), LOG_END);
	st->failing = 1;
}

static void job_free(struct job *j)
{
	free(j->u.att.id);
	free(j->u.att.error);
	free(j->u.att.response);
	free(j->u.att.run.href);
	free(j->u.att.run.status);
	free(j->u.att.run.finished_at);
	free(j->u.att.run.message);
	free(j);
}

/* Hands every job its result. A blocking job's owner may free it as soon
 * as qlock is released, so next is read before. */
static void finish_batch(struct sqlite_store *st, struct job *batch)
{
	struct job *next;

	for (struct job *j = batch; j; j = next) {
		next = j->next;
		if (j->kind == JOB_ATTEMPT || j->kind == JOB_RUN) {
			if (j->u.att.done)
				j->u.att.done(j->u.att.ctx, j->rc < 0 ? -1 : 0);
			job_free(j);
			continue;
		}
		pthread_mutex_lock(&st->qlock);
		j->done = 1;
		pthread_cond_signal(&j->cond);
		pthread_mutex_unlock(&st->qlock);
	}
}

void *sqlite_writer_main(void *arg)
{
	struct sqlite_store *st = arg;
	struct job *batch;

	pthread_mutex_lock(&st->qlock);
	for (;;) {
		while (!st->head && !st->stopping)
			pthread_cond_wait(&st->qcond, &st->qlock);
		if (!st->head)
			break;
		/* Take everything queued: it all shares one commit. */
		batch = st->head;
		st->head = st->tail = NULL;
		pthread_mutex_unlock(&st->qlock);
		run_batch(st, batch);
		finish_batch(st, batch);
		if (st->wal_frames >= CHECKPOINT_FRAMES) {
			/* if it fails (disk full), a later batch retries */
			sqlite3_wal_checkpoint_v2(st->wdb, NULL,
						  SQLITE_CHECKPOINT_PASSIVE,
						  NULL, NULL);
			st->wal_frames = 0;
		}
		pthread_mutex_lock(&st->qlock);
	}
	pthread_mutex_unlock(&st->qlock);
	return NULL;
}

/* ---- submitting jobs (any thread) ---- */

static void enqueue_locked(struct sqlite_store *st, struct job *j)
{
	j->next = NULL;
	if (st->tail)
		st->tail->next = j;
	else
		st->head = j;
	st->tail = j;
	pthread_cond_signal(&st->qcond);
}

/* Queues j and waits until its batch is committed or failed; j->rc. */
static int submit_wait(struct sqlite_store *st, struct job *j)
{
	int rc = -1;

	pthread_cond_init(&j->cond, NULL);
	j->done = 0;
	pthread_mutex_lock(&st->qlock);
	if (!st->stopping) {
		enqueue_locked(st, j);
		while (!j->done)
			pthread_cond_wait(&j->cond, &st->qlock);
		rc = j->rc;
	}
	pthread_mutex_unlock(&st->qlock);
	pthread_cond_destroy(&j->cond);
	return rc;
}

int sqlite_writer_accept(struct store *s, const struct store_event_in *in,
			 struct store_event_out *out)
{
	struct job j = {.kind = JOB_ACCEPT, .u.acc = {in, out}};

	return submit_wait(sqlite_of(s), &j) < 0 ? -1 : 0;
}

int sqlite_writer_writable(struct store *s)
{
	struct job j = {.kind = JOB_PROBE};

	return submit_wait(sqlite_of(s), &j) == 0;
}

static char *dup_opt(const char *s, int *oom)
{
	char *c = s ? strdup(s) : NULL;

	if (s && !c)
		*oom = 1;
	return c;
}

static int copy_run(struct run_copy *c, const struct store_run *r)
{
	int oom = 0;

	c->has = 1;
	c->id = r->id;
	c->started_at_ms = r->started_at_ms;
	c->poll_at_ms = r->poll_at_ms;
	c->href = dup_opt(r->href, &oom);
	c->status = dup_opt(r->status, &oom);
	c->finished_at = dup_opt(r->finished_at, &oom);
	c->message = dup_opt(r->status_message, &oom);
	return oom ? -1 : 0;
}

/* Queues heap job j with its callback: 0, or -1 (j freed, done not
 * called). */
static int submit_async(struct sqlite_store *st, struct job *j,
			void (*done)(void *ctx, int rc), void *ctx)
{
	j->u.att.done = done;
	j->u.att.ctx = ctx;
	pthread_mutex_lock(&st->qlock);
	if (!st->stopping) {
		enqueue_locked(st, j);
		j = NULL;
	}
	pthread_mutex_unlock(&st->qlock);
	if (!j)
		return 0;
	job_free(j);
	return -1;
}

/*
 * Queues the attempt (copying everything it needs) and returns at once:
 * 0 if queued, and done will be called from the writer thread; -1 if it
 * could not be queued (out of memory, store closing), and done will NOT be
 * called. done must not call a blocking store function.
 */
int sqlite_writer_record_attempt(struct store *s, const char *id,
				 const struct store_attempt *a,
				 enum store_state state, int64_t next_at_ms,
				 void (*done)(void *ctx, int rc), void *ctx)
{
	struct sqlite_store *st = sqlite_of(s);
	struct job *j = calloc(1, sizeof *j);
	size_t rlen = a->response ? a->response_len : 0;

	if (!j)
		return -1;
	j->kind = JOB_ATTEMPT;
	j->u.att.id = strdup(id);
	j->u.att.error = a->error ? strdup(a->error) : NULL;
	if (rlen > STORE_RESPONSE_MAX)
		rlen = STORE_RESPONSE_MAX;
	j->u.att.response = a->response ? malloc(rlen + 1) : NULL;
	if (!j->u.att.id || (a->error && !j->u.att.error) ||
	    (a->response && !j->u.att.response))
		goto fail;
	if (j->u.att.response)
		memcpy(j->u.att.response, a->response, rlen);
	j->u.att.response_len = rlen;
	j->u.att.status = a->status;
	j->u.att.at_ms = a->at_ms;
	j->u.att.ms = a->ms;
	j->u.att.state = state;
	j->u.att.next_at_ms = next_at_ms;
	j->u.att.unsure = a->unsure;
	if (a->run && copy_run(&j->u.att.run, a->run) < 0)
		goto fail;
	return submit_async(st, j, done, ctx);
fail:
	job_free(j);
	return -1;
}

int sqlite_writer_record_run(struct store *s, const char *id,
			     const struct store_run *run, const char *error,
			     void (*done)(void *ctx, int rc), void *ctx)
{
	struct job *j = calloc(1, sizeof *j);

	if (!j)
		return -1;
	j->kind = JOB_RUN;
	j->u.att.id = strdup(id);
	j->u.att.error = error ? strdup(error) : NULL;
	if (!j->u.att.id || (error && !j->u.att.error) ||
	    copy_run(&j->u.att.run, run) < 0) {
		job_free(j);
		return -1;
	}
	return submit_async(sqlite_of(s), j, done, ctx);
}

int sqlite_writer_retry(struct store *s, const char *id, int64_t now_ms)
{
	struct job j = {.kind = JOB_RETRY, .u.retry = {id, now_ms}};

	return submit_wait(sqlite_of(s), &j);
}

int sqlite_writer_cancel_inactive(struct store *s, const char *const *active,
				  size_t nactive,
				  void (*each)(void *ctx, const char *trigger),
				  void *ctx)
{
	struct sqlite_store *st = sqlite_of(s);
	struct job j = {.kind = JOB_CANCEL};
	char *list = sqlite_store_json_list(active, nactive);
	int rc;

	if (!list)
		return -1;
	j.u.cancel.active_json = list;
	j.u.cancel.each = each;
	j.u.cancel.ctx = ctx;
	rc = submit_wait(st, &j);
	free(list);
	return rc;
}

/* The pairs go to SQL as one JSON list of "trigger\njob" strings (a
 * trigger name has no newline: config names are one line). */
int sqlite_writer_fanin_keep(struct store *s, const char *const *triggers,
			     const char *const *jobs, size_t n)
{
	struct job j = {.kind = JOB_FANIN_KEEP};
	char **pairs = calloc(n ? n : 1, sizeof *pairs);
	char *list = NULL;
	int rc = -1;

	for (size_t i = 0; pairs && i < n; i++) {
		size_t a = strlen(triggers[i]), b = strlen(jobs[i]);
		if (!(pairs[i] = malloc(a + b + 2)))
			goto out;
		memcpy(pairs[i], triggers[i], a);
		pairs[i][a] = '\n';
		memcpy(pairs[i] + a + 1, jobs[i], b + 1);
	}
	if (!pairs || !(list = sqlite_store_json_list(
			    (const char *const *)pairs, n)))
		goto out;
	j.u.cancel.active_json = list;
	rc = submit_wait(sqlite_of(s), &j);
out:
	for (size_t i = 0; pairs && i < n; i++)
		free(pairs[i]);
	free(pairs);
	free(list);
	return rc;
}
