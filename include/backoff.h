/*
 * backoff — when to try a delivery again, and whether to.
 *
 * DESIGN: pure functions of their arguments (the jitter comes in as a
 * random number), so every rule of SPEC section 6 is unit-tested exactly.
 */
#ifndef TRIGGERD_BACKOFF_H
#define TRIGGERD_BACKOFF_H

#include <stdint.h>

enum backoff_class {
	BACKOFF_DELIVERED, /* 2xx */
	BACKOFF_RETRY,     /* 408, 425, 429, 500, 502, 503, 504, no response */
	BACKOFF_PERMANENT, /* anything else */
};

/* The class of an attempt's result: status is the HTTP status, or 0 when
 * no response came (DNS, connect, TLS, timeout, reset). */
enum backoff_class backoff_classify(int status);

struct backoff_policy {
	int max_attempts;
	int64_t initial_ms;
	int64_t max_ms;
	int64_t max_age_ms;
	int64_t rate_limited_ms; /* floor for a 429 without Retry-After */
};

/*
 * The wait before the next try after `attempt` attempts (attempt >= 1):
 * min(max_ms, initial_ms * 2^(attempt-1)) with ±20% jitter taken from rnd
 * (uniform 32-bit). A Retry-After (retry_after_ms >= 0) is a floor, even
 * past max_ms; a 429 without one waits at least rate_limited_ms.
 */
int64_t backoff_delay_ms(const struct backoff_policy *p, int attempt,
			 int status, int64_t retry_after_ms, uint32_t rnd);

/*
 * 1 if a retryable delivery must fail for good instead: attempt reached
 * max_attempts, or the next try (at now_ms + delay_ms) would fall past
 * accepted_at_ms + max_age_ms. Else 0.
 */
int backoff_give_up(const struct backoff_policy *p, int attempt,
		    int64_t accepted_at_ms, int64_t now_ms, int64_t delay_ms);

#endif
