/*
 * rules — typed evaluation of Erathos trigger rules.
 *
 * DESIGN: pure code, called by the HTTP threads (matching every inbound
 * event), by the config loader (validation) and by --dry-run. It owns
 * nothing but what struct rule holds. Every value, from the event or from
 * the rule, is parsed into a struct typed before it is compared, so "9" <
 * "10" for integers, "False" == "0" for booleans and uuids ignore case.
 * Parsers take an explicit length: event values may contain NUL bytes, and
 * "12\0x" must not pass for 12.
 */
#include "rules.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <stdlib.h>

#include "event.h"

/* A parsed value: integers, booleans, dates (yyyymmdd) and times (seconds)
 * use num; uuids use their 16 bytes; strings are compared as bytes. */
struct typed {
	int64_t num;
	unsigned char uuid[16];
	const char *s;
	size_t len;
};

static const struct {
	const char *name;
	enum rules_type type;
} field_types[] = {
    {"job_id", RULES_UUID},
    {"connection_id", RULES_UUID},
    {"execution_id", RULES_UUID},
    {"connection_name", RULES_STRING},
    {"schema_name", RULES_STRING},
    {"table_name", RULES_STRING},
    {"status", RULES_STRING},
    {"triggered_by", RULES_STRING},
    {"rows", RULES_INTEGER},
    {"columns", RULES_INTEGER},
    {"total_duration", RULES_INTEGER},
    {"finished_at_weekday", RULES_INTEGER},
    {"is_orchestration", RULES_BOOLEAN},
    {"force_history", RULES_BOOLEAN},
    {"nested_table", RULES_BOOLEAN},
    {"finished_at_date", RULES_DATE},
    {"finished_at_time", RULES_TIME},
};

static const char *const op_names[] = {
    [RULES_EQUAL] = "EQUAL",
    [RULES_NOT_EQUAL] = "NOT_EQUAL",
    [RULES_IN] = "IN",
    [RULES_NOT_IN] = "NOT_IN",
    [RULES_LESS_THAN] = "LESS_THAN",
    [RULES_GREATER_THAN] = "GREATER_THAN",
};

static const char *const type_names[] = {
    [RULES_STRING] = "string",	 [RULES_UUID] = "uuid",
    [RULES_INTEGER] = "integer", [RULES_BOOLEAN] = "boolean",
    [RULES_DATE] = "date",	 [RULES_TIME] = "time",
};

/* "is not ..." in a why sentence, by type. */
static const char *const type_phrases[] = {
    [RULES_STRING] = "a string",
    [RULES_UUID] = "a uuid",
    [RULES_INTEGER] = "an integer",
    [RULES_BOOLEAN] = "a boolean (true, false, 1 or 0)",
    [RULES_DATE] = "a date (YYYY-MM-DD)",
    [RULES_TIME] = "a time (HH:MM or HH:MM:SS)",
};

enum rules_type rules_type_of(const char *lname)
{
	for (size_t i = 0; i < sizeof(field_types) / sizeof(field_types[0]);
	     i++)
		if (strcasecmp(field_types[i].name, lname) == 0)
			return field_types[i].type;
	return RULES_STRING;
}

const char *rules_type_name(enum rules_type t)
{
	if ((unsigned)t >= sizeof(type_names) / sizeof(type_names[0]))
		return "unknown";
	return type_names[t];
}

int rules_op_parse(const char *s, enum rules_op *out)
{
	for (size_t i = 0; i < sizeof(op_names) / sizeof(op_names[0]); i++) {
		if (strcasecmp(op_names[i], s) == 0) {
			*out = (enum rules_op)i;
			return 0;
		}
	}
	return -1;
}

const char *rules_op_name(enum rules_op op)
{
	if ((unsigned)op >= sizeof(op_names) / sizeof(op_names[0]))
		return "UNKNOWN";
	return op_names[op];
}

int rules_op_allowed(enum rules_type t, enum rules_op op)
{
	switch (t) {
	case RULES_UUID:
	case RULES_STRING:
		return op == RULES_EQUAL || op == RULES_NOT_EQUAL ||
		       op == RULES_IN || op == RULES_NOT_IN;
	case RULES_INTEGER: return (unsigned)op <= RULES_GREATER_THAN;
	case RULES_DATE:
	case RULES_TIME:
		return op == RULES_EQUAL || op == RULES_NOT_EQUAL ||
		       op == RULES_LESS_THAN || op == RULES_GREATER_THAN;
	case RULES_BOOLEAN: return op == RULES_EQUAL || op == RULES_NOT_EQUAL;
	}
	return 0;
}

static int is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static int hex_val(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* n decimal digits at s as a number, or -1 if one is not a digit. */
static int digits(const char *s, size_t n)
{
	int v = 0;

	for (size_t i = 0; i < n; i++) {
		if (!is_digit(s[i]))
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	return v;
}

/* An optional sign and decimal digits, nothing else, within int64. */
static int parse_integer(const char *s, size_t n, int64_t *out)
{
	uint64_t v = 0, limit = (uint64_t)INT64_MAX;
	size_t i = 0;
	int neg = 0;

	if (n && (s[0] == '-' || s[0] == '+')) {
		neg = s[0] == '-';
		limit += neg; /* |INT64_MIN| is one more than INT64_MAX */
		i++;
	}
	if (i == n)
		return -1;
	for (; i < n; i++) {
		if (!is_digit(s[i]))
			return -1;
		if (v > (limit - (uint64_t)(s[i] - '0')) / 10)
			return -1;
		v = v * 10 + (uint64_t)(s[i] - '0');
	}
	*out = neg ? (int64_t)(0 - v) : (int64_t)v;
	return 0;
}

static int parse_boolean(const char *s, size_t n, int64_t *out)
{
	if ((n == 4 && strncasecmp(s, "true", 4) == 0) ||
	    (n == 1 && s[0] == '1'))
		*out = 1;
	else if ((n == 5 && strncasecmp(s, "false", 5) == 0) ||
		 (n == 1 && s[0] == '0'))
		*out = 0;
	else
		return -1;
	return 0;
}

/* 8-4-4-4-12 hex digits, either case. */
static int parse_uuid(const char *s, size_t n, unsigned char out[16])
{
	size_t nib = 0;

	if (n != 36)
		return -1;
	memset(out, 0, 16);
	for (size_t i = 0; i < 36; i++) {
		int h;

		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (s[i] != '-')
				return -1;
			continue;
		}
		h = hex_val(s[i]);
		if (h < 0)
			return -1;
		out[nib / 2] |= (unsigned char)(nib % 2 ? h : h << 4);
		nib++;
	}
	return 0;
}

/* YYYY-MM-DD, a real calendar date (leap years included). */
static int parse_date(const char *s, size_t n, int64_t *out)
{
	static const int mdays[] = {31, 28, 31, 30, 31, 30,
				    31, 31, 30, 31, 30, 31};
	int y, m, d, leap;

	if (n != 10 || s[4] != '-' || s[7] != '-')
		return -1;
	y = digits(s, 4);
	m = digits(s + 5, 2);
	d = digits(s + 8, 2);
	if (y < 0 || m < 1 || m > 12 || d < 1)
		return -1;
	leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
	if (d > mdays[m - 1] + (m == 2 && leap))
		return -1;
	*out = (int64_t)y * 10000 + m * 100 + d;
	return 0;
}

/* HH:MM or HH:MM:SS (24-hour); HH:MM is HH:MM:00. */
static int parse_time(const char *s, size_t n, int64_t *out)
{
	int h, m, sec = 0;

	if ((n != 5 && n != 8) || s[2] != ':')
		return -1;
	h = digits(s, 2);
	m = digits(s + 3, 2);
	if (n == 8) {
		if (s[5] != ':')
			return -1;
		sec = digits(s + 6, 2);
	}
	if (h < 0 || h > 23 || m < 0 || m > 59 || sec < 0 || sec > 59)
		return -1;
	*out = (int64_t)h * 3600 + m * 60 + sec;
	return 0;
}

static int parse_typed(enum rules_type t, const char *s, size_t n,
		       struct typed *out)
{
	out->s = s;
	out->len = n;
	switch (t) {
	case RULES_STRING: return 0;
	case RULES_UUID: return parse_uuid(s, n, out->uuid);
	case RULES_INTEGER: return parse_integer(s, n, &out->num);
	case RULES_BOOLEAN: return parse_boolean(s, n, &out->num);
	case RULES_DATE: return parse_date(s, n, &out->num);
	case RULES_TIME: return parse_time(s, n, &out->num);
	}
	return -1;
}

int rules_value_valid(enum rules_type t, const char *v)
{
	struct typed tv;

	return v && parse_typed(t, v, strlen(v), &tv) == 0;
}

/* <0, 0, >0 as a is before, equal to or after b. Strings compare as bytes
 * (a shorter prefix first); only equality matters for them and uuids. */
static int compare(enum rules_type t, const struct typed *a,
		   const struct typed *b)
{
	int c;

	switch (t) {
	case RULES_STRING:
		c = memcmp(a->s, b->s, a->len < b->len ? a->len : b->len);
		if (c)
			return c;
		return (a->len > b->len) - (a->len < b->len);
	case RULES_UUID: return memcmp(a->uuid, b->uuid, 16);
	default: return (a->num > b->num) - (a->num < b->num);
	}
}

/* A why sentence being written: always NUL-terminated, silently cut. */
struct why {
	char *p;
	size_t cap;
	size_t len;
};

static void why_putn(struct why *w, const char *s, size_t n)
{
	size_t room;

	if (!w->cap)
		return;
	room = w->cap - 1 - w->len;
	if (n > room)
		n = room;
	memcpy(w->p + w->len, s, n);
	w->len += n;
	w->p[w->len] = '\0';
}

static void why_puts(struct why *w, const char *s)
{
	why_putn(w, s, strlen(s));
}

/*
 * Writes at most 64 bytes of s (cut on a UTF-8 character boundary, "..."
 * marking the cut), escaping quotes, backslashes and control characters so
 * that an event value cannot forge the rest of the sentence or a log line.
 */
static void why_escaped(struct why *w, const char *s, size_t n, int quote)
{
	size_t max = n > 64 ? 64 : n;
	char esc[8];

	if (!w->cap)
		return;
	while (max < n && max > 0 && ((unsigned char)s[max] & 0xc0) == 0x80)
		max--; /* s[max] continues a character: cut before it */
	if (quote)
		why_puts(w, "\"");
	for (size_t i = 0; i < max; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '"' || c == '\\') {
			esc[0] = '\\';
			esc[1] = (char)c;
			why_putn(w, esc, 2);
		} else if (c < 0x20 || c == 0x7f) {
			snprintf(esc, sizeof(esc), "\\x%02X", c);
			why_puts(w, esc);
		} else {
			why_putn(w, (const char *)&c, 1);
		}
	}
	if (max < n)
		why_puts(w, "...");
	if (quote)
		why_puts(w, "\"");
}

/* "STATUS EQUAL FINISHED: " or "STATUS IN [FINISHED, FAILED]: ". */
static void why_prefix(struct why *w, const struct rule *r)
{
	int list = r->op == RULES_IN || r->op == RULES_NOT_IN;

	if (!w->cap)
		return; /* nobody asked why: keep the hot path cheap */
	for (const char *f = r->field; *f && w->len + 1 < w->cap; f++) {
		char c = (char)((*f >= 'a' && *f <= 'z') ? *f - 32 : *f);

		why_putn(w, &c, 1);
	}
	why_puts(w, " ");
	why_puts(w, rules_op_name(r->op));
	why_puts(w, list ? " [" : " ");
	for (size_t i = 0; i < r->nvalues; i++) {
		if (i)
			why_puts(w, ", ");
		why_escaped(w, r->values[i], strlen(r->values[i]), 0);
		if (!list)
			break;
	}
	why_puts(w, list ? "]: " : ": ");
}

/*
 * Decides the rule once the event value v has been parsed: 1 if it holds.
 * *bad receives the index of a rule value that does not parse, or stays
 * SIZE_MAX. Rule values are parsed here, at each call, because they are
 * plain strings in struct rule; they are short and this is cheap.
 */
static int decide(const struct rule *r, const struct typed *v, size_t *bad)
{
	int any = 0;

	for (size_t i = 0; i < r->nvalues; i++) {
		struct typed rv;
		int c;

		if (parse_typed(r->type, r->values[i], strlen(r->values[i]),
				&rv) < 0) {
			*bad = i;
			return 0;
		}
		c = compare(r->type, v, &rv);
		switch (r->op) {
		case RULES_EQUAL: return c == 0;
		case RULES_NOT_EQUAL: return c != 0;
		case RULES_LESS_THAN: return c < 0;
		case RULES_GREATER_THAN: return c > 0;
		case RULES_IN:
		case RULES_NOT_IN: any |= c == 0; break;
		}
	}
	return r->op == RULES_NOT_IN ? !any : any;
}

int rules_match(const struct rule *r, const struct event *ev, char *why,
		size_t whylen)
{
	struct why w = {why, why ? whylen : 0, 0};
	const struct event_field *f;
	size_t bad = SIZE_MAX;
	int single = r->op != RULES_IN && r->op != RULES_NOT_IN;
	struct typed v;

	if (w.cap)
		why[0] = '\0';
	/* Config validation refuses these; a hand-built rule may not. */
	if (!rules_op_allowed(r->type, r->op)) {
		why_prefix(&w, r);
		why_puts(&w, "this operation is not allowed for a ");
		why_puts(&w, rules_type_name(r->type));
		return 0;
	}
	if (single && r->nvalues != 1) {
		why_prefix(&w, r);
		why_puts(&w, "the rule needs exactly one value");
		return 0;
	}
	f = event_get(ev, r->field);
	if (!f) {
		why_prefix(&w, r);
		why_puts(&w, "event has no field ");
		why_puts(&w, r->field);
		return 0;
	}
	if (parse_typed(r->type, f->value, f->len, &v) < 0) {
		why_prefix(&w, r);
		why_escaped(&w, f->value, f->len, 1);
		why_puts(&w, " is not ");
		why_puts(&w, type_phrases[r->type]);
		return 0;
	}
	if (decide(r, &v, &bad))
		return 1;
	why_prefix(&w, r);
	if (bad != SIZE_MAX) {
		why_puts(&w, "the rule's value ");
		why_escaped(&w, r->values[bad], strlen(r->values[bad]), 1);
		why_puts(&w, " is not ");
		why_puts(&w, type_phrases[r->type]);
		return 0;
	}
	why_puts(&w, "event has ");
	why_puts(&w, r->field);
	why_puts(&w, " ");
	why_escaped(&w, f->value, f->len, 1);
	return 0;
}

void rules_clear(struct rule *r)
{
	if (!r)
		return;
	free(r->field);
	for (size_t i = 0; i < r->nvalues; i++)
		free(r->values[i]);
	free(r->values);
	memset(r, 0, sizeof(*r));
}
