/*
 * config_triggers — the `triggers` list: Erathos webhook definitions, as
 * documented by Erathos, plus triggerd's `name`.
 *
 * DESIGN: called by config_load() on the loading thread once variables and
 * secrets are known, so every template (url, header values, body strings)
 * is compiled here with its references checked and its errors placed at
 * the exact column. Each trigger is checked whole even after an error, so
 * one --check run lists every problem. Also builds the indices the
 * matcher reads: by_name (name -> index), by_job (lower-case job id ->
 * indices) and any_job (triggers with jobs: ["*"]).
 */
#include "config_int.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "buf.h"
#include "rules.h"
#include "strmap.h"
#include "tmpl.h"

#define NKEYS(a) (sizeof(a) / sizeof *(a))
#define NAME_MAX_LEN 128

static const char *const trigger_keys[] = {"name",   "description", "is_active",
					   "method", "url",	    "header",
					   "body",   "rules",	    "jobs",
					   "dbt",    "wait_for",    "within",
					   "coalesce"};
static const char *const methods[] = {"GET", "POST", "PUT", "PATCH", "DELETE"};

/* One trigger being loaded. */
struct tl {
	struct config_ld *ld;
	const struct cy_node *node; /* the trigger's mapping */
	struct config_trigger *t;
	char label[160]; /* `trigger "name"` or `trigger #3`, for messages */
};

/* The value of key, or NULL when absent or null (an optional key). */
static const struct cy_node *opt(const struct tl *tl, const char *key)
{
	const struct cy_node *n = config_yaml_get(tl->node, key);

	return n && n->kind == CY_SCALAR && n->type == CY_T_NULL ? NULL : n;
}

static const struct cy_node *req(struct tl *tl, const char *key)
{
	const struct cy_node *n = opt(tl, key);

	if (!n)
		config_err(tl->ld, tl->node, "%s: missing required key \"%s\"",
			   tl->label, key);
	return n;
}

/* Sets t->name (given or derived) and t->description; returns the node
 * that names the trigger, for the duplicate-name message. */
static const struct cy_node *load_name(struct tl *tl)
{
	const struct cy_node *name = opt(tl, "name"),
			     *desc = opt(tl, "description");
	const char *s;

	if (desc && (s = config_string(tl->ld, desc, "description")))
		tl->t->description = config_strdup(tl->ld, s);
	if (name) {
		if (!(s = config_string(tl->ld, name, "name")))
			return NULL;
		if (!*s || strlen(s) > NAME_MAX_LEN ||
		    strspn(
			s,
			"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
			"0123456789._-") != strlen(s)) {
			config_err(tl->ld, name,
				   "invalid trigger name \"%.80s\": use 1 to "
				   "%d letters, digits, '.', '_' and '-'",
				   s, NAME_MAX_LEN);
			return NULL;
		}
		tl->t->name = config_strdup(tl->ld, s);
		return name;
	}
	if (!desc) {
		config_err(tl->ld, tl->node,
			   "%s needs a \"name\" or a \"description\"",
			   tl->label);
		return NULL;
	}
	if (!tl->t->description)
		return NULL;
	tl->t->name = config_value_derive_name(tl->t->description);
	if (!tl->t->name)
		config_err(
		    tl->ld, desc,
		    "no trigger name can be derived from description \"%.80s\" "
		    "(it has no letters or digits): add a \"name\"",
		    tl->t->description);
	return desc;
}

static void load_method(struct tl *tl)
{
	const struct cy_node *n = req(tl, "method");
	const char *s;
	char up[8];
	size_t i;

	if (!n || !(s = config_string(tl->ld, n, "method")))
		return;
	for (i = 0; i < sizeof up - 1 && s[i]; i++)
		up[i] = (char)toupper((unsigned char)s[i]);
	up[i] = '\0';
	for (i = 0; i < NKEYS(methods); i++)
		if (strcmp(up, methods[i]) == 0 && strlen(s) == strlen(up)) {
			tl->t->method = config_strdup(tl->ld, methods[i]);
			return;
		}
	config_err(
	    tl->ld, n,
	    "invalid method \"%.40s\": use GET, POST, PUT, PATCH or DELETE", s);
}

/* Warns about text like "<DBT_JOB_ID" left in a URL. */
static void url_placeholder(struct tl *tl, const struct cy_node *n,
			    const char *rendered)
{
	const char *s = n->text;
	long off = config_value_placeholder(s, n->len);
	int in_src = off >= 0;

	if (!in_src) {
		s = rendered;
		off = config_value_placeholder(s, strlen(s));
	}
	if (off < 0)
		return;
	int len = 1 + (int)strspn(s + off + 1,
				  "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_");
	if (s[off + len] == '>')
		len++;
	config_warn_off(tl->ld, n, in_src ? (size_t)off : 0,
			"\"%.*s\" in the url looks like a placeholder left "
			"from a quickstart: replace it with the real value",
			len > 60 ? 60 : len, s + off);
}

/* Warns about a url on the retired getdbt.com hosts and placeholders. */
static void url_warnings(struct tl *tl, const struct cy_node *n,
			 const char *host, const char *rendered)
{
	size_t hl = strlen(host);

	if (strcmp(host, "getdbt.com") == 0 ||
	    (hl > 11 && strcmp(host + hl - 11, ".getdbt.com") == 0))
		config_warn(tl->ld, n,
			    "the url uses the legacy dbt Cloud host %s, "
			    "retired on 2026-11-01: use your account's own "
			    "access URL (e.g. https://ab123.us1.dbt.com)",
			    host);
	url_placeholder(tl, n, rendered);
}

/* Compiles the url, then checks it as rendered with variables and masked
 * secrets (event fields render empty). */
static void load_url(struct tl *tl)
{
	const struct cy_node *n = req(tl, "url");
	char host[256], err[160];
	struct tmpl_env env;
	struct buf b;

	if (!n || !config_string(tl->ld, n, "url"))
		return;
	struct tmpl *t = config_compile(tl->ld, n, CONFIG_NS_ALL, "url");
	if (!t) {
		/* Still point at what can be seen in the source: a pasted
		 * quickstart has every problem at once. */
		if (config_value_url(n->text, host, sizeof host, err,
				     sizeof err) < 0)
			host[0] = '\0';
		url_warnings(tl, n, host, "");
		return;
	}
	tl->t->url = t;
	if (tmpl_erathos_in_authority(t)) {
		config_err(
		    tl->ld, n,
		    "event data (erathos.*) cannot be in the url's scheme, "
		    "host or port: put it in the path or the query");
		return;
	}
	buf_init(&b, CONFIG_RENDER_MAX);
	config_env(tl->ld->cfg, NULL, 1, &env);
	if (tmpl_render(t, &env, TMPL_ENC_URL, &b, NULL) < 0)
		config_err(tl->ld, n, "the url is longer than %u KiB",
			   CONFIG_RENDER_MAX >> 10);
	else if (config_value_url(buf_str(&b), host, sizeof host, err,
				  sizeof err) < 0)
		config_err(tl->ld, n, "invalid url: %s", err);
	else
		url_warnings(tl, n, host, buf_str(&b));
	buf_free(&b);
}

static int header_name_ok(const char *s)
{
	static const char tchar[] =
	    "!#$%&'*+-.^_`|~0123456789"
	    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
	return *s && strspn(s, tchar) == strlen(s);
}

static void load_header(struct tl *tl, const struct cy_node *k,
			const struct cy_node *v)
{
	struct config_trigger *t = tl->t;
	char what[120];

	if (k->kind != CY_SCALAR)
		return; /* reported by config_yaml.c */
	if (!header_name_ok(k->text)) {
		config_err(tl->ld, k, "invalid header name \"%.80s\"", k->text);
		return;
	}
	for (size_t i = 0; t->headers && i < t->nheaders; i++)
		/* NOLINTNEXTLINE(clang-analyzer-core.NonNullParamChecker): set */
		if (strcasecmp(t->headers[i].name, k->text) == 0) {
			config_err(tl->ld, k,
				   "header \"%.80s\" is given twice (header "
				   "names are case-insensitive)",
				   k->text);
			return;
		}
	snprintf(what, sizeof what, "header \"%.80s\"", k->text);
	if (!config_string(tl->ld, v, what))
		return;
	if (strpbrk(v->text, "\r\n")) {
		config_err(tl->ld, v,
			   "%s: a header value cannot contain a line break",
			   what);
		return;
	}
	struct tmpl *tv = config_compile(tl->ld, v, CONFIG_NS_ALL, what);
	char *name = config_strdup(tl->ld, k->text);
	if (!tv || !name) {
		tmpl_free(tv);
		free(name);
		return;
	}
	t->headers[t->nheaders].name = name;
	t->headers[t->nheaders++].value = tv;
	if (strcasecmp(name, "Content-Type") == 0)
		t->has_content_type = 1;
}

static void load_headers(struct tl *tl)
{
	const struct cy_node *h = opt(tl, "header");

	if (!h)
		return;
	if (h->kind != CY_MAP) {
		config_err(
		    tl->ld, h,
		    "header must be a mapping of names to values, not %s",
		    config_yaml_what(h));
		return;
	}
	if (!(tl->t->headers = calloc(h->n + 1, sizeof *tl->t->headers))) {
		tl->ld->oom = 1;
		return;
	}
	for (size_t i = 0; i < h->n; i++)
		load_header(tl, h->keys[i], h->vals[i]);
}

/* A YAML integer (decimal, 0x, 0o) as int64. */
static int body_integer(const char *s, int64_t *out)
{
	int base = 10;
	char *end;

	if (s[0] == '0' && (s[1] == 'x' || s[1] == 'o')) {
		base = s[1] == 'x' ? 16 : 8;
		s += 2;
	}
	errno = 0;
	long long v = strtoll(s, &end, base);
	if (errno || *end)
		return -1;
	*out = v;
	return 0;
}

static int body_scalar(struct tl *tl, const struct cy_node *y,
		       struct tmpl_node *out)
{
	switch (y->type) {
	case CY_T_NULL: out->kind = TMPL_NODE_NULL; return 0;
	case CY_T_BOOL:
		out->kind = TMPL_NODE_BOOL;
		out->boolean = y->text[0] == 't' || y->text[0] == 'T';
		return 0;
	case CY_T_INT:
		out->kind = TMPL_NODE_INTEGER;
		if (body_integer(y->text, &out->integer) == 0)
			return 0;
		config_err(tl->ld, y,
			   "the integer %.40s does not fit in 64 bits (quote "
			   "it to send a string)",
			   y->text);
		return -1;
	case CY_T_FLOAT: {
		char *end;
		out->kind = TMPL_NODE_REAL;
		out->real = strtod(y->text, &end);
		if (!*end && isfinite(out->real))
			return 0;
		/* .inf and .nan are YAML floats that JSON cannot carry. */
		config_err(tl->ld, y,
			   "JSON has no infinity or NaN: quote \"%.40s\" to "
			   "send a string",
			   y->text);
		return -1;
	}
	default:
		out->kind = TMPL_NODE_STRING;
		out->str = config_compile(tl->ld, y, CONFIG_NS_ALL, "body");
		return out->str ? 0 : -1;
	}
}

/*
 * Builds the tmpl_node for YAML node y. Aliases may repeat a subtree, so
 * *budget bounds the nodes built in all; depth bounds the nesting. Errors
 * are reported; out stays freeable by tmpl_node_clear() whatever happens.
 */
static int body_node(struct tl *tl, const struct cy_node *y,
		     struct tmpl_node *out, int depth, size_t *budget)
{
	if (*budget == 0)
		return -1; /* reported once, when it ran out */
	if (--*budget == 0 || depth > CONFIG_MAX_BODY_DEPTH) {
		config_err(tl->ld, y,
			   "body is too large or too deep (at most %d values, "
			   "%d levels)",
			   CONFIG_MAX_BODY_NODES, CONFIG_MAX_BODY_DEPTH);
		*budget = 0;
		return -1;
	}
	if (y->kind == CY_SCALAR)
		return body_scalar(tl, y, out);
	out->kind = y->kind == CY_MAP ? TMPL_NODE_OBJECT : TMPL_NODE_ARRAY;
	if (!y->n)
		return 0;
	if (!(out->children = calloc(y->n, sizeof *out->children))) {
		tl->ld->oom = 1;
		return -1;
	}
	out->nchildren = y->n;
	int rc = 0;
	for (size_t i = 0; i < y->n; i++) {
		struct tmpl_node *c = &out->children[i];
		if (y->kind == CY_MAP) {
			const struct cy_node *k = y->keys[i];
			if (k->kind != CY_SCALAR)
				continue; /* reported by config_yaml.c */
			if (strlen(k->text) != k->len) {
				config_err(tl->ld, k,
					   "a body key cannot contain a NUL "
					   "character");
				rc = -1;
				continue;
			}
			if (!(c->key = config_strdup(tl->ld, k->text)))
				return -1;
		}
		if (body_node(tl, y->vals[i], c, depth + 1, budget) < 0)
			rc = -1;
	}
	return rc;
}

static void load_body(struct tl *tl)
{
	const struct cy_node *b = opt(tl, "body");
	size_t budget = CONFIG_MAX_BODY_NODES + 1;

	if (!b)
		return;
	if (!(tl->t->body = calloc(1, sizeof *tl->t->body))) {
		tl->ld->oom = 1;
		return;
	}
	if (b->kind == CY_SCALAR) {
		/* A string body is sent as it is: whatever YAML would make of
		 * it, it is text. */
		tl->t->body->kind = TMPL_NODE_STRING;
		tl->t->body->str =
		    config_compile(tl->ld, b, CONFIG_NS_ALL, "body");
		return;
	}
	tl->t->body_is_json = 1;
	body_node(tl, b, tl->t->body, 0, &budget);
}

static void load_job(struct tl *tl, const struct cy_node *n)
{
	struct config_trigger *t = tl->t;
	const char *s = config_string(tl->ld, n, "a job");

	if (!s)
		return;
	if (strcmp(s, "*") != 0 && config_value_uuid(s) < 0) {
		size_t len = strlen(s);
		if (len > 2 && s[0] == '<' && s[len - 1] == '>')
			config_err(tl->ld, n,
				   "\"%.60s\" is the Erathos quickstart's "
				   "placeholder: replace it with your Erathos "
				   "job's ID (a UUID)",
				   s);
		else
			config_err(
			    tl->ld, n,
			    "job \"%.60s\" is not an Erathos job ID (a UUID "
			    "such as 0b9d5c55-6c2e-4d0a-9b6f-3f8e2a1c7d10) nor "
			    "\"*\" for any job",
			    s);
		return;
	}
	char *job = config_strdup(tl->ld, s);
	if (!job)
		return;
	for (char *p = job; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	for (size_t i = 0; t->jobs && i < t->njobs; i++)
		/* NOLINTNEXTLINE(clang-analyzer-core.NonNullParamChecker): set */
		if (strcmp(t->jobs[i], job) == 0) {
			config_warn(tl->ld, n, "job %s is listed twice", job);
			free(job);
			return;
		}
	t->jobs[t->njobs++] = job;
}

static void load_jobs(struct tl *tl)
{
	const struct cy_node *j = req(tl, "jobs");

	if (!j)
		return;
	if (j->kind != CY_SEQ) {
		config_err(tl->ld, j,
			   "jobs must be a list of Erathos job IDs, not %s",
			   config_yaml_what(j));
		return;
	}
	if (!j->n) {
		config_err(tl->ld, j,
			   "jobs must not be empty (use [\"*\"] for any job)");
		return;
	}
	if (!(tl->t->jobs = calloc(j->n, sizeof *tl->t->jobs))) {
		tl->ld->oom = 1;
		return;
	}
	for (size_t i = 0; i < j->n; i++)
		load_job(tl, j->vals[i]);
}

static void load_active(struct tl *tl)
{
	const struct cy_node *n = opt(tl, "is_active");
	const char *s;

	tl->t->active = 1;
	if (n && (s = config_string(tl->ld, n, "is_active")) &&
	    config_value_bool(s, &tl->t->active) < 0)
		config_err(tl->ld, n,
			   "is_active must be true or false, not \"%.40s\"", s);
}

/* Loads trigger number i; returns the node naming it (or NULL). */
static const struct cy_node *load_trigger(struct config_ld *ld,
					  const struct cy_node *n, size_t i)
{
	struct tl tl = {ld, n, &ld->cfg->triggers[i], ""};
	const struct cy_node *named;

	config_check_keys(ld, n, trigger_keys, NKEYS(trigger_keys),
			  "a trigger");
	snprintf(tl.label, sizeof tl.label, "trigger #%zu", i + 1);
	named = load_name(&tl);
	if (tl.t->name)
		snprintf(tl.label, sizeof tl.label, "trigger \"%.120s\"",
			 tl.t->name);
	load_active(&tl);
	load_method(&tl);
	load_url(&tl);
	load_headers(&tl);
	load_body(&tl);
	config_rules_load(ld, n, tl.label, tl.t);
	load_jobs(&tl);
	config_batch_load(ld, n, tl.label, tl.t);
	config_dbt_load(ld, n, tl.label, tl.t);
	return named;
}

/* by_job and any_job, once every trigger is loaded. */
static void build_job_index(struct config_ld *ld)
{
	struct config *cfg = ld->cfg;

	cfg->by_job = strmap_new();
	cfg->any_job = calloc(cfg->ntriggers + 1, sizeof *cfg->any_job);
	if (!cfg->by_job || !cfg->any_job) {
		ld->oom = 1;
		return;
	}
	for (size_t i = 0; i < cfg->ntriggers; i++) {
		const struct config_trigger *t = &cfg->triggers[i];
		int any = 0;
		for (size_t j = 0; j < t->njobs; j++)
			any |= strcmp(t->jobs[j], "*") == 0;
		if (any) { /* indexed once, so it cannot match twice */
			cfg->any_job[cfg->nany_job++] = i;
			continue;
		}
		for (size_t j = 0; j < t->njobs; j++)
			if (strmap_add(cfg->by_job, t->jobs[j], i) < 0)
				ld->oom = 1;
	}
}

void config_triggers_load(struct config_ld *ld, const struct cy_node *seq)
{
	struct config *cfg = ld->cfg;

	if (seq->kind != CY_SEQ) {
		config_err(ld, seq, "triggers must be a list, not %s",
			   config_yaml_what(seq));
		return;
	}
	if (!seq->n)
		config_warn(ld, seq,
			    "no triggers: every event will be unmatched");
	cfg->triggers = calloc(seq->n + 1, sizeof *cfg->triggers);
	cfg->by_name = strmap_new();
	/* NOLINTNEXTLINE(bugprone-sizeof-expression): an array of pointers */
	const struct cy_node **named = calloc(seq->n + 1, sizeof *named);
	if (!cfg->triggers || !cfg->by_name || !named) {
		ld->oom = 1;
		goto out;
	}
	for (size_t i = 0; i < seq->n; i++) {
		const struct cy_node *n = seq->vals[i];
		cfg->ntriggers++;
		if (n->kind != CY_MAP) {
			config_err(ld, n, "a trigger must be a mapping, not %s",
				   config_yaml_what(n));
			continue;
		}
		named[i] = load_trigger(ld, n, i);
		const char *name = cfg->triggers[i].name;
		size_t k;
		const size_t *prev =
		    name ? strmap_get(cfg->by_name, name, &k) : NULL;
		if (prev && k) {
			const struct cy_node *p = named[prev[0]];
			config_err(ld, named[i],
				   "trigger name \"%.80s\" is already used by "
				   "the trigger at line %d, column %d: give "
				   "each an explicit, unique \"name\"",
				   name, p ? p->line : 0, p ? p->col : 0);
		} else if (name && strmap_add(cfg->by_name, name, i) < 0) {
			ld->oom = 1;
		}
	}
	build_job_index(ld);
out:
	free(named);
}

void config_triggers_free(struct config_trigger *t)
{
	free(t->name);
	free(t->description);
	free(t->method);
	tmpl_free(t->url);
	for (size_t i = 0; i < t->nheaders; i++) {
		free(t->headers[i].name);
		tmpl_free(t->headers[i].value);
	}
	free(t->headers);
	if (t->body) {
		tmpl_node_clear(t->body);
		free(t->body);
	}
	for (size_t i = 0; i < t->nrules; i++)
		rules_clear(&t->rules[i]);
	free(t->rules);
	for (size_t i = 0; i < t->njobs; i++)
		free(t->jobs[i]);
	free(t->jobs);
}
