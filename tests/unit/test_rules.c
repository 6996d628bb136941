/* Unit tests for src/rules.c: types, allowed operations, typed matching. */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "event.h"
#include "rules.h"

static struct event *ev;
static char why[256];

/* Evaluates {field, op, values...} (values ended by NULL) against ev. */
static int eval(const char *field, enum rules_op op, ...)
{
	char *vals[8];
	struct rule r = {(char *)field, rules_type_of(field), op, vals, 0};
	va_list ap;
	const char *v;

	va_start(ap, op);
	while ((v = va_arg(ap, const char *)) != NULL && r.nvalues < 8)
		vals[r.nvalues++] = (char *)v;
	va_end(ap);
	why[0] = 'X';
	why[1] = '\0';
	return rules_match(&r, ev, why, sizeof(why));
}

static void test_types(void)
{
	static const struct {
		const char *name;
		enum rules_type t;
	} table[] = {
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
	    {"anything_else", RULES_STRING},
	    {"", RULES_STRING},
	};

	for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++)
		CHECK_INT(rules_type_of(table[i].name), table[i].t);
	CHECK_STR(rules_type_name(RULES_STRING), "string");
	CHECK_STR(rules_type_name(RULES_UUID), "uuid");
	CHECK_STR(rules_type_name(RULES_INTEGER), "integer");
	CHECK_STR(rules_type_name(RULES_BOOLEAN), "boolean");
	CHECK_STR(rules_type_name(RULES_DATE), "date");
	CHECK_STR(rules_type_name(RULES_TIME), "time");
}

static void test_ops(void)
{
	static const char *const names[] = {
	    "EQUAL", "NOT_EQUAL", "IN", "NOT_IN", "LESS_THAN", "GREATER_THAN"};
	enum rules_op op;

	for (int i = 0; i < 6; i++) {
		CHECK(rules_op_parse(names[i], &op) == 0);
		CHECK_INT(op, i);
		CHECK_STR(rules_op_name(op), names[i]);
	}
	CHECK(rules_op_parse("greater_than", &op) == 0);
	CHECK_INT(op, RULES_GREATER_THAN);
	CHECK(rules_op_parse("Not_In", &op) == 0);
	CHECK_INT(op, RULES_NOT_IN);
	CHECK(rules_op_parse("LESS", &op) == -1);
	CHECK(rules_op_parse("", &op) == -1);
	CHECK(rules_op_parse("EQUALS", &op) == -1);
}

/* SPEC section 4, row by row: E NE IN NIN LT GT. */
static void test_allowed(void)
{
	static const struct {
		enum rules_type t;
		int ok[6];
	} table[] = {
	    {RULES_UUID, {1, 1, 1, 1, 0, 0}},
	    {RULES_STRING, {1, 1, 1, 1, 0, 0}},
	    {RULES_INTEGER, {1, 1, 1, 1, 1, 1}},
	    {RULES_DATE, {1, 1, 0, 0, 1, 1}},
	    {RULES_TIME, {1, 1, 0, 0, 1, 1}},
	    {RULES_BOOLEAN, {1, 1, 0, 0, 0, 0}},
	};

	for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++)
		for (int op = 0; op < 6; op++)
			CHECK_INT(
			    rules_op_allowed(table[i].t, (enum rules_op)op),
			    table[i].ok[op]);
}

static void test_valid(void)
{
	CHECK(rules_value_valid(RULES_STRING, ""));
	CHECK(rules_value_valid(RULES_INTEGER, "0"));
	CHECK(rules_value_valid(RULES_INTEGER, "-12"));
	CHECK(rules_value_valid(RULES_INTEGER, "+7"));
	CHECK(rules_value_valid(RULES_INTEGER, "9223372036854775807"));
	CHECK(!rules_value_valid(RULES_INTEGER, "9223372036854775808"));
	CHECK(rules_value_valid(RULES_INTEGER, "-9223372036854775808"));
	CHECK(!rules_value_valid(RULES_INTEGER, "-9223372036854775809"));
	CHECK(!rules_value_valid(RULES_INTEGER, "99999999999999999999999"));
	CHECK(!rules_value_valid(RULES_INTEGER, ""));
	CHECK(!rules_value_valid(RULES_INTEGER, "-"));
	CHECK(!rules_value_valid(RULES_INTEGER, " 1"));
	CHECK(!rules_value_valid(RULES_INTEGER, "1 "));
	CHECK(!rules_value_valid(RULES_INTEGER, "1.0"));
	CHECK(!rules_value_valid(RULES_INTEGER, "0x10"));
	CHECK(rules_value_valid(RULES_BOOLEAN, "TRUE"));
	CHECK(rules_value_valid(RULES_BOOLEAN, "False"));
	CHECK(rules_value_valid(RULES_BOOLEAN, "1"));
	CHECK(rules_value_valid(RULES_BOOLEAN, "0"));
	CHECK(!rules_value_valid(RULES_BOOLEAN, "yes"));
	CHECK(!rules_value_valid(RULES_BOOLEAN, "truex"));
	CHECK(!rules_value_valid(RULES_BOOLEAN, "2"));
	CHECK(rules_value_valid(RULES_UUID,
				"0B9D5C55-6c2e-4d0a-9b6f-3f8e2a1c7d10"));
	CHECK(
	    !rules_value_valid(RULES_UUID, "0b9d5c556c2e4d0a9b6f3f8e2a1c7d10"));
	CHECK(!rules_value_valid(RULES_UUID,
				 "0b9d5c55-6c2e-4d0a-9b6f-3f8e2a1c7d1g"));
	CHECK(!rules_value_valid(RULES_UUID,
				 "0b9d5c55-6c2e-4d0a-9b6f-3f8e2a1c7d1"));
	CHECK(!rules_value_valid(RULES_UUID,
				 "0b9d5c55-6c2e-4d0a-9b6f03f8e2a1c7d10"));
	CHECK(rules_value_valid(RULES_DATE, "2024-02-29"));
	CHECK(rules_value_valid(RULES_DATE, "2000-02-29"));
	CHECK(!rules_value_valid(RULES_DATE, "1900-02-29"));
	CHECK(!rules_value_valid(RULES_DATE, "2026-02-29"));
	CHECK(!rules_value_valid(RULES_DATE, "2026-04-31"));
	CHECK(rules_value_valid(RULES_DATE, "2026-12-31"));
	CHECK(!rules_value_valid(RULES_DATE, "2026-13-01"));
	CHECK(!rules_value_valid(RULES_DATE, "2026-00-10"));
	CHECK(!rules_value_valid(RULES_DATE, "2026-01-00"));
	CHECK(!rules_value_valid(RULES_DATE, "2026-1-01"));
	CHECK(!rules_value_valid(RULES_DATE, "2026/01/01"));
	CHECK(!rules_value_valid(RULES_DATE, "2026-01-01T"));
	CHECK(rules_value_valid(RULES_TIME, "00:00"));
	CHECK(rules_value_valid(RULES_TIME, "23:59:59"));
	CHECK(!rules_value_valid(RULES_TIME, "24:00"));
	CHECK(!rules_value_valid(RULES_TIME, "12:60"));
	CHECK(!rules_value_valid(RULES_TIME, "12:00:60"));
	CHECK(!rules_value_valid(RULES_TIME, "1:00"));
	CHECK(!rules_value_valid(RULES_TIME, "12:00:"));
	CHECK(!rules_value_valid(RULES_TIME, "12-00"));
	CHECK(!rules_value_valid(RULES_TIME, "12:00-00"));
	CHECK(!rules_value_valid(RULES_INTEGER, NULL));
}

/* Every operation on every type, against the example event. */
static void test_every_op(void)
{
	/* string */
	CHECK(eval("status", RULES_EQUAL, "FINISHED", NULL));
	CHECK(!eval("status", RULES_EQUAL, "finished", NULL)); /* exact */
	CHECK(!eval("status", RULES_EQUAL, "FINISHE", NULL));
	CHECK(!eval("status", RULES_EQUAL, "FINISHEDX", NULL));
	CHECK(eval("status", RULES_NOT_EQUAL, "FAILED", NULL));
	CHECK(!eval("status", RULES_NOT_EQUAL, "FINISHED", NULL));
	CHECK(eval("status", RULES_IN, "FAILED", "FINISHED", NULL));
	CHECK(!eval("status", RULES_IN, "FAILED", "RUNNING", NULL));
	CHECK(eval("status", RULES_NOT_IN, "FAILED", "RUNNING", NULL));
	CHECK(!eval("status", RULES_NOT_IN, "FAILED", "FINISHED", NULL));
	CHECK(!eval("status", RULES_LESS_THAN, "Z", NULL));
	CHECK(strstr(why, "not allowed for a string") != NULL);
	CHECK(!eval("status", RULES_GREATER_THAN, "A", NULL));
	/* uuid */
	CHECK(eval("job_id", RULES_EQUAL,
		   "0B9D5C55-6C2E-4D0A-9B6F-3F8E2A1C7D10", NULL));
	CHECK(!eval("job_id", RULES_NOT_EQUAL,
		    "0b9d5c55-6c2e-4d0a-9b6f-3f8e2a1c7d10", NULL));
	CHECK(eval("job_id", RULES_NOT_EQUAL,
		   "0b9d5c55-6c2e-4d0a-9b6f-3f8e2a1c7d11", NULL));
	CHECK(eval("job_id", RULES_IN, "11111111-1111-1111-1111-111111111111",
		   "0b9d5c55-6c2e-4d0a-9b6f-3F8E2A1C7D10", NULL));
	CHECK(!eval("job_id", RULES_NOT_IN,
		    "0b9d5c55-6c2e-4d0a-9b6f-3F8E2A1C7D10", NULL));
	CHECK(eval("job_id", RULES_NOT_IN,
		   "11111111-1111-1111-1111-111111111111", NULL));
	CHECK(!eval("job_id", RULES_LESS_THAN,
		    "ffffffff-1111-1111-1111-111111111111", NULL));
	CHECK(!eval("job_id", RULES_GREATER_THAN,
		    "00000000-1111-1111-1111-111111111111", NULL));
	/* integer (rows = "12345") */
	CHECK(eval("rows", RULES_EQUAL, "12345", NULL));
	CHECK(eval("rows", RULES_EQUAL, "012345", NULL));
	CHECK(eval("rows", RULES_EQUAL, "+12345", NULL));
	CHECK(!eval("rows", RULES_EQUAL, "12346", NULL));
	CHECK(eval("rows", RULES_NOT_EQUAL, "0", NULL));
	CHECK(!eval("rows", RULES_NOT_EQUAL, "12345", NULL));
	CHECK(eval("rows", RULES_IN, "1", "12345", NULL));
	CHECK(!eval("rows", RULES_IN, "1", "2", NULL));
	CHECK(eval("rows", RULES_NOT_IN, "1", "2", NULL));
	CHECK(!eval("rows", RULES_NOT_IN, "12345", NULL));
	CHECK(eval("rows", RULES_LESS_THAN, "12346", NULL));
	CHECK(!eval("rows", RULES_LESS_THAN, "12345", NULL)); /* strict */
	CHECK(eval("rows", RULES_GREATER_THAN, "12344", NULL));
	CHECK(!eval("rows", RULES_GREATER_THAN, "12345", NULL));
	CHECK(eval("rows", RULES_GREATER_THAN, "-1", NULL));
	/* "9" < "10" numerically (as text it would be the other way) */
	CHECK(eval("columns", RULES_LESS_THAN, "10", NULL));
	CHECK(!eval("columns", RULES_GREATER_THAN, "10", NULL));
	CHECK(eval("rows", RULES_GREATER_THAN, "9", NULL));
	/* JSON numbers arrive as their decimal text */
	CHECK(eval("finished_at_weekday", RULES_EQUAL, "5", NULL));
	CHECK(eval("finished_at_weekday", RULES_IN, "1", "2", "3", "4", "5",
		   NULL));
	/* boolean: "False" as Erathos sends it */
	CHECK(eval("is_orchestration", RULES_EQUAL, "false", NULL));
	CHECK(eval("is_orchestration", RULES_EQUAL, "0", NULL));
	CHECK(eval("is_orchestration", RULES_EQUAL, "FALSE", NULL));
	CHECK(!eval("is_orchestration", RULES_EQUAL, "true", NULL));
	CHECK(eval("is_orchestration", RULES_NOT_EQUAL, "True", NULL));
	CHECK(!eval("is_orchestration", RULES_NOT_EQUAL, "false", NULL));
	CHECK(eval("force_history", RULES_EQUAL, "1", NULL));	/* JSON true */
	CHECK(eval("nested_table", RULES_EQUAL, "TRUE", NULL)); /* "1" */
	CHECK(!eval("nested_table", RULES_IN, "1", NULL));
	CHECK(!eval("nested_table", RULES_NOT_IN, "0", NULL));
	CHECK(!eval("nested_table", RULES_LESS_THAN, "1", NULL));
	CHECK(!eval("nested_table", RULES_GREATER_THAN, "0", NULL));
	/* date */
	CHECK(eval("finished_at_date", RULES_EQUAL, "2026-11-27", NULL));
	CHECK(eval("finished_at_date", RULES_NOT_EQUAL, "2026-11-28", NULL));
	CHECK(eval("finished_at_date", RULES_LESS_THAN, "2026-12-01", NULL));
	CHECK(eval("finished_at_date", RULES_GREATER_THAN, "2025-12-31", NULL));
	CHECK(
	    !eval("finished_at_date", RULES_GREATER_THAN, "2026-11-27", NULL));
	CHECK(!eval("finished_at_date", RULES_IN, "2026-11-27", NULL));
	CHECK(!eval("finished_at_date", RULES_NOT_IN, "2026-11-28", NULL));
	/* time: 06:42 == 06:42:00 */
	CHECK(eval("finished_at_time", RULES_EQUAL, "06:42:00", NULL));
	CHECK(eval("finished_at_time", RULES_EQUAL, "06:42", NULL));
	CHECK(!eval("finished_at_time", RULES_EQUAL, "06:42:01", NULL));
	CHECK(eval("finished_at_time", RULES_NOT_EQUAL, "06:43", NULL));
	CHECK(eval("finished_at_time", RULES_LESS_THAN, "06:42:01", NULL));
	CHECK(!eval("finished_at_time", RULES_LESS_THAN, "06:42", NULL));
	CHECK(eval("finished_at_time", RULES_GREATER_THAN, "06:41:59", NULL));
	CHECK(!eval("finished_at_time", RULES_GREATER_THAN, "6:00", NULL));
	CHECK(strstr(why, "the rule's value \"6:00\" is not a time") != NULL);
	CHECK(!eval("finished_at_time", RULES_IN, "06:42", NULL));
	CHECK(!eval("finished_at_time", RULES_NOT_IN, "07:00", NULL));
	/* extra fields are strings */
	CHECK(eval("custom", RULES_EQUAL, "10", NULL));
	CHECK(!eval("custom", RULES_EQUAL, "010", NULL));
}

static void test_missing_and_bad(void)
{
	CHECK(eval("rows", RULES_GREATER_THAN, "0", NULL));
	/* missing field: false for every operation, NOT_* included */
	CHECK(!eval("table_name", RULES_EQUAL, "x", NULL));
	CHECK_STR(why, "TABLE_NAME EQUAL x: event has no field table_name");
	CHECK(!eval("table_name", RULES_NOT_EQUAL, "x", NULL));
	CHECK(!eval("table_name", RULES_NOT_IN, "x", "y", NULL));
	CHECK_STR(why, "TABLE_NAME NOT_IN [x, y]: event has no field "
		       "table_name");
	CHECK(!eval("schema_name", RULES_IN, "x", NULL)); /* JSON null */
	/* unparsable event value: false, NOT_* included */
	CHECK(!eval("total_duration", RULES_LESS_THAN, "10", NULL));
	CHECK_STR(why, "TOTAL_DURATION LESS_THAN 10: \"abc\" is not an "
		       "integer");
	CHECK(!eval("total_duration", RULES_NOT_EQUAL, "10", NULL));
	CHECK(!eval("total_duration", RULES_NOT_IN, "10", NULL));
	CHECK(!eval("connection_id", RULES_NOT_EQUAL,
		    "0b9d5c55-6c2e-4d0a-9b6f-3f8e2a1c7d10", NULL));
	CHECK(strstr(why, "is not a uuid") != NULL);
	CHECK(eval("force_history", RULES_NOT_EQUAL, "false", NULL));
	CHECK(!eval("execution_id", RULES_EQUAL,
		    "9a7c3e21-4b5d-4f60-8e19-0c2d3b4a5f67", NULL));
	CHECK(strstr(why, "\"9a7c3e21\\x004b5d") != NULL); /* NUL escaped */
	/* the sentence for a plain mismatch */
	CHECK(!eval("status", RULES_EQUAL, "FAILED", NULL));
	CHECK_STR(why, "STATUS EQUAL FAILED: event has status \"FINISHED\"");
	/* event values are cut to 64 bytes and escaped */
	CHECK(!eval("long", RULES_EQUAL, "x", NULL));
	CHECK(strstr(why, "event has long \"\\\"q\\\\") != NULL);
	CHECK(strstr(why, "...\"") != NULL);
	CHECK(strlen(why) < 120);
	/* a bad rule value (a rule config validation would refuse) */
	CHECK(!eval("rows", RULES_IN, "1", "many", NULL));
	CHECK_STR(why, "ROWS IN [1, many]: the rule's value \"many\" is not "
		       "an integer");
	CHECK(!eval("rows", RULES_EQUAL, NULL));
	CHECK(strstr(why, "exactly one value") != NULL);
	/* IN and NOT_IN with no value at all */
	CHECK(!eval("rows", RULES_IN, NULL));
	CHECK(eval("rows", RULES_NOT_IN, NULL));
}

static void test_why_buffers(void)
{
	char small[10];
	struct rule r = {"status", RULES_STRING, RULES_EQUAL,
			 (char *[]){"FAILED"}, 1};

	CHECK(rules_match(&r, ev, small, sizeof(small)) == 0);
	CHECK_STR(small, "STATUS EQ");
	CHECK(rules_match(&r, ev, NULL, 0) == 0);
	CHECK(rules_match(&r, ev, small, 0) == 0);
	r.values[0] = "FINISHED";
	small[0] = 'X';
	CHECK(rules_match(&r, ev, small, sizeof(small)) == 1);
}

static void test_clear(void)
{
	struct rule r = {strdup("rows"), RULES_INTEGER, RULES_IN,
			 calloc(2, sizeof(char *)), 2};

	r.values[0] = strdup("1");
	r.values[1] = strdup("2");
	rules_clear(&r);
	CHECK(r.field == NULL && r.values == NULL && r.nvalues == 0);
	rules_clear(&r); /* twice is harmless */
}

int main(void)
{
	static const char body[] =
	    "{\"JOB_ID\":\"0b9d5c55-6c2e-4d0a-9b6f-3f8e2a1c7d10\","
	    "\"CONNECTION_ID\":\"5f1e7a2b-93c4-4e1d-8a6f\","
	    "\"EXECUTION_ID\":\"9a7c3e21\\u00004b5d-4f60-8e19-0c2d3b4a5f67\","
	    "\"SCHEMA_NAME\":null,"
	    "\"STATUS\":\"FINISHED\",\"ROWS\":\"12345\",\"COLUMNS\":\"9\","
	    "\"TOTAL_DURATION\":\"abc\",\"IS_ORCHESTRATION\":\"False\","
	    "\"FORCE_HISTORY\":true,\"NESTED_TABLE\":\"1\","
	    "\"FINISHED_AT_DATE\":\"2026-11-27\","
	    "\"FINISHED_AT_TIME\":\"06:42\",\"FINISHED_AT_WEEKDAY\":5,"
	    "\"custom\":\"10\",\"long\":\"\\\"q\\\\"
	    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
	    "\"}";
	char err[200];

	ev = event_parse(body, sizeof(body) - 1, err, sizeof(err));
	CHECK(ev != NULL);
	if (!ev) {
		fprintf(stderr, "%s\n", err);
		return check_report();
	}
	test_types();
	test_ops();
	test_allowed();
	test_valid();
	test_every_op();
	test_missing_and_bad();
	test_why_buffers();
	test_clear();
	event_free(ev);
	return check_report();
}
