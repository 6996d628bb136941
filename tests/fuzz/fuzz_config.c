/*
 * fuzz_config — config_load() on arbitrary configuration files.
 *
 * DESIGN: config_load() takes a path, so each input is written to
 * triggerd.yaml in a private temporary directory made once per process, on
 * /dev/shm unless $TMPDIR is set. It is a regular file rather than a memfd:
 * relative {file: PATH} secrets are taken from the config's directory, and
 * /proc/self/fd/ as that directory would let an input name the fuzzer's
 * own pipes and block on them. The directory also holds a secret file and
 * a credential ($CREDENTIALS_DIRECTORY points there), and an environment
 * variable holds a third secret, so the seeds load completely. Run it with
 * stdin from /dev/null: an input may name /dev/stdin as a secret file.
 *
 * A loaded config is then used the way the daemon uses it: looked up by
 * trigger name, matched against a parsed event (match_event and
 * match_trigger), every URL, header, body and the dedup key rendered with
 * secrets masked, retained and released through a config_slot.
 *
 * Oracles besides memory safety and leaks: a load fails exactly when it
 * reports an error; every diagnostic is one "PATH:..." line with error or
 * warning (noted, not fatal, if it spans lines); the resolved secrets'
 * values never appear in a diagnostic or a masked rendering (unless the
 * input itself holds those bytes).
 */
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"
#include "config.h"
#include "event.h"
#include "fuzz.h"
#include "match.h"

/* Every resolved secret's value starts with this; inputs never do. */
#define MARK "Zq8fX"

static char dir[256], path[300], secret_path[300], cred_path[300];
static struct event *ev;
static int verbose; /* FUZZ_VERBOSE set: print each load's diagnostics */

static const char event_body[] =
    "{\"job_id\":\"0b9d5c55-6c2e-4d0a-9b6f-3f8e2a1c7d10\","
    "\"status\":\"FINISHED\",\"rows\":\"12345\",\"table_name\":\"orders\","
    "\"execution_id\":\"9a7c3e21-4b5d-4f60-8e19-0c2d3b4a5f67\","
    "\"finished_at_date\":\"2026-11-27\",\"finished_at_time\":\"06:42\","
    "\"is_orchestration\":\"False\",\"triggered_by\":\"a/b?c d&e\"}";

#ifdef FUZZ_REUSE_BIG_ALLOC
/*
 * config_load() reads the file into one buffer of CONFIG_MAX_FILE + 1
 * bytes (32 MiB), whatever the file's size. Under ASan every such malloc
 * and free maps fresh memory and poisons megabytes of shadow, which was
 * ~90% of an execution in perf (a few hundred execs/s). So the libFuzzer
 * build links this target with -Wl,--wrap=malloc,--wrap=free,
 * --wrap=realloc (only calls from statically linked objects are
 * redirected; libyaml, jansson and libc are not) and, while config_load()
 * runs, hands out one kept buffer for a request of exactly that size. It
 * was allocated once by ASan, so a write past its end is still a
 * heap-buffer-overflow. Between uses the bytes an execution may touch --
 * the input and its NUL -- are poisoned, so a use after free is still
 * reported (as use-after-poison); the rest stays poisoned throughout, so
 * reading beyond the file's bytes and its NUL is reported too, which is
 * stricter than malloc and what read_file's contract implies.
 */
#include <sanitizer/asan_interface.h>

#include "../../src/config/config_int.h" /* CONFIG_MAX_FILE */

#define BIG_SIZE ((size_t)CONFIG_MAX_FILE + 1)

void *__real_malloc(size_t n);
void __real_free(void *p);
void *__real_realloc(void *p, size_t n);
void *__wrap_malloc(size_t n);
void __wrap_free(void *p);
void *__wrap_realloc(void *p, size_t n);

static char *big;	/* the kept buffer, or NULL */
static size_t big_used; /* bytes an execution may touch: input + NUL */
static int big_armed;	/* inside config_load() */
static int big_busy;	/* handed out and not freed yet */

void *__wrap_malloc(size_t n)
{
	if (n != BIG_SIZE || !big_armed || big_busy || big_used > n)
		return __real_malloc(n);
	if (!big) {
		if (!(big = __real_malloc(n)))
			return NULL;
		ASAN_POISON_MEMORY_REGION(big, n);
	}
	ASAN_UNPOISON_MEMORY_REGION(big, big_used);
	big_busy = 1;
	return big;
}

void __wrap_free(void *p)
{
	if (p && p == big && big_busy) {
		ASAN_POISON_MEMORY_REGION(big, big_used);
		big_busy = 0;
		return;
	}
	__real_free(p);
}

void *__wrap_realloc(void *p, size_t n)
{
	char *q;

	if (!p || p != big || !big_busy)
		return __real_realloc(p, n);
	if (!(q = __real_malloc(n)))
		return NULL;
	memcpy(q, big, n < big_used ? n : big_used);
	__wrap_free(big);
	return q;
}

static struct config *load(const char *p, size_t size, struct config_diag *diag)
{
	struct config *cfg;

	big_used = size + 1;
	big_armed = 1;
	cfg = config_load(p, diag);
	big_armed = 0;
	FUZZ_CHECK(!big_busy); /* config_load() leaked its file buffer */
	return cfg;
}
#else
static struct config *load(const char *p, size_t size, struct config_diag *diag)
{
	(void)size;
	return config_load(p, diag);
}
#endif

static int write_all(const char *p, const void *data, size_t len)
{
	int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	const char *d = data;

	if (fd < 0)
		return -1;
	while (len) {
		ssize_t n = write(fd, d, len);
		if (n < 0) {
			close(fd);
			return -1;
		}
		d += n;
		len -= (size_t)n;
	}
	return close(fd);
}

static void cleanup(void)
{
	unlink(path);
	unlink(secret_path);
	unlink(cred_path);
	rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *tmp = getenv("TMPDIR");
	char err[256];

	(void)argc;
	(void)argv;
	/* tmpfs if there is one: rewriting a file on ext4 flushes it on
	 * close (auto_da_alloc), a third of an execution. */
	if (!tmp || !*tmp)
		tmp = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
	snprintf(dir, sizeof(dir), "%s/triggerd-fuzz-config.XXXXXX", tmp);
	if (!mkdtemp(dir)) {
		perror("fuzz_config: mkdtemp");
		abort();
	}
	snprintf(path, sizeof(path), "%s/triggerd.yaml", dir);
	snprintf(secret_path, sizeof(secret_path), "%s/secret.txt", dir);
	snprintf(cred_path, sizeof(cred_path), "%s/admin_token", dir);
	atexit(cleanup);
	if (write_all(secret_path, MARK "file\n", sizeof(MARK "file\n") - 1) ||
	    write_all(cred_path, MARK "cred", sizeof(MARK "cred") - 1)) {
		perror("fuzz_config: writing secrets");
		abort();
	}
	setenv("CREDENTIALS_DIRECTORY", dir, 1);
	setenv("TRIGGERD_FUZZ_TOKEN", MARK "env", 1);
	unsetenv("STATE_DIRECTORY");
	verbose = getenv("FUZZ_VERBOSE") != NULL;
	ev = event_parse(event_body, sizeof(event_body) - 1, err, sizeof(err));
	if (!ev) {
		fprintf(stderr, "fuzz_config: event: %s\n", err);
		abort();
	}
	return 0;
}

static void check_diag(const struct config_diag *d, int leak_possible)
{
	FUZZ_CHECK(d->nlines == (size_t)(d->nerrors + d->nwarnings));
	for (size_t i = 0; i < d->nlines; i++) {
		const char *l = d->lines[i];

		FUZZ_CHECK(strncmp(l, path, strlen(path)) == 0);
		FUZZ_CHECK(strstr(l, ": error: ") || strstr(l, ": warning: "));
		/* One line each (config.h): an input's CR or LF echoed into
		 * a message would split it, or forge a line of --check. */
		FUZZ_NOTE(!strpbrk(l, "\r\n"), "a diagnostic holds CR/LF: %s",
			  l);
		FUZZ_CHECK(leak_possible || !strstr(l, MARK));
	}
}

/* Renders every template of trigger t with secrets masked into b. */
static void render_trigger(const struct config *cfg,
			   const struct config_trigger *t, struct buf *b)
{
	struct tmpl_env env;
	int missing = 0;

	config_env(cfg, ev, 1, &env);
	tmpl_render(t->url, &env, TMPL_ENC_URL, b, &missing);
	for (size_t h = 0; h < t->nheaders; h++)
		tmpl_render(t->headers[h].value, &env, TMPL_ENC_RAW, b,
			    &missing);
	if (t->body && t->body_is_json)
		tmpl_node_render(t->body, &env, b, &missing);
	else if (t->body)
		tmpl_render(t->body->str, &env, TMPL_ENC_RAW, b, &missing);
	tmpl_render(cfg->dedup_key, &env, TMPL_ENC_RAW, b, &missing);
}

static void use_config(struct config *cfg, int leak_possible)
{
	size_t *idx = calloc(cfg->ntriggers + 1, sizeof(size_t));
	struct config_slot slot;
	struct config *cur;
	struct buf b;
	char why[256];

	if (!idx)
		abort();
	buf_init(&b, 1u << 22);
	FUZZ_CHECK(match_event(cfg, ev, idx, cfg->ntriggers) <= cfg->ntriggers);
	for (size_t i = 0; i < cfg->ntriggers; i++) {
		const struct config_trigger *t = &cfg->triggers[i];

		FUZZ_CHECK(t->name &&
			   config_trigger_by_name(cfg, t->name) == t);
		FUZZ_CHECK(t->njobs > 0);
		(void)match_trigger(t, ev, why, sizeof(why));
		buf_reset(&b);
		render_trigger(cfg, t, &b);
		FUZZ_CHECK(leak_possible || !strstr(buf_str(&b), MARK));
	}
	buf_free(&b);
	free(idx);
	config_slot_init(&slot, config_retain(cfg));
	cur = config_slot_acquire(&slot);
	FUZZ_CHECK(cur == cfg);
	config_slot_replace(&slot, NULL);
	config_release(cur);
	config_slot_destroy(&slot);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct config_diag diag = {0};
	struct config *cfg;
	int leak_possible = memmem(data, size, "Zq8f", 4) != NULL;

	if (write_all(path, data, size) < 0) {
		perror("fuzz_config: writing the input");
		abort();
	}
	cfg = load(path, size, &diag);
	check_diag(&diag, leak_possible);
	for (size_t i = 0; verbose && i < diag.nlines; i++)
		fprintf(stderr, "%s\n", diag.lines[i]);
	if (verbose)
		fprintf(stderr, "-- %s\n", cfg ? "loaded" : "refused");
	FUZZ_CHECK((cfg == NULL) == (diag.nerrors > 0));
	if (cfg)
		use_config(cfg, leak_possible);
	config_release(cfg);
	config_diag_clear(&diag);
	FUZZ_CHECK(diag.nlines == 0 && diag.lines == NULL);
	return 0;
}
