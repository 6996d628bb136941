/*
 * fuzz_tmpl — tmpl_compile() on arbitrary template sources, then every way
 * of rendering what compiles.
 *
 * DESIGN: the whole input is a template source, passed as libFuzzer gives
 * it (size bytes, not NUL-terminated: tmpl_compile takes a length). The
 * resolver knows a few variables and secrets and refuses erathos.forbidden,
 * so undefined-name and refused-reference paths are reached too. A
 * compiled template is rendered raw and URL-encoded, with secrets shown
 * and masked, against a fixed parsed event (NUL, UTF-8, JSON, reserved
 * characters), against an event whose "input" field holds the input's
 * bytes (any bytes: a secret read from a file can be anything too), and
 * with no event; into a roomy buffer and into one a few bytes long. It is
 * then put as string leaves into a small JSON body tree (with an integer,
 * a real picked by the input's size including NaN and infinity, a boolean,
 * null, an array and a nested object) for tmpl_node_render, and the tree is
 * freed with tmpl_node_clear.
 *
 * Oracles besides memory safety and leaks: a failed compile says where
 * (offset within the source) and why; tmpl_source gives the source back;
 * renders only append; with no event, raw and URL renders agree; masked
 * secrets render as "<secret:NAME>"; "${{erathos.input}}" renders the input
 * as it is raw and as RFC 3986 unreserved characters or %XX that decode
 * back to it in a URL; and every body rendering is valid JSON — with the
 * input's bytes as an exact string when the input is valid UTF-8. Inputs
 * are cut at MAX_INPUT bytes.
 */
#include <math.h>
#include <string.h>

#include <jansson.h>

#include "buf.h"
#include "event.h"
#include "fuzz.h"
#include "tmpl.h"

#define SECRET "s3cr3t-VALUE"
/* Inputs are cut at MAX_INPUT bytes (libFuzzer's default -max_len), so
 * that ROOMY holds any rendering: at most MAX_INPUT / 18 references to the
 * input field, each at most 6 bytes of JSON per input byte. */
#define MAX_INPUT 4096
#define ROOMY (8u << 20)

static const char *const var_names[] = {"host", "acct", "path", "empty", "utf"};
static const char *const var_values[] = {
    "airflow.local:8080", "70403", "a/b c?&#", "", "\xc3\xa9\xe2\x9c\x93"};
static const char *const secret_names[] = {"token", "bin"};
static const char *const secret_values[] = {SECRET, "b\0\xff\xc3("};
static const size_t secret_lens[] = {sizeof(SECRET) - 1, 5};

static struct event *fixed_ev; /* parsed once, read-only afterwards */

static const char fixed_body[] =
    "{\"JOB_ID\":\"0b9d5c55-6c2e-4d0a-9b6f-3f8e2a1c7d10\","
    "\"status\":\"FINISHED\",\"Rows\":12345,\"nul\":\"a\\u0000b\","
    "\"utf\":\"\\u00e9\\u2713\\ud83d\\ude00\",\"url\":\"/?#&= %+@:\","
    "\"obj\":{\"a\":[1,2.5,null,true]},\"quote\":\"\\\"\\\\\\n\\t\","
    "\"empty\":\"\"}";

static int resolve(void *ctx, enum tmpl_ns ns, const char *name, char *err,
		   size_t errlen)
{
	const char *const *names =
	    ns == TMPL_VARIABLES ? var_names : secret_names;
	size_t n = ns == TMPL_VARIABLES ? 5 : 2;

	(void)ctx;
	if (ns == TMPL_ERATHOS || ns == TMPL_BATCH) {
		if (strcmp(name, "forbidden") == 0) {
			snprintf(err, errlen, "erathos.forbidden is refused");
			return -1;
		}
		return 0;
	}
	for (size_t i = 0; i < n; i++)
		if (strcmp(names[i], name) == 0)
			return (int)i;
	snprintf(err, errlen, "undefined %s \"%s\"",
		 ns == TMPL_VARIABLES ? "variable" : "secret", name);
	return -1;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	char err[256];

	(void)argc;
	(void)argv;
	fixed_ev =
	    event_parse(fixed_body, sizeof(fixed_body) - 1, err, sizeof(err));
	if (!fixed_ev) {
		fprintf(stderr, "fuzz_tmpl: fixed event: %s\n", err);
		abort();
	}
	return 0;
}

static struct tmpl *compile(const char *src, size_t len)
{
	struct tmpl_error e;

	memset(&e, 'x', sizeof(e));
	struct tmpl *t = tmpl_compile(src, len, resolve, NULL, &e);
	if (!t) {
		FUZZ_CHECK(e.offset <= len);
		FUZZ_CHECK(memchr(e.msg, '\0', sizeof(e.msg)) != NULL);
		FUZZ_CHECK(e.msg[0] != '\0');
	}
	return t;
}

/* Renders t after a prefix into a buffer of at most max bytes; checks the
 * buffer and that rendering only appended. The result is in *out. */
static int render(const struct tmpl *t, const struct tmpl_env *env,
		  enum tmpl_enc enc, size_t max, struct buf *out, int *missing)
{
	int rc;

	buf_init(out, max);
	buf_puts(out, "pre:");
	*missing = 0;
	rc = tmpl_render(t, env, enc, out, missing);
	FUZZ_CHECK(rc == 0 || rc == -1);
	FUZZ_CHECK(out->len <= out->max);
	FUZZ_CHECK(!out->data || out->data[out->len] == '\0');
	FUZZ_CHECK(*missing >= 0);
	if (rc == 0 && max >= 4)
		FUZZ_CHECK(memcmp(buf_str(out), "pre:", 4) == 0);
	return rc;
}

/* Every render of t (compiled from size bytes). */
static void render_all(const struct tmpl *t, const struct event *input_ev,
		       size_t size)
{
	struct tmpl_env env = {var_values, secret_names, secret_values,
			       secret_lens, fixed_ev, NULL, 0};
	const struct event *evs[] = {fixed_ev, input_ev, NULL};
	struct buf raw, url;
	int mraw, murl, secrets = tmpl_uses(t, TMPL_SECRETS);

	for (size_t e = 0; e < 3; e++) {
		env.event = evs[e];
		for (int masked = 0; masked < 2; masked++) {
			env.secrets = masked ? NULL : secret_values;
			FUZZ_CHECK(render(t, &env, TMPL_ENC_RAW, ROOMY, &raw,
					  &mraw) == 0);
			FUZZ_CHECK(render(t, &env, TMPL_ENC_URL, ROOMY, &url,
					  &murl) == 0);
			FUZZ_CHECK(mraw == murl);
			if (!env.event)
				FUZZ_CHECK(
				    raw.len == url.len &&
				    memcmp(raw.data, url.data, raw.len) == 0);
			if (masked && secrets)
				FUZZ_CHECK(
				    memmem(raw.data, raw.len, "<secret:", 8));
			buf_free(&raw);
			buf_free(&url);
			/* A buffer too small for most renderings. */
			render(t, &env, TMPL_ENC_URL, 4 + size % 16, &url,
			       &murl);
			buf_free(&url);
		}
	}
	env.event = NULL;
	FUZZ_CHECK(tmpl_render(NULL, &env, TMPL_ENC_RAW, &raw, NULL) == 0);
	buf_init(&raw, ROOMY);
	FUZZ_CHECK(tmpl_render(t, NULL, TMPL_ENC_URL, &raw, NULL) == 0);
	buf_free(&raw);
}

static int unhex(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* RFC 3986 unreserved: the bytes a URL encoding keeps as they are. */
static int unreserved(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
	       (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' ||
	       c == '~';
}

/*
 * "${{erathos.input}}" gives the input back, raw and percent-encoded:
 * unreserved bytes as they are, others as %XX -- except that a value made
 * of dots only is all %2E, so that event data cannot make a "." or ".."
 * path segment (src/core/tmpl.c, url_encode).
 */
static void check_encoding(const struct tmpl *in, const struct event *ev,
			   const uint8_t *src, size_t size)
{
	struct tmpl_env env = {var_values, secret_names, secret_values,
			       secret_lens, ev, NULL, 0};
	struct buf b;
	int missing;
	size_t j = 4, dots = 0;

	while (dots < size && src[dots] == '.')
		dots++;

	FUZZ_CHECK(render(in, &env, TMPL_ENC_RAW, ROOMY, &b, &missing) == 0);
	FUZZ_CHECK(b.len == size + 4 && memcmp(b.data + 4, src, size) == 0);
	buf_free(&b);
	FUZZ_CHECK(render(in, &env, TMPL_ENC_URL, ROOMY, &b, &missing) == 0);
	for (size_t i = 0; i < size; i++) {
		FUZZ_CHECK(j < b.len);
		if (unreserved(src[i]) && dots < size) {
			FUZZ_CHECK(b.data[j] == (char)src[i]);
			j++;
			continue;
		}
		FUZZ_CHECK(b.data[j] == '%' && j + 2 < b.len);
		FUZZ_CHECK(unhex(b.data[j + 1]) >= 0 &&
			   unhex(b.data[j + 2]) >= 0);
		FUZZ_CHECK(unhex(b.data[j + 1]) * 16 + unhex(b.data[j + 2]) ==
			   src[i]);
		j += 3;
	}
	FUZZ_CHECK(j == b.len);
	buf_free(&b);
}

/* A node holding a fresh compile of src (NULL if it does not compile). */
static int leaf(struct tmpl_node *n, const char *key, const char *src,
		size_t len)
{
	n->kind = TMPL_NODE_STRING;
	n->key = key ? strdup(key) : NULL;
	n->str = compile(src, len);
	return n->str ? 0 : -1;
}

static struct tmpl_node *children(struct tmpl_node *n, enum tmpl_node_kind kind,
				  size_t count)
{
	n->kind = kind;
	n->children = calloc(count, sizeof(*n->children));
	if (!n->children)
		abort();
	n->nchildren = count;
	return n->children;
}

/*
 * {"t": INPUT, "n": size, "r": REAL, "b": true, "z": null,
 *  "a": [INPUT, {"in": "${{erathos.input}}"}]}
 */
static int build_tree(struct tmpl_node *root, const uint8_t *src, size_t size)
{
	static const char in[] = "${{ erathos.INPUT }}";
	static const double reals[] = {0.1, -0.0, 1e308,    5e-324,
				       3.0, NAN,  INFINITY, -1.0 / 3.0};
	struct tmpl_node *c = children(root, TMPL_NODE_OBJECT, 6), *a;
	int rc = 0;

	rc |= leaf(&c[0], "t", (const char *)src, size);
	c[1] = (struct tmpl_node){.kind = TMPL_NODE_INTEGER,
				  .key = strdup("n"),
				  .integer = (int64_t)size - 3};
	c[2] = (struct tmpl_node){.kind = TMPL_NODE_REAL,
				  .key = strdup("r"),
				  .real = reals[size % 8]};
	c[3] = (struct tmpl_node){
	    .kind = TMPL_NODE_BOOL, .key = strdup("b"), .boolean = 1};
	c[4] = (struct tmpl_node){.kind = TMPL_NODE_NULL, .key = strdup("z")};
	c[5].key = strdup("a");
	a = children(&c[5], TMPL_NODE_ARRAY, 2);
	rc |= leaf(&a[0], NULL, (const char *)src, size);
	rc |= leaf(&children(&a[1], TMPL_NODE_OBJECT, 1)[0], "in", in,
		   sizeof(in) - 1);
	return rc;
}

/* Renders the tree; a success must be one valid JSON object, and with
 * input_ev its "a"[1]."in" member is the input when that is UTF-8. */
static void check_tree(const struct tmpl_node *root, const struct tmpl_env *env,
		       const uint8_t *src, size_t size, size_t max)
{
	struct buf b;
	json_error_t jerr;
	json_t *j, *want;
	int missing = 0;

	buf_init(&b, max);
	if (tmpl_node_render(root, env, &b, &missing) < 0) {
		FUZZ_CHECK(max < ROOMY);
		buf_free(&b);
		return;
	}
	j = json_loadb(buf_str(&b), b.len, JSON_ALLOW_NUL, &jerr);
	FUZZ_CHECK(j && json_is_object(j));
	want = json_stringn((const char *)src, size);
	if (want && env->event && event_get(env->event, "input"))
		FUZZ_CHECK(json_equal(
		    want,
		    json_object_get(json_array_get(json_object_get(j, "a"), 1),
				    "in")));
	json_decref(want);
	json_decref(j);
	buf_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char name_input[] = "input", name_job[] = "job_id";
	static const char in[] = "${{erathos.input}}";
	char *copy = malloc(size + 1);
	struct event_field fields[2] = {
	    {name_job, (char *)"0b9d5c55-6c2e-4d0a-9b6f-3f8e2a1c7d10", 36},
	    {name_input, copy, size},
	};
	struct event input_ev = {fields, 2};
	struct tmpl_env env = {var_values, secret_names, secret_values,
			       secret_lens, fixed_ev, NULL, 0};
	struct tmpl_node root = {0};
	struct tmpl *t, *tin;

	if (size > MAX_INPUT)
		size = MAX_INPUT;
	if (!copy)
		abort();
	memcpy(copy, data, size);
	copy[size] = '\0';
	tin = compile(in, sizeof(in) - 1);
	FUZZ_CHECK(tin && tmpl_uses(tin, TMPL_ERATHOS));
	check_encoding(tin, &input_ev, data, size);
	tmpl_free(tin);

	t = compile((const char *)data, size);
	if (!t)
		goto out;
	FUZZ_CHECK(memcmp(tmpl_source(t), data, size) == 0 &&
		   tmpl_source(t)[size] == '\0');
	(void)tmpl_uses(t, TMPL_VARIABLES);
	(void)tmpl_erathos_in_authority(t);
	render_all(t, &input_ev, size);
	tmpl_free(t);

	FUZZ_CHECK(build_tree(&root, data, size) == 0);
	check_tree(&root, &env, data, size, ROOMY);
	env.event = &input_ev;
	env.secrets = NULL;
	check_tree(&root, &env, data, size, ROOMY);
	check_tree(&root, &env, data, size, 8 + size % 32);
	env.event = NULL;
	check_tree(&root, &env, data, size, ROOMY);
out:
	tmpl_node_clear(&root);
	FUZZ_CHECK(root.nchildren == 0 && root.children == NULL);
	tmpl_node_clear(NULL);
	tmpl_free(NULL);
	free(copy);
	return 0;
}
