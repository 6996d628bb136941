/*
 * http_client — one outgoing HTTP request at a time, over a reused
 * connection (see include/http_client.h).
 *
 * DESIGN: libcurl lives only here. A client owns one easy handle; it is
 * curl_easy_reset() before each request, which clears the options but
 * keeps the connection cache, so a worker talking to one host keeps one
 * connection alive. Called by one dispatcher worker thread only; the only
 * cross-thread input is the request's cancel flag, read atomically from
 * libcurl's progress callback (called at least once a second, and on every
 * bit of traffic), which is how dispatch_stop() aborts a transfer.
 *
 * The request goes out exactly as configured: curl's own "Expect:
 * 100-continue", its catch-all Accept and its form Content-Type are
 * suppressed unless the request sets them; User-Agent is the client's
 * unless a header sets it. Redirects are not followed and only http and https
 * are allowed. Secrets may sit in header lines, so the lines we build are wiped
 * before they are freed. Error sentences name the host, never the URL (a URL
 * may carry a secret).
 */
#include "http_client.h"

#include <curl/curl.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "buf.h"
#include "util.h"

#define RETRY_AFTER_MAX_S (10LL * 366 * 86400) /* larger values are clamped */

struct http_client {
	CURL *curl;
	char *user_agent;
	char errbuf[CURL_ERROR_SIZE];
};

/* State of one transfer, shared with the libcurl callbacks. */
struct xfer {
	struct buf body;      /* first body_max bytes */
	char retry_after[64]; /* raw value of the final response's header */
	const int *cancel;
	int requests;       /* requests libcurl was about to send */
	int resend_refused; /* it wanted to send this one a second time */
};

int http_client_global_init(void)
{
	return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 : -1;
}

void http_client_global_cleanup(void)
{
	curl_global_cleanup();
}

struct http_client *http_client_new(const char *user_agent)
{
	struct http_client *c = calloc(1, sizeof *c);

	if (!c)
		return NULL;
	c->curl = curl_easy_init();
	c->user_agent = strdup(user_agent ? user_agent : "");
	if (!c->curl || !c->user_agent) {
		http_client_free(c);
		return NULL;
	}
	return c;
}

void http_client_free(struct http_client *c)
{
	if (!c)
		return;
	if (c->curl)
		curl_easy_cleanup(c->curl);
	free(c->user_agent);
	free(c);
}

void http_response_clear(struct http_response *resp)
{
	free(resp->body);
	memset(resp, 0, sizeof *resp);
	resp->retry_after_ms = -1;
}

/*
 * Lets only one request go out per attempt. When a kept-alive connection
 * turns out to be dead, libcurl would send the request again on a new one
 * within the same transfer: a request nobody counts, past max_attempts,
 * and a duplicate if the first one did arrive. libcurl asks here before
 * every request it sends (redirects are off), so a second ask is that
 * resend: refused, the attempt fails and the dispatcher retries it after
 * a backoff.
 */
static int on_prereq(void *arg, char *primary_ip, char *local_ip,
		     int primary_port, int local_port)
{
	struct xfer *x = arg;

	if (x->requests++ == 0)
		return CURL_PREREQFUNC_OK;
	x->resend_refused = 1;
	return CURL_PREREQFUNC_ABORT;
}

/* Keeps the first bytes of the body; the rest is read and dropped, so the
 * connection stays usable for the next request. */
static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
	struct xfer *x = arg;
	size_t len = size * n;
	size_t room = x->body.max - x->body.len;

	if (room > 0)
		buf_append(&x->body, p, len < room ? len : room);
	return len;
}

/* Remembers Retry-After. A status line starts a new response (a 100
 * Continue, say), whose headers replace the previous ones. */
static size_t on_header(char *p, size_t size, size_t n, void *arg)
{
	struct xfer *x = arg;
	size_t len = size * n;
	static const char name[] = "retry-after:";

	if (len >= 5 && memcmp(p, "HTTP/", 5) == 0) {
		x->retry_after[0] = '\0';
	} else if (len > sizeof name - 1 &&
		   strncasecmp(p, name, sizeof name - 1) == 0) {
		size_t vlen = len - (sizeof name - 1);
		if (vlen >= sizeof x->retry_after)
			vlen = sizeof x->retry_after - 1;
		memcpy(x->retry_after, p + sizeof name - 1, vlen);
		x->retry_after[vlen] = '\0';
	}
	return len;
}

/* Returning non-zero makes libcurl abort with CURLE_ABORTED_BY_CALLBACK. */
static int on_progress(void *arg, curl_off_t dltotal, curl_off_t dlnow,
		       curl_off_t ultotal, curl_off_t ulnow)
{
	struct xfer *x = arg;

	return x->cancel && __atomic_load_n(x->cancel, __ATOMIC_ACQUIRE);
}

/* 1 if one of the request's headers is called name. */
static int has_header(const struct http_request *req, const char *name)
{
	for (size_t i = 0; i < req->nheaders; i++)
		if (strcasecmp(req->headers[i].name, name) == 0)
			return 1;
	return 0;
}

/* Wipes the header lines (they may hold a token) and frees them. */
static void wipe_slist(struct curl_slist *l)
{
	for (struct curl_slist *s = l; s; s = s->next)
		explicit_bzero(s->data, strlen(s->data));
	curl_slist_free_all(l);
}

/* Appends "Name: value" ("Name;" for an empty value, which is how curl
 * sends an empty header). -1 if memory ran out. The caller bounds the
 * sizes (request.c), so the line gets exactly the room it needs. */
static int add_line(struct curl_slist **l, const char *name, const char *value)
{
	struct buf line;
	struct curl_slist *n;
	int rc;

	buf_init(&line, strlen(name) + (value ? strlen(value) : 0) + 3);
	if (value && value[0])
		rc = buf_printf(&line, "%s: %s", name, value);
	else
		rc = buf_printf(&line, "%s;", name);
	n = rc == 0 ? curl_slist_append(*l, buf_str(&line)) : NULL;
	if (line.data)
		explicit_bzero(line.data, line.len);
	buf_free(&line);
	if (!n)
		return -1;
	*l = n;
	return 0;
}

/*
 * The header list: the request's headers in order, then "Name:" entries
 * that remove what curl would add on its own, so the server sees exactly
 * the configured headers (plus Host, User-Agent and Content-Length).
 */
static struct curl_slist *build_headers(const struct http_request *req)
{
	static const char *const suppress[] = {"Expect", "Accept",
					       "Content-Type"};
	struct curl_slist *l = NULL;

	for (size_t i = 0; i < req->nheaders; i++)
		if (add_line(&l, req->headers[i].name, req->headers[i].value) <
		    0)
			goto fail;
	for (size_t i = 0; i < sizeof suppress / sizeof *suppress; i++) {
		if (has_header(req, suppress[i]))
			continue;
		char line[32];
		snprintf(line, sizeof line, "%s:", suppress[i]);
		struct curl_slist *n = curl_slist_append(l, line);
		if (!n)
			goto fail;
		l = n;
	}
	return l;
fail:
	wipe_slist(l);
	return NULL;
}

/* 1 if the method carries a body even when none is configured (then an
 * empty one, with Content-Length: 0, as servers expect). */
static int method_has_body(const char *m)
{
	return strcmp(m, "POST") == 0 || strcmp(m, "PUT") == 0 ||
	       strcmp(m, "PATCH") == 0;
}

static int set_options(struct http_client *c, const struct http_request *req,
		       struct curl_slist *hdrs, struct xfer *x)
{
	CURL *h = c->curl;
	CURLcode e = CURLE_OK;

#define SET(opt, val)                                                          \
	do {                                                                   \
		if (e == CURLE_OK)                                             \
			e = curl_easy_setopt(h, opt, val);                     \
	} while (0)
	SET(CURLOPT_URL, req->url);
	SET(CURLOPT_PROTOCOLS_STR, "http,https");
	SET(CURLOPT_FOLLOWLOCATION, 0L);
	SET(CURLOPT_NOSIGNAL, 1L);
	SET(CURLOPT_TCP_KEEPALIVE, 1L);
	SET(CURLOPT_TIMEOUT_MS, (long)req->timeout_ms);
	SET(CURLOPT_CONNECTTIMEOUT_MS, (long)req->connect_timeout_ms);
	SET(CURLOPT_USERAGENT, c->user_agent);
	SET(CURLOPT_HTTPHEADER, hdrs);
	SET(CURLOPT_ERRORBUFFER, c->errbuf);
	SET(CURLOPT_WRITEFUNCTION, on_body);
	SET(CURLOPT_WRITEDATA, x);
	SET(CURLOPT_HEADERFUNCTION, on_header);
	SET(CURLOPT_HEADERDATA, x);
	SET(CURLOPT_NOPROGRESS, 0L);
	SET(CURLOPT_XFERINFOFUNCTION, on_progress);
	SET(CURLOPT_XFERINFODATA, x);
	SET(CURLOPT_PREREQFUNCTION, on_prereq);
	SET(CURLOPT_PREREQDATA, x);
	/* Event data is percent-encoded, but "." and ".." segments would
	 * still be folded away by libcurl: send the path as rendered. */
	SET(CURLOPT_PATH_AS_IS, 1L);
	if (req->body || method_has_body(req->method)) {
		/* given whole, a small body goes out with the headers in one
		 * segment; on_prereq keeps libcurl from sending it twice */
		SET(CURLOPT_POSTFIELDSIZE_LARGE,
		    (curl_off_t)(req->body ? req->body_len : 0));
		SET(CURLOPT_POSTFIELDS, req->body ? req->body : "");
	}
	/* After CURLOPT_POSTFIELDS, which would otherwise make it a POST. */
	SET(CURLOPT_CUSTOMREQUEST, req->method);
#undef SET
	return e == CURLE_OK ? 0 : -1;
}

/*
 * snprintf for messages: a sentence longer than its buffer is cut, by
 * design (going through vsnprintf keeps -Wformat-truncation quiet about
 * that while the format is still checked).
 */
__attribute__((format(printf, 3, 4))) static void say(char *out, size_t outlen,
						      const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(out, outlen, fmt, ap);
	va_end(ap);
}

/* The URL's host (and port when asked) for messages; "the server" if the
 * URL does not parse. */
static void url_host(const char *url, int with_port, char *out, size_t outlen)
{
	CURLU *u = curl_url();
	char *host = NULL, *port = NULL;

	snprintf(out, outlen, "the server");
	if (!u || curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK)
		goto out;
	if (with_port && curl_url_get(u, CURLUPART_PORT, &port,
				      CURLU_DEFAULT_PORT) == CURLUE_OK)
		snprintf(out, outlen, "%s:%s", host, port);
	else
		snprintf(out, outlen, "%s", host);
out:
	curl_free(host);
	curl_free(port);
	curl_url_cleanup(u);
}

int http_url_host(const char *url, char *out, size_t outlen)
{
	url_host(url, 0, out, outlen);
	return strcmp(out, "the server") == 0 ? -1 : 0;
}

/* "IP:port" of the address curl last tried, else the URL's host:port. */
static void peer(CURL *h, const char *url, char *out, size_t outlen)
{
	char *ip = NULL;
	long port = 0;

	if (curl_easy_getinfo(h, CURLINFO_PRIMARY_IP, &ip) == CURLE_OK && ip &&
	    ip[0] &&
	    curl_easy_getinfo(h, CURLINFO_PRIMARY_PORT, &port) == CURLE_OK &&
	    port > 0)
		say(out, outlen, strchr(ip, ':') ? "[%s]:%ld" : "%s:%ld", ip,
		    port);
	else
		url_host(url, 1, out, outlen);
}

/* The message curl gave, or its generic text for the code. */
static const char *curl_detail(const struct http_client *c, CURLcode e)
{
	return c->errbuf[0] ? c->errbuf : curl_easy_strerror(e);
}

static void describe_timeout(struct http_client *c,
			     const struct http_request *req, char *out,
			     size_t outlen)
{
	curl_off_t connect_us = 0;
	long sent = 0;
	char host[300];

	/* A reused connection has no connect time, but has sent a request. */
	curl_easy_getinfo(c->curl, CURLINFO_CONNECT_TIME_T, &connect_us);
	curl_easy_getinfo(c->curl, CURLINFO_REQUEST_SIZE, &sent);
	if (connect_us == 0 && sent == 0) {
		int64_t ms = req->connect_timeout_ms;
		if (req->timeout_ms > 0 && (ms <= 0 || req->timeout_ms < ms))
			ms = req->timeout_ms;
		url_host(req->url, 1, host, sizeof host);
		say(out, outlen, "connecting to %s timed out after %lld ms",
		    host, (long long)ms);
	} else {
		url_host(req->url, 0, host, sizeof host);
		say(out, outlen, "timed out after %lld ms waiting for %s",
		    (long long)req->timeout_ms, host);
	}
}

/* Turns a transport failure into a sentence a person can act on. */
static void describe_error(struct http_client *c,
			   const struct http_request *req, CURLcode e,
			   char *out, size_t outlen)
{
	char host[300], addr[300];
	long oserr = 0;

	curl_easy_getinfo(c->curl, CURLINFO_OS_ERRNO, &oserr);
	url_host(req->url, 0, host, sizeof host);
	switch (e) {
	case CURLE_COULDNT_RESOLVE_HOST:
		say(out, outlen, "could not resolve host %s", host);
		break;
	case CURLE_COULDNT_CONNECT:
		peer(c->curl, req->url, addr, sizeof addr);
		if (oserr == ECONNREFUSED)
			say(out, outlen, "connection refused by %s", addr);
		else if (oserr == ENETUNREACH || oserr == EHOSTUNREACH)
			say(out, outlen, "%s is unreachable: %s", addr,
			    strerror((int)oserr));
		else
			say(out, outlen, "could not connect to %s: %s", addr,
			    curl_detail(c, e));
		break;
	case CURLE_OPERATION_TIMEDOUT:
		describe_timeout(c, req, out, outlen);
		break;
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CERTPROBLEM:
	case CURLE_SSL_CIPHER:
	case CURLE_SSL_CACERT_BADFILE:
	case CURLE_SSL_ISSUER_ERROR:
	case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
	case CURLE_SSL_INVALIDCERTSTATUS:
	case CURLE_SSL_CRL_BADFILE:
	case CURLE_USE_SSL_FAILED:
		say(out, outlen, "TLS handshake with %s failed: %s", host,
		    curl_detail(c, e));
		break;
	case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR:
		/* curl does not always pass the errno on; its text does. */
		if (oserr == ECONNRESET || oserr == EPIPE ||
		    strstr(curl_detail(c, e), "reset by peer"))
			say(out, outlen, "connection reset by %s", host);
		else
			say(out, outlen, "connection to %s broken: %s", host,
			    curl_detail(c, e));
		break;
	case CURLE_GOT_NOTHING:
		say(out, outlen, "connection closed by %s without a response",
		    host);
		break;
	case CURLE_WEIRD_SERVER_REPLY:
	case CURLE_HTTP2:
	case CURLE_HTTP2_STREAM:
		say(out, outlen, "invalid HTTP response from %s: %s", host,
		    curl_detail(c, e));
		break;
	case CURLE_PARTIAL_FILE:
		say(out, outlen, "response from %s cut short", host);
		break;
	case CURLE_ABORTED_BY_CALLBACK:
		say(out, outlen, "cancelled: shutting down");
		break;
	case CURLE_URL_MALFORMAT:
		say(out, outlen, "the URL is invalid: %s", curl_detail(c, e));
		break;
	case CURLE_UNSUPPORTED_PROTOCOL:
		say(out, outlen, "the URL's scheme is not http or https");
		break;
	default:
		say(out, outlen, "request to %s failed: %s", host,
		    curl_detail(c, e));
		break;
	}
}

/*
 * One request. The easy handle is reset first (options only; the
 * connection cache survives). Any transport error, including one after the
 * status line arrived, counts as no response: the caller retries, which is
 * at-least-once and what Idempotency-Key is for.
 */
int http_client_send(struct http_client *c, const struct http_request *req,
		     struct http_response *resp)
{
	struct xfer x = {.cancel = req->cancel};
	struct curl_slist *hdrs = NULL;
	char host[300];
	int64_t t0 = util_mono_ms();
	CURLcode e;
	long status = 0;
	int rc = -1;

	memset(resp, 0, sizeof *resp);
	resp->retry_after_ms = -1;
	buf_init(&x.body, req->body_max ? req->body_max : HTTP_RESPONSE_KEEP);
	curl_easy_reset(c->curl);
	c->errbuf[0] = '\0';
	hdrs = build_headers(req);
	if (!hdrs || set_options(c, req, hdrs, &x) < 0) {
		snprintf(resp->error, sizeof resp->error,
			 "could not prepare the request (out of memory?)");
		goto out;
	}
	e = curl_easy_perform(c->curl);
	if (e != CURLE_OK && x.resend_refused) {
		url_host(req->url, 0, host, sizeof host);
		say(resp->error, sizeof resp->error,
		    "connection to %s closed before the request was answered",
		    host);
		goto out;
	}
	if (e != CURLE_OK) {
		describe_error(c, req, e, resp->error, sizeof resp->error);
		/* the request certainly never left: no name, no connection,
		 * no TLS session */
		resp->unsent = e == CURLE_COULDNT_RESOLVE_HOST ||
			       e == CURLE_COULDNT_RESOLVE_PROXY ||
			       e == CURLE_COULDNT_CONNECT ||
			       e == CURLE_SSL_CONNECT_ERROR ||
			       e == CURLE_PEER_FAILED_VERIFICATION;
		goto out;
	}
	curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &status);
	resp->status = (int)status;
	if (x.retry_after[0])
		resp->retry_after_ms =
		    http_parse_retry_after(x.retry_after, util_now_ms());
	resp->body_len = x.body.len;
	resp->body = buf_steal(&x.body);
	rc = resp->body ? 0 : -1;
	if (rc < 0) {
		resp->status = 0;
		snprintf(resp->error, sizeof resp->error, "out of memory");
	}
out:
	/* The handle still points at the list; drop that before freeing it. */
	curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, NULL);
	wipe_slist(hdrs);
	buf_free(&x.body);
	resp->ms = util_mono_ms() - t0;
	return rc;
}

/*
 * delta-seconds (all digits) or an HTTP-date (it starts with a day name;
 * curl_getdate also takes the obsolete RFC 850 and asctime forms).
 * Surrounding white space is ignored; a date in the past means 0. Huge
 * values are clamped to ten years so callers can add them to a time.
 */
int64_t http_parse_retry_after(const char *v, int64_t now_ms)
{
	char tmp[64];
	size_t n;

	while (*v == ' ' || *v == '\t')
		v++;
	n = strlen(v);
	while (n > 0 && strchr(" \t\r\n", v[n - 1]))
		n--;
	if (n == 0 || n >= sizeof tmp)
		return -1;
	memcpy(tmp, v, n);
	tmp[n] = '\0';
	if (strspn(tmp, "0123456789") == n) {
		errno = 0;
		long long s = strtoll(tmp, NULL, 10);
		if (errno == ERANGE || s > RETRY_AFTER_MAX_S)
			s = RETRY_AFTER_MAX_S;
		return (int64_t)s * 1000;
	}
	if (!((tmp[0] >= 'A' && tmp[0] <= 'Z') ||
	      (tmp[0] >= 'a' && tmp[0] <= 'z')))
		return -1;
	time_t t = curl_getdate(tmp, NULL);
	if (t == -1)
		return -1;
	int64_t ms = (int64_t)t * 1000 - now_ms;
	if (ms < 0)
		return 0;
	return ms > RETRY_AFTER_MAX_S * 1000 ? RETRY_AFTER_MAX_S * 1000 : ms;
}
