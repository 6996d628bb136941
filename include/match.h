/*
 * match — which triggers an event starts.
 *
 * DESIGN: pure code. Candidates come from the config's job-id index plus
 * the `"*"` triggers (no scan of all triggers); each candidate must be
 * active and all its rules must hold (AND). Reads only the config it is
 * given, so it is safe from any thread that holds a reference.
 */
#ifndef TRIGGERD_MATCH_H
#define TRIGGERD_MATCH_H

#include <stddef.h>

struct config;
struct config_trigger;
struct event;

/*
 * Writes the indices of the matching triggers into out (which has room for
 * max; cfg->ntriggers is always enough), in config order, and returns their
 * count.
 */
size_t match_event(const struct config *cfg, const struct event *ev,
		   size_t *out, size_t max);

/*
 * Checks one trigger against ev: its jobs, is_active and every rule.
 * 1 if it matches; 0 if not, with the reason in why (e.g. `job_id
 * "…" is not in jobs`, `trigger is not active`, or the failing rule's
 * sentence from rules_match). Used by --dry-run.
 */
int match_trigger(const struct config_trigger *t, const struct event *ev,
		  char *why, size_t whylen);

#endif
