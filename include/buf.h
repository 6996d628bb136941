/*
 * buf — one bounded, growable byte buffer.
 *
 * DESIGN: every buffer fed from outside (request bodies, rendered
 * templates, response excerpts) is a struct buf with a hard maximum, so no
 * input can make the daemon allocate without bound. The data is always
 * NUL-terminated (the terminator is not counted in len), so text can be
 * passed to C string functions, while len keeps embedded NULs usable.
 * Not thread-safe: a buffer has one owner.
 */
#ifndef TRIGGERD_BUF_H
#define TRIGGERD_BUF_H

#include <stdarg.h>
#include <stddef.h>

struct buf {
	char *data; /* NULL until the first append; then NUL-terminated */
	size_t len;
	size_t cap;
	size_t max; /* appends that would pass this fail with -1 */
};

/* Starts an empty buffer that may hold at most max bytes. */
void buf_init(struct buf *b, size_t max);

/* Appends n bytes. 0, or -1 (nothing appended) past max or out of memory. */
int buf_append(struct buf *b, const void *p, size_t n);
int buf_puts(struct buf *b, const char *s);
int buf_putc(struct buf *b, char c);
int buf_printf(struct buf *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Empties the buffer, keeping its memory. */
void buf_reset(struct buf *b);

/* Returns the data (never NULL: "" when empty) and leaves b empty.
 * The caller frees the result with free(). NULL only if out of memory. */
char *buf_steal(struct buf *b);

/* The contents as a C string ("" when empty). Owned by b. */
const char *buf_str(const struct buf *b);

/* Frees the memory; b is empty afterwards. */
void buf_free(struct buf *b);

#endif
