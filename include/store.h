/*
 * store — the durable store's contract: events, deliveries, attempts and
 * dedup keys, whatever database keeps them.
 *
 * DESIGN: this header is the interface every backend fulfils (SQLite,
 * src/store/sqlite/, for one instance; PostgreSQL, src/store/postgres/,
 * for several instances on one database); nothing above the store knows which database
 * is underneath, and nothing here is database-shaped. store_open() picks
 * the backend; every other call goes through the backend's table of
 * operations (src/store/store_backend.h). The store hands out rows
 * (structs); answers for people — the admin API's JSON, log sentences —
 * are built above it (admin.c, dispatch).
 *
 * What every backend guarantees:
 *  - store_accept() returns only once the event and its deliveries are
 *    durable (a crash, kill -9 or power loss after it keeps them); a
 *    backend may share one commit among concurrent callers (group commit).
 *  - A delivery is handed to at most one claimant at a time. A claimant
 *    passes the ids and triggers it already holds (so a single-process
 *    backend needs no state of its own) and a lease: a backend shared by
 *    several processes marks the claim on disk until the lease expires, so
 *    a claimant that dies gives its deliveries back by itself.
 *  - A delivery being sent is still pending on disk: after a crash it is
 *    due again (at-least-once), once its lease, if any, has expired.
 *  - Nothing written here is ever a secret: events are stored as received,
 *    deliveries name their trigger, attempts keep a status, an error
 *    sentence and the first STORE_RESPONSE_MAX bytes of the response
 *    (already redacted by the caller).
 *
 *  - A delivery may carry a dbt run (SPEC section 8) and be *unsure*: its
 *    last attempt may have started a run nobody heard of, so it must be
 *    looked up before it is posted again. store_open() marks every pending
 *    delivery unsure (it was pending when the process stopped, so it may
 *    have been on the wire); that mark is durable until an attempt clears
 *    it. A followed run has a next poll time; polls are claimed like due
 *    deliveries (store_claim_polls), apart from them.
 *
 * Delivery states: pending, delivered, failed, cancelled. All functions
 * are thread-safe; store_open and store_close are called by one thread
 * (main) while no other uses the store.
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
 * Opens the store at location (today a SQLite file path; created with its
 * schema on first use, an older schema migrated in place, a newer one
 * refused) and starts whatever threads the backend needs. NULL on failure,
 * with a message for people in err.
 */
struct store *store_open(const char *location, char *err, size_t errlen);

/*
 * Opens the PostgreSQL store that url names (a libpq URI or key=value
 * conninfo, secrets resolved): connects, creates or migrates the schema
 * under an advisory lock (safe when several instances start at once) and
 * starts the backend's threads. Later outages make calls fail (-1) until
 * the database is back; the store reconnects by itself. NULL on failure
 * (the database must answer at open), with a message in err that never
 * contains the url.
 */
struct store *store_open_url(const char *url, char *err, size_t errlen);

/* Finishes queued changes, stops the backend's threads, closes. NULL is a
 * no-op. */
void store_close(struct store *st);

/* 1 if a change can be committed durably right now, else 0 (/readyz). */
int store_writable(struct store *st);

/* ---- accepting events (HTTP threads) ---- */

/*
 * How one matched trigger turns events into deliveries (SPEC section 9).
 * All zero: one delivery for this event. A delivery made of several
 * events is *batched*: it keeps its batch's ids in arrival order, and its
 * event (the one the request is rendered from) is the batch's latest.
 */
struct store_batching {
	/* Fan-in: jobs non-NULL. The event's job (store_event_in.job_id)
	 * counts toward the set; once every one of jobs (distinct, lower
	 * case) has an event accepted less than within_ms ago (0: no
	 * limit), a delivery is made of those events and the set starts
	 * over. A job's later event replaces its earlier one. */
	const char *const *jobs;
	size_t njobs;
	int64_t within_ms;
	/* Coalescing: coalesce_ms > 0. The event joins the trigger's open
	 * batch or opens one: a delivery due coalesce_ms later. A batch
	 * stays open until STORE_COALESCE_CLOSE before it is due (so no
	 * event joins a delivery being sent) and only while the delivery has
	 * had no attempt. */
	int64_t coalesce_ms;
};

/* How long before its due time a coalescing batch stops taking events:
 * min(200 ms, a tenth of the window). */
int64_t store_coalesce_close_ms(int64_t coalesce_ms);

enum store_outcome {
	STORE_NEW,	 /* a delivery was made (delivery_ids[i]) */
	STORE_JOINED,	 /* the event joined delivery_ids[i]'s open batch */
	STORE_WAITING,	 /* the event counted toward a fan-in: no delivery */
};

struct store_result {
	enum store_outcome outcome;
	int done, of; /* STORE_WAITING: jobs with an event, jobs in all */
};

struct store_event_in {
	const char *body; /* the request body as received */
	size_t body_len;
	const char *dedup_key; /* NULL: not deduplicated */
	int64_t dedup_window_ms;
	const char *const *triggers; /* one delivery per name */
	size_t ntriggers;
	/* NULL: every trigger ordinary; else ntriggers long */
	const struct store_batching *batching;
	const char *job_id; /* the event's job_id, lower case (fan-in) */
};

struct store_event_out {
	char event_id[UTIL_ID_LEN];
	int duplicate; /* 1: dedup_key was seen; event_id is the first event's */
	char (*delivery_ids)[UTIL_ID_LEN]; /* caller's array, ntriggers long;
					      "" for STORE_WAITING */
	struct store_result *results; /* caller's, ntriggers long; may be
					 NULL when in->batching is */
};

/*
 * Commits the event and, per trigger, a pending delivery (or, as
 * in->batching says, its fan-in progress or its place in a batch),
 * durably, unless its dedup key was accepted within the window (then
 * out->duplicate = 1, out->event_id is the first event's, and nothing is
 * written). The dedup check and the writes are one atomic step, also
 * against other processes sharing the store. Blocks until durable.
 * Returns 0, or -1 if the store cannot commit (disk full, I/O error,
 * closing): nothing of this event is then stored.
 */
int store_accept(struct store *st, const struct store_event_in *in,
		 struct store_event_out *out);

/*
 * Fast read-only check: 1 and the first event's id in event_id if key was
 * accepted within the window, 0 if not, -1 on error. store_accept checks
 * again atomically; this only lets duplicates skip the commit.
 */
int store_dedup_lookup(struct store *st, const char *key, int64_t window_ms,
		       char event_id[UTIL_ID_LEN]);

/* ---- dispatching (worker threads) ---- */

struct store_due {
	char id[UTIL_ID_LEN];
	char event_id[UTIL_ID_LEN];
	char *trigger;
	int attempts;          /* attempts made so far */
	int64_t accepted_at_ms; /* when the delivery was created or last retried by an admin */
	char *body;            /* the event's stored body, NUL-terminated */
	size_t body_len;
	int unsure;            /* look up its dbt run before posting */
	/* a poll (store_claim_polls) only: the run being followed */
	int poll;
	int64_t run_id;
	int64_t run_started_at_ms;
	/* a batched delivery (store_claim_due): every event of the batch in
	 * arrival order, body last among them; NULL / 0 otherwise */
	char **batch_bodies;
	size_t *batch_lens;
	size_t nbatch;
};

struct store_claim {
	int64_t now_ms;   /* wall clock */
	int64_t lease_ms; /* how long the claim holds if never released */
	const char *const *skip_ids; /* deliveries the claimant holds */
	size_t nskip_ids;
	const char *const *skip_triggers; /* triggers it takes none of now */
	size_t nskip_triggers;
};

/*
 * Claims up to max pending deliveries with next_attempt_at <= now,
 * earliest first, that are not in c->skip_ids, not of a trigger in
 * c->skip_triggers and not claimed by anyone else. Returns how many it put
 * in out[] (free each with store_due_clear); 0 if none is due, and then
 * *wake_at_ms is the earliest future next_attempt_at among pending
 * deliveries not skipped (INT64_MAX if none); -1 on error. A claim ends
 * with store_record_attempt() or store_release().
 */
int store_claim_due(struct store *st, const struct store_claim *c,
		    struct store_due *out, size_t max, int64_t *wake_at_ms);
void store_due_clear(struct store_due *d); /* NULL is a no-op */

/* Gives a claimed delivery back untouched (an attempt abandoned at
 * shutdown): it is due again as it was. 0, or -1. */
int store_release(struct store *st, const char *id);

/* A dbt run as kept with its delivery. */
struct store_run {
	int64_t id;
	const char *href;           /* may be NULL */
	const char *status;         /* "queued", ..., "unknown" */
	const char *finished_at;    /* may be NULL */
	const char *status_message; /* may be NULL */
	int64_t started_at_ms;      /* when triggerd learnt of it */
	int64_t poll_at_ms;         /* next poll; -1: not (or no longer) followed */
};

struct store_attempt {
	int64_t at_ms;        /* when the attempt started */
	int unsure;           /* 1: ambiguous, look up before the next one */
	const struct store_run *run; /* the run it started or found, or NULL */
	int status;           /* HTTP status, or 0 if no response */
	const char *error;    /* a sentence, or NULL when delivered */
	int64_t ms;           /* how long it took */
	const char *response; /* first bytes of the response body, may be NULL */
	size_t response_len;  /* at most STORE_RESPONSE_MAX are kept */
};

/*
 * Records one attempt of claimed delivery id, moves it to state (pending
 * with next_at_ms for a retry; delivered or failed) and ends the claim. A
 * delivery cancelled meanwhile stays cancelled. Does not wait for the
 * commit: returns 0 once queued, and done(ctx, rc) is then called from a
 * store thread when the change is committed (rc 0) or could not be (rc
 * -1); -1 if it could not even be queued (done is NOT called). done may
 * be NULL and must not call a blocking store function.
 */
int store_record_attempt(struct store *st, const char *id,
			 const struct store_attempt *a, enum store_state state,
			 int64_t next_at_ms,
			 void (*done)(void *ctx, int rc), void *ctx);

/*
 * Claims up to max deliveries whose followed run's next poll is due
 * (poll_at <= c->now_ms), earliest first, not in c->skip_ids, each with
 * poll = 1 and its run. Returns how many; 0 if none, and then *wake_at_ms
 * is the earliest future poll among those not skipped (INT64_MAX if
 * none); -1 on error. A claim ends with store_record_run().
 */
int store_claim_polls(struct store *st, const struct store_claim *c,
		      struct store_due *out, size_t max, int64_t *wake_at_ms);

/*
 * Updates delivery id's run (its next poll, or run->poll_at_ms -1 to stop
 * following) and, when error is not NULL, its last_error. Asynchronous
 * like store_record_attempt: 0 once queued and done(ctx, rc) called
 * later, or -1 (done NOT called).
 */
int store_record_run(struct store *st, const char *id,
		     const struct store_run *run, const char *error,
		     void (*done)(void *ctx, int rc), void *ctx);

/* Number of runs being followed, or -1. */
int64_t store_count_followed(struct store *st);

/*
 * Moves every pending delivery whose trigger is not in active (the names
 * of the triggers that exist and are active) to cancelled. Blocks until
 * committed. Returns how many were cancelled, or -1. If each is not NULL
 * it is called once per cancelled delivery with its trigger's name, from a
 * store thread, before the commit: count those calls only when the
 * function then returns >= 0.
 */
int store_cancel_inactive(struct store *st, const char *const *active,
			  size_t nactive,
			  void (*each)(void *ctx, const char *trigger),
			  void *ctx);

/* Number of pending deliveries, or -1. */
int64_t store_count_pending(struct store *st);

/*
 * Reload: drops the fan-in progress of every (trigger, job) pair not
 * given (triggers[i], jobs[i]: the fan-in triggers of the new config and
 * their jobs). Blocks until committed. 0, or -1.
 */
int store_fanin_keep(struct store *st, const char *const *triggers,
		     const char *const *jobs, size_t n);

/*
 * Fan-in progress of trigger: done[i] = 1 if jobs[i] has an event that
 * counts (accepted after now_ms - within_ms, or at any time when
 * within_ms is 0), else 0. 0, or -1.
 */
int store_fanin_progress(struct store *st, const char *trigger,
			 const char *const *jobs, size_t njobs,
			 int64_t within_ms, int64_t now_ms, int *done);

/* ---- admin (HTTP threads) ---- */

/* A delivery as the admin API shows it. Absent values: -1 / NULL. */
struct store_delivery {
	char id[UTIL_ID_LEN];
	char event_id[UTIL_ID_LEN];
	char *trigger;
	enum store_state state;
	int attempts;
	int last_status;            /* -1: none yet */
	char *last_error;           /* NULL: none */
	int64_t next_attempt_at_ms; /* -1: not scheduled */
	int64_t created_at_ms;
	int64_t run_id;        /* -1: no dbt run known */
	char *run_href;        /* NULL: none (the same for the three below) */
	char *run_status;
	char *run_finished_at;
	char *run_message;
	int batched;                  /* made of a batch (SPEC section 9) */
	char (*events)[UTIL_ID_LEN]; /* batched: its events' ids, arrival */
	size_t nevents;               /* order; else NULL / 0 (event_id) */
};

/* One attempt of a delivery's history. */
struct store_history {
	int64_t at_ms;
	int status;  /* -1: no response */
	char *error; /* NULL: none */
	int64_t ms;
};

/* What store_list() returns. */
struct store_delivery_list {
	struct store_delivery *v;
	size_t n;
};

/*
 * Lists at most limit deliveries (100 when limit <= 0), newest first,
 * filtered by state and trigger when not NULL. 0 with *out filled (free
 * with store_list_clear), or -1.
 */
int store_list(struct store *st, const char *state, const char *trigger,
	       int limit, struct store_delivery_list *out);
void store_list_clear(struct store_delivery_list *l);

/* One delivery and its history, oldest attempt first, read consistently.
 */
struct store_delivery_full {
	struct store_delivery d;
	struct store_history *history;
	size_t nhistory;
	char *event_body; /* the event as received (JSON text); NULL: gone */
};

/* 0 with *out filled (free with store_get_clear), 1 if there is no such
 * id, -1 on error. */
int store_get(struct store *st, const char *id,
	      struct store_delivery_full *out);
void store_get_clear(struct store_delivery_full *f);

/* Frees what a row holds (the struct itself is the caller's). */
void store_delivery_clear(struct store_delivery *d);

/*
 * Makes a failed or cancelled delivery pending again, due now, with a
 * fresh attempt count and age (history is kept). 0 done, 1 no such id,
 * 2 the delivery is in another state, -1 on error. Blocks until committed.
 */
int store_retry(struct store *st, const char *id, int64_t now_ms);

#endif
