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

/* result: "accepted", "duplicate", "unmatched", "rejected" (any 4xx) or
 * "unavailable" (503). */
void metrics_event(const char *result);

/* outcome: "delivered", "failed" or "cancelled". */
void metrics_delivery(const char *trigger, const char *outcome);

/* One attempt: status is the HTTP status or 0 for no response (class
 * "error"); seconds is how long it took. */
void metrics_attempt(const char *trigger, int status, double seconds);

/* A SIGHUP reload: ok 1 for "success", 0 for "failure". */
void metrics_reload(int ok);

/* Appends the exposition text; pending is triggerd_deliveries_pending
 * (or < 0 if unknown). 0, or -1 if out is full. */
int metrics_render(struct buf *out, int64_t pending);

#endif
