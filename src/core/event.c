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
 * Appends v's text form to the arena (see event.h) and NUL-terminates it;
 * *off and *len receive where it is. 0, or -1 out of memory.
 */
static int value_text(struct arena *a, const json_t *v, size_t *off,
		      size_t *len)
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
static struct event *build(json_t *obj, char *err, size_t errlen)
{
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
		if (json_is_null(v)) { /* null: the field is absent */
			i++;
			continue;
		}
		names[n] = names[i++]; /* n <= i: compacting in place is safe */
		if (value_text(&a, v, &values[n], &eb->fields[n].len) < 0)
			goto oom;
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
	json_error_t jerr;
	json_t *root;

	if (too_deep(body, len, EVENT_MAX_DEPTH)) {
		snprintf(err, errlen,
			 "JSON nested too deep (at most %d levels)",
			 EVENT_MAX_DEPTH);
		return NULL;
	}
	root = json_loadb(
	    body, len,
	    JSON_DECODE_ANY | JSON_ALLOW_NUL | JSON_REJECT_DUPLICATES, &jerr);
	if (!root) {
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
	ev = build(root, err, errlen);
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
