/*
 * match — picks the triggers an event starts.
 *
 * DESIGN: pure code, called by the HTTP threads for every accepted event
 * and by --dry-run. Candidates come from two lists the config built at load
 * time: cfg->by_job (lower-case job id -> trigger indices) and cfg->any_job
 * (the `"*"` triggers). Both are in config order, so a linear merge gives
 * the candidates in config order without duplicates (a trigger may list a
 * job twice, or both a job and "*"). Then every candidate must be active
 * and pass all its rules. Reads only the config and the event it is given;
 * owns nothing.
 */
#include "match.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config.h"
#include "event.h"
#include "rules.h"
#include "strmap.h"

/* Longest job id looked up; an Erathos job id is a 36-byte uuid. */
#define MATCH_MAX_JOB_ID 255

/*
 * Lower-cases the event's job_id into out (MATCH_MAX_JOB_ID + 1 bytes).
 * 0, or -1 if the event has none, or one that no configured job could be
 * (too long, or with a NUL byte that would cut the C string short).
 */
static int job_key(const struct event *ev, char *out)
{
	const struct event_field *f = event_get(ev, "job_id");

	if (!f || f->len > MATCH_MAX_JOB_ID || memchr(f->value, '\0', f->len))
		return -1;
	for (size_t i = 0; i < f->len; i++) {
		char c = f->value[i];

		out[i] = (char)((c >= 'A' && c <= 'Z') ? c - 'A' + 'a' : c);
	}
	out[f->len] = '\0';
	return 0;
}

static int sorted(const size_t *v, size_t n)
{
	for (size_t i = 1; i < n; i++)
		if (v[i] < v[i - 1])
			return 0;
	return 1;
}

static int cmp_size(const void *a, const void *b)
{
	size_t x = *(const size_t *)a, y = *(const size_t *)b;

	return (x > y) - (x < y);
}

/*
 * Merges two ascending lists into out (room for max), dropping repeats.
 * If a list is not ascending (a config built some other way), falls back
 * to sorting the concatenation, so the result is in config order anyway.
 */
static size_t merge(const size_t *a, size_t na, const size_t *b, size_t nb,
		    size_t *out, size_t max)
{
	size_t i = 0, j = 0, n = 0;

	if (!sorted(a, na) || !sorted(b, nb)) {
		size_t k = 0;

		for (i = 0; i < na && k < max; i++)
			out[k++] = a[i];
		for (j = 0; j < nb && k < max; j++)
			out[k++] = b[j];
		qsort(out, k, sizeof(*out), cmp_size);
		for (i = 0; i < k; i++)
			if (n == 0 || out[i] != out[n - 1])
				out[n++] = out[i];
		return n;
	}
	while ((i < na || j < nb) && n < max) {
		size_t v;

		if (j == nb || (i < na && a[i] <= b[j]))
			v = a[i++];
		else
			v = b[j++];
		if (n == 0 || v != out[n - 1])
			out[n++] = v;
	}
	return n;
}

/* 1 if t is active and all its rules hold for ev. */
static int passes(const struct config_trigger *t, const struct event *ev)
{
	if (!t->active)
		return 0;
	for (size_t i = 0; i < t->nrules; i++)
		if (!rules_match(&t->rules[i], ev, NULL, 0))
			return 0;
	return 1;
}

size_t match_event(const struct config *cfg, const struct event *ev,
		   size_t *out, size_t max)
{
	char key[MATCH_MAX_JOB_ID + 1];
	const size_t *by_job = NULL;
	size_t nby_job = 0, n, kept = 0;

	if (!cfg || !out || max == 0)
		return 0;
	if (job_key(ev, key) == 0)
		by_job = strmap_get(cfg->by_job, key, &nby_job);
	n = merge(by_job, nby_job, cfg->any_job, cfg->nany_job, out, max);
	/* Filter in place: kept <= i, so nothing unread is overwritten. */
	for (size_t i = 0; i < n; i++) {
		if (out[i] >= cfg->ntriggers)
			continue; /* a stale index: never trust it blindly */
		if (passes(&cfg->triggers[out[i]], ev))
			out[kept++] = out[i];
	}
	return kept;
}

/* Writes `job_id "…" is not in jobs`, the value escaped and cut to 64
 * bytes on a character boundary, as rules_match quotes event values. */
static void quote_job(const struct event_field *f, char *why, size_t whylen)
{
	char q[64 * 4 + 8];
	size_t k = 0, n = f->len > 64 ? 64 : f->len;

	while (n < f->len && n > 0 &&
	       ((unsigned char)f->value[n] & 0xc0) == 0x80)
		n--; /* f->value[n] continues a UTF-8 character */
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)f->value[i];

		if (c == '"' || c == '\\') {
			q[k++] = '\\';
			q[k++] = (char)c;
		} else if (c < 0x20 || c == 0x7f) {
			k += (size_t)snprintf(q + k, sizeof(q) - k, "\\x%02X",
					      c);
		} else {
			q[k++] = (char)c;
		}
	}
	q[k] = '\0';
	snprintf(why, whylen, "job_id \"%s%s\" is not in jobs", q,
		 f->len > n ? "..." : "");
}

/* 1 if the event's job id is among t's jobs (or t takes any job). */
static int job_listed(const struct config_trigger *t, const struct event *ev)
{
	char key[MATCH_MAX_JOB_ID + 1];
	int have = job_key(ev, key) == 0;

	for (size_t i = 0; i < t->njobs; i++) {
		if (strcmp(t->jobs[i], "*") == 0)
			return 1;
		if (have && strcasecmp(t->jobs[i], key) == 0)
			return 1;
	}
	return 0;
}

int match_trigger(const struct config_trigger *t, const struct event *ev,
		  char *why, size_t whylen)
{
	const struct event_field *f = event_get(ev, "job_id");

	if (why && whylen)
		why[0] = '\0';
	if (!job_listed(t, ev)) {
		if (!f)
			snprintf(why, why ? whylen : 0, "event has no job_id");
		else if (why)
			quote_job(f, why, whylen);
		return 0;
	}
	if (!t->active) {
		snprintf(why, why ? whylen : 0, "trigger is not active");
		return 0;
	}
	for (size_t i = 0; i < t->nrules; i++)
		if (!rules_match(&t->rules[i], ev, why, why ? whylen : 0))
			return 0;
	return 1;
}
