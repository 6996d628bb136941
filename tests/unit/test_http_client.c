/*
 * Unit tests for http_client against a tiny HTTP server run in a thread of
 * this test (plain sockets on 127.0.0.1, canned answers). The server keeps
 * the exact bytes of each request it receives, so the tests assert what
 * went over the wire, and counts accepted connections, so keep-alive is
 * checked rather than assumed.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "http_client.h"
#include "util.h"

#define MAXCONN 8
#define REQ_MAX (2 << 20)

struct conn {
	int fd;
	char in[REQ_MAX];
	size_t len;
};

static struct {
	int lfd, port;
	int wake[2];
	pthread_t tid;
	pthread_mutex_t mu;
	/* written by the server thread, read by tests under mu */
	int accepted;
	int requests;
	char last[REQ_MAX];
	size_t last_len;
	/* set by tests before a request, under mu */
	char *response;
	size_t response_len;
	int stall;	  /* never answer */
	int reset;	  /* close with a TCP RST instead of answering */
	int *cancel_flag; /* set to 1 when a request arrives */
	struct conn conns[MAXCONN];
} srv;

static void send_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
		if (w <= 0)
			return;
		p += w;
		n -= (size_t)w;
	}
}

static void conn_close(struct conn *c, int rst)
{
	if (rst) {
		struct linger lg = {.l_onoff = 1, .l_linger = 0};
		setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
	}
	close(c->fd);
	c->fd = -1;
	c->len = 0;
}

/* Length of the first complete request in c->in, or 0 if not complete. */
static size_t request_len(const struct conn *c)
{
	const char *end = memmem(c->in, c->len, "\r\n\r\n", 4);
	size_t head, body = 0;

	if (!end)
		return 0;
	head = (size_t)(end - c->in) + 4;
	for (const char *p = c->in; p < end; p++) {
		if ((p == c->in || p[-1] == '\n') &&
		    strncasecmp(p, "Content-Length:", 15) == 0)
			body = strtoul(p + 15, NULL, 10);
	}
	return c->len >= head + body ? head + body : 0;
}

/* Serves every complete request in c; 0, or -1 when c was closed. */
static int conn_serve(struct conn *c)
{
	size_t n;

	while ((n = request_len(c)) > 0) {
		pthread_mutex_lock(&srv.mu);
		memcpy(srv.last, c->in, n);
		srv.last_len = n;
		srv.requests++;
		int stall = srv.stall, reset = srv.reset;
		if (srv.cancel_flag)
			__atomic_store_n(srv.cancel_flag, 1, __ATOMIC_RELEASE);
		if (!stall && !reset)
			send_all(c->fd, srv.response, srv.response_len);
		pthread_mutex_unlock(&srv.mu);
		memmove(c->in, c->in + n, c->len - n);
		c->len -= n;
		if (reset) {
			conn_close(c, 1);
			return -1;
		}
	}
	return 0;
}

static void accept_one(void)
{
	int fd = accept(srv.lfd, NULL, NULL);

	if (fd < 0)
		return;
	for (int i = 0; i < MAXCONN; i++) {
		if (srv.conns[i].fd < 0) {
			srv.conns[i].fd = fd;
			srv.conns[i].len = 0;
			pthread_mutex_lock(&srv.mu);
			srv.accepted++;
			pthread_mutex_unlock(&srv.mu);
			return;
		}
	}
	close(fd);
}

static void *server_main(void *arg)
{
	for (;;) {
		struct pollfd p[MAXCONN + 2];
		int map[MAXCONN + 2];
		nfds_t n = 0;

		p[n++] = (struct pollfd){.fd = srv.wake[0], .events = POLLIN};
		p[n++] = (struct pollfd){.fd = srv.lfd, .events = POLLIN};
		for (int i = 0; i < MAXCONN; i++) {
			if (srv.conns[i].fd < 0)
				continue;
			map[n] = i;
			p[n++] = (struct pollfd){.fd = srv.conns[i].fd,
						 .events = POLLIN};
		}
		if (poll(p, n, -1) < 0 && errno != EINTR)
			break;
		if (p[0].revents)
			break;
		if (p[1].revents & POLLIN)
			accept_one();
		for (nfds_t k = 2; k < n; k++) {
			struct conn *c = &srv.conns[map[k]];
			if (!p[k].revents)
				continue;
			ssize_t r = recv(c->fd, c->in + c->len,
					 sizeof c->in - c->len, 0);
			if (r <= 0) {
				conn_close(c, 0);
				continue;
			}
			c->len += (size_t)r;
			conn_serve(c);
		}
	}
	return NULL;
}

static int server_start(void)
{
	struct sockaddr_in a = {.sin_family = AF_INET};
	socklen_t alen = sizeof a;
	int one = 1;

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	pthread_mutex_init(&srv.mu, NULL);
	for (int i = 0; i < MAXCONN; i++)
		srv.conns[i].fd = -1;
	srv.lfd = socket(AF_INET, SOCK_STREAM, 0);
	setsockopt(srv.lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (srv.lfd < 0 || bind(srv.lfd, (struct sockaddr *)&a, sizeof a) < 0 ||
	    listen(srv.lfd, 16) < 0 ||
	    getsockname(srv.lfd, (struct sockaddr *)&a, &alen) < 0 ||
	    pipe(srv.wake) < 0)
		return -1;
	srv.port = ntohs(a.sin_port);
	return pthread_create(&srv.tid, NULL, server_main, NULL) == 0 ? 0 : -1;
}

static void server_stop(void)
{
	if (write(srv.wake[1], "x", 1) != 1)
		return;
	pthread_join(srv.tid, NULL);
	for (int i = 0; i < MAXCONN; i++)
		if (srv.conns[i].fd >= 0)
			close(srv.conns[i].fd);
	close(srv.lfd);
	free(srv.response);
}

/* Sets the next answer (and clears the last request and the counters). */
static void server_answer(const char *resp, size_t len)
{
	pthread_mutex_lock(&srv.mu);
	free(srv.response);
	srv.response = malloc(len);
	memcpy(srv.response, resp, len);
	srv.response_len = len;
	srv.stall = 0;
	srv.reset = 0;
	srv.cancel_flag = NULL;
	srv.last_len = 0;
	srv.last[0] = '\0';
	srv.accepted = 0;
	srv.requests = 0;
	pthread_mutex_unlock(&srv.mu);
}

static void server_canned(const char *resp)
{
	server_answer(resp, strlen(resp));
}

/* Copies the last request as a C string. */
static void last_request(char *out, size_t outlen)
{
	pthread_mutex_lock(&srv.mu);
	size_t n = srv.last_len < outlen - 1 ? srv.last_len : outlen - 1;
	memcpy(out, srv.last, n);
	out[n] = '\0';
	pthread_mutex_unlock(&srv.mu);
}

static int counter(const int *p)
{
	pthread_mutex_lock(&srv.mu);
	int v = *p;
	pthread_mutex_unlock(&srv.mu);
	return v;
}

static char url_buf[256];

static const char *url(const char *path)
{
	snprintf(url_buf, sizeof url_buf, "http://127.0.0.1:%d%s", srv.port,
		 path);
	return url_buf;
}

static struct http_request request(const char *method, const char *path)
{
	return (struct http_request){.method = method,
				     .url = url(path),
				     .timeout_ms = 5000,
				     .connect_timeout_ms = 2000};
}

static void test_post_exact_bytes(struct http_client *c)
{
	static const struct http_header h[] = {
	    {"Content-Type", "application/json"},
	    {"Accept", "application/json"},
	    {"Authorization", "Bearer s3cr3t"},
	    {"Idempotency-Key", "dl_0123456789abcdef01234567"},
	};
	struct http_request req =
	    request("POST", "/api/v2/accounts/7/jobs/42/run/?a=b");
	struct http_response resp;
	char got[4096], want[4096];

	server_canned("HTTP/1.1 200 OK\r\nContent-Length: 11\r\n"
		      "Content-Type: application/json\r\n\r\n{\"ok\":true}");
	req.headers = h;
	req.nheaders = 4;
	req.body = "{\"cause\":\"x\"}";
	req.body_len = strlen(req.body);
	CHECK_INT(http_client_send(c, &req, &resp), 0);
	CHECK_INT(resp.status, 200);
	CHECK_STR(resp.error, "");
	CHECK_INT(resp.retry_after_ms, -1);
	CHECK_INT(resp.body_len, 11);
	CHECK_STR(resp.body, "{\"ok\":true}");
	CHECK(resp.ms >= 0 && resp.ms < 5000);
	http_response_clear(&resp);

	last_request(got, sizeof got);
	snprintf(want, sizeof want,
		 "POST /api/v2/accounts/7/jobs/42/run/?a=b HTTP/1.1\r\n"
		 "Host: 127.0.0.1:%d\r\n"
		 "User-Agent: triggerd/test\r\n"
		 "Content-Type: application/json\r\n"
		 "Accept: application/json\r\n"
		 "Authorization: Bearer s3cr3t\r\n"
		 "Idempotency-Key: dl_0123456789abcdef01234567\r\n"
		 "Content-Length: 13\r\n"
		 "\r\n"
		 "{\"cause\":\"x\"}",
		 srv.port);
	CHECK_STR(got, want);
	CHECK(strcasestr(got, "Expect") == NULL);
}

static void test_methods_exact_bytes(struct http_client *c)
{
	static const struct http_header ua[] = {
	    {"User-Agent", "custom/1"},
	    {"X-Empty", ""},
	};
	struct http_request req;
	struct http_response resp;
	char got[4096], want[4096];

	server_canned("HTTP/1.1 204 No Content\r\n\r\n");

	/* GET without body: no Content-Length, no Accept, no Content-Type;
	 * a configured User-Agent replaces the client's; an empty value is
	 * sent as an empty header */
	req = request("GET", "/status");
	req.headers = ua;
	req.nheaders = 2;
	CHECK_INT(http_client_send(c, &req, &resp), 0);
	CHECK_INT(resp.status, 204);
	CHECK_INT(resp.body_len, 0);
	CHECK_STR(resp.body, "");
	http_response_clear(&resp);
	last_request(got, sizeof got);
	snprintf(want, sizeof want,
		 "GET /status HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
		 "User-Agent: custom/1\r\nX-Empty:\r\n\r\n",
		 srv.port);
	CHECK_STR(got, want);

	/* PUT without body: an empty body with Content-Length: 0 */
	req = request("PUT", "/p");
	CHECK_INT(http_client_send(c, &req, &resp), 0);
	http_response_clear(&resp);
	last_request(got, sizeof got);
	snprintf(want, sizeof want,
		 "PUT /p HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
		 "User-Agent: triggerd/test\r\nContent-Length: 0\r\n\r\n",
		 srv.port);
	CHECK_STR(got, want);

	/* DELETE with a configured body (with a NUL byte in it), no
	 * Content-Type added */
	req = request("DELETE", "/d");
	req.body = "a\0b";
	req.body_len = 3;
	CHECK_INT(http_client_send(c, &req, &resp), 0);
	http_response_clear(&resp);
	pthread_mutex_lock(&srv.mu);
	snprintf(want, sizeof want,
		 "DELETE /d HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
		 "User-Agent: triggerd/test\r\nContent-Length: 3\r\n\r\n",
		 srv.port);
	size_t wl = strlen(want);
	CHECK_INT(srv.last_len, wl + 3);
	CHECK(srv.last_len == wl + 3 && memcmp(srv.last, want, wl) == 0 &&
	      memcmp(srv.last + wl, "a\0b", 3) == 0);
	pthread_mutex_unlock(&srv.mu);

	/* PATCH and GET-with-body keep their method */
	req = request("PATCH", "/q");
	req.body = "x=1";
	req.body_len = 3;
	CHECK_INT(http_client_send(c, &req, &resp), 0);
	http_response_clear(&resp);
	last_request(got, sizeof got);
	CHECK(strncmp(got, "PATCH /q HTTP/1.1\r\n", 19) == 0);
	CHECK(strstr(got, "\r\nContent-Length: 3\r\n\r\nx=1") != NULL);
	CHECK(strcasestr(got, "Content-Type") == NULL);
	req = request("GET", "/g");
	req.body = "{}";
	req.body_len = 2;
	CHECK_INT(http_client_send(c, &req, &resp), 0);
	http_response_clear(&resp);
	last_request(got, sizeof got);
	CHECK(strncmp(got, "GET /g HTTP/1.1\r\n", 17) == 0);
	CHECK(strstr(got, "\r\nContent-Length: 2\r\n\r\n{}") != NULL);
	/* a long header value (a big token) goes out whole */
	static char longv[30001];
	memset(longv, 'v', sizeof longv - 1);
	struct http_header lh[] = {{"X-Long", longv}};
	req = request("GET", "/long");
	req.headers = lh;
	req.nheaders = 1;
	CHECK_INT(http_client_send(c, &req, &resp), 0);
	CHECK_INT(resp.status, 204);
	http_response_clear(&resp);
	pthread_mutex_lock(&srv.mu);
	CHECK(memmem(srv.last, srv.last_len, longv, sizeof longv - 1) != NULL);
	pthread_mutex_unlock(&srv.mu);
	/* every one of these went over the one connection */
	CHECK_INT(counter(&srv.accepted), 0);
}

/* A body over 1 MiB, where curl would add "Expect: 100-continue". */
static void test_large_body_no_expect(struct http_client *c)
{
	struct http_request req = request("POST", "/large");
	struct http_response resp;
	size_t n = 1536 * 1024;
	char *body = malloc(n);

	memset(body, 'z', n);
	req.body = body;
	req.body_len = n;
	server_canned("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
	CHECK_INT(http_client_send(c, &req, &resp), 0);
	CHECK_INT(resp.status, 200);
	http_response_clear(&resp);
	pthread_mutex_lock(&srv.mu);
	const char *end = memmem(srv.last, srv.last_len, "\r\n\r\n", 4);
	CHECK(end != NULL);
	if (end) {
		size_t head = (size_t)(end - srv.last) + 4;
		CHECK(memmem(srv.last, head, "Expect", 6) == NULL);
		const char *cl = "\r\nContent-Length: 1572864\r\n";
		CHECK(memmem(srv.last, head, cl, strlen(cl)) != NULL);
		CHECK_INT(srv.last_len - head, n);
		CHECK(memcmp(srv.last + head, body, n) == 0);
	}
	pthread_mutex_unlock(&srv.mu);
	free(body);
}

static void test_status_and_capping(struct http_client *c)
{
	struct http_request req = request("POST", "/big");
	struct http_response resp;
	char head[128];
	size_t blen = 10000;

	server_canned(
	    "HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nno such x");
	CHECK_INT(http_client_send(c, &req, &resp), 0);
	CHECK_INT(resp.status, 404);
	CHECK_STR(resp.body, "no such x");
	http_response_clear(&resp);

	int hl =
	    snprintf(head, sizeof head,
		     "HTTP/1.1 500 Oops\r\nContent-Length: %zu\r\n\r\n", blen);
	char *r = malloc((size_t)hl + blen);
	memcpy(r, head, (size_t)hl);
	for (size_t i = 0; i < blen; i++)
		r[hl + i] = (char)('a' + i % 26);
	server_answer(r, (size_t)hl + blen);
	CHECK_INT(http_client_send(c, &req, &resp), 0);
	CHECK_INT(resp.status, 500);
	CHECK_INT(resp.body_len, 4096);
	CHECK(resp.body && memcmp(resp.body, r + hl, 4096) == 0 &&
	      resp.body[4096] == '\0');
	http_response_clear(&resp);
	/* the rest was read: the same connection serves the next request */
	CHECK_INT(http_client_send(c, &req, &resp), 0);
	CHECK_INT(resp.status, 500);
	CHECK_INT(resp.body_len, 4096);
	http_response_clear(&resp);
	CHECK_INT(counter(&srv.accepted), 0);
	CHECK_INT(counter(&srv.requests), 2);
	free(r);
}

static void test_keep_alive(void)
{
	struct http_client *c = http_client_new("triggerd/test");
	struct http_request req = request("POST", "/one");
	struct http_response resp;

	server_canned("HTTP/1.1 202 Accepted\r\nContent-Length: 2\r\n\r\nok");
	CHECK_INT(http_client_send(c, &req, &resp), 0);
	CHECK_INT(resp.status, 202);
	http_response_clear(&resp);
	req = request("POST", "/two");
	CHECK_INT(http_client_send(c, &req, &resp), 0);
	CHECK_INT(resp.status, 202);
	http_response_clear(&resp);
	CHECK_INT(counter(&srv.requests), 2);
	CHECK_INT(counter(&srv.accepted), 1);
	http_client_free(c);
}

static void test_retry_after(struct http_client *c)
{
	struct http_request req = request("POST", "/ra");
	struct http_response resp;
	char r[256], date[64];

	server_canned("HTTP/1.1 503 Busy\r\nRetry-After: 120\r\n"
		      "Content-Length: 0\r\n\r\n");
	CHECK_INT(http_client_send(c, &req, &resp), 0);
	CHECK_INT(resp.status, 503);
	CHECK_INT(resp.retry_after_ms, 120000);
	http_response_clear(&resp);

	time_t t = time(NULL) + 3600;
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S GMT", &tm);
	snprintf(r, sizeof r,
		 "HTTP/1.1 429 Slow down\r\nretry-after:  %s \r\n"
		 "Content-Length: 0\r\n\r\n",
		 date);
	server_canned(r);
	CHECK_INT(http_client_send(c, &req, &resp), 0);
	CHECK_INT(resp.status, 429);
	CHECK(resp.retry_after_ms > 3590000 && resp.retry_after_ms <= 3600000);
	http_response_clear(&resp);

	server_canned("HTTP/1.1 503 Busy\r\nRetry-After: soon\r\n"
		      "Content-Length: 0\r\n\r\n");
	CHECK_INT(http_client_send(c, &req, &resp), 0);
	CHECK_INT(resp.retry_after_ms, -1);
	http_response_clear(&resp);
}

static void test_parse_retry_after(void)
{
	/* 2015-10-21T07:28:00Z */
	const int64_t t = 1445412480000LL;

	CHECK_INT(http_parse_retry_after("120", 0), 120000);
	CHECK_INT(http_parse_retry_after(" 7\r\n", 0), 7000);
	CHECK_INT(http_parse_retry_after("0", 0), 0);
	CHECK_INT(
	    http_parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", t - 5000),
	    5000);
	CHECK_INT(http_parse_retry_after("Wednesday, 21-Oct-15 07:28:00 GMT",
					 t - 2500),
		  2500);
	CHECK_INT(http_parse_retry_after("Wed Oct 21 07:28:00 2015", t - 1000),
		  1000);
	CHECK_INT(
	    http_parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", t + 60000),
	    0);
	/* absurd values are clamped to ten years */
	CHECK_INT(http_parse_retry_after("99999999999999999999999", 0),
		  10LL * 366 * 86400 * 1000);
	CHECK_INT(http_parse_retry_after("", 0), -1);
	CHECK_INT(http_parse_retry_after("   ", 0), -1);
	CHECK_INT(http_parse_retry_after("-5", 0), -1);
	CHECK_INT(http_parse_retry_after("12a", 0), -1);
	CHECK_INT(http_parse_retry_after("1.5", 0), -1);
	CHECK_INT(http_parse_retry_after("soon", 0), -1);
}

static void test_url_host(void)
{
	char h[128];

	CHECK_INT(http_url_host("https://u:secret@ab123.us1.dbt.com:8443/api?"
				"token=secret",
				h, sizeof h),
		  0);
	CHECK_STR(h, "ab123.us1.dbt.com");
	CHECK_INT(http_url_host("not a url", h, sizeof h), -1);
	CHECK_STR(h, "the server");
}

/* A port nobody listens on: bound, never listened to, then closed. */
static int dead_port(void)
{
	struct sockaddr_in a = {.sin_family = AF_INET};
	socklen_t alen = sizeof a;
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	bind(fd, (struct sockaddr *)&a, sizeof a);
	getsockname(fd, (struct sockaddr *)&a, &alen);
	close(fd);
	return ntohs(a.sin_port);
}

static void test_transport_errors(struct http_client *c)
{
	struct http_request req = request("POST", "/x");
	struct http_response resp;
	char u[128], want[128];
	int port = dead_port();

	snprintf(u, sizeof u, "http://127.0.0.1:%d/x", port);
	req.url = u;
	CHECK_INT(http_client_send(c, &req, &resp), -1);
	CHECK_INT(resp.status, 0);
	snprintf(want, sizeof want, "connection refused by 127.0.0.1:%d", port);
	CHECK_STR(resp.error, want);
	CHECK(resp.body == NULL);
	http_response_clear(&resp);

	/* a server that never answers: the whole-request timeout */
	req = request("POST", "/stall");
	req.timeout_ms = 300;
	server_canned("");
	pthread_mutex_lock(&srv.mu);
	srv.stall = 1;
	pthread_mutex_unlock(&srv.mu);
	CHECK_INT(http_client_send(c, &req, &resp), -1);
	CHECK_INT(resp.status, 0);
	CHECK_STR(resp.error, "timed out after 300 ms waiting for 127.0.0.1");
	CHECK(resp.ms >= 290 && resp.ms < 3000);
	CHECK_INT(counter(&srv.requests), 1);
	http_response_clear(&resp);

	/* a connection reset instead of an answer */
	server_canned("");
	pthread_mutex_lock(&srv.mu);
	srv.reset = 1;
	pthread_mutex_unlock(&srv.mu);
	req = request("POST", "/reset");
	CHECK_INT(http_client_send(c, &req, &resp), -1);
	CHECK_INT(resp.status, 0);
	CHECK_STR(resp.error, "connection reset by 127.0.0.1");
	http_response_clear(&resp);
}

/* The cancel flag aborts a transfer that is waiting for an answer; the
 * server raises it when the request has arrived. */
static void test_cancel(struct http_client *c)
{
	struct http_request req = request("POST", "/cancel");
	struct http_response resp;
	int cancel = 0;

	req.timeout_ms = 20000;
	req.cancel = &cancel;
	server_canned("");
	pthread_mutex_lock(&srv.mu);
	srv.stall = 1;
	srv.cancel_flag = &cancel;
	pthread_mutex_unlock(&srv.mu);
	int64_t t0 = util_mono_ms();
	CHECK_INT(http_client_send(c, &req, &resp), -1);
	CHECK_INT(resp.status, 0);
	CHECK_STR(resp.error, "cancelled: shutting down");
	CHECK(util_mono_ms() - t0 < 5000);
	http_response_clear(&resp);
	pthread_mutex_lock(&srv.mu);
	srv.cancel_flag = NULL;
	pthread_mutex_unlock(&srv.mu);
}

int main(void)
{
	/* The tests talk to 127.0.0.1 directly, whatever the environment. */
	unsetenv("http_proxy");
	unsetenv("HTTP_PROXY");
	unsetenv("https_proxy");
	unsetenv("HTTPS_PROXY");
	unsetenv("all_proxy");
	unsetenv("ALL_PROXY");
	CHECK_INT(http_client_global_init(), 0);
	if (server_start() < 0) {
		perror("test server");
		return 1;
	}
	struct http_client *c = http_client_new("triggerd/test");
	CHECK(c != NULL);

	server_canned("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
	test_post_exact_bytes(c);
	test_methods_exact_bytes(c);
	test_status_and_capping(c);
	test_large_body_no_expect(c);
	test_retry_after(c);
	test_keep_alive();
	test_transport_errors(c);
	test_cancel(c);
	test_parse_retry_after();
	test_url_host();
	http_client_free(c);
	http_client_free(NULL);

	server_stop();
	http_client_global_cleanup();
	return check_report();
}
