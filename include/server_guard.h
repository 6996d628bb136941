/*
 * server_guard — per-request deadlines and the open-connection count for
 * the HTTP server (used by server.c only).
 *
 * DESIGN: see src/server_guard.c. A connection is registered when it
 * opens, its clock restarts when one of its requests completes, and a
 * reaper thread shuts down the socket of any connection whose request has
 * taken longer than the deadline. Thread-safe.
 */
#ifndef TRIGGERD_SERVER_GUARD_H
#define TRIGGERD_SERVER_GUARD_H

#include <stdint.h>

struct server_guard;
struct server_conn;

/* Starts the reaper. NULL if out of memory or no thread. */
struct server_guard *server_guard_new(int64_t deadline_ms);

/* Stops the reaper and frees g (and any connection still registered).
 * NULL is a no-op. */
void server_guard_free(struct server_guard *g);

/* Registers the connection on socket fd; its request clock starts now.
 * NULL if out of memory (the connection is then simply not guarded). The
 * handle is freed by server_guard_close, which must be called before the
 * socket is closed. */
struct server_conn *server_guard_open(struct server_guard *g, int fd);

/* A request of c completed: the next one's clock starts now. NULL is a
 * no-op. */
void server_guard_touch(struct server_conn *c);

/* Unregisters and frees c. NULL is a no-op. */
void server_guard_close(struct server_guard *g, struct server_conn *c);

/* Connections registered now; connections shut by the deadline so far. */
long server_guard_count(struct server_guard *g);
long server_guard_reaped(struct server_guard *g);

#endif
