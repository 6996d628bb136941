/*
 * ui — lookup of the embedded console files and their headers (see
 * include/ui.h). The files themselves are in the generated ui_assets.c.
 *
 * DESIGN: the page is one HTML file, one script and one style sheet, all
 * from this origin, so the Content-Security-Policy allows 'self' and
 * nothing else: no inline script or style, no framing, no form posts, no
 * <base>. Caching: the files change only with the binary, so each has an
 * ETag made of the version and its digest and is served with
 * "Cache-Control: no-cache" (a browser revalidates every time and gets a
 * 304 until the daemon is upgraded), never a stale page after an upgrade.
 */
#include "ui.h"

#include <string.h>

const struct ui_header ui_headers[] = {
	{"Content-Security-Policy",
	 "default-src 'none'; script-src 'self'; style-src 'self'; "
	 "connect-src 'self'; img-src 'self'; base-uri 'none'; "
	 "form-action 'none'; frame-ancestors 'none'"},
	{"X-Content-Type-Options", "nosniff"},
	{"Referrer-Policy", "no-referrer"},
	{"X-Frame-Options", "DENY"},
	{"Cross-Origin-Opener-Policy", "same-origin"},
	{"Cross-Origin-Resource-Policy", "same-origin"},
	{"Cache-Control", "no-cache"},
};
const size_t ui_nheaders = sizeof ui_headers / sizeof ui_headers[0];

const struct ui_asset *ui_find(const char *path)
{
	for (size_t i = 0; path && i < ui_nassets; i++)
		if (strcmp(ui_assets[i].path, path) == 0)
			return &ui_assets[i];
	return NULL;
}

int ui_etag_matches(const char *inm, const char *etag)
{
	size_t n = strlen(etag);

	if (!inm)
		return 0;
	while (*inm) {
		while (*inm == ' ' || *inm == '\t' || *inm == ',')
			inm++;
		if (*inm == '*')
			return 1;
		if (strncmp(inm, "W/", 2) == 0)
			inm += 2; /* weak comparison, as for GET (RFC 9110 13.1.2) */
		size_t len = strcspn(inm, ",");
		while (len && (inm[len - 1] == ' ' || inm[len - 1] == '\t'))
			len--;
		if (len == n && strncmp(inm, etag, n) == 0)
			return 1;
		inm += strcspn(inm, ",");
	}
	return 0;
}
