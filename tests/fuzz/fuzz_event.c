/*
 * fuzz_event — event_parse() on arbitrary request bodies.
 *
 * DESIGN: the input is a POST /v1/events body, passed as libFuzzer gives
 * it (exactly size bytes, not NUL-terminated), which is how the HTTP server
 * hands bodies over. Beyond memory safety and leaks, it checks what
 * include/event.h promises: on success every name is lower case and
 * unique (event_get finds each field as itself), every value is
 * NUL-terminated at its length, job_id is present and non-empty, and there
 * are at most EVENT_MAX_FIELDS fields; on failure the message is one
 * non-empty line, also when the caller's buffer is tiny.
 */
#include <string.h>

#include "event.h"
#include "fuzz.h"

static void check_event(const struct event *ev)
{
	const struct event_field *id = event_get(ev, "job_id");

	FUZZ_CHECK(ev->nfields <= EVENT_MAX_FIELDS);
	FUZZ_CHECK(id && id->len > 0);
	for (size_t i = 0; i < ev->nfields; i++) {
		const struct event_field *f = &ev->fields[i];

		for (const char *p = f->name; *p; p++)
			FUZZ_CHECK(!(*p >= 'A' && *p <= 'Z'));
		FUZZ_CHECK(f->value[f->len] == '\0');
		/* event_get is a linear scan: checking every field of a
		 * 1024-field event would make the check quadratic. */
		if (i < 32 || i + 1 == ev->nfields)
			FUZZ_CHECK(event_get(ev, f->name) == f);
	}
	FUZZ_CHECK(event_get(NULL, "job_id") == NULL);
}

/* A failure's message: one line, not empty, NUL-terminated within errlen. */
static void check_error(const char *err, size_t errlen)
{
	FUZZ_CHECK(memchr(err, '\0', errlen) != NULL);
	FUZZ_CHECK(errlen == 1 || err[0] != '\0');
	FUZZ_CHECK(strchr(err, '\n') == NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[256], tiny[8];
	struct event *ev;

	memset(err, 'x', sizeof(err));
	ev = event_parse((const char *)data, size, err, sizeof(err));
	if (ev) {
		check_event(ev);
		event_free(ev);
		return 0;
	}
	check_error(err, sizeof(err));
	/* The same failure into a buffer too small for the message. */
	memset(tiny, 'x', sizeof(tiny));
	ev = event_parse((const char *)data, size, tiny, sizeof(tiny));
	FUZZ_CHECK(ev == NULL);
	check_error(tiny, sizeof(tiny));
	return 0;
}
