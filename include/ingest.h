/*
 * ingest — what happens to one POSTed event body: parse, deduplicate,
 * match, store durably, wake whoever sends deliveries.
 *
 * DESIGN: the HTTP server calls ingest_event() from its connection
 * threads after authentication and size/type checks; this module knows
 * nothing of HTTP beyond the status code and JSON answer it returns, so it
 * is tested without a socket. It reads the live config through the slot
 * (one reference per event, so a reload never shows it half a config).
 */
#ifndef TRIGGERD_INGEST_H
#define TRIGGERD_INGEST_H

#include <stddef.h>

#include "metrics.h"

struct config_slot;
struct store;

struct ingest {
	struct config_slot *slot;
	struct store *store;
	/* Called after new deliveries were committed (the dispatcher's
	 * wake-up); may be NULL (tests). Any thread. */
	void (*wake)(void *ctx);
	void *wake_ctx;
};

struct ingest_result {
	int status;      /* 200, 202, 400 or 503 */
	char *json;      /* the answer's body, caller frees; NULL for an
			    error (400, 503): then error says why */
	char error[256];
	int retry_after; /* seconds for a Retry-After header, or 0 */
	enum metrics_result result; /* triggerd_events_total's label */
};

/* Handles one event body (len bytes). Always fills res. */
void ingest_event(const struct ingest *in, const char *body, size_t len,
		  struct ingest_result *res);

/* Calls in->wake, if any: deliveries became due (an admin retry too). */
void ingest_wake(const struct ingest *in);

#endif
