/*
 * config_diag — the config loader's errors and warnings, and the checks
 * shared by every section that produce most of them (unknown keys with a
 * "did you mean" hint, string values, names, template references).
 *
 * DESIGN: while a file loads, every problem is recorded in its struct
 * config_ld with its position; the checks run section by section, not in
 * file order, so config_diag_export() sorts the records by position before
 * appending them to the caller's struct config_diag as
 * "FILE:LINE:COL: error: message" lines (1-based). A record without a
 * position (the file cannot be read) is "FILE: error: message". Messages
 * never contain a secret's value: callers pass names and sources only.
 * Loading thread only.
 */
#include "config_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tmpl.h"

static void diag_add(struct config_ld *ld, int warning, int line, int col,
		     const char *fmt, va_list ap)
{
	char msg[1024];
	char *text = NULL;

	vsnprintf(msg, sizeof msg, fmt, ap);
	if (line > 0) {
		if (asprintf(&text, "%s:%d:%d: %s: %s", ld->path, line, col,
			     warning ? "warning" : "error", msg) < 0)
			text = NULL;
	} else if (asprintf(&text, "%s: %s: %s", ld->path,
			    warning ? "warning" : "error", msg) < 0) {
		text = NULL;
	}
	if (warning)
		ld->nwarnings++;
	else
		ld->nerrors++;
	if (!text)
		goto oom;
	if (ld->nitems == ld->capitems) {
		size_t cap = ld->capitems ? 2 * ld->capitems : 16;
		struct config_item *p = realloc(ld->items, cap * sizeof *p);
		if (!p)
			goto oom;
		ld->items = p;
		ld->capitems = cap;
	}
	ld->items[ld->nitems] = (struct config_item){
	    .line = line,
	    .col = col,
	    .warning = warning,
	    .seq = ld->nitems,
	    .text = text,
	};
	ld->nitems++;
	return;
oom:
	free(text);
	ld->oom = 1;
	ld->nerrors++; /* a lost message must still fail the load */
}

void config_report(struct config_ld *ld, int warning, int line, int col,
		   const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	diag_add(ld, warning, line, col, fmt, ap);
	va_end(ap);
}

void config_err(struct config_ld *ld, const struct cy_node *n, const char *fmt,
		...)
{
	va_list ap;

	va_start(ap, fmt);
	diag_add(ld, 0, n ? n->line : 1, n ? n->col : 1, fmt, ap);
	va_end(ap);
}

void config_warn(struct config_ld *ld, const struct cy_node *n, const char *fmt,
		 ...)
{
	va_list ap;

	va_start(ap, fmt);
	diag_add(ld, 1, n ? n->line : 1, n ? n->col : 1, fmt, ap);
	va_end(ap);
}

/* Column of byte off inside scalar n, when its columns are known. */
static int diag_col(const struct cy_node *n, size_t off)
{
	if (n->kind != CY_SCALAR || !n->verbatim || off > n->len)
		return n->col;
	return n->text_col + (int)config_value_chars(n->text, off);
}

void config_err_off(struct config_ld *ld, const struct cy_node *n, size_t off,
		    const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	diag_add(ld, 0, n->line, diag_col(n, off), fmt, ap);
	va_end(ap);
}

void config_warn_off(struct config_ld *ld, const struct cy_node *n, size_t off,
		     const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	diag_add(ld, 1, n->line, diag_col(n, off), fmt, ap);
	va_end(ap);
}

static int diag_cmp(const void *pa, const void *pb)
{
	const struct config_item *a = pa, *b = pb;

	if (a->line != b->line)
		return a->line < b->line ? -1 : 1;
	if (a->col != b->col)
		return a->col < b->col ? -1 : 1;
	return a->seq < b->seq ? -1 : a->seq > b->seq;
}

/*
 * Moves ld's records, sorted by position, to the end of diag. Records that
 * cannot be moved for lack of memory are dropped, but the counts stay
 * right, so a load with errors still fails.
 */
void config_diag_export(struct config_ld *ld, struct config_diag *diag)
{
	if (ld->nitems)
		qsort(ld->items, ld->nitems, sizeof *ld->items, diag_cmp);
	char **lines = realloc(diag->lines,
			       (diag->nlines + ld->nitems + 1) * sizeof *lines);
	for (size_t i = 0; i < ld->nitems; i++) {
		if (lines)
			lines[diag->nlines++] = ld->items[i].text;
		else
			free(ld->items[i].text);
	}
	if (lines)
		diag->lines = lines;
	diag->nerrors += ld->nerrors;
	diag->nwarnings += ld->nwarnings;
	free(ld->items);
	ld->items = NULL;
	ld->nitems = ld->capitems = 0;
}

void config_diag_clear(struct config_diag *diag)
{
	if (!diag)
		return;
	for (size_t i = 0; i < diag->nlines; i++)
		free(diag->lines[i]);
	free(diag->lines);
	memset(diag, 0, sizeof *diag);
}

char *config_strdup(struct config_ld *ld, const char *s)
{
	char *p = strdup(s);

	if (!p)
		ld->oom = 1;
	return p;
}

void config_check_keys(struct config_ld *ld, const struct cy_node *n,
		       const char *const *allowed, size_t nallowed,
		       const char *what)
{
	for (size_t i = 0; n && n->kind == CY_MAP && i < n->n; i++) {
		const struct cy_node *k = n->keys[i];
		size_t j;
		if (k->kind != CY_SCALAR) /* reported by config_yaml.c */
			continue;
		for (j = 0; j < nallowed; j++)
			if (strcmp(k->text, allowed[j]) == 0)
				break;
		if (j < nallowed)
			continue;
		const char *hint =
		    config_value_suggest(k->text, allowed, nallowed);
		if (strcmp(k->text, "<<") == 0)
			config_err(ld, k,
				   "merge keys (<<) are not supported in %s",
				   what);
		else if (hint)
			config_err(ld, k,
				   "unknown key \"%.80s\" in %s (did you mean "
				   "\"%s\"?)",
				   k->text, what, hint);
		else
			config_err(ld, k, "unknown key \"%.80s\" in %s",
				   k->text, what);
	}
}

const char *config_string(struct config_ld *ld, const struct cy_node *n,
			  const char *what)
{
	if (n->kind != CY_SCALAR) {
		config_err(ld, n, "%s must be a string, not %s", what,
			   config_yaml_what(n));
		return NULL;
	}
	if (n->type == CY_T_NULL) {
		config_err(ld, n, "%s is missing (empty)", what);
		return NULL;
	}
	if (strlen(n->text) != n->len) {
		config_err(ld, n, "%s contains a NUL character", what);
		return NULL;
	}
	return n->text;
}

int config_name_ok(struct config_ld *ld, const struct cy_node *k,
		   const char *kind)
{
	static const char ok[] = "abcdefghijklmnopqrstuvwxyz"
				 "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-";
	if (k->kind != CY_SCALAR) /* reported by config_yaml.c */
		return 0;
	if (!k->len || strspn(k->text, ok) != k->len) {
		config_err(ld, k,
			   "invalid %s name \"%.80s\": use letters, digits, "
			   "'_' and '-'",
			   kind, k->text);
		return 0;
	}
	return 1;
}

/* What a template compiled at load may refer to. */
struct resolve_ctx {
	struct config_ld *ld;
	unsigned allow;
	const char *where;
};

static int find_name(const char *const *names, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(names[i], name) == 0)
			return (int)i;
	return -1;
}

static int resolve(void *vctx, enum tmpl_ns ns, const char *name, char *err,
		   size_t errlen)
{
	static const char *const what[] = {"variable", "secret",
					   "erathos field"};
	static const char *const plural[] = {"variables", "secrets",
					     "erathos fields"};
	struct resolve_ctx *rc = vctx;
	const struct config *cfg = rc->ld->cfg;
	const char *const *names = ns == TMPL_VARIABLES
				       ? (const char *const *)cfg->var_names
				       : cfg->secret_names;
	size_t n = ns == TMPL_VARIABLES ? cfg->nvars : cfg->nsecrets;

	if (!(rc->allow & (1u << ns))) {
		snprintf(err, errlen, "%s are not allowed in %s", plural[ns],
			 rc->where);
		return -1;
	}
	if (ns == TMPL_ERATHOS)
		return 0;
	int i = find_name(names, n, name);
	if (i >= 0)
		return i;
	const char *hint = config_value_suggest(name, names, n);
	if (hint)
		snprintf(err, errlen,
			 "undefined %s \"%.60s\" (did you mean \"%s\"?)",
			 what[ns], name, hint);
	else
		snprintf(err, errlen,
			 "undefined %s \"%.60s\" (define it under \"%s\")",
			 what[ns], name, plural[ns]);
	return -1;
}

struct tmpl *config_compile(struct config_ld *ld, const struct cy_node *n,
			    unsigned allow, const char *where)
{
	struct resolve_ctx rc = {ld, allow, where};
	struct tmpl_error err = {0, ""};

	if (n->kind != CY_SCALAR) {
		config_err(ld, n, "%s must be a string, not %s", where,
			   config_yaml_what(n));
		return NULL;
	}
	struct tmpl *t = tmpl_compile(n->text, n->len, resolve, &rc, &err);
	if (!t)
		config_err_off(ld, n, err.offset, "%s", err.msg);
	return t;
}
