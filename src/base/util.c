/*
 * util — clocks, ids, time formats, constant-time comparison.
 *
 * DESIGN: stateless; every function is safe from any thread.
 */
#include "util.h"

#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

int64_t util_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t util_mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void fill_random(void *p, size_t n)
{
	unsigned char *c = p;
	while (n > 0) {
		ssize_t got = getrandom(c, n, 0);
		if (got <= 0)
			continue; /* EINTR; the kernel pool is ready after boot */
		c += got;
		n -= (size_t)got;
	}
}

uint32_t util_random32(void)
{
	uint32_t v;
	fill_random(&v, sizeof v);
	return v;
}

/* splitmix64 over a per-thread state seeded once from getrandom(): ids
 * need to be unique, not secret (every id-taking endpoint wants a token),
 * and a system call per id showed up in profiles of the event path. */
static uint64_t next_random64(void)
{
	static _Thread_local uint64_t state;
	static _Thread_local int seeded;

	if (!seeded) {
		fill_random(&state, sizeof state);
		seeded = 1;
	}
	uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

void util_new_id(char out[UTIL_ID_LEN], const char *prefix)
{
	uint64_t ms = (uint64_t)util_now_ms() & 0xffffffffffffULL;
	uint64_t rnd = next_random64() & 0xffffffffffffULL;

	snprintf(out, UTIL_ID_LEN, "%.2s_%012llx%012llx", prefix,
		 (unsigned long long)ms, (unsigned long long)rnd);
}

void util_rfc3339(int64_t ms, char *out, size_t outlen)
{
	time_t secs = (time_t)(ms / 1000);
	struct tm tm;
	gmtime_r(&secs, &tm);
	snprintf(out, outlen, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
		 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
		 tm.tm_min, tm.tm_sec, (int)(ms % 1000));
}

int util_ct_equal(const char *a, size_t alen, const char *b, size_t blen)
{
	/* Walk the whole of b whatever a holds, so the time depends only on
	 * the token's length, not on how much of it an attacker guessed. */
	unsigned char diff = (unsigned char)(alen != blen);
	for (size_t i = 0; i < blen; i++) {
		unsigned char ca = i < alen ? (unsigned char)a[i] : 0;
		diff |= (unsigned char)(ca ^ (unsigned char)b[i]);
	}
	return diff == 0;
}
