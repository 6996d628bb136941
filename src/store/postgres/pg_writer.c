/*
 * pg_writer — the PostgreSQL backend's writer thread and the operations
 * that queue work for it (accept, record_attempt, record_run, retry,
 * cancel_inactive, writable; store.h has their contracts).
 *
 * DESIGN: one thread owns the write connection. Callers queue a job under
 * qlock; the writer takes every job queued at that moment (at most
 * MAX_BATCH) and sends them as one pipeline: BEGIN, one statement per job
 * (two for an attempt that carries a run), a bounded dedup prune, COMMIT,
 * then one Sync — one round trip and one WAL flush for the whole batch
 * (group commit). A batch of attempt outcomes only commits with
 * synchronous_commit off: a lost outcome means the attempt is made again
 * (at-least-once), while an accepted event always waits for the flush
 * (and for synchronous standbys, if the server has them), so a 202 is
 * never answered for an event the database could lose.
 *
 * When a statement fails (a deadlock with another instance, a value the
 * server refuses) the whole transaction is rolled back and, if the
 * connection is fine, each job of the batch is run again alone, so one
 * bad job fails alone. When the connection is broken every job of the
 * batch fails (-1: 503 for accepts) and the next batch reconnects.
 *
 * Between batches the writer renews the leases this instance holds
 * (every lease/3), so a delivery waiting in the dispatcher's ready list
 * or a long attempt is never taken over while this process lives; a dead
 * process's leases simply run out. At close it gives its leases back.
 */
#include "pg_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"

#define MAX_BATCH 256       /* jobs per transaction */
#define PRUNE_PER_BATCH 256 /* expired dedup rows deleted per commit */

static const char SQL_ACCEPT[] =
    "SELECT triggerd_accept($1, $2, $3, $4, $5, $6::text[], $7::text[])";
/* Both CASEs see the old row: an attempt that was in flight when a reload
 * cancelled its delivery must not revive it as pending. */
static const char SQL_ATTEMPT[] =
    "WITH u AS (UPDATE deliveries SET attempts = attempts + 1,"
    " last_status = $1::integer, last_error = $2, updated_at = $3,"
    " unsure = $7::boolean,"
    " next_at = CASE WHEN $4::text = 'pending' AND state <> 'cancelled'"
    "  THEN $5::bigint END,"
    " state = CASE WHEN $4::text = 'pending' AND state = 'cancelled'"
    "  THEN state ELSE $4::text END,"
    " lease_until = NULL, lease_owner = NULL"
    " WHERE id = $6 RETURNING id)"
    " INSERT INTO attempts(delivery_id, at, status, error, ms, response)"
    " SELECT id, $8, $1::integer, $2, $9, $10::bytea FROM u RETURNING 1";
/* NULL keeps what is known: a poll learns the status, not the href */
static const char SQL_RUN[] =
    "UPDATE deliveries SET run_id = $2,"
    " run_href = COALESCE($3, run_href),"
    " run_status = COALESCE($4, run_status),"
    " run_finished_at = COALESCE($5, run_finished_at),"
    " run_message = COALESCE($6, run_message),"
    " run_started_at = COALESCE(run_started_at, $7),"
    " poll_at = $8, updated_at = $9,"
    " last_error = COALESCE($10, last_error),"
    " lease_until = NULL, lease_owner = NULL WHERE id = $1 RETURNING 1";
static const char SQL_RETRY[] =
    "WITH u AS (UPDATE deliveries SET state = 'pending', attempts = 0,"
    " next_at = $2, accepted_at = $2, updated_at = $2,"
    " lease_until = NULL, lease_owner = NULL"
    " WHERE id = $1 AND state IN ('failed', 'cancelled') RETURNING 1)"
    " SELECT (SELECT count(*) FROM u),"
    " EXISTS (SELECT 1 FROM deliveries WHERE id = $1)";
static const char SQL_CANCEL[] =
    "UPDATE deliveries SET state = 'cancelled', next_at = NULL,"
    " updated_at = $2 WHERE state = 'pending'"
    " AND NOT (\"trigger\" = ANY ($1::text[])) RETURNING \"trigger\"";
/* An xid makes the COMMIT write and flush WAL: the probe commits for
 * real, and fails on a standby or a server that cannot write. */
static const char SQL_PROBE[] = "SELECT pg_current_xact_id()";
static const char SQL_PRUNE[] =
    "DELETE FROM dedup WHERE \"key\" IN (SELECT \"key\" FROM dedup"
    " WHERE at < $1 ORDER BY at LIMIT $2 FOR UPDATE SKIP LOCKED)";
static const char SQL_BEAT[] =
    "UPDATE deliveries SET lease_until = $2"
    " WHERE lease_owner = $1 AND lease_until IS NOT NULL";
static const char SQL_GIVE_BACK[] =
    "UPDATE deliveries SET lease_until = NULL, lease_owner = NULL,"
    " unsure = unsure OR state = 'pending' WHERE lease_owner = $1";

enum job_kind {
	JOB_ACCEPT,
	JOB_ATTEMPT,
	JOB_RUN,
	JOB_RETRY,
	JOB_CANCEL,
	JOB_PROBE
};

/* A store_run copied into a job. */
struct run_copy {
	int has;
	int64_t id, started_at_ms, poll_at_ms;
	char *href, *status, *finished_at, *message;
};

/* One change for the writer. Blocking jobs live on their caller's stack;
 * attempt and run jobs are heap copies freed by the writer after their
 * callback. */
struct job {
	enum job_kind kind;
	struct job *next;
	int nstmt; /* statements sent for it in the current pipeline */
	int rc;	   /* the job's result; -1 if its batch did not commit */
	int done;  /* blocking jobs: set under qlock once rc is final */
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
		struct {
			const char *const *active;
			size_t nactive;
			void (*each)(void *ctx, const char *trigger);
			void *ctx;
		} cancel;
	} u;
};

/* ---- sending one job's statements (in the pipeline) ---- */

static int send(PGconn *c, const char *sql, const struct pg_params *p)
{
	return PQsendQueryParams(c, sql, p ? p->n : 0, NULL, p ? p->v : NULL,
				 p ? p->len : NULL, p ? p->fmt : NULL, 0)
		       ? 1
		       : -1;
}

static int send_accept(PGconn *c, struct job *j, int64_t now)
{
	const struct store_event_in *in = j->u.acc.in;
	struct store_event_out *out = j->u.acc.out;
	struct pg_params p = {0};
	char *trigs = NULL, *ids = NULL;
	const char **idv = NULL;
	int dedup = in->dedup_key && in->dedup_window_ms > 0, rc = -1;

	util_new_id(out->event_id, "ev");
	if (in->ntriggers && !(idv = calloc(in->ntriggers, sizeof *idv)))
		return -1;
	for (size_t i = 0; i < in->ntriggers; i++) {
		util_new_id(out->delivery_ids[i], "dl");
		idv[i] = out->delivery_ids[i];
	}
	pg_p_text(&p, out->event_id);
	pg_p_bin(&p, in->body, in->body_len);
	pg_p_int(&p, now);
	pg_p_text(&p, dedup ? in->dedup_key : NULL);
	pg_p_int(&p, pg_window_start(now, in->dedup_window_ms));
	if (pg_p_array(&p, in->triggers, in->ntriggers, &trigs) == 0 &&
	    pg_p_array(&p, idv, in->ntriggers, &ids) == 0)
		rc = send(c, SQL_ACCEPT, &p);
	free(trigs);
	free(ids);
	free(idv);
	return rc;
}

static int send_run(PGconn *c, struct job *j, int64_t now)
{
	const struct run_copy *r = &j->u.att.run;
	struct pg_params p = {0};

	pg_p_text(&p, j->u.att.id);
	pg_p_int(&p, r->id);
	pg_p_text(&p, r->href);
	pg_p_text(&p, r->status);
	pg_p_text(&p, r->finished_at);
	pg_p_text(&p, r->message);
	pg_p_int(&p, r->started_at_ms);
	if (r->poll_at_ms >= 0)
		pg_p_int(&p, r->poll_at_ms);
	else
		pg_p_text(&p, NULL);
	pg_p_int(&p, now);
	pg_p_text(&p, j->kind == JOB_RUN ? j->u.att.error : NULL);
	return send(c, SQL_RUN, &p);
}

static int send_attempt(PGconn *c, struct job *j, int64_t now)
{
	struct pg_params p = {0};

	if (j->u.att.status > 0)
		pg_p_int(&p, j->u.att.status);
	else
		pg_p_text(&p, NULL);
	pg_p_text(&p, j->u.att.error);
	pg_p_int(&p, now);
	pg_p_text(&p, store_state_name(j->u.att.state));
	pg_p_int(&p, j->u.att.next_at_ms);
	pg_p_text(&p, j->u.att.id);
	pg_p_text(&p, j->u.att.unsure ? "1" : "0");
	pg_p_int(&p, j->u.att.at_ms);
	pg_p_int(&p, j->u.att.ms);
	if (j->u.att.response)
		pg_p_bin(&p, j->u.att.response, j->u.att.response_len);
	else
		pg_p_text(&p, NULL);
	if (send(c, SQL_ATTEMPT, &p) < 0)
		return -1;
	if (!j->u.att.run.has)
		return 1;
	return send_run(c, j, now) < 0 ? -1 : 2;
}

/* Sends j's statements; how many, or -1 if the connection broke. */
static int send_job(PGconn *c, struct job *j, int64_t now)
{
	struct pg_params p = {0};
	char *hold = NULL;
	int rc = -1;

	switch (j->kind) {
	case JOB_ACCEPT: return send_accept(c, j, now);
	case JOB_ATTEMPT: return send_attempt(c, j, now);
	case JOB_RUN: return send_run(c, j, now);
	case JOB_RETRY:
		pg_p_text(&p, j->u.retry.id);
		pg_p_int(&p, j->u.retry.now_ms);
		return send(c, SQL_RETRY, &p);
	case JOB_CANCEL:
		if (pg_p_array(&p, j->u.cancel.active, j->u.cancel.nactive,
			       &hold) == 0) {
			pg_p_int(&p, now);
			rc = send(c, SQL_CANCEL, &p);
		}
		free(hold);
		return rc;
	default: return send(c, SQL_PROBE, NULL);
	}
}

/* ---- reading results ---- */

/* The next statement's result (its terminating NULL consumed), or NULL if
 * the connection broke. */
static PGresult *next_result(PGconn *c)
{
	PGresult *r = PQgetResult(c), *end;

	if (r && PQresultStatus(r) != PGRES_PIPELINE_SYNC &&
	    (end = PQgetResult(c)) != NULL)
		PQclear(end); /* not expected: one result per statement */
	return r;
}

/* j's result from r (one of its statements, the k-th): the job's rc. */
static int read_job(struct pg_store *st, struct job *j, int k, PGresult *r)
{
	if (!pg_ok(r))
		return -1;
	switch (j->kind) {
	case JOB_ACCEPT: {
		struct store_event_out *out = j->u.acc.out;
		out->duplicate = PQntuples(r) == 1 && !PQgetisnull(r, 0, 0);
		if (out->duplicate)
			snprintf(out->event_id, UTIL_ID_LEN, "%s",
				 PQgetvalue(r, 0, 0));
		else if (j->u.acc.in->dedup_window_ms > st->max_window_ms &&
			 j->u.acc.in->dedup_key)
			st->max_window_ms = j->u.acc.in->dedup_window_ms;
		return 0;
	}
	case JOB_ATTEMPT:
		if (k == 0 && PQntuples(r) == 0) {
			log_kv(LOG_WARN, "attempt for an unknown delivery",
			       "delivery", j->u.att.id, LOG_END);
			return -1;
		}
		return 0;
	case JOB_RUN: return PQntuples(r) ? 0 : -1;
	case JOB_RETRY:
		if (pg_int(r, 0, 0) > 0)
			return 0;
		return strcmp(PQgetvalue(r, 0, 1), "t") == 0 ? 2 : 1;
	case JOB_CANCEL:
		for (int i = 0; i < PQntuples(r); i++)
			if (j->u.cancel.each)
				j->u.cancel.each(j->u.cancel.ctx,
						 PQgetvalue(r, i, 0));
		return PQntuples(r);
	default: return 0;
	}
}

static void fail_jobs(struct job *first, int n)
{
	struct job *j = first;

	for (int i = 0; i < n && j; i++, j = j->next)
		j->rc = -1;
}

/* 1 if the batch is attempt outcomes only (see the DESIGN comment). */
static int outcomes_only(struct job *first, int n)
{
	struct job *j = first;

	for (int i = 0; i < n && j; i++, j = j->next)
		if (j->kind != JOB_ATTEMPT && j->kind != JOB_RUN)
			return 0;
	return 1;
}

/* Reads the pipeline's results in order; 0 if everything committed. */
static int read_pipeline(struct pg_store *st, PGconn *c, struct job *first,
			 int n, int lazy, int prune)
{
	PGresult *r;
	int ok = 1, broken = 0;
	int nhead = 1 + lazy;
	struct job *j = first;

	for (int i = 0; i < nhead; i++) {
		r = next_result(c);
		broken |= !r;
		ok &= pg_ok(r);
		PQclear(r);
	}
	for (int i = 0; i < n && j && !broken; i++, j = j->next) {
		j->rc = 0;
		for (int k = 0; k < j->nstmt; k++) {
			r = next_result(c);
			if (!r) {
				broken = 1;
				break;
			}
			int rc = read_job(st, j, k, r);
			ok &= PQresultStatus(r) != PGRES_FATAL_ERROR &&
			      PQresultStatus(r) != PGRES_PIPELINE_ABORTED;
			if (k == 0 || rc < 0)
				j->rc = rc;
			PQclear(r);
		}
	}
	for (int i = 0; i < prune + 2 && !broken; i++) {
		/* the prune, COMMIT, then the Sync */
		r = next_result(c);
		broken |= !r;
		if (r && i < prune + 1)
			ok &= pg_ok(r);
		PQclear(r);
	}
	return broken ? -2 : ok ? 0 : -1;
}

/*
 * Runs n jobs from first as one pipelined transaction. 0 committed (each
 * job's rc set), -1 a statement failed and nothing was committed, -2 the
 * connection broke (dropped; the commit's fate may be unknown, so every
 * job failed).
 */
static int run_pipeline(struct pg_store *st, PGconn *c, struct job *first,
			int n, int64_t now)
{
	struct pg_params pp = {0};
	int lazy = outcomes_only(first, n), prune = st->max_window_ms > 0;
	int sent = 1, rc;
	struct job *j = first;

	if (!PQenterPipelineMode(c))
		return -2;
	sent &= send(c, "BEGIN", NULL) > 0;
	if (lazy)
		sent &= send(c, "SET LOCAL synchronous_commit = off", NULL) > 0;
	for (int i = 0; i < n && j && sent; i++, j = j->next) {
		j->nstmt = send_job(c, j, now);
		sent &= j->nstmt > 0;
	}
	if (prune && sent) {
		pg_p_int(&pp, pg_window_start(now, st->max_window_ms));
		pg_p_int(&pp, PRUNE_PER_BATCH);
		sent &= send(c, SQL_PRUNE, &pp) > 0;
	}
	sent = sent && send(c, "COMMIT", NULL) > 0 && PQpipelineSync(c);
	rc = sent ? read_pipeline(st, c, first, n, lazy, prune) : -2;
	if (rc == -2 || !PQexitPipelineMode(c))
		return -2;
	/* an error inside BEGIN leaves the block aborted past the Sync */
	if (PQtransactionStatus(c) != PQTRANS_IDLE)
		PQclear(pg_exec(c, "ROLLBACK", NULL));
	return rc;
}

/* Commits every job of batch (n of them), together when possible. */
static void run_batch(struct pg_store *st, struct job *batch, int n)
{
	int64_t now = util_now_ms();
	PGconn *c = pg_conn_get(st, &st->w);
	int rc = c ? run_pipeline(st, c, batch, n, now) : -2;

	if (rc == -1 && n > 1) {
		/* one job's failure must not fail the others: alone, each */
		rc = 0;
		for (struct job *j = batch; j && rc != -2; j = j->next) {
			int one = run_pipeline(st, c, j, 1, now);
			if (one < 0)
				j->rc = -1;
			if (one == -2)
				rc = -2;
		}
		if (rc == -2)
			fail_jobs(batch, n);
	} else if (rc < 0) {
		fail_jobs(batch, n);
	}
	if (rc == -2) {
		PQfinish(st->w.c);
		st->w.c = NULL;
	}
	if (rc != -2) {
		if (st->failing)
			log_kv(LOG_INFO, "store commits again", LOG_END);
		st->failing = 0;
		return;
	}
	/* Logged once when commits start failing, not at every request. */
	if (!st->failing)
		log_kv(LOG_ERROR, "store cannot commit", "error",
		       "the database connection is down", LOG_END);
	st->failing = 1;
}

/* Renews every lease this instance holds; a failure is retried at the
 * next beat (a lease outlives three beats). */
static void heartbeat(struct pg_store *st, int64_t now)
{
	int64_t lease = __atomic_load_n(&st->lease_ms, __ATOMIC_RELAXED);
	struct pg_params p = {0};
	PGconn *c = pg_conn_get(st, &st->w);

	st->beat_at_ms = now + (lease / 3 > 500 ? lease / 3 : 500);
	if (!c)
		return;
	pg_p_text(&p, st->owner);
	pg_p_int(&p, now + lease);
	PGresult *r = pg_exec(c, SQL_BEAT, &p);
	if (!pg_ok(r))
		pg_conn_check(&st->w);
	PQclear(r);
}

static void give_back(struct pg_store *st)
{
	struct pg_params p = {0};
	PGconn *c = pg_conn_get(st, &st->w);

	if (!c)
		return;
	pg_p_text(&p, st->owner);
	PQclear(pg_exec(c, SQL_GIVE_BACK, &p));
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
static void finish_batch(struct pg_store *st, struct job *batch)
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

/* With qlock held: waits for a job, stopping, or the next heartbeat. */
static void wait_for_work(struct pg_store *st)
{
	int64_t now = util_now_ms();
	struct timespec ts;

	if (st->head || st->stopping || now >= st->beat_at_ms)
		return;
	clock_gettime(CLOCK_REALTIME, &ts);
	int64_t ms = st->beat_at_ms - now;
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_cond_timedwait(&st->qcond, &st->qlock, &ts);
}

void *pg_writer_main(void *arg)
{
	struct pg_store *st = arg;
	struct job *batch, *last;
	int n;

	pthread_mutex_lock(&st->qlock);
	for (;;) {
		wait_for_work(st);
		if (util_now_ms() >= st->beat_at_ms) {
			pthread_mutex_unlock(&st->qlock);
			heartbeat(st, util_now_ms());
			pthread_mutex_lock(&st->qlock);
		}
		if (!st->head) {
			if (st->stopping)
				break;
			continue;
		}
		/* Take what is queued, up to MAX_BATCH: one commit. */
		batch = last = st->head;
		for (n = 1; n < MAX_BATCH && last->next; n++)
			last = last->next;
		st->head = last->next;
		if (!st->head)
			st->tail = NULL;
		last->next = NULL;
		pthread_mutex_unlock(&st->qlock);
		run_batch(st, batch, n);
		finish_batch(st, batch);
		pthread_mutex_lock(&st->qlock);
	}
	pthread_mutex_unlock(&st->qlock);
	give_back(st);
	return NULL;
}

/* ---- submitting jobs (any thread) ---- */

static void enqueue_locked(struct pg_store *st, struct job *j)
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
static int submit_wait(struct pg_store *st, struct job *j)
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

int pg_writer_accept(struct store *s, const struct store_event_in *in,
		     struct store_event_out *out)
{
	struct job j = {.kind = JOB_ACCEPT, .u.acc = {in, out}};

	out->duplicate = 0;
	return submit_wait(pg_of(s), &j) < 0 ? -1 : 0;
}

int pg_writer_writable(struct store *s)
{
	struct job j = {.kind = JOB_PROBE};

	return submit_wait(pg_of(s), &j) == 0;
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
static int submit_async(struct pg_store *st, struct job *j,
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

int pg_writer_record_attempt(struct store *s, const char *id,
			     const struct store_attempt *a,
			     enum store_state state, int64_t next_at_ms,
			     void (*done)(void *ctx, int rc), void *ctx)
{
	struct job *j = calloc(1, sizeof *j);
	size_t rlen = a->response ? a->response_len : 0;
	int oom = 0;

	if (!j)
		return -1;
	j->kind = JOB_ATTEMPT;
	j->u.att.id = dup_opt(id, &oom);
	j->u.att.error = dup_opt(a->error, &oom);
	if (rlen > STORE_RESPONSE_MAX)
		rlen = STORE_RESPONSE_MAX;
	j->u.att.response = a->response ? malloc(rlen + 1) : NULL;
	if (oom || (a->response && !j->u.att.response))
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
	return submit_async(pg_of(s), j, done, ctx);
fail:
	job_free(j);
	return -1;
}

int pg_writer_record_run(struct store *s, const char *id,
			 const struct store_run *run, const char *error,
			 void (*done)(void *ctx, int rc), void *ctx)
{
	struct job *j = calloc(1, sizeof *j);
	int oom = 0;

	if (!j)
		return -1;
	j->kind = JOB_RUN;
	j->u.att.id = dup_opt(id, &oom);
	j->u.att.error = dup_opt(error, &oom);
	if (oom || copy_run(&j->u.att.run, run) < 0) {
		job_free(j);
		return -1;
	}
	return submit_async(pg_of(s), j, done, ctx);
}

int pg_writer_retry(struct store *s, const char *id, int64_t now_ms)
{
	struct job j = {.kind = JOB_RETRY, .u.retry = {id, now_ms}};

	return submit_wait(pg_of(s), &j);
}

int pg_writer_cancel_inactive(struct store *s, const char *const *active,
			      size_t nactive,
			      void (*each)(void *ctx, const char *trigger),
			      void *ctx)
{
	struct job j = {.kind = JOB_CANCEL};

	j.u.cancel.active = active;
	j.u.cancel.nactive = nactive;
	j.u.cancel.each = each;
	j.u.cancel.ctx = ctx;
	return submit_wait(pg_of(s), &j);
}
