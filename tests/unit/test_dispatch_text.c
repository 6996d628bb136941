/*
 * Unit tests for dispatch_text: the error sentences a person reads in the
 * log and in a delivery's last_error.
 */
#include <string.h>

#include "../../src/dispatch/dispatch_int.h"
#include "check.h"

static const char *err(int status, const char *body)
{
	static char out[512];

	dispatch_http_error(status, "ab123.us1.dbt.com", body,
			    body ? strlen(body) : 0, out, sizeof out);
	return out;
}

static void test_server_explanations(void)
{
	/* dbt Cloud's error envelope */
	CHECK_STR(err(401, "{\"status\":{\"code\":401,\"is_success\":false,"
			   "\"user_message\":\"Invalid token.\","
			   "\"developer_message\":\"\"},\"data\":null}"),
		  "HTTP 401 from ab123.us1.dbt.com: Invalid token.");
	/* the usual shapes of other APIs */
	CHECK_STR(err(404, "{\"message\":\"Job not found\"}"),
		  "HTTP 404 from ab123.us1.dbt.com: Job not found");
	CHECK_STR(err(400, "{\"error\":\"bad cause\"}"),
		  "HTTP 400 from ab123.us1.dbt.com: bad cause");
	CHECK_STR(err(422, "{\"error\":{\"code\":7,\"message\":\"nested\"}}"),
		  "HTTP 422 from ab123.us1.dbt.com: nested");
	CHECK_STR(err(403, "{\"detail\":\"Not allowed.\"}"),
		  "HTTP 403 from ab123.us1.dbt.com: Not allowed.");
	/* only the first line of a message */
	CHECK_STR(err(500, "{\"message\":\"first\\nsecond\"}"),
		  "HTTP 500 from ab123.us1.dbt.com: first");
}

static void test_plain_bodies(void)
{
	CHECK_STR(err(503, NULL), "HTTP 503 from ab123.us1.dbt.com");
	CHECK_STR(err(503, ""), "HTTP 503 from ab123.us1.dbt.com");
	CHECK_STR(err(503, "  \r\n"), "HTTP 503 from ab123.us1.dbt.com");
	CHECK_STR(err(502, "\r\n  Bad gateway \r\n<hr>nginx"),
		  "HTTP 502 from ab123.us1.dbt.com: Bad gateway");
	/* control characters become spaces; bytes past ASCII in a body that
	 * is not JSON become '?', so the sentence stays valid UTF-8 */
	CHECK_STR(err(500, "a\tb\001c \xff\xfe"),
		  "HTTP 500 from ab123.us1.dbt.com: a b c ??");
	/* JSON without a known key: its first line as it is */
	CHECK_STR(err(500, "{\"oops\":1}"),
		  "HTTP 500 from ab123.us1.dbt.com: {\"oops\":1}");
	CHECK_STR(err(500, "[1,2]"), "HTTP 500 from ab123.us1.dbt.com: [1,2]");
	/* redirects are not followed, and say so */
	CHECK_STR(
	    err(301, "<html>moved</html>"),
	    "HTTP 301 from ab123.us1.dbt.com: redirects are not followed");
	CHECK_STR(
	    err(308, NULL),
	    "HTTP 308 from ab123.us1.dbt.com: redirects are not followed");
}

/* A long message is cut on a character boundary, never inside one. */
static void test_cut_on_utf8_boundary(void)
{
	char body[1024], want[512];
	size_t n = 0;

	n += (size_t)snprintf(body, sizeof body, "{\"message\":\"");
	for (int i = 0; i < 300; i++) {
		body[n++] = '\xc3'; /* é */
		body[n++] = '\xa9';
	}
	snprintf(body + n, sizeof body - n, "\"}");
	n = (size_t)snprintf(want, sizeof want,
			     "HTTP 500 from ab123.us1.dbt.com: ");
	for (int i = 0; i < 99; i++) { /* 198 of at most 199 bytes */
		want[n++] = '\xc3';
		want[n++] = '\xa9';
	}
	want[n] = '\0';
	CHECK_STR(err(500, body), want);

	/* and a short buffer is cut, but always terminated */
	char small[24];
	dispatch_http_error(401, "ab123.us1.dbt.com", "x", 1, small,
			    sizeof small);
	CHECK_STR(small, "HTTP 401 from ab123.us1");
}

static void test_durations(void)
{
	char b[32];

	dispatch_fmt_duration(72LL * 3600000, b, sizeof b);
	CHECK_STR(b, "72h");
	dispatch_fmt_duration(86400000, b, sizeof b);
	CHECK_STR(b, "24h");
	dispatch_fmt_duration(30 * 60000, b, sizeof b);
	CHECK_STR(b, "30m");
	dispatch_fmt_duration(90000, b, sizeof b);
	CHECK_STR(b, "90s");
	dispatch_fmt_duration(1500, b, sizeof b);
	CHECK_STR(b, "1500ms");
	dispatch_fmt_duration(0, b, sizeof b);
	CHECK_STR(b, "0ms");
}

int main(void)
{
	test_server_explanations();
	test_plain_bodies();
	test_cut_on_utf8_boundary();
	test_durations();
	return check_report();
}
