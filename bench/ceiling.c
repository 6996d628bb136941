/*
 * ceiling — the fastest POST /v1/events this stack can answer: the same
 * libmicrohttpd threading mode as triggerd, jansson parses the body, 202.
 * No auth, no matching, no store. bench/run.sh measures triggerd against
 * it.   usage: ceiling PORT
 */
#include <jansson.h>
#include <microhttpd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct req {
	char *data;
	size_t len;
};

static enum MHD_Result handle(void *cls, struct MHD_Connection *c,
			      const char *url, const char *method,
			      const char *version, const char *upload,
			      size_t *upload_size, void **con_cls)
{
	struct req *r = *con_cls;
	static const char ok[] = "{\"status\":\"accepted\"}";

	if (!r) {
		*con_cls = calloc(1, sizeof *r);
		return *con_cls ? MHD_YES : MHD_NO;
	}
	if (*upload_size) {
		char *p = realloc(r->data, r->len + *upload_size);
		if (!p)
			return MHD_NO;
		memcpy(p + r->len, upload, *upload_size);
		r->data = p;
		r->len += *upload_size;
		*upload_size = 0;
		return MHD_YES;
	}
	json_error_t err;
	json_t *j = json_loadb(r->data ? r->data : "", r->len, 0, &err);
	unsigned status = j && json_is_object(j) ? 202 : 400;
	json_decref(j);
	struct MHD_Response *resp = MHD_create_response_from_buffer(
		sizeof ok - 1, (void *)ok, MHD_RESPMEM_PERSISTENT);
	MHD_add_response_header(resp, "Content-Type", "application/json");
	enum MHD_Result ret = MHD_queue_response(c, status, resp);
	MHD_destroy_response(resp);
	return ret;
}

static void done(void *cls, struct MHD_Connection *c, void **con_cls,
		 enum MHD_RequestTerminationCode toe)
{
	struct req *r = *con_cls;
	if (r)
		free(r->data);
	free(r);
	*con_cls = NULL;
}

int main(int argc, char **argv)
{
	sigset_t set;
	int sig;

	if (argc != 2) {
		fprintf(stderr, "usage: ceiling PORT\n");
		return 2;
	}
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	struct MHD_Daemon *d = MHD_start_daemon(
		MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
			MHD_USE_POLL,
		(uint16_t)strtol(argv[1], NULL, 10), NULL, NULL, handle, NULL,
		MHD_OPTION_NOTIFY_COMPLETED, done, NULL,
		MHD_OPTION_CONNECTION_LIMIT, (unsigned)2048,
		MHD_OPTION_THREAD_STACK_SIZE, (size_t)(256 * 1024),
		MHD_OPTION_END);
	if (!d) {
		fprintf(stderr, "ceiling: cannot listen on %s\n", argv[1]);
		return 3;
	}
	sigwait(&set, &sig);
	MHD_stop_daemon(d);
	return 0;
}
