/*
 * event — an Erathos job-finished event, parsed from its JSON body.
 *
 * DESIGN: pure code (jansson only, no I/O, no locks, no globals), so it is
 * unit-tested and fuzzed alone. Field names are folded to lower case, so
 * `JOB_ID` and `job_id` are one field. Every value is kept as text, the way
 * Erathos sends it ("12345", "true"): a JSON string as it is (it may contain
 * NUL bytes, hence the explicit length), an integer in decimal, a real with
 * %.17g (or as an integer when it is one), a boolean as "true"/"false", an
 * object or array as compact JSON. A JSON null counts as an absent field.
 * Typing is the rules engine's business, not this module's.
 */
#ifndef TRIGGERD_EVENT_H
#define TRIGGERD_EVENT_H

#include <stddef.h>

#define EVENT_MAX_FIELDS 1024 /* more fields: rejected (400) */
#define EVENT_MAX_DEPTH 32    /* deeper nesting: rejected (400) */

struct event_field {
	char *name;  /* lower case, NUL-terminated */
	char *value; /* NUL-terminated, but may also contain NUL bytes */
	size_t len;  /* length of value */
};

struct event {
	struct event_field *fields; /* in the body's order */
	size_t nfields;
};

/*
 * Parses a request body. On success returns a new event the caller frees
 * with event_free(). On failure returns NULL and writes a one-line message
 * a client can act on into err (this becomes the 400 answer): invalid JSON
 * (with line and column), not an object, missing or empty job_id, two keys
 * that differ only in case, too many fields, too deep.
 */
struct event *event_parse(const char *body, size_t len, char *err,
			  size_t errlen);

/* The field named lname (which must be lower case), or NULL. Owned by ev. */
const struct event_field *event_get(const struct event *ev, const char *lname);

void event_free(struct event *ev);

#endif
