/*
 * pg_int — what the PostgreSQL backend's own files share (pg_store.c,
 * pg_writer.c, pg_read.c). Not an interface: modules above the store see
 * include/store.h only.
 *
 * DESIGN: pg_store.c connects, creates or migrates the schema under an
 * advisory lock, owns the connection helpers and the table of operations;
 * pg_writer.c is the writer thread (job queue, group commit in one
 * pipelined transaction, lease heartbeat) and the operations that queue
 * jobs; pg_read.c claims due deliveries and polls (FOR UPDATE SKIP
 * LOCKED, a lease) and serves the reads as rows.
 *
 * Three connections, each with one owner: the writer's (writer thread
 * only, or main before it starts and after it stops), the claim
 * connection (dispatcher, under clock) and the read connection (HTTP
 * threads: dedup fast path, admin, counts; under rlock). Each reconnects
 * by itself, at most once per PG_RETRY_MS, so an outage costs a failed
 * call, never a spin or a restart.
 */
#ifndef TRIGGERD_PG_INT_H
#define TRIGGERD_PG_INT_H

#include <libpq-fe.h>
#include <pthread.h>
#include <stdint.h>

#include "../store_backend.h"

#define PG_RETRY_MS 1000   /* between two connection attempts */
#define PG_IDLE_WAKE_MS 1000 /* longest sleep the dispatcher is told:
				* other instances add work it is not told of */
#define PG_MAX_PARAMS 16

/* One connection and its reconnection state. */
struct pg_conn {
	PGconn *c;
	int64_t next_try_ms; /* no new attempt before this (wall clock) */
	int down;	     /* the last attempt failed (logged once) */
	const char *what;    /* "writer", "claims", "reads", for logs */
};

/* Parameters of one statement, all sent as text but for bytea. */
struct pg_params {
	int n;
	const char *v[PG_MAX_PARAMS];
	int len[PG_MAX_PARAMS];
	int fmt[PG_MAX_PARAMS];
	char num[PG_MAX_PARAMS][24];
};

struct job;

struct pg_store {
	struct store base; /* first: the operations of store.h */
	char *url;	   /* the conninfo, secrets resolved; never logged */
	char owner[UTIL_ID_LEN]; /* this instance's id, marks its leases */

	struct pg_conn w; /* the writer's */
	int64_t max_window_ms; /* writer only: largest dedup window seen */
	int failing;	       /* writer only: the last batch failed */
	int64_t beat_at_ms;    /* writer only: next lease heartbeat */
	int64_t lease_ms;      /* the last claim's lease (atomic) */

	pthread_mutex_t clock; /* guards cc */
	struct pg_conn cc;
	pthread_mutex_t rlock; /* guards rc */
	struct pg_conn rc;

	pthread_mutex_t qlock; /* guards the queue and job->done */
	pthread_cond_t qcond;
	struct job *head, *tail;
	int stopping;
	int started;
	pthread_t writer;
};

static inline struct pg_store *pg_of(struct store *s)
{
	return (struct pg_store *)s;
}

/* ---- pg_store.c: connections and statements ---- */

/* The connection, connected now if it was not (and the last attempt is
 * PG_RETRY_MS old); NULL if the database cannot be reached. */
PGconn *pg_conn_get(struct pg_store *st, struct pg_conn *pc);

/* After a failed statement: drops the connection if it is broken, so the
 * next pg_conn_get reconnects. */
void pg_conn_check(struct pg_conn *pc);

void pg_p_text(struct pg_params *p, const char *s); /* NULL: SQL NULL */
void pg_p_int(struct pg_params *p, int64_t v);
void pg_p_bin(struct pg_params *p, const void *data, size_t len);
/* A text[] literal of v, as a parameter (its storage in *hold, free()). */
int pg_p_array(struct pg_params *p, const char *const *v, size_t n,
	       char **hold);

/* Runs sql with p (may be NULL); the result, or NULL on a broken
 * connection. Check PQresultStatus. */
PGresult *pg_exec(PGconn *c, const char *sql, const struct pg_params *p);

/* 1 if r is a successful result (rows or command), else 0 (and logs the
 * server's message once per call site class at debug). */
int pg_ok(const PGresult *r);

/* Integer value of a cell; -1 for NULL. */
int64_t pg_int(const PGresult *r, int row, int col);

/* The earliest time still inside a window ending at now. */
int64_t pg_window_start(int64_t now_ms, int64_t window_ms);

/* ---- pg_writer.c ---- */

void *pg_writer_main(void *arg);
int pg_writer_accept(struct store *s, const struct store_event_in *in,
		     struct store_event_out *out);
int pg_writer_writable(struct store *s);
int pg_writer_record_attempt(struct store *s, const char *id,
			     const struct store_attempt *a,
			     enum store_state state, int64_t next_at_ms,
			     void (*done)(void *ctx, int rc), void *ctx);
int pg_writer_record_run(struct store *s, const char *id,
			 const struct store_run *run, const char *error,
			 void (*done)(void *ctx, int rc), void *ctx);
int pg_writer_retry(struct store *s, const char *id, int64_t now_ms);
int pg_writer_cancel_inactive(struct store *s, const char *const *active,
			      size_t nactive,
			      void (*each)(void *ctx, const char *trigger),
			      void *ctx);

/* ---- pg_read.c ---- */

int pg_read_dedup_lookup(struct store *s, const char *key, int64_t window_ms,
			 char event_id[UTIL_ID_LEN]);
int pg_read_claim_due(struct store *s, const struct store_claim *c,
		      struct store_due *out, size_t max, int64_t *wake_at_ms);
int pg_read_claim_polls(struct store *s, const struct store_claim *c,
			struct store_due *out, size_t max,
			int64_t *wake_at_ms);
int pg_read_release(struct store *s, const char *id);
int64_t pg_read_count_pending(struct store *s);
int64_t pg_read_count_followed(struct store *s);
int pg_read_list(struct store *s, const char *state, const char *trigger,
		 int limit, struct store_delivery_list *out);
int pg_read_get(struct store *s, const char *id,
		struct store_delivery_full *out);

#endif
