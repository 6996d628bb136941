/*
 * config_int — what the config loader's own files share: config.c (load,
 * sections, lifetime), config_yaml.c (YAML tree), config_diag.c
 * (messages), config_node.c (checked reads of nodes), config_tmpl.c
 * (templates), config_value.c (scalar formats), config_secrets.c,
 * config_triggers.c and config_rules.c. Not an interface for other
 * modules: they see include/config.h only.
 *
 * DESIGN: config_yaml.c turns the file into a small tree of nodes that keep
 * their 1-based line and column (libyaml stays in that file). The schema
 * walk reads the tree and reports through one struct config_ld, which
 * collects every error and warning with its position; they are sorted by
 * position and handed to the caller's config_diag at the end of
 * config_load(). config_node.c holds the checked reads of nodes every
 * section uses, config_tmpl.c the compiling of templates. Only the
 * loading thread touches any of this.
 */
#ifndef TRIGGERD_CONFIG_INT_H
#define TRIGGERD_CONFIG_INT_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"

#define CONFIG_MAX_FILE (32u << 20) /* a bigger config file is refused */
#define CONFIG_MAX_NODES 2000000    /* YAML nodes in one file (10,000 triggers take ~250,000) */
#define CONFIG_MAX_DEPTH 64	    /* YAML nesting */
#define CONFIG_MAX_BODY_NODES 10000 /* body tree, aliases expanded */
#define CONFIG_MAX_BODY_DEPTH 32
#define CONFIG_MAX_SECRET (64u << 10) /* a secret file's size */
#define CONFIG_RENDER_MAX (64u << 10) /* a URL or token rendered at load */

enum cy_kind { CY_SCALAR, CY_MAP, CY_SEQ };

/* A plain scalar's type under the YAML 1.2 core schema; quoted, block and
 * `!!str` scalars are always CY_T_STR. */
enum cy_type { CY_T_STR, CY_T_NULL, CY_T_BOOL, CY_T_INT, CY_T_FLOAT };

struct cy_node {
	enum cy_kind kind;
	int line, col; /* 1-based, of the node's first character */

	/* CY_SCALAR */
	char *text; /* NUL-terminated; may contain NULs (len counts them) */
	size_t len;
	enum cy_type type;
	int verbatim; /* 1: one line whose source bytes are text itself, so
		       * an offset in text maps to a column */
	int text_col; /* column of text[0] when verbatim */

	/* CY_MAP: keys[i] -> vals[i]; CY_SEQ: vals[i] (keys unused) */
	struct cy_node **keys;
	struct cy_node **vals;
	size_t n, cap;

	struct cy_node *next_alloc; /* every node of a document, for freeing */
};

struct cy_doc {
	struct cy_node *root; /* NULL for an empty document */
	struct cy_node *all;
};

struct config_item {
	int line, col; /* 0: no position (the file as a whole) */
	int warning;
	size_t seq;
	char *text; /* the whole line */
};

/* One load in progress. */
struct config_ld {
	const char *path;
	char *dir; /* the config file's directory (relative secret files) */
	struct config *cfg;
	struct config_item *items;
	size_t nitems, capitems;
	int nerrors, nwarnings;
	int bad_secrets; /* secrets that could not be resolved */
	int oom;
};

/* Records "PATH:LINE:COL: error: ..." at node n (n may be NULL: 1:1). */
void config_err(struct config_ld *ld, const struct cy_node *n, const char *fmt,
		...) __attribute__((format(printf, 3, 4)));
void config_warn(struct config_ld *ld, const struct cy_node *n, const char *fmt,
		 ...) __attribute__((format(printf, 3, 4)));
/* The same at an explicit position (line 0: no position). */
void config_report(struct config_ld *ld, int warning, int line, int col,
		   const char *fmt, ...) __attribute__((format(printf, 5, 6)));
/* Records at byte offset off inside scalar n when its columns are known,
 * else at n itself. */
void config_err_off(struct config_ld *ld, const struct cy_node *n, size_t off,
		    const char *fmt, ...) __attribute__((format(printf, 4, 5)));
void config_warn_off(struct config_ld *ld, const struct cy_node *n, size_t off,
		     const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Moves the records, sorted by position, to the end of diag. */
void config_diag_export(struct config_ld *ld, struct config_diag *diag);

/* config_yaml.c: parses src into doc. 0, or -1 after reporting a YAML
 * error (doc is then empty). Free with config_yaml_free(). */
int config_yaml_parse(struct config_ld *ld, const char *src, size_t len,
		      struct cy_doc *doc);
void config_yaml_free(struct cy_doc *doc);
/* The value of key in map n, or NULL (also NULL if n is not a map). */
const struct cy_node *config_yaml_get(const struct cy_node *n, const char *key);
/* The key node of key in map n, or NULL. */
const struct cy_node *config_yaml_key(const struct cy_node *n, const char *key);
/* "a mapping", "a list", "a string", "a number", ... for messages. */
const char *config_yaml_what(const struct cy_node *n);

/* config_value.c: scalars, names and URLs. Each 0, or -1. */
int config_value_duration(const char *s, int64_t *ms);
int config_value_size(const char *s, uint64_t *bytes);
int config_value_int(const char *s, long long min, long long max,
		     long long *out);
int config_value_bool(const char *s, int *out);
int config_value_uuid(const char *s);
/* The name derived from a description, or NULL if none can be (malloc'd). */
char *config_value_derive_name(const char *desc);
/* The candidate closest to word, if close enough to suggest, else NULL. */
const char *config_value_suggest(const char *word, const char *const *cands,
				 size_t n);
/* Splits "host:port" / "[v6]:port": *host is malloc'd. */
int config_value_listen(const char *s, char **host, int *port, char *err,
			size_t errlen);
/* Checks a rendered URL: http(s), a host, a valid port. Writes the host
 * (lower case) into host. On -1 err says what is wrong. */
int config_value_url(const char *url, char *host, size_t hostlen, char *err,
		     size_t errlen);
/* Offset of the first "<UPPER_CASE" placeholder in s, or -1. */
long config_value_placeholder(const char *s, size_t len);
/* Number of UTF-8 characters in s[0..n). */
size_t config_value_chars(const char *s, size_t n);

/*
 * config_node.c: checks every section uses.
 * config_check_keys reports every key of map n not in allowed (with a
 * "did you mean" hint). config_string returns n's text for a scalar that
 * is not null and has no NUL byte, else reports "what" and returns NULL.
 */
void config_check_keys(struct config_ld *ld, const struct cy_node *n,
		       const char *const *allowed, size_t nallowed,
		       const char *what);
const char *config_string(struct config_ld *ld, const struct cy_node *n,
			  const char *what);
char *config_strdup(struct config_ld *ld, const char *s);

/* 1 if key node k is a valid variable or secret name (letters, digits,
 * '_' and '-', as templates accept), else reports it and returns 0. */
int config_name_ok(struct config_ld *ld, const struct cy_node *k,
		   const char *kind);

/* config_secrets.c: the `secrets` section, resolved into ld->cfg. */
void config_secrets_load(struct config_ld *ld, const struct cy_node *map);
void config_secrets_free(struct config *cfg);

/* Namespaces a template may use, for config_compile(). */
#define CONFIG_NS_VARIABLES 1u
#define CONFIG_NS_SECRETS 2u
#define CONFIG_NS_ERATHOS 4u
#define CONFIG_NS_BATCH 8u
#define CONFIG_NS_ALL 15u

/* config_tmpl.c: compiles scalar n as a template, reporting any error at its position
 * (where names the field in messages). NULL after an error. */
struct tmpl *config_compile(struct config_ld *ld, const struct cy_node *n,
			    unsigned allow, const char *where);

/* config_triggers.c: loads the `triggers` list into ld->cfg. */
void config_triggers_load(struct config_ld *ld, const struct cy_node *seq);
void config_triggers_free(struct config_trigger *t);

/* config_dbt.c: decides whether trigger t (node trigger, url already
 * loaded) is a dbt trigger and loads its `dbt:` options and body checks.
 * label names the trigger in messages. */
void config_dbt_load(struct config_ld *ld, const struct cy_node *trigger,
		     const char *label, struct config_trigger *t);

/* config_batch.c: trigger t's `wait_for`, `within` and `coalesce` (node
 * trigger, jobs already loaded); label names the trigger in messages. */
void config_batch_load(struct config_ld *ld, const struct cy_node *trigger,
		       const char *label, struct config_trigger *t);

/* config_rules.c: the `rules` of one trigger (node trigger) into t;
 * label names the trigger in messages. */
void config_rules_load(struct config_ld *ld, const struct cy_node *trigger,
		       const char *label, struct config_trigger *t);

#endif
