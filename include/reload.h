/*
 * reload — a new configuration applied to the running daemon (SIGHUP).
 *
 * DESIGN: called by the main thread only, after it loaded the new file.
 * A valid config replaces the live one atomically (config_slot), then the
 * store is reconciled with it: pending deliveries of triggers the new
 * config removed or deactivated are cancelled and counted. An invalid one
 * changes nothing. Either way the reload is logged and counted once.
 */
#ifndef TRIGGERD_RELOAD_H
#define TRIGGERD_RELOAD_H

struct config;
struct ingest;

/*
 * Applies cfg (loaded from path; NULL if it was invalid, its errors
 * already logged) to the daemon that in serves: the slot, the store and
 * the wake-up of whoever sends deliveries. Takes over cfg's reference.
 */
void reload_apply(const struct ingest *in, const char *path,
		  struct config *cfg);

#endif
