/*
 * dispatch_text — the sentences the dispatcher writes for people: an HTTP
 * failure with the server's own explanation, and durations as configured.
 *
 * DESIGN: pure functions (jansson only, to read a JSON error body), called
 * by the dispatcher's worker threads. Everything here ends up in a log
 * line and in the store's last_error, so the text is bounded, on one line,
 * and valid UTF-8; the host is named, never the URL (it may hold a secret).
 */
#include "dispatch_int.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

/* "72h", "30m", "90s" or "1500ms": the largest unit that is exact. */
void dispatch_fmt_duration(int64_t ms, char *out, size_t outlen)
{
	if (ms > 0 && ms % 3600000 == 0)
		snprintf(out, outlen, "%lldh", (long long)(ms / 3600000));
	else if (ms > 0 && ms % 60000 == 0)
		snprintf(out, outlen, "%lldm", (long long)(ms / 60000));
	else if (ms > 0 && ms % 1000 == 0)
		snprintf(out, outlen, "%llds", (long long)(ms / 1000));
	else
		snprintf(out, outlen, "%lldms", (long long)ms);
}

/*
 * Copies at most outlen-1 bytes of s, up to its first line break, with
 * control characters turned into spaces and white space trimmed. With
 * utf8 the text is known valid UTF-8 (it came from jansson) and is cut on
 * a character boundary; otherwise bytes past ASCII become '?', so nothing
 * invalid reaches the store's JSON answers.
 */
static void clean_excerpt(const char *s, size_t len, int utf8, char *out,
			  size_t outlen)
{
	size_t n = 0, i = 0;

	while (i < len &&
	       (s[i] == ' ' || s[i] == '\t' || s[i] == '\r' || s[i] == '\n'))
		i++;
	for (; i < len && s[i] != '\n' && s[i] != '\r' && n + 1 < outlen; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c < 0x20 || c == 0x7f)
			c = ' ';
		else if (c >= 0x80 && !utf8)
			c = '?';
		out[n++] = (char)c;
	}
	if (utf8 && i < len && n > 0 && ((unsigned char)s[i] & 0xc0) == 0x80)
		while (n > 0 && ((unsigned char)out[n - 1] & 0xc0) == 0x80)
			n--;
	if (utf8 && n > 0 && (unsigned char)out[n - 1] >= 0xc0)
		n--; /* a lead byte whose continuation was cut off */
	while (n > 0 && out[n - 1] == ' ')
		n--;
	out[n] = '\0';
}

static const char *json_str_at(json_t *j, const char *k1, const char *k2)
{
	json_t *v = json_object_get(j, k1);

	if (k2)
		v = json_is_object(v) ? json_object_get(v, k2) : NULL;
	return json_is_string(v) ? json_string_value(v) : NULL;
}

/* The server's own explanation: dbt Cloud's status.user_message, or the
 * usual "message"/"error"/"detail" of other APIs, or the first line. */
static void body_excerpt(const char *body, size_t len, char *out, size_t outlen)
{
	json_t *j = len ? json_loadb(body, len, 0, NULL) : NULL;
	const char *m = NULL;

	out[0] = '\0';
	if (json_is_object(j)) {
		if (!(m = json_str_at(j, "status", "user_message")) &&
		    !(m = json_str_at(j, "message", NULL)) &&
		    !(m = json_str_at(j, "error", NULL)) &&
		    !(m = json_str_at(j, "error", "message")))
			m = json_str_at(j, "detail", NULL);
	}
	if (m && m[0])
		clean_excerpt(m, strlen(m), 1, out, outlen);
	else if (len)
		clean_excerpt(body, len, 0, out, outlen);
	json_decref(j);
}

/*
 * "HTTP 401 from ab123.us1.dbt.com: Invalid token." A redirect says it was
 * not followed (its body is a browser's page, of no use here).
 */
void dispatch_http_error(int status, const char *host, const char *body,
			 size_t len, char *out, size_t outlen)
{
	char ex[200];

	if (status >= 300 && status <= 399) {
		snprintf(out, outlen,
			 "HTTP %d from %s: redirects are not followed", status,
			 host);
		return;
	}
	body_excerpt(body, len, ex, sizeof ex);
	snprintf(out, outlen, "HTTP %d from %s%s%s", status, host,
		 ex[0] ? ": " : "", ex);
}
