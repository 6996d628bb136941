/*
 * request — one trigger's HTTP request, rendered for one event.
 *
 * DESIGN: pure code shared by the dispatcher (real secrets, at send time,
 * in memory only) and --dry-run (secrets shown as <secret:NAME>), so what
 * --dry-run prints is exactly what would be sent. Adds the headers triggerd
 * always sends: Content-Type for JSON bodies (unless configured),
 * User-Agent (unless configured) and Idempotency-Key (the delivery id).
 */
#ifndef TRIGGERD_REQUEST_H
#define TRIGGERD_REQUEST_H

#include <stddef.h>

#include "http_client.h"

struct buf;
struct config;
struct config_trigger;
struct event;

#define REQUEST_MAX_URL (64 * 1024)
#define REQUEST_MAX_HEADER (64 * 1024)
#define REQUEST_MAX_BODY (4 * 1024 * 1024)
/* A rendered dedup key is hashed before it is stored (ingest), so this
 * bound only caps the memory one event may spend rendering it. */
#define REQUEST_MAX_DEDUP_KEY (16 * 1024 * 1024)

struct request {
	const char *method; /* owned by the config */
	char *url;
	struct http_header *headers; /* names owned by the config or static */
	char **header_values;        /* owned here */
	size_t nheaders;
	char *body; /* NULL: no body */
	size_t body_len;
};

/*
 * Renders trigger t of cfg for ev. batch (nbatch events in arrival order,
 * ev the last of them) is the delivery's batch (SPEC section 9); NULL, 0
 * for a delivery of ev alone. delivery_id (may be NULL) becomes the
 * Idempotency-Key. With mask_secrets, secrets render as <secret:NAME>.
 * Returns 0; or -1 with a sentence in err when the request must never be
 * sent (a header value with CR, LF or NUL after rendering, or a part past
 * its size limit). Free with request_clear(), which wipes the memory.
 */
int request_render(const struct config *cfg, const struct config_trigger *t,
		   const struct event *ev, const struct event *const *batch,
		   size_t nbatch, const char *delivery_id, int mask_secrets,
		   struct request *out, char *err, size_t errlen);

void request_clear(struct request *r);

/*
 * Renders cfg's events.dedup_key for ev into key (a buf the caller set
 * up with buf_init(key, REQUEST_MAX_DEDUP_KEY)). Returns 0 when ev has
 * every field the key names, 1 when it lacks one (the event is not
 * deduplicated), -1 when the key is too long.
 */
int request_dedup_key(const struct config *cfg, const struct event *ev,
		      struct buf *key);

/*
 * Appends in (len bytes) to out with every secret value of cfg written as
 * <secret:NAME>: an upstream that echoes a request back (a token in an
 * error message) must not carry a secret into the store or the log.
 * Values shorter than CONFIG_MIN_REDACT are left alone: such a match can be
 * an accident ("y" inside "by"), and masking it would reveal the value.
 * 0, or -1 if out is full.
 */
int request_redact(const struct config *cfg, const char *in, size_t len,
		   struct buf *out);

#endif
