/*
 * config_rules — a trigger's `rules`: Erathos's {variable_name, operation,
 * value} conditions, checked against the typed field table of SPEC
 * section 4 when the config loads.
 *
 * DESIGN: called by config_triggers.c on the loading thread. A rule names
 * its field as `variable_name` or `erathos_variable` (Erathos's docs use
 * both); the field's type decides which operations are allowed and which
 * values are valid, and every mistake is reported with the operations or
 * value format that would be right. YAML numbers and booleans in `value`
 * are used as their text, as Erathos sends them. Fills struct rule in the
 * form rules.c matches (lower-case field, one value unless IN/NOT_IN).
 */
#include "config_int.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rules.h"

#define NKEYS(a) (sizeof(a) / sizeof *(a))

static const char *const rule_keys[] = {"variable_name", "erathos_variable",
					"operation", "value"};

/* "EQUAL, NOT_EQUAL, ..." for the operations allowed on type. */
static void ops_for(enum rules_type type, char *out, size_t outlen)
{
	size_t n = 0;

	out[0] = '\0';
	for (int op = RULES_EQUAL; op <= RULES_GREATER_THAN; op++)
		if (rules_op_allowed(type, (enum rules_op)op) && n < outlen)
			n += (size_t)snprintf(out + n, outlen - n, "%s%s",
					      n ? ", " : "",
					      rules_op_name((enum rules_op)op));
}

static const char *type_hint(enum rules_type type)
{
	switch (type) {
	case RULES_INTEGER: return " (a whole number, e.g. \"0\")";
	case RULES_BOOLEAN: return " (true or false)";
	case RULES_DATE: return " (YYYY-MM-DD)";
	case RULES_TIME: return " (HH:MM or HH:MM:SS)";
	case RULES_UUID: return " (8-4-4-4-12 hex digits)";
	default: return "";
	}
}

static void rule_value(struct config_ld *ld, struct rule *r,
		       const struct cy_node *v, const char *var)
{
	const char *s = config_string(ld, v, "a rule's value");

	if (!s)
		return;
	if (!rules_value_valid(r->type, s)) {
		config_err(ld, v, "\"%.60s\" is not a valid %s for %s%s", s,
			   rules_type_name(r->type), var, type_hint(r->type));
		return;
	}
	char *copy = config_strdup(ld, s);
	if (copy)
		r->values[r->nvalues++] = copy;
}

/* value: a string, or a list of strings (YAML numbers and booleans are
 * their text). EQUAL, NOT_EQUAL, LESS_THAN, GREATER_THAN take one. */
static void rule_values(struct config_ld *ld, struct rule *r,
			const struct cy_node *v, const char *var)
{
	int single = r->op != RULES_IN && r->op != RULES_NOT_IN;
	size_t n = v->kind == CY_SEQ ? v->n : 1;

	if (v->kind == CY_MAP ||
	    (v->kind == CY_SCALAR && v->type == CY_T_NULL)) {
		config_err(ld, v,
			   "a rule's value must be a string or a list of "
			   "strings, not %s",
			   config_yaml_what(v));
		return;
	}
	if (v->kind == CY_SEQ && !v->n) {
		config_err(ld, v, "a rule's value must not be an empty list");
		return;
	}
	if (single && n != 1) {
		config_err(ld, v,
			   "%s takes one value, not a list of %zu (use IN or "
			   "NOT_IN for a list)",
			   rules_op_name(r->op), n);
		return;
	}
	if (!(r->values = calloc(n, sizeof *r->values))) {
		ld->oom = 1;
		return;
	}
	if (v->kind == CY_SCALAR)
		rule_value(ld, r, v, var);
	for (size_t i = 0; v->kind == CY_SEQ && i < v->n; i++)
		rule_value(ld, r, v->vals[i], var);
}

static void load_rule(struct config_ld *ld, const struct cy_node *n,
		      struct rule *r)
{
	const struct cy_node *vn = config_yaml_get(n, "variable_name");
	const struct cy_node *ev = config_yaml_get(n, "erathos_variable");
	const struct cy_node *op = config_yaml_get(n, "operation");
	const struct cy_node *val = config_yaml_get(n, "value");
	char allowed[120];
	const char *var, *ops;

	config_check_keys(ld, n, rule_keys, NKEYS(rule_keys), "a rule");
	if (vn && ev) {
		config_err(ld, ev,
			   "give variable_name or erathos_variable, not both");
		return;
	}
	if (!vn && !(vn = ev)) {
		config_err(ld, n, "a rule needs a variable_name");
		return;
	}
	if (!(var = config_string(ld, vn, "variable_name")))
		return;
	if (!(r->field = config_strdup(ld, var)))
		return;
	for (char *p = r->field; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	r->type = rules_type_of(r->field);
	ops_for(r->type, allowed, sizeof allowed);
	if (!op) {
		config_err(ld, n, "a rule needs an operation (%s for %s)",
			   allowed, var);
		return;
	}
	if (!(ops = config_string(ld, op, "operation")))
		return;
	if (rules_op_parse(ops, &r->op) < 0) {
		config_err(ld, op,
			   "unknown operation \"%.40s\": %s (%s) takes %s", ops,
			   var, rules_type_name(r->type), allowed);
		return;
	}
	if (!rules_op_allowed(r->type, r->op)) {
		config_err(ld, op,
			   "operation %s is not allowed on %s (%s): use %s",
			   rules_op_name(r->op), var, rules_type_name(r->type),
			   allowed);
		return;
	}
	if (!val)
		config_err(ld, n, "a rule needs a value");
	else
		rule_values(ld, r, val, var);
}

void config_rules_load(struct config_ld *ld, const struct cy_node *trigger,
		       const char *label, struct config_trigger *t)
{
	const struct cy_node *rs = config_yaml_get(trigger, "rules");
	int status = 0;

	if (rs && rs->kind == CY_SCALAR && rs->type == CY_T_NULL)
		rs = NULL; /* `rules:` with nothing: no rules */
	if (rs && rs->kind != CY_SEQ) {
		config_err(ld, rs, "rules must be a list, not %s",
			   config_yaml_what(rs));
		return;
	}
	if (rs && rs->n && !(t->rules = calloc(rs->n, sizeof *t->rules))) {
		ld->oom = 1;
		return;
	}
	for (size_t i = 0; rs && i < rs->n; i++) {
		const struct cy_node *n = rs->vals[i];
		struct rule *r = &t->rules[t->nrules++];
		if (n->kind != CY_MAP) {
			config_err(ld, n,
				   "a rule must be a mapping {variable_name, "
				   "operation, value}, not %s",
				   config_yaml_what(n));
			continue;
		}
		load_rule(ld, n, r);
		if (r->field && strcmp(r->field, "status") == 0)
			status = 1;
	}
	if (!status)
		config_warn(ld,
			    rs ? config_yaml_key(trigger, "rules") : trigger,
			    "%s has no STATUS rule: it also fires on failed "
			    "executions (add {variable_name: STATUS, "
			    "operation: EQUAL, value: FINISHED})",
			    label);
}
