/*
 * sqlite_int — what the SQLite backend's own files share (sqlite_store.c,
 * sqlite_writer.c, sqlite_read.c). Not an interface: modules above the
 * store see include/store.h only.
 *
 * DESIGN: sqlite_store.c opens the database, creates or migrates the
 * schema, prepares every statement, starts the writer thread and holds
 * the backend's table of operations; sqlite_writer.c is the writer (job
 * queue, group commit) and the operations that submit jobs;
 * sqlite_read.c serves reads on the second connection as rows.
 * struct sqlite_store is shared by all three: the writer fields are touched only
 * by the writer thread (or by store.c before it starts and after it
 * stops), the read connection only under rlock, the queue only under qlock.
 */
#ifndef TRIGGERD_SQLITE_INT_H
#define TRIGGERD_SQLITE_INT_H

#include <pthread.h>
#include <sqlite3.h>
#include <stdint.h>
#include <sys/types.h>

#include "../store_backend.h"

/* The writer's statements (SQL in store_writer.c). */
enum wstmt {
	W_BEGIN,
	W_COMMIT,
	W_ROLLBACK,
	W_SAVEPOINT,
	W_RELEASE,
	W_ROLLBACK_TO,
	W_DEDUP_GET,
	W_DEDUP_PUT,
	W_DEDUP_PRUNE,
	W_EVENT_PUT,
	W_DELIVERY_PUT,
	W_ATTEMPT_APPLY,
	W_ATTEMPT_PUT,
	W_RETRY,
	W_EXISTS,
	W_CANCEL,
	W_PROBE,
	W_RUN_SET,
	W_FANIN_PUT,
	W_FANIN_COUNTING,
	W_FANIN_CLEAR,
	W_FANIN_KEEP,
	W_OPEN_FIND,
	W_BATCHED_PUT,
	W_BATCH_ADD,
	W_BATCH_LATEST,
	W_COUNT
};

/* The read connection's statements (SQL in store_read.c). */
enum rstmt {
	R_BEGIN,
	R_END,
	R_DUE,
	R_DUE_BATCH,
	R_COUNT,
	R_LIST_ALL,
	R_LIST_STATE,
	R_LIST_TRIGGER,
	R_LIST_BOTH,
	R_GET,
	R_HISTORY,
	R_POLL_BATCH,
	R_POLL_WAKE,
	R_COUNT_FOLLOWED,
	R_BATCH_BODIES,
	R_BATCH_IDS,
	R_FANIN,
	R_COUNT_STMTS
};

extern const char *const sqlite_writer_sql[W_COUNT];
extern const char *const sqlite_read_sql[R_COUNT_STMTS];
/* the dedup fast path's one statement, on its own connection */
extern const char *const sqlite_read_dedup_sql;

struct job;

struct sqlite_store {
	struct store base; /* first: the operations of store.h */
	sqlite3 *wdb; /* the writer thread's, once started */
	sqlite3_stmt *w[W_COUNT];
	int64_t max_window_ms; /* writer only: largest dedup window seen */
	int failing;	 /* writer only: the last commit failed */
	int sync_full;	 /* writer only: synchronous is FULL (else NORMAL) */
	int wal_frames;	 /* writer only: frames in the WAL after commit */
	char *file_path; /* the database's path, NULL if not watched */
	dev_t file_dev;	 /* ...and the file it named at open */
	ino_t file_ino;
	int file_gone;	 /* writer only: the path no longer names it */

	pthread_mutex_t rlock; /* guards rdb and its statements */
	sqlite3 *rdb;
	sqlite3_stmt *r[R_COUNT_STMTS];

	/* The dedup fast path has a read connection of its own, so HTTP
	 * threads never wait behind the dispatcher's or the admin's reads. */
	pthread_mutex_t dlock; /* guards ddb and dedup */
	sqlite3 *ddb;
	sqlite3_stmt *dedup;

	pthread_mutex_t qlock; /* guards the queue and job->done */
	pthread_cond_t qcond;  /* the writer waits here for jobs */
	struct job *head, *tail;
	int stopping;
	int started;
	pthread_t writer;
};

static inline struct sqlite_store *sqlite_of(struct store *s)
{
	return (struct sqlite_store *)s;
}

/* Steps s to completion, then resets it and clears its bindings; returns
 * the SQLite code of the last step (SQLITE_DONE on success). */
int sqlite_store_run_stmt(sqlite3_stmt *s);

/* Resets s and clears its bindings (after reading rows). */
void sqlite_store_done_stmt(sqlite3_stmt *s);

/* The earliest time still inside a window ending at now, without overflow. */
int64_t sqlite_store_window_start(int64_t now_ms, int64_t window_ms);

/* Runs a dedup SELECT (key ?1, since ?2): 1 and the event id if the key
 * was accepted after since, 0 if not, -1 on error. */
int sqlite_store_dedup_find(sqlite3_stmt *s, const char *key, int64_t since,
		     char event_id[UTIL_ID_LEN]);

/* The strings as a JSON array, text for json_each(?); free(). NULL if out
 * of memory or a string is not UTF-8. */
char *sqlite_store_json_list(const char *const *v, size_t n);

/* Binds t, or NULL when t is NULL. */
void sqlite_store_bind_opt_text(sqlite3_stmt *s, int i, const char *t);

/* Remembers which file path names now (sqlite_file.c). 0, or -1 if it
 * cannot be stat'ed (then nothing is watched). */
int sqlite_file_watch(struct sqlite_store *st, const char *path);

/* Writer thread: 1 if the path no longer names the file opened (deleted
 * or replaced; logged once, and 1 from then on), else 0. */
int sqlite_file_gone(struct sqlite_store *st);

/* The writer thread's body (arg: the store). */
void *sqlite_writer_main(void *arg);

/* SQLite's WAL hook on the write connection: replaces the automatic
 * checkpoint, which the writer runs itself after completing a batch. */
int sqlite_writer_wal_hook(void *arg, sqlite3 *db, const char *name, int frames);

/* sqlite_writer.c: the operations that change the database (store.h). */
int sqlite_writer_accept(struct store *s, const struct store_event_in *in,
			 struct store_event_out *out);
int sqlite_writer_writable(struct store *s);
int sqlite_writer_record_attempt(struct store *s, const char *id,
				 const struct store_attempt *a,
				 enum store_state state, int64_t next_at_ms,
				 void (*done)(void *ctx, int rc), void *ctx);
int sqlite_writer_record_run(struct store *s, const char *id,
			     const struct store_run *run, const char *error,
			     void (*done)(void *ctx, int rc), void *ctx);
int sqlite_writer_retry(struct store *s, const char *id, int64_t now_ms);
int sqlite_writer_cancel_inactive(struct store *s, const char *const *active,
				  size_t nactive,
				  void (*each)(void *ctx, const char *trigger),
				  void *ctx);
int sqlite_writer_fanin_keep(struct store *s, const char *const *triggers,
			     const char *const *jobs, size_t n);

/* sqlite_read.c: the operations that only read (store.h). */
int sqlite_read_dedup_lookup(struct store *s, const char *key,
			     int64_t window_ms, char event_id[UTIL_ID_LEN]);
int sqlite_read_claim_due(struct store *s, const struct store_claim *c,
			  struct store_due *out, size_t max,
			  int64_t *wake_at_ms);
int64_t sqlite_read_count_pending(struct store *s);
int sqlite_read_claim_polls(struct store *s, const struct store_claim *c,
			    struct store_due *out, size_t max,
			    int64_t *wake_at_ms);
int64_t sqlite_read_count_followed(struct store *s);
int sqlite_read_list(struct store *s, const char *state, const char *trigger,
		     int limit, struct store_delivery_list *out);
int sqlite_read_get(struct store *s, const char *id,
		    struct store_delivery_full *out);
int sqlite_read_fanin_progress(struct store *s, const char *trigger,
			       const char *const *jobs, size_t njobs,
			       int64_t within_ms, int64_t now_ms, int *done);

#endif
