/*
 * replay_main — runs a fuzz target over files, without libFuzzer.
 *
 * DESIGN: linked with one fuzz_<target>.c into fuzz_replay_<target>, which
 * ctest runs as fuzz.<target> on tests/fuzz/corpus/<target>/ with whatever
 * compiler and sanitizers the build uses. Each argument is a file or a
 * directory (its regular files, sorted by name, so a failure names the
 * same input every run; dot files skipped). Each file is read into a buffer
 * of exactly its size, as libFuzzer does, so a read past the end is caught
 * by AddressSanitizer. A target that finds a broken contract aborts; this
 * program exits 1 on an unreadable input or an empty corpus, since a
 * replay that ran nothing proves nothing.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz.h"

/* Defined by the targets that need set-up; weak so the others link. */
__attribute__((weak)) int LLVMFuzzerInitialize(int *argc, char ***argv);

/* Reads path into a malloc'd buffer of exactly its size. 0, or -1. */
static int slurp(const char *path, uint8_t **out, size_t *len)
{
	FILE *f = fopen(path, "rb");
	uint8_t *data = NULL;
	long n;
	int rc = -1;

	if (!f)
		return -1;
	if (fseek(f, 0, SEEK_END) < 0 || (n = ftell(f)) < 0 ||
	    fseek(f, 0, SEEK_SET) < 0)
		goto out;
	/* malloc(0) may return NULL; one spare byte keeps "empty" readable
	 * while the target still sees size 0. */
	data = malloc((size_t)n ? (size_t)n : 1);
	if (!data || fread(data, 1, (size_t)n, f) != (size_t)n)
		goto out;
	*out = data;
	*len = (size_t)n;
	data = NULL;
	rc = 0;
out:
	free(data);
	fclose(f);
	return rc;
}

static int run_file(const char *path)
{
	uint8_t *data;
	size_t len;

	if (slurp(path, &data, &len) < 0) {
		fprintf(stderr, "replay: cannot read %s: %s\n", path,
			strerror(errno));
		return -1;
	}
	LLVMFuzzerTestOneInput(data, len);
	free(data);
	return 0;
}

static int name_cmp(const struct dirent **a, const struct dirent **b)
{
	return strcmp((*a)->d_name, (*b)->d_name);
}

static int not_hidden(const struct dirent *d)
{
	return d->d_name[0] != '.';
}

/* Runs every regular file of dir; adds how many to *count. 0, or -1. */
static int run_dir(const char *dir, size_t *count)
{
	struct dirent **names;
	int n = scandir(dir, &names, not_hidden, name_cmp), rc = 0;

	if (n < 0) {
		fprintf(stderr, "replay: cannot list %s: %s\n", dir,
			strerror(errno));
		return -1;
	}
	for (int i = 0; i < n; i++) {
		char path[4096];
		struct stat st;

		snprintf(path, sizeof(path), "%s/%s", dir, names[i]->d_name);
		if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
			if (run_file(path) < 0)
				rc = -1;
			else
				(*count)++;
		}
		free(names[i]);
	}
	free(names);
	return rc;
}

int main(int argc, char **argv)
{
	size_t count = 0;
	int rc = 0;

	if (argc < 2) {
		fprintf(stderr, "usage: %s FILE|DIR...\n", argv[0]);
		return 2;
	}
	if (LLVMFuzzerInitialize)
		LLVMFuzzerInitialize(&argc, &argv);
	for (int i = 1; i < argc; i++) {
		struct stat st;

		if (stat(argv[i], &st) == 0 && S_ISDIR(st.st_mode)) {
			if (run_dir(argv[i], &count) < 0)
				rc = 1;
		} else if (run_file(argv[i]) < 0) {
			rc = 1;
		} else {
			count++;
		}
	}
	printf("replayed %zu inputs\n", count);
	if (count == 0)
		rc = 1;
	return rc;
}
