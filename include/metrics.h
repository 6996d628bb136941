/*
 * metrics — the counters behind GET /metrics (Prometheus text format).
 *
 * DESIGN: the process's one set of counters, owned by this module and
 * guarded by its own mutex, so counts stay exact when many HTTP and worker
 * threads bump them at once. Other modules only call the metrics_* verbs;
 * nothing reads the counters but metrics_render(). Per-trigger series are
 * created on first use and kept (a trigger removed by a reload keeps its
 * history until restart, as Prometheus expects of counters).
 */
#ifndef TRIGGERD_METRICS_H
#define TRIGGERD_METRICS_H

#include <stdint.h>

struct buf;

/* The result label of triggerd_events_total: every answer of
 * POST /v1/events is one of these. */
enum metrics_result {
	METRICS_ACCEPTED,
	METRICS_DUPLICATE,
	METRICS_UNMATCHED,
	METRICS_REJECTED,    /* any 4xx */
	METRICS_UNAVAILABLE, /* 503 */
};

/* The outcome label of triggerd_deliveries_total. */
enum metrics_outcome {
	METRICS_DELIVERED,
	METRICS_FAILED,
	METRICS_CANCELLED,
};

void metrics_event(enum metrics_result result);
void metrics_delivery(const char *trigger, enum metrics_outcome outcome);

/* One attempt: status is the HTTP status or 0 for no response (class
 * "error"); seconds is how long it took. */
void metrics_attempt(const char *trigger, int status, double seconds);

/* The status label of triggerd_dbt_runs_total: a followed run's end. */
enum metrics_run_status {
	METRICS_RUN_SUCCESS,
	METRICS_RUN_ERROR,
	METRICS_RUN_CANCELLED,
	METRICS_RUN_TIMEOUT,
	METRICS_RUN_LOST,
	METRICS_RUN_UNKNOWN,
};

/* The how label of triggerd_dbt_duplicates_avoided_total. */
enum metrics_dbt_how {
	METRICS_DBT_FOUND,  /* the look-up found the run an ambiguous attempt started */
	METRICS_DBT_REUSED, /* if_running: reuse */
};

void metrics_dbt_run(const char *trigger, enum metrics_run_status status);
void metrics_dbt_avoided(const char *trigger, enum metrics_dbt_how how);

/* A SIGHUP reload: ok 1 for "success", 0 for "failure". */
void metrics_reload(int ok);

/* Appends the exposition text; pending is triggerd_deliveries_pending,
 * followed triggerd_dbt_runs_followed (each < 0 if unknown). 0, or -1 if
 * out is full. */
int metrics_render(struct buf *out, int64_t pending, int64_t followed);

#endif
