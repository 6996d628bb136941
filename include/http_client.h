/*
 * http_client — one outgoing HTTP request at a time, over a reused
 * connection.
 *
 * DESIGN: libcurl lives only here. Each dispatcher worker owns one
 * http_client (one easy handle), so connections are kept alive between
 * requests to the same host. Redirects are not followed. The response body
 * is read into a bounded buffer (first HTTP_RESPONSE_KEEP bytes kept, or
 * the request's own body_max, the
 * rest discarded). Not thread-safe: one client per thread.
 */
#ifndef TRIGGERD_HTTP_CLIENT_H
#define TRIGGERD_HTTP_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#define HTTP_RESPONSE_KEEP 4096 /* bytes of a response body kept */

/* Process-wide libcurl setup; call once from main before threads start. */
int http_client_global_init(void);
void http_client_global_cleanup(void);

struct http_header {
	const char *name;
	const char *value;
};

struct http_request {
	const char *method; /* GET, POST, PUT, PATCH, DELETE */
	const char *url;
	const struct http_header *headers;
	size_t nheaders;
	const char *body; /* may be NULL */
	size_t body_len;
	int64_t timeout_ms;         /* whole request */
	int64_t connect_timeout_ms;
	size_t body_max; /* bytes of the answer kept; 0: HTTP_RESPONSE_KEEP */
	const int *cancel; /* if not NULL and it becomes non-zero (read with
			      __atomic_load_n), the transfer is aborted */
};

struct http_response {
	int status;          /* HTTP status, or 0 when no response came */
	char error[256];     /* when status == 0: what went wrong, for a person
				(e.g. "connection refused by 127.0.0.1:9"), "" otherwise */
	int unsent;          /* when status == 0: 1 if the request certainly
				never reached the server (resolve, connect or TLS
				handshake failed), 0 if it may have */
	int64_t retry_after_ms; /* from Retry-After (seconds or HTTP-date),
				   relative to now; -1 when absent or invalid */
	char *body;          /* first bytes of the body (malloc'd, NUL-terminated) */
	size_t body_len;
	int64_t ms;          /* total time */
};

struct http_client;

struct http_client *http_client_new(const char *user_agent);
void http_client_free(struct http_client *c); /* NULL is a no-op */

/*
 * Sends req and waits for the answer. Fills resp (free with
 * http_response_clear). Returns 0 when a response came (any status), -1
 * when none did (resp->error says why). The caller has already refused
 * header values with CR, LF or NUL.
 */
int http_client_send(struct http_client *c, const struct http_request *req,
		     struct http_response *resp);
void http_response_clear(struct http_response *resp);

/* Writes url's host name (no port, no user info) into out, for messages
 * and logs that must not show the whole URL. 0, or -1 (and "the server"
 * in out) if the URL does not parse. */
int http_url_host(const char *url, char *out, size_t outlen);

/* Parses a Retry-After value: seconds or an HTTP-date, relative to now_ms.
 * Milliseconds to wait (>= 0), or -1 if it does not parse. */
int64_t http_parse_retry_after(const char *v, int64_t now_ms);

#endif
