/*
 * main — command line, wiring and signals.
 *
 * DESIGN: main parses the command line, loads the config (for --check and
 * --dry-run that is all: they write nothing and send nothing), then wires
 * the modules bottom-up — store, dispatcher, ingest, HTTP server — and
 * becomes the signal thread: every other thread is started with SIGHUP,
 * SIGINT and SIGTERM blocked, and main waits for them with sigwaitinfo(),
 * so reload and shutdown run in one place, never in a signal handler.
 *
 * Exit codes (SPEC section 7): 0 ok, 1 invalid or missing configuration
 * (or, for --dry-run, an unreadable or invalid event), 2 usage error,
 * 3 runtime failure (cannot listen, cannot open the store).
 */
#include <errno.h>
#include <getopt.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "config.h"
#include "dispatch.h"
#include "event.h"
#include "http_client.h"
#include "ingest.h"
#include "log.h"
#include "match.h"
#include "notify.h"
#include "reload.h"
#include "request.h"
#include "server.h"
#include "store.h"
#include "util.h"

#define EXIT_CONFIG 1
#define EXIT_USAGE 2
#define EXIT_RUNTIME 3
#define DRY_RUN_MAX_EVENT (16 * 1024 * 1024)
#define STOP_GRACE_MS 10000
#define TRIM_THRESHOLD (32 * 1024 * 1024) /* bytes of free heap kept */

static const char usage_text[] =
	"usage: triggerd [-c FILE] [--log-level LEVEL]\n"
	"       triggerd -c FILE --check\n"
	"       triggerd -c FILE --dry-run EVENT   (EVENT: a JSON file or '-')\n"
	"       triggerd --health URL              (exit 0 if URL answers 200)\n"
	"       triggerd --version | --help\n"
	"\n"
	"Receives Erathos job-finished webhooks on POST /v1/events and sends\n"
	"the HTTP requests of the matching triggers (dbt Cloud job runs, ...),\n"
	"durably queued and retried.\n"
	"\n"
	"  -c, --config FILE    configuration (default " CONFIG_DEFAULT_PATH ")\n"
	"      --check          validate the configuration, resolve secrets,\n"
	"                       print a summary; exit 0 (valid) or 1\n"
	"      --dry-run EVENT  show which triggers EVENT matches and the\n"
	"                       requests they would send; sends nothing\n"
	"      --health URL     GET URL (e.g. http://127.0.0.1:8080/healthz);\n"
	"                       exit 0 on 200, else 1 (container HEALTHCHECK)\n"
	"      --log-level L    debug, info (default), warn or error\n"
	"      --version        print the version\n"
	"      --help           print this help\n"
	"\n"
	"Exit codes: 0 ok, 1 invalid configuration, 2 usage error,\n"
	"3 runtime failure (cannot listen, cannot open the store).\n";

struct options {
	const char *config;
	const char *dry_run;
	const char *health;
	int check;
};

/* Parses argv; exits with 0 for --help/--version and 2 on misuse. */
static void parse_args(int argc, char **argv, struct options *o)
{
	static const struct option longs[] = {
		{"config", required_argument, NULL, 'c'},
		{"check", no_argument, NULL, 'k'},
		{"dry-run", required_argument, NULL, 'd'},
		{"log-level", required_argument, NULL, 'l'},
		{"health", required_argument, NULL, 'H'},
		{"version", no_argument, NULL, 'v'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	enum log_level level;
	int ch;

	o->config = CONFIG_DEFAULT_PATH;
	while ((ch = getopt_long(argc, argv, "c:h", longs, NULL)) != -1) {
		switch (ch) {
		case 'c': o->config = optarg; break;
		case 'k': o->check = 1; break;
		case 'd': o->dry_run = optarg; break;
		case 'H': o->health = optarg; break;
		case 'l':
			if (log_level_parse(optarg, &level) < 0) {
				fprintf(stderr, "triggerd: --log-level must be debug, info, warn or error, not \"%s\"\n",
					optarg);
				exit(EXIT_USAGE);
			}
			log_set_level(level);
			break;
		case 'v': printf("triggerd %s\n", TRIGGERD_VERSION); exit(0);
		case 'h': fputs(usage_text, stdout); exit(0);
		default:
			fputs("Try 'triggerd --help'.\n", stderr);
			exit(EXIT_USAGE);
		}
	}
	if (optind < argc) {
		fprintf(stderr, "triggerd: unexpected argument \"%s\"\nTry 'triggerd --help'.\n",
			argv[optind]);
		exit(EXIT_USAGE);
	}
	if (o->check && o->dry_run) {
		fputs("triggerd: --check and --dry-run do not go together\n",
		      stderr);
		exit(EXIT_USAGE);
	}
}

/* --health: a container HEALTHCHECK that needs no curl in the image. */
static int run_health(const char *url)
{
	struct http_request req = {.method = "GET", .url = url,
				   .timeout_ms = 3000,
				   .connect_timeout_ms = 2000};
	struct http_response resp;
	int ok = 0;

	if (http_client_global_init() < 0)
		return 1;
	struct http_client *c = http_client_new("triggerd/" TRIGGERD_VERSION);
	if (c && http_client_send(c, &req, &resp) == 0) {
		ok = resp.status == 200;
		if (!ok)
			fprintf(stderr, "triggerd: %s answered %d\n", url,
				resp.status);
	} else if (c) {
		fprintf(stderr, "triggerd: %s: %s\n", url, resp.error);
	}
	if (c)
		http_response_clear(&resp);
	http_client_free(c);
	http_client_global_cleanup();
	return ok ? 0 : 1;
}

/* Loads the config, printing every error and warning to stderr: as they
 * are for --check and --dry-run, as log records for the daemon. */
static struct config *load_config(const char *path, int as_log)
{
	struct config_diag diag = {0};
	struct config *cfg = config_load(path, &diag);

	for (size_t i = 0; i < diag.nlines; i++) {
		if (as_log)
			log_kv(cfg ? LOG_WARN : LOG_ERROR, "config", "detail",
			       diag.lines[i], LOG_END);
		else
			fprintf(stderr, "%s\n", diag.lines[i]);
	}
	if (!cfg && as_log) {
		char n[16];
		snprintf(n, sizeof n, "%d", diag.nerrors);
		log_kv(LOG_ERROR, "invalid configuration", "config", path,
		       "errors", n, LOG_END);
	} else if (!cfg) {
		fprintf(stderr, "triggerd: %s: %d error%s, %d warning%s\n",
			path, diag.nerrors, diag.nerrors == 1 ? "" : "s",
			diag.nwarnings, diag.nwarnings == 1 ? "" : "s");
	}
	config_diag_clear(&diag);
	return cfg;
}

static const char *secret_source(const struct config_secret *s)
{
	switch (s->kind) {
	case CONFIG_SECRET_ENV: return "env";
	case CONFIG_SECRET_FILE: return "file";
	case CONFIG_SECRET_CREDENTIAL: return "credential";
	default: return "plain string";
	}
}

/* ms as the config would write it: the largest unit that is exact. */
static const char *duration_text(int64_t ms, char *out, size_t len)
{
	static const struct {
		const char *unit;
		int64_t ms;
	} units[] = {{"d", 86400000}, {"h", 3600000}, {"m", 60000},
		     {"s", 1000}, {"ms", 1}};
	size_t i = 0;

	while (ms % units[i].ms)
		i++;
	snprintf(out, len, "%lld%s", (long long)(ms / units[i].ms),
		 units[i].unit);
	return out;
}

/* ", fan-in: wait_for all[ within D]" / ", coalesce D" / "" (SPEC
 * section 9), for --check's summary. */
static const char *batching_text(const struct config_trigger *t, char *out,
				 size_t len)
{
	char d[32];

	if (t->wait_all && t->within_ms)
		snprintf(out, len, ", fan-in: wait_for all within %s",
			 duration_text(t->within_ms, d, sizeof d));
	else if (t->wait_all)
		snprintf(out, len, ", fan-in: wait_for all");
	else if (t->coalesce_ms)
		snprintf(out, len, ", coalesce %s",
			 duration_text(t->coalesce_ms, d, sizeof d));
	else
		out[0] = '\0';
	return out;
}

/* --check: the summary on stdout (secrets by name and source only). */
static int run_check(const struct config *cfg)
{
	size_t active = 0;
	for (size_t i = 0; i < cfg->ntriggers; i++)
		active += cfg->triggers[i].active != 0;
	printf("%s: configuration is valid\n", cfg->path);
	printf("listen: %s:%d\n", cfg->listen_host, cfg->listen_port);
	if (cfg->store_url)
		printf("store: postgresql %s (not connected by --check)\n",
		       cfg->store_url_shown);
	else
		printf("store: %s\n", cfg->store_path);
	printf("auth: %zu inbound token%s, %zu admin token%s\n",
	       cfg->nauth_tokens, cfg->nauth_tokens == 1 ? "" : "s",
	       cfg->nadmin_tokens, cfg->nadmin_tokens == 1 ? "" : "s");
	printf("dispatch: %d workers, %d attempts at most\n", cfg->workers,
	       cfg->max_attempts);
	printf("secrets: %zu resolved\n", cfg->nsecrets);
	for (size_t i = 0; i < cfg->nsecrets; i++)
		printf("  %s (%s%s%s)\n", cfg->secrets[i].name,
		       secret_source(&cfg->secrets[i]),
		       cfg->secrets[i].source ? " " : "",
		       cfg->secrets[i].source ? cfg->secrets[i].source : "");
	printf("triggers: %zu (%zu active)\n", cfg->ntriggers, active);
	for (size_t i = 0; i < cfg->ntriggers; i++) {
		const struct config_trigger *t = &cfg->triggers[i];
		char batching[96];
		printf("  %s: %s %s (%zu job%s, %zu rule%s%s%s)\n", t->name,
		       t->method, tmpl_source(t->url), t->njobs,
		       t->njobs == 1 ? "" : "s", t->nrules,
		       t->nrules == 1 ? "" : "s",
		       batching_text(t, batching, sizeof batching),
		       t->active ? "" : ", inactive");
	}
	return 0;
}

/* Reads a whole file (or stdin for "-") of at most max bytes. */
static char *read_all(const char *path, size_t max, size_t *len)
{
	FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
	struct buf b;
	char chunk[8192];
	size_t n;

	if (!f)
		return NULL;
	buf_init(&b, max);
	while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
		if (buf_append(&b, chunk, n) < 0) {
			errno = EFBIG;
			goto fail;
		}
	}
	if (ferror(f))
		goto fail;
	if (f != stdin)
		fclose(f);
	*len = b.len;
	return buf_steal(&b);
fail:
	if (f != stdin)
		fclose(f);
	buf_free(&b);
	return NULL;
}

static void print_request(const struct request *r)
{
	printf("  %s %s\n", r->method, r->url);
	for (size_t i = 0; i < r->nheaders; i++)
		printf("  %s: %s\n", r->headers[i].name, r->headers[i].value);
	if (r->body) {
		printf("\n  ");
		fwrite(r->body, 1, r->body_len, stdout);
		printf("\n");
	}
}

/* --dry-run: for each trigger, whether it matches and what it would send. */
/* "trigger NAME: matches", with what a fan-in or a batch would make of
 * the event (the store's state is not read: --dry-run touches nothing). */
static void print_match(const struct config_trigger *t)
{
	char d[32];

	if (t->wait_all) {
		printf("trigger %s: matches: counts toward a fan-in over its %zu "
		       "jobs",
		       t->name, t->njobs);
		if (t->within_ms)
			printf(" (for %s)",
			       duration_text(t->within_ms, d, sizeof d));
		printf("; the delivery is made once each has sent a matching "
		       "event, rendered from the latest (here: this event "
		       "alone)\n");
	} else if (t->coalesce_ms) {
		printf("trigger %s: matches: joins the trigger's open batch, "
		       "or opens one (coalescing: sent %s after its first "
		       "event, rendered from the latest; here: this event "
		       "alone)\n",
		       t->name, duration_text(t->coalesce_ms, d, sizeof d));
	} else {
		printf("trigger %s: matches\n", t->name);
	}
}

static int run_dry(const struct config *cfg, const char *path)
{
	char err[512];
	size_t len;
	char *body = read_all(path, DRY_RUN_MAX_EVENT, &len);
	if (!body) {
		fprintf(stderr, "triggerd: cannot read event %s: %s\n",
			strcmp(path, "-") == 0 ? "from stdin" : path,
			strerror(errno));
		return EXIT_CONFIG;
	}
	struct event *ev = event_parse(body, len, err, sizeof err);
	free(body);
	if (!ev) {
		fprintf(stderr, "triggerd: invalid event: %s\n", err);
		return EXIT_CONFIG;
	}
	struct buf key;
	buf_init(&key, REQUEST_MAX_DEDUP_KEY);
	switch (request_dedup_key(cfg, ev, &key)) {
	case 0: printf("dedup key: %s\n", buf_str(&key)); break;
	case 1:
		printf("dedup key: none (the event lacks a field the key names)\n");
		break;
	default:
		printf("dedup key: none (longer than %d bytes: not deduplicated)\n",
		       REQUEST_MAX_DEDUP_KEY);
	}
	buf_free(&key);

	for (size_t i = 0; i < cfg->ntriggers; i++) {
		const struct config_trigger *t = &cfg->triggers[i];
		struct request req;
		if (!match_trigger(t, ev, err, sizeof err)) {
			printf("trigger %s: no match: %s\n", t->name, err);
			continue;
		}
		if (request_render(cfg, t, ev, NULL, 0, "<delivery-id>", 1, &req, err,
				   sizeof err) < 0) {
			printf("trigger %s: matches, but would fail: %s\n",
			       t->name, err);
			continue;
		}
		print_match(t);
		print_request(&req);
		request_clear(&req);
	}
	event_free(ev);
	return 0;
}

/* Wakes the dispatcher: deliveries were committed (ingest's callback). */
static void wake_dispatch(void *d)
{
	dispatch_notify(d);
}

/* Runs the daemon until SIGTERM or SIGINT. */
static int run_daemon(struct config *cfg, const char *path)
{
	/* SQLite's read connections empty their page caches whenever the
	 * writer has committed, freeing hundreds of KiB many times a second;
	 * glibc would give each freed top of a heap back to the kernel with
	 * madvise, a TLB shootdown across every core each time (a seventh of
	 * the accept path's time in the profile). Keep that much instead. */
	mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD);
	struct config_slot slot;
	struct ingest in;
	char err[512];
	sigset_t set;
	int rc = EXIT_RUNTIME;

	sigemptyset(&set);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);

	if (http_client_global_init() < 0) {
		log_kv(LOG_ERROR, "cannot initialise libcurl", LOG_END);
		config_release(cfg);
		return EXIT_RUNTIME;
	}
	struct store *st = cfg->store_url
				? store_open_url(cfg->store_url, err, sizeof err)
				: store_open(cfg->store_path, err, sizeof err);
	if (!st) {
		log_kv(LOG_ERROR, "cannot open the store", "path",
		       cfg->store_url ? cfg->store_url_shown : cfg->store_path,
		       "error", err, LOG_END);
		config_release(cfg);
		goto out_curl;
	}
	char host[256];
	int port = cfg->listen_port, workers = cfg->workers;
	snprintf(host, sizeof host, "%s", cfg->listen_host);
	config_slot_init(&slot, cfg);
	struct dispatch *d = dispatch_start(st, &slot, workers);
	if (!d) {
		log_kv(LOG_ERROR, "cannot start the dispatcher", LOG_END);
		goto out_store;
	}
	in = (struct ingest){.slot = &slot, .store = st,
			     .wake = wake_dispatch, .wake_ctx = d};
	struct server *srv = server_start(host, port, &slot, st, &in, err,
					  sizeof err);
	if (!srv) {
		log_kv(LOG_ERROR, err, LOG_END);
		dispatch_stop(d, util_mono_ms());
		goto out_store;
	}
	char portstr[16];
	snprintf(portstr, sizeof portstr, "%d", server_port(srv));
	log_kv(LOG_INFO, "listening", "host", host, "port", portstr, "version",
	       TRIGGERD_VERSION, LOG_END);

	notify_ready();

	int64_t wd = notify_watchdog_interval_ms();
	for (;;) {
		/* With a watchdog, wake up in time to ping it. */
		struct timespec ts = {wd / 1000, (wd % 1000) * 1000000};
		int sig = wd ? sigtimedwait(&set, NULL, &ts)
			     : sigwaitinfo(&set, NULL);
		if (sig == SIGHUP) {
			notify_reloading();
			reload_apply(&in, path, load_config(path, 1));
			notify_ready();
		} else if (sig == SIGINT || sig == SIGTERM) {
			break;
		} else if (sig < 0 && errno == EAGAIN) {
			notify_watchdog();
		}
	}
	notify_stopping();
	log_kv(LOG_INFO, "stopping", LOG_END);
	int64_t deadline = util_mono_ms() + STOP_GRACE_MS;
	server_stop(srv, deadline);
	dispatch_stop(d, deadline);
	rc = 0;
	log_kv(LOG_INFO, "stopped", LOG_END);
out_store:
	store_close(st);
	config_slot_destroy(&slot);
out_curl:
	http_client_global_cleanup();
	return rc;
}

int main(int argc, char **argv)
{
	struct options o = {0};

	log_init();
	parse_args(argc, argv, &o);
	if (o.health)
		return run_health(o.health);
	struct config *cfg = load_config(o.config, !o.check && !o.dry_run);
	if (!cfg)
		return EXIT_CONFIG;
	if (o.check || o.dry_run) {
		int rc = o.check ? run_check(cfg) : run_dry(cfg, o.dry_run);
		config_release(cfg);
		return rc;
	}
	return run_daemon(cfg, o.config);
}
