/* Unit tests for src/sha256.c: FIPS 180-4 / NIST CSRC example vectors. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "sha256.h"

static void hex_of(const char *s, char out[SHA256_HEX_LEN])
{
	sha256_hex(s, strlen(s), out);
}

static void test_vectors(void)
{
	char h[SHA256_HEX_LEN];

	hex_of("", h);
	CHECK_STR(h, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
	hex_of("abc", h);
	CHECK_STR(h, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	hex_of("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", h);
	CHECK_STR(h, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
	hex_of("abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu", h);
	CHECK_STR(h, "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1");
}

/* One million 'a' fed in uneven pieces: the buffering across calls. */
static void test_million_a(void)
{
	static const char want[] =
	    "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0";
	char *a = malloc(1000000), h[SHA256_HEX_LEN];
	unsigned char d[SHA256_LEN];
	struct sha256 c;
	size_t off = 0, step = 1;

	if (!a)
		return;
	memset(a, 'a', 1000000);
	sha256_hex(a, 1000000, h);
	CHECK_STR(h, want);
	sha256_init(&c);
	while (off < 1000000) {
		size_t n = step < 1000000 - off ? step : 1000000 - off;
		sha256_update(&c, a + off, n);
		off += n;
		step = step * 3 % 257 + 1;
	}
	sha256_final(&c, d);
	for (int i = 0; i < SHA256_LEN; i++) {
		static const char hex[] = "0123456789abcdef";
		h[2 * i] = hex[d[i] >> 4];
		h[2 * i + 1] = hex[d[i] & 15];
	}
	h[64] = '\0';
	CHECK_STR(h, want);
	free(a);
}

/* Lengths around the padding boundary (55, 56, 64 bytes). */
static void test_boundaries(void)
{
	char h[SHA256_HEX_LEN], s[65];

	memset(s, 'a', 64);
	s[55] = '\0';
	hex_of(s, h);
	CHECK_STR(h, "9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318");
	s[55] = 'a';
	s[56] = '\0';
	hex_of(s, h);
	CHECK_STR(h, "b35439a4ac6f0948b6d6f9e3c6af0f5f590ce20f1bde7090ef7970686ec6738a");
	s[56] = 'a';
	s[64] = '\0';
	hex_of(s, h);
	CHECK_STR(h, "ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb");
}

int main(void)
{
	test_vectors();
	test_million_a();
	test_boundaries();
	return check_report();
}
