/*
 * dispatch — the worker pool that sends due deliveries.
 *
 * DESIGN (after redis's bio.c): dispatch.workers threads share one mutex
 * and condition variable. A worker takes the earliest due delivery from the
 * store that is not already in flight and whose trigger is under
 * max_in_flight_per_trigger, marks it in flight (in memory), drops the lock,
 * renders the request from the stored event and the trigger as currently
 * configured (secrets resolved now, in memory), sends it with its own
 * http_client, classifies the result and queues the outcome to the store.
 * The in-flight mark is cleared once the outcome is committed, so a
 * delivery is never sent twice at once. Workers sleep until the next due
 * time or until dispatch_notify(). Signals are handled by the main thread
 * only.
 */
#ifndef TRIGGERD_DISPATCH_H
#define TRIGGERD_DISPATCH_H

#include <stdint.h>

struct store;
struct config_slot;
struct dispatch;

/* Starts nworkers threads. NULL on failure. Reads the live config from
 * slot for every delivery. */
struct dispatch *dispatch_start(struct store *st, struct config_slot *slot,
				int nworkers);

/* Wakes the workers: new deliveries may be due. Any thread. */
void dispatch_notify(struct dispatch *d);

/*
 * Stops taking new deliveries, waits until deadline_mono_ms (util_mono_ms
 * clock) for attempts in flight to finish, then abandons the rest (they
 * stay pending in the store and count as not made) and frees d. Transfers
 * are cancelled one second before the deadline, because libcurl notices a
 * cancel only about once a second; if a worker has still not ended a
 * second after the deadline, d is left allocated instead of freed.
 * NULL is a no-op.
 */
void dispatch_stop(struct dispatch *d, int64_t deadline_mono_ms);

#endif
