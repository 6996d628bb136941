/*
 * pg_store — the PostgreSQL store (SPEC section 11): several triggerd
 * instances share one database. This file connects, creates or migrates
 * the schema, holds the helpers the backend's files share and its table
 * of operations; the writer is in pg_writer.c, claims and reads in
 * pg_read.c (see pg_int.h).
 *
 * DESIGN: everything lives in the schema "triggerd" of the database the
 * URL names (search_path is set on every connection). The schema is
 * created and migrated at open by whichever instance takes the advisory
 * lock first; the others wait for it and find the schema current, so any
 * number of instances may start at once. Schema version is in
 * meta('schema_version'); older versions are migrated, newer refused.
 *
 * Tables mirror the SQLite store's (times are integer ms since the epoch,
 * taken from the instances' clocks), plus: seq (creation order, for
 * newest-first listing across instances), lease_until and lease_owner (a
 * claim, SPEC section 11: a delivery or poll is claimed by one instance
 * until its lease passes), and dedup's primary key, which is what makes
 * two instances accepting one key at once answer one 202 and one
 * duplicate. Accepting is one call of the function triggerd_accept, so a
 * batch of accepts is one round trip per event inside one transaction.
 *
 * Open and close are called by the main thread.
 */
#include "pg_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

/* pg_advisory_lock key: "triggerd" in ASCII */
#define MIGRATE_LOCK "7526752011350254180"

/* Migration i brings the schema from version i to i + 1. */
static const char *const migrations[] = {
    "CREATE TABLE events ("
    " id text PRIMARY KEY, body bytea NOT NULL,"
    " accepted_at bigint NOT NULL);"
    "CREATE TABLE deliveries ("
    " seq bigserial UNIQUE,"
    " id text PRIMARY KEY, event_id text NOT NULL REFERENCES events(id),"
    " \"trigger\" text NOT NULL, state text NOT NULL,"
    " attempts integer NOT NULL DEFAULT 0, last_status integer,"
    " last_error text, next_at bigint, created_at bigint NOT NULL,"
    " accepted_at bigint NOT NULL, updated_at bigint NOT NULL,"
    " unsure boolean NOT NULL DEFAULT false,"
    " run_id bigint, run_href text, run_status text,"
    " run_finished_at text, run_message text, run_started_at bigint,"
    " poll_at bigint,"
    " lease_until bigint, lease_owner text);"
    "CREATE INDEX deliveries_due ON deliveries(next_at, seq)"
    " WHERE state = 'pending';"
    "CREATE INDEX deliveries_state ON deliveries(state, seq);"
    "CREATE INDEX deliveries_trigger ON deliveries(\"trigger\", seq);"
    "CREATE INDEX deliveries_poll ON deliveries(poll_at)"
    " WHERE poll_at IS NOT NULL;"
    "CREATE INDEX deliveries_lease ON deliveries(lease_owner)"
    " WHERE lease_owner IS NOT NULL;"
    "CREATE TABLE attempts ("
    " seq bigserial PRIMARY KEY,"
    " delivery_id text NOT NULL REFERENCES deliveries(id),"
    " at bigint NOT NULL, status integer, error text,"
    " ms bigint NOT NULL, response bytea);"
    "CREATE INDEX attempts_delivery ON attempts(delivery_id, seq);"
    "CREATE TABLE dedup ("
    " \"key\" text PRIMARY KEY, event_id text NOT NULL,"
    " at bigint NOT NULL);"
    "CREATE INDEX dedup_at ON dedup(at);"
    /* The dedup check and the writes of one event, atomically: the
     * upsert waits for a concurrent transaction holding the same key and
     * then sees its row, so of two instances exactly one accepts. NULL:
     * accepted; else the first event's id (a duplicate). */
    "CREATE FUNCTION triggerd_accept(p_event text, p_body bytea,"
    " p_now bigint, p_key text, p_since bigint, p_triggers text[],"
    " p_ids text[]) RETURNS text LANGUAGE plpgsql AS $f$"
    " DECLARE prior text;"
    " BEGIN"
    "  IF p_key IS NOT NULL AND cardinality(p_triggers) = 0 THEN"
    "   SELECT event_id INTO prior FROM dedup"
    "    WHERE \"key\" = p_key AND at > p_since;"
    "   IF FOUND THEN RETURN prior; END IF;"
    "  ELSIF p_key IS NOT NULL THEN"
    "   INSERT INTO dedup AS x (\"key\", event_id, at)"
    "    VALUES (p_key, p_event, p_now) ON CONFLICT (\"key\") DO UPDATE"
    "    SET event_id = EXCLUDED.event_id, at = EXCLUDED.at"
    "    WHERE x.at <= p_since;"
    "   IF NOT FOUND THEN"
    "    SELECT event_id INTO prior FROM dedup WHERE \"key\" = p_key;"
    "    RETURN COALESCE(prior, '');"
    "   END IF;"
    "  END IF;"
    "  INSERT INTO events(id, body, accepted_at)"
    "   VALUES (p_event, p_body, p_now);"
    "  INSERT INTO deliveries(id, event_id, \"trigger\", state, next_at,"
    "   created_at, accepted_at, updated_at)"
    "   SELECT u.i, p_event, u.t, 'pending', p_now, p_now, p_now, p_now"
    "   FROM unnest(p_ids, p_triggers) WITH ORDINALITY AS u(i, t, n)"
    "   ORDER BY u.n;"
    "  RETURN NULL;"
    " END $f$;",
};
#define SCHEMA_VERSION ((int)(sizeof migrations / sizeof migrations[0]))

/* ---- parameters and results ---- */

void pg_p_text(struct pg_params *p, const char *s)
{
	p->v[p->n] = s;
	p->len[p->n] = 0;
	p->fmt[p->n] = 0;
	p->n++;
}

void pg_p_int(struct pg_params *p, int64_t v)
{
	snprintf(p->num[p->n], sizeof p->num[p->n], "%lld", (long long)v);
	pg_p_text(p, p->num[p->n]);
}

void pg_p_bin(struct pg_params *p, const void *data, size_t len)
{
	p->v[p->n] = data ? data : "";
	p->len[p->n] = (int)len;
	p->fmt[p->n] = 1;
	p->n++;
}

int pg_p_array(struct pg_params *p, const char *const *v, size_t n,
	       char **hold)
{
	size_t cap = 3;
	char *s, *o;

	for (size_t i = 0; i < n; i++)
		cap += 3 + 2 * strlen(v[i]);
	if (!(s = malloc(cap)))
		return -1;
	o = s;
	*o++ = '{';
	for (size_t i = 0; i < n; i++) {
		if (i)
			*o++ = ',';
		*o++ = '"';
		for (const char *c = v[i]; *c; c++) {
			if (*c == '"' || *c == '\\')
				*o++ = '\\';
			*o++ = *c;
		}
		*o++ = '"';
	}
	*o++ = '}';
	*o = '\0';
	*hold = s;
	pg_p_text(p, s);
	return 0;
}

PGresult *pg_exec(PGconn *c, const char *sql, const struct pg_params *p)
{
	if (!p)
		return PQexecParams(c, sql, 0, NULL, NULL, NULL, NULL, 0);
	return PQexecParams(c, sql, p->n, NULL, p->v, p->len, p->fmt, 0);
}

int pg_ok(const PGresult *r)
{
	ExecStatusType s = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;

	if (s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK)
		return 1;
	if (r && s != PGRES_PIPELINE_ABORTED)
		log_kv(LOG_DEBUG, "postgresql statement failed", "error",
		       PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY), LOG_END);
	return 0;
}

int64_t pg_int(const PGresult *r, int row, int col)
{
	if (PQgetisnull(r, row, col))
		return -1;
	return strtoll(PQgetvalue(r, row, col), NULL, 10);
}

int64_t pg_window_start(int64_t now_ms, int64_t window_ms)
{
	return window_ms >= now_ms ? INT64_MIN : now_ms - window_ms;
}

/* ---- connections ---- */

/* A new connection with search_path set, or NULL with err filled. The
 * URL goes last so its own connect_timeout wins over ours. */
static PGconn *connect_db(const char *url, char *err, size_t errlen)
{
	const char *const kw[] = {"connect_timeout", "application_name",
				  "dbname", NULL};
	const char *const val[] = {"5", "triggerd", url, NULL};
	PGconn *c = PQconnectdbParams(kw, val, 1);
	PGresult *r;

	if (!c || PQstatus(c) != CONNECTION_OK) {
		snprintf(err, errlen, "%s",
			 c ? PQerrorMessage(c) : "out of memory");
		/* libpq's messages end with a newline */
		err[strcspn(err, "\n")] = '\0';
		PQfinish(c);
		return NULL;
	}
	r = pg_exec(c, "SET search_path = triggerd", NULL);
	if (!pg_ok(r)) {
		snprintf(err, errlen, "%s", PQerrorMessage(c));
		err[strcspn(err, "\n")] = '\0';
		PQclear(r);
		PQfinish(c);
		return NULL;
	}
	PQclear(r);
	return c;
}

PGconn *pg_conn_get(struct pg_store *st, struct pg_conn *pc)
{
	char err[512];
	int64_t now = util_now_ms();

	if (pc->c && PQstatus(pc->c) == CONNECTION_OK)
		return pc->c;
	PQfinish(pc->c);
	pc->c = NULL;
	if (now < pc->next_try_ms)
		return NULL;
	pc->c = connect_db(st->url, err, sizeof err);
	if (!pc->c) {
		pc->next_try_ms = now + PG_RETRY_MS;
		if (!pc->down)
			log_kv(LOG_ERROR, "cannot reach the database", "conn",
			       pc->what, "error", err, "action",
			       "retrying every second", LOG_END);
		pc->down = 1;
		return NULL;
	}
	if (pc->down)
		log_kv(LOG_INFO, "database reachable again", "conn", pc->what,
		       LOG_END);
	pc->down = 0;
	return pc->c;
}

void pg_conn_check(struct pg_conn *pc)
{
	if (pc->c && PQstatus(pc->c) != CONNECTION_OK) {
		PQfinish(pc->c);
		pc->c = NULL;
	}
}

/* ---- the schema ---- */

/* Runs sql, which may hold several statements (a migration). */
static int exec_simple(PGconn *c, const char *sql, char *err, size_t errlen)
{
	PGresult *r = PQexec(c, sql);
	int ok = pg_ok(r);

	if (!ok) {
		snprintf(err, errlen, "%s", PQerrorMessage(c));
		err[strcspn(err, "\n")] = '\0';
	}
	PQclear(r);
	return ok ? 0 : -1;
}

/* With the migration lock held: brings the schema to SCHEMA_VERSION in
 * one transaction. */
static int migrate_locked(PGconn *c, char *err, size_t errlen)
{
	PGresult *r;
	long long version = 0;
	char sql[160];

	if (exec_simple(c, "CREATE SCHEMA IF NOT EXISTS triggerd", err,
			errlen) < 0 ||
	    exec_simple(c,
			"CREATE TABLE IF NOT EXISTS meta ("
			" \"key\" text PRIMARY KEY, value text)",
			err, errlen) < 0)
		return -1;
	r = pg_exec(c, "SELECT value FROM meta WHERE \"key\" = 'schema_version'",
		    NULL);
	if (!pg_ok(r)) {
		snprintf(err, errlen, "%s", PQerrorMessage(c));
		err[strcspn(err, "\n")] = '\0';
		PQclear(r);
		return -1;
	}
	if (PQntuples(r) == 1)
		version = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
	PQclear(r);
	if (version > SCHEMA_VERSION) {
		snprintf(err, errlen,
			 "schema version %lld is newer than this triggerd "
			 "supports (%d); use a newer triggerd",
			 version, SCHEMA_VERSION);
		return -1;
	}
	if (version == SCHEMA_VERSION)
		return 0;
	if (exec_simple(c, "BEGIN", err, errlen) < 0)
		return -1;
	for (long long i = version < 0 ? 0 : version; i < SCHEMA_VERSION; i++)
		if (exec_simple(c, migrations[i], err, errlen) < 0)
			goto fail;
	snprintf(sql, sizeof sql,
		 "INSERT INTO meta VALUES ('schema_version', '%d')"
		 " ON CONFLICT (\"key\") DO UPDATE SET value = EXCLUDED.value",
		 SCHEMA_VERSION);
	if (exec_simple(c, sql, err, errlen) < 0 ||
	    exec_simple(c, "COMMIT", err, errlen) < 0)
		goto fail;
	log_kv(LOG_INFO, "database schema migrated", "from",
	       version ? "older" : "none", LOG_END);
	return 0;
fail:
	PQclear(pg_exec(c, "ROLLBACK", NULL));
	return -1;
}

/*
 * Migrates under the advisory lock (several instances may start at once),
 * then marks unsure every pending delivery no live instance holds: it was
 * pending when its instance stopped, so it may have been on the wire
 * (store.h). A delivery an instance still holds is left to its claimant.
 */
static int migrate(struct pg_store *st, PGconn *c, char *err, size_t errlen)
{
	struct pg_params p = {0};
	PGresult *r;
	int rc;

	if (exec_simple(c, "SELECT pg_advisory_lock(" MIGRATE_LOCK ")", err,
			errlen) < 0)
		return -1;
	rc = migrate_locked(c, err, errlen);
	PQclear(pg_exec(c, "SELECT pg_advisory_unlock(" MIGRATE_LOCK ")", NULL));
	if (rc < 0)
		return -1;
	pg_p_int(&p, util_now_ms());
	r = pg_exec(c,
		    "UPDATE deliveries SET unsure = true WHERE state = 'pending'"
		    " AND NOT unsure AND (lease_until IS NULL OR lease_until <= $1)",
		    &p);
	rc = pg_ok(r) ? 0 : -1;
	if (rc < 0) {
		snprintf(err, errlen, "%s", PQerrorMessage(c));
		err[strcspn(err, "\n")] = '\0';
	}
	PQclear(r);
	return rc;
}

/* ---- opening and closing ---- */

static void pg_store_close(struct store *s);

static const struct store_ops pg_ops = {
    .name = "postgresql",
    .close = pg_store_close,
    .writable = pg_writer_writable,
    .accept = pg_writer_accept,
    .dedup_lookup = pg_read_dedup_lookup,
    .claim_due = pg_read_claim_due,
    .release = pg_read_release,
    .record_attempt = pg_writer_record_attempt,
    .cancel_inactive = pg_writer_cancel_inactive,
    .claim_polls = pg_read_claim_polls,
    .record_run = pg_writer_record_run,
    .count_followed = pg_read_count_followed,
    .count_pending = pg_read_count_pending,
    .list = pg_read_list,
    .get = pg_read_get,
    .retry = pg_writer_retry,
};

static void store_free(struct pg_store *st)
{
	PQfinish(st->w.c);
	PQfinish(st->cc.c);
	PQfinish(st->rc.c);
	pthread_cond_destroy(&st->qcond);
	pthread_mutex_destroy(&st->qlock);
	pthread_mutex_destroy(&st->clock);
	pthread_mutex_destroy(&st->rlock);
	if (st->url)
		memset(st->url, 0, strlen(st->url));
	free(st->url);
	free(st);
}

struct store *pg_store_open(const char *url, char *err, size_t errlen)
{
	struct pg_store *st = calloc(1, sizeof *st);

	if (!st || !(st->url = strdup(url))) {
		free(st);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	pthread_mutex_init(&st->clock, NULL);
	pthread_mutex_init(&st->rlock, NULL);
	pthread_mutex_init(&st->qlock, NULL);
	pthread_cond_init(&st->qcond, NULL);
	st->w.what = "writer";
	st->cc.what = "claims";
	st->rc.what = "reads";
	st->lease_ms = 35000;
	util_new_id(st->owner, "in");
	/* At start the database must answer: a wrong URL or password is an
	 * error for people now, not a stream of 503s. */
	if (!(st->w.c = connect_db(st->url, err, errlen)) ||
	    migrate(st, st->w.c, err, errlen) < 0)
		goto fail;
	pthread_mutex_lock(&st->clock);
	pg_conn_get(st, &st->cc);
	pthread_mutex_unlock(&st->clock);
	pthread_mutex_lock(&st->rlock);
	pg_conn_get(st, &st->rc);
	pthread_mutex_unlock(&st->rlock);
	if (pthread_create(&st->writer, NULL, pg_writer_main, st) != 0) {
		snprintf(err, errlen, "cannot start the store's writer thread");
		goto fail;
	}
	st->started = 1;
	st->base.ops = &pg_ops;
	log_kv(LOG_INFO, "store is postgresql", "instance", st->owner, LOG_END);
	return &st->base;
fail:
	store_free(st);
	return NULL;
}

static void pg_store_close(struct store *s)
{
	struct pg_store *st = pg_of(s);

	pthread_mutex_lock(&st->qlock);
	st->stopping = 1;
	pthread_cond_signal(&st->qcond);
	pthread_mutex_unlock(&st->qlock);
	/* The writer drains every job queued, then gives back this
	 * instance's leases, before it exits. */
	if (st->started)
		pthread_join(st->writer, NULL);
	store_free(st);
}
