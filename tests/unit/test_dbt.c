/* Unit tests for dbt.c: URL recognition, cause marking, runs URLs, run
 * answers. */
#include "check.h"

#include <stdlib.h>

#include "dbt.h"

static void test_url(void)
{
	struct dbt_target t;

	CHECK_INT(dbt_url_parse("https://cloud.getdbt.com/api/v2/accounts/12/jobs/34/run/", &t), 1);
	CHECK_STR(t.base, "https://cloud.getdbt.com");
	CHECK_STR(t.account, "12");
	CHECK_STR(t.job, "34");
	CHECK_INT(dbt_url_parse("https://ab123.us1.dbt.com/api/v2/accounts/1/jobs/2/run", &t), 1);
	CHECK_STR(t.base, "https://ab123.us1.dbt.com");
	CHECK_INT(dbt_url_parse("http://127.0.0.1:8765/api/v2/accounts/7/jobs/42/run/?x=1", &t), 1);
	CHECK_STR(t.base, "http://127.0.0.1:8765");
	CHECK_INT(dbt_url_parse("http://h/api/v2/accounts/7/jobs/42/run/x", &t), 0);
	CHECK_INT(dbt_url_parse("http://h/api/v2/accounts//jobs/42/run/", &t), 0);
	CHECK_INT(dbt_url_parse("http://h/api/v2/accounts/a/jobs/42/run/", &t), 0);
	CHECK_INT(dbt_url_parse("http://h/api/v2/accounts/1/jobs/42/runs/", &t), 0);
	CHECK_INT(dbt_url_parse("http://h/hooks/x", &t), 0);
	CHECK_INT(dbt_url_parse("/api/v2/accounts/1/jobs/2/run/", &t), 0);
	CHECK_INT(dbt_url_parse("http:///api/v2/accounts/1/jobs/2/run/", &t), 0);
}

/* Code points of s. */
static size_t cps(const char *s)
{
	size_t n = 0;
	for (; *s; s++)
		n += ((unsigned char)*s & 0xC0) != 0x80;
	return n;
}

static void test_mark(void)
{
	char out[DBT_CAUSE_MAX * 4 + 1], big[2000], m[DBT_MARKER_MAX];
	const char *id = "dl-0123456789abcdef";

	dbt_marker(id, m);
	CHECK_STR(m, " [triggerd dl-0123456789abcdef]");
	CHECK_INT(dbt_mark_cause("hi", 2, id, out, sizeof out), 0);
	CHECK_STR(out, "hi [triggerd dl-0123456789abcdef]");
	memset(big, 'a', 400);
	CHECK_INT(dbt_mark_cause(big, 400, id, out, sizeof out), 0);
	CHECK_INT(cps(out), 255);
	CHECK(strstr(out, m) != NULL && strlen(strstr(out, m)) == strlen(m));
	/* 3-byte characters: cut between sequences, never inside */
	for (int i = 0; i < 300; i++)
		memcpy(big + 3 * i, "\xe2\x82\xac", 3);
	CHECK_INT(dbt_mark_cause(big, 900, id, out, sizeof out), 0);
	CHECK_INT(cps(out), 255);
	size_t pre = strlen(out) - strlen(m);
	CHECK_INT(pre % 3, 0);
	/* 4-byte characters, exactly at the limit */
	for (int i = 0; i < 300; i++)
		memcpy(big + 4 * i, "\xf0\x9f\x98\x80", 4);
	size_t room = 255 - cps(m);
	CHECK_INT(dbt_mark_cause(big, room * 4, id, out, sizeof out), 0);
	CHECK_INT(cps(out), 255);
	CHECK_INT(dbt_mark_cause(big, room * 4 - 4, id, out, sizeof out), 0);
	CHECK_INT(cps(out), 254);
	CHECK_INT(dbt_mark_cause("x", 1, id, out, 5), -1);
}

static void test_body(void)
{
	char *out = NULL;
	size_t len = 0;
	const char *b = "{\"cause\":\"by ana\",\"git_branch\":\"main\"}";

	CHECK_INT(dbt_mark_body(b, strlen(b), "dl-1", &out, &len), 0);
	CHECK_STR(out, "{\"cause\":\"by ana [triggerd dl-1]\",\"git_branch\":\"main\"}");
	CHECK_INT(len, strlen(out));
	free(out);
	CHECK_INT(dbt_mark_body("{\"x\":1}", 7, "dl-1", &out, &len), 1);
	CHECK_INT(dbt_mark_body("[1]", 3, "dl-1", &out, &len), -1);
	CHECK_INT(dbt_mark_body("nope", 4, "dl-1", &out, &len), -1);
}

static void test_urls(void)
{
	struct dbt_target t;
	char u[DBT_URL_MAX];

	dbt_url_parse("https://x.dbt.com/api/v2/accounts/5/jobs/9/run/", &t);
	CHECK_INT(dbt_list_url(&t, 0, 0, u, sizeof u), 0);
	CHECK_STR(u, "https://x.dbt.com/api/v2/accounts/5/runs/?job_definition_id=9"
		     "&order_by=-id&limit=100&offset=0"
		     "&include_related=%5B%22trigger%22%5D");
	CHECK_INT(dbt_list_url(&t, 1, 200, u, sizeof u), 0);
	CHECK_STR(u, "https://x.dbt.com/api/v2/accounts/5/runs/?job_definition_id=9"
		     "&status__in=%5B1%2C2%2C3%5D&order_by=-id&limit=100&offset=200"
		     "&include_related=%5B%22trigger%22%5D");
	CHECK_INT(dbt_run_url(&t, 77, u, sizeof u), 0);
	CHECK_STR(u, "https://x.dbt.com/api/v2/accounts/5/runs/77/");
	CHECK_INT(dbt_cancel_url(&t, 77, u, sizeof u), 0);
	CHECK_STR(u, "https://x.dbt.com/api/v2/accounts/5/runs/77/cancel/");
	CHECK_INT(dbt_run_url(&t, 77, u, 10), -1);
}

static void test_status(void)
{
	CHECK_STR(dbt_status_name(1), "queued");
	CHECK_STR(dbt_status_name(2), "starting");
	CHECK_STR(dbt_status_name(3), "running");
	CHECK_STR(dbt_status_name(10), "success");
	CHECK_STR(dbt_status_name(20), "error");
	CHECK_STR(dbt_status_name(30), "cancelled");
	CHECK_STR(dbt_status_name(DBT_TIMEOUT), "timeout");
	CHECK_STR(dbt_status_name(DBT_LOST), "lost");
	CHECK_STR(dbt_status_name(DBT_UNKNOWN), "unknown");
	CHECK(dbt_status_name(4) == NULL);
	CHECK_INT(dbt_status_parse("error"), 20);
	CHECK_INT(dbt_status_parse("nope"), DBT_NONE);
	CHECK(!dbt_status_final(3));
	CHECK(dbt_status_final(10) && dbt_status_final(DBT_LOST));
}

static void test_parse(void)
{
	struct dbt_run r;
	int n;
	int64_t oldest;
	const char *one =
	    "{\"status\":{\"code\":200},\"data\":{\"id\":42,\"status\":1,"
	    "\"href\":\"https://h/r/42/\",\"finished_at\":null,"
	    "\"status_message\":null,\"created_at\":\"2026-11-28 12:00:00.500000+00:00\","
	    "\"trigger\":{\"cause\":\"c [triggerd dl-1]\"}}}";
	const char *list =
	    "{\"data\":[{\"id\":3,\"status\":3,\"trigger\":{\"cause\":\"other\"},"
	    "\"created_at\":\"2026-11-28T12:00:02Z\"},"
	    "{\"id\":2,\"status\":10,\"trigger\":{\"cause\":\"c [triggerd dl-1]\"},"
	    "\"created_at\":\"2026-11-28 12:00:01+00:00\",\"finished_at\":\"x\","
	    "\"status_message\":\"ok\"}]}";

	CHECK_INT(dbt_parse_run(one, strlen(one), &r), 0);
	CHECK_INT(r.id, 42);
	CHECK_INT(r.status, 1);
	CHECK_STR(r.href, "https://h/r/42/");
	CHECK_STR(r.finished_at, "");
	CHECK_STR(r.cause, "c [triggerd dl-1]");
	CHECK_INT(r.created_at_ms, 1795867200500LL);
	CHECK_INT(dbt_parse_run("{\"data\":{}}", 11, &r), -1);
	CHECK_INT(dbt_parse_run("<html>", 6, &r), -1);
	CHECK_INT(dbt_find_run(list, strlen(list), " [triggerd dl-1]", &r, &n, &oldest), 1);
	CHECK_INT(r.id, 2);
	CHECK_STR(r.status_message, "ok");
	CHECK_INT(dbt_find_run(list, strlen(list), " [triggerd dl-9]", &r, &n, &oldest), 0);
	CHECK_INT(n, 2);
	CHECK_INT(oldest, 1795867201000LL);
	CHECK_INT(dbt_find_run(list, strlen(list), NULL, &r, &n, &oldest), 1);
	CHECK_INT(r.id, 3);
	CHECK_INT(dbt_find_run("{\"data\":[]}", 11, NULL, &r, &n, &oldest), 0);
	CHECK_INT(dbt_find_run("{}", 2, NULL, &r, &n, &oldest), -1);
	CHECK_INT(dbt_parse_time("2026-11-28 13:00:00+01:00"), 1795867200000LL);
	CHECK_INT(dbt_parse_time("garbage"), -1);
}

int main(void)
{
	test_url();
	test_mark();
	test_body();
	test_urls();
	test_status();
	test_parse();
	return check_report();
}
