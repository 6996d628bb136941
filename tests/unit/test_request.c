/*
 * test_request — rendering a trigger's request (what is sent and what
 * --dry-run shows), header injection refused, secrets redacted.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"
#include "check.h"
#include "config.h"
#include "event.h"
#include "request.h"

static const char yaml[] =
	"server: {auth: {tokens: [\"${{secrets.inbound}}\"]}}\n"
	"variables: {acct: \"7\"}\n"
	"secrets: {inbound: {env: TR_IN}, dbt: {env: TR_DBT}, short: {env: TR_SHORT}}\n"
	"triggers:\n"
	"  - name: run\n"
	"    method: POST\n"
	"    url: \"https://h.example/api/${{variables.acct}}/${{erathos.table_name}}/\"\n"
	"    header: {Authorization: \"Bearer ${{secrets.dbt}}\", X-By: \"${{erathos.triggered_by}}\"}\n"
	"    body: {cause: \"by ${{erathos.triggered_by}}\", n: 3, ok: true}\n"
	"    rules: [{variable_name: STATUS, operation: EQUAL, value: FINISHED}]\n"
	"    jobs: [\"*\"]\n"
	"  - name: raw\n"
	"    method: PUT\n"
	"    url: \"https://h.example/raw\"\n"
	"    header: {Content-Type: text/plain}\n"
	"    body: \"table ${{erathos.table_name}}\"\n"
	"    rules: [{variable_name: STATUS, operation: EQUAL, value: FINISHED}]\n"
	"    jobs: [\"*\"]\n";

static struct config *load(void)
{
	char path[] = "/tmp/test_request-XXXXXX";
	int fd = mkstemp(path);
	struct config_diag diag = {0};

	if (fd < 0 || write(fd, yaml, sizeof yaml - 1) != (ssize_t)(sizeof yaml - 1))
		return NULL;
	close(fd);
	setenv("TR_IN", "inbound-token-9d2e", 1);
	setenv("TR_SHORT", "y", 1);
	setenv("TR_DBT", "dbt-s3cret", 1);
	struct config *cfg = config_load(path, &diag);
	for (size_t i = 0; i < diag.nlines; i++)
		fprintf(stderr, "%s\n", diag.lines[i]);
	config_diag_clear(&diag);
	unlink(path);
	return cfg;
}

static struct event *ev_of(const char *json)
{
	char err[128];
	return event_parse(json, strlen(json), err, sizeof err);
}

static const char *header(const struct request *r, const char *name)
{
	for (size_t i = 0; i < r->nheaders; i++)
		if (strcmp(r->headers[i].name, name) == 0)
			return r->headers[i].value;
	return NULL;
}

static void test_render(struct config *cfg)
{
	struct event *ev = ev_of("{\"job_id\":\"x\",\"table_name\":\"a/b\","
				 "\"triggered_by\":\"Ana \\\"A\\\"\"}");
	struct request r;
	char err[256];

	CHECK(request_render(cfg, &cfg->triggers[0], ev, NULL, 0, "dl_1", 0, &r, err,
			     sizeof err) == 0);
	CHECK_STR(r.method, "POST");
	CHECK_STR(r.url, "https://h.example/api/7/a%2Fb/");
	CHECK_STR(header(&r, "Authorization"), "Bearer dbt-s3cret");
	CHECK_STR(header(&r, "X-By"), "Ana \"A\"");
	CHECK_STR(header(&r, "Content-Type"), "application/json");
	CHECK_STR(header(&r, "Idempotency-Key"), "dl_1");
	CHECK(header(&r, "User-Agent") != NULL);
	CHECK_STR(r.body, "{\"cause\":\"by Ana \\\"A\\\"\",\"n\":3,\"ok\":true}");
	request_clear(&r);

	/* masked, as --dry-run shows it */
	CHECK(request_render(cfg, &cfg->triggers[0], ev, NULL, 0, NULL, 1, &r, err,
			     sizeof err) == 0);
	CHECK_STR(header(&r, "Authorization"), "Bearer <secret:dbt>");
	CHECK(header(&r, "Idempotency-Key") == NULL);
	request_clear(&r);

	/* a string body is sent as it is, no Content-Type added */
	CHECK(request_render(cfg, &cfg->triggers[1], ev, NULL, 0, "dl_2", 0, &r, err,
			     sizeof err) == 0);
	CHECK_STR(r.body, "table a/b");
	CHECK_STR(header(&r, "Content-Type"), "text/plain");
	request_clear(&r);
	event_free(ev);
}

static void test_header_injection(struct config *cfg)
{
	struct event *ev = ev_of("{\"job_id\":\"x\",\"triggered_by\":"
				 "\"a\\r\\nX-Evil: 1\"}");
	struct request r;
	char err[256] = "";

	CHECK(request_render(cfg, &cfg->triggers[0], ev, NULL, 0, "dl_1", 0, &r, err,
			     sizeof err) == -1);
	CHECK(strstr(err, "X-By") != NULL);
	CHECK(r.url == NULL && r.headers == NULL);
	event_free(ev);
}

static void test_redact(struct config *cfg)
{
	static const char in[] = "bad token dbt-s3cret, also inbound-token-9d2e!";
	struct buf b;

	buf_init(&b, 1024);
	CHECK(request_redact(cfg, in, sizeof in - 1, &b) == 0);
	CHECK_STR(buf_str(&b),
		  "bad token <secret:dbt>, also <secret:inbound>!");
	buf_reset(&b);
	CHECK(request_redact(cfg, "dbt-s3cre", 9, &b) == 0);
	CHECK_STR(buf_str(&b), "dbt-s3cre");
	/* A secret shorter than CONFIG_MIN_REDACT ("y") is not masked: a
	 * match that short is an accident, and masking it would tell. */
	buf_reset(&b);
	static const char by[] = "connection refused by 127.0.0.1 (dbt-s3cret)";
	CHECK(request_redact(cfg, by, sizeof by - 1, &b) == 0);
	CHECK_STR(buf_str(&b), "connection refused by 127.0.0.1 (<secret:dbt>)");
	buf_free(&b);
}

int main(void)
{
	struct config *cfg = load();

	CHECK(cfg != NULL);
	if (cfg) {
		test_render(cfg);
		test_header_injection(cfg);
		test_redact(cfg);
		config_release(cfg);
	}
	return check_report();
}
