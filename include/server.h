/*
 * server — the HTTP side of triggerd: POST /v1/events, /healthz, /readyz.
 *
 * DESIGN: libmicrohttpd lives only here. Connections are served by an
 * epoll thread pool (MHD_USE_EPOLL_INTERNAL_THREAD, 16 threads): an open
 * connection costs a memory pool, not a thread. An event request blocks
 * its pool thread in ingest_event() until the store's group commit has
 * made it durable (one fsync, milliseconds; concurrent requests on other
 * pool threads share it). server_guard.c gives every request a deadline;
 * one address holds at most 256 connections; near the global limit new
 * requests are answered 503. Framing that RFC 9112 forbids is answered
 * 400/501 and the connection closed. Routing, authentication (bearer tokens, constant time), size and
 * media-type checks happen here, before a byte of the body is parsed; the
 * rest is ingest's. Reads the live config through the slot per request.
 */
#ifndef TRIGGERD_SERVER_H
#define TRIGGERD_SERVER_H

#include <stddef.h>
#include <stdint.h>

struct config_slot;
struct ingest;
struct store;
struct server;

/*
 * Binds host:port and starts serving. NULL on failure, with a sentence in
 * err (e.g. "cannot listen on 127.0.0.1:8080: Address already in use").
 * in, slot and st must outlive the server.
 */
struct server *server_start(const char *host, int port,
			    struct config_slot *slot, struct store *st,
			    const struct ingest *in, char *err, size_t errlen);

/* The port actually bound (useful with port 0). */
int server_port(const struct server *srv);

/*
 * Stops accepting connections, answers new requests on open connections
 * with 503, waits until requests in progress are done or deadline_mono_ms
 * (util_mono_ms clock) passes, then closes everything and frees srv.
 */
void server_stop(struct server *srv, int64_t deadline_mono_ms);

#endif
