/*
 * config — loads the YAML configuration (SPEC section 3) and hands out the
 * live one.
 *
 * DESIGN: config_load() runs on the main thread (at start and on SIGHUP):
 * it reads the file, lets config_yaml.c build a node tree with positions,
 * then walks the schema section by section in dependency order (variables
 * and secrets first, because every template refers to them), collecting
 * every problem in a struct config_ld (config_diag.c) rather than stopping
 * at the first. Triggers are loaded by config_triggers.c, secrets by
 * config_secrets.c. A loaded config is immutable and shared by reference
 * count: workers and HTTP threads take it through a config_slot, whose
 * mutex guards only the pointer swap, and the last config_release() frees
 * it. Owns everything reachable from struct config.
 */
#include "config_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "buf.h"
#include "strmap.h"
#include "tmpl.h"

#define NKEYS(a) (sizeof(a) / sizeof *(a))

static const char *const top_keys[] = {"server",  "store",     "dispatch",
				       "events",  "variables", "secrets",
				       "triggers"};
static const char *const server_keys[] = {"listen", "max_body", "auth",
					  "admin_tokens"};
static const char *const auth_keys[] = {"tokens"};
static const char *const store_keys[] = {"path", "url"};
static const char *const dispatch_keys[] = {
    "workers", "timeout", "connect_timeout", "max_in_flight_per_trigger",
    "retry"};
static const char *const retry_keys[] = {"max_attempts", "initial_backoff",
					 "max_backoff", "max_age",
					 "rate_limited_backoff"};
static const char *const events_keys[] = {"dedup_key", "dedup_window"};

#define DEFAULT_DEDUP_KEY                                                      \
	"${{erathos.execution_id}}:${{erathos.job_id}}:${{erathos.table_name}" \
	"}"
#define MAX_DURATION_MS (366LL * 86400000) /* a year: nothing waits longer */

/* The mapping under key (NULL if absent or null), after checking its keys. */
static const struct cy_node *section(struct config_ld *ld,
				     const struct cy_node *parent,
				     const char *key, const char *const *keys,
				     size_t nkeys, const char *what)
{
	const struct cy_node *n = config_yaml_get(parent, key);

	if (!n || (n->kind == CY_SCALAR && n->type == CY_T_NULL))
		return NULL;
	if (n->kind != CY_MAP) {
		config_err(ld, n, "%s must be a mapping, not %s", what,
			   config_yaml_what(n));
		return NULL;
	}
	config_check_keys(ld, n, keys, nkeys, what);
	return n;
}

/* Reads duration key of map into *ms (kept if absent): 1 ms .. a year. */
static void get_duration(struct config_ld *ld, const struct cy_node *map,
			 const char *key, const char *what, int64_t *ms)
{
	const struct cy_node *n = config_yaml_get(map, key);
	const char *s;
	int64_t v;

	if (!n)
		return;
	if (n->kind != CY_SCALAR) {
		config_err(ld, n, "%s must be a duration (e.g. 30s), not %s",
			   what, config_yaml_what(n));
		return;
	}
	if (!(s = config_string(ld, n, what)))
		return;
	if (config_value_duration(s, &v) < 0)
		config_err(ld, n,
			   "invalid duration \"%.40s\" for %s: use e.g. 500ms, "
			   "30s, 5m, 2h, 1d, or a number of seconds",
			   s, what);
	else if (v <= 0)
		config_err(ld, n, "%s must be positive", what);
	else if (v > MAX_DURATION_MS)
		config_err(ld, n, "%s must be at most 366d", what);
	else
		*ms = v;
}

static void get_int(struct config_ld *ld, const struct cy_node *map,
		    const char *key, const char *what, long long min,
		    long long max, int *out)
{
	const struct cy_node *n = config_yaml_get(map, key);
	const char *s;
	long long v;

	if (!n)
		return;
	if (n->kind != CY_SCALAR) {
		config_err(ld, n,
			   "%s must be an integer from %lld to %lld, not %s",
			   what, min, max, config_yaml_what(n));
		return;
	}
	if (!(s = config_string(ld, n, what)))
		return;
	if (config_value_int(s, min, max, &v) < 0)
		config_err(
		    ld, n,
		    "%s must be an integer from %lld to %lld, not \"%.40s\"",
		    what, min, max, s);
	else
		*out = (int)v;
}

static void load_variables(struct config_ld *ld, const struct cy_node *map)
{
	struct config *cfg = ld->cfg;

	if (!map || (map->kind == CY_SCALAR && map->type == CY_T_NULL))
		return;
	if (map->kind != CY_MAP) {
		config_err(
		    ld, map,
		    "variables must be a mapping of names to strings, not %s",
		    config_yaml_what(map));
		return;
	}
	cfg->var_names = calloc(map->n + 1, sizeof *cfg->var_names);
	cfg->var_values = calloc(map->n + 1, sizeof *cfg->var_values);
	if (!cfg->var_names || !cfg->var_values) {
		ld->oom = 1;
		return;
	}
	for (size_t i = 0; i < map->n; i++) {
		const struct cy_node *k = map->keys[i], *v = map->vals[i];
		if (!config_name_ok(ld, k, "variable"))
			continue;
		if (v->kind == CY_SCALAR && v->type == CY_T_NULL) {
			config_err(ld, v,
				   "variable \"%s\" has no value (write \"\" "
				   "for an empty string)",
				   k->text);
			continue;
		}
		/* YAML numbers and booleans are used as their text. */
		if (!config_string(ld, v, "a variable's value"))
			continue;
		char *name = config_strdup(ld, k->text);
		char *value = config_strdup(ld, v->text);
		if (!name || !value) {
			free(name);
			free(value);
			continue;
		}
		cfg->var_names[cfg->nvars] = name;
		cfg->var_values[cfg->nvars++] = value;
	}
}

/* Renders a template at load time with secrets unmasked. */
static char *render_now(struct config_ld *ld, const struct tmpl *t)
{
	struct tmpl_env env;
	struct buf b;

	buf_init(&b, CONFIG_RENDER_MAX);
	config_env(ld->cfg, NULL, 0, &env);
	if (tmpl_render(t, &env, TMPL_ENC_RAW, &b, NULL) < 0) {
		buf_free(&b);
		return NULL;
	}
	char *s = buf_steal(&b);
	if (!s)
		ld->oom = 1;
	return s;
}

/* A list of inbound bearer tokens (server.auth.tokens, admin_tokens). */
static void load_tokens(struct config_ld *ld, const struct cy_node *seq,
			const char *what, char ***out, size_t *nout)
{
	if (!seq || (seq->kind == CY_SCALAR && seq->type == CY_T_NULL))
		return;
	if (seq->kind != CY_SEQ) {
		config_err(ld, seq, "%s must be a list, not %s", what,
			   config_yaml_what(seq));
		return;
	}
	if (!(*out = calloc(seq->n + 1, sizeof **out))) {
		ld->oom = 1;
		return;
	}
	for (size_t i = 0; i < seq->n; i++) {
		const struct cy_node *v = seq->vals[i];
		if (!config_string(ld, v, "a token"))
			continue;
		struct tmpl *t = config_compile(
		    ld, v, CONFIG_NS_VARIABLES | CONFIG_NS_SECRETS, what);
		if (!t)
			continue;
		char *tok = render_now(ld, t);
		if (!tok && !ld->oom)
			config_err(ld, v, "a token in %s is longer than %u KiB",
				   what, CONFIG_RENDER_MAX >> 10);
		else if (tok && !*tok &&
			 !(ld->bad_secrets && tmpl_uses(t, TMPL_SECRETS)))
			config_err(ld, v, "a token in %s is empty", what);
		else if (tok && *tok && strlen(tok) < CONFIG_MIN_TOKEN)
			config_err(ld, v,
				   "a token in %s is %zu bytes, shorter than "
				   "%d: too short to be secret (make one with "
				   "`openssl rand -hex 32`)",
				   what, strlen(tok), CONFIG_MIN_TOKEN);
		else if (tok && !tmpl_uses(t, TMPL_SECRETS))
			config_warn(ld, v,
				    "a token in %s is written in the config "
				    "file; prefer \"${{secrets.NAME}}\"",
				    what);
		if (tok && *tok)
			(*out)[(*nout)++] = tok;
		else
			free(tok);
		tmpl_free(t);
	}
}

static void load_server(struct config_ld *ld, const struct cy_node *root)
{
	struct config *cfg = ld->cfg;
	const struct cy_node *srv = section(ld, root, "server", server_keys,
					    NKEYS(server_keys), "server");
	const struct cy_node *n, *auth, *toks;
	const char *s;
	char err[160];

	if ((n = config_yaml_get(srv, "listen")) &&
	    (s = config_string(ld, n, "server.listen"))) {
		char *host;
		int port;
		if (config_value_listen(s, &host, &port, err, sizeof err) < 0) {
			config_err(ld, n, "server.listen \"%.80s\": %s", s,
				   err);
		} else {
			free(cfg->listen_host);
			cfg->listen_host = host;
			cfg->listen_port = port;
		}
	}
	if ((n = config_yaml_get(srv, "max_body")) &&
	    (s = config_string(ld, n, "server.max_body"))) {
		uint64_t v;
		if (config_value_size(s, &v) < 0)
			config_err(
			    ld, n,
			    "invalid size \"%.40s\" for server.max_body: use "
			    "e.g. 64KiB, 1MiB or a number of bytes",
			    s);
		else if (v < 1 || v > (64u << 20))
			config_err(
			    ld, n,
			    "server.max_body must be from 1 byte to 64MiB");
		else
			cfg->max_body = (size_t)v;
	}
	auth = section(ld, srv, "auth", auth_keys, NKEYS(auth_keys),
		       "server.auth");
	toks = config_yaml_get(auth, "tokens");
	load_tokens(ld, toks, "server.auth.tokens", &cfg->auth_tokens,
		    &cfg->nauth_tokens);
	load_tokens(ld, config_yaml_get(srv, "admin_tokens"),
		    "server.admin_tokens", &cfg->admin_tokens,
		    &cfg->nadmin_tokens);
	if (!toks || toks->kind != CY_SEQ || !toks->n) {
		const struct cy_node *at =
		    toks   ? toks
		    : auth ? config_yaml_key(srv, "auth")
			   : config_yaml_key(root, "server");
		config_warn(ld, at,
			    "server.auth.tokens is empty: anyone who can reach "
			    "the listener can post events");
	}
}

/* Renders a template at load time with secrets shown as <secret:NAME>. */
static char *render_masked(struct config_ld *ld, const struct tmpl *t)
{
	struct tmpl_env env;
	struct buf b;

	buf_init(&b, CONFIG_RENDER_MAX);
	config_env(ld->cfg, NULL, 1, &env);
	if (tmpl_render(t, &env, TMPL_ENC_RAW, &b, NULL) < 0) {
		buf_free(&b);
		return NULL;
	}
	char *s = buf_steal(&b);
	if (!s)
		ld->oom = 1;
	return s;
}

/* store.url (SPEC section 11): a libpq URI or conninfo in which
 * ${{secrets.NAME}} may give the password. Nothing connects here. */
static void load_store_url(struct config_ld *ld, const struct cy_node *n)
{
	const char *s = config_string(ld, n, "store.url");
	struct tmpl *t;

	if (!s)
		return;
	if (!*s) {
		config_err(ld, n, "store.url must not be empty");
		return;
	}
	t = config_compile(ld, n, CONFIG_NS_VARIABLES | CONFIG_NS_SECRETS,
			   "store.url");
	if (!t)
		return;
	char *url = render_now(ld, t), *shown = render_masked(ld, t);
	tmpl_free(t);
	if (!url || !shown) {
		free(url);
		free(shown);
		if (!ld->oom)
			config_err(ld, n, "store.url is too long");
		return;
	}
	free(ld->cfg->store_url);
	free(ld->cfg->store_url_shown);
	ld->cfg->store_url = url;
	ld->cfg->store_url_shown = shown;
}

static void load_store(struct config_ld *ld, const struct cy_node *root)
{
	const struct cy_node *st =
	    section(ld, root, "store", store_keys, NKEYS(store_keys), "store");
	const struct cy_node *n = config_yaml_get(st, "path");
	const struct cy_node *u = config_yaml_get(st, "url");
	const char *s;

	if (n && u) {
		config_err(ld, u,
			   "store.url and store.path exclude each other: "
			   "url for PostgreSQL (several instances), path for "
			   "SQLite (one)");
		return;
	}
	if (u) {
		load_store_url(ld, u);
		return;
	}
	if (!n || !(s = config_string(ld, n, "store.path")))
		return;
	if (!*s) {
		config_err(ld, n, "store.path must not be empty");
		return;
	}
	char *p = config_strdup(ld, s);
	if (p) {
		free(ld->cfg->store_path);
		ld->cfg->store_path = p;
	}
}

static void load_dispatch(struct config_ld *ld, const struct cy_node *root)
{
	struct config *cfg = ld->cfg;
	const struct cy_node *d = section(ld, root, "dispatch", dispatch_keys,
					  NKEYS(dispatch_keys), "dispatch");
	const struct cy_node *r = section(ld, d, "retry", retry_keys,
					  NKEYS(retry_keys), "dispatch.retry");

	get_int(ld, d, "workers", "dispatch.workers", 1, 256, &cfg->workers);
	get_duration(ld, d, "timeout", "dispatch.timeout", &cfg->timeout_ms);
	get_duration(ld, d, "connect_timeout", "dispatch.connect_timeout",
		     &cfg->connect_timeout_ms);
	get_int(ld, d, "max_in_flight_per_trigger",
		"dispatch.max_in_flight_per_trigger", 1, 256,
		&cfg->max_in_flight_per_trigger);
	get_int(ld, r, "max_attempts", "dispatch.retry.max_attempts", 1, 1000,
		&cfg->max_attempts);
	get_duration(ld, r, "initial_backoff", "dispatch.retry.initial_backoff",
		     &cfg->initial_backoff_ms);
	get_duration(ld, r, "max_backoff", "dispatch.retry.max_backoff",
		     &cfg->max_backoff_ms);
	get_duration(ld, r, "max_age", "dispatch.retry.max_age",
		     &cfg->max_age_ms);
	get_duration(ld, r, "rate_limited_backoff",
		     "dispatch.retry.rate_limited_backoff",
		     &cfg->rate_limited_backoff_ms);
	if (cfg->max_backoff_ms < cfg->initial_backoff_ms)
		config_err(ld,
			   config_yaml_get(r, "max_backoff")
			       ? config_yaml_get(r, "max_backoff")
			       : config_yaml_get(r, "initial_backoff"),
			   "dispatch.retry.max_backoff must not be less than "
			   "initial_backoff");
}

static void load_events(struct config_ld *ld, const struct cy_node *root)
{
	struct config *cfg = ld->cfg;
	const struct cy_node *ev = section(ld, root, "events", events_keys,
					   NKEYS(events_keys), "events");
	const struct cy_node *n = config_yaml_get(ev, "dedup_key");

	get_duration(ld, ev, "dedup_window", "events.dedup_window",
		     &cfg->dedup_window_ms);
	if (!n || !config_string(ld, n, "events.dedup_key"))
		return;
	struct tmpl *t = config_compile(
	    ld, n, CONFIG_NS_VARIABLES | CONFIG_NS_ERATHOS, "events.dedup_key");
	if (!t)
		return;
	if (!tmpl_uses(t, TMPL_ERATHOS))
		config_warn(
		    ld, n,
		    "events.dedup_key refers to no erathos field: every event "
		    "after the first in dedup_window is a duplicate");
	tmpl_free(cfg->dedup_key);
	cfg->dedup_key = t;
}

/* A new config holding the defaults of SPEC section 3. */
static struct config *config_new(struct config_ld *ld, const char *path)
{
	struct config *cfg = calloc(1, sizeof *cfg);
	const char *state = getenv("STATE_DIRECTORY");

	if (!cfg)
		return NULL;
	cfg->refs = 1;
	cfg->path = strdup(path);
	cfg->listen_host = strdup("0.0.0.0");
	cfg->listen_port = 8080;
	cfg->max_body = 64 << 10;
	/* systemd may list several state directories: the first is ours. */
	if (state && *state && *state != ':') {
		size_t n = strcspn(state, ":");
		if (asprintf(&cfg->store_path, "%.*s/triggerd.db", (int)n,
			     state) < 0)
			cfg->store_path = NULL;
	} else {
		cfg->store_path = strdup("./triggerd.db");
	}
	cfg->workers = 4;
	cfg->timeout_ms = 30000;
	cfg->connect_timeout_ms = 10000;
	cfg->max_in_flight_per_trigger = 1;
	cfg->max_attempts = 10;
	cfg->initial_backoff_ms = 5000;
	cfg->max_backoff_ms = 30 * 60000;
	cfg->max_age_ms = 72 * 3600000LL;
	cfg->rate_limited_backoff_ms = 5 * 60000;
	cfg->dedup_window_ms = 24 * 3600000LL;
	ld->cfg = cfg;
	/* Without a resolver only erathos references compile: all it has. */
	cfg->dedup_key = tmpl_compile(
	    DEFAULT_DEDUP_KEY, strlen(DEFAULT_DEDUP_KEY), NULL, NULL, NULL);
	if (!cfg->path || !cfg->listen_host || !cfg->store_path ||
	    !cfg->dedup_key) {
		config_release(cfg);
		ld->cfg = NULL;
		return NULL;
	}
	return cfg;
}

/* Reads the whole file into *out (NUL-terminated). */
static int read_file(struct config_ld *ld, const char *path, char **out,
		     size_t *len)
{
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	char *data = NULL;
	size_t n = 0;

	if (fd < 0 && errno == ENOENT) {
		/* The container image ships no config of its own (one that
		 * delivered to 127.0.0.1 would accept events it can never
		 * send): say what to do, not only what is missing. */
		config_report(ld, 0, 0, 0,
			      "cannot read the configuration: no such file; "
			      "write one there (conf/triggerd.yaml is an "
			      "example; in the container image, mount it) or "
			      "name another with -c FILE");
		goto fail;
	}
	if (fd < 0 || fstat(fd, &st) < 0) {
		config_report(ld, 0, 0, 0, "cannot read the configuration: %s",
			      strerror(errno));
		goto fail;
	}
	if (S_ISDIR(st.st_mode)) {
		config_report(
		    ld, 0, 0, 0,
		    "cannot read the configuration: it is a directory");
		goto fail;
	}
	if (!(data = malloc(CONFIG_MAX_FILE + 1))) {
		config_report(ld, 0, 0, 0, "out of memory");
		goto fail;
	}
	for (;;) {
		ssize_t r = read(fd, data + n, CONFIG_MAX_FILE + 1 - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			config_report(ld, 0, 0, 0,
				      "cannot read the configuration: %s",
				      strerror(errno));
			goto fail;
		}
		if (r == 0)
			break;
		n += (size_t)r;
		if (n > CONFIG_MAX_FILE) {
			config_report(ld, 0, 0, 0,
				      "the configuration is larger than %u MiB",
				      CONFIG_MAX_FILE >> 20);
			goto fail;
		}
	}
	close(fd);
	data[n] = '\0';
	*out = data;
	*len = n;
	return 0;
fail:
	free(data);
	if (fd >= 0)
		close(fd);
	return -1;
}

/* Walks the document: sections in the order their references need. */
static void config_build(struct config_ld *ld, const struct cy_node *root)
{
	if (!root || (root->kind == CY_SCALAR && root->type == CY_T_NULL)) {
		config_report(ld, 0, 1, 1,
			      "the configuration is empty: it needs at least "
			      "\"triggers\"");
		return;
	}
	if (root->kind != CY_MAP) {
		config_err(ld, root,
			   "the configuration must be a mapping (server:, "
			   "triggers:, ...), not %s",
			   config_yaml_what(root));
		return;
	}
	config_check_keys(ld, root, top_keys, NKEYS(top_keys),
			  "the configuration");
	load_variables(ld, config_yaml_get(root, "variables"));
	config_secrets_load(ld, config_yaml_get(root, "secrets"));
	load_server(ld, root);
	load_store(ld, root);
	load_dispatch(ld, root);
	load_events(ld, root);
	const struct cy_node *t = config_yaml_get(root, "triggers");
	if (!t)
		config_err(
		    ld, root,
		    "missing required key \"triggers\" (a list of triggers)");
	else
		config_triggers_load(ld, t);
}

static char *dir_of(const char *path)
{
	const char *slash = strrchr(path, '/');

	if (!slash)
		return strdup(".");
	if (slash == path)
		return strdup("/");
	return strndup(path, (size_t)(slash - path));
}

struct config *config_load(const char *path, struct config_diag *diag)
{
	struct config_diag none = {0};
	struct config_ld ld = {.path = path};
	struct cy_doc doc = {0};
	struct config *cfg = config_new(&ld, path);
	char *src = NULL;
	size_t len = 0;

	ld.dir = dir_of(path);
	if (!cfg || !ld.dir)
		ld.oom = 1;
	else if (read_file(&ld, path, &src, &len) == 0 &&
		 config_yaml_parse(&ld, src, len, &doc) == 0)
		config_build(&ld, doc.root);
	if (ld.oom)
		config_report(&ld, 0, 0, 0, "out of memory");
	config_yaml_free(&doc);
	free(src);
	free(ld.dir);
	int failed = ld.nerrors > 0;
	config_diag_export(&ld, diag ? diag : &none);
	config_diag_clear(&none);
	if (failed) {
		config_release(cfg);
		return NULL;
	}
	return cfg;
}

static void free_tokens(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		explicit_bzero(v[i], strlen(v[i]));
		free(v[i]);
	}
	free(v);
}

static void config_free(struct config *cfg)
{
	free(cfg->path);
	free(cfg->listen_host);
	free_tokens(cfg->auth_tokens, cfg->nauth_tokens);
	free_tokens(cfg->admin_tokens, cfg->nadmin_tokens);
	free(cfg->store_path);
	if (cfg->store_url)
		memset(cfg->store_url, 0, strlen(cfg->store_url));
	free(cfg->store_url);
	free(cfg->store_url_shown);
	tmpl_free(cfg->dedup_key);
	for (size_t i = 0; i < cfg->nvars; i++) {
		free(cfg->var_names[i]);
		free(cfg->var_values[i]);
	}
	free(cfg->var_names);
	free(cfg->var_values);
	config_secrets_free(cfg);
	for (size_t i = 0; i < cfg->ntriggers; i++)
		config_triggers_free(&cfg->triggers[i]);
	free(cfg->triggers);
	strmap_free(cfg->by_job);
	strmap_free(cfg->by_name);
	free(cfg->any_job);
	free(cfg);
}

const struct config_trigger *config_trigger_by_name(const struct config *cfg,
						    const char *name)
{
	size_t n;
	const size_t *v =
	    cfg->by_name ? strmap_get(cfg->by_name, name, &n) : NULL;

	return v && n ? &cfg->triggers[v[0]] : NULL;
}

struct config *config_retain(struct config *cfg)
{
	if (cfg)
		__atomic_add_fetch(&cfg->refs, 1, __ATOMIC_RELAXED);
	return cfg;
}

void config_release(struct config *cfg)
{
	/* acq_rel: the freeing thread must see every other reader's work
	 * on cfg finished. */
	if (cfg && __atomic_sub_fetch(&cfg->refs, 1, __ATOMIC_ACQ_REL) == 0)
		config_free(cfg);
}

void config_slot_init(struct config_slot *s, struct config *cfg)
{
	pthread_mutex_init(&s->mu, NULL);
	s->cur = cfg;
}

struct config *config_slot_acquire(struct config_slot *s)
{
	pthread_mutex_lock(&s->mu);
	/* Retained under the lock, so a concurrent replace cannot free it
	 * between the read and the retain. */
	struct config *cfg = config_retain(s->cur);
	pthread_mutex_unlock(&s->mu);
	return cfg;
}

void config_slot_replace(struct config_slot *s, struct config *cfg)
{
	pthread_mutex_lock(&s->mu);
	struct config *old = s->cur;
	s->cur = cfg;
	pthread_mutex_unlock(&s->mu);
	config_release(old); /* outside the lock: freeing takes time */
}

void config_slot_destroy(struct config_slot *s)
{
	config_release(s->cur);
	s->cur = NULL;
	pthread_mutex_destroy(&s->mu);
}
