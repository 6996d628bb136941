/*
 * sha256 — SHA-256 (FIPS 180-4), for digests of dedup keys.
 *
 * DESIGN: pure code, no I/O, no globals: the state lives in the caller's
 * struct sha256, so any thread may hash. Not constant time and not meant
 * for secrets; it names data (a key of any length becomes 32 bytes), which
 * is what deduplication needs.
 */
#ifndef TRIGGERD_SHA256_H
#define TRIGGERD_SHA256_H

#include <stddef.h>
#include <stdint.h>

#define SHA256_LEN 32
#define SHA256_HEX_LEN 65 /* 64 lower-case hex digits and a NUL */

struct sha256 {
	uint32_t h[8];
	uint64_t bytes; /* total bytes fed */
	unsigned char block[64];
	size_t used; /* bytes of block filled */
};

void sha256_init(struct sha256 *c);
void sha256_update(struct sha256 *c, const void *data, size_t len);
void sha256_final(struct sha256 *c, unsigned char out[SHA256_LEN]);

/* The digest of len bytes at data as 64 lower-case hex digits. */
void sha256_hex(const void *data, size_t len, char out[SHA256_HEX_LEN]);

#endif
