/*
 * check — the unit tests' few assertion macros. A failed check prints
 * FILE:LINE and the expression, counts, and the test goes on; main()
 * returns check_report(), which prints "N passed, N failed". Also the
 * temporary directory a test works in.
 */
#ifndef TRIGGERD_CHECK_H
#define TRIGGERD_CHECK_H

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int check_passed, check_failed;

#define CHECK(cond)                                                          \
	do {                                                                 \
		if (cond) {                                                  \
			check_passed++;                                      \
		} else {                                                     \
			check_failed++;                                      \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, \
				__LINE__, #cond);                            \
		}                                                            \
	} while (0)

#define CHECK_STR(got, want)                                                 \
	do {                                                                 \
		const char *g_ = (got), *w_ = (want);                        \
		if (g_ && w_ && strcmp(g_, w_) == 0) {                       \
			check_passed++;                                      \
		} else {                                                     \
			check_failed++;                                      \
			fprintf(stderr, "%s:%d: got \"%s\", want \"%s\"\n",   \
				__FILE__, __LINE__, g_ ? g_ : "(null)",      \
				w_ ? w_ : "(null)");                         \
		}                                                            \
	} while (0)

#define CHECK_INT(got, want)                                                 \
	do {                                                                 \
		long long g_ = (long long)(got), w_ = (long long)(want);     \
		if (g_ == w_) {                                              \
			check_passed++;                                      \
		} else {                                                     \
			check_failed++;                                      \
			fprintf(stderr, "%s:%d: %s = %lld, want %lld\n",       \
				__FILE__, __LINE__, #got, g_, w_);           \
		}                                                            \
	} while (0)

/* Makes a fresh directory /tmp/<name>.XXXXXX in dir (at least 64
 * bytes); 0, or -1 with a message. */
static inline int check_tmpdir(char *dir, size_t n, const char *name)
{
	snprintf(dir, n, "/tmp/%s.XXXXXX", name);
	if (mkdtemp(dir))
		return 0;
	perror("mkdtemp");
	return -1;
}

static inline int check_rm_entry(const char *p, const struct stat *sb,
				 int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(p);
}

/* Removes dir and everything below it. */
static inline void check_rmtree(const char *dir)
{
	nftw(dir, check_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static inline int check_report(void)
{
	printf("%d passed, %d failed\n", check_passed, check_failed);
	return check_failed ? 1 : 0;
}

#endif
