/*
 * fuzz_rules — rules_match() for every type and operation on input-derived
 * rules and events.
 *
 * DESIGN: the input is text, split into a rule and an event:
 *
 *     FIELD\n            the rule's field (folded to lower case)
 *     VALUE\n ...        the rule's values, one per line (at most 8)
 *     \n                 an empty line ends the values
 *     EVENT VALUE        every remaining byte (NUL and newlines included)
 *
 * Without the empty line, the event lacks the field. The event is built by
 * hand (struct event is public and event_get() promises no hidden index),
 * so its value can hold any byte; it also carries a job_id. For each of the
 * 6 types x 6 operations the rule is matched with the values as given and,
 * for a one-value operation, with the first value alone. Besides memory
 * safety it checks include/rules.h: a result of 0 or 1 that does not depend
 * on whether a why sentence was asked for; a why sentence always
 * terminated and never written past whylen; and the logic of typed
 * comparison where both sides parse: EQUAL is the negation of NOT_EQUAL, IN
 * of NOT_IN, and EQUAL, LESS_THAN, GREATER_THAN are mutually exclusive.
 */
#include <string.h>
#include <strings.h>

#include "event.h"
#include "fuzz.h"
#include "rules.h"

#define MAX_VALUES 8
#define NTYPES 6
#define NOPS 6
#define JOB "0b9d5c55-6c2e-4d0a-9b6f-3f8e2a1c7d10"

static char job_name[] = "job_id";

/* A malloc'd copy of n bytes, NUL-terminated, of exactly n + 1 bytes. */
static char *dup_n(const uint8_t *p, size_t n)
{
	char *s = malloc(n + 1);

	if (!s)
		abort();
	memcpy(s, p, n);
	s[n] = '\0';
	return s;
}

/* Splits data into r (field and values) and the event value (*val, or NULL
 * when there is no empty line). */
static void split(const uint8_t *data, size_t size, struct rule *r,
		  const uint8_t **val, size_t *vallen)
{
	const uint8_t *p = data, *end = data + size;
	const uint8_t *nl = memchr(p, '\n', size);

	*val = NULL;
	*vallen = 0;
	r->field = dup_n(p, (nl ? nl : end) - p);
	for (char *c = r->field; *c; c++)
		if (*c >= 'A' && *c <= 'Z')
			*c = (char)(*c + 32);
	r->values = calloc(MAX_VALUES, sizeof(char *));
	if (!r->values)
		abort();
	p = nl ? nl + 1 : end;
	while (p < end) {
		nl = memchr(p, '\n', (size_t)(end - p));
		if (nl == p) { /* the empty line: the rest is the event's */
			*val = p + 1;
			*vallen = (size_t)(end - p - 1);
			return;
		}
		if (r->nvalues < MAX_VALUES)
			r->values[r->nvalues++] = dup_n(p, (nl ? nl : end) - p);
		p = nl ? nl + 1 : end;
	}
}

/* Matches r and checks what any result must satisfy; returns the result. */
static int match(const struct rule *r, const struct event *ev, size_t small)
{
	char why[512], tiny[64];
	int res = rules_match(r, ev, why, sizeof(why));

	FUZZ_CHECK(res == 0 || res == 1);
	FUZZ_CHECK(memchr(why, '\0', sizeof(why)) != NULL);
	FUZZ_CHECK(res == 1 || why[0] != '\0');
	FUZZ_CHECK(rules_match(r, ev, NULL, 0) == res);
	/* A short buffer: terminated, and not a byte written past it. */
	memset(tiny, 'x', sizeof(tiny));
	FUZZ_CHECK(rules_match(r, ev, tiny, small) == res);
	if (small)
		FUZZ_CHECK(memchr(tiny, '\0', small) != NULL);
	for (size_t i = small; i < sizeof(tiny); i++)
		FUZZ_CHECK(tiny[i] == 'x');
	return res;
}

/* 1 if every value of r parses as its type. */
static int values_valid(const struct rule *r)
{
	for (size_t i = 0; i < r->nvalues; i++)
		if (!rules_value_valid(r->type, r->values[i]))
			return 0;
	return r->nvalues > 0;
}

/* The typed logic, for a field whose value (NUL-free) parses as t. */
static void check_logic(struct rule *r, const struct event *ev, size_t small,
			size_t nfull)
{
	int res[NOPS];

	for (int op = 0; op < NOPS; op++) {
		r->op = (enum rules_op)op;
		r->nvalues = (op == RULES_IN || op == RULES_NOT_IN) ? nfull : 1;
		res[op] =
		    rules_op_allowed(r->type, r->op) ? match(r, ev, small) : -1;
	}
	r->nvalues = nfull;
	if (res[RULES_EQUAL] >= 0 && res[RULES_NOT_EQUAL] >= 0)
		FUZZ_CHECK(res[RULES_EQUAL] != res[RULES_NOT_EQUAL]);
	if (res[RULES_IN] >= 0 && res[RULES_NOT_IN] >= 0)
		FUZZ_CHECK(res[RULES_IN] != res[RULES_NOT_IN]);
	if (res[RULES_LESS_THAN] >= 0 && res[RULES_GREATER_THAN] >= 0)
		FUZZ_CHECK(res[RULES_EQUAL] + res[RULES_LESS_THAN] +
			       res[RULES_GREATER_THAN] ==
			   1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct rule r = {0};
	struct event_field fields[2];
	struct event ev = {fields, 0};
	const uint8_t *val;
	size_t vallen, nvalues, small = size % 48;
	char *evval = NULL, *id = dup_n((const uint8_t *)JOB, sizeof(JOB) - 1);
	enum rules_op op;

	split(data, size, &r, &val, &vallen);
	if (val) {
		evval = dup_n(val, vallen);
		fields[ev.nfields++] =
		    (struct event_field){r.field, evval, vallen};
	}
	if (strcmp(r.field, "job_id") != 0)
		fields[ev.nfields++] =
		    (struct event_field){job_name, id, sizeof(JOB) - 1};
	(void)rules_type_name(rules_type_of(r.field));
	nvalues = r.nvalues;
	for (size_t i = 0; i < nvalues; i++)
		if (rules_op_parse(r.values[i], &op) == 0)
			FUZZ_CHECK(strcasecmp(rules_op_name(op), r.values[i]) ==
				   0);
	for (int t = 0; t < NTYPES; t++) {
		r.type = (enum rules_type)t;
		FUZZ_CHECK(strcmp(rules_type_name(r.type), "unknown") != 0);
		for (int o = 0; o < NOPS; o++) {
			r.op = (enum rules_op)o;
			FUZZ_CHECK(rules_op_parse(rules_op_name(r.op), &op) ==
				       0 &&
				   op == r.op);
			r.nvalues = nvalues;
			match(&r, &ev, small);
			if (nvalues > 1) {
				r.nvalues = 1;
				match(&r, &ev, small);
			}
		}
		r.nvalues = nvalues;
		if (evval && !memchr(evval, '\0', vallen) &&
		    rules_value_valid(r.type, evval) && values_valid(&r))
			check_logic(&r, &ev, small, nvalues);
	}
	r.nvalues = nvalues;
	rules_clear(&r);
	FUZZ_CHECK(r.field == NULL && r.values == NULL && r.nvalues == 0);
	free(evval);
	free(id);
	return 0;
}
