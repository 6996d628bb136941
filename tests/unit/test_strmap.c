/* Unit tests for src/strmap.c: lists per key, growth, many keys. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "strmap.h"

static void test_basic(void)
{
	struct strmap *m = strmap_new();
	const size_t *v;
	char key[8];
	size_t n;

	CHECK(m != NULL);
	v = strmap_get(m, "a", &n);
	CHECK(v == NULL);
	CHECK_INT(n, 0);
	CHECK(strmap_add(m, "a", 3) == 0);
	CHECK(strmap_add(m, "b", 1) == 0);
	CHECK(strmap_add(m, "a", 0) == 0);
	CHECK(strmap_add(m, "a", 3) == 0); /* repeats are kept */
	CHECK(strmap_add(m, "", 7) == 0);
	v = strmap_get(m, "a", &n);
	CHECK_INT(n, 3);
	if (v && n == 3) {
		CHECK_INT(v[0], 3);
		CHECK_INT(v[1], 0);
		CHECK_INT(v[2], 3);
	}
	v = strmap_get(m, "b", &n);
	CHECK(v != NULL && n == 1 && v[0] == 1);
	v = strmap_get(m, "", &n);
	CHECK(v != NULL && n == 1 && v[0] == 7);
	CHECK(strmap_get(m, "A", &n) == NULL); /* case-sensitive */
	CHECK(strmap_get(m, "ab", &n) == NULL);
	/* Keys are copied: changing the caller's buffer changes nothing. */
	snprintf(key, sizeof(key), "k");
	CHECK(strmap_add(m, key, 9) == 0);
	key[0] = 'z';
	v = strmap_get(m, "k", &n);
	CHECK(v != NULL && n == 1 && v[0] == 9);
	CHECK(strmap_get(m, "z", &n) == NULL);
	CHECK(strmap_get(NULL, "a", &n) == NULL);
	CHECK_INT(n, 0);
	strmap_free(m);
	strmap_free(NULL);
}

/* 20,000 uuid-like keys, one with many values, all found after growth. */
static void test_many(void)
{
	struct strmap *m = strmap_new();
	const size_t *v;
	char key[64];
	size_t n;
	int bad = 0;

	for (size_t i = 0; i < 20000; i++) {
		snprintf(key, sizeof(key), "%08zx-6c2e-4d0a-9b6f-3f8e2a1c7d10",
			 i * 2654435761u % 100000007u);
		if (strmap_add(m, key, i) < 0)
			bad++;
	}
	for (size_t i = 0; i < 1000; i++)
		if (strmap_add(m, "*", i) < 0)
			bad++;
	CHECK_INT(bad, 0);
	for (size_t i = 0; i < 20000; i++) {
		snprintf(key, sizeof(key), "%08zx-6c2e-4d0a-9b6f-3f8e2a1c7d10",
			 i * 2654435761u % 100000007u);
		v = strmap_get(m, key, &n);
		if (!v || n != 1 || v[0] != i)
			bad++;
		key[0] = 'X'; /* never added: hex has no X */
		if (strmap_get(m, key, &n) != NULL || n != 0)
			bad++;
	}
	CHECK_INT(bad, 0);
	v = strmap_get(m, "*", &n);
	CHECK_INT(n, 1000);
	for (size_t i = 0; v && i < n; i++)
		if (v[i] != i)
			bad++;
	CHECK_INT(bad, 0);
	strmap_free(m);
}

int main(void)
{
	test_basic();
	test_many();
	return check_report();
}
