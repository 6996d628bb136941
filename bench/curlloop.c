/*
 * curlloop — the ceiling for dispatch: THREADS threads, each with one
 * reused libcurl handle, POST the same dbt-style request to URL until N
 * requests are done; prints requests per second.
 *   usage: curlloop URL N THREADS
 */
#include <curl/curl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static const char *url;
static long total;
static long next_req;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;

static size_t discard(char *p, size_t size, size_t n, void *ud)
{
	return size * n;
}

static void *worker(void *arg)
{
	static const char body[] =
		"{\"cause\":\"finished job on Erathos platform triggered by Erathos Schedule\"}";
	CURL *h = curl_easy_init();
	struct curl_slist *hdrs = NULL;
	hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
	hdrs = curl_slist_append(hdrs, "Accept: application/json");
	hdrs = curl_slist_append(hdrs, "Authorization: Bearer bench-token");
	hdrs = curl_slist_append(hdrs, "Expect:");
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, discard);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	for (;;) {
		pthread_mutex_lock(&mu);
		long mine = next_req++;
		pthread_mutex_unlock(&mu);
		if (mine >= total)
			break;
		if (curl_easy_perform(h) != CURLE_OK)
			fprintf(stderr, "curlloop: request failed\n");
	}
	curl_slist_free_all(hdrs);
	curl_easy_cleanup(h);
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: curlloop URL N THREADS\n");
		return 2;
	}
	url = argv[1];
	total = strtol(argv[2], NULL, 10);
	int nthreads = (int)strtol(argv[3], NULL, 10);
	pthread_t t[64];
	struct timespec a, b;

	if (nthreads < 1 || nthreads > 64)
		return 2;
	curl_global_init(CURL_GLOBAL_DEFAULT);
	clock_gettime(CLOCK_MONOTONIC, &a);
	for (int i = 0; i < nthreads; i++)
		pthread_create(&t[i], NULL, worker, NULL);
	for (int i = 0; i < nthreads; i++)
		pthread_join(t[i], NULL);
	clock_gettime(CLOCK_MONOTONIC, &b);
	double secs = (double)(b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) / 1e9;
	printf("%.0f\n", (double)total / secs);
	curl_global_cleanup();
	return 0;
}
