/*
 * rules — Erathos-style trigger rules: {variable_name, operation, value}.
 *
 * DESIGN: pure code (no I/O, no locks, no globals). A variable's type comes
 * from the table of documented Erathos fields (SPEC section 2); any other
 * field is a string. Comparisons are typed: integers numerically, booleans
 * case-insensitively (true/false/1/0), uuids case-insensitively, dates
 * (YYYY-MM-DD) and times (HH:MM or HH:MM:SS) chronologically, strings
 * exactly (byte for byte). A rule on a field the event lacks, or whose
 * value does not parse as the type, is false.
 */
#ifndef TRIGGERD_RULES_H
#define TRIGGERD_RULES_H

#include <stddef.h>

struct event;

enum rules_type {
	RULES_STRING,
	RULES_UUID,
	RULES_INTEGER,
	RULES_BOOLEAN,
	RULES_DATE,
	RULES_TIME,
};

enum rules_op {
	RULES_EQUAL,
	RULES_NOT_EQUAL,
	RULES_IN,
	RULES_NOT_IN,
	RULES_LESS_THAN,
	RULES_GREATER_THAN,
};

struct rule {
	char *field; /* lower case */
	enum rules_type type;
	enum rules_op op;
	char **values; /* EQUAL/NOT_EQUAL/LESS/GREATER: exactly one */
	size_t nvalues;
};

/* The type of an event field by its lower-case name (RULES_STRING if it is
 * not a documented field). */
enum rules_type rules_type_of(const char *lname);
const char *rules_type_name(enum rules_type t); /* "integer", ... */

/* Parses "EQUAL", "NOT_EQUAL", ... (case-insensitive): 0, or -1. */
int rules_op_parse(const char *s, enum rules_op *out);
const char *rules_op_name(enum rules_op op); /* "EQUAL", ... */

/* 1 if op may be used on a variable of type t (SPEC section 4), else 0. */
int rules_op_allowed(enum rules_type t, enum rules_op op);

/* 1 if v parses as a value of type t, else 0 (config validation). */
int rules_value_valid(enum rules_type t, const char *v);

/*
 * 1 if the rule holds for ev, 0 if not. When it does not hold and why is
 * not NULL, writes a sentence saying why, e.g.
 *   STATUS EQUAL FINISHED: event has status "FAILED"
 *   ROWS GREATER_THAN 0: event has no field rows
 *   ROWS LESS_THAN 10: "abc" is not an integer
 * (event values are cut to 64 bytes and escaped in that sentence).
 */
int rules_match(const struct rule *r, const struct event *ev, char *why,
		size_t whylen);

/* Frees what r holds (not r itself). */
void rules_clear(struct rule *r);

#endif
