/*
 * config_node — checked reads of YAML nodes, shared by every section of
 * the config: unknown keys (with a "did you mean" hint), string values,
 * variable and secret names. Each problem is reported through config_diag
 * at the node's position. Loading thread only.
 */
#include "config_int.h"

#include <stdlib.h>
#include <string.h>

char *config_strdup(struct config_ld *ld, const char *s)
{
	char *p = strdup(s);

	if (!p)
		ld->oom = 1;
	return p;
}

void config_check_keys(struct config_ld *ld, const struct cy_node *n,
		       const char *const *allowed, size_t nallowed,
		       const char *what)
{
	for (size_t i = 0; n && n->kind == CY_MAP && i < n->n; i++) {
		const struct cy_node *k = n->keys[i];
		size_t j;
		if (k->kind != CY_SCALAR) /* reported by config_yaml.c */
			continue;
		for (j = 0; j < nallowed; j++)
			if (strcmp(k->text, allowed[j]) == 0)
				break;
		if (j < nallowed)
			continue;
		const char *hint =
		    config_value_suggest(k->text, allowed, nallowed);
		if (strcmp(k->text, "<<") == 0)
			config_err(ld, k,
				   "merge keys (<<) are not supported in %s",
				   what);
		else if (hint)
			config_err(ld, k,
				   "unknown key \"%.80s\" in %s (did you mean "
				   "\"%s\"?)",
				   k->text, what, hint);
		else
			config_err(ld, k, "unknown key \"%.80s\" in %s",
				   k->text, what);
	}
}

const char *config_string(struct config_ld *ld, const struct cy_node *n,
			  const char *what)
{
	if (n->kind != CY_SCALAR) {
		config_err(ld, n, "%s must be a string, not %s", what,
			   config_yaml_what(n));
		return NULL;
	}
	if (n->type == CY_T_NULL) {
		config_err(ld, n, "%s is missing (empty)", what);
		return NULL;
	}
	if (strlen(n->text) != n->len) {
		config_err(ld, n, "%s contains a NUL character", what);
		return NULL;
	}
	return n->text;
}

int config_name_ok(struct config_ld *ld, const struct cy_node *k,
		   const char *kind)
{
	static const char ok[] = "abcdefghijklmnopqrstuvwxyz"
				 "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-";
	if (k->kind != CY_SCALAR) /* reported by config_yaml.c */
		return 0;
	if (!k->len || strspn(k->text, ok) != k->len) {
		config_err(ld, k,
			   "invalid %s name \"%.80s\": use letters, digits, "
			   "'_' and '-'",
			   kind, k->text);
		return 0;
	}
	return 1;
}
