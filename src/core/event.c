/*
 * event — parses the JSON body of an Erathos job-finished event.
 *
 * DESIGN: pure code, called by the HTTP threads for every POST /v1/events
 * (and by --dry-run), so it allocates little: jansson builds its tree, then
 * one pass copies every field's lower-case name and text value into a
 * single arena, and one more malloc holds struct event with its field array.
 * The arena and the fields belong to the event; event_free() releases both.
 * Case-insensitive duplicate keys are found with a small open-addressing
 * table local to the call, so a 1024-field body costs O(n), not O(n^2).
 * No globals, no locks: safe from any thread.
 */
#include "event.h"

#include <inttypes.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

/* struct event as allocated here: the public part, then what it owns. */
struct event_block {
	struct event ev;
	char *arena;
	struct event_field fields[];
};

/* A growable byte arena; fields keep offsets until it stops moving. */
struct arena {
	char *p;
	size_t len;
	size_t cap;
};

static int arena_reserve(struct arena *a, size_t n)
{
	size_t cap;
	char *p;

	if (a->cap - a->len >= n)
		return 0;
	cap = a->cap ? a->cap : 512;
	while (cap - a->len < n) {
		if (cap > SIZE_MAX / 2)
			return -1;
		cap *= 2;
	}
	p = realloc(a->p, cap);
	if (!p)
		return -1;
	a->p = p;
	a->cap = cap;
	return 0;
}

/* Appends n bytes and a NUL; returns the offset of the copy, or -1. */
static int arena_add(struct arena *a, const char *s, size_t n, size_t *off)
{
	if (n == SIZE_MAX || arena_reserve(a, n + 1) < 0)
		return -1;
	*off = a->len;
	if (n)
		memcpy(a->p + a->len, s, n);
	a->p[a->len + n] = '\0';
	a->len += n + 1;
	return 0;
}

static int json_to_arena(const char *buffer, size_t size, void *data)
{
	struct arena *a = data;

	if (arena_reserve(a, size) < 0)
		return -1;
	memcpy(a->p + a->len, buffer, size);
	a->len += size;
	return 0;
}

/* ASCII-only lower case: field names are compared byte for byte after this,
 * independently of the locale. */
static char fold(char c)
{
	return (char)((c >= 'A' && c <= 'Z') ? c - 'A' + 'a' : c);
}

/*
 * 1 if the JSON text nests objects and arrays deeper than max levels,
 * else 0. Checked on the text, before jansson parses it: jansson's parser
 * recurses once per level (up to 2048), which a connection thread's small
 * stack must never have to afford for a hostile body.
 */
static int too_deep(const char *s, size_t len, int max)
{
	int depth = 0, in_string = 0;

	for (size_t i = 0; i < len; i++) {
		char c = s[i];
		if (in_string) {
			if (c == '\\')
				i++;
			else if (c == '"')
				in_string = 0;
		} else if (c == '"') {
			in_string = 1;
		} else if (c == '[' || c == '{') {
			if (++depth > max)
				return 1;
		} else if (c == ']' || c == '}') {
			depth--;
		}
	}
	return 0;
}

/*
 * Numbers jansson cannot hold. jansson refuses an integer outside int64
 * ("too big integer") and a real that overflows a double ("real number
 * overflow"), yet both are valid JSON. Before parsing, such a number in a
 * value position is rewritten into a string: BIG_MARK followed by the
 * number's text, so the text is kept as written. Top-level values are
 * recognised by their position among the object's values (exact); inside
 * a nested object or array the compact dump gets the number back by
 * unquoting every "\u0000<number>" — done only when no string of the
 * body could itself be NUL followed by a number character (else the
 * marker is left out and such nested numbers stay quoted).
 */
struct bignums {
	char *text;     /* the rewritten body, or NULL if nothing was big */
	size_t len;
	size_t mark;    /* 1 with the NUL marker, 0 without */
	size_t *top;    /* ordinals of top-level values that were big */
	size_t ntop;
};

static void bignums_free(struct bignums *b)
{
	free(b->text);
	free(b->top);
}

/* Length of a JSON number at s (RFC 8259 grammar) ending at a delimiter,
 * or 0. */
static size_t number_len(const char *s, size_t n)
{
	size_t i = 0;

#define DIGITS() while (i < n && s[i] >= '0' && s[i] <= '9') i++
	if (i < n && s[i] == '-')
		i++;
	if (i < n && s[i] == '0')
		i++;
	else if (i < n && s[i] >= '1' && s[i] <= '9')
		DIGITS();
	else
		return 0;
	if (i < n && s[i] == '.') {
		size_t d = ++i;
		DIGITS();
		if (i == d)
			return 0;
	}
	if (i < n && (s[i] == 'e' || s[i] == 'E')) {
		i++;
		if (i < n && (s[i] == '+' || s[i] == '-'))
			i++;
		size_t d = i;
		DIGITS();
		if (i == d)
			return 0;
	}
#undef DIGITS
	if (i < n && !strchr(" \t\r\n,]}", s[i]))
		return 0;
	return i;
}

/* 1 if the number of n bytes at s is one jansson refuses. */
static int number_big(const char *s, size_t n)
{
	char small[64], *t;
	int big;

	if (!memchr(s, '.', n) && !memchr(s, 'e', n) && !memchr(s, 'E', n)) {
		size_t neg = s[0] == '-', d = n - neg;
		if (d != 19)
			return d > 19;
		return memcmp(s + neg, neg ? "9223372036854775808"
					   : "9223372036854775807", 19) > 0;
	}
	t = n < sizeof small ? small : malloc(n + 1);
	if (!t)
		return 0; /* jansson will answer for it */
	memcpy(t, s, n);
	t[n] = '\0';
	big = isinf(strtod(t, NULL));
	if (t != small)
		free(t);
	return big;
}

static int grow_top(struct bignums *b, size_t *cap, size_t ord)
{
	if (b->ntop == *cap) {
		size_t nc = *cap ? *cap * 2 : 8;
		size_t *p = realloc(b->top, nc * sizeof *p);
		if (!p)
			return -1;
		b->top = p;
		*cap = nc;
	}
	b->top[b->ntop++] = ord;
	return 0;
}

/*
 * Fills b for the body (see above); b->text stays NULL when no number
 * needs it. Expects nesting already bounded by too_deep(). 0, or -1 out
 * of memory.
 */
static int bignums_scan(const char *s, size_t len, struct bignums *b)
{
	char stack[EVENT_MAX_DEPTH + 2]; /* '{' or '[' per open level */
	int depth = 0, after_value_sep = 1; /* top level starts a value */
	size_t ord = 0, cap = 0, tcap = 0, copied = 0;
	int forged = 0;

	memset(b, 0, sizeof *b);
	/* A string with NUL then a number character could pass for a
	 * marker in a nested dump: then no marker is used. */
	for (size_t i = 0; i + 6 < len && !forged; i++)
		if (s[i] == '\\' && memcmp(s + i + 1, "u0000", 5) == 0 &&
		    strchr("-0123456789", s[i + 6]) && s[i + 6])
			forged = 1;
	b->mark = forged ? 0 : 1;
	for (size_t i = 0; i < len; i++) {
		char c = s[i];
		if (c == '"') {
			for (i++; i < len && s[i] != '"'; i++)
				if (s[i] == '\\')
					i++;
			after_value_sep = 0;
		} else if (c == '{' || c == '[') {
			if (depth < EVENT_MAX_DEPTH + 1)
				stack[depth] = c;
			depth++;
			after_value_sep = c == '[';
		} else if (c == '}' || c == ']') {
			depth--;
			after_value_sep = 0;
		} else if (c == ':') {
			after_value_sep = 1;
			if (depth == 1)
				ord++;
		} else if (c == ',') {
			after_value_sep = depth >= 1 && depth <= EVENT_MAX_DEPTH + 1 &&
					  stack[depth - 1] == '[';
		} else if (c == '-' || (c >= '0' && c <= '9')) {
			size_t n = number_len(s + i, len - i);
			if (n && after_value_sep && number_big(s + i, n)) {
				/* copy what precedes, then "\u0000N" */
				size_t need = (i - copied) + n + 8;
				if (b->len + need > tcap) {
					size_t nc = tcap ? tcap : len + 64;
					while (nc < b->len + need)
						nc *= 2;
					char *p = realloc(b->text, nc);
					if (!p)
						return -1;
					b->text = p;
					tcap = nc;
				}
				memcpy(b->text + b->len, s + copied, i - copied);
				b->len += i - copied;
				memcpy(b->text + b->len, b->mark ? "\"\\u0000" : "\"",
				       b->mark ? 7 : 1);
				b->len += b->mark ? 7 : 1;
				memcpy(b->text + b->len, s + i, n);
				b->len += n;
				b->text[b->len++] = '"';
				copied = i + n;
				if (depth == 1 && ord > 0 &&
				    grow_top(b, &cap, ord - 1) < 0)
					return -1;
			}
			if (n)
				i += n - 1;
			after_value_sep = 0;
		} else if (c != ' ' && c != '\t' && c != '\r' && c != '\n') {
			after_value_sep = 0;
		}
	}
	if (b->text) {
		char *p = realloc(b->text, b->len + (len - copied) + 1);
		if (!p)
			return -1;
		b->text = p;
		memcpy(b->text + b->len, s + copied, len - copied);
		b->len += len - copied;
		b->text[b->len] = '\0';
	}
	return 0;
}

/* Unquotes every "\u0000<number>" that a nested dump at a->p + off
 * holds (see bignums above); the arena only shrinks. */
static void unmark_dump(struct arena *a, size_t off)
{
	char *p = a->p + off, *end = a->p + a->len, *w = p;

	while (p < end) {
		if (end - p > 8 && memcmp(p, "\"\\u0000", 7) == 0) {
			size_t n = strspn(p + 7, "-+.0123456789eE");
			if (n && p + 7 + n < end && p[7 + n] == '"') {
				memmove(w, p + 7, n);
				w += n;
				p += 7 + n + 1;
				continue;
			}
		}
		if (*p == '"') { /* copy a whole string: markers start one */
			char *q = p + 1;
			while (q < end && *q != '"')
				q += *q == '\\' ? 2 : 1;
			q = q < end ? q + 1 : end;
			memmove(w, p, (size_t)(q - p));
			w += q - p;
			p = q;
			continue;
		}
		*w++ = *p++;
	}
	a->len = (size_t)(w - a->p);
}

/*
 * Appends v's text form to the arena (see event.h) and NUL-terminates it;
 * *off and *len receive where it is. 0, or -1 out of memory.
 */
static int value_text(struct arena *a, const json_t *v, size_t *off,
		      size_t *len, int unmark)
{
	char num[40];
	int n = 0;
	double d;

	switch (json_typeof(v)) {
	case JSON_STRING:
		*len = json_string_length(v);
		return arena_add(a, json_string_value(v), *len, off);
	case JSON_INTEGER:
		n = snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT,
			     json_integer_value(v));
		break;
	case JSON_REAL:
		d = json_real_value(v);
		/* 12.0 means the integer 12 to a rule or a URL. The bounds
		 * are exact powers of two, so the cast cannot overflow. */
		if (d == floor(d) && d >= -9223372036854775808.0 &&
		    d < 9223372036854775808.0)
			n = snprintf(num, sizeof(num), "%" PRId64, (int64_t)d);
		else
			n = snprintf(num, sizeof(num), "%.17g", d);
		break;
	case JSON_TRUE: n = snprintf(num, sizeof(num), "true"); break;
	case JSON_FALSE: n = snprintf(num, sizeof(num), "false"); break;
	default: /* object or array: compact JSON */
		*off = a->len;
		if (json_dump_callback(v, json_to_arena, a,
				       JSON_COMPACT | JSON_ENCODE_ANY) < 0)
			return -1;
		if (unmark)
			unmark_dump(a, *off);
		*len = a->len - *off;
		if (arena_reserve(a, 1) < 0)
			return -1;
		a->p[a->len++] = '\0';
		return 0;
	}
	*len = (size_t)n;
	return arena_add(a, num, *len, off);
}

static uint32_t fnv1a(const char *s, size_t n)
{
	uint32_t h = 2166136261u;

	for (size_t i = 0; i < n; i++)
		h = (h ^ (unsigned char)s[i]) * 16777619u;
	return h;
}

/*
 * Folds every key of obj into the arena (offsets in names[]) and fails
 * with a message if two of them fold to the same name. Uses a local
 * open-addressing table of indices (size a power of two, at least twice
 * the number of keys). 0, or -1 with err filled.
 */
static int fold_keys(struct arena *a, json_t *obj, size_t nkeys, size_t *names,
		     char *err, size_t errlen)
{
	size_t tsize = 16, i = 0, j;
	size_t small[64], *table = small; /* no malloc for usual events */
	const char *key;
	size_t klen;
	json_t *v;
	int rc = -1;

	while (tsize < nkeys * 2)
		tsize *= 2;
	if (tsize > sizeof(small) / sizeof(small[0]))
		table = malloc(tsize * sizeof(*table));
	if (!table) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	memset(table, 0xff, tsize * sizeof(*table)); /* SIZE_MAX: empty */
	json_object_keylen_foreach(obj, key, klen, v)
	{
		char *dst;

		if (arena_add(a, key, klen, &names[i]) < 0) {
			snprintf(err, errlen, "out of memory");
			goto out;
		}
		dst = a->p + names[i];
		for (size_t k = 0; k < klen; k++)
			dst[k] = fold(dst[k]);
		for (j = fnv1a(dst, klen) & (tsize - 1); table[j] != SIZE_MAX;
		     j = (j + 1) & (tsize - 1)) {
			if (strcmp(a->p + names[table[j]], dst) == 0) {
				snprintf(err, errlen,
					 "field \"%.64s\" is given twice "
					 "(keys are case-insensitive)",
					 dst);
				goto out;
			}
		}
		table[j] = i++;
	}
	rc = 0;
out:
	if (table != small)
		free(table);
	return rc;
}

/*
 * Makes a message that may quote the input safe to log and to put in a
 * JSON answer: control characters and every non-ASCII byte become '?'
 * (a quote cut at 64 bytes could end inside a UTF-8 sequence).
 */
static void sanitize(char *s, size_t len)
{
	if (!len)
		return;
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || (unsigned char)*s >= 0x7f)
			*s = '?';
}

/*
 * Builds the event from a parsed top-level object: names and values go
 * into one arena, null values are dropped, and offsets become pointers
 * once the arena has stopped moving. NULL with err filled on failure.
 */
static struct event *build(json_t *obj, const struct bignums *big, char *err,
			    size_t errlen)
{
	size_t next_big = 0, pos = 0;
	size_t nkeys = json_object_size(obj), n = 0, i = 0;
	struct arena a = {0};
	struct event_block *eb = NULL;
	size_t *names = NULL, *values;
	const char *key;
	json_t *v;

	/* names[i]: offset of key i; values[n]: offset of kept value n. */
	names = calloc((nkeys ? nkeys : 1) * 2, sizeof(*names));
	eb = malloc(sizeof(*eb) + nkeys * sizeof(eb->fields[0]));
	if (!names || !eb)
		goto oom;
	values = names + nkeys;
	if (fold_keys(&a, obj, nkeys, names, err, errlen) < 0)
		goto fail;
	json_object_foreach(obj, key, v)
	{
		/* a big number kept as text: drop the marker */
		int is_big = next_big < big->ntop && big->top[next_big] == pos;
		pos++;
		if (is_big)
			next_big++;
		if (json_is_null(v)) { /* null: the field is absent */
			i++;
			continue;
		}
		names[n] = names[i++]; /* n <= i: compacting in place is safe */
		if (is_big && json_is_string(v)) {
			eb->fields[n].len = json_string_length(v) - big->mark;
			if (arena_add(&a, json_string_value(v) + big->mark,
				      eb->fields[n].len, &values[n]) < 0)
				goto oom;
		} else if (value_text(&a, v, &values[n], &eb->fields[n].len,
				      big->text && big->mark) < 0) {
			goto oom;
		}
		n++;
	}
	for (i = 0; i < n; i++) {
		eb->fields[i].name = a.p + names[i];
		eb->fields[i].value = a.p + values[i];
	}
	eb->arena = a.p;
	eb->ev.fields = eb->fields;
	eb->ev.nfields = n;
	free(names);
	return &eb->ev;
oom:
	snprintf(err, errlen, "out of memory");
fail:
	free(a.p);
	free(names);
	free(eb);
	return NULL;
}

struct event *event_parse(const char *body, size_t len, char *err,
			  size_t errlen)
{
	const struct event_field *id;
	struct event *ev = NULL;
	struct bignums big;
	json_error_t jerr;
	json_t *root;

	if (too_deep(body, len, EVENT_MAX_DEPTH)) {
		snprintf(err, errlen,
			 "JSON nested too deep (at most %d levels)",
			 EVENT_MAX_DEPTH);
		return NULL;
	}
	if (bignums_scan(body, len, &big) < 0) {
		bignums_free(&big);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	root = json_loadb(
	    big.text ? big.text : body, big.text ? big.len : len,
	    JSON_DECODE_ANY | JSON_ALLOW_NUL | JSON_REJECT_DUPLICATES, &jerr);
	if (!root) {
		bignums_free(&big);
		snprintf(err, errlen, "invalid JSON at line %d, column %d: %s",
			 jerr.line, jerr.column, jerr.text);
		sanitize(err, errlen);
		return NULL;
	}
	if (!json_is_object(root)) {
		snprintf(err, errlen, "the body must be a JSON object");
		goto out;
	}
	if (json_object_size(root) > EVENT_MAX_FIELDS) {
		snprintf(err, errlen, "too many fields (at most %d)",
			 EVENT_MAX_FIELDS);
		goto out;
	}
	ev = build(root, &big, err, errlen);
	if (!ev) {
		sanitize(err, errlen); /* the message may quote a key */
		goto out;
	}
	id = event_get(ev, "job_id");
	if (!id || id->len == 0) {
		snprintf(err, errlen, "%s",
			 id ? "job_id is empty" : "missing job_id");
		event_free(ev);
		ev = NULL;
	}
out:
	json_decref(root);
	bignums_free(&big);
	return ev;
}

/* A linear scan: events have a few dozen fields, and a hand-built struct
 * event (tests, tools) must work too, so there is no hidden index. */
const struct event_field *event_get(const struct event *ev, const char *lname)
{
	if (!ev || !lname)
		return NULL;
	for (size_t i = 0; i < ev->nfields; i++) {
		const char *n = ev->fields[i].name;

		if (n[0] == lname[0] && strcmp(n, lname) == 0)
			return &ev->fields[i];
	}
	return NULL;
}

void event_free(struct event *ev)
{
	struct event_block *eb;

	if (!ev)
		return;
	eb = (struct event_block *)((char *)ev -
				    offsetof(struct event_block, ev));
	free(eb->arena);
	free(eb);
}
