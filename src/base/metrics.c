/*
 * metrics — counters and one histogram, rendered as Prometheus text.
 *
 * DESIGN: module-owned state behind one mutex (see metrics.h). Bumping a
 * counter is a lock, a lookup in a short list of per-trigger series and an
 * increment: cheap next to the HTTP request it counts.
 */
#include "metrics.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"

static const char *const event_results[] = {
    [METRICS_ACCEPTED] = "accepted",   [METRICS_DUPLICATE] = "duplicate",
    [METRICS_UNMATCHED] = "unmatched", [METRICS_REJECTED] = "rejected",
    [METRICS_UNAVAILABLE] = "unavailable",
};
static const char *const outcomes[] = {
    [METRICS_DELIVERED] = "delivered",
    [METRICS_FAILED] = "failed",
    [METRICS_CANCELLED] = "cancelled",
};
static const char *const classes[] = {"2xx", "3xx", "4xx", "5xx", "error"};
static const char *const run_statuses[] = {
    [METRICS_RUN_SUCCESS] = "success", [METRICS_RUN_ERROR] = "error",
    [METRICS_RUN_CANCELLED] = "cancelled", [METRICS_RUN_TIMEOUT] = "timeout",
    [METRICS_RUN_LOST] = "lost", [METRICS_RUN_UNKNOWN] = "unknown",
};
static const char *const avoided_how[] = {[METRICS_DBT_FOUND] = "found",
					  [METRICS_DBT_REUSED] = "reused"};
static const double buckets[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
				 0.5,   1,    2.5,   5,    10,  30};
#define NRESULTS (sizeof event_results / sizeof event_results[0])
#define NOUTCOMES (sizeof outcomes / sizeof outcomes[0])
#define NCLASSES (sizeof classes / sizeof classes[0])
#define NBUCKETS (sizeof buckets / sizeof buckets[0])
#define NRUNS (sizeof run_statuses / sizeof run_statuses[0])
#define NHOW (sizeof avoided_how / sizeof avoided_how[0])

/* Which counters of a series a family shows. */
enum family { FAM_DELIVERIES, FAM_ATTEMPTS, FAM_RUNS, FAM_AVOIDED };

struct series {
	char *trigger;
	uint64_t deliveries[NOUTCOMES];
	uint64_t attempts[NCLASSES];
	uint64_t runs[NRUNS];
	uint64_t avoided[NHOW];
	int dbt; /* has dbt counts: shown in the dbt families */
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static uint64_t events[NRESULTS];
static uint64_t reloads[2]; /* failure, success */
static uint64_t duration_buckets[NBUCKETS];
static uint64_t duration_count;
static double duration_sum;
static struct series *series;
static size_t nseries, capseries;

/* The series of trigger, created if new; NULL if out of memory.
 * Called with mu held. */
static struct series *series_for(const char *trigger)
{
	for (size_t i = 0; i < nseries; i++)
		if (strcmp(series[i].trigger, trigger) == 0)
			return &series[i];
	if (nseries == capseries) {
		size_t cap = capseries ? capseries * 2 : 16;
		struct series *p = realloc(series, cap * sizeof *p);
		if (!p)
			return NULL;
		series = p;
		capseries = cap;
	}
	struct series *s = &series[nseries];
	memset(s, 0, sizeof *s);
	s->trigger = strdup(trigger);
	if (!s->trigger)
		return NULL;
	nseries++;
	return s;
}

void metrics_event(enum metrics_result result)
{
	size_t i = (size_t)result;
	if (i >= NRESULTS)
		return;
	pthread_mutex_lock(&mu);
	events[i]++;
	pthread_mutex_unlock(&mu);
}

void metrics_delivery(const char *trigger, enum metrics_outcome outcome)
{
	size_t i = (size_t)outcome;
	if (i >= NOUTCOMES)
		return;
	pthread_mutex_lock(&mu);
	struct series *s = series_for(trigger);
	if (s)
		s->deliveries[i]++;
	pthread_mutex_unlock(&mu);
}

void metrics_attempt(const char *trigger, int status, double seconds)
{
	size_t c = status >= 200 && status < 600 ? (size_t)(status / 100 - 2)
						 : NCLASSES - 1;
	if (status >= 100 && status < 200)
		c = NCLASSES - 1;
	pthread_mutex_lock(&mu);
	struct series *s = series_for(trigger);
	if (s)
		s->attempts[c]++;
	for (size_t b = 0; b < NBUCKETS; b++)
		if (seconds <= buckets[b])
			duration_buckets[b]++;
	duration_count++;
	duration_sum += seconds;
	pthread_mutex_unlock(&mu);
}

void metrics_dbt_run(const char *trigger, enum metrics_run_status status)
{
	size_t i = (size_t)status;
	if (i >= NRUNS)
		return;
	pthread_mutex_lock(&mu);
	struct series *s = series_for(trigger);
	if (s) {
		s->runs[i]++;
		s->dbt = 1;
	}
	pthread_mutex_unlock(&mu);
}

void metrics_dbt_avoided(const char *trigger, enum metrics_dbt_how how)
{
	size_t i = (size_t)how;
	if (i >= NHOW)
		return;
	pthread_mutex_lock(&mu);
	struct series *s = series_for(trigger);
	if (s) {
		s->avoided[i]++;
		s->dbt = 1;
	}
	pthread_mutex_unlock(&mu);
}

static uint64_t counter_of(const struct series *s, enum family f, size_t k)
{
	switch (f) {
	case FAM_DELIVERIES: return s->deliveries[k];
	case FAM_ATTEMPTS: return s->attempts[k];
	case FAM_RUNS: return s->runs[k];
	default: return s->avoided[k];
	}
}

void metrics_reload(int ok)
{
	pthread_mutex_lock(&mu);
	reloads[ok ? 1 : 0]++;
	pthread_mutex_unlock(&mu);
}

/* Appends v as a label value: \, " and newline escaped. */
static int put_label(struct buf *out, const char *v)
{
	int rc = 0;
	for (; *v && rc == 0; v++) {
		if (*v == '\\' || *v == '"')
			rc = buf_putc(out, '\\') < 0 ? -1 : buf_putc(out, *v);
		else if (*v == '\n')
			rc = buf_puts(out, "\\n");
		else
			rc = buf_putc(out, *v);
	}
	return rc;
}

/* One per-trigger counter family: a line per trigger and label value;
 * f selects the counters (the dbt ones only for triggers that have any). */
static int render_series(struct buf *out, const char *family,
			 const char *help, const char *label,
			 const char *const *values, size_t nvalues,
			 enum family f)
{
	int rc = buf_printf(out, "# HELP %s %s\n# TYPE %s counter\n", family,
			    help, family);
	for (size_t i = 0; i < nseries; i++)
		for (size_t k = 0; k < nvalues; k++) {
			if ((f == FAM_RUNS || f == FAM_AVOIDED) &&
			    !series[i].dbt)
				break;
			uint64_t v = counter_of(&series[i], f, k);
			rc |= buf_printf(out, "%s{trigger=\"", family);
			rc |= put_label(out, series[i].trigger);
			rc |= buf_printf(out, "\",%s=\"%s\"} %llu\n", label,
					 values[k], (unsigned long long)v);
		}
	return rc ? -1 : 0;
}

static int render_triggers(struct buf *out)
{
	int rc = render_series(out, "triggerd_deliveries_total",
			       "Deliveries that reached a final state.",
			       "outcome", outcomes, NOUTCOMES, FAM_DELIVERIES);
	rc |= render_series(out, "triggerd_delivery_attempts_total",
			    "HTTP attempts by result class.", "class", classes,
			    NCLASSES, FAM_ATTEMPTS);
	rc |= render_series(out, "triggerd_dbt_runs_total",
			    "Followed dbt Cloud runs by final status.",
			    "status", run_statuses, NRUNS, FAM_RUNS);
	rc |= render_series(out, "triggerd_dbt_duplicates_avoided_total",
			    "dbt Cloud runs not started twice, by how.", "how",
			    avoided_how, NHOW, FAM_AVOIDED);
	return rc ? -1 : 0;
}

static int render_histogram(struct buf *out)
{
	int rc = buf_puts(out,
		"# HELP triggerd_delivery_duration_seconds Time of one delivery attempt.\n"
		"# TYPE triggerd_delivery_duration_seconds histogram\n");
	for (size_t b = 0; b < NBUCKETS; b++)
		rc |= buf_printf(out,
				 "triggerd_delivery_duration_seconds_bucket{le=\"%g\"} %llu\n",
				 buckets[b],
				 (unsigned long long)duration_buckets[b]);
	rc |= buf_printf(out,
			 "triggerd_delivery_duration_seconds_bucket{le=\"+Inf\"} %llu\n"
			 "triggerd_delivery_duration_seconds_sum %.6f\n"
			 "triggerd_delivery_duration_seconds_count %llu\n",
			 (unsigned long long)duration_count, duration_sum,
			 (unsigned long long)duration_count);
	return rc ? -1 : 0;
}

int metrics_render(struct buf *out, int64_t pending, int64_t followed)
{
	int rc;

	pthread_mutex_lock(&mu);
	rc = buf_puts(out,
		"# HELP triggerd_events_total Answers to POST /v1/events by result.\n"
		"# TYPE triggerd_events_total counter\n");
	for (size_t i = 0; i < NRESULTS; i++)
		rc |= buf_printf(out, "triggerd_events_total{result=\"%s\"} %llu\n",
				 event_results[i],
				 (unsigned long long)events[i]);
	rc |= render_triggers(out);
	rc |= render_histogram(out);
	rc |= buf_printf(out,
		"# HELP triggerd_config_reloads_total Configuration reloads by result.\n"
		"# TYPE triggerd_config_reloads_total counter\n"
		"triggerd_config_reloads_total{result=\"success\"} %llu\n"
		"triggerd_config_reloads_total{result=\"failure\"} %llu\n",
		(unsigned long long)reloads[1], (unsigned long long)reloads[0]);
	pthread_mutex_unlock(&mu);
	if (pending >= 0)
		rc |= buf_printf(out,
			"# HELP triggerd_deliveries_pending Deliveries not yet delivered, failed or cancelled.\n"
			"# TYPE triggerd_deliveries_pending gauge\n"
			"triggerd_deliveries_pending %lld\n", (long long)pending);
	if (followed >= 0)
		rc |= buf_printf(out,
			"# HELP triggerd_dbt_runs_followed dbt Cloud runs being followed now.\n"
			"# TYPE triggerd_dbt_runs_followed gauge\n"
			"triggerd_dbt_runs_followed %lld\n", (long long)followed);
	rc |= buf_printf(out,
		"# HELP triggerd_build_info Build information.\n"
		"# TYPE triggerd_build_info gauge\n"
		"triggerd_build_info{version=\"%s\"} 1\n", TRIGGERD_VERSION);
	return rc ? -1 : 0;
}
