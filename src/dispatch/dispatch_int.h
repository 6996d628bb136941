/*
 * dispatch_int — what the dispatcher's own files share. Not an interface:
 * other modules see include/dispatch.h only.
 *
 * DESIGN: the dispatcher is four files around one struct dispatch:
 *  - dispatch.c: life cycle, the workers' loop and their sleep;
 *  - dispatch_flight.c: the flight list (what is read from the store and
 *    not yet finished) and taking the next piece of work from it;
 *  - dispatch_deliver.c: one delivery attempt, from rendering the request
 *    to queueing its outcome;
 *  - dispatch_text.c: the sentences people read (pure).
 * A new kind of work (polling a dbt run, say) is a new kind of flight: the
 * flight list schedules it by its due time like a delivery, a worker
 * takes it only when it is due and holds no thread while it waits, and
 * its handler sits beside dispatch_deliver().
 *
 * Locking: d->mu guards everything in struct dispatch marked so, and every
 * struct flight; dispatch_flight_* functions named "locked" expect it
 * held. Workers drop it for anything slow (rendering, the network).
 */
#ifndef TRIGGERD_DISPATCH_INT_H
#define TRIGGERD_DISPATCH_INT_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "store.h"
#include "util.h"

struct config_slot;
struct http_client;

struct dispatch;

/* A delivery read from the store, until its outcome is committed: first
 * ready (waiting in d->ready for a worker and a free slot of its trigger),
 * then sending, then recording. */
struct flight {
	struct flight *next;
	struct flight *ready_next; /* in d->ready while ready */
	struct dispatch *d;
	char id[UTIL_ID_LEN];
	char *trigger;
	struct store_due due; /* while ready: handed to the worker */
	int ready;
	int64_t hold_until; /* mono ms; 0 while in flight, else the store
			       refused the outcome: skip the id until then */
	int poll;    /* a poll of a followed dbt run, not a delivery */
	int sending; /* its request is on the wire (counts against
			max_in_flight_per_trigger); 0 once the outcome is
			queued to the store, while the id is still skipped */
};

struct worker {
	struct dispatch *d;
	pthread_t tid;
	int started;
	int cancel; /* atomic: set by dispatch_stop to abort the transfer */
	struct http_client *http;
};

struct dispatch {
	struct store *st;
	struct config_slot *slot;
	pthread_mutex_t mu;
	pthread_cond_t cond;
	/* guarded by mu */
	int stopping;
	int nexited;
	int nrecording;	   /* outcomes queued to the store, not yet committed */
	int store_failing; /* log a failing store once, not every second */
	struct flight *flights;
	struct flight *ready, *ready_tail; /* FIFO, earliest due first */
	struct flight *polls, *polls_tail; /* due polls, earliest first */
	int npolling;	       /* polls on the wire */
	int deliveries_dirty;  /* something changed: read due deliveries */
	int64_t deliveries_wake_at; /* else not before this (wall ms) */
	int polls_dirty;
	int64_t polls_wake_at;
	/* fixed after dispatch_start */
	struct worker *workers;
	int nworkers;
};

/* With d->mu held: wakes one idle worker (all of them when stopping). */
void dispatch_wake_one_locked(struct dispatch *d);

/* dispatch_flight.c */

/* With d->mu held: drops f (not in the ready FIFO) and frees it. */
void dispatch_flight_remove_locked(struct dispatch *d, struct flight *f);

/*
 * With d->mu held: the earliest due delivery that is not in flight and
 * whose trigger is under its in-flight limit, marked sending. 1 with *due
 * and *fp filled, 0 if none is due (*wake_at_ms: the next due time, wall
 * clock), -1 on error.
 */
int dispatch_flight_take_locked(struct dispatch *d, struct store_due *due,
				struct flight **fp, int64_t *wake_at_ms);

/* The request of f has its answer: its trigger's slot is free, while its
 * id stays skipped until dispatch_flight_done. Takes d->mu. */
void dispatch_flight_sent(struct dispatch *d, struct flight *f);

/* The store committed f's outcome (rc 0) or could not (rc -1): the store
 * callback of store_record_attempt (ctx is f). Takes d->mu. */
void dispatch_flight_done(void *ctx, int rc);

/* The attempt of f was abandoned at shutdown: f is dropped and its
 * delivery given back to the store untouched. Takes d->mu. */
void dispatch_flight_abandon(struct dispatch *d, struct flight *f);

/* dispatch_deliver.c: one attempt of the delivery f holds, on worker w's
 * http_client, through to its outcome queued to the store. */
void dispatch_deliver(struct worker *w, struct flight *f,
		      const struct store_due *due);

/* dispatch_dbt.c: one poll of the followed run f holds (SPEC section
 * 8), through to its outcome queued to the store. */
void dispatch_poll(struct worker *w, struct flight *f,
		   const struct store_due *due);

struct config;
struct config_trigger;
struct dbt_run;
struct request;

/* dispatch_deliver.c: due's request rendered from its event, or its batch
 * (SPEC section 9) when it has one. 0, or -1 with a sentence in err. */
int dispatch_render(const struct config *cfg, const struct config_trigger *t,
		    const struct store_due *due, struct request *req, char *err,
		    size_t errlen);


/* What happened before a dbt trigger's POST (dispatch_dbt_before). */
struct dbt_before {
	int status;       /* of the look-up's last answer, 0 if none */
	char error[512];  /* the sentence for the history */
	int64_t ms;       /* time spent */
	int64_t retry_after_ms;
};

/*
 * Before posting delivery due of dbt trigger t (req already rendered):
 * the look-up after an ambiguous attempt or a restart, and if_running:
 * reuse. 0: post it; 1: delivered with *run (found or reused, nothing
 * posted; b->error says which); 2: the look-up failed (retry, nothing
 * posted; b says why).
 */
int dispatch_dbt_before(struct worker *w, const struct config *cfg,
			const struct config_trigger *t,
			const struct store_due *due, const struct request *req,
			struct dbt_run *run, struct dbt_before *b);

/* dispatch_text.c */

/* "72h", "30m", "90s" or "1500ms": the largest unit that is exact. */
void dispatch_fmt_duration(int64_t ms, char *out, size_t outlen);

/* Writes "HTTP <status> from <host>[: <the server's explanation>]" into
 * out: dbt Cloud's status.user_message, else a JSON body's "message",
 * "error" or "detail", else the body's first line; cut to fit. */
void dispatch_http_error(int status, const char *host, const char *body,
			 size_t len, char *out, size_t outlen);

#endif
