/* Unit tests for src/event.c: parsing, key folding, value text, errors. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "event.h"

static char err[256];

static struct event *parse(const char *s)
{
	err[0] = '\0';
	return event_parse(s, strlen(s), err, sizeof(err));
}

static const char *val(const struct event *ev, const char *name)
{
	const struct event_field *f = event_get(ev, name);

	return f ? f->value : NULL;
}

static void test_example(void)
{
	const char *body =
	    "{\"JOB_ID\": \"0b9d5c55-6c2e-4d0a-9b6f-3f8e2a1c7d10\","
	    " \"Status\": \"FINISHED\", \"ROWS\": \"12345\","
	    " \"IS_ORCHESTRATION\": \"False\"}";
	struct event *ev = parse(body);

	CHECK(ev != NULL);
	if (!ev)
		return;
	CHECK_INT(ev->nfields, 4);
	/* Names folded, body order kept. */
	CHECK_STR(ev->fields[0].name, "job_id");
	CHECK_STR(ev->fields[1].name, "status");
	CHECK_STR(ev->fields[2].name, "rows");
	CHECK_STR(ev->fields[3].name, "is_orchestration");
	CHECK_STR(val(ev, "job_id"), "0b9d5c55-6c2e-4d0a-9b6f-3f8e2a1c7d10");
	CHECK_STR(val(ev, "status"), "FINISHED");
	CHECK_INT(event_get(ev, "status")->len, 8);
	CHECK_STR(val(ev, "is_orchestration"), "False");
	CHECK(event_get(ev, "STATUS") == NULL); /* lookups take lower case */
	CHECK(event_get(ev, "nope") == NULL);
	event_free(ev);
}

static void test_value_text(void)
{
	struct event *ev =
	    parse("{\"job_id\":\"j\",\"i\":-42,\"big\":9223372036854775807,"
		  "\"r\":1.5,\"ri\":12.0,\"rbig\":1e300,\"t\":true,\"f\":false,"
		  "\"n\":null,\"o\":{\"a\": [1, \"x\"]},\"a\":[ ],\"s\":\"\"}");

	CHECK(ev != NULL);
	if (!ev)
		return;
	CHECK_STR(val(ev, "i"), "-42");
	CHECK_STR(val(ev, "big"), "9223372036854775807");
	CHECK_STR(val(ev, "r"), "1.5");
	CHECK_STR(val(ev, "ri"), "12");
	CHECK_STR(val(ev, "rbig"), "1.0000000000000001e+300");
	CHECK_STR(val(ev, "t"), "true");
	CHECK_STR(val(ev, "f"), "false");
	CHECK(event_get(ev, "n") == NULL); /* null: absent */
	CHECK_STR(val(ev, "o"), "{\"a\":[1,\"x\"]}");
	CHECK_INT(event_get(ev, "o")->len, 13);
	CHECK_STR(val(ev, "a"), "[]");
	CHECK_STR(val(ev, "s"), "");
	CHECK_INT(ev->nfields, 11);
	event_free(ev);
}

static void test_nul(void)
{
	static const char body[] =
	    "{\"job_id\":\"a\\u0000b\",\"x\":\"\\u0000\"}";
	struct event *ev =
	    event_parse(body, sizeof(body) - 1, err, sizeof(err));
	const struct event_field *f;

	CHECK(ev != NULL);
	if (!ev)
		return;
	f = event_get(ev, "job_id");
	CHECK_INT(f->len, 3);
	CHECK(memcmp(f->value, "a\0b", 4) == 0);
	CHECK_INT(event_get(ev, "x")->len, 1);
	event_free(ev);

	/* NUL in a key is refused by jansson: an invalid-JSON error. */
	CHECK(parse("{\"job_id\":\"a\",\"k\\u0000\":1}") == NULL);
	CHECK(strstr(err, "invalid JSON") != NULL);
	/* A raw NUL byte outside a string is not JSON. */
	CHECK(event_parse("{\"job_id\":\"a\"}\0", 15, err, sizeof(err)) ==
	      NULL);
	/* The body need not be NUL-terminated. */
	ev = event_parse("{\"job_id\":\"a\"}xyz", 14, err, sizeof(err));
	CHECK(ev != NULL);
	event_free(ev);
}

static void test_errors(void)
{
	CHECK(parse("{\"job_id\": 1,") == NULL);
	CHECK(strncmp(err, "invalid JSON at line 1, column ", 31) == 0);
	CHECK(parse("{\n  \"job_id\": \"x\"\n  \"b\": 1}") == NULL);
	CHECK(strstr(err, "line 3") != NULL);
	CHECK(parse("") == NULL);
	CHECK(strstr(err, "invalid JSON") != NULL);
	CHECK(parse("[1,2]") == NULL);
	CHECK_STR(err, "the body must be a JSON object");
	CHECK(parse("\"job_id\"") == NULL);
	CHECK_STR(err, "the body must be a JSON object");
	CHECK(parse("42") == NULL);
	CHECK_STR(err, "the body must be a JSON object");
	CHECK(parse("{}") == NULL);
	CHECK_STR(err, "missing job_id");
	CHECK(parse("{\"job_id\":null}") == NULL);
	CHECK_STR(err, "missing job_id");
	CHECK(parse("{\"job_id\":\"\"}") == NULL);
	CHECK_STR(err, "job_id is empty");
	CHECK(parse("{\"job_id\":\"a\",\"JOB_ID\":\"b\"}") == NULL);
	CHECK(strstr(err, "\"job_id\" is given twice") != NULL);
	CHECK(parse("{\"Rows\":1,\"job_id\":\"a\",\"rOWS\":null}") == NULL);
	CHECK(strstr(err, "\"rows\" is given twice") != NULL);
	CHECK(parse("{\"job_id\":\"a\",\"job_id\":\"b\"}") == NULL);
	CHECK(strstr(err, "duplicate") != NULL);
	/* Invalid UTF-8 is invalid JSON; the message stays printable. */
	CHECK(parse("{\"job_id\":\"\xff\"}") == NULL);
	for (const char *p = err; *p; p++)
		CHECK((unsigned char)*p >= 0x20 && (unsigned char)*p < 0x7f);
	/* A tiny error buffer is respected. */
	{
		char small[8];
		CHECK(event_parse("[]", 2, small, sizeof(small)) == NULL);
		CHECK_STR(small, "the bod");
		CHECK(event_parse("[]", 2, small, 0) == NULL);
	}
}

/* Nested arrays: depth levels in all. */
static char *nested(int depth)
{
	char *s = malloc((size_t)depth * 2 + 64);
	size_t k = 0;

	k += (size_t)snprintf(s, 64, "{\"job_id\":\"a\",\"d\":");
	for (int i = 1; i < depth; i++)
		s[k++] = '[';
	for (int i = 1; i < depth; i++)
		s[k++] = ']';
	s[k++] = '}';
	s[k] = '\0';
	return s;
}

static void test_limits(void)
{
	char *s = nested(EVENT_MAX_DEPTH);
	struct event *ev = parse(s);
	size_t cap = (EVENT_MAX_FIELDS + 2) * 24, k;
	char *big;

	CHECK(ev != NULL);
	event_free(ev);
	free(s);
	s = nested(EVENT_MAX_DEPTH + 1);
	CHECK(parse(s) == NULL);
	CHECK(strstr(err, "too deep") != NULL);
	free(s);

	big = malloc(cap);
	for (int extra = 0; extra < 2; extra++) {
		k = (size_t)snprintf(big, cap, "{\"job_id\":\"a\"");
		for (int i = 1; i < EVENT_MAX_FIELDS + extra; i++)
			k += (size_t)snprintf(big + k, cap - k, ",\"F%d\":%d",
					      i, i);
		snprintf(big + k, cap - k, "}");
		ev = parse(big);
		if (extra == 0) {
			CHECK(ev != NULL);
			if (ev) {
				CHECK_INT(ev->nfields, EVENT_MAX_FIELDS);
				CHECK_STR(val(ev, "f1023"), "1023");
				CHECK_STR(ev->fields[1023].name, "f1023");
			}
			event_free(ev);
		} else {
			CHECK(ev == NULL);
			CHECK(strstr(err, "too many fields") != NULL);
		}
	}
	free(big);
}

/* Numbers jansson cannot hold are valid JSON: kept as written. */
static void test_big_numbers(void)
{
	struct event *ev = parse(
	    "{\"job_id\":\"j\", \"rows\": 18446744073709551616,"
	    " \"x\" : -1e400 , \"n\":[1,99999999999999999999,{\"d\":1E+400}],"
	    " \"e\":null, \"max\":9223372036854775807,"
	    " \"min\":-9223372036854775808, \"s\":\"1e400\"}");

	CHECK(ev != NULL);
	if (ev) {
		CHECK_STR(val(ev, "rows"), "18446744073709551616");
		CHECK_STR(val(ev, "x"), "-1e400");
		CHECK_STR(val(ev, "n"), "[1,99999999999999999999,{\"d\":1E+400}]");
		CHECK_STR(val(ev, "max"), "9223372036854775807");
		CHECK_STR(val(ev, "min"), "-9223372036854775808");
		CHECK_STR(val(ev, "s"), "1e400");
		CHECK(event_get(ev, "e") == NULL);
		event_free(ev);
	}
	/* a string that could pass for the marker: top level stays exact */
	ev = parse("{\"job_id\":\"j\",\"a\":\"\\u00001\",\"b\":1e400}");
	CHECK(ev != NULL);
	if (ev) {
		const struct event_field *a = event_get(ev, "a");
		CHECK(a && a->len == 2 && a->value[0] == '\0' && a->value[1] == '1');
		CHECK_STR(val(ev, "b"), "1e400");
		event_free(ev);
	}
	/* the rewrite never makes invalid JSON valid */
	CHECK(parse("{\"job_id\":\"j\", 1e400: 1}") == NULL);
	CHECK(parse("{\"job_id\":\"j\", \"a\": 01e400}") == NULL);
	CHECK(parse("{\"job_id\":\"j\", \"a\": 1e400x}") == NULL);
	CHECK(parse("{\"job_id\":\"j\", \"a\": [1e400,]}") == NULL);
}

int main(void)
{
	test_big_numbers();
	test_example();
	test_value_text();
	test_nul();
	test_errors();
	test_limits();
	event_free(NULL);
	CHECK(event_get(NULL, "job_id") == NULL);
	return check_report();
}
