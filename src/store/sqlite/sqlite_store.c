/*
 * store — the durable store: events, deliveries, attempts, dedup keys in
 * one SQLite database in WAL mode. This file opens it (schema, statements,
 * writer thread), closes it, and holds the helpers the store's files share;
 * the writer is in store_writer.c, reads and the admin JSON in
 * store_read.c (see sqlite_int.h).
 *
 * DESIGN: two connections. The write connection (synchronous=FULL) belongs
 * to one writer thread started here; every change is a job on its queue,
 * and every job queued at one moment shares one transaction and one fsync
 * (group commit); a batch whose COMMIT fails leaves nothing on disk and the
 * next one tries again. The read connection (query_only) serves the dedup
 * fast path, due deliveries and admin queries behind a mutex; WAL lets it
 * read beside the writer, so reads never wait for a commit's fsync.
 *
 * Every statement is prepared once at open and only ever bound: no SQL is
 * built from input. Lists handed to SQL (skip lists, active triggers) are
 * JSON arrays built with jansson and read with json_each().
 *
 * Schema (PRAGMA user_version = 4; older versions are migrated, newer ones
 * refused): events, deliveries, attempts, dedup (keyed by the SHA-256 hex
 * digest of the rendered key, which ingest computes), and meta (one row
 * that the writable operation's probe rewrites); version 3 adds each
 * delivery's dbt run, its next poll and the unsure mark; version 4 the
 * batches and fan-in progress of SPEC section 9. Times are
 * integer ms since the epoch.
 * Deliveries list newest first by rowid, i.e. creation order. Open and
 * close are called by the main thread.
 */
#include "sqlite_int.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sha256.h"

#define BUSY_TIMEOUT_MS 5000

/* Migration i brings a database from user_version i to i + 1. */
static const char *const migrations[] = {
    "CREATE TABLE events ("
    " id TEXT PRIMARY KEY, body BLOB NOT NULL,"
    " accepted_at INTEGER NOT NULL);"
    "CREATE TABLE deliveries ("
    " id TEXT PRIMARY KEY, event_id TEXT NOT NULL REFERENCES events(id),"
    " \"trigger\" TEXT NOT NULL, state TEXT NOT NULL,"
    " attempts INTEGER NOT NULL DEFAULT 0, last_status INTEGER,"
    " last_error TEXT, next_at INTEGER, created_at INTEGER NOT NULL,"
    " accepted_at INTEGER NOT NULL, updated_at INTEGER NOT NULL);"
    /* due query: per trigger, earliest next_at among pending */
    "CREATE INDEX deliveries_due ON deliveries(state, \"trigger\", next_at);"
    /* listing newest first: entries are (column, rowid), so a filter on
     * one column walks its rows in creation order without sorting */
    "CREATE INDEX deliveries_state ON deliveries(state);"
    "CREATE INDEX deliveries_trigger ON deliveries(\"trigger\");"
    "CREATE TABLE attempts ("
    " delivery_id TEXT NOT NULL REFERENCES deliveries(id),"
    " at INTEGER NOT NULL, status INTEGER, error TEXT,"
    " ms INTEGER NOT NULL, response BLOB);"
    "CREATE INDEX attempts_delivery ON attempts(delivery_id);"
    "CREATE TABLE dedup ("
    " \"key\" TEXT PRIMARY KEY, event_id TEXT NOT NULL,"
    " at INTEGER NOT NULL);"
    "CREATE INDEX dedup_at ON dedup(at);"
    "CREATE TABLE meta (\"key\" TEXT PRIMARY KEY, value);",
    /* 1 -> 2: dedup keys are SHA-256 digests (hex) of the rendered key;
     * keys written by version 1 were the text itself, re-hashed here. */
    "UPDATE OR REPLACE dedup SET \"key\" = triggerd_sha256(\"key\");",
    /* 2 -> 3: dbt runs (SPEC section 8) */
    "ALTER TABLE deliveries ADD COLUMN unsure INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE deliveries ADD COLUMN run_id INTEGER;"
    "ALTER TABLE deliveries ADD COLUMN run_href TEXT;"
    "ALTER TABLE deliveries ADD COLUMN run_status TEXT;"
    "ALTER TABLE deliveries ADD COLUMN run_finished_at TEXT;"
    "ALTER TABLE deliveries ADD COLUMN run_message TEXT;"
    "ALTER TABLE deliveries ADD COLUMN run_started_at INTEGER;"
    "ALTER TABLE deliveries ADD COLUMN poll_at INTEGER;"
    "CREATE INDEX deliveries_poll ON deliveries(poll_at)"
    " WHERE poll_at IS NOT NULL;",
    /* 3 -> 4: fan-in and coalescing (SPEC section 9). A batched
     * delivery lists its events in batch_events; a coalescing one takes
     * joiners while now < open_until and it has had no attempt (the first
     * attempt clears open_until). fanin holds each fan-in trigger's
     * progress: per job, its latest counting event. */
    "ALTER TABLE deliveries ADD COLUMN batched INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE deliveries ADD COLUMN open_until INTEGER;"
    "CREATE INDEX deliveries_open ON deliveries(\"trigger\")"
    " WHERE open_until IS NOT NULL;"
    "CREATE TABLE batch_events ("
    " delivery_id TEXT NOT NULL, seq INTEGER NOT NULL,"
    " event_id TEXT NOT NULL, PRIMARY KEY (delivery_id, seq))"
    " WITHOUT ROWID;"
    "CREATE TABLE fanin ("
    " \"trigger\" TEXT NOT NULL, job TEXT NOT NULL,"
    " event_id TEXT NOT NULL, at INTEGER NOT NULL,"
    " PRIMARY KEY (\"trigger\", job));",
};
#define SCHEMA_VERSION ((int)(sizeof migrations / sizeof migrations[0]))

/* ---- small SQLite helpers ---- */

int sqlite_store_run_stmt(sqlite3_stmt *s)
{
	int rc;

	while ((rc = sqlite3_step(s)) == SQLITE_ROW)
		;
	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
	return rc;
}

void sqlite_store_done_stmt(sqlite3_stmt *s)
{
	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
}

int64_t sqlite_store_window_start(int64_t now_ms, int64_t window_ms)
{
	return window_ms >= now_ms ? INT64_MIN : now_ms - window_ms;
}

int sqlite_store_dedup_find(sqlite3_stmt *s, const char *key, int64_t since,
		     char event_id[UTIL_ID_LEN])
{
	int rc;

	sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 2, since);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		const unsigned char *id = sqlite3_column_text(s, 0);
		snprintf(event_id, UTIL_ID_LEN, "%s",
			 id ? (const char *)id : "");
	}
	sqlite_store_done_stmt(s);
	return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
}

char *sqlite_store_json_list(const char *const *v, size_t n)
{
	json_t *a = json_array();
	char *s = NULL;

	if (!a)
		return NULL;
	for (size_t i = 0; i < n; i++)
		if (json_array_append_new(a, json_string(v[i])) < 0)
			goto out;
	s = json_dumps(a, JSON_COMPACT);
out:
	json_decref(a);
	return s;
}

void sqlite_store_bind_opt_text(sqlite3_stmt *s, int i, const char *t)
{
	if (t)
		sqlite3_bind_text(s, i, t, -1, SQLITE_STATIC);
	else
		sqlite3_bind_null(s, i);
}

/* ---- opening ---- */

static int open_db(const char *path, int flags, sqlite3 **db, char *err,
		   size_t errlen)
{
	if (sqlite3_open_v2(path, db, flags | SQLITE_OPEN_NOMUTEX, NULL) !=
	    SQLITE_OK) {
		snprintf(err, errlen, "cannot open %s: %s", path,
			 *db ? sqlite3_errmsg(*db) : "out of memory");
		return -1;
	}
	sqlite3_busy_timeout(*db, BUSY_TIMEOUT_MS);
	return 0;
}

static int exec_sql(sqlite3 *db, const char *sql, char *err, size_t errlen)
{
	if (sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK) {
		snprintf(err, errlen, "%s", sqlite3_errmsg(db));
		return -1;
	}
	return 0;
}

/* Reads one integer or text pragma; its text form goes into out. */
static int pragma_get(sqlite3 *db, const char *sql, char *out, size_t outlen)
{
	sqlite3_stmt *s = NULL;
	int rc = -1;

	if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) != SQLITE_OK)
		goto out;
	if (sqlite3_step(s) == SQLITE_ROW) {
		const unsigned char *t = sqlite3_column_text(s, 0);
		snprintf(out, outlen, "%s", t ? (const char *)t : "");
		rc = 0;
	}
out:
	sqlite3_finalize(s);
	return rc;
}

/* SQL function triggerd_sha256(text): the hex digest, for the migration
 * that turns version 1's plain dedup keys into digests. */
static void sql_sha256(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
	char hex[SHA256_HEX_LEN];
	const unsigned char *t = sqlite3_value_text(argv[0]);

	sha256_hex(t ? (const char *)t : "",
		   (size_t)sqlite3_value_bytes(argv[0]), hex);
	sqlite3_result_text(ctx, hex, -1, SQLITE_TRANSIENT);
}

/*
 * Brings the schema to SCHEMA_VERSION inside one write transaction, so two
 * processes opening a new file cannot both create it. Refuses a database
 * written by a newer triggerd.
 */
static int migrate(sqlite3 *db, char *err, size_t errlen)
{
	char v[32], sql[64];
	long long version;

	if (sqlite3_create_function(db, "triggerd_sha256", 1,
				    SQLITE_UTF8 | SQLITE_DETERMINISTIC, NULL,
				    sql_sha256, NULL, NULL) != SQLITE_OK ||
	    exec_sql(db, "BEGIN IMMEDIATE", err, errlen) < 0)
		return -1;
	if (pragma_get(db, "PRAGMA user_version", v, sizeof v) < 0) {
		snprintf(err, errlen, "%s", sqlite3_errmsg(db));
		goto fail;
	}
	version = strtoll(v, NULL, 10);
	if (version > SCHEMA_VERSION) {
		snprintf(err, errlen,
			 "schema version %lld is newer than this "
			 "triggerd supports (%d); use a newer triggerd",
			 version, SCHEMA_VERSION);
		goto fail;
	}
	for (long long i = version < 0 ? 0 : version; i < SCHEMA_VERSION; i++)
		if (exec_sql(db, migrations[i], err, errlen) < 0)
			goto fail;
	snprintf(sql, sizeof sql, "PRAGMA user_version = %d", SCHEMA_VERSION);
	if (exec_sql(db, sql, err, errlen) < 0 ||
	    exec_sql(db, "COMMIT", err, errlen) < 0)
		goto fail;
	return 0;
fail:
	sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
	return -1;
}

static int open_writer_db(struct sqlite_store *st, const char *path, char *err,
			  size_t errlen)
{
	char mode[16];

	if (open_db(path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, &st->wdb,
		    err, errlen) < 0)
		return -1;
	if (pragma_get(st->wdb, "PRAGMA journal_mode = WAL", mode,
		       sizeof mode) < 0 ||
	    strcmp(mode, "wal") != 0) {
		snprintf(err, errlen, "cannot use WAL mode on %s: %s", path,
			 sqlite3_errmsg(st->wdb));
		return -1;
	}
	if (exec_sql(st->wdb, "PRAGMA synchronous = FULL", err, errlen) < 0)
		return -1;
	st->sync_full = 1;
	sqlite3_wal_hook(st->wdb, sqlite_writer_wal_hook, st);
	if (migrate(st->wdb, err, errlen) < 0)
		return -1;
	/* store.h: whatever was pending when the process stopped may have
	 * been on the wire; mark it (durably) for a look-up first. */
	return exec_sql(st->wdb,
			"UPDATE deliveries SET unsure = 1"
			" WHERE state = 'pending' AND unsure = 0",
			err, errlen);
}

static int prepare_all(sqlite3 *db, const char *const *sql, size_t n,
		       sqlite3_stmt **out, char *err, size_t errlen)
{
	for (size_t i = 0; i < n; i++) {
		if (sqlite3_prepare_v3(db, sql[i], -1,
				       SQLITE_PREPARE_PERSISTENT, &out[i],
				       NULL) != SQLITE_OK) {
			snprintf(err, errlen, "cannot prepare statement: %s",
				 sqlite3_errmsg(db));
			return -1;
		}
	}
	return 0;
}

static void store_free(struct sqlite_store *st)
{
	for (size_t i = 0; i < W_COUNT; i++)
		sqlite3_finalize(st->w[i]);
	for (size_t i = 0; i < R_COUNT_STMTS; i++)
		sqlite3_finalize(st->r[i]);
	sqlite3_finalize(st->dedup);
	sqlite3_close(st->ddb);
	/* The writer's connection closes last: the last connection to close
	 * checkpoints the WAL into the database and removes it. */
	sqlite3_close(st->rdb);
	sqlite3_close(st->wdb);
	pthread_cond_destroy(&st->qcond);
	pthread_mutex_destroy(&st->qlock);
	pthread_mutex_destroy(&st->rlock);
	pthread_mutex_destroy(&st->dlock);
	free(st->file_path);
	free(st);
}

static void sqlite_store_close(struct store *s);

/* A single process owns the database: a claim lives in the claimant's
 * memory only, so giving one back changes nothing here. */
static int sqlite_store_release(struct store *s, const char *id)
{
	return 0;
}

static const struct store_ops sqlite_ops = {
    .name = "sqlite",
    .close = sqlite_store_close,
    .writable = sqlite_writer_writable,
    .accept = sqlite_writer_accept,
    .dedup_lookup = sqlite_read_dedup_lookup,
    .claim_due = sqlite_read_claim_due,
    .release = sqlite_store_release,
    .record_attempt = sqlite_writer_record_attempt,
    .cancel_inactive = sqlite_writer_cancel_inactive,
    .claim_polls = sqlite_read_claim_polls,
    .record_run = sqlite_writer_record_run,
    .count_followed = sqlite_read_count_followed,
    .count_pending = sqlite_read_count_pending,
    .list = sqlite_read_list,
    .get = sqlite_read_get,
    .retry = sqlite_writer_retry,
    .fanin_keep = sqlite_writer_fanin_keep,
    .fanin_progress = sqlite_read_fanin_progress,
};

struct store *sqlite_store_open(const char *path, char *err, size_t errlen)
{
	struct sqlite_store *st = calloc(1, sizeof *st);

	if (!st) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	pthread_mutex_init(&st->rlock, NULL);
	pthread_mutex_init(&st->dlock, NULL);
	pthread_mutex_init(&st->qlock, NULL);
	pthread_cond_init(&st->qcond, NULL);
	if (open_writer_db(st, path, err, errlen) < 0 ||
	    open_db(path, SQLITE_OPEN_READWRITE, &st->rdb, err, errlen) < 0 ||
	    exec_sql(st->rdb, "PRAGMA query_only = 1", err, errlen) < 0 ||
	    prepare_all(st->wdb, sqlite_writer_sql, W_COUNT, st->w, err,
			errlen) < 0 ||
	    prepare_all(st->rdb, sqlite_read_sql, R_COUNT_STMTS, st->r, err,
			errlen) < 0 ||
	    open_db(path, SQLITE_OPEN_READWRITE, &st->ddb, err, errlen) < 0 ||
	    exec_sql(st->ddb, "PRAGMA query_only = 1", err, errlen) < 0 ||
	    prepare_all(st->ddb, &sqlite_read_dedup_sql, 1, &st->dedup, err,
			errlen) < 0)
		goto fail;
	/* best effort: a path that cannot be stat'ed is simply not watched */
	sqlite_file_watch(st, path);
	if (pthread_create(&st->writer, NULL, sqlite_writer_main, st) != 0) {
		snprintf(err, errlen, "cannot start the store's writer thread");
		goto fail;
	}
	st->started = 1;
	st->base.ops = &sqlite_ops;
	return &st->base;
fail:
	store_free(st);
	return NULL;
}

static void sqlite_store_close(struct store *s)
{
	struct sqlite_store *st = sqlite_of(s);

	pthread_mutex_lock(&st->qlock);
	st->stopping = 1;
	pthread_cond_signal(&st->qcond);
	pthread_mutex_unlock(&st->qlock);
	/* The writer drains every job already queued before it exits. */
	if (st->started)
		pthread_join(st->writer, NULL);
	store_free(st);
}
