/*
 * server — libmicrohttpd front end (see include/server.h).
 *
 * DESIGN: MHD calls handle() several times per request on the connection's
 * own thread: first with the headers (route, method, auth, media type and
 * declared size are checked then, so a refused body is never read), then
 * once per chunk of body (kept in a struct buf bounded by server.max_body,
 * or counted and discarded past it), then once more to answer. Per-request
 * state lives in struct req, freed by MHD's completion callback. The
 * server struct is written only by server_start/server_stop; `stopping`
 * and `active` are atomics read by connection threads.
 */
#include "server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "admin.h"
#include "buf.h"
#include "config.h"
#include "ingest.h"
#include "log.h"
#include "metrics.h"
#include "server_guard.h"
#include "store.h"
#include "ui.h"
#include "util.h"

#define ID_MAX 64
#define ADMIN_ANSWER_MAX (16 * 1024 * 1024)

/* The server model (see docs/ARCHITECTURE.md): an epoll thread pool, not
 * a thread per connection, so open connections cost memory, not threads.
 * Handlers block a pool thread only for the store's group commit (an
 * fsync: milliseconds), so the pool is a few times the cores and every
 * thread's other connections wait at most that long. */
#define POOL_THREADS 16
#define IDLE_TIMEOUT_S 15       /* MHD: a silent connection is closed */
#define REQUEST_DEADLINE_MS 20000 /* whole request: headers and body */
#define PER_IP_LIMIT 256        /* connections from one address */
#define CONN_LIMIT_MAX 16384    /* connections in all (MHD refuses more) */
#define CONN_503_MARGIN 256     /* past limit - margin: new requests 503 */
#define FD_RESERVE 128          /* descriptors kept for the store, logs... */

struct server {
	struct MHD_Daemon *mhd;
	int fd;
	int port;
	struct config_slot *slot;
	struct store *store;
	const struct ingest *ingest;
	int stopping; /* atomic */
	int active;   /* atomic: requests between first call and completion */
	struct server_guard *guard;
	long busy_at; /* connections from which new requests get 503 */
};

struct req {
	const struct route *route;
	char id[ID_MAX]; /* the {id} segment of the path, if any */
	struct buf body;
	int too_large;
};

typedef enum MHD_Result (*handler_fn)(struct server *srv,
				      struct MHD_Connection *c,
				      struct req *r);

struct route {
	const char *path; /* a '*' segment matches one non-empty segment */
	const char *method;
	const char *allow; /* every method the path takes, for 405 */
	handler_fn fn;
	int has_body;
	int admin; /* 1: needs an admin token; 404 when none is configured;
		    * 2: the console, 404 when no admin token is configured
		    * but open without one (the page asks for the token) */
};

/* ---- answers ---- */

static enum MHD_Result send_json(struct MHD_Connection *c, int status,
				 char *json, const char *hname,
				 const char *hvalue)
{
	static const char fallback[] = "{\"error\":\"out of memory\"}";
	struct MHD_Response *resp;

	if (json)
		resp = MHD_create_response_from_buffer(
			strlen(json), json, MHD_RESPMEM_MUST_FREE);
	else
		resp = MHD_create_response_from_buffer(
			sizeof fallback - 1, (void *)fallback,
			MHD_RESPMEM_PERSISTENT);
	if (!resp) {
		free(json);
		return MHD_NO;
	}
	MHD_add_response_header(resp, "Content-Type", "application/json");
	if (hname)
		MHD_add_response_header(resp, hname, hvalue);
	enum MHD_Result ret = MHD_queue_response(c, (unsigned)status, resp);
	MHD_destroy_response(resp);
	return ret;
}

static enum MHD_Result send_error(struct MHD_Connection *c, int status,
				  const char *msg, const char *hname,
				  const char *hvalue)
{
	json_t *o = json_pack("{s:s}", "error", msg);
	char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
	json_decref(o);
	return send_json(c, status, s, hname, hvalue);
}

/* An error that also ends the connection (Connection: close makes MHD
 * close it once the answer is sent, whatever bytes follow): for framing
 * that cannot be trusted, the bytes after the headers are never read as
 * another request. */
static enum MHD_Result send_error_close(struct MHD_Connection *c, int status,
					const char *msg)
{
	json_t *o = json_pack("{s:s}", "error", msg);
	char *json = o ? json_dumps(o, JSON_COMPACT) : NULL;
	struct MHD_Response *resp;

	json_decref(o);
	if (!json)
		return MHD_NO;
	resp = MHD_create_response_from_buffer(strlen(json), json,
					       MHD_RESPMEM_MUST_FREE);
	if (!resp) {
		free(json);
		return MHD_NO;
	}
	MHD_add_response_header(resp, "Content-Type", "application/json");
	MHD_add_response_header(resp, "Connection", "close");
	if (status == 503)
		MHD_add_response_header(resp, "Retry-After", "1");
	enum MHD_Result ret = MHD_queue_response(c, (unsigned)status, resp);
	MHD_destroy_response(resp);
	return ret;
}

/* ---- checks ---- */

/* 1 if the Authorization header carries one of tokens (constant time:
 * every token is compared, whatever matched before). */
static int bearer_ok(struct MHD_Connection *c, char *const *tokens, size_t n)
{
	const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
						    "Authorization");
	int ok = 0;

	if (!h || strncasecmp(h, "Bearer ", 7) != 0)
		return 0;
	h += 7;
	while (*h == ' ')
		h++;
	size_t len = strlen(h);
	for (size_t i = 0; i < n; i++)
		ok |= util_ct_equal(h, len, tokens[i], strlen(tokens[i]));
	return ok;
}

/* 1 if there is no Content-Type or it is application/json (parameters
 * such as charset allowed). */
static int media_type_ok(struct MHD_Connection *c)
{
	const char *ct = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
						     "Content-Type");
	if (!ct)
		return 1;
	while (*ct == ' ' || *ct == '\t')
		ct++;
	size_t n = strcspn(ct, "; \t");
	return n == 16 && strncasecmp(ct, "application/json", 16) == 0;
}

struct header_check {
	int bad;
	int content_lengths;
	int cl_bad; /* a Content-Length that is not 1*DIGIT (e.g. obs-fold) */
	int hosts;
	int transfer_encodings;
	int te_chunked; /* the (one) Transfer-Encoding is exactly chunked */
};

/* Flags a header libmicrohttpd let through but HTTP forbids: an empty
 * name, white space or NUL in a name, NUL in a value. */
static enum MHD_Result check_header(void *cls, enum MHD_ValueKind kind,
				    const char *key, size_t key_size,
				    const char *value, size_t value_size)
{
	struct header_check *hc = cls;

	if (key_size == 0 || strlen(key) != key_size ||
	    strcspn(key, " \t") != key_size ||
	    (value && strlen(value) != value_size))
		hc->bad = 1;
	/* libmicrohttpd 0.9.75 appends an obs-folded continuation line to
	 * the header's NAME ("Content-Length:\r\n 5" arrives as the name
	 * "Content-Length5" with an empty value) and frames the body as if
	 * there were no such header. A name that only starts like a header
	 * that frames the message is therefore that kind of fold: refused. */
	static const char *const framing[] = {"Content-Length",
					      "Transfer-Encoding", "Host"};
	for (size_t i = 0; i < sizeof framing / sizeof framing[0]; i++) {
		size_t n = strlen(framing[i]);
		if (key_size > n && strncasecmp(key, framing[i], n) == 0)
			hc->bad = 1;
	}
	if (strcasecmp(key, "Content-Length") == 0) {
		hc->content_lengths++;
		if (!value || !*value || strspn(value, "0123456789") != strlen(value))
			hc->cl_bad = 1;
	} else if (strcasecmp(key, "Host") == 0) {
		hc->hosts++;
	} else if (strcasecmp(key, "Transfer-Encoding") == 0) {
		hc->transfer_encodings++;
		hc->te_chunked = value && strcasecmp(value, "chunked") == 0;
	}
	return MHD_YES;
}

/*
 * Checks the request's headers and framing (RFC 9112) before anything
 * reads them, so "Bearer <token>\0junk", two Content-Lengths that
 * disagree, or a body whose length two headers tell differently can never
 * be taken at face value. 0 if fine; else the status to answer (the
 * connection is then closed) and a sentence in *msg.
 */
static int framing_error(struct MHD_Connection *c, const char *version,
			 const char **msg)
{
	struct header_check hc = {0};

	MHD_get_connection_values_n(c, MHD_HEADER_KIND, check_header, &hc);
	if (hc.bad || hc.content_lengths > 1 || hc.cl_bad) {
		*msg = "malformed request header";
		return 400;
	}
	if (hc.transfer_encodings && hc.content_lengths) {
		*msg = "Content-Length and Transfer-Encoding together (RFC 9112 6.1)";
		return 400;
	}
	if (hc.hosts > 1 ||
	    (hc.hosts == 0 && strcmp(version, MHD_HTTP_VERSION_1_1) == 0)) {
		*msg = "an HTTP/1.1 request needs exactly one Host header";
		return 400;
	}
	if (hc.transfer_encodings > 1 ||
	    (hc.transfer_encodings && !hc.te_chunked)) {
		*msg = "Transfer-Encoding other than chunked is not implemented";
		return 501;
	}
	return 0;
}

/* The declared Content-Length, or -1 if absent or unparsable. */
static long long content_length(struct MHD_Connection *c)
{
	const char *v = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
						    "Content-Length");
	if (!v)
		return -1;
	char *end;
	errno = 0;
	long long n = strtoll(v, &end, 10);
	if (errno || end == v || *end || n < 0)
		return -1;
	return n;
}

/* ---- handlers ---- */

static enum MHD_Result h_healthz(struct server *srv, struct MHD_Connection *c,
				 struct req *r)
{
	return send_json(c, 200, strdup("{\"status\":\"ok\"}"), NULL, NULL);
}

static enum MHD_Result h_readyz(struct server *srv, struct MHD_Connection *c,
				struct req *r)
{
	if (__atomic_load_n(&srv->stopping, __ATOMIC_ACQUIRE))
		return send_error(c, 503, "shutting down", "Retry-After", "5");
	if (!store_writable(srv->store))
		return send_error(c, 503, "the store is not writable",
				  "Retry-After", "5");
	return send_json(c, 200, strdup("{\"status\":\"ready\"}"), NULL, NULL);
}

static enum MHD_Result h_events(struct server *srv, struct MHD_Connection *c,
				struct req *r)
{
	struct ingest_result res;
	char ra[16];

	if (r->too_large) {
		metrics_event(METRICS_REJECTED);
		return send_error(c, 413, "body is larger than server.max_body",
				  NULL, NULL);
	}
	ingest_event(srv->ingest, r->body.data ? r->body.data : "",
		     r->body.len, &res);
	metrics_event(res.result);
	snprintf(ra, sizeof ra, "%d", res.retry_after);
	if (!res.json)
		return send_error(c, res.status, res.error,
				  res.retry_after ? "Retry-After" : NULL, ra);
	return send_json(c, res.status, res.json, NULL, NULL);
}

static enum MHD_Result send_text(struct MHD_Connection *c, int status,
				 struct buf *b, const char *type)
{
	size_t len = b->len;
	char *text = buf_steal(b);
	struct MHD_Response *resp;

	if (!text)
		return MHD_NO;
	resp = MHD_create_response_from_buffer(len, text,
					       MHD_RESPMEM_MUST_FREE);
	if (!resp) {
		free(text);
		return MHD_NO;
	}
	MHD_add_response_header(resp, "Content-Type", type);
	enum MHD_Result ret = MHD_queue_response(c, (unsigned)status, resp);
	MHD_destroy_response(resp);
	return ret;
}

static enum MHD_Result h_metrics(struct server *srv, struct MHD_Connection *c,
				 struct req *r)
{
	struct buf b;
	buf_init(&b, ADMIN_ANSWER_MAX);
	if (metrics_render(&b, store_count_pending(srv->store),
			   store_count_followed(srv->store)) < 0) {
		buf_free(&b);
		return send_error(c, 500, "metrics too large", NULL, NULL);
	}
	return send_text(c, 200, &b, "text/plain; version=0.0.4; charset=utf-8");
}

static enum MHD_Result h_triggers(struct server *srv, struct MHD_Connection *c,
				  struct req *r)
{
	struct config *cfg = config_slot_acquire(srv->slot);
	int **done = calloc(cfg->ntriggers + 1, sizeof *done);
	int64_t now = util_now_ms();
	struct buf b;
	int rc = done ? 0 : -1;

	for (size_t i = 0; rc == 0 && i < cfg->ntriggers; i++) {
		const struct config_trigger *t = &cfg->triggers[i];
		if (!t->wait_all)
			continue;
		if (!(done[i] = calloc(t->njobs, sizeof *done[i])) ||
		    store_fanin_progress(srv->store, t->name,
					 (const char *const *)t->jobs, t->njobs,
					 t->within_ms, now, done[i]) < 0)
			rc = -1;
	}
	buf_init(&b, ADMIN_ANSWER_MAX);
	if (rc == 0)
		rc = admin_triggers_json(cfg, (const int *const *)done, &b);
	for (size_t i = 0; done && i < cfg->ntriggers; i++)
		free(done[i]);
	free(done);
	config_release(cfg);
	if (rc < 0) {
		buf_free(&b);
		return send_error(c, 500, "could not list the triggers", NULL,
				  NULL);
	}
	return send_text(c, 200, &b, "application/json");
}

/* GET /v1/deliveries?state=&trigger=&limit= */
static enum MHD_Result h_deliveries(struct server *srv,
				    struct MHD_Connection *c, struct req *r)
{
	const char *state = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "state");
	const char *trigger = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "trigger");
	const char *lim = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "limit");
	enum store_state st;
	long limit = 100;
	struct buf b;

	if (state && *state && store_state_parse(state, &st) < 0)
		return send_error(c, 400, "state must be pending, delivered, failed or cancelled",
				  NULL, NULL);
	if (lim && *lim) {
		char *end;
		errno = 0;
		limit = strtol(lim, &end, 10);
		if (errno || *end || limit < 1 || limit > 10000)
			return send_error(c, 400, "limit must be a whole number from 1 to 10000",
					  NULL, NULL);
	}
	struct store_delivery_list rows;
	int rc = store_list(srv->store, state && *state ? state : NULL,
			    trigger && *trigger ? trigger : NULL, (int)limit,
			    &rows);
	buf_init(&b, ADMIN_ANSWER_MAX);
	if (rc < 0 || admin_deliveries_json(&rows, &b) < 0) {
		store_list_clear(&rows);
		buf_free(&b);
		return send_error(c, 503, "the store cannot be read right now",
				  "Retry-After", "5");
	}
	store_list_clear(&rows);
	return send_text(c, 200, &b, "application/json");
}

/* GET /v1/deliveries/{id} */
static enum MHD_Result h_delivery(struct server *srv, struct MHD_Connection *c,
				  struct req *r)
{
	struct store_delivery_full row;
	struct buf b;
	int rc = store_get(srv->store, r->id, &row);

	buf_init(&b, ADMIN_ANSWER_MAX);
	if (rc == 0 && admin_delivery_json(&row, &b) < 0)
		rc = -1;
	store_get_clear(&row);
	if (rc == 0)
		return send_text(c, 200, &b, "application/json");
	buf_free(&b);
	if (rc == 1)
		return send_error(c, 404, "no such delivery", NULL, NULL);
	return send_error(c, 503, "the store cannot be read right now",
			  "Retry-After", "5");
}

/* POST /v1/deliveries/{id}/retry */
static enum MHD_Result h_retry(struct server *srv, struct MHD_Connection *c,
			       struct req *r)
{
	int rc = store_retry(srv->store, r->id, util_now_ms());
	if (rc == 0) {
		log_kv(LOG_INFO, "delivery retry requested", "delivery", r->id,
		       LOG_END);
		ingest_wake(srv->ingest);
		json_t *o = json_pack("{s:s,s:s}", "id", r->id, "state",
				      "pending");
		char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
		json_decref(o);
		return send_json(c, 202, s, NULL, NULL);
	}
	if (rc == 1)
		return send_error(c, 404, "no such delivery", NULL, NULL);
	if (rc == 2)
		return send_error(c, 409, "only a failed or cancelled delivery can be retried",
				  NULL, NULL);
	return send_error(c, 503, "the store cannot commit right now",
			  "Retry-After", "5");
}

/* GET|HEAD /ui/ and /ui/<file>: the embedded console (SPEC section 12). */
static enum MHD_Result h_ui(struct server *srv, struct MHD_Connection *c,
			    struct req *r)
{
	char path[ID_MAX + 8];
	snprintf(path, sizeof path, "/ui/%s", r->id);
	const struct ui_asset *a = ui_find(path);
	if (!a)
		return send_error(c, 404, "no such endpoint", NULL, NULL);
	const char *inm = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
						      "If-None-Match");
	int fresh = ui_etag_matches(inm, a->etag);
	struct MHD_Response *resp = MHD_create_response_from_buffer(
		fresh ? 0 : a->len, fresh ? NULL : (void *)a->data,
		MHD_RESPMEM_PERSISTENT);
	if (!resp)
		return MHD_NO;
	if (!fresh)
		MHD_add_response_header(resp, "Content-Type", a->type);
	MHD_add_response_header(resp, "ETag", a->etag);
	for (size_t i = 0; i < ui_nheaders; i++)
		MHD_add_response_header(resp, ui_headers[i].name,
					ui_headers[i].value);
	enum MHD_Result ret = MHD_queue_response(c, fresh ? 304 : 200, resp);
	MHD_destroy_response(resp);
	return ret;
}

/* GET|HEAD /ui: to /ui/, so that the page's relative asset paths work. */
static enum MHD_Result h_ui_redirect(struct server *srv,
				     struct MHD_Connection *c, struct req *r)
{
	return send_error(c, 308, "the console is at /ui/", "Location", "/ui/");
}

static const struct route routes[] = {
	{"/v1/events", "POST", "POST", h_events, 1, 0},
	{"/healthz", "GET", "GET, HEAD", h_healthz, 0, 0},
	{"/healthz", "HEAD", "GET, HEAD", h_healthz, 0, 0},
	{"/readyz", "GET", "GET, HEAD", h_readyz, 0, 0},
	{"/readyz", "HEAD", "GET, HEAD", h_readyz, 0, 0},
	{"/metrics", "GET", "GET", h_metrics, 0, 0},
	{"/v1/triggers", "GET", "GET", h_triggers, 0, 1},
	{"/v1/deliveries", "GET", "GET", h_deliveries, 0, 1},
	{"/v1/deliveries/*", "GET", "GET", h_delivery, 0, 1},
	{"/v1/deliveries/*/retry", "POST", "POST", h_retry, 0, 1},
	{"/ui", "GET", "GET, HEAD", h_ui_redirect, 0, 2},
	{"/ui", "HEAD", "GET, HEAD", h_ui_redirect, 0, 2},
	{"/ui/", "GET", "GET, HEAD", h_ui, 0, 2},
	{"/ui/", "HEAD", "GET, HEAD", h_ui, 0, 2},
	{"/ui/*", "GET", "GET, HEAD", h_ui, 0, 2},
	{"/ui/*", "HEAD", "GET, HEAD", h_ui, 0, 2},
};

/* 1 if path fits pattern; the segment matched by '*' goes into id. */
static int path_matches(const char *pattern, const char *path, char *id)
{
	while (*pattern && *path) {
		if (*pattern == '*') {
			size_t n = strcspn(path, "/");
			if (n == 0 || n >= ID_MAX)
				return 0;
			memcpy(id, path, n);
			id[n] = '\0';
			path += n;
			pattern++;
		} else if (*pattern++ != *path++) {
			return 0;
		}
	}
	return *pattern == '\0' && *path == '\0';
}

/* The route for path and method; *known says whether the path exists. */
static const struct route *find_route(const char *path, const char *method,
				      const struct route **known, char *id)
{
	*known = NULL;
	for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
		if (!path_matches(routes[i].path, path, id))
			continue;
		*known = &routes[i];
		if (strcmp(routes[i].method, method) == 0)
			return &routes[i];
	}
	return NULL;
}

/* Admin routes: 404 with no admin tokens, 401 without a right one (the
 * console's files need no token: console is 1 for them). */
static enum MHD_Result admin_check(struct server *srv, struct MHD_Connection *c,
				   int console, int *ok)
{
	struct config *cfg = config_slot_acquire(srv->slot);
	enum MHD_Result ret = MHD_YES;

	*ok = 0;
	if (cfg->nadmin_tokens == 0)
		ret = send_error(c, 404, "no such endpoint (the admin API is off: no server.admin_tokens)",
				 NULL, NULL);
	else if (!console &&
		 !bearer_ok(c, cfg->admin_tokens, cfg->nadmin_tokens))
		ret = send_error(c, 401, "missing or wrong admin bearer token",
				 "WWW-Authenticate", "Bearer");
	else
		*ok = 1;
	config_release(cfg);
	return ret;
}

/* ---- the MHD callbacks ---- */

/*
 * First call of a request: route and check everything the headers tell.
 * Returns a queued answer, or sets *con_cls to a new struct req.
 */
static enum MHD_Result begin(struct server *srv, struct MHD_Connection *c,
			     const char *url, const char *method,
			     const char *version, void **con_cls)
{
	char id[ID_MAX] = "";
	const struct route *known, *rt = find_route(url, method, &known, id);
	enum MHD_Result ret = MHD_YES;
	struct config *cfg = NULL;
	const char *msg = NULL;
	int ok = 0, status;
	int is_event = strcmp(url, "/v1/events") == 0 &&
		       strcmp(method, "POST") == 0;

	status = framing_error(c, version, &msg);
	if (status) {
		if (is_event)
			metrics_event(METRICS_REJECTED);
		return send_error_close(c, status, msg);
	}
	/* Near the connection limit new requests get a 503, not the reset
	 * MHD gives past it, so a client knows to come back. */
	if (server_guard_count(srv->guard) >= srv->busy_at) {
		if (is_event)
			metrics_event(METRICS_UNAVAILABLE);
		return send_error_close(c, 503, "too many connections");
	}
	if (!known)
		return send_error(c, 404, "no such endpoint", NULL, NULL);
	if (known->admin) {
		ret = admin_check(srv, c, known->admin == 2, &ok);
		if (!ok)
			return ret;
	}
	if (!rt)
		return send_error(c, 405, "method not allowed", "Allow",
				  known->allow);
	if (rt->has_body &&
	    __atomic_load_n(&srv->stopping, __ATOMIC_ACQUIRE)) {
		metrics_event(METRICS_UNAVAILABLE);
		return send_error(c, 503, "shutting down", "Retry-After", "5");
	}
	struct req *r = calloc(1, sizeof *r);
	if (!r)
		return send_error(c, 503, "out of memory", "Retry-After", "1");
	r->route = rt;
	memcpy(r->id, id, sizeof r->id);
	*con_cls = r;
	__atomic_add_fetch(&srv->active, 1, __ATOMIC_ACQ_REL);
	if (!rt->has_body)
		return MHD_YES;

	cfg = config_slot_acquire(srv->slot);
	buf_init(&r->body, cfg->max_body);
	if (cfg->nauth_tokens &&
	    !bearer_ok(c, cfg->auth_tokens, cfg->nauth_tokens))
		ret = send_error(c, 401, "missing or wrong bearer token",
				 "WWW-Authenticate", "Bearer");
	else if (!media_type_ok(c))
		ret = send_error(c, 415, "Content-Type must be application/json",
				 NULL, NULL);
	else if (content_length(c) > (long long)cfg->max_body)
		ret = send_error(c, 413, "body is larger than server.max_body",
				 NULL, NULL);
	else
		ok = 2; /* all checks passed */
	if (ok != 2)
		metrics_event(METRICS_REJECTED);
	config_release(cfg);
	return ret;
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *c,
			      const char *url, const char *method,
			      const char *version, const char *upload_data,
			      size_t *upload_data_size, void **con_cls)
{
	struct server *srv = cls;
	struct req *r = *con_cls;

	if (!r)
		return begin(srv, c, url, method, version, con_cls);
	if (*upload_data_size) {
		/* Past the limit the rest is read and dropped, never kept. */
		if (!r->route->has_body || r->too_large ||
		    buf_append(&r->body, upload_data, *upload_data_size) < 0)
			r->too_large = 1;
		*upload_data_size = 0;
		return MHD_YES;
	}
	return r->route->fn(srv, c, r);
}

static void completed(void *cls, struct MHD_Connection *c, void **con_cls,
		      enum MHD_RequestTerminationCode toe)
{
	struct server *srv = cls;
	struct req *r = *con_cls;
	const union MHD_ConnectionInfo *ci =
		MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);

	/* the next request on this connection gets a deadline of its own */
	if (ci && ci->socket_context)
		server_guard_touch(ci->socket_context);
	if (!r)
		return;
	buf_free(&r->body);
	free(r);
	*con_cls = NULL;
	__atomic_sub_fetch(&srv->active, 1, __ATOMIC_ACQ_REL);
}

/* MHD opens and closes a connection: registered with the guard, which
 * enforces the request deadline and counts connections. */
static void notify_connection(void *cls, struct MHD_Connection *c,
			      void **socket_context,
			      enum MHD_ConnectionNotificationCode code)
{
	struct server *srv = cls;

	if (code == MHD_CONNECTION_NOTIFY_STARTED) {
		const union MHD_ConnectionInfo *ci = MHD_get_connection_info(
			c, MHD_CONNECTION_INFO_CONNECTION_FD);
		*socket_context =
			ci ? server_guard_open(srv->guard, ci->connect_fd) : NULL;
	} else {
		server_guard_close(srv->guard, *socket_context);
		*socket_context = NULL;
	}
}

/* Raises the soft RLIMIT_NOFILE to the hard one and returns how many
 * connections that allows, at most CONN_LIMIT_MAX. */
static unsigned conn_limit(void)
{
	struct rlimit rl;
	rlim_t n;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return 1024 - FD_RESERVE;
	if (rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
			getrlimit(RLIMIT_NOFILE, &rl);
	}
	n = rl.rlim_cur;
	if (n == RLIM_INFINITY || n > CONN_LIMIT_MAX + FD_RESERVE)
		n = CONN_LIMIT_MAX + FD_RESERVE;
	return n > 2 * FD_RESERVE ? (unsigned)(n - FD_RESERVE) : FD_RESERVE;
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
	char msg[512];
	vsnprintf(msg, sizeof msg, fmt, ap);
	msg[strcspn(msg, "\n")] = '\0';
	log_kv(LOG_DEBUG, "http server", "detail", msg, LOG_END);
}

/* ---- start and stop ---- */

static int listen_on(const char *host, int port, char *err, size_t errlen)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM,
				 .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
	struct addrinfo *ai = NULL;
	char portstr[16];
	int fd = -1, one = 1, rc;

	snprintf(portstr, sizeof portstr, "%d", port);
	rc = getaddrinfo(host, portstr, &hints, &ai);
	if (rc != 0) {
		snprintf(err, errlen, "cannot listen on %s:%d: %s", host, port,
			 gai_strerror(rc));
		return -1;
	}
	fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
	    bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 4096) < 0) {
		snprintf(err, errlen, "cannot listen on %s:%d: %s", host, port,
			 strerror(errno));
		if (fd >= 0)
			close(fd);
		fd = -1;
	}
	freeaddrinfo(ai);
	return fd;
}

static int bound_port(int fd)
{
	struct sockaddr_storage ss = {0};
	socklen_t len = sizeof ss;
	if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
		return -1;
	if (ss.ss_family == AF_INET6)
		return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	/* NOLINTNEXTLINE(clang-analyzer-core.CallAndMessage): getsockname set it */
	return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

struct server *server_start(const char *host, int port,
			    struct config_slot *slot, struct store *st,
			    const struct ingest *in, char *err, size_t errlen)
{
	struct server *srv = calloc(1, sizeof *srv);
	if (!srv) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	srv->slot = slot;
	srv->store = st;
	srv->ingest = in;
	srv->fd = listen_on(host, port, err, errlen);
	if (srv->fd < 0)
		goto fail;
	srv->port = bound_port(srv->fd);
	srv->guard = server_guard_new(REQUEST_DEADLINE_MS);
	if (!srv->guard) {
		snprintf(err, errlen, "cannot start the HTTP server's reaper");
		close(srv->fd);
		goto fail;
	}
	unsigned limit = conn_limit();
	srv->busy_at = limit > 2 * CONN_503_MARGIN ? (long)(limit - CONN_503_MARGIN)
						   : (long)limit;
	/* Limits chosen so that idle or slow clients cannot hold the
	 * server: a connection silent for IDLE_TIMEOUT_S is closed, a
	 * request still unfinished after REQUEST_DEADLINE_MS is cut (the
	 * guard), one address holds at most PER_IP_LIMIT connections, and
	 * open connections cost a memory pool each, not a thread. */
	srv->mhd = MHD_start_daemon(
		MHD_USE_EPOLL_INTERNAL_THREAD | MHD_USE_ITC | MHD_USE_ERROR_LOG,
		0, NULL, NULL, handle, srv, MHD_OPTION_LISTEN_SOCKET, srv->fd,
		MHD_OPTION_THREAD_POOL_SIZE, (unsigned)POOL_THREADS,
		MHD_OPTION_NOTIFY_COMPLETED, completed, srv,
		MHD_OPTION_NOTIFY_CONNECTION, notify_connection, srv,
		MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)IDLE_TIMEOUT_S,
		MHD_OPTION_CONNECTION_LIMIT, limit,
		MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)PER_IP_LIMIT,
		MHD_OPTION_THREAD_STACK_SIZE, (size_t)(256 * 1024),
		MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL, MHD_OPTION_END);
	if (!srv->mhd) {
		server_guard_free(srv->guard);
		snprintf(err, errlen, "cannot start the HTTP server on %s:%d",
			 host, port);
		close(srv->fd);
		goto fail;
	}
	return srv;
fail:
	free(srv);
	return NULL;
}

int server_port(const struct server *srv)
{
	return srv->port;
}

void server_stop(struct server *srv, int64_t deadline_mono_ms)
{
	if (!srv)
		return;
	__atomic_store_n(&srv->stopping, 1, __ATOMIC_RELEASE);
	int fd = MHD_quiesce_daemon(srv->mhd);
	if (fd >= 0)
		close(fd);
	/* Requests already inside a handler finish; idle keep-alive
	 * connections are not waited for. */
	while (__atomic_load_n(&srv->active, __ATOMIC_ACQUIRE) > 0 &&
	       util_mono_ms() < deadline_mono_ms) {
		struct timespec ts = {0, 10 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	MHD_stop_daemon(srv->mhd);
	server_guard_free(srv->guard);
	free(srv);
}
