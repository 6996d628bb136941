/*
 * store_backend — what a store backend provides (include/store.h is the
 * contract). Not an interface for modules above the store.
 *
 * DESIGN: a backend's own struct begins with a struct store whose ops
 * point at its functions; store.c forwards every call of store.h to them.
 * Each operation has exactly the contract of the store.h function of the
 * same name.
 */
#ifndef TRIGGERD_STORE_BACKEND_H
#define TRIGGERD_STORE_BACKEND_H

#include "store.h"

struct store_ops {
	const char *name; /* "sqlite", "postgresql", for messages */
	void (*close)(struct store *st);
	int (*writable)(struct store *st);
	int (*accept)(struct store *st, const struct store_event_in *in,
		      struct store_event_out *out);
	int (*dedup_lookup)(struct store *st, const char *key,
			    int64_t window_ms, char event_id[UTIL_ID_LEN]);
	int (*claim_due)(struct store *st, const struct store_claim *c,
			 struct store_due *out, size_t max,
			 int64_t *wake_at_ms);
	int (*release)(struct store *st, const char *id);
	int (*record_attempt)(struct store *st, const char *id,
			      const struct store_attempt *a,
			      enum store_state state, int64_t next_at_ms,
			      void (*done)(void *ctx, int rc), void *ctx);
	int (*claim_polls)(struct store *st, const struct store_claim *c,
			   struct store_due *out, size_t max,
			   int64_t *wake_at_ms);
	int (*record_run)(struct store *st, const char *id,
			  const struct store_run *run, const char *error,
			  void (*done)(void *ctx, int rc), void *ctx);
	int64_t (*count_followed)(struct store *st);
	int (*cancel_inactive)(struct store *st, const char *const *active,
			       size_t nactive,
			       void (*each)(void *ctx, const char *trigger),
			       void *ctx);
	int64_t (*count_pending)(struct store *st);
	int (*list)(struct store *st, const char *state, const char *trigger,
		    int limit, struct store_delivery_list *out);
	int (*get)(struct store *st, const char *id,
		   struct store_delivery_full *out);
	int (*retry)(struct store *st, const char *id, int64_t now_ms);
	int (*fanin_keep)(struct store *st, const char *const *triggers,
			  const char *const *jobs, size_t n);
	int (*fanin_progress)(struct store *st, const char *trigger,
			      const char *const *jobs, size_t njobs,
			      int64_t within_ms, int64_t now_ms, int *done);
};

struct store {
	const struct store_ops *ops;
};

/* The SQLite backend (src/store/sqlite/): path is the database file. */
struct store *sqlite_store_open(const char *path, char *err, size_t errlen);

/* The PostgreSQL backend (src/store/postgres/): url is a libpq URI or
 * key=value conninfo, secrets resolved (never logged). */
struct store *pg_store_open(const char *url, char *err, size_t errlen);

#endif
