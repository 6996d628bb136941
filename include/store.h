/*
 * store — the durable store (SQLite, WAL): events, deliveries, attempts,
 * dedup keys.
 *
 * DESIGN: SQLite lives only here. One writer thread owns the write
 * connection; every change (an accepted event with its deliveries, an
 * attempt's outcome, an admin retry, a cancel) is a job on its queue. The
 * writer takes every job queued at that moment and commits them in ONE
 * transaction (group commit, synchronous=FULL: one fsync for the batch),
 * each job inside its own SAVEPOINT so one bad job does not sink the others;
 * then it completes every job of the batch. So concurrent HTTP requests
 * share commits instead of taking turns, and a 202 is only sent after the
 * fsync. Reads (dedup fast path, due deliveries, admin queries) go through
 * a second connection behind a mutex; WAL lets them run beside the writer.
 *
 * Nothing written here is ever a secret: events are stored as received,
 * deliveries name their trigger, attempts keep a status, an error sentence
 * and the first 4 KiB of the response.
 *
 * Delivery states on disk: pending, delivered, failed, cancelled. A delivery
 * being sent is still "pending" on disk (the dispatcher tracks in-flight ids
 * in memory), so after a crash it is simply due again (at-least-once).
 *
 * All functions are thread-safe unless said otherwise.
 */
#ifndef TRIGGERD_STORE_H
#define TRIGGERD_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "util.h"

#define STORE_RESPONSE_MAX 4096 /* bytes of a response body kept */

enum store_state {
	STORE_PENDING,
	STORE_DELIVERED,
	STORE_FAILED,
	STORE_CANCELLED,
};

const char *store_state_name(enum store_state s); /* "pending", ... */
int store_state_parse(const char *s, enum store_state *out); /* 0 / -1 */

struct store;

/*
 * Opens (creating it and its schema on first use) the database at path and
 * starts the writer thread. Migrates an older schema version; refuses a
 * newer one. NULL on failure, with a message in err.
 */
struct store *store_open(const char *path, char *err, size_t errlen);

/* Finishes queued jobs, stops the writer, closes. NULL is a no-op. */
void store_close(struct store *st);

/* 1 if a write transaction can be committed right now, else 0 (/readyz). */
int store_writable(struct store *st);

/* ---- accepting events (HTTP threads) ---- */

struct store_event_in {
	const char *body; /* the request body as received */
	size_t body_len;
	const char *dedup_key; /* NULL: not deduplicated */
	int64_t dedup_window_ms;
	const char *const *triggers; /* one delivery per name */
	size_t ntriggers;
};

struct store_event_out {
	char event_id[UTIL_ID_LEN];
	int duplicate; /* 1: dedup_key was seen; event_id is the first event's */
	char (*delivery_ids)[UTIL_ID_LEN]; /* caller's array, ntriggers long */
};

/*
 * Commits the event and one pending delivery per trigger, durably, unless
 * its dedup key was accepted within the window (then out->duplicate = 1 and
 * nothing is written). Blocks until the commit's fsync is done. Returns 0,
 * or -1 if the store cannot commit (disk full, I/O error, closing): nothing
 * of this event is then stored.
 */
int store_accept(struct store *st, const struct store_event_in *in,
		 struct store_event_out *out);

/* Fast read-only check: 1 and the first event's id in event_id if key was
 * accepted within the window, 0 if not, -1 on error. store_accept checks
 * again inside its transaction; this only lets duplicates skip the queue. */
int store_dedup_lookup(struct store *st, const char *key, int64_t window_ms,
		       char event_id[UTIL_ID_LEN]);

/* ---- dispatching (worker threads) ---- */

struct store_due {
	char id[UTIL_ID_LEN];
	char event_id[UTIL_ID_LEN];
	char *trigger;
	int attempts;          /* attempts made so far */
	int64_t accepted_at_ms; /* when the delivery was created or last retried by an admin */
	char *body;            /* the event's stored body */
	size_t body_len;
};

/*
 * Finds up to max pending deliveries with next_attempt_at <= now, earliest
 * first, whose ids are not in skip_ids and whose triggers are not in
 * skip_triggers (both arrays of C strings). Returns how many it put in
 * out[] (free each with store_due_clear); 0 if none is due (then
 * *wake_at_ms is the earliest future next_attempt_at among pending
 * deliveries not skipped, or INT64_MAX); -1 on error. Taking several at
 * once lets the dispatcher pay for one read transaction per batch.
 */
int store_next_due(struct store *st, int64_t now_ms,
		   const char *const *skip_ids, size_t nskip_ids,
		   const char *const *skip_triggers, size_t nskip_triggers,
		   struct store_due *out, size_t max, int64_t *wake_at_ms);
void store_due_clear(struct store_due *d);

struct store_attempt {
	int64_t at_ms;        /* when the attempt started */
	int status;           /* HTTP status, or 0 if no response */
	const char *error;    /* a sentence, or NULL when delivered */
	int64_t ms;           /* how long it took */
	const char *response; /* first bytes of the response body, may be NULL */
	size_t response_len;  /* at most STORE_RESPONSE_MAX are kept */
};

/*
 * Records one attempt of delivery id and moves the delivery to state
 * (pending with next_at_ms for a retry; delivered or failed). Does not wait
 * for the commit: done(ctx, rc) is called from the writer thread once the
 * change is committed (rc 0) or could not be (rc -1). done may be NULL.
 */
int store_record_attempt(struct store *st, const char *id,
			 const struct store_attempt *a, enum store_state state,
			 int64_t next_at_ms,
			 void (*done)(void *ctx, int rc), void *ctx);

/*
 * Moves every pending delivery whose trigger is not in active (names of
 * the triggers that exist and are active) to cancelled. Blocks until
 * committed. Returns how many were cancelled, or -1. If each is not NULL
 * it is called from the writer thread, before the commit, once per
 * cancelled delivery with its trigger's name: count those calls only when
 * the function then returns >= 0.
 */
int store_cancel_inactive(struct store *st, const char *const *active,
			  size_t nactive,
			  void (*each)(void *ctx, const char *trigger),
			  void *ctx);

/* Number of pending deliveries, or -1. */
int64_t store_count_pending(struct store *st);

/* ---- admin (HTTP threads) ---- */

/*
 * Appends to out (a struct buf, as JSON text) the admin API's answers:
 *  store_list_json: {"deliveries":[…]} newest first, filtered by state and
 *    trigger when not NULL, at most limit;
 *  store_get_json: one delivery object plus "history" (every attempt as
 *    {"at","status","error","ms"}); returns 0, 1 if there is no such id,
 *    -1 on error.
 * A delivery object is {"id","event","trigger","state","attempts",
 * "last_status","last_error","next_attempt_at","created_at"}.
 */
struct buf;
int store_list_json(struct store *st, const char *state, const char *trigger,
		    int limit, struct buf *out);
int store_get_json(struct store *st, const char *id, struct buf *out);

/*
 * Makes a failed or cancelled delivery pending again, due now, with a
 * fresh attempt count and age (history is kept). 0 done, 1 no such id,
 * 2 the delivery is in another state, -1 on error. Blocks until committed.
 */
int store_retry(struct store *st, const char *id, int64_t now_ms);

#endif
