/*
 * sink — a fast local HTTP receiver for the dispatch benchmarks: answers
 * every request 200 with a small dbt-style JSON body, and on SIGTERM
 * writes one line per request received, "IDEMPOTENCY-KEY REALTIME_NS",
 * to the file named by its second argument.
 *   usage: sink PORT OUTFILE
 */
#include <microhttpd.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_RECORDS (2 * 1000 * 1000)

struct record {
	char key[40];
	long long ns;
};

static struct record *records;
static size_t nrecords;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;

static enum MHD_Result handle(void *cls, struct MHD_Connection *c,
			      const char *url, const char *method,
			      const char *version, const char *upload,
			      size_t *upload_size, void **con_cls)
{
	static const char ok[] =
		"{\"status\":{\"code\":200,\"is_success\":true},\"data\":{\"id\":1}}";
	if (!*con_cls) {
		*con_cls = (void *)1;
		return MHD_YES;
	}
	if (*upload_size) {
		*upload_size = 0;
		return MHD_YES;
	}
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	const char *key = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
						      "Idempotency-Key");
	pthread_mutex_lock(&mu);
	if (nrecords < MAX_RECORDS) {
		snprintf(records[nrecords].key, sizeof records[0].key, "%s",
			 key ? key : "-");
		records[nrecords].ns = ts.tv_sec * 1000000000LL + ts.tv_nsec;
		nrecords++;
	}
	pthread_mutex_unlock(&mu);
	struct MHD_Response *resp = MHD_create_response_from_buffer(
		sizeof ok - 1, (void *)ok, MHD_RESPMEM_PERSISTENT);
	MHD_add_response_header(resp, "Content-Type", "application/json");
	enum MHD_Result ret = MHD_queue_response(c, 200, resp);
	MHD_destroy_response(resp);
	return ret;
}

int main(int argc, char **argv)
{
	sigset_t set;
	int sig;

	if (argc != 3) {
		fprintf(stderr, "usage: sink PORT OUTFILE\n");
		return 2;
	}
	records = calloc(MAX_RECORDS, sizeof *records);
	if (!records)
		return 1;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	struct MHD_Daemon *d = MHD_start_daemon(
		MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL,
		(uint16_t)strtol(argv[1], NULL, 10), NULL, NULL, handle, NULL,
		MHD_OPTION_THREAD_POOL_SIZE, (unsigned)2, MHD_OPTION_END);
	if (!d) {
		fprintf(stderr, "sink: cannot listen on %s\n", argv[1]);
		return 3;
	}
	sigwait(&set, &sig);
	MHD_stop_daemon(d);
	FILE *f = fopen(argv[2], "w");
	if (!f)
		return 1;
	for (size_t i = 0; i < nrecords; i++)
		fprintf(f, "%s %lld\n", records[i].key, records[i].ns);
	fclose(f);
	return 0;
}
