/* Unit tests for src/match.c, on a struct config built by hand. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "config.h"
#include "event.h"
#include "match.h"
#include "rules.h"
#include "strmap.h"

#define JOB_A "0b9d5c55-6c2e-4d0a-9b6f-3f8e2a1c7d10"
#define JOB_B "11111111-2222-3333-4444-555555555555"

static char *finished[] = {"FINISHED"};
static char *rows_min[] = {"100"};
static struct rule status_rule = {"status", RULES_STRING, RULES_EQUAL, finished,
				  1};
static struct rule rows_rule = {"rows", RULES_INTEGER, RULES_GREATER_THAN,
				rows_min, 1};
static struct rule both[2];

static char *jobs_a[] = {JOB_A};
static char *jobs_b[] = {JOB_B};
static char *jobs_any[] = {"*"};
static char *jobs_a_any_a[] = {JOB_A, "*", JOB_A};

/* The triggers, in config order:
 *   0 a-finished   jobs [A]         STATUS EQUAL FINISHED
 *   1 b            jobs [B]
 *   2 any          jobs ["*"]
 *   3 a-inactive   jobs [A]         is_active: false
 *   4 a-any-a      jobs [A, *, A]   (listed under both)
 *   5 any-rows     jobs ["*"]       STATUS EQUAL FINISHED, ROWS > 100
 */
static struct config_trigger triggers[6];
static struct config cfg;

static void set(size_t i, const char *name, int active, char **jobs,
		size_t njobs, struct rule *rules, size_t nrules)
{
	triggers[i].name = (char *)name;
	triggers[i].active = active;
	triggers[i].jobs = jobs;
	triggers[i].njobs = njobs;
	triggers[i].rules = rules;
	triggers[i].nrules = nrules;
}

/* Builds the indices the way the config loader does: in config order. */
static void build(void)
{
	static size_t any[6];

	both[0] = status_rule;
	both[1] = rows_rule;
	set(0, "a-finished", 1, jobs_a, 1, &status_rule, 1);
	set(1, "b", 1, jobs_b, 1, NULL, 0);
	set(2, "any", 1, jobs_any, 1, NULL, 0);
	set(3, "a-inactive", 0, jobs_a, 1, NULL, 0);
	set(4, "a-any-a", 1, jobs_a_any_a, 3, NULL, 0);
	set(5, "any-rows", 1, jobs_any, 1, both, 2);
	cfg.triggers = triggers;
	cfg.ntriggers = 6;
	cfg.by_job = strmap_new();
	cfg.by_name = strmap_new();
	cfg.any_job = any;
	for (size_t i = 0; i < 6; i++) {
		CHECK(strmap_add(cfg.by_name, triggers[i].name, i) == 0);
		for (size_t j = 0; j < triggers[i].njobs; j++) {
			if (strcmp(triggers[i].jobs[j], "*") == 0)
				any[cfg.nany_job++] = i;
			else
				CHECK(strmap_add(cfg.by_job,
						 triggers[i].jobs[j], i) == 0);
		}
	}
}

static struct event *parse(const char *s)
{
	char err[200];
	struct event *ev = event_parse(s, strlen(s), err, sizeof(err));

	if (!ev)
		fprintf(stderr, "event_parse: %s\n", err);
	return ev;
}

/* The matching trigger indices as a string like "0,2,4". */
static const char *matched(const char *body)
{
	static char s[64];
	struct event *ev = parse(body);
	size_t out[6], n = 0, k = 0;

	s[0] = '\0';
	if (ev)
		n = match_event(&cfg, ev, out, 6);
	for (size_t i = 0; i < n; i++)
		k += (size_t)snprintf(s + k, sizeof(s) - k, "%s%zu",
				      i ? "," : "", out[i]);
	event_free(ev);
	return s;
}

static void test_match_event(void)
{
	/* A, FINISHED, rows 5: 0, 2 and 4 (once, though listed 3 times);
	 * 3 is inactive, 5 needs rows > 100 */
	CHECK_STR(matched("{\"job_id\":\"" JOB_A "\",\"status\":\"FINISHED\","
			  "\"rows\":\"5\"}"),
		  "0,2,4");
	/* the job id is compared case-insensitively */
	CHECK_STR(
	    matched("{\"JOB_ID\":\"0B9D5C55-6C2E-4D0A-9B6F-3F8E2A1C7D10\","
		    "\"STATUS\":\"FINISHED\",\"ROWS\":\"500\"}"),
	    "0,2,4,5");
	CHECK_STR(matched("{\"job_id\":\"" JOB_A "\",\"status\":\"FAILED\"}"),
		  "2,4");
	CHECK_STR(matched("{\"job_id\":\"" JOB_B "\"}"), "1,2,4");
	/* an unknown job: only the "*" triggers whose rules hold */
	CHECK_STR(matched("{\"job_id\":\"x\",\"status\":\"FINISHED\","
			  "\"rows\":101}"),
		  "2,4,5");
	/* a job id with a NUL byte does not match the id it starts with */
	CHECK_STR(matched("{\"job_id\":\"" JOB_A "\\u0000x\"}"), "2,4");
	/* a job id too long to be a uuid */
	CHECK_STR(matched("{\"job_id\":\"" JOB_A JOB_A JOB_A JOB_A JOB_A JOB_A
			      JOB_A JOB_A "\"}"),
		  "2,4");
}

static void test_match_limits(void)
{
	struct event *ev = parse("{\"job_id\":\"" JOB_A "\","
				 "\"status\":\"FINISHED\",\"rows\":500}");
	size_t out[6];
	size_t idx_any[] = {2, 4, 5};
	size_t idx_unsorted[] = {5, 2, 4, 2};
	size_t *save = cfg.any_job;

	/* max limits how many are written */
	CHECK_INT(match_event(&cfg, ev, out, 2), 2);
	CHECK_INT(out[0], 0);
	CHECK_INT(out[1], 2);
	CHECK_INT(match_event(&cfg, ev, out, 0), 0);
	CHECK_INT(match_event(NULL, ev, out, 6), 0);
	/* lists not in config order still give config order */
	cfg.any_job = idx_unsorted;
	cfg.nany_job = 4;
	CHECK_INT(match_event(&cfg, ev, out, 6), 4);
	CHECK(out[0] == 0 && out[1] == 2 && out[2] == 4 && out[3] == 5);
	/* a stale index past ntriggers is ignored */
	idx_any[2] = 99;
	cfg.any_job = idx_any;
	cfg.nany_job = 3;
	CHECK_INT(match_event(&cfg, ev, out, 6), 3);
	CHECK(out[0] == 0 && out[1] == 2 && out[2] == 4);
	cfg.any_job = save;
	cfg.nany_job = 3;
	/* no triggers at all */
	{
		struct config empty = {0};

		CHECK_INT(match_event(&empty, ev, out, 6), 0);
	}
	event_free(ev);
}

static void test_match_trigger(void)
{
	struct event *ev = parse("{\"job_id\":\"" JOB_A "\","
				 "\"status\":\"FAILED\",\"rows\":500}");
	struct event *evq = parse("{\"job_id\":\"a\\\"b\\nc\"}");
	struct event *evn = parse("{\"job_id\":\"" JOB_B "\"}");
	char why[200];

	CHECK(match_trigger(&triggers[0], ev, why, sizeof(why)) == 0);
	CHECK_STR(why, "STATUS EQUAL FINISHED: event has status \"FAILED\"");
	CHECK(match_trigger(&triggers[1], ev, why, sizeof(why)) == 0);
	CHECK_STR(why, "job_id \"" JOB_A "\" is not in jobs");
	CHECK(match_trigger(&triggers[2], ev, why, sizeof(why)) == 1);
	CHECK(match_trigger(&triggers[3], ev, why, sizeof(why)) == 0);
	CHECK_STR(why, "trigger is not active");
	CHECK(match_trigger(&triggers[4], ev, why, sizeof(why)) == 1);
	CHECK(match_trigger(&triggers[5], ev, why, sizeof(why)) == 0);
	CHECK_STR(why, "STATUS EQUAL FINISHED: event has status \"FAILED\"");
	CHECK(match_trigger(&triggers[0], evq, why, sizeof(why)) == 0);
	CHECK_STR(why, "job_id \"a\\\"b\\x0Ac\" is not in jobs");
	CHECK(match_trigger(&triggers[5], evn, why, sizeof(why)) == 0);
	CHECK_STR(why, "STATUS EQUAL FINISHED: event has no field status");
	CHECK(match_trigger(&triggers[1], evn, NULL, 0) == 1);
	/* a long job id is cut to 64 bytes */
	event_free(evq);
	evq = parse("{\"job_id\":\"" JOB_A JOB_A "\"}");
	CHECK(match_trigger(&triggers[0], evq, why, sizeof(why)) == 0);
	CHECK_STR(why, "job_id \"" JOB_A "0b9d5c55-6c2e-4d0a-9b6f-3f8e"
		       "...\" is not in jobs");
	CHECK(match_trigger(&triggers[0], evn, NULL, 0) == 0);
	/* upper-case job id in the event */
	event_free(ev);
	ev = parse("{\"job_id\":\"0B9D5C55-6C2E-4D0A-9B6F-3F8E2A1C7D10\","
		   "\"status\":\"FINISHED\"}");
	CHECK(match_trigger(&triggers[0], ev, why, sizeof(why)) == 1);
	/* a hand-built event without job_id */
	{
		struct event none = {NULL, 0};

		CHECK(match_trigger(&triggers[0], &none, why, sizeof(why)) ==
		      0);
		CHECK_STR(why, "event has no job_id");
		CHECK(match_trigger(&triggers[2], &none, why, sizeof(why)) ==
		      1);
	}
	event_free(ev);
	event_free(evq);
	event_free(evn);
}

int main(void)
{
	build();
	test_match_event();
	test_match_limits();
	test_match_trigger();
	strmap_free(cfg.by_job);
	strmap_free(cfg.by_name);
	return check_report();
}
