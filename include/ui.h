/*
 * ui — the web console's files (SPEC section 12), embedded in the binary
 * at build time (scripts/embed_ui.py writes the table from ui/), and the
 * security headers every one of them is served with.
 */
#ifndef TRIGGERD_UI_H
#define TRIGGERD_UI_H

#include <stddef.h>

struct ui_asset {
	const char *path; /* "/ui/", "/ui/app.js", ... */
	const char *type; /* Content-Type */
	const unsigned char *data;
	size_t len;
	const char *etag; /* "\"VERSION-SHA256PREFIX\"", quotes included */
};

/* The table (generated), ui_nassets entries. */
extern const struct ui_asset ui_assets[];
extern const size_t ui_nassets;

/* The asset served at path, or NULL. */
const struct ui_asset *ui_find(const char *path);

/* 1 if an If-None-Match header value names etag (a list, or "*"). */
int ui_etag_matches(const char *if_none_match, const char *etag);

/* Headers of every console answer: the page's own origin only. */
struct ui_header {
	const char *name;
	const char *value;
};
extern const struct ui_header ui_headers[];
extern const size_t ui_nheaders;

#endif
