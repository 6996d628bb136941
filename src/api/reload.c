/*
 * reload — SIGHUP's second half (see reload.h): swap the config in, then
 * reconcile the store with it.
 *
 * DESIGN: main thread only. The swap comes first, so a delivery of a
 * removed trigger that a worker takes meanwhile is cancelled by the
 * worker itself (it finds no trigger); the store's cancel catches every
 * other pending one. Both paths count a cancelled delivery once.
 */
#include "reload.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "config.h"
#include "ingest.h"
#include "log.h"
#include "metrics.h"
#include "store.h"

/* Collects the trigger of each delivery a reload cancels (store thread). */
static void note_cancelled(void *ctx, const char *trigger)
{
	struct buf *names = ctx;
	buf_append(names, trigger, strlen(trigger) + 1);
}

/* Cancels the pending deliveries of triggers that cfg removed or
 * deactivated, and counts them. */
static void cancel_inactive(struct store *st, const struct config *cfg)
{
	const char **active = calloc(cfg->ntriggers + 1, sizeof *active);
	struct buf names;
	size_t n = 0;
	char num[24];

	if (!active)
		return;
	for (size_t i = 0; i < cfg->ntriggers; i++)
		if (cfg->triggers[i].active)
			active[n++] = cfg->triggers[i].name;
	buf_init(&names, (size_t)64 << 20);
	int cancelled = store_cancel_inactive(st, active, n, note_cancelled,
					      &names);
	for (size_t off = 0; cancelled > 0 && off < names.len;
	     off += strlen(names.data + off) + 1)
		metrics_delivery(names.data + off, METRICS_CANCELLED);
	snprintf(num, sizeof num, "%d", cancelled);
	log_kv(cancelled < 0 ? LOG_ERROR : LOG_INFO,
	       cancelled < 0 ? "could not cancel the deliveries of removed triggers"
			     : "deliveries of removed or inactive triggers cancelled",
	       "count", num, LOG_END);
	buf_free(&names);
	free(active);
}

/* Keeps the fan-in progress of the jobs cfg's fan-in triggers still list
 * (SPEC section 9); the rest (removed triggers and jobs, triggers that no
 * longer fan in) is dropped. */
static void keep_fanin(struct store *st, const struct config *cfg)
{
	const char **trig, **jobs;
	size_t n = 0;

	for (size_t i = 0; i < cfg->ntriggers; i++)
		if (cfg->triggers[i].wait_all)
			n += cfg->triggers[i].njobs;
	trig = calloc(n + 1, sizeof *trig);
	jobs = calloc(n + 1, sizeof *jobs);
	n = 0;
	for (size_t i = 0; trig && jobs && i < cfg->ntriggers; i++)
		for (size_t j = 0; cfg->triggers[i].wait_all &&
				   j < cfg->triggers[i].njobs;
		     j++) {
			trig[n] = cfg->triggers[i].name;
			jobs[n++] = cfg->triggers[i].jobs[j];
		}
	if (!trig || !jobs || store_fanin_keep(st, trig, jobs, n) < 0)
		log_kv(LOG_ERROR, "could not drop the fan-in progress of removed "
				  "triggers and jobs",
		       LOG_END);
	free(trig);
	free(jobs);
}

void reload_apply(const struct ingest *in, const char *path,
		  struct config *cfg)
{
	if (!cfg) {
		log_kv(LOG_ERROR, "reload failed; keeping the running config",
		       "config", path, LOG_END);
		metrics_reload(0);
		return;
	}
	struct config *old = config_slot_acquire(in->slot);
	if (strcmp(old->store_path, cfg->store_path) != 0 ||
	    (old->store_url == NULL) != (cfg->store_url == NULL) ||
	    (old->store_url && strcmp(old->store_url, cfg->store_url) != 0) ||
	    strcmp(old->listen_host, cfg->listen_host) != 0 ||
	    old->listen_port != cfg->listen_port || old->workers != cfg->workers)
		log_kv(LOG_WARN, "server.listen, store.path, store.url and dispatch.workers change only at restart",
		       LOG_END);
	config_release(old);

	config_slot_replace(in->slot, cfg);
	log_kv(LOG_INFO, "config reloaded", "config", path, LOG_END);
	cfg = config_slot_acquire(in->slot);
	cancel_inactive(in->store, cfg);
	keep_fanin(in->store, cfg);
	config_release(cfg);
	metrics_reload(1);
	ingest_wake(in);
}
