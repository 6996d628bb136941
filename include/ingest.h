/*
 * ingest — what happens to one POSTed event body: parse, deduplicate,
 * match, store durably, wake the dispatcher.
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

struct config_slot;
struct dispatch;
struct store;

struct ingest {
	struct config_slot *slot;
	struct store *store;
	struct dispatch *dispatch; /* may be NULL (tests) */
};

struct ingest_result {
	int status;      /* 200, 202, 400 or 503 */
	char *json;      /* the answer's body, caller frees; NULL for an
			    error (400, 503): then error says why */
	char error[256];
	int retry_after; /* seconds for a Retry-After header, or 0 */
	const char *result; /* for metrics: "accepted", "duplicate",
			       "unmatched", "rejected" or "unavailable" */
};

/* Handles one event body (len bytes). Always fills res. */
void ingest_event(const struct ingest *in, const char *body, size_t len,
		  struct ingest_result *res);

#endif
