/*
 * config_value — the config's scalar formats: durations, sizes, integers,
 * booleans, UUIDs, listen addresses, URLs, trigger names, and the
 * "did you mean" hint for misspelt keys and names.
 *
 * DESIGN: pure functions on C strings (no I/O, no state), called by the
 * config loader on the loading thread. Every number is parsed with range
 * checks; nothing here allocates except config_value_derive_name() and the
 * host of config_value_listen().
 *
 * Formats, beyond SPEC section 3:
 * - A duration is one or more <digits><unit> groups, units ms, s, m, h, d
 *   ("1h30m" is 90 minutes), or bare digits meaning seconds.
 * - A size is digits with an optional unit, case-insensitive: B, KiB, MiB,
 *   GiB (powers of 1024) and KB, MB, GB (powers of 1000); one space may
 *   separate the number and the unit ("64 KiB").
 */
#include "config_int.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Reads the digits at *s (at least one) into *v, at most max. */
static int cv_digits(const char **s, int64_t max, int64_t *v)
{
	const char *p = *s;
	int64_t n = 0;

	if (!isdigit((unsigned char)*p))
		return -1;
	for (; isdigit((unsigned char)*p); p++) {
		int d = *p - '0';
		if (n > (max - d) / 10)
			return -1;
		n = n * 10 + d;
	}
	*s = p;
	*v = n;
	return 0;
}

int config_value_duration(const char *s, int64_t *ms)
{
	static const struct {
		const char *unit;
		int64_t ms;
	} units[] = {
	    {"ms", 1},	    {"s", 1000},     {"m", 60000},
	    {"h", 3600000}, {"d", 86400000},
	};
	const int64_t max = INT64_MAX / 4;
	int64_t total = 0, v;

	const char *p = s;
	if (cv_digits(&p, max / 1000, &v) == 0 && *p == '\0') {
		*ms = v * 1000; /* bare digits: seconds */
		return 0;
	}
	if (!*s)
		return -1;
	while (*s) {
		size_t i, ulen = 0;
		if (cv_digits(&s, max, &v) < 0)
			return -1;
		for (i = 0; i < sizeof units / sizeof *units; i++) {
			ulen = strlen(units[i].unit);
			if (strncmp(s, units[i].unit, ulen) == 0)
				break;
		}
		if (i == sizeof units / sizeof *units)
			return -1;
		s += ulen;
		if (v > (max - total) / units[i].ms)
			return -1;
		total += v * units[i].ms;
	}
	*ms = total;
	return 0;
}

int config_value_size(const char *s, uint64_t *bytes)
{
	static const struct {
		const char *unit;
		uint64_t mult;
	} units[] = {
	    {"", 1},
	    {"B", 1},
	    {"KB", 1000},
	    {"KiB", 1024},
	    {"MB", 1000000},
	    {"MiB", 1024 * 1024},
	    {"GB", 1000000000},
	    {"GiB", 1024ull * 1024 * 1024},
	};
	int64_t v;

	if (cv_digits(&s, INT64_MAX / 2, &v) < 0)
		return -1;
	if (*s == ' ' && s[1])
		s++;
	for (size_t i = 0; i < sizeof units / sizeof *units; i++) {
		if (strcasecmp(s, units[i].unit) != 0)
			continue;
		if ((uint64_t)v > (uint64_t)(INT64_MAX / 2) / units[i].mult)
			return -1;
		*bytes = (uint64_t)v * units[i].mult;
		return 0;
	}
	return -1;
}

int config_value_int(const char *s, long long min, long long max,
		     long long *out)
{
	char *end;

	if (!isdigit((unsigned char)*s) && *s != '-' && *s != '+')
		return -1;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (errno || end == s || *end || v < min || v > max)
		return -1;
	*out = v;
	return 0;
}

int config_value_bool(const char *s, int *out)
{
	if (strcasecmp(s, "true") == 0)
		*out = 1;
	else if (strcasecmp(s, "false") == 0)
		*out = 0;
	else
		return -1;
	return 0;
}

int config_value_uuid(const char *s)
{
	if (strlen(s) != 36)
		return -1;
	for (int i = 0; i < 36; i++) {
		int dash = i == 8 || i == 13 || i == 18 || i == 23;
		if (dash ? s[i] != '-' : !isxdigit((unsigned char)s[i]))
			return -1;
	}
	return 0;
}

char *config_value_derive_name(const char *desc)
{
	size_t n = 0, len = strlen(desc);
	char *out = malloc(len + 1);

	if (!out)
		return NULL;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)desc[i];
		if (c < 0x80 && isalnum(c))
			out[n++] = (char)tolower(c);
		else if (n && out[n - 1] != '-')
			out[n++] = '-'; /* a run of anything else: one '-' */
	}
	while (n && out[n - 1] == '-')
		n--;
	out[n] = '\0';
	if (!n) {
		free(out);
		return NULL;
	}
	return out;
}

/* Optimal string alignment distance, case-insensitive; words over 63
 * bytes count as far from everything. */
static size_t cv_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	size_t d[64][64];

	if (la > 63 || lb > 63)
		return SIZE_MAX;
	for (size_t i = 0; i <= la; i++)
		d[i][0] = i;
	for (size_t j = 0; j <= lb; j++)
		d[0][j] = j;
	for (size_t i = 1; i <= la; i++) {
		for (size_t j = 1; j <= lb; j++) {
			int ca = tolower((unsigned char)a[i - 1]);
			int cb = tolower((unsigned char)b[j - 1]);
			size_t v = d[i - 1][j - 1] + (ca != cb);
			if (d[i - 1][j] + 1 < v)
				v = d[i - 1][j] + 1;
			if (d[i][j - 1] + 1 < v)
				v = d[i][j - 1] + 1;
			if (i > 1 && j > 1 &&
			    ca == tolower((unsigned char)b[j - 2]) &&
			    cb == tolower((unsigned char)a[i - 2]) &&
			    d[i - 2][j - 2] + 1 < v)
				v = d[i - 2][j - 2] + 1;
			d[i][j] = v;
		}
	}
	return d[la][lb];
}

const char *config_value_suggest(const char *word, const char *const *cands,
				 size_t n)
{
	size_t wlen = strlen(word);
	size_t limit = wlen <= 3 ? 1 : wlen <= 6 ? 2 : 3;
	const char *best = NULL;
	size_t bestd = SIZE_MAX;

	for (size_t i = 0; i < n; i++) {
		size_t dist = cv_distance(word, cands[i]);
		if (dist <= limit && dist < bestd) {
			best = cands[i];
			bestd = dist;
		}
	}
	return best;
}

static int cv_port(const char *s, int *port)
{
	long long v;

	if (!isdigit((unsigned char)*s) ||
	    config_value_int(s, 1, 65535, &v) < 0)
		return -1;
	*port = (int)v;
	return 0;
}

int config_value_listen(const char *s, char **host, int *port, char *err,
			size_t errlen)
{
	const char *colon, *h = s;
	size_t hlen;

	if (*s == '[') {
		const char *close = strchr(s, ']');
		if (!close || close[1] != ':') {
			snprintf(err, errlen, "expected \"[address]:port\"");
			return -1;
		}
		h = s + 1;
		hlen = (size_t)(close - h);
		colon = close + 1;
	} else {
		colon = strrchr(s, ':');
		if (!colon) {
			snprintf(
			    err, errlen,
			    "expected \"host:port\", e.g. \"0.0.0.0:8080\"");
			return -1;
		}
		if (memchr(s, ':', (size_t)(colon - s))) {
			snprintf(err, errlen,
				 "an IPv6 address must be in brackets, e.g. "
				 "\"[::1]:8080\"");
			return -1;
		}
		hlen = (size_t)(colon - s);
	}
	if (cv_port(colon + 1, port) < 0) {
		snprintf(err, errlen,
			 "the port must be a number from 1 to 65535");
		return -1;
	}
	char *copy = strndup(h, hlen);
	if (!copy) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	struct in6_addr a6;
	if (!hlen || (*s == '[' ? inet_pton(AF_INET6, copy, &a6) != 1
				: strspn(copy, "abcdefghijklmnopqrstuvwxyz"
					       "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
					       "0123456789.-") != hlen)) {
		snprintf(err, errlen,
			 "\"%s\" is not a valid address to listen on", copy);
		free(copy);
		return -1;
	}
	*host = copy;
	return 0;
}

/* Checks host[0..len) of an URL's authority and copies it, lower case. */
static int cv_host(const char *h, size_t len, int bracketed, char *host,
		   size_t hostlen, char *err, size_t errlen)
{
	const char *ok = bracketed
			     ? "0123456789abcdefABCDEF:.%"
			     : "abcdefghijklmnopqrstuvwxyz"
			       "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~%";
	if (!len) {
		snprintf(err, errlen, "the URL has no host");
		return -1;
	}
	for (size_t i = 0; i < len; i++) {
		if (!h[i] || !strchr(ok, h[i])) {
			snprintf(err, errlen,
				 "invalid character '%c' in the URL's host",
				 isprint((unsigned char)h[i]) ? h[i] : '?');
			return -1;
		}
	}
	snprintf(host, hostlen, "%.*s", (int)len, h);
	for (char *p = host; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	return 0;
}

/* Checks an URL's authority a[0..alen) (userinfo dropped): a host, then
 * an optional port. */
static int cv_authority(const char *a, size_t alen, char *host, size_t hostlen,
			char *err, size_t errlen)
{
	const char *end = a + alen, *port = NULL;
	int rc;

	if (*a == '[') {
		const char *close = memchr(a, ']', alen);
		if (!close || (close + 1 < end && close[1] != ':')) {
			snprintf(err, errlen,
				 "invalid IPv6 address in the URL's host");
			return -1;
		}
		rc = cv_host(a + 1, (size_t)(close - a - 1), 1, host, hostlen,
			     err, errlen);
		port = close + 1 < end ? close + 2 : NULL;
	} else {
		const char *colon = memchr(a, ':', alen);
		rc = cv_host(a, colon ? (size_t)(colon - a) : alen, 0, host,
			     hostlen, err, errlen);
		port = colon ? colon + 1 : NULL;
	}
	if (rc < 0 || !port)
		return rc;
	char digits[8];
	size_t plen = (size_t)(end - port);
	int p;
	snprintf(digits, sizeof digits, "%.*s", (int)(plen < 7 ? plen : 7),
		 port);
	if (plen > 5 || cv_port(digits, &p) < 0) {
		snprintf(err, errlen, "invalid port in the URL (1 to 65535)");
		return -1;
	}
	return 0;
}

int config_value_url(const char *url, char *host, size_t hostlen, char *err,
		     size_t errlen)
{
	const char *a;

	host[0] = '\0';
	if (strncasecmp(url, "http://", 7) == 0) {
		a = url + 7;
	} else if (strncasecmp(url, "https://", 8) == 0) {
		a = url + 8;
	} else {
		snprintf(err, errlen,
			 "the URL must start with http:// or https://");
		return -1;
	}
	for (const char *p = url; *p; p++) {
		if ((unsigned char)*p <= ' ' || *p == 0x7f) {
			snprintf(err, errlen,
				 "the URL contains white space or a control "
				 "character (percent-encode it)");
			return -1;
		}
	}
	size_t alen = strcspn(a, "/?#");
	/* A masked secret in the authority cannot be checked further. */
	if (memmem(a, alen, "<secret:", 8))
		return 0;
	const char *at = NULL;
	for (const char *p = a; p < a + alen; p++)
		if (*p == '@')
			at = p;
	if (at) {
		alen -= (size_t)(at + 1 - a);
		a = at + 1;
	}
	return cv_authority(a, alen, host, hostlen, err, errlen);
}

long config_value_placeholder(const char *s, size_t len)
{
	for (size_t i = 0; i + 2 < len; i++) {
		if (s[i] != '<' || !isupper((unsigned char)s[i + 1]))
			continue;
		unsigned char c = (unsigned char)s[i + 2];
		if (isupper(c) || isdigit(c) || c == '_')
			return (long)i;
	}
	return -1;
}

size_t config_value_chars(const char *s, size_t n)
{
	size_t c = 0;

	for (size_t i = 0; i < n; i++)
		if (((unsigned char)s[i] & 0xC0) != 0x80)
			c++;
	return c;
}
