/*
 * Unit tests for backoff: every rule of SPEC section 6, pinned exactly by
 * feeding the jitter's random number in.
 */
#include <stdint.h>

#include "backoff.h"
#include "check.h"

static const struct backoff_policy spec_default = {
    .max_attempts = 10,
    .initial_ms = 5000,		  /* 5s */
    .max_ms = 30 * 60 * 1000,	  /* 30m */
    .max_age_ms = 72LL * 3600000, /* 72h */
    .rate_limited_ms = 300000,	  /* 5m */
};

static void test_classify(void)
{
	static const int delivered[] = {200, 201, 202, 204, 299};
	static const int retry[] = {0, 408, 425, 429, 500, 502, 503, 504};
	static const int permanent[] = {100, 199, 300, 301, 302, 304, 307,
					308, 400, 401, 403, 404, 405, 409,
					410, 413, 422, 426, 431, 451, 501,
					505, 506, 511, 599, 600, -1};

	for (size_t i = 0; i < sizeof delivered / sizeof *delivered; i++)
		CHECK_INT(backoff_classify(delivered[i]), BACKOFF_DELIVERED);
	for (size_t i = 0; i < sizeof retry / sizeof *retry; i++)
		CHECK_INT(backoff_classify(retry[i]), BACKOFF_RETRY);
	for (size_t i = 0; i < sizeof permanent / sizeof *permanent; i++)
		CHECK_INT(backoff_classify(permanent[i]), BACKOFF_PERMANENT);
}

/* rnd = 2^31 is almost exactly the middle: 1.0 of the base, within 1 ms. */
#define MID 0x80000000u

static void test_exponential_and_cap(void)
{
	const struct backoff_policy *p = &spec_default;
	int64_t want = 5000;

	for (int a = 1; a <= 9; a++) {
		int64_t d = backoff_delay_ms(p, a, 503, -1, MID);
		CHECK(d >= want && d <= want + 1);
		want *= 2; /* 5s 10s 20s 40s 80s 160s 320s 640s 1280s */
	}
	/* 2560s passes 30m: capped from attempt 10 on, and forever after. */
	CHECK_INT(backoff_delay_ms(p, 10, 503, -1, MID) / 10, 180000);
	CHECK_INT(backoff_delay_ms(p, 11, 503, -1, MID) / 10, 180000);
	CHECK_INT(backoff_delay_ms(p, 63, 503, -1, MID) / 10, 180000);
	CHECK_INT(backoff_delay_ms(p, 64, 503, -1, MID) / 10, 180000);
	CHECK_INT(backoff_delay_ms(p, 1000000, 0, -1, MID) / 10, 180000);
	/* attempt < 1 counts as the first */
	CHECK_INT(backoff_delay_ms(p, 0, 503, -1, 0), 4000);

	/* a huge initial backoff saturates at max instead of overflowing */
	struct backoff_policy big = *p;
	big.initial_ms = INT64_MAX / 3;
	big.max_ms = INT64_MAX;
	CHECK(backoff_delay_ms(&big, 5, 503, -1, 0) > 0);
	CHECK(backoff_delay_ms(&big, 5, 503, -1, UINT32_MAX) > 0);
}

static void test_jitter_bounds(void)
{
	const struct backoff_policy *p = &spec_default;

	CHECK_INT(backoff_delay_ms(p, 1, 503, -1, 0), 4000);
	CHECK_INT(backoff_delay_ms(p, 1, 503, -1, UINT32_MAX), 6000);
	CHECK_INT(backoff_delay_ms(p, 2, 0, -1, 0), 8000);
	CHECK_INT(backoff_delay_ms(p, 2, 0, -1, UINT32_MAX), 12000);
	/* jitter applies to the capped value too: 30m ± 20% */
	CHECK_INT(backoff_delay_ms(p, 20, 503, -1, 0), 1440000);
	CHECK_INT(backoff_delay_ms(p, 20, 503, -1, UINT32_MAX), 2160000);
	/* every value in between stays inside the bounds, monotonically */
	int64_t prev = 0;
	for (uint64_t r = 0; r <= UINT32_MAX; r += 0x01000193u) {
		int64_t d = backoff_delay_ms(p, 3, 503, -1, (uint32_t)r);
		CHECK(d >= 16000 && d <= 24000 && d >= prev);
		prev = d;
	}
}

static void test_floors(void)
{
	const struct backoff_policy *p = &spec_default;

	/* Retry-After is a floor, even past max_backoff (30m) */
	CHECK_INT(backoff_delay_ms(p, 1, 503, 3600000, UINT32_MAX), 3600000);
	CHECK_INT(backoff_delay_ms(p, 20, 503, 7200000, UINT32_MAX), 7200000);
	/* ...but only a floor: a shorter one leaves the backoff alone */
	CHECK_INT(backoff_delay_ms(p, 1, 503, 1000, 0), 4000);
	CHECK_INT(backoff_delay_ms(p, 1, 503, 0, 0), 4000);
	/* on a 429 too, where it replaces the rate-limited floor */
	CHECK_INT(backoff_delay_ms(p, 1, 429, 60000, 0), 60000);
	CHECK_INT(backoff_delay_ms(p, 1, 429, 900000, 0), 900000);
	/* a 429 without Retry-After waits at least rate_limited_backoff */
	CHECK_INT(backoff_delay_ms(p, 1, 429, -1, 0), 300000);
	CHECK_INT(backoff_delay_ms(p, 1, 429, -1, UINT32_MAX), 300000);
	/* ...and wins over max_backoff as well */
	struct backoff_policy small = *p;
	small.max_ms = 60000;
	CHECK_INT(backoff_delay_ms(&small, 20, 429, -1, UINT32_MAX), 300000);
	/* a longer exponential backoff is kept */
	CHECK_INT(backoff_delay_ms(p, 20, 429, -1, 0), 1440000);
	/* the 429 floor does not apply to other statuses */
	CHECK_INT(backoff_delay_ms(p, 1, 503, -1, 0), 4000);
	CHECK_INT(backoff_delay_ms(p, 1, 0, -1, 0), 4000);
}

static void test_give_up(void)
{
	const struct backoff_policy *p = &spec_default;
	const int64_t t0 = 1764331200000LL; /* 2025-11-28T12:00:00Z */
	const int64_t h = 3600000;

	/* by attempts: the 10th attempt is the last */
	CHECK_INT(backoff_give_up(p, 1, t0, t0, 5000), 0);
	CHECK_INT(backoff_give_up(p, 9, t0, t0, 5000), 0);
	CHECK_INT(backoff_give_up(p, 10, t0, t0, 5000), 1);
	CHECK_INT(backoff_give_up(p, 11, t0, t0, 5000), 1);

	/* by age: the next try would fall past accepted + 72h */
	CHECK_INT(backoff_give_up(p, 2, t0, t0 + 71 * h, h), 0);
	CHECK_INT(backoff_give_up(p, 2, t0, t0 + 71 * h, h + 1), 1);
	CHECK_INT(backoff_give_up(p, 2, t0, t0 + 72 * h, 0), 0);
	CHECK_INT(backoff_give_up(p, 2, t0, t0 + 72 * h + 1, 0), 1);
	CHECK_INT(backoff_give_up(p, 2, t0, t0 + 80 * h, 0), 1);
	/* an absurd Retry-After does not overflow into "not too old" */
	CHECK_INT(backoff_give_up(p, 2, t0, t0, INT64_MAX), 1);
	/* a wall clock that stepped back is not "too old" */
	CHECK_INT(backoff_give_up(p, 2, t0, t0 - h, 5000), 0);

	/* zero disables a rule */
	struct backoff_policy unlimited = *p;
	unlimited.max_attempts = 0;
	unlimited.max_age_ms = 0;
	CHECK_INT(backoff_give_up(&unlimited, 1000, t0, t0 + 1000 * h, h), 0);
}

int main(void)
{
	test_classify();
	test_exponential_and_cap();
	test_jitter_bounds();
	test_floors();
	test_give_up();
	return check_report();
}
