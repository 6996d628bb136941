/*
 * Unit tests for the config loader: defaults, every value format, secrets
 * from each source, every kind of error and warning with its exact
 * FILE:LINE:COL, the Erathos quickstart pasted as flow-style JSON, trigger
 * names, the job index, and the reference-counted slot.
 *
 * Fixtures are in data/config_*.yaml; small cases are written to a
 * temporary directory (the messages then start with its path).
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "buf.h"
#include "check.h"
#include "config.h"
#include "strmap.h"
#include "tmpl.h"

static struct config_diag diag;
static char tmpdir[64];
static char tmppath[128];

/* The minimal valid trigger appended to small cases. */
#define TRIGGER                                                                \
	"triggers:\n"                                                          \
	"  - name: t\n"                                                        \
	"    method: POST\n"                                                   \
	"    url: https://example.com/hook\n"                                  \
	"    rules: [{variable_name: STATUS, operation: EQUAL, value: "        \
	"FINISHED}]\n"                                                         \
	"    jobs: [\"*\"]\n"

static void dump_diag(void)
{
	static int dumps;

	if (dumps++ > 10) /* enough to see what went wrong */
		return;
	for (size_t i = 0; i < diag.nlines; i++)
		fprintf(stderr, "    | %s\n", diag.lines[i]);
}

static struct config *load(const char *path)
{
	config_diag_clear(&diag);
	return config_load(path, &diag);
}

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	CHECK(f != NULL);
	if (!f)
		return;
	fputs(text, f);
	fclose(f);
}

/* Loads text from tmpdir/c.yaml. */
static struct config *load_text(const char *fmt, ...)
{
	char text[4096];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof text, fmt, ap);
	va_end(ap);
	write_file(tmppath, text);
	return load(tmppath);
}

/* 1 if diag has exactly this line; prints the diagnostics if not. */
static int has_line(const char *line)
{
	for (size_t i = 0; i < diag.nlines; i++)
		if (strcmp(diag.lines[i], line) == 0)
			return 1;
	fprintf(stderr, "missing diagnostic: %s\n", line);
	dump_diag();
	return 0;
}

/* has_line for the temporary file: rest is "LINE:COL: ...". */
static int tmp_has(const char *rest)
{
	char line[1024];

	snprintf(line, sizeof line, "%s:%s", tmppath, rest);
	return has_line(line);
}

static int diag_mentions(const char *s)
{
	for (size_t i = 0; i < diag.nlines; i++)
		if (strstr(diag.lines[i], s))
			return 1;
	return 0;
}

static void test_defaults(void)
{
	unsetenv("STATE_DIRECTORY");
	struct config *c = load("data/config_minimal.yaml");
	CHECK(c != NULL);
	if (!c)
		return dump_diag();
	CHECK_STR(c->path, "data/config_minimal.yaml");
	CHECK_STR(c->listen_host, "0.0.0.0");
	CHECK_INT(c->listen_port, 8080);
	CHECK_INT(c->max_body, 65536);
	CHECK_INT(c->nauth_tokens, 0);
	CHECK_INT(c->nadmin_tokens, 0);
	CHECK_STR(c->store_path, "./triggerd.db");
	CHECK_INT(c->workers, 4);
	CHECK_INT(c->timeout_ms, 30000);
	CHECK_INT(c->connect_timeout_ms, 10000);
	CHECK_INT(c->max_in_flight_per_trigger, 1);
	CHECK_INT(c->max_attempts, 10);
	CHECK_INT(c->initial_backoff_ms, 5000);
	CHECK_INT(c->max_backoff_ms, 30 * 60 * 1000);
	CHECK_INT(c->max_age_ms, 72LL * 3600 * 1000);
	CHECK_INT(c->rate_limited_backoff_ms, 5 * 60 * 1000);
	CHECK_STR(tmpl_source(c->dedup_key),
		  "${{erathos.execution_id}}:${{erathos.job_id}}:${{erathos."
		  "table_name}}");
	CHECK_INT(c->dedup_window_ms, 24LL * 3600 * 1000);
	CHECK_INT(c->nvars, 0);
	CHECK_INT(c->nsecrets, 0);
	CHECK_INT(c->ntriggers, 1);
	CHECK_INT(c->refs, 1);
	const struct config_trigger *t = &c->triggers[0];
	CHECK_STR(t->name, "only");
	CHECK(t->description == NULL);
	CHECK_INT(t->active, 1);
	CHECK_STR(t->method, "GET");
	CHECK_INT(t->nheaders, 0);
	CHECK_INT(t->has_content_type, 0);
	CHECK(t->body == NULL);
	CHECK_INT(t->nrules, 1);
	CHECK_INT(t->njobs, 1);
	/* The one warning: nobody needs a token to post events. */
	CHECK_INT(diag.nerrors, 0);
	CHECK_INT(diag.nwarnings, 1);
	CHECK(has_line(
	    "data/config_minimal.yaml:1:1: warning: server.auth.tokens is "
	    "empty: anyone who can reach the listener can post events"));
	config_release(c);

	/* systemd's StateDirectory=: the first of several is ours. */
	setenv("STATE_DIRECTORY", "/var/lib/triggerd:/var/lib/other", 1);
	c = load("data/config_minimal.yaml");
	CHECK(c && strcmp(c->store_path, "/var/lib/triggerd/triggerd.db") == 0);
	config_release(c);
	setenv("STATE_DIRECTORY", "/srv/state", 1);
	c = load("data/config_minimal.yaml");
	CHECK(c && strcmp(c->store_path, "/srv/state/triggerd.db") == 0);
	config_release(c);
	/* An explicit store.path wins over STATE_DIRECTORY. */
	c = load_text("store: {path: /data/t.db}\n" TRIGGER);
	CHECK(c && strcmp(c->store_path, "/data/t.db") == 0);
	config_release(c);
	unsetenv("STATE_DIRECTORY");
}

static void test_full(void)
{
	setenv("TEST_CONFIG_INBOUND", "in-token-5a1c0e9f", 1);
	setenv("TEST_CONFIG_DBT_TOKEN", "dbt-token", 1);
	struct config *c = load("data/config_full.yaml");
	CHECK(c != NULL);
	if (!c)
		return dump_diag();
	CHECK_INT(diag.nerrors, 0);
	CHECK_INT(diag.nwarnings, 0);
	CHECK_STR(c->listen_host, "::1");
	CHECK_INT(c->listen_port, 9090);
	CHECK_INT(c->max_body, 1 << 20);
	CHECK_INT(c->nauth_tokens, 2);
	CHECK(c->nauth_tokens == 2 &&
	      strcmp(c->auth_tokens[0], "in-token-5a1c0e9f") == 0);
	CHECK(c->nauth_tokens == 2 &&
	      strcmp(c->auth_tokens[1], "old-in-token-5a1c0e9f") == 0);
	CHECK(c->nadmin_tokens == 1 &&
	      strcmp(c->admin_tokens[0], "Admin-7c3e9b1d0f-us1") == 0);
	CHECK_STR(c->store_path, "/var/lib/triggerd/t.db");
	CHECK_INT(c->workers, 8);
	CHECK_INT(c->timeout_ms, 45000);
	CHECK_INT(c->connect_timeout_ms, 500);
	CHECK_INT(c->max_in_flight_per_trigger, 2);
	CHECK_INT(c->max_attempts, 3);
	CHECK_INT(c->initial_backoff_ms, 1000);
	CHECK_INT(c->max_backoff_ms, 3600000);
	CHECK_INT(c->max_age_ms, 86400000);
	CHECK_INT(c->rate_limited_backoff_ms, 90000);
	CHECK_STR(tmpl_source(c->dedup_key),
		  "${{ erathos.execution_id }}-${{variables.region}}");
	CHECK_INT(c->dedup_window_ms, 2 * 3600000);
	/* variables in file order; numbers and booleans as their text */
	CHECK_INT(c->nvars, 4);
	if (c->nvars == 4) {
		CHECK_STR(c->var_names[0], "region");
		CHECK_STR(c->var_values[0], "us1");
		CHECK_STR(c->var_values[1], "70403103912345");
		CHECK_STR(c->var_values[2], "true");
		CHECK_STR(c->var_values[3], "1.50");
	}
	CHECK_INT(c->nsecrets, 3);
	const struct config_trigger *t = config_trigger_by_name(c, "dbt-daily");
	CHECK(t != NULL);
	if (!t)
		goto out;
	CHECK_STR(t->description, "Trigger DBT job run on Cloud");
	CHECK_STR(t->method, "PUT");
	CHECK_INT(t->active, 0);
	CHECK_INT(t->nheaders, 3);
	CHECK_INT(t->has_content_type, 1);
	CHECK_STR(t->headers[0].name, "content-type");
	CHECK_STR(t->headers[2].name, "X-Count");
	CHECK_STR(tmpl_source(t->headers[2].value), "12");
	CHECK_INT(t->nrules, 4);
	if (t->nrules == 4) {
		CHECK_STR(t->rules[0].field, "status");
		CHECK_INT(t->rules[0].type, RULES_STRING);
		CHECK_INT(t->rules[0].op, RULES_EQUAL);
		CHECK_STR(t->rules[0].values[0], "FINISHED");
		CHECK_STR(t->rules[1].field,
			  "rows"); /* from erathos_variable */
		CHECK_INT(t->rules[1].op, RULES_GREATER_THAN);
		CHECK_STR(t->rules[1].values[0], "0"); /* a YAML integer */
		CHECK_INT(t->rules[2].op, RULES_IN);
		CHECK_INT(t->rules[2].nvalues, 2);
		CHECK_STR(t->rules[2].values[1], "prod");
		CHECK_INT(t->rules[3].type, RULES_BOOLEAN);
		CHECK_STR(t->rules[3].values[0], "false"); /* a YAML boolean */
	}
	CHECK_INT(t->njobs, 2);
	CHECK_STR(t->jobs[0],
		  "0b9d5c55-6c2e-4d0a-9b6f-3f8e2a1c7d10"); /* lower-cased */

	/* Templates render with masked or real secrets. */
	struct tmpl_env env;
	struct buf b;
	buf_init(&b, 4096);
	config_env(c, NULL, 1, &env);
	CHECK(tmpl_render(t->headers[1].value, &env, TMPL_ENC_RAW, &b, NULL) ==
	      0);
	CHECK_STR(buf_str(&b), "Bearer <secret:dbt_token>");
	buf_reset(&b);
	config_env(c, NULL, 0, &env);
	CHECK(tmpl_render(t->headers[1].value, &env, TMPL_ENC_RAW, &b, NULL) ==
	      0);
	CHECK_STR(buf_str(&b), "Bearer dbt-token");
	buf_reset(&b);
	CHECK(tmpl_render(t->url, &env, TMPL_ENC_URL, &b, NULL) == 0);
	CHECK_STR(buf_str(&b), "https://ab123.us1.dbt.com/api/v2/accounts/"
			       "70403103912345/jobs/42/run/");
	buf_reset(&b);
	/* YAML types become JSON types; quoted scalars stay strings. */
	CHECK_INT(t->body_is_json, 1);
	CHECK(tmpl_node_render(t->body, &env, &b, NULL) == 0);
	CHECK_STR(
	    buf_str(&b),
	    "{\"cause\":\"by \",\"steps\":[\"dbt run\",42],\"n\":-7,"
	    "\"hex\":255,\"r\":2.5,\"on\":true,\"off\":false,\"none\":null,"
	    "\"tilde\":null,\"quoted\":\"42\",\"qbool\":\"true\",\"empty\":{},"
	    "\"list\":[]}");
	buf_free(&b);

	/* The second trigger: name derived, string body, lower-case method. */
	t = config_trigger_by_name(c, "notify-a-plain-url");
	CHECK(t != NULL);
	if (t) {
		CHECK_STR(t->method, "POST");
		CHECK_INT(t->body_is_json, 0);
		CHECK(t->body && t->body->kind == TMPL_NODE_STRING);
		CHECK_STR(tmpl_source(t->body->str),
			  "job ${{erathos.job_id}} done\n");
		CHECK_INT(t->has_content_type, 0);
	}
out:
	config_release(c);
}

static void test_durations(void)
{
	static const struct {
		const char *text;
		long long ms;
	} good[] = {
	    {"500ms", 500},	{"30s", 30000},	    {"5m", 300000},
	    {"2h", 7200000},	{"1d", 86400000},   {"45", 45000},
	    {"1h30m", 5400000}, {"\"10s\"", 10000}, {"1s500ms", 1500},
	};
	static const struct {
		const char *text, *msg;
	} bad[] = {
	    {"30 s",
	     "2:12: error: invalid duration \"30 s\" for dispatch.timeout: use "
	     "e.g. 500ms, 30s, 5m, 2h, 1d, or a number of seconds"},
	    {"5x", "2:12: error: invalid duration \"5x\" for dispatch.timeout: "
		   "use e.g. 500ms, 30s, 5m, 2h, 1d, or a number of seconds"},
	    {"1.5h",
	     "2:12: error: invalid duration \"1.5h\" for dispatch.timeout: use "
	     "e.g. 500ms, 30s, 5m, 2h, 1d, or a number of seconds"},
	    {"s", "2:12: error: invalid duration \"s\" for dispatch.timeout: "
		  "use e.g. 500ms, 30s, 5m, 2h, 1d, or a number of seconds"},
	    {"-5s",
	     "2:12: error: invalid duration \"-5s\" for dispatch.timeout: use "
	     "e.g. 500ms, 30s, 5m, 2h, 1d, or a number of seconds"},
	    {"99999999999999999999s",
	     "2:12: error: invalid duration \"99999999999999999999s\" for "
	     "dispatch.timeout: use e.g. 500ms, 30s, 5m, 2h, 1d, or a number "
	     "of seconds"},
	    {"0", "2:12: error: dispatch.timeout must be positive"},
	    {"0ms", "2:12: error: dispatch.timeout must be positive"},
	    {"400d", "2:12: error: dispatch.timeout must be at most 366d"},
	    {"\"\"", "2:12: error: invalid duration \"\" for dispatch.timeout: "
		     "use e.g. 500ms, 30s, 5m, 2h, 1d, or a number of seconds"},
	    {"", "2:11: error: dispatch.timeout is missing (empty)"},
	    {"[30s]", "2:12: error: dispatch.timeout must be a duration (e.g. "
		      "30s), not a list"},
	};

	for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
		struct config *c = load_text(
		    "dispatch:\n  timeout: %s\n" TRIGGER, good[i].text);
		CHECK(c != NULL);
		if (c)
			CHECK_INT(c->timeout_ms, good[i].ms);
		config_release(c);
	}
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		struct config *c = load_text(
		    "dispatch:\n  timeout: %s\n" TRIGGER, bad[i].text);
		CHECK(c == NULL);
		CHECK(tmp_has(bad[i].msg));
		CHECK_INT(diag.nerrors, 1);
		config_release(c);
	}
}

static void test_sizes(void)
{
	static const struct {
		const char *text;
		long long bytes;
	} good[] = {
	    {"64KiB", 65536}, {"1MiB", 1048576},   {"2048", 2048},
	    {"1KB", 1000},    {"10B", 10},	   {"\"64 KiB\"", 65536},
	    {"2mb", 2000000}, {"64MiB", 64 << 20},
	};
	static const struct {
		const char *text, *msg;
	} bad[] = {
	    {"64KiBs",
	     "2:13: error: invalid size \"64KiBs\" for server.max_body: use "
	     "e.g. 64KiB, 1MiB or a number of bytes"},
	    {"1.5MiB",
	     "2:13: error: invalid size \"1.5MiB\" for server.max_body: use "
	     "e.g. 64KiB, 1MiB or a number of bytes"},
	    {"KiB", "2:13: error: invalid size \"KiB\" for server.max_body: "
		    "use e.g. 64KiB, 1MiB or a number of bytes"},
	    {"-1", "2:13: error: invalid size \"-1\" for server.max_body: use "
		   "e.g. 64KiB, 1MiB or a number of bytes"},
	    {"0", "2:13: error: server.max_body must be from 1 byte to 64MiB"},
	    {"1GiB",
	     "2:13: error: server.max_body must be from 1 byte to 64MiB"},
	    {"{a: 1}",
	     "2:13: error: server.max_body must be a string, not a mapping"},
	};

	for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
		struct config *c = load_text(
		    "server:\n  max_body: %s\n" TRIGGER, good[i].text);
		CHECK(c != NULL);
		if (c)
			CHECK_INT(c->max_body, good[i].bytes);
		config_release(c);
	}
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		struct config *c =
		    load_text("server:\n  max_body: %s\n" TRIGGER, bad[i].text);
		CHECK(c == NULL);
		CHECK(tmp_has(bad[i].msg));
		config_release(c);
	}
}

static void test_listen_and_ranges(void)
{
	static const struct {
		const char *text, *host;
		int port;
	} good[] = {
	    {"127.0.0.1:8080", "127.0.0.1", 8080},
	    {"\"[::]:443\"", "::", 443},
	    {"localhost:1", "localhost", 1},
	};
	static const struct {
		const char *text, *msg;
	} bad[] = {
	    {"8080", "2:11: error: server.listen \"8080\": expected "
		     "\"host:port\", e.g. \"0.0.0.0:8080\""},
	    {"\":8080\"", "2:11: error: server.listen \":8080\": \"\" is not a "
			  "valid address to listen on"},
	    {"h:0", "2:11: error: server.listen \"h:0\": the port must be a "
		    "number from 1 to 65535"},
	    {"h:65536", "2:11: error: server.listen \"h:65536\": the port must "
			"be a number from 1 to 65535"},
	    {"\"::1:80\"", "2:11: error: server.listen \"::1:80\": an IPv6 "
			   "address must be in brackets, e.g. \"[::1]:8080\""},
	    {"\"[zz]:80\"", "2:11: error: server.listen \"[zz]:80\": \"zz\" is "
			    "not a valid address to listen on"},
	    {"\"[::1]\"", "2:11: error: server.listen \"[::1]\": expected "
			  "\"[address]:port\""},
	};

	for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
		struct config *c =
		    load_text("server:\n  listen: %s\n" TRIGGER, good[i].text);
		CHECK(c && strcmp(c->listen_host, good[i].host) == 0);
		CHECK(c && c->listen_port == good[i].port);
		config_release(c);
	}
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		struct config *c =
		    load_text("server:\n  listen: %s\n" TRIGGER, bad[i].text);
		CHECK(c == NULL);
		CHECK(tmp_has(bad[i].msg));
		config_release(c);
	}

	struct config *c = load_text(
	    "dispatch:\n  workers: 257\n  max_in_flight_per_trigger: x\n"
	    "  retry: {max_attempts: 0}\n" TRIGGER);
	CHECK(c == NULL);
	CHECK(tmp_has("2:12: error: dispatch.workers must be an integer from 1 "
		      "to 256, not \"257\""));
	CHECK(tmp_has("3:30: error: dispatch.max_in_flight_per_trigger must be "
		      "an integer from 1 to 256, not \"x\""));
	CHECK(tmp_has("4:25: error: dispatch.retry.max_attempts must be an "
		      "integer from 1 to 1000, not \"0\""));
	CHECK_INT(diag.nerrors, 3);
	config_release(c);
	c = load_text("dispatch: {workers: 256, retry: {initial_backoff: 1m, "
		      "max_backoff: 1m}}\n" TRIGGER);
	CHECK(c && c->workers == 256 && c->max_backoff_ms == 60000);
	config_release(c);
}

static void test_urls(void)
{
	static const char *const good[] = {
	    "https://user:${{secrets.s}}@h.example:8443/x",
	    "http://[::1]:8765/x",
	    "https://h.example?q=${{erathos.job_id}}",
	    "HTTPS://H.EXAMPLE",
	    "https://${{variables.host}}/a/${{secrets.s}}",
	};
	static const struct {
		const char *url, *msg;
	} bad[] = {
	    {"https://h.example:/x",
	     "invalid url: invalid port in the URL (1 to 65535)"},
	    {"https://h.example:123456/x",
	     "invalid url: invalid port in the URL (1 to 65535)"},
	    {"https://h!x/",
	     "invalid url: invalid character '!' in the URL's host"},
	    {"https://[::1/x",
	     "invalid url: invalid IPv6 address in the URL's host"},
	    {"mailto:a@h.example",
	     "invalid url: the URL must start with http:// or https://"},
	    {"https://${{variables.spaced}}/",
	     "invalid url: the URL contains white space or a control character "
	     "(percent-encode it)"},
	    {"https://u@/x", "invalid url: the URL has no host"},
	    {"https://h.example:${{erathos.port}}/",
	     "event data (erathos.*) cannot be in the url's scheme, host or "
	     "port: put it in the path or the query"},
	};
	char line[512];

	setenv("TEST_CONFIG_SECRET", "from-env-3b8d1f0a", 1);
	for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
		struct config *c =
		    load_text("variables: {host: h.example, spaced: \"a b\"}\n"
			      "secrets: {s: {env: TEST_CONFIG_SECRET}}\n"
			      "triggers: [{name: t, method: GET, url: \"%s\", "
			      "jobs: [\"*\"]}]\n",
			      good[i]);
		CHECK(c != NULL);
		if (!c)
			dump_diag();
		config_release(c);
	}
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		struct config *c =
		    load_text("variables: {host: h.example, spaced: \"a b\"}\n"
			      "triggers: [{name: t, method: GET, url: \"%s\", "
			      "jobs: [\"*\"]}]\n",
			      bad[i].url);
		CHECK(c == NULL);
		snprintf(line, sizeof line, "2:40: error: %s", bad[i].msg);
		CHECK(tmp_has(line));
		config_release(c);
	}

	/* An empty trigger list is allowed, with a warning. */
	struct config *c = load_text("triggers: []\n");
	CHECK(c != NULL);
	CHECK(c && c->ntriggers == 0 && c->nany_job == 0);
	CHECK(tmp_has(
	    "1:11: warning: no triggers: every event will be unmatched"));
	config_release(c);
	/* diag may be NULL when only the verdict matters. */
	c = config_load(tmppath, NULL);
	CHECK(c != NULL);
	config_release(c);
}

static void test_secrets(void)
{
	char path[256], credir[200];

	snprintf(credir, sizeof credir, "%s/creds", tmpdir);
	mkdir(credir, 0700);
	snprintf(path, sizeof path, "%s/creds/admin_token", tmpdir);
	write_file(path, "adm1n-4f7b2c9e1d08\r\n");
	snprintf(path, sizeof path, "%s/inbound.txt", tmpdir);
	write_file(path, "from-a-file-6e2c9a\n\n");
	setenv("TEST_CONFIG_SECRET", "from-env-3b8d1f0a", 1);
	setenv("CREDENTIALS_DIRECTORY", credir, 1);

	/* A relative {file: ...} is read from the config file's directory. */
	struct config *c = load_text(
	    "secrets:\n"
	    "  e: {env: TEST_CONFIG_SECRET}\n"
	    "  f: {file: inbound.txt}\n"
	    "  c: {credential: admin_token}\n"
	    "  p: \"pl41n\"\n"
	    "server:\n"
	    "  auth: {tokens: [\"${{secrets.f}}\", \"x-${{secrets.e}}\"]}\n"
	    "  admin_tokens: [\"${{secrets.c}}\"]\n" TRIGGER);
	CHECK(c != NULL);
	if (c) {
		CHECK_INT(c->nsecrets, 4);
		CHECK_STR(c->secret_names[0], "e");
		CHECK_INT(c->secrets[0].kind, CONFIG_SECRET_ENV);
		CHECK_STR(c->secrets[0].source, "TEST_CONFIG_SECRET");
		CHECK_STR(c->secret_values[0], "from-env-3b8d1f0a");
		CHECK_INT(c->secret_lens[0], 17);
		CHECK_INT(c->secrets[1].kind, CONFIG_SECRET_FILE);
		CHECK_STR(c->secret_values[1],
			  "from-a-file-6e2c9a\n"); /* one newline dropped */
		CHECK_INT(c->secret_lens[1], 19);
		CHECK_INT(c->secrets[2].kind, CONFIG_SECRET_CREDENTIAL);
		CHECK_STR(c->secret_values[2], "adm1n-4f7b2c9e1d08");
		CHECK_INT(c->secrets[3].kind, CONFIG_SECRET_PLAIN);
		CHECK(c->secrets[3].source == NULL);
		CHECK_STR(c->secrets[3].value, "pl41n");
		CHECK_INT(c->nauth_tokens, 2);
		CHECK(c->nauth_tokens == 2 &&
		      strcmp(c->auth_tokens[0], "from-a-file-6e2c9a\n") == 0);
		CHECK(c->nauth_tokens == 2 &&
		      strcmp(c->auth_tokens[1], "x-from-env-3b8d1f0a") == 0);
		CHECK(c->nadmin_tokens == 1 &&
		      strcmp(c->admin_tokens[0], "adm1n-4f7b2c9e1d08") == 0);
	}
	CHECK_INT(diag.nwarnings, 1);
	CHECK(
	    tmp_has("5:6: warning: secret \"p\" is written in the config file; "
		    "prefer {env: NAME}, {file: PATH} or {credential: NAME}"));
	CHECK(!diag_mentions("pl41n"));
	config_release(c);

	/* Every way a secret can fail, reported at once, no value shown. */
	unsetenv("TEST_CONFIG_UNSET");
	setenv("TEST_CONFIG_EMPTY", "", 1);
	snprintf(path, sizeof path, "%s/empty.txt", tmpdir);
	write_file(path, "\n");
	c = load_text(
	    "secrets:\n"
	    "  a: {env: TEST_CONFIG_UNSET}\n"
	    "  b: {file: /nonexistent/triggerd-secret}\n"
	    "  c: {credential: nope}\n"
	    "  d: {credential: ../x}\n"
	    "  e: {env: TEST_CONFIG_EMPTY}\n"
	    "  f: {file: empty.txt}\n"
	    "  g: {enf: X}\n"
	    "  h: {env: A, file: B}\n"
	    "  i: {env: [A]}\n"
	    "  j: [x]\n"
	    "  k: {env: TEST_CONFIG_SECRET}\n"
	    "server: {auth: {tokens: [\"${{secrets.a}}\"]}}\n" TRIGGER);
	CHECK(c == NULL);
	CHECK(tmp_has("2:12: error: secret \"a\": environment variable "
		      "TEST_CONFIG_UNSET is not set"));
	CHECK(
	    tmp_has("3:13: error: secret \"b\": cannot read file "
		    "/nonexistent/triggerd-secret: No such file or directory"));
	char line[512];
	snprintf(line, sizeof line,
		 "4:19: error: secret \"c\": cannot read credential %s/nope: "
		 "No such file or directory",
		 credir);
	CHECK(tmp_has(line));
	CHECK(tmp_has("5:19: error: secret \"d\": a credential name cannot "
		      "contain '/' or be \".\" or \"..\""));
	CHECK(tmp_has(
	    "6:12: error: secret \"e\": env TEST_CONFIG_EMPTY is empty"));
	CHECK(tmp_has("7:13: error: secret \"f\": file empty.txt is empty"));
	CHECK(tmp_has("8:7: error: unknown key \"enf\" in a secret (did you "
		      "mean \"env\"?)"));
	CHECK(tmp_has("9:6: error: secret \"h\" must be one of {env: NAME}, "
		      "{file: PATH} or {credential: NAME}"));
	CHECK(tmp_has(
	    "10:12: error: a secret's source must be a string, not a list"));
	CHECK(tmp_has("11:6: error: secret \"j\" must be one of {env: NAME}, "
		      "{file: PATH} or {credential: NAME}"));
	/* The unresolved secret behind the token is not reported twice. */
	CHECK_INT(diag.nerrors, 10);
	CHECK(!diag_mentions("from-env-3b8d1f0a"));
	config_release(c);

	unsetenv("CREDENTIALS_DIRECTORY");
	c = load_text("secrets:\n  c: {credential: admin_token}\n" TRIGGER);
	CHECK(c == NULL);
	CHECK(tmp_has("2:19: error: secret \"c\": credential admin_token needs "
		      "$CREDENTIALS_DIRECTORY, which is not set (systemd sets "
		      "it for LoadCredential=)"));
	config_release(c);
}

/* Inbound and admin tokens shorter than CONFIG_MIN_TOKEN are refused; the
 * diagnostic names the length, never the value. 16 bytes exactly pass. */
static void test_short_tokens(void)
{
	setenv("TEST_CONFIG_SHORT", "y", 1);
	setenv("TEST_CONFIG_SIXTEEN", "0123456789abcdef", 1);
	struct config *c = load_text(
	    "secrets: {s: {env: TEST_CONFIG_SHORT}, "
	    "k: {env: TEST_CONFIG_SIXTEEN}}\n"
	    "server:\n"
	    "  auth: {tokens: [\"${{secrets.s}}\", \"${{secrets.k}}\"]}\n"
	    "  admin_tokens: [\"adm-${{secrets.s}}\"]\n" TRIGGER);
	CHECK(c == NULL);
	CHECK_INT(diag.nerrors, 2);
	CHECK(tmp_has("3:19: error: a token in server.auth.tokens is 1 bytes, "
		      "shorter than 16: too short to be secret (make one with "
		      "`openssl rand -hex 32`)"));
	CHECK(tmp_has("4:18: error: a token in server.admin_tokens is 5 bytes, "
		      "shorter than 16: too short to be secret (make one with "
		      "`openssl rand -hex 32`)"));
	CHECK(!diag_mentions("adm-y"));
	config_release(c);
	unsetenv("TEST_CONFIG_SHORT");
	unsetenv("TEST_CONFIG_SIXTEEN");
}

/* SPEC section 8: dbt triggers recognised by their url, the dbt: options'
 * defaults, errors and warnings. */
#define DBT_JOBS "    jobs: [\"0b9d5c55-6c2e-4d0a-9b6f-3f8e2a1c7d10\"]\n"
#define DBT_URL "https://ab123.us1.dbt.com/api/v2/accounts/7/jobs/42/run/"
static void test_dbt_options(void)
{
	struct config *c = load_text(
	    "triggers:\n"
	    "  - name: plain\n"
	    "    method: POST\n"
	    "    url: " DBT_URL "\n"
	    "    body: {cause: \"x\"}\n" DBT_JOBS
	    "  - name: tuned\n"
	    "    method: POST\n"
	    "    url: https://cloud.example/api/v2/accounts/7/jobs/43/run\n"
	    "    body: {cause: \"x\"}\n"
	    "    dbt: {follow: true, poll_interval: 5s, run_timeout: 2h,"
	    " cancel_on_timeout: true, if_running: reuse}\n" DBT_JOBS
	    "  - name: other\n"
	    "    method: POST\n"
	    "    url: https://example.com/hook\n" DBT_JOBS);
	CHECK(c != NULL);
	if (c) {
		const struct config_trigger *p = config_trigger_by_name(c, "plain");
		const struct config_trigger *t = config_trigger_by_name(c, "tuned");
		const struct config_trigger *o = config_trigger_by_name(c, "other");
		CHECK(p && p->dbt.is_dbt && p->dbt.mark && !p->dbt.follow &&
		      p->dbt.poll_interval_ms == 30000 &&
		      p->dbt.run_timeout_ms == 86400000 && !p->dbt.reuse);
		CHECK(t && t->dbt.is_dbt && t->dbt.follow &&
		      t->dbt.poll_interval_ms == 5000 &&
		      t->dbt.run_timeout_ms == 7200000 &&
		      t->dbt.cancel_on_timeout && t->dbt.reuse);
		CHECK(o && !o->dbt.is_dbt);
		config_release(c);
	}

	c = load_text("triggers:\n"
		      "  - name: a\n"
		      "    method: POST\n"
		      "    url: " DBT_URL "\n"
		      "    body: {cause: \"x\"}\n"
		      "    dbt: {poll_interval: 500ms, if_running: sometimes}\n"
		      DBT_JOBS
		      "  - name: b\n"
		      "    method: POST\n"
		      "    url: https://example.com/hook\n"
		      "    dbt: {follow: true}\n" DBT_JOBS
		      "  - name: c\n"
		      "    method: POST\n"
		      "    url: " DBT_URL "\n"
		      "    body: {steps_override: [\"dbt run\"]}\n" DBT_JOBS);
	CHECK(c == NULL);
	CHECK(tmp_has("6:26: error: dbt.poll_interval must be at least 1s"));
	CHECK(diag_mentions("dbt.if_running must be trigger or reuse, not "
			    "\"sometimes\""));
	CHECK(diag_mentions("\"b\" has dbt options but its url is not a dbt Cloud "
			    "Trigger Job Run"));
	CHECK(diag_mentions("its body must be a mapping with a string "
			    "\"cause\""));

	c = load_text("triggers:\n"
		      "  - name: unmarked\n"
		      "    method: POST\n"
		      "    url: " DBT_URL "\n"
		      "    body: {cause: \"x\"}\n"
		      "    dbt: {mark: false}\n" DBT_JOBS
		      "  - name: text\n"
		      "    method: POST\n"
		      "    url: " DBT_URL "\n"
		      "    body: '{\"cause\": \"x\"}'\n" DBT_JOBS);
	CHECK(c != NULL);
	CHECK(diag_mentions("with dbt.mark false there is no look-up"));
	CHECK(diag_mentions("its cause cannot be marked"));
	config_release(c);
}

#define JOB_A "0b9d5c55-6c2e-4d0a-9b6f-3f8e2a1c7d10"
#define JOB_B "1c8e6d66-7d3f-4e1b-8c7a-4a9f3b2d8e21"
#define HOOK "    method: POST\n    url: https://example.com/hook\n"
/* SPEC section 9: wait_for, within, coalesce. */
static void test_batching_keys(void)
{
	struct config *c = load_text(
	    "triggers:\n"
	    "  - name: fan\n" HOOK
	    "    jobs: [\"" JOB_A "\", \"" JOB_B "\"]\n"
	    "    wait_for: all\n"
	    "    within: 6h\n"
	    "  - name: burst\n" HOOK
	    "    jobs: [\"*\"]\n"
	    "    coalesce: 5m\n"
	    "  - name: plain\n" HOOK
	    "    jobs: [\"" JOB_A "\"]\n"
	    "    wait_for: any\n"
	    "    body: {n: \"${{batch.count}}\", t: \"${{batch.table_name}}\"}\n");
	CHECK(c != NULL);
	if (c) {
		const struct config_trigger *f = config_trigger_by_name(c, "fan");
		const struct config_trigger *b = config_trigger_by_name(c, "burst");
		const struct config_trigger *p = config_trigger_by_name(c, "plain");
		CHECK(f && f->wait_all && f->within_ms == 6 * 3600000LL &&
		      f->coalesce_ms == 0);
		CHECK(b && !b->wait_all && b->coalesce_ms == 300000);
		CHECK(p && !p->wait_all && p->within_ms == 0 &&
		      p->coalesce_ms == 0);
		config_release(c);
	}

	c = load_text("triggers:\n"
		      "  - name: both\n" HOOK
		      "    jobs: [\"" JOB_A "\"]\n"
		      "    wait_for: all\n"
		      "    coalesce: 1m\n"
		      "  - name: star\n" HOOK
		      "    jobs: [\"*\"]\n"
		      "    wait_for: all\n"
		      "  - name: lonely\n" HOOK
		      "    jobs: [\"" JOB_A "\"]\n"
		      "    within: 1h\n"
		      "  - name: some\n" HOOK
		      "    jobs: [\"" JOB_A "\"]\n"
		      "    wait_for: some\n"
		      "  - name: quick\n" HOOK
		      "    jobs: [\"" JOB_A "\"]\n"
		      "    coalesce: 10ms\n"
		      "  - name: nonsense\n" HOOK
		      "    jobs: [\"" JOB_A "\"]\n"
		      "    coalesce: soon\n");
	CHECK(c == NULL);
	CHECK(diag_mentions("wait_for: all and coalesce exclude each other"));
	CHECK(diag_mentions("wait_for: all needs the job IDs to wait for, "
			    "not \"*\""));
	CHECK(diag_mentions("within only applies with wait_for: all"));
	CHECK(diag_mentions("wait_for must be \"any\" or \"all\", not "
			    "\"some\""));
	CHECK(diag_mentions("coalesce must be between 100ms and 366d"));
	CHECK(diag_mentions("invalid duration \"soon\" for coalesce"));
	CHECK(tmp_has("7:15: error: trigger \"both\": wait_for: all and "
		      "coalesce exclude each other (a fan-in already makes one "
		      "delivery of several events)"));

	c = load_text("events:\n"
		      "  dedup_key: \"${{batch.job_id}}\"\n"
		      "triggers:\n"
		      "  - name: t\n" HOOK
		      "    jobs: [\"" JOB_A "\"]\n");
	CHECK(c == NULL);
	CHECK(diag_mentions("batch fields are not allowed in events.dedup_key"));

	c = load_text("store: {url: \"postgresql://db.example/triggerd\"}\n"
		      "triggers:\n"
		      "  - name: t\n" HOOK
		      "    jobs: [\"" JOB_A "\"]\n"
		      "    coalesce: 1m\n");
	CHECK(c == NULL);
	CHECK(diag_mentions("fan-in and coalescing need the SQLite store"));
}

static void test_schema_errors(void)
{
	struct config *c = load("data/config_errors.yaml");
	static const char *const want[] = {
	    "data/config_errors.yaml:3:11: error: server.listen \"localhost\": "
	    "expected \"host:port\", e.g. \"0.0.0.0:8080\"",
	    "data/config_errors.yaml:4:13: error: invalid size \"64KiBs\" for "
	    "server.max_body: use e.g. 64KiB, 1MiB or a number of bytes",
	    "data/config_errors.yaml:6:15: error: erathos fields are not "
	    "allowed in server.auth.tokens",
	    "data/config_errors.yaml:7:5: error: unknown key \"token\" in "
	    "server.auth (did you mean \"tokens\"?)",
	    "data/config_errors.yaml:9:12: error: dispatch.workers must be an "
	    "integer from 1 to 256, not \"0\"",
	    "data/config_errors.yaml:10:12: error: invalid duration \"30x\" "
	    "for dispatch.timeout: use e.g. 500ms, 30s, 5m, 2h, 1d, or a "
	    "number of seconds",
	    "data/config_errors.yaml:11:25: error: dispatch.retry.max_attempts "
	    "must be an integer from 1 to 1000, not a list",
	    "data/config_errors.yaml:11:65: error: dispatch.retry.max_backoff "
	    "must not be less than initial_backoff",
	    "data/config_errors.yaml:13:15: error: secrets are not allowed in "
	    "events.dedup_key",
	    "data/config_errors.yaml:14:17: error: invalid duration \"-1h\" "
	    "for events.dedup_window: use e.g. 500ms, 30s, 5m, 2h, 1d, or a "
	    "number of seconds",
	    "data/config_errors.yaml:17:3: error: invalid variable name \"bad "
	    "name\": use letters, digits, '_' and '-'",
	    "data/config_errors.yaml:18:9: error: variable \"empty\" has no "
	    "value (write \"\" for an empty string)",
	    "data/config_errors.yaml:20:9: error: unknown key \"enf\" in a "
	    "secret (did you mean \"env\"?)",
	    "data/config_errors.yaml:21:10: warning: secret \"plain\" is "
	    "written in the config file; prefer {env: NAME}, {file: PATH} or "
	    "{credential: NAME}",
	    "data/config_errors.yaml:22:1: error: unknown key \"storage\" in "
	    "the configuration (did you mean \"store\"?)",
	};

	CHECK(c == NULL);
	CHECK_INT(diag.nlines, sizeof want / sizeof *want);
	/* Sorted by position, whatever order the sections were checked in. */
	for (size_t i = 0; i < sizeof want / sizeof *want && i < diag.nlines;
	     i++)
		CHECK_STR(diag.lines[i], want[i]);
	CHECK_INT(diag.nerrors, 14);
	CHECK_INT(diag.nwarnings, 1);
	CHECK(!diag_mentions("hunter2"));
	config_release(c);
}

static void test_trigger_errors(void)
{
	struct config *c = load("data/config_triggers_bad.yaml");
	static const char *const want[] = {
	    "data/config_triggers_bad.yaml:1:1: warning: server.auth.tokens is "
	    "empty: anyone who can reach the listener can post events",
	    "data/config_triggers_bad.yaml:5:13: error: invalid method "
	    "\"FETCH\": use GET, POST, PUT, PATCH or DELETE",
	    "data/config_triggers_bad.yaml:6:10: error: invalid url: the URL "
	    "must start with http:// or https://",
	    "data/config_triggers_bad.yaml:10:18: error: trigger name "
	    "\"run-dbt\" is already used by the trigger at line 4, column 18: "
	    "give each an explicit, unique \"name\"",
	    "data/config_triggers_bad.yaml:12:10: error: event data "
	    "(erathos.*) cannot be in the url's scheme, host or port: put it "
	    "in the path or the query",
	    "data/config_triggers_bad.yaml:13:5: error: unknown key "
	    "\"descripton\" in a trigger (did you mean \"description\"?)",
	    "data/config_triggers_bad.yaml:14:12: error: job \"not-a-uuid\" is "
	    "not an Erathos job ID (a UUID such as "
	    "0b9d5c55-6c2e-4d0a-9b6f-3f8e2a1c7d10) nor \"*\" for any job",
	    "data/config_triggers_bad.yaml:16:63: error: \"abc\" is not a "
	    "valid integer for ROWS (a whole number, e.g. \"0\")",
	    "data/config_triggers_bad.yaml:17:44: error: operation LESS_THAN "
	    "is not allowed on STATUS (string): use EQUAL, NOT_EQUAL, IN, "
	    "NOT_IN",
	    "data/config_triggers_bad.yaml:18:57: error: unknown operation "
	    "\"BETWEEN\": FINISHED_AT_DATE (date) takes EQUAL, NOT_EQUAL, "
	    "LESS_THAN, GREATER_THAN",
	    "data/config_triggers_bad.yaml:19:58: error: EQUAL takes one "
	    "value, not a list of 2 (use IN or NOT_IN for a list)",
	    "data/config_triggers_bad.yaml:20:18: error: no trigger name can "
	    "be derived from description \"!!!\" (it has no letters or "
	    "digits): add a \"name\"",
	    "data/config_triggers_bad.yaml:22:39: error: undefined variable "
	    "\"dbt_acount_id\" (did you mean \"dbt_account_id\"?)",
	    "data/config_triggers_bad.yaml:24:30: error: undefined secret "
	    "\"token\" (define it under \"secrets\")",
	    "data/config_triggers_bad.yaml:25:7: error: invalid header name "
	    "\"bad header\"",
	    "data/config_triggers_bad.yaml:27:11: error: jobs must not be "
	    "empty (use [\"*\"] for any job)",
	    "data/config_triggers_bad.yaml:28:5: error: trigger \"no-url\": "
	    "missing required key \"url\"",
	    "data/config_triggers_bad.yaml:30:16: error: is_active must be "
	    "true or false, not \"maybe\"",
	    "data/config_triggers_bad.yaml:31:15: error: JSON has no infinity "
	    "or NaN: quote \".inf\" to send a string",
	    "data/config_triggers_bad.yaml:32:12: error: rules must be a list, "
	    "not a mapping",
	    "data/config_triggers_bad.yaml:33:11: error: jobs must be a list "
	    "of Erathos job IDs, not a string",
	    "data/config_triggers_bad.yaml:34:5: error: a trigger must be a "
	    "mapping, not a string",
	};

	CHECK(c == NULL);
	CHECK_INT(diag.nlines, sizeof want / sizeof *want);
	for (size_t i = 0; i < sizeof want / sizeof *want && i < diag.nlines;
	     i++)
		CHECK_STR(diag.lines[i], want[i]);
	CHECK_INT(diag.nerrors, 21);
	config_release(c);
}

static void test_more_trigger_errors(void)
{
	struct config *c = load_text(
	    "triggers:\n"
	    "  - {method: POST, url: \"https://x.example/\", jobs: [\"*\"]}\n"
	    "  - name: \"has space\"\n"
	    "    method: POST\n"
	    "    url: \"https://x.example:99999/\"\n"
	    "    header: {Content-Type: a, content-type: b, X-Multi: "
	    "\"a\\nb\"}\n"
	    "    rules:\n"
	    "      - {variable_name: ROWS, erathos_variable: ROWS, operation: "
	    "EQUAL, value: 1}\n"
	    "      - {operation: EQUAL, value: 1}\n"
	    "      - {variable_name: ROWS, value: 1}\n"
	    "      - {variable_name: ROWS, operation: IN, value: []}\n"
	    "      - {variable_name: ROWS, operation: IN, value: [1, x]}\n"
	    "      - {variable_name: IS_ORCHESTRATION, operation: EQUAL, "
	    "value: maybe}\n"
	    "      - {variable_name: STATUS, operation: EQUAL}\n"
	    "      - {variable_name: STATUS, operation: EQUAL, value: {a: b}, "
	    "extra: 1}\n"
	    "      - 42\n"
	    "    jobs: [\"<DBT_JOB_ID>\", [x]]\n"
	    "  - name: u\n"
	    "    method: POST\n"
	    "    url: \"http:///path\"\n"
	    "    jobs: [\"*\"]\n"
	    "    body: {a: 99999999999999999999, b: [1, {c: "
	    "\"${{nope.x}}\"}]}\n"
	    "  - name: v\n"
	    "    method: GET\n"
	    "    url: \"https://x.example/$${{literal}}/${{ erathos.job_id\"\n"
	    "    jobs: [\"*\"]\n");
	CHECK(c == NULL);
	CHECK(tmp_has(
	    "2:5: error: trigger #1 needs a \"name\" or a \"description\""));
	CHECK(tmp_has("3:11: error: invalid trigger name \"has space\": use 1 "
		      "to 128 letters, digits, '.', '_' and '-'"));
	CHECK(tmp_has(
	    "5:10: error: invalid url: invalid port in the URL (1 to 65535)"));
	CHECK(tmp_has("6:31: error: header \"content-type\" is given twice "
		      "(header names are case-insensitive)"));
	CHECK(tmp_has("6:57: error: header \"X-Multi\": a header value cannot "
		      "contain a line break"));
	CHECK(tmp_has(
	    "8:49: error: give variable_name or erathos_variable, not both"));
	CHECK(tmp_has("9:9: error: a rule needs a variable_name"));
	CHECK(
	    tmp_has("10:9: error: a rule needs an operation (EQUAL, NOT_EQUAL, "
		    "IN, NOT_IN, LESS_THAN, GREATER_THAN for ROWS)"));
	CHECK(
	    tmp_has("11:53: error: a rule's value must not be an empty list"));
	CHECK(tmp_has("12:57: error: \"x\" is not a valid integer for ROWS (a "
		      "whole number, e.g. \"0\")"));
	CHECK(tmp_has("13:68: error: \"maybe\" is not a valid boolean for "
		      "IS_ORCHESTRATION (true or false)"));
	CHECK(tmp_has("14:9: error: a rule needs a value"));
	CHECK(tmp_has("15:58: error: a rule's value must be a string or a list "
		      "of strings, not a mapping"));
	CHECK(tmp_has("15:66: error: unknown key \"extra\" in a rule"));
	CHECK(tmp_has("16:9: error: a rule must be a mapping {variable_name, "
		      "operation, value}, not an integer"));
	CHECK(tmp_has(
	    "17:12: error: \"<DBT_JOB_ID>\" is the Erathos quickstart's "
	    "placeholder: replace it with your Erathos job's ID (a UUID)"));
	CHECK(tmp_has("17:28: error: a job must be a string, not a list"));
	CHECK(tmp_has("20:10: error: invalid url: the URL has no host"));
	CHECK(tmp_has("22:15: error: the integer 99999999999999999999 does not "
		      "fit in 64 bits (quote it to send a string)"));
	CHECK(tmp_has("22:52: error: unknown namespace \"nope\" (expected "
		      "variables, secrets or erathos)"));
	CHECK(
	    tmp_has("25:43: error: unterminated \"${{\" (no closing \"}}\")"));
	CHECK_INT(diag.nerrors, 21);
	config_release(c);
}

static void test_yaml_errors(void)
{
	struct config *c = load("data/config_syntax.yaml");
	CHECK(c == NULL);
	CHECK_INT(diag.nlines, 1);
	CHECK(has_line("data/config_syntax.yaml:2:43: error: YAML syntax "
		       "error: did not find expected ',' or '}' (while parsing "
		       "a flow mapping that starts at line 2, column 5)"));
	config_release(c);

	c = load("data/no-such-config.yaml");
	CHECK(c == NULL);
	CHECK(has_line("data/no-such-config.yaml: error: cannot read the "
		       "configuration: no such file; write one there "
		       "(conf/triggerd.yaml is an example; in the container "
		       "image, mount it) or name another with -c FILE"));
	config_release(c);
	c = load("data");
	CHECK(c == NULL);
	CHECK(has_line(
	    "data: error: cannot read the configuration: it is a directory"));
	config_release(c);

	c = load_text("# nothing but a comment\n");
	CHECK(c == NULL);
	CHECK(tmp_has("1:1: error: the configuration is empty: it needs at "
		      "least \"triggers\""));
	config_release(c);
	c = load_text("- a\n- b\n");
	CHECK(c == NULL);
	CHECK(tmp_has("1:1: error: the configuration must be a mapping "
		      "(server:, triggers:, ...), not a list"));
	config_release(c);
	c = load_text("server: {}\n");
	CHECK(c == NULL);
	CHECK(tmp_has("1:1: error: missing required key \"triggers\" (a list "
		      "of triggers)"));
	config_release(c);
	c = load_text(TRIGGER "---\n" TRIGGER);
	CHECK(c == NULL);
	CHECK(tmp_has("7:1: error: a second YAML document: the configuration "
		      "must be one document"));
	config_release(c);
	c = load_text("server: 1\nserver: 2\n" TRIGGER);
	CHECK(c == NULL);
	CHECK(tmp_has("2:1: error: duplicate key \"server\" (first given at "
		      "line 1, column 1)"));
	config_release(c);
	c = load_text("server:\n  listen: *nope\n" TRIGGER);
	CHECK(c == NULL);
	CHECK(tmp_has("2:11: error: undefined alias \"*nope\" (an anchor &nope "
		      "must come first)"));
	config_release(c);
	c = load_text("server:\n\tlisten: x\n" TRIGGER);
	CHECK(c == NULL);
	CHECK(tmp_has("2:1: error: YAML syntax error: found character that "
		      "cannot start any token (while scanning for the next "
		      "token that starts at line 2, column 1)"));
	config_release(c);
	c = load_text("triggers: [\"\xff\"]\n");
	CHECK(c == NULL);
	CHECK(tmp_has("1:13: error: YAML: invalid leading UTF-8 octet (the "
		      "file must be UTF-8)"));
	config_release(c);
	c = load_text("{a: 1}: x\n" TRIGGER);
	CHECK(c == NULL);
	CHECK(tmp_has(
	    "1:1: error: a mapping key must be a string, not a mapping"));
	config_release(c);
	c = load_text("server: [a, b]\nstore: x\ndispatch: {retry: 1}\nevents: "
		      "~\n" TRIGGER);
	CHECK(c == NULL);
	CHECK(tmp_has("1:9: error: server must be a mapping, not a list"));
	CHECK(tmp_has("2:8: error: store must be a mapping, not a string"));
	CHECK(tmp_has(
	    "3:19: error: dispatch.retry must be a mapping, not an integer"));
	CHECK_INT(diag.nerrors, 3); /* a null section is an absent one */
	config_release(c);
	c = load_text("<<: {a: 1}\n" TRIGGER);
	CHECK(c == NULL);
	CHECK(tmp_has("1:1: error: merge keys (<<) are not supported in the "
		      "configuration"));
	config_release(c);
}

/* Templates: the error's column is inside the scalar when it can be. */
static void test_template_positions(void)
{
	struct config *c =
	    load_text("variables: {a: x}\n"
		      "triggers:\n"
		      "  - name: t\n"
		      "    method: POST\n"
		      "    url: https://h.example/${{variables.b}}\n"
		      "    header:\n"
		      "      X-A: '${{variables.a}}-${{variables.c}}'\n"
		      "      X-B: >-\n"
		      "        ${{variables.d}}\n"
		      "      X-C: \"\\t${{variables.e}}\"\n"
		      "      X-D: \"caf\xc3\xa9"
		      " ${{variables.f}}\"\n"
		      "    jobs: [\"*\"]\n");
	CHECK(c == NULL);
	CHECK(tmp_has(
	    "5:28: error: undefined variable \"b\" (did you mean \"a\"?)"));
	CHECK(tmp_has(
	    "7:30: error: undefined variable \"c\" (did you mean \"a\"?)"));
	/* block scalar and escapes: the scalar's own position */
	CHECK(tmp_has(
	    "8:12: error: undefined variable \"d\" (did you mean \"a\"?)"));
	CHECK(tmp_has(
	    "10:12: error: undefined variable \"e\" (did you mean \"a\"?)"));
	/* columns count characters, not bytes */
	CHECK(tmp_has(
	    "11:18: error: undefined variable \"f\" (did you mean \"a\"?)"));
	config_release(c);
}

static void test_warnings(void)
{
	setenv("TEST_CONFIG_INBOUND", "in-token-5a1c0e9f", 1);
	struct config *c =
	    load_text("secrets: {in: {env: TEST_CONFIG_INBOUND}}\n"
		      "server:\n"
		      "  auth: {tokens: [\"${{secrets.in}}\"]}\n"
		      "  admin_tokens: [literal-admin-token]\n"
		      "events: {dedup_key: \"constant\"}\n"
		      "triggers:\n"
		      "  - name: legacy\n"
		      "    method: POST\n"
		      "    url: "
		      "https://cloud.getdbt.com/api/v2/accounts/<ACCOUNT_ID>/"
		      "jobs/1/run/\n"
		      "    jobs: [\"0b9d5c55-6c2e-4d0a-9b6f-3f8e2a1c7d10\", "
		      "\"0B9D5C55-6C2E-4D0A-9B6F-3F8E2A1C7D10\"]\n"
		      "  - name: no-rules\n"
		      "    method: POST\n"
		      "    url: https://EMEA.GETDBT.COM/x\n"
		      "    rules: [{variable_name: ROWS, operation: "
		      "GREATER_THAN, value: 0}]\n"
		      "    jobs: [\"*\"]\n");
	CHECK(c != NULL);
	CHECK_INT(diag.nerrors, 0);
	CHECK(
	    tmp_has("4:18: warning: a token in server.admin_tokens is written "
		    "in the config file; prefer \"${{secrets.NAME}}\""));
	CHECK(tmp_has(
	    "5:21: warning: events.dedup_key refers to no erathos field: every "
	    "event after the first in dedup_window is a duplicate"));
	CHECK(tmp_has(
	    "9:10: warning: the url uses the legacy dbt Cloud host "
	    "cloud.getdbt.com, retired on 2026-11-01: use your account's own "
	    "access URL (e.g. https://ab123.us1.dbt.com)"));
	CHECK(tmp_has("9:51: warning: \"<ACCOUNT_ID>\" in the url looks like a "
		      "placeholder left from a quickstart: replace it with the "
		      "real value"));
	CHECK(tmp_has("7:5: warning: trigger \"legacy\" has no STATUS rule: it "
		      "also fires on failed executions (add {variable_name: "
		      "STATUS, operation: EQUAL, value: FINISHED})"));
	CHECK(tmp_has("10:52: warning: job "
		      "0b9d5c55-6c2e-4d0a-9b6f-3f8e2a1c7d10 is listed twice"));
	CHECK(tmp_has(
	    "13:10: warning: the url uses the legacy dbt Cloud host "
	    "emea.getdbt.com, retired on 2026-11-01: use your account's own "
	    "access URL (e.g. https://ab123.us1.dbt.com)"));
	CHECK(tmp_has("14:5: warning: trigger \"no-rules\" has no STATUS rule: "
		      "it also fires on failed executions (add {variable_name: "
		      "STATUS, operation: EQUAL, value: FINISHED})"));
	CHECK_INT(diag.nwarnings, 8);
	if (c) {
		CHECK_INT(c->triggers[0].njobs, 1);
		CHECK_STR(c->admin_tokens[0], "literal-admin-token");
	}
	config_release(c);

	/* A placeholder that comes from a variable is still found. */
	c = load_text(
	    "variables: {acct: \"<DBT_ACCOUNT>\"}\n"
	    "triggers:\n"
	    "  - {name: t, method: POST, url: "
	    "\"https://x.example/${{variables.acct}}/\", jobs: [\"*\"],\n"
	    "     rules: [{variable_name: status, operation: equal, value: "
	    "FINISHED}]}\n");
	CHECK(c != NULL);
	CHECK(tmp_has("3:35: warning: \"<DBT_ACCOUNT>\" in the url looks like "
		      "a placeholder left from a quickstart: replace it with "
		      "the real value"));
	CHECK_INT(diag.nwarnings, 2);
	config_release(c);
}

/* The Erathos quickstart exactly as published, pasted in flow style. */
static void test_seed(void)
{
	setenv("TEST_CONFIG_DBT_TOKEN", "dbt-token", 1);
	struct config *c = load("data/config_seed.yaml");
	static const char *const want[] = {
	    "data/config_seed.yaml:1:1: warning: server.auth.tokens is empty: "
	    "anyone who can reach the listener can post events",
	    "data/config_seed.yaml:12:12: warning: the url uses the legacy dbt "
	    "Cloud host cloud.getdbt.com, retired on 2026-11-01: use your "
	    "account's own access URL (e.g. https://ab123.us1.dbt.com)",
	    "data/config_seed.yaml:12:89: warning: \"<DBT_JOB_ID\" in the url "
	    "looks like a placeholder left from a quickstart: replace it with "
	    "the real value",
	    "data/config_seed.yaml:21:5: warning: trigger "
	    "\"trigger-dbt-job-run-on-cloud\" has no STATUS rule: it also "
	    "fires on failed executions (add {variable_name: STATUS, "
	    "operation: EQUAL, value: FINISHED})",
	    "data/config_seed.yaml:24:7: error: \"<ERATHOS_JOB_ID>\" is the "
	    "Erathos quickstart's placeholder: replace it with your Erathos "
	    "job's ID (a UUID)",
	    "data/config_seed.yaml:24:25: warning: trailing comma after the "
	    "last item: YAML accepts it, JSON does not (remove it if this is "
	    "pasted back into Erathos)",
	};
	CHECK(c == NULL);
	CHECK_INT(diag.nlines, sizeof want / sizeof *want);
	for (size_t i = 0; i < sizeof want / sizeof *want && i < diag.nlines;
	     i++)
		CHECK_STR(diag.lines[i], want[i]);
	config_release(c);

	/* Pasted alone, with nothing defined: every problem at once. */
	static const char *const raw[] = {
	    "data/config_seed_raw.yaml:1:1: warning: server.auth.tokens is "
	    "empty: anyone who can reach the listener can post events",
	    "data/config_seed_raw.yaml:7:12: warning: the url uses the legacy "
	    "dbt Cloud host cloud.getdbt.com, retired on 2026-11-01: use your "
	    "account's own access URL (e.g. https://ab123.us1.dbt.com)",
	    "data/config_seed_raw.yaml:7:54: error: undefined variable "
	    "\"dbt_account_id\" (define it under \"variables\")",
	    "data/config_seed_raw.yaml:7:89: warning: \"<DBT_JOB_ID\" in the "
	    "url looks like a placeholder left from a quickstart: replace it "
	    "with the real value",
	    "data/config_seed_raw.yaml:11:32: error: undefined secret "
	    "\"dbt_personal_token\" (define it under \"secrets\")",
	    "data/config_seed_raw.yaml:16:5: warning: trigger "
	    "\"trigger-dbt-job-run-on-cloud\" has no STATUS rule: it also "
	    "fires on failed executions (add {variable_name: STATUS, "
	    "operation: EQUAL, value: FINISHED})",
	    "data/config_seed_raw.yaml:19:7: error: \"<ERATHOS_JOB_ID>\" is "
	    "the Erathos quickstart's placeholder: replace it with your "
	    "Erathos job's ID (a UUID)",
	    "data/config_seed_raw.yaml:19:25: warning: trailing comma after "
	    "the last item: YAML accepts it, JSON does not (remove it if this "
	    "is pasted back into Erathos)",
	};
	c = load("data/config_seed_raw.yaml");
	CHECK(c == NULL);
	CHECK_INT(diag.nlines, sizeof raw / sizeof *raw);
	for (size_t i = 0; i < sizeof raw / sizeof *raw && i < diag.nlines; i++)
		CHECK_STR(diag.lines[i], raw[i]);
	config_release(c);

	/* With a real job ID it loads: warnings only. */
	c = load("data/config_seed_job.yaml");
	CHECK(c != NULL);
	CHECK_INT(diag.nerrors, 0);
	CHECK_INT(diag.nwarnings, 5);
	CHECK(has_line("data/config_seed_job.yaml:24:45: warning: trailing "
		       "comma after the last item: YAML accepts it, JSON does "
		       "not (remove it if this is pasted back into Erathos)"));
	if (!c)
		return;
	const struct config_trigger *t =
	    config_trigger_by_name(c, "trigger-dbt-job-run-on-cloud");
	CHECK(t != NULL);
	if (t) {
		CHECK_STR(t->description, "Trigger DBT job run on Cloud");
		CHECK_INT(t->active, 1);
		CHECK_STR(t->method, "POST");
		CHECK_INT(t->nheaders, 3);
		CHECK_INT(t->has_content_type, 1);
		CHECK_STR(t->headers[2].name, "Authorization");
		CHECK_INT(t->body_is_json, 1);
		CHECK_INT(t->nrules, 0);
		CHECK_INT(t->njobs, 1);
		CHECK_STR(t->jobs[0], "0b9d5c55-6c2e-4d0a-9b6f-3f8e2a1c7d10");
		struct tmpl_env env;
		struct buf b;
		buf_init(&b, 4096);
		config_env(c, NULL, 1, &env);
		CHECK(tmpl_node_render(t->body, &env, &b, NULL) == 0);
		CHECK_STR(buf_str(&b), "{\"cause\":\"finished job on Erathos "
				       "platform triggered by \"}");
		buf_free(&b);
	}
	config_release(c);
}

static void test_bundled_example(void)
{
	setenv("TRIGGERD_INBOUND_TOKEN", "in-token-5a1c0e9f", 1);
	setenv("DBT_PERSONAL_TOKEN", "dbt", 1);
	unsetenv("STATE_DIRECTORY");
	struct config *c = load("../../conf/triggerd.yaml");
	CHECK(c != NULL);
	CHECK_INT(diag.nlines, 0);
	if (!c)
		return dump_diag();
	CHECK_STR(c->listen_host, "0.0.0.0");
	CHECK_INT(c->listen_port, 8080);
	CHECK_STR(c->store_path, "./triggerd.db");
	CHECK_INT(c->nauth_tokens, 1);
	const struct config_trigger *t = config_trigger_by_name(c, "dbt-daily");
	CHECK(t != NULL);
	CHECK(t && t->nrules == 1 && strcmp(t->rules[0].field, "status") == 0);
	CHECK(t && strcmp(tmpl_source(t->url),
			  "http://127.0.0.1:8765/api/v2/accounts/"
			  "${{variables.dbt_account_id}}/jobs/42/run/") == 0);
	config_release(c);
	unsetenv("TRIGGERD_INBOUND_TOKEN");
	unsetenv("DBT_PERSONAL_TOKEN");
}

static void test_names(void)
{
	static const struct {
		const char *desc, *name;
	} cases[] = {
	    {"Trigger DBT job run on Cloud", "trigger-dbt-job-run-on-cloud"},
	    {"  --Hello,  World!! ", "hello-world"},
	    {"D\xc3\xa9"
	     "clencher 2x",
	     "d-clencher-2x"},
	    {"a", "a"},
	    {"42", "42"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		struct config *c =
		    load_text("triggers:\n  - {description: \"%s\", method: "
			      "GET, url: \"http://h/\", jobs: [\"*\"]}\n",
			      cases[i].desc);
		CHECK(c && strcmp(c->triggers[0].name, cases[i].name) == 0);
		CHECK(c && config_trigger_by_name(c, cases[i].name) ==
			       &c->triggers[0]);
		config_release(c);
	}

	/* A given name may clash with a derived one; explicit names fix it. */
	struct config *c = load_text("triggers:\n"
				     "  - {description: Run dbt, method: GET, "
				     "url: \"http://h/\", jobs: [\"*\"]}\n"
				     "  - {name: run-dbt, method: GET, url: "
				     "\"http://h/\", jobs: [\"*\"]}\n");
	CHECK(c == NULL);
	CHECK(tmp_has("3:12: error: trigger name \"run-dbt\" is already used "
		      "by the trigger at line 2, column 19: give each an "
		      "explicit, unique \"name\""));
	config_release(c);
	c = load_text("triggers:\n"
		      "  - {description: Run dbt, name: a, method: GET, url: "
		      "\"http://h/\", jobs: [\"*\"]}\n"
		      "  - {description: Run dbt, name: b, method: GET, url: "
		      "\"http://h/\", jobs: [\"*\"]}\n");
	CHECK(c != NULL);
	CHECK(c && config_trigger_by_name(c, "b") == &c->triggers[1]);
	CHECK(c && config_trigger_by_name(c, "run-dbt") == NULL);
	config_release(c);
}

static void test_job_index(void)
{
	size_t n;
	const size_t *v;

	setenv("TEST_CONFIG_INBOUND", "in-token-5a1c0e9f", 1);
	struct config *c = load("data/config_jobs.yaml");

	CHECK(c != NULL);
	if (!c)
		return dump_diag();
	v = strmap_get(c->by_job, "0b9d5c55-6c2e-4d0a-9b6f-3f8e2a1c7d10", &n);
	CHECK_INT(n, 2);
	CHECK(n == 2 && v[0] == 0 && v[1] == 1);
	v = strmap_get(c->by_job, "5f1e7a2b-93c4-4e1d-8a6f-2b7c9d0e1f23", &n);
	CHECK(n == 1 && v[0] == 0);
	v = strmap_get(c->by_job, "0B9D5C55-6C2E-4D0A-9B6F-3F8E2A1C7D10", &n);
	CHECK_INT(n, 0); /* keys are lower case; callers fold */
	v = strmap_get(c->by_job, "*", &n);
	CHECK_INT(n, 0);
	CHECK_INT(c->nany_job, 2);
	CHECK(c->nany_job == 2 && c->any_job[0] == 2 && c->any_job[1] == 3);
	CHECK(config_trigger_by_name(c, "inactive") == &c->triggers[3]);
	CHECK_INT(c->triggers[3].active, 0);
	CHECK(config_trigger_by_name(c, "nope") == NULL);
	config_release(c);
}

struct slot_arg {
	struct config_slot *slot;
	int ok;
};

static void *slot_reader(void *p)
{
	struct slot_arg *a = p;

	for (int i = 0; i < 2000; i++) {
		struct config *c = config_slot_acquire(a->slot);
		if (!c || c->ntriggers != 1 ||
		    strcmp(c->triggers[0].name, "only") != 0)
			a->ok = 0;
		config_release(c);
	}
	return NULL;
}

static void test_refcount_and_slot(void)
{
	struct config *c = load("data/config_minimal.yaml");
	CHECK(c != NULL);
	if (!c)
		return;
	CHECK(config_retain(c) == c);
	CHECK_INT(c->refs, 2);
	config_release(c);
	CHECK_INT(c->refs, 1);
	config_retain(NULL);
	config_release(NULL);

	struct config_slot slot;
	config_slot_init(&slot, c);
	struct config *a = config_slot_acquire(&slot);
	CHECK(a == c);
	CHECK_INT(c->refs, 2);
	struct config *c2 = load("data/config_minimal.yaml");
	CHECK(c2 != NULL);
	config_slot_replace(&slot, c2);
	/* The old config stays whole for the reader that holds it. */
	CHECK_INT(a->refs, 1);
	CHECK_STR(a->triggers[0].name, "only");
	config_release(a); /* frees it (ASan would see a leak or a reuse) */
	struct config *b = config_slot_acquire(&slot);
	CHECK(b == c2);
	config_release(b);

	/* Readers on other threads while the config is swapped under them. */
	struct slot_arg args[3];
	pthread_t th[3];
	for (int i = 0; i < 3; i++) {
		args[i] = (struct slot_arg){&slot, 1};
		CHECK(pthread_create(&th[i], NULL, slot_reader, &args[i]) == 0);
	}
	for (int i = 0; i < 50; i++) {
		struct config *n = load("data/config_minimal.yaml");
		CHECK(n != NULL);
		if (n)
			config_slot_replace(&slot, n);
	}
	for (int i = 0; i < 3; i++) {
		pthread_join(th[i], NULL);
		CHECK(args[i].ok);
	}
	config_slot_destroy(&slot);
}

int main(void)
{
	snprintf(tmpdir, sizeof tmpdir, "/tmp/test_config.XXXXXX");
	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		return 1;
	}
	snprintf(tmppath, sizeof tmppath, "%s/c.yaml", tmpdir);
	unsetenv("CREDENTIALS_DIRECTORY");

	test_defaults();
	test_full();
	test_durations();
	test_sizes();
	test_listen_and_ranges();
	test_urls();
	test_secrets();
	test_short_tokens();
	test_dbt_options();
	test_batching_keys();
	test_schema_errors();
	test_trigger_errors();
	test_more_trigger_errors();
	test_yaml_errors();
	test_template_positions();
	test_warnings();
	test_seed();
	test_bundled_example();
	test_names();
	test_job_index();
	test_refcount_and_slot();
	config_diag_clear(&diag);

	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", tmpdir);
	return check_report();
}
