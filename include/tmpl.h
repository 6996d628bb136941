/*
 * tmpl — `${{namespace.name}}` templates, compiled once, rendered often.
 *
 * DESIGN: pure code (no I/O, no locks, no globals). A template is compiled
 * when the config is loaded into a list of literal pieces and references;
 * rendering only copies bytes, it never parses. References to `variables`
 * and `secrets` are resolved to indices at compile time through a callback
 * (so an undefined name is a config error with its position); `erathos`
 * references keep the lower-cased field name and are looked up in the event
 * at render time (a missing field renders as ""). `batch` references
 * (SPEC section 9) read the delivery's batch of events: `batch.count`, and
 * `batch.<field>`, the distinct values of an event field across the batch
 * in arrival order, joined by ", ". `$${{` is a literal `${{`.
 * Spaces are allowed inside the braces: `${{ erathos.job_id }}`.
 *
 * Encoding: event values are untrusted. In a URL they are percent-encoded
 * (RFC 3986 unreserved characters kept); in a JSON body every string leaf is
 * built with jansson, so no value can break the structure. Variables and
 * secrets are operator configuration and go in as they are.
 */
#ifndef TRIGGERD_TMPL_H
#define TRIGGERD_TMPL_H

#include <stddef.h>
#include <stdint.h>

struct buf;
struct event;

enum tmpl_ns { TMPL_VARIABLES, TMPL_SECRETS, TMPL_ERATHOS, TMPL_BATCH };

/* How event (erathos) values are written. */
enum tmpl_enc {
	TMPL_ENC_RAW, /* as they are (header values, string bodies, dedup key) */
	TMPL_ENC_URL, /* percent-encoded */
};

/*
 * Resolves a reference at compile time. For TMPL_VARIABLES and TMPL_SECRETS
 * returns the index of the name, for TMPL_ERATHOS and TMPL_BATCH any value
 * >= 0; returns -1
 * and writes a message (e.g. `undefined variable "x"`, `secrets are not
 * allowed in events.dedup_key`) into err to refuse it.
 */
typedef int (*tmpl_resolve_fn)(void *ctx, enum tmpl_ns ns, const char *name,
			       char *err, size_t errlen);

struct tmpl_error {
	size_t offset; /* byte offset in the source where the problem starts */
	char msg[200];
};

/* What a render may read. Arrays are indexed by the resolved indices. */
struct tmpl_env {
	const char *const *variables;   /* values, NUL-terminated */
	const char *const *secret_names;
	const char *const *secrets;     /* values; NULL: render "<secret:NAME>" */
	const size_t *secret_lens;
	const struct event *event;      /* NULL: every erathos field missing */
	/* the batch in arrival order, event the last of them; NULL, 0: the
	 * batch is event alone */
	const struct event *const *batch;
	size_t nbatch;
};

struct tmpl;

/*
 * Compiles src (len bytes, may be unterminated). Returns NULL and fills err
 * on an unknown namespace, an unterminated `${{`, an empty or malformed
 * name, or a reference the resolver refuses. The caller frees the result
 * with tmpl_free().
 */
struct tmpl *tmpl_compile(const char *src, size_t len, tmpl_resolve_fn resolve,
			  void *ctx, struct tmpl_error *err);

/*
 * Appends the rendering to out. Event values are encoded as enc says.
 * If missing is not NULL, adds to it the number of erathos references the
 * event lacks. 0, or -1 if out reached its maximum.
 */
int tmpl_render(const struct tmpl *t, const struct tmpl_env *env,
		enum tmpl_enc enc, struct buf *out, int *missing);

/* 1 if t has at least one reference into ns, else 0. */
int tmpl_uses(const struct tmpl *t, enum tmpl_ns ns);

/* 1 if the text before t's first event reference (erathos or batch)
 * contains no '/' after
 * "scheme://" — i.e. event data could land in a URL's authority (host,
 * port, user). Used by the config to refuse such URLs. */
int tmpl_erathos_in_authority(const struct tmpl *t);

/* The source text as compiled (NUL-terminated). Owned by t. */
const char *tmpl_source(const struct tmpl *t);

void tmpl_free(struct tmpl *t); /* NULL is a no-op */

/*
 * A JSON body template: a tree built by the config loader from YAML (or
 * JSON in flow style). Strings are templates; numbers, booleans and null
 * are kept as they are; object keys are literal.
 */
enum tmpl_node_kind {
	TMPL_NODE_STRING,
	TMPL_NODE_INTEGER,
	TMPL_NODE_REAL,
	TMPL_NODE_BOOL,
	TMPL_NODE_NULL,
	TMPL_NODE_ARRAY,
	TMPL_NODE_OBJECT,
};

struct tmpl_node {
	enum tmpl_node_kind kind;
	char *key;           /* member name when the parent is an object */
	struct tmpl *str;    /* TMPL_NODE_STRING */
	int64_t integer;     /* TMPL_NODE_INTEGER */
	double real;         /* TMPL_NODE_REAL */
	int boolean;         /* TMPL_NODE_BOOL */
	struct tmpl_node *children; /* ARRAY / OBJECT, in order */
	size_t nchildren;
};

/*
 * Appends the node rendered as compact JSON (jansson's JSON_COMPACT, keys
 * in their configured order) to out. Each string leaf is rendered with
 * TMPL_ENC_RAW and then encoded by jansson. 0, or -1 if out is full or
 * memory ran out.
 */
int tmpl_node_render(const struct tmpl_node *n, const struct tmpl_env *env,
		     struct buf *out, int *missing);

/* Frees what n holds, recursively (not n itself). */
void tmpl_node_clear(struct tmpl_node *n);

#endif
