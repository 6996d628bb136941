/*
 * config_diag — the config loader's errors and warnings.
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
