/*
 * Unit tests of the durable store: schema, accept and dedup, group commit
 * under 32 threads, due deliveries (ordering, skips, starvation), attempts,
 * retry, cancel, admin JSON, reopen, and a full disk (a small tmpfs when
 * this runs as root and can mount one).
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <jansson.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "admin.h"
#include "buf.h"
#include "check.h"
#include "sha256.h"
#include "store.h"

static char tmpdir[64];

static void db_path(char *out, size_t n, const char *name)
{
	snprintf(out, n, "%s/%s.db", tmpdir, name);
}

static struct store *open_named(const char *name)
{
	char path[256], err[256] = "";
	struct store *st;

	db_path(path, sizeof path, name);
	st = store_open(path, err, sizeof err);
	if (!st)
		fprintf(stderr, "store_open %s: %s\n", path, err);
	return st;
}

/* One integer from SQL run on the file through a separate connection: the
 * state on disk, not what the store's own connections believe. */
static long long disk_int(const char *name, const char *sql)
{
	char path[256];
	sqlite3 *db = NULL;
	sqlite3_stmt *s = NULL;
	long long v = -1;

	db_path(path, sizeof path, name);
	if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL) ==
		SQLITE_OK &&
	    sqlite3_prepare_v2(db, sql, -1, &s, NULL) == SQLITE_OK &&
	    sqlite3_step(s) == SQLITE_ROW)
		v = sqlite3_column_int64(s, 0);
	sqlite3_finalize(s);
	sqlite3_close(db);
	return v;
}

/* The schema triggerd 0.1.0 wrote (user_version 1), as a fixture: a store
 * made by that version must open and upgrade in place. */
static const char v1_schema[] =
    "CREATE TABLE events (id TEXT PRIMARY KEY, body BLOB NOT NULL,"
    " accepted_at INTEGER NOT NULL);"
    "CREATE TABLE deliveries (id TEXT PRIMARY KEY,"
    " event_id TEXT NOT NULL REFERENCES events(id),"
    " \"trigger\" TEXT NOT NULL, state TEXT NOT NULL,"
    " attempts INTEGER NOT NULL DEFAULT 0, last_status INTEGER,"
    " last_error TEXT, next_at INTEGER, created_at INTEGER NOT NULL,"
    " accepted_at INTEGER NOT NULL, updated_at INTEGER NOT NULL);"
    "CREATE INDEX deliveries_due ON deliveries(state, \"trigger\", next_at);"
    "CREATE INDEX deliveries_state ON deliveries(state);"
    "CREATE INDEX deliveries_trigger ON deliveries(\"trigger\");"
    "CREATE TABLE attempts (delivery_id TEXT NOT NULL REFERENCES deliveries(id),"
    " at INTEGER NOT NULL, status INTEGER, error TEXT,"
    " ms INTEGER NOT NULL, response BLOB);"
    "CREATE INDEX attempts_delivery ON attempts(delivery_id);"
    "CREATE TABLE dedup (\"key\" TEXT PRIMARY KEY, event_id TEXT NOT NULL,"
    " at INTEGER NOT NULL);"
    "CREATE INDEX dedup_at ON dedup(at);"
    "CREATE TABLE meta (\"key\" TEXT PRIMARY KEY, value);"
    "PRAGMA user_version = 1;";

/* A version-1 store (plain dedup keys, no dbt columns) opens, becomes the
 * current version, its keys are found by their SHA-256 digest, as ingest
 * now looks them up, and its pending delivery is still pending. */
static void test_migrate_v1(void)
{
	char seen[UTIL_ID_LEN] = "", hex[SHA256_HEX_LEN], path[256];
	int64_t now = util_now_ms();
	char sql[512];
	sqlite3 *db = NULL;
	struct store_delivery_full f;

	db_path(path, sizeof path, "v1");
	snprintf(sql, sizeof sql,
		 "INSERT INTO dedup(\"key\", event_id, at) VALUES "
		 "('exec-1:job-1:orders', 'ev_old', %lld);"
		 "INSERT INTO events VALUES ('ev_old', '{}', %lld);"
		 "INSERT INTO deliveries(id, event_id, \"trigger\", state,"
		 " next_at, created_at, accepted_at, updated_at) VALUES"
		 " ('dl_old', 'ev_old', 'dbt', 'pending', %lld, %lld, %lld, %lld);",
		 (long long)now, (long long)now, (long long)now, (long long)now,
		 (long long)now, (long long)now);
	CHECK(sqlite3_open(path, &db) == SQLITE_OK &&
	      sqlite3_exec(db, v1_schema, NULL, NULL, NULL) == SQLITE_OK &&
	      sqlite3_exec(db, sql, NULL, NULL, NULL) == SQLITE_OK);
	sqlite3_close(db);
	CHECK_INT(disk_int("v1", "PRAGMA user_version"), 1);
	struct store *st = open_named("v1");
	CHECK(st != NULL);
	if (!st)
		return;
	CHECK_INT(disk_int("v1", "PRAGMA user_version"), 4);
	sha256_hex("exec-1:job-1:orders", 19, hex);
	CHECK_INT(store_dedup_lookup(st, hex, 60000, seen), 1);
	CHECK_STR(seen, "ev_old");
	CHECK_INT(store_dedup_lookup(st, "exec-1:job-1:orders", 60000, seen), 0);
	CHECK_INT(store_get(st, "dl_old", &f), 0);
	CHECK(f.d.state == STORE_PENDING);
	store_get_clear(&f);
	CHECK_INT(store_count_pending(st), 1);
	store_close(st);
}

/* Forward: defined below. */
static int accept(struct store *st, const char *body, const char *key,
		  int64_t window, const char *const *trig, size_t n,
		  struct store_event_out *out, char (*ids)[UTIL_ID_LEN]);

/* The file deleted under an open store: nothing more is committed. */
static void test_file_gone(void)
{
	const char *trig[] = {"t"};
	char ids[1][UTIL_ID_LEN], path[256];
	struct store_event_out out = {.delivery_ids = ids};
	struct store *st = open_named("gone");

	CHECK(st != NULL);
	if (!st)
		return;
	CHECK_INT(store_writable(st), 1);
	CHECK_INT(accept(st, "{}", "g1", 60000, trig, 1, &out, ids), 0);
	db_path(path, sizeof path, "gone");
	CHECK_INT(unlink(path), 0);
	CHECK_INT(store_writable(st), 0);
	CHECK_INT(accept(st, "{}", "g2", 60000, trig, 1, &out, ids), -1);
	CHECK_INT(store_writable(st), 0);
	store_close(st);
}

/* Accepts an event with the given triggers; returns store_accept's rc. */
static int accept(struct store *st, const char *body, const char *key,
		  int64_t window, const char *const *trig, size_t n,
		  struct store_event_out *out, char (*ids)[UTIL_ID_LEN])
{
	struct store_event_in in = {
	    .body = body,
	    .body_len = body ? strlen(body) : 0,
	    .dedup_key = key,
	    .dedup_window_ms = window,
	    .triggers = trig,
	    .ntriggers = n,
	};

	memset(out, 0, sizeof *out);
	out->delivery_ids = ids;
	return store_accept(st, &in, out);
}

/* ---- waiting for record_attempt callbacks, with a bound ---- */

static pthread_mutex_t cb_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cb_cond = PTHREAD_COND_INITIALIZER;
static int cb_calls, cb_fails;

static void on_done(void *ctx, int rc)
{
	pthread_mutex_lock(&cb_lock);
	cb_calls++;
	if (rc < 0)
		cb_fails++;
	pthread_cond_broadcast(&cb_cond);
	pthread_mutex_unlock(&cb_lock);
}

static void wait_calls(int want)
{
	struct timespec dl;

	clock_gettime(CLOCK_REALTIME, &dl);
	dl.tv_sec += 20;
	pthread_mutex_lock(&cb_lock);
	while (cb_calls < want &&
	       pthread_cond_timedwait(&cb_cond, &cb_lock, &dl) == 0)
		;
	pthread_mutex_unlock(&cb_lock);
	CHECK_INT(cb_calls, want);
}

static int attempt(struct store *st, const char *id, int status,
		   const char *error, enum store_state state, int64_t next_at)
{
	struct store_attempt a = {
	    .at_ms = util_now_ms(),
	    .status = status,
	    .error = error,
	    .ms = 12,
	    .response = "{\"run\":1}",
	    .response_len = 9,
	};
	int want, rc;

	pthread_mutex_lock(&cb_lock);
	want = cb_calls + 1;
	pthread_mutex_unlock(&cb_lock);
	rc = store_record_attempt(st, id, &a, state, next_at, on_done, NULL);

	if (rc == 0)
		wait_calls(want);
	return rc;
}

/* The claim a single dispatcher makes (no lease to speak of). */
static int claim_due(struct store *st, int64_t now_ms,
		     const char *const *skip_ids, size_t nskip_ids,
		     const char *const *skip_triggers, size_t nskip_triggers,
		     struct store_due *out, size_t max, int64_t *wake_at_ms)
{
	struct store_claim c = {
	    .now_ms = now_ms, .lease_ms = 35000,
	    .skip_ids = skip_ids, .nskip_ids = nskip_ids,
	    .skip_triggers = skip_triggers, .nskip_triggers = nskip_triggers,
	};
	return store_claim_due(st, &c, out, max, wake_at_ms);
}

/* The admin API's answers: the store's rows as admin.c shows them. */
static int store_get_json(struct store *st, const char *id, struct buf *out)
{
	struct store_delivery_full f;
	int rc = store_get(st, id, &f);

	if (rc == 0 && admin_delivery_json(&f, out) < 0)
		rc = -1;
	store_get_clear(&f);
	return rc;
}

static int store_list_json(struct store *st, const char *state,
			   const char *trigger, int limit, struct buf *out)
{
	struct store_delivery_list l;
	int rc = store_list(st, state, trigger, limit, &l);

	if (rc == 0 && admin_deliveries_json(&l, out) < 0)
		rc = -1;
	store_list_clear(&l);
	return rc;
}

static json_t *get_json(struct store *st, const char *id, int *rc)
{
	struct buf b;
	json_t *j;

	buf_init(&b, 1 << 20);
	*rc = store_get_json(st, id, &b);
	j = *rc == 0 ? json_loads(buf_str(&b), 0, NULL) : NULL;
	buf_free(&b);
	return j;
}

static json_t *list_json(struct store *st, const char *state,
			 const char *trigger, int limit)
{
	struct buf b;
	json_t *j = NULL, *list;

	buf_init(&b, 1 << 20);
	if (store_list_json(st, state, trigger, limit, &b) == 0)
		j = json_loads(buf_str(&b), 0, NULL);
	buf_free(&b);
	list = json_object_get(j, "deliveries");
	json_incref(list);
	json_decref(j);
	return list;
}

static const char *jget(json_t *o, const char *k)
{
	return json_string_value(json_object_get(o, k));
}

/* ---- tests ---- */

static void test_states(void)
{
	enum store_state s;

	CHECK_STR(store_state_name(STORE_CANCELLED), "cancelled");
	CHECK(store_state_parse("failed", &s) == 0 && s == STORE_FAILED);
	CHECK_INT(store_state_parse("FAILED", &s), -1);
	CHECK_INT(store_state_parse(NULL, &s), -1);
}

static void test_open(void)
{
	char err[256] = "", path[256];
	struct store *st;

	st = store_open("/nonexistent-dir/x/triggerd.db", err, sizeof err);
	CHECK(st == NULL);
	CHECK(strstr(err, "/nonexistent-dir/x/triggerd.db") != NULL);

	st = open_named("open");
	CHECK(st != NULL);
	CHECK_INT(store_writable(st), 1);
	CHECK_INT(store_count_pending(st), 0);
	store_close(st);
	store_close(NULL);
	CHECK_INT(disk_int("open", "PRAGMA user_version"), 4);
	CHECK_INT(disk_int("open",
			   "SELECT COUNT(*) FROM sqlite_master "
			   "WHERE name IN ('events','deliveries','attempts',"
			   "'dedup')"),
		  4);
	st = open_named("open"); /* reopen an existing schema */
	CHECK(st != NULL);
	store_close(st);

	/* a newer schema is refused, naming the version */
	CHECK_INT(disk_int("open", "PRAGMA user_version = 7"), -1);
	CHECK_INT(disk_int("open", "PRAGMA user_version"), 7);
	db_path(path, sizeof path, "open");
	st = store_open(path, err, sizeof err);
	CHECK(st == NULL);
	CHECK(strstr(err, "version 7") != NULL);
	store_close(st);
}

static void test_accept(void)
{
	struct store *st = open_named("accept");
	const char *trig[] = {"alpha", "beta", "gamma"};
	char ids[3][UTIL_ID_LEN], first[UTIL_ID_LEN], seen[UTIL_ID_LEN];
	struct store_event_out out;
	struct store_due d;
	int64_t wake;

	if (!st)
		return;
	CHECK_INT(accept(st, "{\"a\":1}", "k1", 60000, trig, 3, &out, ids), 0);
	CHECK_INT(out.duplicate, 0);
	CHECK(strncmp(out.event_id, "ev_", 3) == 0);
	CHECK(strncmp(ids[0], "dl_", 3) == 0);
	CHECK(strcmp(ids[0], ids[1]) != 0 && strcmp(ids[1], ids[2]) != 0);
	CHECK_INT(store_count_pending(st), 3);
	snprintf(first, sizeof first, "%s", out.event_id);

	/* fast path and in-transaction check agree */
	CHECK_INT(store_dedup_lookup(st, "k1", 60000, seen), 1);
	CHECK_STR(seen, first);
	CHECK_INT(store_dedup_lookup(st, "nope", 60000, seen), 0);
	CHECK_INT(accept(st, "{\"a\":2}", "k1", 60000, trig, 3, &out, ids), 0);
	CHECK_INT(out.duplicate, 1);
	CHECK_STR(out.event_id, first);
	CHECK_INT(store_count_pending(st), 3);
	CHECK_INT(disk_int("accept", "SELECT COUNT(*) FROM events"), 1);

	/* past the window (of this call) the key is accepted again and the
	 * dedup row renewed: later duplicates name the new event */
	int64_t t0 = util_now_ms();
	while (util_now_ms() < t0 + 3) /* wait for the clock, bounded */
		;
	CHECK_INT(store_dedup_lookup(st, "k1", 1, seen), 0);
	CHECK_INT(accept(st, "{\"a\":3}", "k1", 1, trig, 1, &out, ids), 0);
	CHECK_INT(out.duplicate, 0);
	CHECK(strcmp(out.event_id, first) != 0);
	snprintf(first, sizeof first, "%s", out.event_id);
	CHECK_INT(accept(st, "{\"a\":4}", "k1", 60000, trig, 1, &out, ids), 0);
	CHECK_INT(out.duplicate, 1);
	CHECK_STR(out.event_id, first);
	CHECK_INT(disk_int("accept", "SELECT COUNT(*) FROM dedup"), 1);

	/* no key: never a duplicate */
	CHECK_INT(accept(st, "{}", NULL, 60000, trig, 1, &out, ids), 0);
	CHECK_INT(accept(st, "{}", NULL, 60000, trig, 1, &out, ids), 0);
	CHECK_INT(out.duplicate, 0);
	CHECK_INT(store_count_pending(st), 6);

	/* no trigger: the event is stored, its key is not remembered */
	CHECK_INT(accept(st, "{}", "k0", 60000, NULL, 0, &out, NULL), 0);
	CHECK_INT(out.duplicate, 0);
	CHECK_INT(store_dedup_lookup(st, "k0", 60000, seen), 0);
	CHECK_INT(accept(st, "{}", "k0", 60000, NULL, 0, &out, NULL), 0);
	CHECK_INT(out.duplicate, 0);
	CHECK_INT(disk_int("accept", "SELECT COUNT(*) FROM events"), 6);
	CHECK_INT(store_count_pending(st), 6);

	/* an empty body and one with a NUL come back byte for byte */
	struct store_event_in in = {.body = "a\0b",
				    .body_len = 3,
				    .triggers = trig + 2,
				    .ntriggers = 1};
	out.delivery_ids = ids;
	CHECK_INT(store_accept(st, &in, &out), 0);
	const char *skip[] = {"alpha", "beta"};
	CHECK_INT(
	    claim_due(st, util_now_ms(), NULL, 0, skip, 2, &d, 1, &wake), 1);
	CHECK_STR(d.trigger, "gamma");
	/* gamma's first delivery (from the first event) comes first */
	CHECK(d.body_len == 7 && memcmp(d.body, "{\"a\":1}", 7) == 0);
	store_due_clear(&d);
	in.body = NULL;
	in.body_len = 0;
	in.triggers = (const char *[]){"delta"};
	CHECK_INT(store_accept(st, &in, &out), 0);
	const char *skip3[] = {"alpha", "beta", "gamma"};
	CHECK_INT(
	    claim_due(st, util_now_ms(), NULL, 0, skip3, 3, &d, 1, &wake), 1);
	CHECK(d.body_len == 0 && d.body && d.body[0] == '\0');
	store_due_clear(&d);
	CHECK_INT(disk_int("accept", "SELECT COUNT(*) FROM events "
				     "WHERE body IS NULL"),
		  0);
	store_close(st);
}

/* ---- concurrency: 32 threads, group commit ---- */

#define NTHREADS 32
#define NKEYS 8

struct conc {
	struct store *st;
	pthread_barrier_t *bar;
	int round, i, rc, duplicate;
	char event_id[UTIL_ID_LEN];
};

static void *conc_main(void *arg)
{
	struct conc *c = arg;
	const char *trig[] = {"t"};
	char ids[1][UTIL_ID_LEN], key[32];
	struct store_event_out out;

	snprintf(key, sizeof key, "r%d-k%d", c->round, c->i % NKEYS);
	pthread_barrier_wait(c->bar);
	c->rc = accept(c->st, "{}", key, 60000, trig, 1, &out, ids);
	c->duplicate = out.duplicate;
	memcpy(c->event_id, out.event_id, UTIL_ID_LEN);
	return NULL;
}

static uint32_t be32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	       (uint32_t)p[2] << 8 | p[3];
}

/* Counts the commits in a WAL file: frames of the current generation
 * (salts equal to the header's) whose "database size" field is set.
 * *frames, if not NULL, gets the number of such frames. */
static int wal_scan(const char *name, int *frames)
{
	char path[256];
	unsigned char hdr[32], fh[24];
	int fd, n = 0;
	uint32_t pgsz;
	off_t off;

	snprintf(path, sizeof path, "%s/%s.db-wal", tmpdir, name);
	fd = open(path, O_RDONLY);
	if (fd < 0)
		return -1;
	if (pread(fd, hdr, sizeof hdr, 0) != (ssize_t)sizeof hdr) {
		close(fd);
		return -1;
	}
	pgsz = be32(hdr + 8);
	for (off = 32; pread(fd, fh, sizeof fh, off) == (ssize_t)sizeof fh;
	     off += 24 + pgsz) {
		if (memcmp(fh + 8, hdr + 16, 8) != 0)
			break;
		if (be32(fh + 4) != 0)
			n++;
		if (frames)
			++*frames;
	}
	close(fd);
	return n;
}

static int wal_commits(const char *name)
{
	return wal_scan(name, NULL);
}

/* One round: 32 threads start together, NKEYS distinct keys. Returns the
 * number of commits the 32 accepts took, or -1. */
static int conc_round(int round)
{
	char name[32];
	struct conc c[NTHREADS];
	pthread_t th[NTHREADS];
	pthread_barrier_t bar;
	struct store *st;
	int before, after, fresh = 0;

	snprintf(name, sizeof name, "conc%d", round);
	st = open_named(name);
	if (!st)
		return -1;
	before = wal_commits(name);
	pthread_barrier_init(&bar, NULL, NTHREADS);
	for (int i = 0; i < NTHREADS; i++) {
		c[i] = (struct conc){
		    .st = st, .bar = &bar, .round = round, .i = i};
		pthread_create(&th[i], NULL, conc_main, &c[i]);
	}
	for (int i = 0; i < NTHREADS; i++)
		pthread_join(th[i], NULL);
	pthread_barrier_destroy(&bar);
	after = wal_commits(name);
	for (int i = 0; i < NTHREADS; i++) {
		CHECK_INT(c[i].rc, 0);
		fresh += !c[i].duplicate;
		/* everyone with the same key names the same event */
		CHECK_STR(c[i].event_id, c[i % NKEYS].event_id);
	}
	CHECK_INT(fresh, NKEYS);
	CHECK_INT(store_count_pending(st), NKEYS);
	store_close(st);
	CHECK_INT(disk_int(name, "SELECT COUNT(*) FROM events"), NKEYS);
	CHECK_INT(disk_int(name, "SELECT COUNT(*) FROM deliveries"), NKEYS);
	CHECK(before >= 1 && after > before);
	return before >= 1 && after > before ? after - before : -1;
}

static void test_concurrent(void)
{
	int commits = -1, rounds = 0;

	/* Only the NKEYS fresh accepts write (a duplicate commits nothing),
	 * so one commit per job means NKEYS commits. Sharing is near certain
	 * with 32 threads released together and an fsync per commit; a few
	 * rounds make it certain enough without measuring any time. */
	do {
		commits = conc_round(rounds);
	} while (++rounds < 5 && commits >= NKEYS);
	printf("group commit: %d accepts (%d fresh) in %d commits (round %d)\n",
	       NTHREADS, NKEYS, commits, rounds);
	CHECK(commits > 0 && commits < NKEYS);
}

/* The writer replaces SQLite's automatic checkpoint with its own: the WAL
 * must still be checkpointed and restarted, not grow without end. */
static void test_checkpoint(void)
{
	struct store *st = open_named("checkpoint");
	enum { N = 300 };
	const char *names[N];
	char(*ids)[UTIL_ID_LEN] = calloc(N, UTIL_ID_LEN);
	struct store_event_out out;
	int frames = 0, most = 0;

	for (int i = 0; i < N; i++)
		names[i] = "t";
	for (int i = 0; st && ids && i < 60; i++) {
		CHECK_INT(accept(st, "{}", NULL, 0, names, N, &out, ids), 0);
		frames = 0;
		wal_scan("checkpoint", &frames);
		if (frames > most)
			most = frames;
	}
	/* one batch may pass the threshold before the checkpoint runs */
	CHECK(most > 0 && most < 1200);
	CHECK_INT(disk_int("checkpoint", "SELECT COUNT(*) FROM deliveries"),
		  60 * N);
	free(ids);
	store_close(st);
}

/* ---- due deliveries ---- */

static void test_due(void)
{
	struct store *st = open_named("due");
	char ids[3][UTIL_ID_LEN];
	char(*aids)[UTIL_ID_LEN];
	const char **names;
	struct store_event_out out;
	struct store_due d;
	int64_t wake, now = util_now_ms();
	enum { NA = 3000 };

	if (!st)
		return;
	CHECK_INT(claim_due(st, now, NULL, 0, NULL, 0, &d, 1, &wake), 0);
	CHECK(wake == INT64_MAX);

	/* x1 due at now+5000, x2 at now+1000, x3 delivered */
	const char *x[] = {"x", "x", "x"};
	CHECK_INT(accept(st, "{}", NULL, 0, x, 3, &out, ids), 0);
	CHECK_INT(attempt(st, ids[0], 503, "busy", STORE_PENDING, now + 5000),
		  0);
	CHECK_INT(attempt(st, ids[1], 0, "timeout", STORE_PENDING, now + 1000),
		  0);
	CHECK_INT(attempt(st, ids[2], 200, NULL, STORE_DELIVERED, 0), 0);
	CHECK_INT(claim_due(st, now, NULL, 0, NULL, 0, &d, 1, &wake), 0);
	CHECK(wake == now + 1000);
	CHECK_INT(claim_due(st, now + 1000, NULL, 0, NULL, 0, &d, 1, &wake),
		  1);
	CHECK_STR(d.id, ids[1]);
	CHECK_STR(d.event_id, out.event_id);
	CHECK_STR(d.trigger, "x");
	CHECK_INT(d.attempts, 1);
	store_due_clear(&d);
	const char *skip1[] = {ids[1]};
	CHECK_INT(claim_due(st, now + 1000, skip1, 1, NULL, 0, &d, 1, &wake),
		  0);
	CHECK(wake == now + 5000);
	CHECK_INT(claim_due(st, now + 9000, skip1, 1, NULL, 0, &d, 1, &wake),
		  1);
	CHECK_STR(d.id, ids[0]);
	store_due_clear(&d);
	const char *skipx[] = {"x"};
	CHECK_INT(claim_due(st, now + 9000, NULL, 0, skipx, 1, &d, 1, &wake),
		  0);
	CHECK(wake == INT64_MAX);

	/* starvation: "a" has thousands due earlier; skipping "a" must still
	 * find "b", and skipping some of a's ids gives the next of "a" */
	names = calloc(NA, sizeof *names);
	aids = calloc(NA, sizeof *aids);
	for (int i = 0; names && i < NA; i++)
		names[i] = "a";
	if (!names || !aids)
		goto out;
	CHECK_INT(accept(st, "{}", NULL, 0, names, NA, &out, aids), 0);
	const char *b[] = {"b"};
	CHECK_INT(accept(st, "{\"b\":1}", NULL, 0, b, 1, &out, ids), 0);
	const char *skipa[] = {"a", "x"};
	CHECK_INT(
	    claim_due(st, util_now_ms(), NULL, 0, skipa, 2, &d, 1, &wake), 1);
	CHECK_STR(d.id, ids[0]);
	CHECK_STR(d.trigger, "b");
	store_due_clear(&d);
	const char *skipb[NA / 2 + 2];
	for (int i = 0; i < NA / 2; i++)
		skipb[i] = aids[i];
	skipb[NA / 2] = "x"; /* an id list may hold anything */
	CHECK_INT(claim_due(st, util_now_ms(), skipb, NA / 2 + 1, skipx, 1,
				 &d, 1, &wake),
		  1);
	CHECK_STR(d.id, aids[NA / 2]); /* same next_at: creation order */
	store_due_clear(&d);
	const char *skipab[] = {"a", "b", "x"};
	CHECK_INT(
	    claim_due(st, util_now_ms(), NULL, 0, skipab, 3, &d, 1, &wake),
	    0);
	CHECK(wake == INT64_MAX);
	CHECK_INT(store_count_pending(st), NA + 3);

	/* a batch: several per trigger, earliest first, skips honoured */
	struct store_due batch[8];
	const char *skipx1[] = {"x"};
	int got = claim_due(st, util_now_ms(), skipb, NA / 2, skipx1, 1,
				 batch, 8, &wake);
	CHECK_INT(got, 8);
	for (int i = 0; i < got; i++) {
		if (i < 7)
			CHECK_STR(batch[i].id, aids[NA / 2 + i]);
		store_due_clear(&batch[i]);
	}
	const char *skipa1[] = {"a", "x"};
	got = claim_due(st, util_now_ms(), NULL, 0, skipa1, 2, batch, 8,
			     &wake);
	CHECK_INT(got, 1);
	CHECK(got == 1 && strcmp(batch[0].trigger, "b") == 0);
	for (int i = 0; i < got; i++)
		store_due_clear(&batch[i]);
out:
	free(names);
	free(aids);
	store_close(st);
}

/* ---- attempts, retry, cancel ---- */

static void test_attempts(void)
{
	struct store *st = open_named("attempts");
	const char *trig[] = {"x", "y", "z", "y"};
	char ids[4][UTIL_ID_LEN];
	struct store_event_out out;
	struct store_due d;
	int64_t wake, now = util_now_ms();
	json_t *j, *h;
	int rc;

	if (!st)
		return;
	CHECK_INT(accept(st, "{}", NULL, 0, trig, 4, &out, ids), 0);
	CHECK_INT(store_retry(st, ids[0], now), 2); /* pending */
	CHECK_INT(store_retry(st, "dl_nope", now), 1);

	/* x: retried then delivered */
	CHECK_INT(attempt(st, ids[0], 503, "dbt Cloud answered 503",
			  STORE_PENDING, now + 100),
		  0);
	CHECK_INT(attempt(st, ids[0], 200, NULL, STORE_DELIVERED, 0), 0);
	CHECK_INT(store_retry(st, ids[0], now), 2); /* delivered */
	j = get_json(st, ids[0], &rc);
	CHECK_INT(rc, 0);
	CHECK_STR(jget(j, "state"), "delivered");
	CHECK_STR(jget(j, "id"), ids[0]);
	CHECK_STR(jget(j, "event"), out.event_id);
	CHECK_STR(jget(j, "trigger"), "x");
	CHECK_INT(json_integer_value(json_object_get(j, "attempts")), 2);
	CHECK_INT(json_integer_value(json_object_get(j, "last_status")), 200);
	CHECK(json_is_null(json_object_get(j, "last_error")));
	CHECK(json_is_null(json_object_get(j, "next_attempt_at")));
	CHECK(jget(j, "created_at") && strlen(jget(j, "created_at")) == 24 &&
	      jget(j, "created_at")[23] == 'Z');
	CHECK_INT(json_object_size(j), 13);
	CHECK(json_is_object(json_object_get(j, "event_body")));
	h = json_object_get(j, "history");
	CHECK_INT(json_array_size(h), 2);
	CHECK_INT(
	    json_integer_value(json_object_get(json_array_get(h, 0), "status")),
	    503);
	CHECK_STR(jget(json_array_get(h, 0), "error"),
		  "dbt Cloud answered 503");
	CHECK_INT(
	    json_integer_value(json_object_get(json_array_get(h, 0), "ms")),
	    12);
	CHECK(jget(json_array_get(h, 0), "at") != NULL);
	CHECK_INT(json_object_size(json_array_get(h, 0)), 4);
	CHECK(json_is_null(json_object_get(json_array_get(h, 1), "error")));
	json_decref(j);
	CHECK_INT(disk_int("attempts", "SELECT length(response) FROM attempts "
				       "LIMIT 1"),
		  9);

	/* y1: no response, then failed for good; retry gives a fresh count
	 * and age, keeps the history */
	CHECK_INT(attempt(st, ids[1], 0, "connection refused", STORE_FAILED, 0),
		  0);
	j = get_json(st, ids[1], &rc);
	CHECK_STR(jget(j, "state"), "failed");
	CHECK(json_is_null(json_object_get(j, "last_status")));
	CHECK_STR(jget(j, "last_error"), "connection refused");
	CHECK(json_is_null(json_object_get(
	    json_array_get(json_object_get(j, "history"), 0), "status")));
	json_decref(j);
	CHECK_INT(store_retry(st, ids[1], now + 50), 0);
	j = get_json(st, ids[1], &rc);
	CHECK_STR(jget(j, "state"), "pending");
	CHECK_INT(json_integer_value(json_object_get(j, "attempts")), 0);
	CHECK(jget(j, "next_attempt_at") != NULL);
	CHECK_INT(json_array_size(json_object_get(j, "history")), 1);
	json_decref(j);
	const char *only_y[] = {"x", "z"}, *not_y2[] = {ids[3]};
	CHECK_INT(claim_due(st, now + 50, not_y2, 1, only_y, 2, &d, 1, &wake),
		  1);
	CHECK_STR(d.id, ids[1]);
	CHECK_INT(d.attempts, 0);
	CHECK(d.accepted_at_ms == now + 50);
	store_due_clear(&d);

	/* cancel: y is removed; z and x stay. y1 and y2 are pending. */
	const char *active[] = {"x", "z"};
	CHECK_INT(store_cancel_inactive(st, active, 2, NULL, NULL), 2);
	CHECK_INT(store_cancel_inactive(st, active, 2, NULL, NULL), 0);
	j = get_json(st, ids[3], &rc);
	CHECK_STR(jget(j, "state"), "cancelled");
	CHECK(json_is_null(json_object_get(j, "next_attempt_at")));
	json_decref(j);
	/* an attempt in flight while cancelled does not revive it... */
	CHECK_INT(
	    attempt(st, ids[3], 502, "bad gateway", STORE_PENDING, now + 10),
	    0);
	j = get_json(st, ids[3], &rc);
	CHECK_STR(jget(j, "state"), "cancelled");
	CHECK_INT(json_integer_value(json_object_get(j, "attempts")), 1);
	json_decref(j);
	/* ...but an admin retry does */
	CHECK_INT(store_retry(st, ids[3], now), 0);
	CHECK_INT(store_count_pending(st), 2); /* z, y2 */
	CHECK_INT(store_cancel_inactive(st, NULL, 0, NULL, NULL), 2);
	CHECK_INT(store_count_pending(st), 0);
	j = get_json(st, ids[0], &rc);
	CHECK_STR(jget(j, "state"), "delivered"); /* never cancelled */
	json_decref(j);

	/* unknown ids */
	CHECK_INT(attempt(st, "dl_nope", 200, NULL, STORE_DELIVERED, 0), 0);
	CHECK_INT(cb_fails, 1);
	cb_fails = 0;
	j = get_json(st, "dl_nope", &rc);
	CHECK_INT(rc, 1);
	CHECK(j == NULL);
	store_close(st);
}

/* ---- listing ---- */

static void test_list(void)
{
	struct store *st = open_named("list");
	char ids[5][UTIL_ID_LEN];
	struct store_event_out out;
	json_t *l;

	if (!st)
		return;
	for (int i = 0; i < 5; i++) {
		const char *t[] = {i % 2 ? "odd" : "even"};
		CHECK_INT(accept(st, "{}", NULL, 0, t, 1, &out, &ids[i]), 0);
	}
	CHECK_INT(attempt(st, ids[1], 404, "not found", STORE_FAILED, 0), 0);
	CHECK_INT(attempt(st, ids[2], 200, NULL, STORE_DELIVERED, 0), 0);

	l = list_json(st, NULL, NULL, 0); /* default limit */
	CHECK_INT(json_array_size(l), 5);
	for (int i = 0; i < 5; i++)
		CHECK_STR(jget(json_array_get(l, (size_t)i), "id"), ids[4 - i]);
	CHECK_INT(json_object_size(json_array_get(l, 0)), 11);
	json_decref(l);
	l = list_json(st, NULL, NULL, 2);
	CHECK_INT(json_array_size(l), 2);
	CHECK_STR(jget(json_array_get(l, 1), "id"), ids[3]);
	json_decref(l);
	l = list_json(st, "pending", NULL, 100);
	CHECK_INT(json_array_size(l), 3);
	CHECK_STR(jget(json_array_get(l, 0), "id"), ids[4]);
	CHECK_STR(jget(json_array_get(l, 2), "id"), ids[0]);
	json_decref(l);
	l = list_json(st, NULL, "odd", 100);
	CHECK_INT(json_array_size(l), 2);
	CHECK_STR(jget(json_array_get(l, 0), "id"), ids[3]);
	json_decref(l);
	l = list_json(st, "failed", "odd", 100);
	CHECK_INT(json_array_size(l), 1);
	CHECK_STR(jget(json_array_get(l, 0), "id"), ids[1]);
	CHECK_INT(json_integer_value(
		      json_object_get(json_array_get(l, 0), "last_status")),
		  404);
	json_decref(l);
	l = list_json(st, "failed", "even", 100);
	CHECK_INT(json_array_size(l), 0);
	CHECK(l != NULL);
	json_decref(l);
	l = list_json(st, "bogus", NULL, 100);
	CHECK_INT(json_array_size(l), 0);
	json_decref(l);

	/* a too-small buffer is an error, not a truncated answer */
	struct buf b;
	buf_init(&b, 16);
	CHECK_INT(store_list_json(st, NULL, NULL, 10, &b), -1);
	buf_free(&b);

	/* the state on disk after close and reopen */
	store_close(st);
	st = open_named("list");
	if (!st)
		return;
	CHECK_INT(store_count_pending(st), 3);
	l = list_json(st, "delivered", NULL, 10);
	CHECK_INT(json_array_size(l), 1);
	CHECK_STR(jget(json_array_get(l, 0), "id"), ids[2]);
	json_decref(l);
	struct store_due d;
	int64_t wake;
	CHECK_INT(
	    claim_due(st, util_now_ms(), NULL, 0, NULL, 0, &d, 1, &wake), 1);
	CHECK_STR(d.id, ids[0]);
	store_due_clear(&d);
	store_close(st);
}

/* ---- a full disk ---- */

static int fill_disk(const char *path)
{
	static char block[65536];
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	ssize_t n = 0;

	if (fd < 0)
		return -1;
	memset(block, 'x', sizeof block);
	for (size_t sz = sizeof block; sz > 0; sz /= 2)
		while ((n = write(fd, block, sz)) > 0)
			;
	close(fd);
	return n < 0 && errno == ENOSPC ? 0 : -1;
}

struct full {
	struct store *st;
	int i, rc;
};

static void *full_main(void *arg)
{
	struct full *f = arg;
	const char *t[] = {"t"};
	char ids[1][UTIL_ID_LEN], key[16];
	struct store_event_out out;

	snprintf(key, sizeof key, "full-%d", f->i);
	f->rc = accept(f->st, "{}", key, 60000, t, 1, &out, ids);
	return NULL;
}

static void test_full_disk(void)
{
	char mnt[128], path[192], filler[192], err[256], ids[1][UTIL_ID_LEN],
	    a[UTIL_ID_LEN], b[UTIL_ID_LEN], seen[UTIL_ID_LEN];
	const char *t[] = {"t"};
	struct store_event_out out;
	struct full f[8];
	pthread_t th[8];
	struct store *st;
	json_t *j;
	int rc;

	snprintf(mnt, sizeof mnt, "%s/mnt", tmpdir);
	if (mkdir(mnt, 0700) < 0 ||
	    mount("tmpfs", mnt, "tmpfs", 0, "size=2m") < 0) {
		printf("note: cannot mount a tmpfs (%s): full-disk test "
		       "skipped\n",
		       strerror(errno));
		rmdir(mnt);
		return;
	}
	snprintf(path, sizeof path, "%s/full.db", mnt);
	snprintf(filler, sizeof filler, "%s/filler", mnt);
	st = store_open(path, err, sizeof err);
	CHECK(st != NULL);
	if (!st)
		goto out;
	/* a stays pending, b failed */
	CHECK_INT(accept(st, "{}", "a", 60000, t, 1, &out, ids), 0);
	memcpy(a, ids[0], UTIL_ID_LEN);
	CHECK_INT(accept(st, "{}", "b", 60000, t, 1, &out, ids), 0);
	memcpy(b, ids[0], UTIL_ID_LEN);
	CHECK_INT(attempt(st, b, 400, "bad request", STORE_FAILED, 0), 0);
	CHECK_INT(fill_disk(filler), 0);

	/* every write fails cleanly, alone or in a batch of many */
	CHECK_INT(accept(st, "{}", "full", 60000, t, 1, &out, ids), -1);
	CHECK_INT(store_writable(st), 0);
	CHECK_INT(store_retry(st, b, util_now_ms()), -1);
	CHECK_INT(store_cancel_inactive(st, NULL, 0, NULL, NULL), -1);
	for (int i = 0; i < 8; i++) {
		f[i] = (struct full){.st = st, .i = i};
		pthread_create(&th[i], NULL, full_main, &f[i]);
	}
	CHECK_INT(attempt(st, a, 200, NULL, STORE_DELIVERED, 0), 0);
	CHECK_INT(cb_fails, 1);
	cb_fails = 0;
	for (int i = 0; i < 8; i++) {
		pthread_join(th[i], NULL);
		CHECK_INT(f[i].rc, -1);
	}
	/* a retry of a pending delivery writes nothing, so it still answers */
	CHECK_INT(store_retry(st, a, util_now_ms()), 2);

	/* nothing of the failed batches is visible */
	CHECK_INT(store_count_pending(st), 1);
	CHECK_INT(store_dedup_lookup(st, "full", 60000, seen), 0);
	CHECK_INT(store_dedup_lookup(st, "full-3", 60000, seen), 0);
	j = get_json(st, a, &rc);
	CHECK_STR(jget(j, "state"), "pending");
	CHECK_INT(json_array_size(json_object_get(j, "history")), 0);
	json_decref(j);
	j = get_json(st, b, &rc);
	CHECK_STR(jget(j, "state"), "failed");
	json_decref(j);

	/* space returns: the store commits again by itself */
	CHECK_INT(unlink(filler), 0);
	CHECK_INT(store_writable(st), 1);
	CHECK_INT(accept(st, "{}", "full", 60000, t, 1, &out, ids), 0);
	CHECK_INT(out.duplicate, 0);
	CHECK_INT(store_retry(st, b, util_now_ms()), 0);
	CHECK_INT(store_count_pending(st), 3);
	store_close(st);
	st = store_open(path, err, sizeof err);
	CHECK(st != NULL);
	if (st) {
		CHECK_INT(store_count_pending(st), 3);
		CHECK_INT(store_dedup_lookup(st, "a", 60000, seen), 1);
		CHECK_INT(store_dedup_lookup(st, "full-5", 60000, seen), 0);
	}
	store_close(st);
out:
	if (umount(mnt) < 0)
		fprintf(stderr, "umount %s: %s\n", mnt, strerror(errno));
	rmdir(mnt);
}


/* Accepts body for one trigger with batching b and job job. */
static int accept_batched(struct store *st, const char *body, const char *key,
			  const char *trigger, const struct store_batching *b,
			  const char *job, struct store_event_out *out,
			  char id[UTIL_ID_LEN], struct store_result *res)
{
	const char *trig[] = {trigger};
	struct store_event_in in = {
	    .body = body, .body_len = strlen(body), .dedup_key = key,
	    .dedup_window_ms = 60000, .triggers = trig, .ntriggers = 1,
	    .batching = b, .job_id = job};

	memset(out, 0, sizeof *out);
	out->delivery_ids = (char(*)[UTIL_ID_LEN])id;
	out->results = res;
	return store_accept(st, &in, out);
}

/* SPEC section 9 in the store: a fan-in over three jobs (a job's later
 * event replaces its earlier one, a duplicate does not count, the
 * completing event makes one batched delivery and the set starts over),
 * progress, reload pruning, and a coalescing batch (joins, the latest
 * event rendered, closed by the first attempt). */
static void test_batching(void)
{
	struct store *st = open_named("batch");
	const char *jobs[] = {"ja", "jb", "jc"};
	struct store_batching fan = {.jobs = jobs, .njobs = 3};
	struct store_batching co = {.coalesce_ms = 60000};
	struct store_event_out out;
	struct store_result r;
	struct store_due d[4];
	struct store_delivery_full f;
	char id[UTIL_ID_LEN], ev[4][UTIL_ID_LEN];
	int done[3];
	int64_t wake;

	if (!st)
		return;
	CHECK_INT(accept_batched(st, "{\"n\":1}", NULL, "fan", &fan, "ja", &out,
				 id, &r), 0);
	CHECK_INT(r.outcome, STORE_WAITING);
	CHECK_INT(r.done, 1);
	CHECK_INT(r.of, 3);
	CHECK_STR(id, "");
	CHECK_INT(accept_batched(st, "{\"n\":2}", "k2", "fan", &fan, "jb", &out,
				 id, &r), 0);
	snprintf(ev[0], UTIL_ID_LEN, "%s", out.event_id);
	CHECK_INT(r.done, 2);
	/* a duplicate counts nothing; a repeat of a job counts once */
	CHECK_INT(accept_batched(st, "{\"n\":3}", "k2", "fan", &fan, "jb", &out,
				 id, &r), 0);
	CHECK_INT(out.duplicate, 1);
	CHECK_INT(accept_batched(st, "{\"n\":4}", NULL, "fan", &fan, "ja", &out,
				 id, &r), 0);
	snprintf(ev[1], UTIL_ID_LEN, "%s", out.event_id);
	CHECK_INT(r.outcome, STORE_WAITING);
	CHECK_INT(r.done, 2);
	CHECK_INT(store_fanin_progress(st, "fan", jobs, 3, 0, util_now_ms(),
				       done), 0);
	CHECK(done[0] == 1 && done[1] == 1 && done[2] == 0);
	CHECK_INT(store_count_pending(st), 0);
	CHECK_INT(accept_batched(st, "{\"n\":5}", NULL, "fan", &fan, "jc", &out,
				 id, &r), 0);
	snprintf(ev[2], UTIL_ID_LEN, "%s", out.event_id);
	CHECK_INT(r.outcome, STORE_NEW);
	CHECK(strncmp(id, "dl_", 3) == 0);
	CHECK_INT(store_count_pending(st), 1);
	CHECK_INT(store_fanin_progress(st, "fan", jobs, 3, 0, util_now_ms(),
				       done), 0);
	CHECK(done[0] == 0 && done[1] == 0 && done[2] == 0);
	CHECK_INT(store_get(st, id, &f), 0);
	CHECK_INT(f.d.batched, 1);
	CHECK_STR(f.d.event_id, ev[2]);
	CHECK(f.d.nevents == 3);
	if (f.d.nevents == 3) {
		CHECK_STR(f.d.events[0], ev[0]); /* jb's, then ja's latest */
		CHECK_STR(f.d.events[1], ev[1]);
		CHECK_STR(f.d.events[2], ev[2]);
	}
	store_get_clear(&f);
	CHECK_INT(claim_due(st, util_now_ms(), NULL, 0, NULL, 0, d, 4, &wake),
		  1);
	CHECK(d[0].nbatch == 3);
	if (d[0].nbatch == 3) {
		CHECK_STR(d[0].batch_bodies[0], "{\"n\":2}");
		CHECK_STR(d[0].batch_bodies[1], "{\"n\":4}");
		CHECK_STR(d[0].batch_bodies[2], "{\"n\":5}");
	}
	CHECK_STR(d[0].body, "{\"n\":5}");
	char fan_id[UTIL_ID_LEN];
	const char *held[] = {fan_id};
	snprintf(fan_id, sizeof fan_id, "%s", d[0].id);
	store_due_clear(&d[0]);

	/* within: an old event no longer counts */
	CHECK_INT(accept_batched(st, "{}", NULL, "fan", &fan, "ja", &out, id,
				 &r), 0);
	CHECK_INT(store_fanin_progress(st, "fan", jobs, 3, 1,
				       util_now_ms() + 5, done), 0);
	CHECK_INT(done[0], 0);
	/* reload: kept pairs stay, others go */
	CHECK_INT(accept_batched(st, "{}", NULL, "fan", &fan, "jb", &out, id,
				 &r), 0);
	const char *kt[] = {"fan", "fan"}, *kj[] = {"jb", "jc"};
	CHECK_INT(store_fanin_keep(st, kt, kj, 2), 0);
	CHECK_INT(store_fanin_progress(st, "fan", jobs, 3, 0, util_now_ms(),
				       done), 0);
	CHECK(done[0] == 0 && done[1] == 1);
	CHECK_INT(store_fanin_keep(st, NULL, NULL, 0), 0);
	CHECK_INT(disk_int("batch", "SELECT COUNT(*) FROM fanin"), 0);

	/* coalescing: one delivery, due a window later, the latest event */
	CHECK_INT(accept_batched(st, "{\"c\":1}", NULL, "co", &co, "ja", &out,
				 id, &r), 0);
	CHECK_INT(r.outcome, STORE_NEW);
	char first[UTIL_ID_LEN];
	snprintf(first, sizeof first, "%s", id);
	CHECK_INT(accept_batched(st, "{\"c\":2}", NULL, "co", &co, "jb", &out,
				 id, &r), 0);
	CHECK_INT(r.outcome, STORE_JOINED);
	CHECK_STR(id, first);
	CHECK_INT(claim_due(st, util_now_ms(), held, 1, NULL, 0, d, 4, &wake),
		  0);
	CHECK(wake > util_now_ms() + 50000);
	CHECK_INT(claim_due(st, util_now_ms() + 60001, held, 1, NULL, 0, d, 4,
			    &wake), 1);
	CHECK(d[0].nbatch == 2);
	CHECK_STR(d[0].body, "{\"c\":2}");
	/* the first attempt closes the batch: the next event opens another */
	struct store_attempt a = {.at_ms = util_now_ms(), .status = 500,
				  .error = "HTTP 500"};
	CHECK_INT(store_record_attempt(st, first, &a, STORE_PENDING,
				       util_now_ms() + 1000, NULL, NULL), 0);
	store_due_clear(&d[0]);
	CHECK_INT(accept_batched(st, "{\"c\":3}", NULL, "co", &co, "jb", &out,
				 id, &r), 0);
	CHECK_INT(r.outcome, STORE_NEW);
	CHECK(strcmp(id, first) != 0);
	store_close(st);
}

/* A followed run comes back as a poll; every slot of out is defined
 * (callers clear all of them), whatever was in it before. */
static void test_polls(void)
{
	struct store *st = open_named("polls");
	const char *trig[] = {"x"};
	char ids[1][UTIL_ID_LEN];
	struct store_event_out out;
	struct store_due d[4];
	int64_t wake, now = util_now_ms();
	struct store_run run = {.id = 42, .status = "queued",
				.started_at_ms = now, .poll_at_ms = now};
	struct store_attempt a = {.at_ms = now, .status = 200, .run = &run};
	struct store_claim c = {.now_ms = now + 1, .lease_ms = 35000};
	int want, got;

	if (!st)
		return;
	CHECK_INT(accept(st, "{}", NULL, 0, trig, 1, &out, ids), 0);
	pthread_mutex_lock(&cb_lock);
	want = cb_calls + 1;
	pthread_mutex_unlock(&cb_lock);
	CHECK_INT(store_record_attempt(st, ids[0], &a, STORE_DELIVERED, 0,
				       on_done, NULL),
		  0);
	wait_calls(want);
	memset(d, 0xa5, sizeof d);
	got = store_claim_polls(st, &c, d, 4, &wake);
	CHECK_INT(got, 1);
	CHECK_STR(d[0].id, ids[0]);
	CHECK_INT(d[0].poll, 1);
	CHECK_INT((int)d[0].run_id, 42);
	CHECK(d[0].batch_bodies == NULL && d[0].nbatch == 0);
	CHECK(d[1].trigger == NULL && d[1].body == NULL && d[1].nbatch == 0);
	for (int i = 0; i < 4; i++)
		store_due_clear(&d[i]);
	store_close(st);
}

int main(void)
{
	if (check_tmpdir(tmpdir, sizeof tmpdir, "test_store") < 0)
		return 1;
	test_states();
	test_open();
	test_migrate_v1();
	test_file_gone();
	test_accept();
	test_batching();
	test_concurrent();
	test_checkpoint();
	test_due();
	test_attempts();
	test_polls();
	test_list();
	test_full_disk();
	check_rmtree(tmpdir);
	return check_report();
}
