/*
 * backoff — when to try a delivery again, and whether to (SPEC section 6).
 *
 * DESIGN: pure functions of their arguments: no clock, no random source,
 * no state. The dispatcher passes the time and a random number in, so the
 * unit test can pin every rule exactly. Arithmetic saturates instead of
 * overflowing, because a server's Retry-After or an operator's max_backoff
 * can be arbitrarily large.
 */
#include "backoff.h"

enum backoff_class backoff_classify(int status)
{
	if (status >= 200 && status <= 299)
		return BACKOFF_DELIVERED;
	switch (status) {
	case 0:	  /* no response: DNS, connect, TLS, timeout, reset */
	case 408: /* Request Timeout */
	case 425: /* Too Early */
	case 429: /* Too Many Requests */
	case 500:
	case 502:
	case 503:
	case 504: return BACKOFF_RETRY;
	default:
		/* 3xx (redirects are not followed), other 4xx, 501, 505... */
		return BACKOFF_PERMANENT;
	}
}

/* initial * 2^(attempt-1), capped at max; never overflows. */
static int64_t exp_capped(int64_t initial, int64_t max, int attempt)
{
	int64_t d = initial > 0 ? initial : 0;

	for (int i = 1; i < attempt && d < max; i++) {
		if (d > INT64_MAX / 2)
			return max;
		d *= 2;
	}
	return d < max ? d : max;
}

/*
 * The jittered exponential delay, then the floors. Jitter maps rnd
 * linearly onto [0.8, 1.2] of the base: rnd 0 gives exactly 80%, rnd
 * UINT32_MAX exactly 120%. Floors are applied after jitter so a server's
 * Retry-After is honoured to the millisecond, never shortened by 20%.
 */
int64_t backoff_delay_ms(const struct backoff_policy *p, int attempt,
			 int status, int64_t retry_after_ms, uint32_t rnd)
{
	int64_t max = p->max_ms > 0 ? p->max_ms : 0;
	int64_t base =
	    exp_capped(p->initial_ms, max, attempt < 1 ? 1 : attempt);
	/* span * rnd / UINT32_MAX exactly, split in two so that no product
	 * needs more than 64 bits whatever the base. */
	uint64_t span = (uint64_t)(base / 5) * 2;
	uint64_t jitter =
	    span / UINT32_MAX * rnd + span % UINT32_MAX * rnd / UINT32_MAX;
	int64_t delay = base - base / 5;

	if (jitter > (uint64_t)(INT64_MAX - delay))
		delay = INT64_MAX;
	else
		delay += (int64_t)jitter;

	if (retry_after_ms >= 0) {
		if (delay < retry_after_ms)
			delay = retry_after_ms;
	} else if (status == 429 && delay < p->rate_limited_ms) {
		delay = p->rate_limited_ms;
	}
	return delay;
}

/*
 * Attempts first (the cheaper rule to explain), then age. A policy value
 * <= 0 disables its rule. The age test is written as a subtraction so a
 * huge delay cannot overflow now_ms + delay_ms. A delivery exactly
 * max_age old with no wait left is still tried.
 */
int backoff_give_up(const struct backoff_policy *p, int attempt,
		    int64_t accepted_at_ms, int64_t now_ms, int64_t delay_ms)
{
	if (p->max_attempts > 0 && attempt >= p->max_attempts)
		return 1;
	if (p->max_age_ms > 0) {
		int64_t age = now_ms - accepted_at_ms;
		if (age < 0)
			age = 0; /* the wall clock stepped back */
		if (age > p->max_age_ms || delay_ms > p->max_age_ms - age)
			return 1;
	}
	return 0;
}
