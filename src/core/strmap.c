/*
 * strmap — string -> list of size_t, open addressing with linear probing.
 *
 * DESIGN: built by the config loader (one thread), then only read, from
 * any number of threads, with no locks: strmap_get never writes. The table
 * is a power of two in size and grows (doubling) before it is half full,
 * so a probe sequence stays short even with tens of thousands of keys.
 * Each slot caches its key's FNV-1a hash so that growing never rehashes a
 * string and a probe compares strings only when the hashes agree. The map
 * owns copies of the keys and the value lists.
 */
#include "strmap.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct slot {
	char *key; /* NULL: empty */
	uint64_t hash;
	size_t *vals;
	size_t nvals;
	size_t cap;
};

struct strmap {
	struct slot *slots;
	size_t size; /* power of two */
	size_t used;
};

#define STRMAP_MIN_SIZE 16

static uint64_t fnv1a(const char *s)
{
	uint64_t h = 14695981039346656037ull;

	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ull;
	return h;
}

struct strmap *strmap_new(void)
{
	struct strmap *m = calloc(1, sizeof(*m));

	if (!m)
		return NULL;
	m->slots = calloc(STRMAP_MIN_SIZE, sizeof(*m->slots));
	if (!m->slots) {
		free(m);
		return NULL;
	}
	m->size = STRMAP_MIN_SIZE;
	return m;
}

/* The slot holding key, or the empty slot where it would go. The table is
 * never full (see grow), so the probe always ends. */
static struct slot *find(const struct strmap *m, const char *key, uint64_t hash)
{
	size_t mask = m->size - 1;

	for (size_t i = (size_t)hash & mask;; i = (i + 1) & mask) {
		struct slot *s = &m->slots[i];

		if (!s->key || (s->hash == hash && strcmp(s->key, key) == 0))
			return s;
	}
}

/* Doubles the table, moving every slot by its cached hash. 0 or -1. */
static int grow(struct strmap *m)
{
	struct strmap bigger = {NULL, m->size * 2, m->used};

	if (bigger.size < m->size) /* overflow */
		return -1;
	bigger.slots = calloc(bigger.size, sizeof(*bigger.slots));
	if (!bigger.slots)
		return -1;
	for (size_t i = 0; i < m->size; i++)
		if (m->slots[i].key)
			*find(&bigger, m->slots[i].key, m->slots[i].hash) =
			    m->slots[i];
	free(m->slots);
	*m = bigger;
	return 0;
}

/* Appends value to s's list, growing it by doubling. 0 or -1. */
static int push(struct slot *s, size_t value)
{
	if (s->nvals == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 1;
		size_t *v;

		if (cap > SIZE_MAX / sizeof(*v))
			return -1;
		v = realloc(s->vals, cap * sizeof(*v));
		if (!v)
			return -1;
		s->vals = v;
		s->cap = cap;
	}
	s->vals[s->nvals++] = value;
	return 0;
}

int strmap_add(struct strmap *m, const char *key, size_t value)
{
	uint64_t hash = fnv1a(key);
	struct slot *s;

	/* Grow first so that the slot found below stays valid. */
	if ((m->used + 1) * 2 > m->size && grow(m) < 0)
		return -1;
	s = find(m, key, hash);
	if (!s->key) {
		char *copy = strdup(key);

		if (!copy)
			return -1;
		if (push(s, value) < 0) {
			free(copy);
			free(s->vals);
			memset(s, 0, sizeof(*s));
			return -1;
		}
		s->key = copy;
		s->hash = hash;
		m->used++;
		return 0;
	}
	return push(s, value);
}

const size_t *strmap_get(const struct strmap *m, const char *key, size_t *n)
{
	const struct slot *s;

	*n = 0;
	if (!m || !key)
		return NULL;
	s = find(m, key, fnv1a(key));
	if (!s->key)
		return NULL;
	*n = s->nvals;
	return s->vals;
}

void strmap_free(struct strmap *m)
{
	if (!m)
		return;
	for (size_t i = 0; i < m->size; i++) {
		free(m->slots[i].key);
		free(m->slots[i].vals);
	}
	free(m->slots);
	free(m);
}
