/*
 * strmap — a hash map from a string to a list of size_t values.
 *
 * DESIGN: used by the config to find triggers by Erathos job id (one job id
 * may start several triggers) and by name, in O(1) instead of a scan of all
 * triggers. Built once at config load, then only read, so it may be read
 * from many threads at once without locks. Keys are copied.
 */
#ifndef TRIGGERD_STRMAP_H
#define TRIGGERD_STRMAP_H

#include <stddef.h>

struct strmap;

struct strmap *strmap_new(void); /* NULL if out of memory */

/* Appends value to key's list (values keep their insertion order).
 * 0, or -1 out of memory. */
int strmap_add(struct strmap *m, const char *key, size_t value);

/* key's values and their count in *n, or NULL (and *n = 0) if absent.
 * Owned by m. */
const size_t *strmap_get(const struct strmap *m, const char *key, size_t *n);

void strmap_free(struct strmap *m); /* NULL is a no-op */

#endif
