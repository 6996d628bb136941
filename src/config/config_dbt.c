/*
 * config_dbt — dbt triggers (SPEC section 8): recognising one, its `dbt:`
 * options, and the checks on its body.
 *
 * DESIGN: called by config_triggers.c on the loading thread, once the
 * trigger's url and body are loaded. A trigger is a dbt trigger when its
 * url, rendered at load with the variables and secrets (event fields
 * render empty), has dbt Cloud's Trigger Job Run path (dbt_url_parse).
 * Account and job therefore cannot come from event data: such a url is
 * not recognised at load, and it is not a dbt trigger (decided once, so a
 * trigger never changes nature from one event to the next); `dbt:` on it
 * is an error that says so. The rendered url lives in memory only and is
 * wiped.
 */
#include "config_int.h"

#include <stdio.h>
#include <string.h>

#include "buf.h"
#include "dbt.h"
#include "tmpl.h"

#define NKEYS(a) (sizeof(a) / sizeof *(a))
#define DEFAULT_POLL_MS 30000
#define MIN_POLL_MS 1000
#define DEFAULT_RUN_TIMEOUT_MS (24LL * 3600 * 1000)
#define MAX_DBT_DURATION_MS (366LL * 86400000)

static const char *const dbt_keys[] = {"mark",	      "follow",
				       "poll_interval", "run_timeout",
				       "cancel_on_timeout", "if_running"};

/* 1 if t's url, rendered with variables and real secrets, is dbt's. */
static int recognise(struct config_ld *ld, const struct config_trigger *t)
{
	struct tmpl_env env;
	struct dbt_target tg;
	struct buf b;
	int is = 0;

	if (!t->url)
		return 0;
	buf_init(&b, CONFIG_RENDER_MAX);
	config_env(ld->cfg, NULL, 0, &env);
	if (tmpl_render(t->url, &env, TMPL_ENC_URL, &b, NULL) == 0)
		is = dbt_url_parse(buf_str(&b), &tg);
	if (b.data)
		explicit_bzero(b.data, b.cap);
	buf_free(&b);
	return is;
}

static void get_bool(struct config_ld *ld, const struct cy_node *map,
		     const char *key, int *out)
{
	const struct cy_node *n = config_yaml_get(map, key);
	const char *s;

	if (n && (s = config_string(ld, n, key)) &&
	    config_value_bool(s, out) < 0)
		config_err(ld, n, "dbt.%s must be true or false, not \"%.40s\"",
			   key, s);
}

static void get_duration(struct config_ld *ld, const struct cy_node *map,
			 const char *key, int64_t min_ms, int64_t *out)
{
	const struct cy_node *n = config_yaml_get(map, key);
	const char *s;
	int64_t v;

	if (!n || !(s = config_string(ld, n, key)))
		return;
	if (config_value_duration(s, &v) < 0)
		config_err(ld, n,
			   "invalid duration \"%.40s\" for dbt.%s: use e.g. "
			   "30s, 5m, 2h or 1d",
			   s, key);
	else if (v < min_ms)
		config_err(ld, n, "dbt.%s must be at least %llds", key,
			   (long long)(min_ms / 1000));
	else if (v > MAX_DBT_DURATION_MS)
		config_err(ld, n, "dbt.%s must be at most 366d", key);
	else
		*out = v;
}

static void load_options(struct config_ld *ld, const struct cy_node *map,
			 struct config_dbt *o)
{
	const struct cy_node *n;
	const char *s;

	if (map->kind != CY_MAP) {
		config_err(ld, map, "dbt must be a mapping, not %s",
			   config_yaml_what(map));
		return;
	}
	config_check_keys(ld, map, dbt_keys, NKEYS(dbt_keys), "dbt");
	get_bool(ld, map, "mark", &o->mark);
	get_bool(ld, map, "follow", &o->follow);
	get_bool(ld, map, "cancel_on_timeout", &o->cancel_on_timeout);
	get_duration(ld, map, "poll_interval", MIN_POLL_MS,
		     &o->poll_interval_ms);
	get_duration(ld, map, "run_timeout", 1000, &o->run_timeout_ms);
	n = config_yaml_get(map, "if_running");
	if (n && (s = config_string(ld, n, "if_running"))) {
		if (strcmp(s, "reuse") == 0)
			o->reuse = 1;
		else if (strcmp(s, "trigger") != 0)
			config_err(ld, n,
				   "dbt.if_running must be trigger or reuse, "
				   "not \"%.40s\"",
				   s);
	}
}

/* A dbt trigger's body: a mapping with a string cause (a string body is
 * sent as it is, unmarked). */
static void check_body(struct config_ld *ld, const struct cy_node *trigger,
		       const char *label, const struct config_trigger *t)
{
	const struct cy_node *b = config_yaml_get(trigger, "body");
	const struct tmpl_node *cause = NULL;

	if (t->body && !t->body_is_json) {
		if (t->dbt.mark)
			config_warn(ld, b,
				    "%s: a body given as a string is sent as "
				    "it is: its cause cannot be marked, so an "
				    "ambiguous failure may start a second dbt "
				    "run",
				    label);
		return;
	}
	for (size_t i = 0; t->body && t->body->kind == TMPL_NODE_OBJECT &&
			   i < t->body->nchildren;
	     i++)
		if (strcmp(t->body->children[i].key, "cause") == 0)
			cause = &t->body->children[i];
	if (!cause || cause->kind != TMPL_NODE_STRING)
		config_err(ld, b ? b : trigger,
			   "%s is a dbt Cloud Trigger Job Run: its body must "
			   "be a mapping with a string \"cause\" (dbt Cloud "
			   "requires one)",
			   label);
}

void config_dbt_load(struct config_ld *ld, const struct cy_node *trigger,
		     const char *label, struct config_trigger *t)
{
	const struct cy_node *opts = config_yaml_get(trigger, "dbt");
	struct config_dbt *o = &t->dbt;

	if (opts && opts->kind == CY_SCALAR && opts->type == CY_T_NULL)
		opts = NULL;
	memset(o, 0, sizeof *o);
	o->mark = 1;
	o->poll_interval_ms = DEFAULT_POLL_MS;
	o->run_timeout_ms = DEFAULT_RUN_TIMEOUT_MS;
	o->is_dbt = recognise(ld, t);
	if (!o->is_dbt) {
		if (opts && t->url)
			config_err(ld, config_yaml_key(trigger, "dbt"),
				   "%s has dbt options but its url is not a dbt "
				   "Cloud Trigger Job Run "
				   "(/api/v2/accounts/<account>/jobs/<job>/run/"
				   "%s)",
				   label,
				   tmpl_uses(t->url, TMPL_ERATHOS) ||
					   tmpl_uses(t->url, TMPL_BATCH)
				       ? "; account and job must not come "
					 "from event data"
				       : "");
		return;
	}
	if (opts)
		load_options(ld, opts, o);
	check_body(ld, trigger, label, t);
	if (!o->mark)
		config_warn(ld, opts ? opts : trigger,
			    "%s: with dbt.mark false there is no look-up "
			    "after an ambiguous failure, which may start a "
			    "second dbt run",
			    label);
}
