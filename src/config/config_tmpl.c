/*
 * config_tmpl — the config's templates: compiled when the file loads
 * (every reference checked against the variables and secrets defined, the
 * namespaces the field allows), and the environment they render in.
 *
 * DESIGN: config_compile runs on the loading thread; config_env is pure
 * and called by any thread holding a config reference.
 */
#include "config_int.h"

#include <stdio.h>
#include <string.h>

#include "tmpl.h"

/* What a template compiled at load may refer to. */
struct resolve_ctx {
	struct config_ld *ld;
	unsigned allow;
	const char *where;
};

static int find_name(const char *const *names, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(names[i], name) == 0)
			return (int)i;
	return -1;
}

static int resolve(void *vctx, enum tmpl_ns ns, const char *name, char *err,
		   size_t errlen)
{
	static const char *const what[] = {"variable", "secret",
					   "erathos field", "batch field"};
	static const char *const plural[] = {"variables", "secrets",
					     "erathos fields", "batch fields"};
	struct resolve_ctx *rc = vctx;
	const struct config *cfg = rc->ld->cfg;
	const char *const *names = ns == TMPL_VARIABLES
				       ? (const char *const *)cfg->var_names
				       : cfg->secret_names;
	size_t n = ns == TMPL_VARIABLES ? cfg->nvars : cfg->nsecrets;

	if (!(rc->allow & (1u << ns))) {
		snprintf(err, errlen, "%s are not allowed in %s", plural[ns],
			 rc->where);
		return -1;
	}
	if (ns == TMPL_ERATHOS || ns == TMPL_BATCH)
		return 0;
	int i = find_name(names, n, name);
	if (i >= 0)
		return i;
	const char *hint = config_value_suggest(name, names, n);
	if (hint)
		snprintf(err, errlen,
			 "undefined %s \"%.60s\" (did you mean \"%s\"?)",
			 what[ns], name, hint);
	else
		snprintf(err, errlen,
			 "undefined %s \"%.60s\" (define it under \"%s\")",
			 what[ns], name, plural[ns]);
	return -1;
}

struct tmpl *config_compile(struct config_ld *ld, const struct cy_node *n,
			    unsigned allow, const char *where)
{
	struct resolve_ctx rc = {ld, allow, where};
	struct tmpl_error err = {0, ""};

	if (n->kind != CY_SCALAR) {
		config_err(ld, n, "%s must be a string, not %s", where,
			   config_yaml_what(n));
		return NULL;
	}
	struct tmpl *t = tmpl_compile(n->text, n->len, resolve, &rc, &err);
	if (!t)
		config_err_off(ld, n, err.offset, "%s", err.msg);
	return t;
}

void config_env(const struct config *cfg, const struct event *ev,
		int mask_secrets, struct tmpl_env *env)
{
	env->variables = (const char *const *)cfg->var_values;
	env->secret_names = cfg->secret_names;
	env->secrets = mask_secrets ? NULL : cfg->secret_values;
	env->secret_lens = cfg->secret_lens;
	env->event = ev;
	env->batch = NULL;
	env->nbatch = 0;
}
