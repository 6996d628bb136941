/*
 * config_yaml — the config file's YAML, as a tree of nodes with positions.
 *
 * DESIGN: the only user of libyaml in triggerd. The event parser
 * (yaml_parser_parse) feeds a small builder with an explicit stack, so no
 * input can recurse deeply on the C stack. Every node keeps the 1-based
 * line and column of its first character; a scalar whose source bytes are
 * its text on one line is marked `verbatim`, so an error at a byte offset
 * inside it (a bad template reference) can point at the exact column.
 * Aliases share the anchored node (no copy, so no billion laughs in
 * memory); an anchor becomes usable when its node ends, so no cycle can be
 * built. Mapping keys must be scalars and unique. Flow collections with a
 * trailing comma (`[a, b,]`) are valid YAML but not JSON: they load, with a
 * warning, because the Erathos quickstart contains one and a user may paste
 * the trigger back into Erathos. Called by config_load() only.
 */
#include "config_int.h"

#include <stdlib.h>
#include <string.h>
#include <yaml.h>

struct yb_anchor {
	char *name;
	struct cy_node *node;
};

struct yb_level {
	struct cy_node *node;
	struct cy_node *key; /* a map's key still waiting for its value */
	char *anchor;	     /* registered when the collection ends */
	int flow;
	size_t last_end; /* byte offset after the last child */
	int nchildren;
};

struct yb {
	struct config_ld *ld;
	const char *src;
	size_t len;
	size_t *lines; /* byte offset of each line's start */
	size_t nlines;
	struct cy_doc *doc;
	struct yb_level stack[CONFIG_MAX_DEPTH];
	int depth;
	struct yb_anchor *anchors;
	size_t nanchors, capanchors;
	size_t nnodes;
	int ndocs;
};

/* Length of the line break at s[i] the way libyaml counts them (CR LF,
 * CR, LF, NEL, LS, PS), or 0. */
static size_t yb_break_len(const char *s, size_t len, size_t i)
{
	const unsigned char *u = (const unsigned char *)s;

	if (u[i] == '\r')
		return i + 1 < len && u[i + 1] == '\n' ? 2 : 1;
	if (u[i] == '\n')
		return 1;
	if (u[i] == 0xC2 && i + 1 < len && u[i + 1] == 0x85)
		return 2;
	if (u[i] == 0xE2 && i + 2 < len && u[i + 1] == 0x80 &&
	    (u[i + 2] == 0xA8 || u[i + 2] == 0xA9))
		return 3;
	return 0;
}

static int yb_index_lines(struct yb *b)
{
	size_t cap = 64, i = 0;

	b->lines = malloc(cap * sizeof *b->lines);
	if (!b->lines)
		return -1;
	/* libyaml drops a UTF-8 byte order mark before counting columns. */
	if (b->len >= 3 && memcmp(b->src, "\xEF\xBB\xBF", 3) == 0)
		i = 3;
	b->lines[b->nlines++] = i;
	while (i < b->len) {
		size_t bl = yb_break_len(b->src, b->len, i);
		if (!bl) {
			i++;
			continue;
		}
		i += bl;
		if (b->nlines == cap) {
			size_t *p = realloc(b->lines, 2 * cap * sizeof *p);
			if (!p)
				return -1;
			b->lines = p;
			cap *= 2;
		}
		b->lines[b->nlines++] = i;
	}
	return 0;
}

/* Byte offset of a libyaml mark (0-based line, column in characters). */
static size_t yb_offset(const struct yb *b, const yaml_mark_t *m)
{
	if (m->line >= b->nlines)
		return b->len;
	size_t off = b->lines[m->line];
	for (size_t c = 0; c < m->column && off < b->len; c++) {
		off++;
		while (off < b->len &&
		       ((unsigned char)b->src[off] & 0xC0) == 0x80)
			off++;
	}
	return off;
}

/* 1-based line and column of a byte offset. */
static void yb_position(const struct yb *b, size_t off, int *line, int *col)
{
	size_t lo = 0, hi = b->nlines;

	while (hi - lo > 1) {
		size_t mid = (lo + hi) / 2;
		if (b->lines[mid] <= off)
			lo = mid;
		else
			hi = mid;
	}
	*line = (int)lo + 1;
	*col =
	    (int)config_value_chars(b->src + b->lines[lo], off - b->lines[lo]) +
	    1;
}

static struct cy_node *yb_node(struct yb *b, enum cy_kind kind,
			       const yaml_mark_t *m)
{
	if (++b->nnodes > CONFIG_MAX_NODES) {
		config_report(b->ld, 0, (int)m->line + 1, (int)m->column + 1,
			      "too many YAML nodes (more than %d)",
			      CONFIG_MAX_NODES);
		return NULL;
	}
	struct cy_node *n = calloc(1, sizeof *n);
	if (!n) {
		b->ld->oom = 1;
		return NULL;
	}
	n->kind = kind;
	n->line = (int)m->line + 1;
	n->col = (int)m->column + 1;
	n->next_alloc = b->doc->all;
	b->doc->all = n;
	return n;
}

static int yb_is_int(const char *s)
{
	if (s[0] == '0' && s[1] == 'o' && s[2])
		return strspn(s + 2, "01234567") == strlen(s + 2);
	if (s[0] == '0' && s[1] == 'x' && s[2])
		return strspn(s + 2, "0123456789abcdefABCDEF") == strlen(s + 2);
	if (*s == '-' || *s == '+')
		s++;
	return *s && strspn(s, "0123456789") == strlen(s);
}

static int yb_is_float(const char *s)
{
	static const char *const special[] = {
	    ".inf",  ".Inf",  ".INF",  "+.inf", "+.Inf", "+.INF",
	    "-.inf", "-.Inf", "-.INF", ".nan",	".NaN",	 ".NAN",
	};
	for (size_t i = 0; i < sizeof special / sizeof *special; i++)
		if (strcmp(s, special[i]) == 0)
			return 1;
	if (*s == '-' || *s == '+')
		s++;
	size_t ip = strspn(s, "0123456789");
	s += ip;
	size_t fp = 0;
	if (*s == '.') {
		fp = strspn(s + 1, "0123456789");
		s += 1 + fp;
	} else if (!ip) {
		return 0;
	}
	if (!ip && !fp)
		return 0;
	if (*s == 'e' || *s == 'E') {
		s++;
		if (*s == '-' || *s == '+')
			s++;
		size_t ep = strspn(s, "0123456789");
		if (!ep)
			return 0;
		s += ep;
	}
	return *s == '\0';
}

/* The YAML 1.2 core schema's resolution of a plain, untagged scalar. */
static enum cy_type yb_resolve(const char *s, size_t len)
{
	static const char *const nulls[] = {"", "~", "null", "Null", "NULL"};
	static const char *const bools[] = {"true",  "True",  "TRUE",
					    "false", "False", "FALSE"};

	if (strlen(s) != len)
		return CY_T_STR;
	for (size_t i = 0; i < sizeof nulls / sizeof *nulls; i++)
		if (strcmp(s, nulls[i]) == 0)
			return CY_T_NULL;
	for (size_t i = 0; i < sizeof bools / sizeof *bools; i++)
		if (strcmp(s, bools[i]) == 0)
			return CY_T_BOOL;
	if (yb_is_int(s))
		return CY_T_INT;
	if (yb_is_float(s))
		return CY_T_FLOAT;
	return CY_T_STR;
}

static int yb_grow(struct yb *b, struct cy_node *p)
{
	if (p->n < p->cap)
		return 0;
	size_t cap = p->cap ? 2 * p->cap : 8;
	/* NOLINTNEXTLINE(bugprone-sizeof-expression): an array of pointers */
	struct cy_node **v = realloc(p->vals, cap * sizeof *v);
	if (!v)
		goto oom;
	p->vals = v;
	if (p->kind == CY_MAP) {
		/* NOLINTNEXTLINE(bugprone-sizeof-expression): pointers */
		struct cy_node **k = realloc(p->keys, cap * sizeof *k);
		if (!k)
			goto oom;
		p->keys = k;
	}
	p->cap = cap;
	return 0;
oom:
	b->ld->oom = 1;
	return -1;
}

/* A new key for map p: must be a scalar, and not already there. */
static void yb_check_key(struct yb *b, const struct cy_node *p,
			 const struct cy_node *k)
{
	if (k->kind != CY_SCALAR) {
		config_err(b->ld, k, "a mapping key must be a string, not %s",
			   config_yaml_what(k));
		return;
	}
	for (size_t i = 0; i < p->n; i++) {
		const struct cy_node *o = p->keys[i];
		if (o->kind == CY_SCALAR && o->len == k->len &&
		    memcmp(o->text, k->text, k->len) == 0) {
			config_err(b->ld, k,
				   "duplicate key \"%s\" (first given at line "
				   "%d, column %d)",
				   k->text, o->line, o->col);
			return;
		}
	}
}

/* Hangs n under the open collection (or makes it the root). end is the
 * byte offset just after n in the source. */
static int yb_attach(struct yb *b, struct cy_node *n, size_t end)
{
	if (b->depth == 0) {
		b->doc->root = n;
		return 0;
	}
	struct yb_level *lv = &b->stack[b->depth - 1];
	struct cy_node *p = lv->node;
	if (!p)
		return -1; /* an open level always has its node */
	lv->last_end = end;
	lv->nchildren++;
	if (p->kind == CY_MAP && !lv->key) {
		yb_check_key(b, p, n);
		lv->key = n;
		return 0;
	}
	if (yb_grow(b, p) < 0)
		return -1;
	if (p->kind == CY_MAP) {
		p->keys[p->n] = lv->key;
		lv->key = NULL;
	}
	p->vals[p->n++] = n;
	return 0;
}

static int yb_anchor(struct yb *b, const unsigned char *name, struct cy_node *n)
{
	if (!name)
		return 0;
	if (b->nanchors == b->capanchors) {
		size_t cap = b->capanchors ? 2 * b->capanchors : 8;
		struct yb_anchor *a = realloc(b->anchors, cap * sizeof *a);
		if (!a)
			goto oom;
		b->anchors = a;
		b->capanchors = cap;
	}
	char *copy = strdup((const char *)name);
	if (!copy)
		goto oom;
	b->anchors[b->nanchors].name = copy;
	b->anchors[b->nanchors++].node = n;
	return 0;
oom:
	b->ld->oom = 1;
	return -1;
}

static int yb_scalar(struct yb *b, yaml_event_t *e)
{
	struct cy_node *n = yb_node(b, CY_SCALAR, &e->start_mark);
	if (!n)
		return -1;
	n->len = e->data.scalar.length;
	n->text = malloc(n->len + 1);
	if (!n->text) {
		b->ld->oom = 1;
		return -1;
	}
	memcpy(n->text, e->data.scalar.value, n->len);
	n->text[n->len] = '\0';

	const char *tag = (const char *)e->data.scalar.tag;
	int str_tag =
	    tag && (strcmp(tag, "!") == 0 || strcmp(tag, YAML_STR_TAG) == 0);
	int plain = e->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
	n->type = plain && !str_tag ? yb_resolve(n->text, n->len) : CY_T_STR;

	/* Columns inside the scalar are known when its source is its text
	 * (plain) or its text between quotes (no escapes, one line). */
	size_t s = yb_offset(b, &e->start_mark), t = yb_offset(b, &e->end_mark);
	size_t q = plain ? 0 : 1;
	int quoted = e->data.scalar.style == YAML_SINGLE_QUOTED_SCALAR_STYLE ||
		     e->data.scalar.style == YAML_DOUBLE_QUOTED_SCALAR_STYLE;
	if ((plain || quoted) && t >= s && t - s == n->len + 2 * q &&
	    memcmp(b->src + s + q, n->text, n->len) == 0 &&
	    !memchr(n->text, '\n', n->len) && !memchr(n->text, '\r', n->len)) {
		n->verbatim = 1;
		n->text_col = n->col + (int)q;
	}
	if (yb_anchor(b, e->data.scalar.anchor, n) < 0)
		return -1;
	return yb_attach(b, n, t);
}

static int yb_alias(struct yb *b, yaml_event_t *e)
{
	const char *name = (const char *)e->data.alias.anchor;

	for (size_t i = b->nanchors; i-- > 0;)
		if (strcmp(b->anchors[i].name, name) == 0)
			return yb_attach(b, b->anchors[i].node,
					 yb_offset(b, &e->end_mark));
	config_report(b->ld, 0, (int)e->start_mark.line + 1,
		      (int)e->start_mark.column + 1,
		      "undefined alias \"*%s\" (an anchor &%s must come first)",
		      name, name);
	return -1;
}

static int yb_open(struct yb *b, yaml_event_t *e, enum cy_kind kind)
{
	if (b->depth == CONFIG_MAX_DEPTH) {
		config_report(b->ld, 0, (int)e->start_mark.line + 1,
			      (int)e->start_mark.column + 1,
			      "nesting deeper than %d levels",
			      CONFIG_MAX_DEPTH);
		return -1;
	}
	struct cy_node *n = yb_node(b, kind, &e->start_mark);
	if (!n)
		return -1;
	const unsigned char *anchor;
	int flow;
	if (kind == CY_MAP) {
		anchor = e->data.mapping_start.anchor;
		flow = e->data.mapping_start.style == YAML_FLOW_MAPPING_STYLE;
	} else {
		anchor = e->data.sequence_start.anchor;
		flow = e->data.sequence_start.style == YAML_FLOW_SEQUENCE_STYLE;
	}
	struct yb_level *lv = &b->stack[b->depth];
	memset(lv, 0, sizeof *lv);
	lv->node = n; /* NOLINT(clang-analyzer-unix.Malloc): n is on doc->all */
	lv->flow = flow;
	if (anchor && !(lv->anchor = strdup((const char *)anchor))) {
		b->ld->oom = 1;
		return -1; /* n is not leaked: every node is on b->doc->all */
	}
	b->depth++;
	return 0;
}

/* A comma between a flow collection's last entry and its closing bracket
 * (comments and white space may come between). */
static void yb_trailing_comma(struct yb *b, const struct yb_level *lv,
			      size_t close)
{
	size_t i = lv->last_end;

	if (!lv->flow || !lv->nchildren)
		return;
	while (i < close) {
		char c = b->src[i];
		if (c == '#') {
			while (i < close && !yb_break_len(b->src, b->len, i))
				i++;
		} else if (c == ',') {
			int line, col;
			yb_position(b, i, &line, &col);
			config_report(b->ld, 1, line, col,
				      "trailing comma after the last %s: YAML "
				      "accepts it, JSON does not (remove it if "
				      "this is pasted back into Erathos)",
				      lv->node->kind == CY_MAP ? "member"
							       : "item");
			return;
		} else {
			i++;
		}
	}
}

static int yb_close(struct yb *b, yaml_event_t *e)
{
	struct yb_level *lv = &b->stack[--b->depth];
	struct cy_node *n = lv->node;
	int rc = 0;

	yb_trailing_comma(b, lv, yb_offset(b, &e->start_mark));
	if (lv->anchor) {
		rc = yb_anchor(b, (const unsigned char *)lv->anchor, n);
		free(lv->anchor);
		lv->anchor = NULL;
	}
	if (rc == 0)
		rc = yb_attach(b, n, yb_offset(b, &e->end_mark));
	return rc;
}

static void yb_syntax_error(struct yb *b, const yaml_parser_t *p)
{
	int line, col;

	if (p->error == YAML_MEMORY_ERROR) {
		b->ld->oom = 1;
		return;
	}
	if (p->error == YAML_READER_ERROR) {
		yb_position(b, p->problem_offset, &line, &col);
		config_report(b->ld, 0, line, col,
			      "YAML: %s (the file must be UTF-8)",
			      p->problem ? p->problem : "cannot read");
		return;
	}
	line = (int)p->problem_mark.line + 1;
	col = (int)p->problem_mark.column + 1;
	if (p->context)
		config_report(b->ld, 0, line, col,
			      "YAML syntax error: %s (%s that starts at line "
			      "%d, column %d)",
			      p->problem ? p->problem : "invalid", p->context,
			      (int)p->context_mark.line + 1,
			      (int)p->context_mark.column + 1);
	else
		config_report(b->ld, 0, line, col, "YAML syntax error: %s",
			      p->problem ? p->problem : "invalid");
}

/* Handles one event: 0 to go on, 1 at the end of the stream, -1 on error. */
static int yb_event(struct yb *b, yaml_event_t *e)
{
	switch (e->type) {
	case YAML_STREAM_END_EVENT: return 1;
	case YAML_DOCUMENT_START_EVENT:
		if (b->ndocs++) {
			config_report(b->ld, 0, (int)e->start_mark.line + 1,
				      (int)e->start_mark.column + 1,
				      "a second YAML document: the "
				      "configuration must be one document");
			return -1;
		}
		return 0;
	case YAML_SCALAR_EVENT: return yb_scalar(b, e);
	case YAML_ALIAS_EVENT: return yb_alias(b, e);
	case YAML_SEQUENCE_START_EVENT: return yb_open(b, e, CY_SEQ);
	case YAML_MAPPING_START_EVENT: return yb_open(b, e, CY_MAP);
	case YAML_SEQUENCE_END_EVENT:
	case YAML_MAPPING_END_EVENT: return yb_close(b, e);
	default: return 0;
	}
}

int config_yaml_parse(struct config_ld *ld, const char *src, size_t len,
		      struct cy_doc *doc)
{
	struct yb b = {.ld = ld, .src = src, .len = len, .doc = doc};
	yaml_parser_t p;
	int rc = -1;

	memset(doc, 0, sizeof *doc);
	if (yb_index_lines(&b) < 0) {
		ld->oom = 1;
		free(b.lines);
		return -1;
	}
	if (!yaml_parser_initialize(&p)) {
		ld->oom = 1;
		free(b.lines);
		return -1;
	}
	yaml_parser_set_input_string(&p, (const unsigned char *)src, len);
	for (;;) {
		yaml_event_t e;
		if (!yaml_parser_parse(&p, &e)) {
			yb_syntax_error(&b, &p);
			break;
		}
		int r = yb_event(&b, &e);
		yaml_event_delete(&e);
		if (r < 0)
			break;
		if (r > 0) {
			rc = 0;
			break;
		}
	}
	yaml_parser_delete(&p);
	while (b.depth > 0)
		free(b.stack[--b.depth].anchor);
	for (size_t i = 0; i < b.nanchors; i++)
		free(b.anchors[i].name);
	free(b.anchors);
	free(b.lines);
	if (rc < 0 && ld->oom)
		config_report(ld, 0, 0, 0, "out of memory");
	if (rc < 0)
		config_yaml_free(doc);
	return rc;
}

void config_yaml_free(struct cy_doc *doc)
{
	struct cy_node *n = doc->all;

	while (n) {
		struct cy_node *next = n->next_alloc;
		free(n->text);
		free(n->keys);
		free(n->vals);
		free(n);
		n = next;
	}
	doc->all = NULL;
	doc->root = NULL;
}

const struct cy_node *config_yaml_key(const struct cy_node *n, const char *key)
{
	size_t klen = strlen(key);

	if (!n || n->kind != CY_MAP)
		return NULL;
	for (size_t i = 0; i < n->n; i++) {
		const struct cy_node *k = n->keys[i];
		if (k->kind == CY_SCALAR && k->len == klen &&
		    memcmp(k->text, key, klen) == 0)
			return k;
	}
	return NULL;
}

const struct cy_node *config_yaml_get(const struct cy_node *n, const char *key)
{
	const struct cy_node *k = config_yaml_key(n, key);

	for (size_t i = 0; k && i < n->n; i++)
		if (n->keys[i] == k)
			return n->vals[i];
	return NULL;
}

const char *config_yaml_what(const struct cy_node *n)
{
	if (n->kind == CY_MAP)
		return "a mapping";
	if (n->kind == CY_SEQ)
		return "a list";
	switch (n->type) {
	case CY_T_NULL: return "null";
	case CY_T_BOOL: return "a boolean";
	case CY_T_INT: return "an integer";
	case CY_T_FLOAT: return "a number";
	default: return "a string";
	}
}
