/*
 * fuzz — the libFuzzer entry points every target in tests/fuzz/ defines.
 *
 * DESIGN: each fuzz_<target>.c defines LLVMFuzzerTestOneInput (and may
 * define LLVMFuzzerInitialize). The same file links either with libFuzzer
 * (-fsanitize=fuzzer, option TRIGGERD_FUZZ, clang only) or with
 * replay_main.c, which feeds it the seed corpus under any compiler so that
 * ctest replays the corpora on every build. A target aborts (FUZZ_CHECK)
 * when an output breaks its header's contract, so the fuzzer reports that
 * as a crash just like a memory error; FUZZ_NOTE records lesser breaches
 * without stopping.
 */
#ifndef TRIGGERD_FUZZ_H
#define TRIGGERD_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* A broken contract: say which, then abort so the fuzzer keeps the input. */
#define FUZZ_CHECK(cond)                                                       \
	do {                                                                   \
		if (!(cond)) {                                                 \
			fprintf(stderr, "%s:%d: FUZZ_CHECK(%s) failed\n",      \
				__FILE__, __LINE__, #cond);                    \
			abort();                                               \
		}                                                              \
	} while (0)

/*
 * A promise broken in a way that is not worth stopping the fuzzer for
 * (say, the format of a message): reported once per site on stderr with
 * the "FUZZ_NOTE" prefix scripts/fuzz.sh looks for, then fuzzing goes on.
 */
#define FUZZ_NOTE(cond, ...)                                                   \
	do {                                                                   \
		static int noted_;                                             \
		if (!(cond) && !noted_) {                                      \
			noted_ = 1;                                            \
			fprintf(stderr,                                        \
				"FUZZ_NOTE %s:%d: (%s) broken: ", __FILE__,    \
				__LINE__, #cond);                              \
			fprintf(stderr, __VA_ARGS__);                          \
			fputc('\n', stderr);                                   \
		}                                                              \
	} while (0)

#endif
