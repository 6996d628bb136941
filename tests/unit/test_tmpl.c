/* Unit tests for src/tmpl.c: compiling, rendering, encoding, JSON bodies. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "check.h"
#include "event.h"
#include "tmpl.h"

static const char *const var_names[] = {"host", "acct", "path"};
static const char *const var_values[] = {"airflow.local:8080", "70403",
					 "a/b c"};
static const char *const secret_names[] = {"token", "bin"};
static const char *const secret_values[] = {"s3cr3t", "x\0y"};
static const size_t secret_lens[] = {6, 3};

static struct event *ev;
static const struct event *const *batch; /* render()'s batch; NULL: ev */
static size_t nbatch;

/* ctx: non-NULL means "secrets are not allowed here" (like dedup_key). */
static int resolve(void *ctx, enum tmpl_ns ns, const char *name, char *err,
		   size_t errlen)
{
	const char *const *names =
	    ns == TMPL_VARIABLES ? var_names : secret_names;
	size_t n = ns == TMPL_VARIABLES ? 3 : 2;

	if (ns == TMPL_ERATHOS || ns == TMPL_BATCH)
		return 0;
	if (ns == TMPL_SECRETS && ctx) {
		snprintf(err, errlen, "secrets are not allowed in %s",
			 (const char *)ctx);
		return -1;
	}
	for (size_t i = 0; i < n; i++)
		if (strcmp(names[i], name) == 0)
			return (int)i;
	snprintf(err, errlen, "undefined %s \"%s\"",
		 ns == TMPL_VARIABLES ? "variable" : "secret", name);
	return -1;
}

static struct tmpl *compile(const char *s, struct tmpl_error *e)
{
	return tmpl_compile(s, strlen(s), resolve, NULL, e);
}

/* Renders s with the given encoding and secrets (masked or not). */
static char out_s[1024];
static int missing;

static const char *render(const char *s, enum tmpl_enc enc, int masked)
{
	struct tmpl_env env = {var_values, secret_names,
			       masked ? NULL : secret_values, secret_lens, ev,
			       batch, nbatch};
	struct tmpl_error e;
	struct tmpl *t = compile(s, &e);
	struct buf b;

	missing = 0;
	snprintf(out_s, sizeof(out_s), "(compile error at %zu: %s)", e.offset,
		 e.msg);
	if (!t)
		return out_s;
	buf_init(&b, 4096);
	if (tmpl_render(t, &env, enc, &b, &missing) == 0)
		snprintf(out_s, sizeof(out_s), "%s", buf_str(&b));
	else
		snprintf(out_s, sizeof(out_s), "(render failed)");
	buf_free(&b);
	tmpl_free(t);
	return out_s;
}

/* Expects s not to compile, with the error at offset and msg containing
 * want. */
static void bad(const char *s, size_t offset, const char *want)
{
	struct tmpl_error e;
	struct tmpl *t = compile(s, &e);

	CHECK(t == NULL);
	CHECK_INT(e.offset, offset);
	if (!strstr(e.msg, want))
		fprintf(stderr, "  message for %s: %s\n", s, e.msg);
	CHECK(strstr(e.msg, want) != NULL);
	tmpl_free(t);
}

static void test_compile_errors(void)
{
	bad("abc ${{ erathos.job_id", 4, "unterminated");
	bad("${{", 0, "unterminated");
	bad("x${{}}", 1, "empty reference");
	bad("x${{   }}", 1, "empty reference");
	bad("ab${{ foo.bar }}", 6, "unknown namespace \"foo\"");
	bad("${{Erathos.job_id}}", 3, "unknown namespace");
	bad("${{ erathos }}", 11, "expected ${{ namespace.name }}");
	bad("${{ erathos. }}", 12, "empty name after \"erathos.\"");
	bad("${{erathos.}}", 11, "empty name");
	bad("${{erathos.a b}}", 12, "invalid character");
	bad("${{erathos.a.b}}", 12, "invalid character");
	bad("${{.x}}", 3, "expected");
	bad("ok ${{ variables.nope }}", 3, "undefined variable \"nope\"");
	bad("${{secrets.nope}}", 0, "undefined secret \"nope\"");
	/* the resolver's own refusal */
	{
		struct tmpl_error e;
		const char *s = "${{erathos.a}}:${{secrets.token}}";
		struct tmpl *t;

		CHECK(tmpl_compile(s, strlen(s), resolve, "events.dedup_key",
				   &e) == NULL);
		CHECK_INT(e.offset, 15);
		CHECK_STR(e.msg, "secrets are not allowed in events.dedup_key");
		/* no resolver: variables are undefined, erathos is fine */
		t = tmpl_compile(s, 14, NULL, NULL, &e);
		CHECK(t != NULL);
		tmpl_free(t);
		CHECK(tmpl_compile("${{variables.a}}", 16, NULL, NULL, &e) ==
		      NULL);
		CHECK_STR(e.msg, "undefined variable \"a\"");
		CHECK(tmpl_compile("${{", 3, NULL, NULL, NULL) == NULL);
	}
}

static void test_render_basic(void)
{
	struct tmpl_error e;
	struct tmpl *t;

	CHECK_STR(render("plain text", TMPL_ENC_RAW, 0), "plain text");
	CHECK_STR(render("", TMPL_ENC_RAW, 0), "");
	CHECK_STR(render("${{erathos.status}}", TMPL_ENC_RAW, 0), "FINISHED");
	CHECK_STR(render("[${{ erathos.STATUS }}]", TMPL_ENC_RAW, 0),
		  "[FINISHED]");
	CHECK_STR(render("${{\terathos.status\t}}", TMPL_ENC_RAW, 0),
		  "FINISHED");
	CHECK_STR(render("a $${{erathos.status}} b", TMPL_ENC_RAW, 0),
		  "a ${{erathos.status}} b");
	CHECK_STR(render("$$${{erathos.status}}", TMPL_ENC_RAW, 0),
		  "$${{erathos.status}}");
	CHECK_STR(render("$ ${ $$ ${x} $", TMPL_ENC_RAW, 0), "$ ${ $$ ${x} $");
	CHECK_STR(render("cost: 5$", TMPL_ENC_RAW, 0), "cost: 5$");
	CHECK_STR(render("}} ${{erathos.rows}}}}", TMPL_ENC_RAW, 0),
		  "}} 12345}}");
	CHECK_STR(
	    render("${{variables.acct}}/${{variables.host}}", TMPL_ENC_URL, 0),
	    "70403/airflow.local:8080");
	/* missing erathos fields render as "" and are counted */
	CHECK_STR(render("<${{erathos.nope}}|${{erathos.table_name}}|"
			 "${{erathos.nope}}>",
			 TMPL_ENC_RAW, 0),
		  "<||>");
	CHECK_INT(missing, 3);
	CHECK_STR(render("${{erathos.status}}", TMPL_ENC_RAW, 0), "FINISHED");
	CHECK_INT(missing, 0);

	t = compile("x${{ erathos.Job_Id }}y", &e);
	CHECK(t != NULL);
	CHECK_STR(tmpl_source(t), "x${{ erathos.Job_Id }}y");
	CHECK(tmpl_uses(t, TMPL_ERATHOS));
	CHECK(!tmpl_uses(t, TMPL_SECRETS));
	CHECK(!tmpl_uses(t, TMPL_VARIABLES));
	tmpl_free(t);
	t = compile("${{secrets.token}}${{variables.acct}}", &e);
	CHECK(tmpl_uses(t, TMPL_SECRETS) && tmpl_uses(t, TMPL_VARIABLES));
	CHECK(!tmpl_uses(t, TMPL_ERATHOS));
	tmpl_free(t);
	tmpl_free(NULL);
	/* the source need not be NUL-terminated */
	t = tmpl_compile("${{erathos.status}}XYZ", 19, resolve, NULL, &e);
	CHECK_STR(tmpl_source(t), "${{erathos.status}}");
	tmpl_free(t);
}

static void test_encoding(void)
{
	/* raw: as it is; URL: RFC 3986 unreserved kept, the rest %XX */
	CHECK_STR(render("${{erathos.weird}}", TMPL_ENC_RAW, 0),
		  "a/b?c#d&e=f g");
	CHECK_STR(render("https://h/x?q=${{erathos.weird}}", TMPL_ENC_URL, 0),
		  "https://h/x?q=a%2Fb%3Fc%23d%26e%3Df%20g");
	CHECK_STR(render("${{erathos.unreserved}}", TMPL_ENC_URL, 0),
		  "AZaz09-._~");
	CHECK_STR(render("${{erathos.utf8}}", TMPL_ENC_URL, 0),
		  "caf%C3%A9%2B%25");
	CHECK_STR(render("${{erathos.nul}}", TMPL_ENC_URL, 0), "a%00b");
	/* a dots-only value can never be a "." or ".." path segment */
	CHECK_STR(render("/p/${{erathos.dots}}/x", TMPL_ENC_URL, 0),
		  "/p/%2E%2E/x");
	CHECK_STR(render("/p/${{erathos.dotted}}/x", TMPL_ENC_URL, 0),
		  "/p/a..b/x");
	CHECK_STR(render("/p/${{erathos.dots}}/x", TMPL_ENC_RAW, 0), "/p/../x");
	/* variables and secrets are never encoded */
	CHECK_STR(render("/${{variables.path}}/", TMPL_ENC_URL, 0), "/a/b c/");
	CHECK_STR(render("${{secrets.token}}", TMPL_ENC_URL, 0), "s3cr3t");
	/* masked secrets */
	CHECK_STR(render("Bearer ${{secrets.token}}", TMPL_ENC_RAW, 1),
		  "Bearer <secret:token>");
	/* a NULL entry masks only that secret */
	{
		const char *vals[] = {NULL, "v"};
		struct tmpl_env env = {var_values, secret_names, vals, NULL,
				       NULL, NULL, 0};
		struct tmpl_error e;
		struct tmpl *t = compile("${{secrets.token}}|${{secrets.bin}}|"
					 "${{erathos.status}}",
					 &e);
		struct buf b;
		int m = 0;

		buf_init(&b, 100);
		CHECK(tmpl_render(t, &env, TMPL_ENC_RAW, &b, &m) == 0);
		CHECK_STR(buf_str(&b), "<secret:token>|v|");
		CHECK_INT(m, 1); /* env without event: every field missing */
		buf_free(&b);
		tmpl_free(t);
	}
}

/* Secrets with NUL use their length; a full buffer fails cleanly. */
static void test_lengths_and_limits(void)
{
	struct tmpl_env env = {var_values, secret_names, secret_values,
			       secret_lens, ev, NULL, 0};
	struct tmpl_error e;
	struct tmpl *t = compile("<${{secrets.bin}}>", &e);
	struct buf b;

	buf_init(&b, 100);
	CHECK(tmpl_render(t, &env, TMPL_ENC_RAW, &b, NULL) == 0);
	CHECK_INT(b.len, 5);
	CHECK(memcmp(b.data, "<x\0y>", 5) == 0);
	tmpl_free(t);

	t = compile("${{erathos.weird}}", &e);
	buf_free(&b);
	buf_init(&b, 20);
	CHECK(buf_puts(&b, "keep") == 0);
	CHECK(tmpl_render(t, &env, TMPL_ENC_URL, &b, NULL) == -1);
	CHECK_STR(buf_str(&b), "keep"); /* nothing half-written */
	CHECK_INT(b.len, 4);
	CHECK(tmpl_render(t, &env, TMPL_ENC_RAW, &b, NULL) == 0);
	CHECK_STR(buf_str(&b), "keepa/b?c#d&e=f g");
	buf_free(&b);
	tmpl_free(t);
}

static int authority(const char *s)
{
	struct tmpl_error e;
	struct tmpl *t = compile(s, &e);
	int r = tmpl_erathos_in_authority(t);

	CHECK(t != NULL);
	tmpl_free(t);
	return r;
}

static void test_authority(void)
{
	CHECK(authority("https://${{erathos.host}}/x"));
	CHECK(authority("https://h.com${{erathos.port}}/x"));
	CHECK(authority("https://u:${{erathos.p}}@h.com/x"));
	CHECK(authority("${{erathos.url}}"));
	CHECK(authority("${{variables.host}}${{erathos.x}}"));
	CHECK(authority("https://${{variables.host}}${{erathos.x}}/"));
	CHECK(!authority("https://h.com/${{erathos.x}}"));
	CHECK(!authority("https://h.com?job=${{erathos.x}}"));
	CHECK(!authority("https://h.com#${{erathos.x}}"));
	CHECK(!authority("http://${{variables.host}}/api/${{erathos.x}}"));
	CHECK(!authority("${{variables.host}}/api/${{erathos.x}}"));
	CHECK(!authority("https://${{variables.host}}/x"));
	CHECK(!authority("https://h.com/x"));
	CHECK(!tmpl_erathos_in_authority(NULL));
}

static void test_json_body(void)
{
	struct tmpl_error e;
	struct tmpl_env env = {var_values, secret_names, NULL, NULL, ev, NULL, 0};
	struct tmpl_node kids[9] = {
	    {.kind = TMPL_NODE_STRING, .key = "zeta"},
	    {.kind = TMPL_NODE_INTEGER, .key = "alpha", .integer = -42},
	    {.kind = TMPL_NODE_REAL, .key = "r", .real = 0.1},
	    {.kind = TMPL_NODE_BOOL, .key = "t", .boolean = 1},
	    {.kind = TMPL_NODE_BOOL, .key = "f", .boolean = 0},
	    {.kind = TMPL_NODE_NULL, .key = "n"},
	    {.kind = TMPL_NODE_ARRAY, .key = "list"},
	    {.kind = TMPL_NODE_STRING, .key = "auth"},
	    {.kind = TMPL_NODE_STRING, .key = "gone"},
	};
	struct tmpl_node items[2] = {
	    {.kind = TMPL_NODE_REAL, .real = 2.0},
	    {.kind = TMPL_NODE_STRING},
	};
	struct tmpl_node root = {
	    .kind = TMPL_NODE_OBJECT, .children = kids, .nchildren = 9};
	struct buf b;
	int m = 0;

	kids[0].str = compile("cause: ${{erathos.evil}}", &e);
	kids[6].children = items;
	kids[6].nchildren = 2;
	kids[7].str = compile("Bearer ${{secrets.token}}", &e);
	kids[8].str = compile("${{erathos.nope}}", &e);
	items[1].str = compile("${{erathos.nul}}/${{variables.acct}}", &e);
	buf_init(&b, 4096);
	CHECK(buf_puts(&b, "body=") == 0);
	CHECK(tmpl_node_render(&root, &env, &b, &m) == 0);
	CHECK_STR(buf_str(&b),
		  "body={\"zeta\":\"cause: \\\",\\\"x\\\":\\\\\\n}\","
		  "\"alpha\":-42,\"r\":0.1,\"t\":true,\"f\":false,\"n\":null,"
		  "\"list\":[2.0,\"a\\u0000b/70403\"],"
		  "\"auth\":\"Bearer <secret:token>\",\"gone\":\"\"}");
	CHECK_INT(m, 1);
	/* out too small: -1, and out is left as it was */
	buf_free(&b);
	buf_init(&b, 60);
	CHECK(buf_puts(&b, "keep") == 0);
	CHECK(tmpl_node_render(&root, &env, &b, NULL) == -1);
	CHECK_STR(buf_str(&b), "keep");
	buf_free(&b);
	/* reals: the shortest text that reads back the same */
	buf_init(&b, 200);
	items[0].real = 1.0 / 3.0;
	CHECK(tmpl_node_render(&kids[6], &env, &b, NULL) == 0);
	CHECK_STR(buf_str(&b), "[0.3333333333333333,\"a\\u0000b/70403\"]");
	buf_reset(&b);
	items[0].real = 1.0 / 0.0;
	CHECK(tmpl_node_render(&kids[6], &env, &b, NULL) == 0);
	CHECK_STR(buf_str(&b), "[null,\"a\\u0000b/70403\"]");
	/* a lone string node, and an invalid UTF-8 secret */
	{
		const char *vals[] = {"\xff ok \xc3", NULL};
		struct tmpl_env env2 = {var_values, secret_names, vals, NULL,
					ev, NULL, 0};

		buf_reset(&b);
		CHECK(tmpl_node_render(&kids[7], &env2, &b, NULL) == 0);
		CHECK_STR(buf_str(&b),
			  "\"Bearer \xef\xbf\xbd ok \xef\xbf\xbd\"");
	}
	buf_free(&b);
	/* free what the test compiled; tmpl_node_clear frees keys too, so
	 * clear only nodes whose memory is the heap's */
	for (int i = 0; i < 9; i++)
		tmpl_free(kids[i].str);
	tmpl_free(items[1].str);
}

static void test_node_clear(void)
{
	struct tmpl_error e;
	struct tmpl_node *root = calloc(1, sizeof(*root));

	root->kind = TMPL_NODE_OBJECT;
	root->nchildren = 2;
	root->children = calloc(2, sizeof(struct tmpl_node));
	root->children[0].kind = TMPL_NODE_STRING;
	root->children[0].key = strdup("a");
	root->children[0].str = compile("x${{erathos.a}}", &e);
	root->children[1].kind = TMPL_NODE_ARRAY;
	root->children[1].key = strdup("b");
	root->children[1].nchildren = 1;
	root->children[1].children = calloc(1, sizeof(struct tmpl_node));
	root->children[1].children[0].kind = TMPL_NODE_INTEGER;
	tmpl_node_clear(root);
	CHECK(root->children == NULL && root->nchildren == 0);
	tmpl_node_clear(root);
	tmpl_node_clear(NULL);
	free(root);
}

/* The batch namespace: count, distinct values in arrival order. */
static void test_batch(void)
{
	static const char *const bodies[] = {
	    "{\"JOB_ID\":\"a\",\"TABLE_NAME\":\"t1\",\"X\":\"p q\"}",
	    "{\"JOB_ID\":\"b\",\"TABLE_NAME\":\"t2\"}",
	    "{\"JOB_ID\":\"a\",\"TABLE_NAME\":\"t1\",\"X\":\"r\"}",
	};
	struct event *evs[3];
	char err[200];

	/* no batch: the event alone */
	CHECK_STR(render("${{batch.count}}", TMPL_ENC_RAW, 0), "1");
	CHECK_STR(render("${{ batch.STATUS }}", TMPL_ENC_RAW, 0), "FINISHED");
	CHECK_STR(render("[${{batch.nope}}]", TMPL_ENC_RAW, 0), "[]");
	CHECK_INT(missing, 1);
	for (int i = 0; i < 3; i++)
		evs[i] = event_parse(bodies[i], strlen(bodies[i]), err,
				     sizeof err);
	batch = (const struct event *const *)evs;
	nbatch = 3;
	CHECK_STR(render("${{batch.count}}", TMPL_ENC_RAW, 0), "3");
	CHECK_STR(render("${{batch.job_id}}|${{batch.table_name}}",
			 TMPL_ENC_RAW, 0),
		  "a, b|t1, t2");
	CHECK_STR(render("${{batch.x}}", TMPL_ENC_RAW, 0), "p q, r");
	CHECK_INT(missing, 0);
	CHECK_STR(render("/${{batch.x}}", TMPL_ENC_URL, 0), "/p%20q%2C%20r");
	CHECK_STR(render("${{erathos.job_id}}", TMPL_ENC_RAW, 0),
		  "0b9d5c55-6c2e-4d0a-9b6f-3f8e2a1c7d10"); /* ev, not batch */
	batch = NULL;
	nbatch = 0;
	for (int i = 0; i < 3; i++)
		event_free(evs[i]);
	CHECK(!compile("${{batch}}", &(struct tmpl_error){0}));
}

int main(void)
{
	static const char body[] =
	    "{\"JOB_ID\":\"0b9d5c55-6c2e-4d0a-9b6f-3f8e2a1c7d10\","
	    "\"STATUS\":\"FINISHED\",\"ROWS\":12345,\"TABLE_NAME\":null,"
	    "\"weird\":\"a/b?c#d&e=f g\",\"unreserved\":\"AZaz09-._~\","
	    "\"dots\":\"..\",\"dotted\":\"a..b\","
	    "\"utf8\":\"caf\\u00e9+%\",\"nul\":\"a\\u0000b\","
	    "\"evil\":\"\\\",\\\"x\\\":\\\\\\n}\"}";
	char err[200];

	ev = event_parse(body, sizeof(body) - 1, err, sizeof(err));
	CHECK(ev != NULL);
	if (!ev) {
		fprintf(stderr, "%s\n", err);
		return check_report();
	}
	test_compile_errors();
	test_render_basic();
	test_batch();
	test_encoding();
	test_lengths_and_limits();
	test_authority();
	test_json_body();
	test_node_clear();
	event_free(ev);
	return check_report();
}
