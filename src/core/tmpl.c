/*
 * tmpl — compiles `${{ namespace.name }}` templates and renders them.
 *
 * DESIGN: pure code. The config loader compiles every template once (one
 * thread); workers, the HTTP threads (dedup key) and --dry-run render them
 * concurrently, which is safe because rendering only reads the compiled
 * template and the environment it is given. A compiled template is a list
 * of pieces: literal runs (bytes in t->text) and references (a namespace,
 * the index the resolver gave, and the name, kept NUL-terminated in t->text
 * so that erathos names can be passed to event_get). The template owns its
 * source copy, its text and its pieces. JSON bodies (struct tmpl_node) are
 * rendered by building a jansson tree, so every string is escaped by the
 * JSON library and no value can change the structure.
 */
#include "tmpl.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "buf.h"
#include "event.h"

enum piece_kind { PIECE_TEXT, PIECE_REF };

struct piece {
	enum piece_kind kind;
	enum tmpl_ns ns;
	size_t off; /* TEXT: bytes in t->text; REF: the name in t->text */
	size_t len;
	size_t index; /* REF to variables/secrets: the resolved index */
};

struct tmpl {
	char *src; /* NUL-terminated copy of the source */
	size_t srclen;
	char *text;
	struct piece *pieces;
	size_t npieces;
	unsigned uses; /* bit (1 << ns) per namespace referenced */
	int erathos_in_authority;
};

/* The state of one compilation. */
struct compiler {
	const char *src;
	size_t len;
	tmpl_resolve_fn resolve;
	void *ctx;
	struct tmpl_error *err;
	struct buf text;
	struct piece *pieces;
	size_t npieces, cap;
	size_t lit_start; /* where the literal run being built began in text */
};

static const char *const ns_names[] = {
    [TMPL_VARIABLES] = "variables",
    [TMPL_SECRETS] = "secrets",
    [TMPL_ERATHOS] = "erathos",
    [TMPL_BATCH] = "batch",
};

#define NNS (sizeof ns_names / sizeof ns_names[0])

static int fail(struct compiler *c, size_t offset, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(struct compiler *c, size_t offset, const char *fmt, ...)
{
	va_list ap;

	if (c->err) {
		c->err->offset = offset;
		va_start(ap, fmt);
		vsnprintf(c->err->msg, sizeof(c->err->msg), fmt, ap);
		va_end(ap);
	}
	return -1;
}

static int add_piece(struct compiler *c, struct piece p)
{
	if (c->npieces == c->cap) {
		size_t cap = c->cap ? c->cap * 2 : 4;
		struct piece *np = realloc(c->pieces, cap * sizeof(*np));

		if (!np)
			return fail(c, 0, "out of memory");
		c->pieces = np;
		c->cap = cap;
	}
	c->pieces[c->npieces++] = p;
	return 0;
}

/* Ends the literal run being built, if any, as one TEXT piece. */
static int flush_literal(struct compiler *c)
{
	struct piece p = {PIECE_TEXT, TMPL_VARIABLES, c->lit_start,
			  c->text.len - c->lit_start, 0};

	if (p.len == 0)
		return 0;
	c->lit_start = c->text.len;
	return add_piece(c, p);
}

static int is_space(char ch)
{
	return ch == ' ' || ch == '\t';
}

static int is_name_char(char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
	       (ch >= '0' && ch <= '9') || ch == '_' || ch == '-';
}

/* The namespace called s (n bytes), or -1. Namespaces are lower case,
 * as Erathos writes them. */
static int ns_lookup(const char *s, size_t n)
{
	for (int k = 0; k < (int)NNS; k++)
		if (strlen(ns_names[k]) == n && memcmp(ns_names[k], s, n) == 0)
			return k;
	return -1;
}

/*
 * Checks the text between `${{` (at start) and `}}` (at end) and returns
 * the namespace, with the name's bounds in *name and *nlen. -1 with the
 * error set (pointing at the offending byte) if it is not `ns.name`.
 */
static int split_ref(struct compiler *c, size_t start, size_t end, size_t *name,
		     size_t *nlen)
{
	const char *s = c->src;
	size_t i = start + 3, ns;
	int k;

	while (i < end && is_space(s[i]))
		i++;
	while (end > i && is_space(s[end - 1]))
		end--;
	if (i == end)
		return fail(c, start,
			    "empty reference: expected "
			    "${{ namespace.name }}");
	for (ns = i; i < end && is_name_char(s[i]); i++)
		;
	if (i == end || s[i] != '.')
		return fail(c, i,
			    "expected ${{ namespace.name }} with namespace "
			    "variables, secrets or erathos");
	k = ns_lookup(s + ns, i - ns);
	if (k < 0)
		return fail(c, ns,
			    "unknown namespace \"%.*s\" (expected "
			    "variables, secrets or erathos)",
			    (int)(i - ns > 40 ? 40 : i - ns), s + ns);
	*name = ++i;
	while (i < end && is_name_char(s[i]))
		i++;
	if (i == *name)
		return fail(c, i, "empty name after \"%s.\"", ns_names[k]);
	if (i != end)
		return fail(c, i,
			    "invalid character in name (use letters, "
			    "digits, _ and -)");
	*nlen = end - *name;
	return k;
}

/* Lower-cases an erathos name in place: event fields are case-insensitive. */
static void lower(char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (s[i] >= 'A' && s[i] <= 'Z')
			s[i] = (char)(s[i] - 'A' + 'a');
}

/*
 * Compiles the reference starting with `${{` at start: finds its `}}`,
 * checks the name, asks the resolver, and adds a REF piece. *next receives
 * the offset just after the reference. 0, or -1 with the error set.
 */
static int compile_ref(struct compiler *c, size_t start, size_t *next)
{
	static const char *const what[] = {"variable", "secret",
					   "erathos field", "batch field"};
	const char *close =
	    memmem(c->src + start + 3, c->len - start - 3, "}}", 2);
	struct piece p = {PIECE_REF, TMPL_VARIABLES, 0, 0, 0};
	char rerr[sizeof(c->err->msg)] = "";
	size_t name = 0, nlen = 0;
	int ns, idx = 0;

	if (!close)
		return fail(c, start,
			    "unterminated \"${{\" (no closing \"}}\")");
	ns = split_ref(c, start, (size_t)(close - c->src), &name, &nlen);
	if (ns < 0 || flush_literal(c) < 0)
		return -1;
	p.ns = (enum tmpl_ns)ns;
	p.off = c->text.len;
	p.len = nlen;
	if (buf_append(&c->text, c->src + name, nlen) < 0 ||
	    buf_putc(&c->text, '\0') < 0)
		return fail(c, start, "out of memory");
	if (p.ns == TMPL_ERATHOS || p.ns == TMPL_BATCH)
		lower(c->text.data + p.off, nlen);
	if (c->resolve)
		idx = c->resolve(c->ctx, p.ns, c->text.data + p.off, rerr,
				 sizeof(rerr));
	else if (p.ns != TMPL_ERATHOS && p.ns != TMPL_BATCH)
		idx = -1; /* nothing is defined without a resolver */
	if (idx < 0) {
		if (rerr[0])
			return fail(c, start, "%s", rerr);
		return fail(c, start, "undefined %s \"%s\"", what[p.ns],
			    c->text.data + p.off);
	}
	p.index = (size_t)idx;
	c->lit_start = c->text.len; /* the name is not part of a literal */
	*next = (size_t)(close - c->src) + 2;
	return add_piece(c, p);
}

/*
 * 1 if event data could land in the URL's authority: the source before the
 * first erathos reference has no '/', '?' or '#' after its "//" (or, with
 * no "//", at all). A '?' or '#' ends the authority as surely as a '/'
 * (RFC 3986 section 3.2), so "https://h?x=${{erathos.y}}" is fine.
 */
static int authority_check(const char *src, size_t first)
{
	const char *slashes = memmem(src, first, "//", 2);
	size_t i = slashes ? (size_t)(slashes - src) + 2 : 0;

	for (; i < first; i++)
		if (src[i] == '/' || src[i] == '?' || src[i] == '#')
			return 0;
	return 1;
}

/* Scans the source: literal runs, `$${{` escapes and references. */
static int compile_all(struct compiler *c, struct tmpl *t)
{
	const char *s = c->src;
	size_t i = 0, first_erathos = (size_t)-1;

	while (i < c->len) {
		const char *d = memchr(s + i, '$', c->len - i);
		size_t run = d ? (size_t)(d - s) - i : c->len - i;

		if (buf_append(&c->text, s + i, run) < 0)
			return fail(c, i, "out of memory");
		i += run;
		if (i == c->len)
			break;
		if (c->len - i >= 4 && memcmp(s + i, "$${{", 4) == 0) {
			if (buf_append(&c->text, "${{", 3) < 0)
				return fail(c, i, "out of memory");
			i += 4;
		} else if (c->len - i >= 3 && memcmp(s + i, "${{", 3) == 0) {
			size_t start = i;

			if (compile_ref(c, start, &i) < 0)
				return -1;
			t->uses |= 1u << c->pieces[c->npieces - 1].ns;
			if ((c->pieces[c->npieces - 1].ns == TMPL_ERATHOS ||
			     c->pieces[c->npieces - 1].ns == TMPL_BATCH) &&
			    first_erathos == (size_t)-1)
				first_erathos = start;
		} else {
			if (buf_putc(&c->text, '$') < 0)
				return fail(c, i, "out of memory");
			i++;
		}
	}
	if (flush_literal(c) < 0)
		return -1;
	if (first_erathos != (size_t)-1)
		t->erathos_in_authority = authority_check(s, first_erathos);
	return 0;
}

struct tmpl *tmpl_compile(const char *src, size_t len, tmpl_resolve_fn resolve,
			  void *ctx, struct tmpl_error *err)
{
	struct compiler c = {src, len, resolve, ctx, err, {0}, NULL, 0, 0, 0};
	struct tmpl *t = calloc(1, sizeof(*t));

	buf_init(&c.text, (size_t)-1 / 2);
	if (err) {
		err->offset = 0;
		err->msg[0] = '\0';
	}
	if (!t || !(t->src = malloc(len + 1))) {
		fail(&c, 0, "out of memory");
		goto fail;
	}
	if (len)
		memcpy(t->src, src, len);
	t->src[len] = '\0';
	t->srclen = len;
	if (compile_all(&c, t) < 0)
		goto fail;
	t->text = buf_steal(&c.text);
	if (!t->text) {
		fail(&c, 0, "out of memory");
		goto fail;
	}
	t->pieces = c.pieces;
	t->npieces = c.npieces;
	return t;
fail:
	buf_free(&c.text);
	free(c.pieces);
	tmpl_free(t);
	return NULL;
}

int tmpl_uses(const struct tmpl *t, enum tmpl_ns ns)
{
	return t && (t->uses & (1u << ns)) != 0;
}

int tmpl_erathos_in_authority(const struct tmpl *t)
{
	return t && t->erathos_in_authority;
}

const char *tmpl_source(const struct tmpl *t)
{
	return t ? t->src : "";
}

void tmpl_free(struct tmpl *t)
{
	if (!t)
		return;
	free(t->src);
	free(t->text);
	free(t->pieces);
	free(t);
}

/* Appends n bytes of s percent-encoded: RFC 3986 unreserved characters
 * (A-Z a-z 0-9 - . _ ~) as they are, every other byte as %XX. A value made
 * of dots only is written as %2E…, so that event data can never form a
 * "." or ".." path segment that climbs out of the configured path. */
static int url_encode(struct buf *out, const char *s, size_t n)
{
	static const char hex[] = "0123456789ABCDEF";
	char chunk[192];
	size_t k = 0;
	size_t dots = 0;

	while (dots < n && s[dots] == '.')
		dots++;
	if (n > 0 && dots == n) {
		for (size_t i = 0; i < n; i++)
			if (buf_append(out, "%2E", 3) < 0)
				return -1;
		return 0;
	}

	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s[i];

		if (k + 3 > sizeof(chunk)) {
			if (buf_append(out, chunk, k) < 0)
				return -1;
			k = 0;
		}
		if ((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
		    (ch >= '0' && ch <= '9') || ch == '-' || ch == '.' ||
		    ch == '_' || ch == '~') {
			chunk[k++] = (char)ch;
		} else {
			chunk[k++] = '%';
			chunk[k++] = hex[ch >> 4];
			chunk[k++] = hex[ch & 15];
		}
	}
	return buf_append(out, chunk, k);
}

/* Appends a value of an event field, encoded as enc says. */
static int put_value(struct buf *out, const struct event_field *f,
		     enum tmpl_enc enc)
{
	if (enc == TMPL_ENC_URL)
		return url_encode(out, f->value, f->len);
	return buf_append(out, f->value, f->len);
}

/* 1 if one of the first n events of the batch has value f for name. */
static int seen_before(const struct event *const *batch, size_t n,
		       const char *name, const struct event_field *f)
{
	for (size_t i = 0; i < n; i++) {
		const struct event_field *g = event_get(batch[i], name);

		if (g && g->len == f->len && memcmp(g->value, f->value, f->len) == 0)
			return 1;
	}
	return 0;
}

/* batch.count, or batch.<name>: the distinct values across the batch in
 * arrival order, joined by ", " (encoded too in a URL); a field no event
 * of the batch has counts as missing. */
static int render_batch(const char *name, const struct tmpl_env *env,
			enum tmpl_enc enc, struct buf *out, int *missing)
{
	const struct event *const *batch = env->batch ? env->batch : &env->event;
	size_t n = env->batch ? env->nbatch : (env->event ? 1 : 0);
	int put = 0;

	if (strcmp(name, "count") == 0)
		return buf_printf(out, "%zu", n);
	for (size_t i = 0; i < n; i++) {
		const struct event_field *f = event_get(batch[i], name);

		if (!f || seen_before(batch, i, name, f))
			continue;
		if ((put++ && (enc == TMPL_ENC_URL
				   ? buf_append(out, "%2C%20", 6)
				   : buf_append(out, ", ", 2)) < 0) ||
		    put_value(out, f, enc) < 0)
			return -1;
	}
	if (!put && missing)
		(*missing)++;
	return 0;
}

/* Appends one reference's value (see tmpl_render). */
static int render_ref(const struct tmpl *t, const struct piece *p,
		      const struct tmpl_env *env, enum tmpl_enc enc,
		      struct buf *out, int *missing)
{
	const char *name = t->text + p->off;
	const struct event_field *f;

	switch (p->ns) {
	case TMPL_VARIABLES:
		if (!env->variables || !env->variables[p->index])
			return 0;
		return buf_puts(out, env->variables[p->index]);
	case TMPL_SECRETS:
		if (env->secret_names && env->secret_names[p->index])
			name = env->secret_names[p->index];
		if (!env->secrets || !env->secrets[p->index])
			return buf_printf(out, "<secret:%s>", name);
		return buf_append(out, env->secrets[p->index],
				  env->secret_lens
				      ? env->secret_lens[p->index]
				      : strlen(env->secrets[p->index]));
	case TMPL_ERATHOS:
		f = event_get(env->event, name);
		if (!f) {
			if (missing)
				(*missing)++;
			return 0;
		}
		return put_value(out, f, enc);
	case TMPL_BATCH:
		return render_batch(name, env, enc, out, missing);
	}
	return 0;
}

/* Undoes a partial rendering: out is as it was at len start. */
static void rollback(struct buf *out, size_t start)
{
	out->len = start;
	if (out->data)
		out->data[start] = '\0';
}

int tmpl_render(const struct tmpl *t, const struct tmpl_env *env,
		enum tmpl_enc enc, struct buf *out, int *missing)
{
	static const struct tmpl_env empty = {0};
	size_t start = out->len;

	if (!t)
		return 0;
	if (!env)
		env = &empty;
	for (size_t i = 0; i < t->npieces; i++) {
		const struct piece *p = &t->pieces[i];
		int rc;

		if (p->kind == PIECE_TEXT)
			rc = buf_append(out, t->text + p->off, p->len);
		else
			rc = render_ref(t, p, env, enc, out, missing);
		if (rc < 0) {
			rollback(out, start);
			return -1;
		}
	}
	return 0;
}

/* The length of the valid UTF-8 sequence at s (RFC 3629: no overlong
 * forms, no surrogates, at most U+10FFFF), or 0 if it is not one. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
	unsigned char lo = 0x80, hi = 0xbf;
	size_t len;

	if (s[0] < 0x80)
		return 1;
	if (s[0] < 0xc2 || s[0] > 0xf4)
		return 0;
	if (s[0] < 0xe0) {
		len = 2;
	} else if (s[0] < 0xf0) {
		len = 3;
		lo = s[0] == 0xe0 ? 0xa0 : 0x80;
		hi = s[0] == 0xed ? 0x9f : 0xbf;
	} else {
		len = 4;
		lo = s[0] == 0xf0 ? 0x90 : 0x80;
		hi = s[0] == 0xf4 ? 0x8f : 0xbf;
	}
	if (n < len || s[1] < lo || s[1] > hi)
		return 0;
	for (size_t i = 2; i < len; i++)
		if ((s[i] & 0xc0) != 0x80)
			return 0;
	return len;
}

/*
 * A JSON string of s. jansson refuses invalid UTF-8, which a secret read
 * from a file may be; rather than fail the delivery, each invalid byte
 * becomes U+FFFD, as a browser would show it.
 */
static json_t *json_text(const char *s, size_t n)
{
	const unsigned char *u = (const unsigned char *)s;
	json_t *j = json_stringn(s, n);
	struct buf fixed;

	if (j)
		return j;
	buf_init(&fixed, n <= (size_t)-1 / 3 ? n * 3 : (size_t)-1);
	for (size_t i = 0; i < n;) {
		size_t k = utf8_seq(u + i, n - i);

		if (buf_append(&fixed, k ? s + i : "\xef\xbf\xbd", k ? k : 3) <
		    0)
			goto out;
		i += k ? k : 1;
	}
	j = json_stringn(buf_str(&fixed), fixed.len);
out:
	buf_free(&fixed);
	return j;
}

/* The fewest significant digits that give d back exactly (at most 17). */
static int real_digits(double d)
{
	char num[40];

	for (int p = 1; p < 17; p++) {
		snprintf(num, sizeof(num), "%.*g", p, d);
		if (strtod(num, NULL) == d)
			return p;
	}
	return 17;
}

/* What building one body's jansson tree needs. */
struct node_ctx {
	const struct tmpl_env *env;
	struct buf scratch; /* one string leaf at a time */
	int *missing;
	int digits; /* real precision the whole tree needs */
};

static json_t *node_json(const struct tmpl_node *n, struct node_ctx *nc);

/* An array or object of n's children; NULL if one of them fails. */
static json_t *node_container(const struct tmpl_node *n, struct node_ctx *nc)
{
	int obj = n->kind == TMPL_NODE_OBJECT;
	json_t *j = obj ? json_object() : json_array();

	for (size_t i = 0; j && i < n->nchildren; i++) {
		const struct tmpl_node *c = &n->children[i];
		json_t *cj = node_json(c, nc);
		int rc;

		/* The _new calls take cj's reference even when they fail. */
		if (!cj)
			rc = -1;
		else if (obj)
			rc = json_object_set_new(j, c->key ? c->key : "", cj);
		else
			rc = json_array_append_new(j, cj);
		if (rc < 0) {
			json_decref(j);
			return NULL;
		}
	}
	return j;
}

static json_t *node_json(const struct tmpl_node *n, struct node_ctx *nc)
{
	int d;

	switch (n->kind) {
	case TMPL_NODE_STRING:
		buf_reset(&nc->scratch);
		if (tmpl_render(n->str, nc->env, TMPL_ENC_RAW, &nc->scratch,
				nc->missing) < 0)
			return NULL;
		return json_text(buf_str(&nc->scratch), nc->scratch.len);
	case TMPL_NODE_INTEGER: return json_integer((json_int_t)n->integer);
	case TMPL_NODE_REAL:
		if (!isfinite(n->real)) /* JSON has no NaN or Infinity */
			return json_null();
		d = real_digits(n->real);
		if (d > nc->digits)
			nc->digits = d;
		return json_real(n->real);
	case TMPL_NODE_BOOL: return json_boolean(n->boolean);
	case TMPL_NODE_NULL: return json_null();
	case TMPL_NODE_ARRAY:
	case TMPL_NODE_OBJECT: return node_container(n, nc);
	}
	return NULL;
}

static int dump_to_buf(const char *buffer, size_t size, void *data)
{
	return buf_append(data, buffer, size);
}

/*
 * Builds the tree, then lets jansson write it straight into out. Reals get
 * the fewest digits that round-trip (0.1, not 0.10000000000000001). A
 * string leaf may not be longer than the room left in out, which bounds
 * the scratch buffer too.
 */
int tmpl_node_render(const struct tmpl_node *n, const struct tmpl_env *env,
		     struct buf *out, int *missing)
{
	static const struct tmpl_env empty = {0};
	struct node_ctx nc = {env ? env : &empty, {0}, missing, 0};
	size_t start = out->len, flags = JSON_COMPACT | JSON_ENCODE_ANY;
	json_t *j;
	int rc = -1;

	buf_init(&nc.scratch, out->max - out->len);
	j = node_json(n, &nc);
	if (!j)
		goto out;
	if (nc.digits)
		flags |= JSON_REAL_PRECISION(nc.digits);
	rc = json_dump_callback(j, dump_to_buf, out, flags) < 0 ? -1 : 0;
	if (rc < 0)
		rollback(out, start);
out:
	json_decref(j);
	buf_free(&nc.scratch);
	return rc;
}

void tmpl_node_clear(struct tmpl_node *n)
{
	if (!n)
		return;
	free(n->key);
	tmpl_free(n->str);
	for (size_t i = 0; i < n->nchildren; i++)
		tmpl_node_clear(&n->children[i]);
	free(n->children);
	memset(n, 0, sizeof(*n));
}
