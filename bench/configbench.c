/*
 * configbench — config load time and per-event match cost with many
 * triggers: writes a config of NTRIGGERS triggers over as many Erathos
 * job ids to a temp file, times config_load(), then times event_parse()
 * + match_event() over events for random jobs.
 *   usage: configbench [NTRIGGERS] [NEVENTS]
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "event.h"
#include "match.h"

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void job_id(int i, char *out, size_t len)
{
	snprintf(out, len, "%08x-0000-4000-8000-%012x", i, i * 7);
}

int main(int argc, char **argv)
{
	int ntriggers = argc > 1 ? (int)strtol(argv[1], NULL, 10) : 10000;
	int nevents = argc > 2 ? (int)strtol(argv[2], NULL, 10) : 1000000;
	char path[] = "/tmp/configbench-XXXXXX";
	char job[40];
	int fd = mkstemp(path);
	FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;

	if (!f)
		return 1;
	fprintf(f, "server: {listen: \"127.0.0.1:18080\", auth: {tokens: [bench-config-token-0c1d]}}\n"
		   "variables: {account: \"1\"}\ntriggers:\n");
	for (int i = 0; i < ntriggers; i++) {
		job_id(i, job, sizeof job);
		fprintf(f,
			"  - name: t%d\n    method: POST\n"
			"    url: \"https://ab123.us1.dbt.com/api/v2/accounts/${{variables.account}}/jobs/%d/run/\"\n"
			"    body: {cause: \"by ${{erathos.triggered_by}}\"}\n"
			"    rules: [{variable_name: STATUS, operation: EQUAL, value: FINISHED}]\n"
			"    jobs: [\"%s\"]\n",
			i, i, job);
	}
	fclose(f);

	struct config_diag diag = {0};
	double t0 = now_s();
	struct config *cfg = config_load(path, &diag);
	double load_ms = (now_s() - t0) * 1000;
	unlink(path);
	if (!cfg) {
		for (size_t i = 0; i < diag.nlines && i < 5; i++)
			fprintf(stderr, "%s\n", diag.lines[i]);
		fprintf(stderr, "configbench: config did not load\n");
		return 1;
	}
	config_diag_clear(&diag);

	size_t *out = calloc(cfg->ntriggers, sizeof *out);
	char body[512], err[256];
	size_t matched = 0;
	srand(1);
	t0 = now_s();
	for (int i = 0; i < nevents; i++) {
		job_id(rand() % ntriggers, job, sizeof job);
		int n = snprintf(body, sizeof body,
				 "{\"job_id\":\"%s\",\"status\":\"FINISHED\",\"execution_id\":\"x\",\"table_name\":\"t\",\"triggered_by\":\"Erathos Schedule\"}",
				 job);
		struct event *ev = event_parse(body, (size_t)n, err, sizeof err);
		matched += match_event(cfg, ev, out, cfg->ntriggers);
		event_free(ev);
	}
	double per_us = (now_s() - t0) * 1e6 / nevents;
	printf("config_load_ms %.1f\nparse_and_match_us %.2f\nmatched %zu of %d\n",
	       load_ms, per_us, matched, nevents);
	free(out);
	config_release(cfg);
	return matched == (size_t)nevents ? 0 : 1;
}
