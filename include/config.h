/*
 * config — the YAML configuration: loaded, validated, then read-only.
 *
 * DESIGN: libyaml lives only here. config_load() parses the whole file,
 * checks it against the schema of SPEC section 3, compiles every template,
 * resolves every secret, builds the job-id and name indices, and collects
 * every error and warning with FILE:LINE:COL before returning. A loaded
 * config never changes; a reload builds a new one and swaps it in through a
 * config_slot. Readers hold a reference (config_slot_acquire /
 * config_release) for as long as they use it, so a swap never shows anyone
 * half a config, and the old one is freed when its last reader lets go.
 * Secrets live only in memory, in struct config_secret.
 */
#ifndef TRIGGERD_CONFIG_H
#define TRIGGERD_CONFIG_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "rules.h"
#include "tmpl.h"

struct strmap;
struct event;

#define CONFIG_DEFAULT_PATH "/etc/triggerd/triggerd.yaml"

/* Bytes. An inbound or admin token shorter than CONFIG_MIN_TOKEN is a
 * config error: it is what an attacker guesses online, and 16 bytes is the
 * least that `openssl rand -hex 8` (64 bits) gives. A secret value shorter
 * than CONFIG_MIN_REDACT is not masked in echoed text (request_redact): a
 * match that short can be an accident, and masking it inside unrelated
 * words would both corrupt the text and reveal the value. */
#define CONFIG_MIN_TOKEN 16
#define CONFIG_MIN_REDACT 8

enum config_secret_kind {
	CONFIG_SECRET_ENV,
	CONFIG_SECRET_FILE,
	CONFIG_SECRET_CREDENTIAL,
	CONFIG_SECRET_PLAIN, /* a plain string in the file (--check warns) */
};

struct config_secret {
	char *name;
	enum config_secret_kind kind;
	char *source; /* env name, file path or credential name; NULL if plain */
	char *value;  /* resolved at load; never logged, stored or shown */
	size_t len;
};

struct config_header {
	char *name;
	struct tmpl *value;
};

/* A dbt trigger's options (SPEC section 8); is_dbt 0 for other triggers. */
struct config_dbt {
	int is_dbt; /* the url, rendered at load, is dbt's Trigger Job Run */
	int mark;   /* append the delivery marker to cause (default 1) */
	int follow; /* poll the run until it ends (default 0) */
	int64_t poll_interval_ms; /* default 30s, at least 1s */
	int64_t run_timeout_ms;   /* default 24h */
	int cancel_on_timeout;    /* default 0 */
	int reuse;                /* if_running: reuse (default: trigger) */
};

struct config_trigger {
	char *name;        /* given, or derived from description */
	char *description; /* may be NULL */
	int active;
	char *method;      /* GET, POST, PUT, PATCH or DELETE */
	struct tmpl *url;
	struct config_header *headers; /* in configured order */
	size_t nheaders;
	int has_content_type;          /* a Content-Type header is configured */
	struct tmpl_node *body;        /* NULL: no body */
	int body_is_json;              /* body was a mapping/list (send as JSON) */
	struct rule *rules;
	size_t nrules;
	char **jobs; /* lower case job uuids, or "*" */
	size_t njobs;
	/* SPEC section 9: at most one of the two is set */
	int wait_all;        /* wait_for: all (a fan-in over jobs) */
	int64_t within_ms;   /* fan-in: an event counts this long; 0: always */
	int64_t coalesce_ms; /* > 0: one delivery per window of events */
	struct config_dbt dbt;
};

struct config {
	char *path;

	/* server */
	char *listen_host; /* "0.0.0.0", "::1", ... */
	int listen_port;
	size_t max_body;
	char **auth_tokens; /* resolved; empty: no auth */
	size_t nauth_tokens;
	char **admin_tokens; /* resolved; empty: admin API off */
	size_t nadmin_tokens;

	/* store */
	char *store_path;
	char *store_url;       /* PostgreSQL, secrets resolved; NULL: SQLite at
				* store_path. Never logged or shown. */
	char *store_url_shown; /* the same with secrets as <secret:NAME> */

	/* dispatch */
	int workers;
	int64_t timeout_ms;
	int64_t connect_timeout_ms;
	int max_in_flight_per_trigger;
	int max_attempts;
	int64_t initial_backoff_ms;
	int64_t max_backoff_ms;
	int64_t max_age_ms;
	int64_t rate_limited_backoff_ms;

	/* events */
	struct tmpl *dedup_key;
	int64_t dedup_window_ms;

	char **var_names; /* variables, in file order */
	char **var_values;
	size_t nvars;

	struct config_secret *secrets;
	size_t nsecrets;
	const char **secret_names;  /* views for struct tmpl_env */
	const char **secret_values;
	size_t *secret_lens;

	struct config_trigger *triggers;
	size_t ntriggers;
	struct strmap *by_job;   /* lower-case job id -> trigger indices */
	size_t *any_job;         /* indices of triggers with jobs: ["*"] */
	size_t nany_job;
	struct strmap *by_name;  /* trigger name -> index */

	int refs; /* atomic; see config_slot */
};

/* Every error and warning of one load, each a full line
 * "FILE:LINE:COL: error: message" or "FILE:LINE:COL: warning: message". */
struct config_diag {
	char **lines;
	size_t nlines;
	int nerrors;
	int nwarnings;
};

/*
 * Loads and validates path. Returns a config with one reference (free with
 * config_release), or NULL when there is any error; diag always receives
 * every error and warning found (free with config_diag_clear). Secrets are
 * resolved from the environment, files and $CREDENTIALS_DIRECTORY.
 */
struct config *config_load(const char *path, struct config_diag *diag);
void config_diag_clear(struct config_diag *diag);

/* The trigger called name, or NULL. Owned by cfg. */
const struct config_trigger *config_trigger_by_name(const struct config *cfg,
						    const char *name);

/*
 * Fills env to render cfg's templates for ev (which may be NULL). With
 * mask_secrets, secrets render as "<secret:NAME>" (for --dry-run and the
 * admin API); otherwise as their values (only when sending).
 */
void config_env(const struct config *cfg, const struct event *ev,
		int mask_secrets, struct tmpl_env *env);

/* Takes one more reference / drops one; the last drop frees cfg.
 * config_release(NULL) is a no-op. Callable from any thread. */
struct config *config_retain(struct config *cfg);
void config_release(struct config *cfg);

/* The live config, swapped atomically on reload. */
struct config_slot {
	pthread_mutex_t mu;
	struct config *cur;
};

void config_slot_init(struct config_slot *s, struct config *cfg); /* takes cfg's ref */
struct config *config_slot_acquire(struct config_slot *s); /* caller releases */
void config_slot_replace(struct config_slot *s, struct config *cfg); /* takes cfg's ref */
void config_slot_destroy(struct config_slot *s);

#endif
