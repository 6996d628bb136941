/*
 * config_batch — a trigger's batching keys (SPEC section 9): `wait_for`
 * (fan-in over its jobs), `within` and `coalesce`.
 *
 * DESIGN: called by config_triggers.c once the trigger's jobs are loaded,
 * since a fan-in is over exactly those jobs. Each problem is an error at
 * the key that causes it; nothing is kept from a key in error. The
 * PostgreSQL backend has no batching yet: a batching trigger with
 * store.url is refused here rather than failing every accept.
 */
#include "config_int.h"

#include <string.h>

#define MIN_BATCH_MS 100
#define MAX_BATCH_MS (366LL * 86400000)

/* The duration at key of trigger node n into *out (left alone if absent
 * or in error). 1 if the key is given, else 0. */
static int get_duration(struct config_ld *ld, const struct cy_node *n,
			const char *label, const char *key, int64_t *out)
{
	const struct cy_node *v = config_yaml_get(n, key);
	const char *s;
	int64_t ms;

	if (!v || (v->kind == CY_SCALAR && v->type == CY_T_NULL))
		return 0;
	if (!(s = config_string(ld, v, key)))
		return 1;
	if (config_value_duration(s, &ms) < 0)
		config_err(ld, v,
			   "%s: invalid duration \"%.40s\" for %s: use e.g. "
			   "500ms, 30s, 5m or 1h",
			   label, s, key);
	else if (ms < MIN_BATCH_MS || ms > MAX_BATCH_MS)
		config_err(ld, v, "%s: %s must be between 100ms and 366d",
			   label, key);
	else
		*out = ms;
	return 1;
}

void config_batch_load(struct config_ld *ld, const struct cy_node *n,
		       const char *label, struct config_trigger *t)
{
	const struct cy_node *w = config_yaml_get(n, "wait_for");
	const char *s;
	int within, coalesce;

	if (w && !(w->kind == CY_SCALAR && w->type == CY_T_NULL) &&
	    (s = config_string(ld, w, "wait_for"))) {
		if (strcmp(s, "all") == 0)
			t->wait_all = 1;
		else if (strcmp(s, "any") != 0)
			config_err(ld, w,
				   "%s: wait_for must be \"any\" or \"all\", "
				   "not \"%.40s\"",
				   label, s);
	}
	within = get_duration(ld, n, label, "within", &t->within_ms);
	coalesce = get_duration(ld, n, label, "coalesce", &t->coalesce_ms);
	if (t->wait_all && coalesce)
		config_err(ld, config_yaml_get(n, "coalesce"),
			   "%s: wait_for: all and coalesce exclude each other "
			   "(a fan-in already makes one delivery of several "
			   "events)",
			   label);
	if (within && !t->wait_all)
		config_err(ld, config_yaml_get(n, "within"),
			   "%s: within only applies with wait_for: all",
			   label);
	for (size_t i = 0; t->wait_all && i < t->njobs; i++)
		if (strcmp(t->jobs[i], "*") == 0)
			config_err(ld, w,
				   "%s: wait_for: all needs the job IDs to wait "
				   "for, not \"*\"",
				   label);
	if (t->wait_all && coalesce)
		t->coalesce_ms = 0;
	if ((t->wait_all || t->coalesce_ms) && ld->cfg->store_url)
		config_err(ld,
			   t->wait_all ? w : config_yaml_get(n, "coalesce"),
			   "%s: fan-in and coalescing need the SQLite store "
			   "(store.path): the PostgreSQL store (store.url) "
			   "does not batch yet",
			   label);
}
