/*
 * dbt — what triggerd knows about dbt Cloud's API v2 (SPEC section 8), as
 * text: recognising a "Trigger Job Run" URL, marking a run's cause, the
 * runs API's URLs, and reading dbt's run answers.
 *
 * DESIGN: pure code (no I/O, no locks, no globals; jansson for parsing),
 * called by the config loader (is this trigger a dbt trigger?), request.c
 * (the marked cause) and the dispatcher's dbt work (look-ups, polls,
 * cancels). Unit-tested alone (tests/unit/test_dbt.c).
 */
#ifndef TRIGGERD_DBT_H
#define TRIGGERD_DBT_H

#include <stddef.h>
#include <stdint.h>

#define DBT_CAUSE_MAX 255 /* code points: dbt Cloud refuses longer */
#define DBT_MARKER_MAX 96 /* bytes of " [triggerd <delivery id>]" + NUL */
#define DBT_URL_MAX 1024
#define DBT_LIST_LIMIT 100 /* runs per page of a look-up */

/* A dbt Cloud job, as read from a rendered Trigger Job Run URL. */
struct dbt_target {
	char base[512];   /* "scheme://host[:port]" */
	char account[32]; /* digits */
	char job[32];     /* digits */
};

/*
 * 1 and *out filled if url's path is /api/v2/accounts/<digits>/jobs/
 * <digits>/run with an optional trailing slash (any host, any query),
 * 0 if it is not.
 */
int dbt_url_parse(const char *url, struct dbt_target *out);

/* Writes " [triggerd <delivery_id>]" into out (DBT_MARKER_MAX bytes). */
void dbt_marker(const char *delivery_id, char out[DBT_MARKER_MAX]);

/*
 * Writes cause (len bytes of UTF-8) with delivery_id's marker appended
 * into out, the text before the marker cut so that the whole is at most
 * DBT_CAUSE_MAX code points, never inside a UTF-8 sequence. outlen must
 * be at least DBT_CAUSE_MAX * 4 + 1. 0, or -1 if out is too small.
 */
int dbt_mark_cause(const char *cause, size_t len, const char *delivery_id,
		   char *out, size_t outlen);

/*
 * Rewrites a JSON object body (len bytes) with its string "cause" marked
 * (dbt_mark_cause), as compact JSON in the same key order. 0 with *out
 * (malloc'd, NUL-terminated; the caller frees) and *outlen; 1 if the body
 * has no string cause (nothing to mark); -1 if it is not a JSON object or
 * memory ran out.
 */
int dbt_mark_body(const char *body, size_t len, const char *delivery_id,
		  char **out, size_t *outlen);

/*
 * The runs list of t's job, newest first, DBT_LIST_LIMIT a page, with the
 * trigger included; active: only runs queued, starting or running
 * (status__in=[1,2,3]). The query is URL-encoded. 0, or -1 if too long.
 */
int dbt_list_url(const struct dbt_target *t, int active, int offset,
		 char *out, size_t outlen);
/* GET runs/<id>/ and POST runs/<id>/cancel/ of t's account. 0, or -1. */
int dbt_run_url(const struct dbt_target *t, int64_t run_id, char *out,
		size_t outlen);
int dbt_cancel_url(const struct dbt_target *t, int64_t run_id, char *out,
		   size_t outlen);

/* A run's status: dbt's own numbers, then triggerd's. */
enum dbt_status {
	DBT_NONE = 0,
	DBT_QUEUED = 1,
	DBT_STARTING = 2,
	DBT_RUNNING = 3,
	DBT_SUCCESS = 10,
	DBT_ERROR = 20,
	DBT_CANCELLED = 30,
	DBT_TIMEOUT = 101, /* followed past run_timeout */
	DBT_LOST = 102,    /* the run answered 404 */
	DBT_UNKNOWN = 103, /* following stopped on 401/403 */
};

/* "queued", ..., "unknown"; NULL for a number dbt does not define. */
const char *dbt_status_name(int status);
/* The status named s, or DBT_NONE. */
int dbt_status_parse(const char *s);
/* 1 if following ends at this status (10, 20, 30 and triggerd's own). */
int dbt_status_final(int status);

/* One run, as dbt describes it. Absent text is "". */
struct dbt_run {
	int64_t id;
	int status;
	char href[512];
	char finished_at[64];
	char status_message[256];
	char cause[1024];      /* trigger.cause (else cause) */
	int64_t created_at_ms; /* -1 if absent or unreadable */
};

/* Reads a RunResponse envelope {"data": {...}} (len bytes). 0, or -1 if
 * it is not one (no integer data.id). */
int dbt_parse_run(const char *body, size_t len, struct dbt_run *out);

/*
 * Reads a list answer {"data": [runs...]}. With marker not NULL, the
 * first run whose trigger.cause contains marker goes into *found; with
 * marker NULL, the first run at all. Returns 1 found, 0 none (then
 * *nruns is the page's size and *oldest_ms the created_at of its oldest
 * run, -1 if unknown), -1 if the body is not a list answer.
 */
int dbt_find_run(const char *body, size_t len, const char *marker,
		 struct dbt_run *found, int *nruns, int64_t *oldest_ms);

/* dbt's "2026-11-28 12:00:00.123456+00:00" (or with 'T', or 'Z') in ms
 * since the epoch, or -1. */
int64_t dbt_parse_time(const char *s);

#endif
