/*
 * util — small helpers with no state: clocks, ids, time formats,
 * constant-time comparison. Callable from any thread.
 */
#ifndef TRIGGERD_UTIL_H
#define TRIGGERD_UTIL_H

#include <stddef.h>
#include <stdint.h>

#define UTIL_ID_LEN 28 /* "ev_" or "dl_" + 24 hex digits + NUL */

/* Wall-clock time in milliseconds since the Unix epoch. */
int64_t util_now_ms(void);

/* Monotonic time in milliseconds (for timeouts and latencies). */
int64_t util_mono_ms(void);

/* Writes prefix (2 letters) + "_" + 24 random hex digits into out
 * (UTIL_ID_LEN bytes). The first 12 digits are the time in ms, so ids
 * sort by creation time; the rest are 48 random bits (a per-thread
 * generator seeded from getrandom()). */
void util_new_id(char out[UTIL_ID_LEN], const char *prefix);

/* Formats ms since the epoch as RFC 3339 UTC with milliseconds,
 * "2026-11-28T12:00:00.123Z", into out (at least 32 bytes). */
void util_rfc3339(int64_t ms, char *out, size_t outlen);

/* 1 if a and b are equal, 0 if not; the time taken depends only on the
 * lengths, never on where the bytes differ. */
int util_ct_equal(const char *a, size_t alen, const char *b, size_t blen);

/* Random 32-bit value from getrandom() (used for backoff jitter). */
uint32_t util_random32(void);

#endif
