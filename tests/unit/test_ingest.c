/*
 * Unit tests for src/api/ingest.c: one event body from bytes to answer,
 * without a socket — a config loaded from a file, a real SQLite store in
 * a temporary directory, and a counter in place of the dispatcher.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "config.h"
#include "ingest.h"
#include "store.h"

#define JOB_A "0b9d5c55-6c2e-4d0a-9b6f-3f8e2a1c7d10"
#define JOB_B "11111111-2222-3333-4444-555555555555"

static char tmpdir[64];
static int wakes;

static void count_wake(void *ctx)
{
	(void)ctx;
	wakes++;
}

static const char config_yaml[] =
    "store:\n"
    "  path: %s/ingest.db\n"
    "triggers:\n"
    "  - name: a-finished\n"
    "    method: POST\n"
    "    url: http://127.0.0.1:9/a\n"
    "    rules:\n"
    "      - {variable_name: STATUS, operation: EQUAL, value: FINISHED}\n"
    "    jobs: [\"" JOB_A "\"]\n"
    "  - name: a-any\n"
    "    method: POST\n"
    "    url: http://127.0.0.1:9/b\n"
    "    jobs: [\"" JOB_A "\"]\n";

static struct config *load(void)
{
	char path[128];
	struct config_diag diag = {0};
	FILE *f;

	snprintf(path, sizeof path, "%s/triggerd.yaml", tmpdir);
	f = fopen(path, "w");
	if (!f)
		return NULL;
	fprintf(f, config_yaml, tmpdir);
	fclose(f);
	struct config *cfg = config_load(path, &diag);
	for (size_t i = 0; i < diag.nlines; i++)
		fprintf(stderr, "%s\n", diag.lines[i]);
	config_diag_clear(&diag);
	return cfg;
}

/* Posts body and returns the parsed answer (NULL for an error answer). */
static json_t *post(const struct ingest *in, const char *body,
		    struct ingest_result *res)
{
	json_t *j;

	ingest_event(in, body, strlen(body), res);
	j = res->json ? json_loads(res->json, 0, NULL) : NULL;
	free(res->json);
	res->json = NULL;
	return j;
}

static const char *status_of(json_t *j)
{
	return json_string_value(json_object_get(j, "status"));
}

static void test_answers(const struct ingest *in)
{
	struct ingest_result res;
	json_t *j, *first;

	/* invalid JSON, not an object, no job_id: 400, nothing stored */
	j = post(in, "{", &res);
	CHECK_INT(res.status, 400);
	CHECK(res.result == METRICS_REJECTED && res.error[0] && !j);
	j = post(in, "[1]", &res);
	CHECK_INT(res.status, 400);
	j = post(in, "{\"status\":\"FINISHED\"}", &res);
	CHECK_INT(res.status, 400);
	CHECK(strstr(res.error, "job_id") != NULL);
	CHECK_INT(store_count_pending(in->store), 0);
	CHECK_INT(wakes, 0);

	/* no trigger wants job B: unmatched, nothing stored, nobody woken */
	j = post(in, "{\"job_id\":\"" JOB_B "\",\"execution_id\":\"x1\"}", &res);
	CHECK_INT(res.status, 200);
	CHECK(res.result == METRICS_UNMATCHED);
	CHECK_STR(status_of(j), "unmatched");
	CHECK_INT(json_array_size(json_object_get(j, "deliveries")), 0);
	json_decref(j);
	CHECK_INT(store_count_pending(in->store), 0);
	CHECK_INT(wakes, 0);

	/* a FAILED execution of job A: only the trigger without a rule */
	j = post(in, "{\"JOB_ID\":\"" JOB_A "\",\"STATUS\":\"FAILED\","
		     "\"execution_id\":\"e1\",\"table_name\":\"t\"}", &res);
	CHECK_INT(res.status, 202);
	CHECK(res.result == METRICS_ACCEPTED);
	CHECK_INT(json_array_size(json_object_get(j, "deliveries")), 1);
	CHECK_STR(json_string_value(json_object_get(
		      json_array_get(json_object_get(j, "deliveries"), 0),
		      "trigger")),
		  "a-any");
	json_decref(j);
	CHECK_INT(store_count_pending(in->store), 1);
	CHECK_INT(wakes, 1);

	/* a FINISHED one: both, then its repeat is a duplicate of it */
	const char *fin = "{\"job_id\":\"" JOB_A "\",\"status\":\"FINISHED\","
			  "\"execution_id\":\"e2\",\"table_name\":\"t\"}";
	first = post(in, fin, &res);
	CHECK_INT(res.status, 202);
	CHECK_INT(json_array_size(json_object_get(first, "deliveries")), 2);
	CHECK_INT(store_count_pending(in->store), 3);
	j = post(in, fin, &res);
	CHECK_INT(res.status, 200);
	CHECK(res.result == METRICS_DUPLICATE);
	CHECK_STR(status_of(j), "duplicate");
	CHECK_STR(json_string_value(json_object_get(j, "event")),
		  json_string_value(json_object_get(first, "event")));
	json_decref(j);
	json_decref(first);
	CHECK_INT(store_count_pending(in->store), 3);
	CHECK_INT(wakes, 2);

	/* an event lacking a field the dedup key names is not deduplicated */
	const char *nokey = "{\"job_id\":\"" JOB_A "\",\"status\":\"FINISHED\"}";
	j = post(in, nokey, &res);
	CHECK_INT(res.status, 202);
	json_decref(j);
	j = post(in, nokey, &res);
	CHECK_INT(res.status, 202);
	json_decref(j);
	CHECK_INT(store_count_pending(in->store), 7);
	CHECK_INT(wakes, 4);
}

int main(void)
{
	char err[256], path[128];
	struct config_slot slot;

	if (check_tmpdir(tmpdir, sizeof tmpdir, "test_ingest") < 0)
		return 1;
	struct config *cfg = load();
	CHECK(cfg != NULL);
	if (!cfg)
		return check_report();
	snprintf(path, sizeof path, "%s/ingest.db", tmpdir);
	struct store *st = store_open(path, err, sizeof err);
	CHECK(st != NULL);
	if (!st)
		return check_report();
	config_slot_init(&slot, cfg);
	struct ingest in = {.slot = &slot, .store = st, .wake = count_wake};

	test_answers(&in);

	store_close(st);
	config_slot_destroy(&slot);
	check_rmtree(tmpdir);
	return check_report();
}
