/*
 * dbt — dbt Cloud's API v2 as text (see dbt.h).
 *
 * DESIGN: pure functions over strings; jansson reads dbt's answers and
 * rewrites a body's cause. Any thread. Nothing here allocates except
 * dbt_mark_body's result.
 */
#include "dbt.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Copies the digits at *p (1 to outlen-1 of them) into out, advancing *p.
 * 0, or -1 if there are none or too many. */
static int take_digits(const char **p, char *out, size_t outlen)
{
	size_t n = strspn(*p, "0123456789");

	if (n == 0 || n >= outlen)
		return -1;
	memcpy(out, *p, n);
	out[n] = '\0';
	*p += n;
	return 0;
}

static int take_literal(const char **p, const char *lit)
{
	size_t n = strlen(lit);

	if (strncmp(*p, lit, n) != 0)
		return -1;
	*p += n;
	return 0;
}

int dbt_url_parse(const char *url, struct dbt_target *out)
{
	const char *p, *path;
	size_t blen;

	memset(out, 0, sizeof *out);
	if (!url)
		return 0;
	p = strstr(url, "://");
	if (!p || p == url)
		return 0;
	path = p + 3 + strcspn(p + 3, "/?#");
	blen = (size_t)(path - url);
	if (*path != '/' || blen == (size_t)(p + 3 - url) ||
	    blen >= sizeof out->base)
		return 0;
	memcpy(out->base, url, blen);
	out->base[blen] = '\0';
	p = path;
	if (take_literal(&p, "/api/v2/accounts/") < 0 ||
	    take_digits(&p, out->account, sizeof out->account) < 0 ||
	    take_literal(&p, "/jobs/") < 0 ||
	    take_digits(&p, out->job, sizeof out->job) < 0 ||
	    take_literal(&p, "/run") < 0)
		goto no;
	if (*p == '/')
		p++;
	if (*p == '\0' || *p == '?' || *p == '#')
		return 1;
no:
	memset(out, 0, sizeof *out);
	return 0;
}

void dbt_marker(const char *delivery_id, char out[DBT_MARKER_MAX])
{
	snprintf(out, DBT_MARKER_MAX, " [triggerd %.64s]",
		 delivery_id ? delivery_id : "");
}

/* Bytes of the first max code points of s (len bytes), never ending
 * inside a sequence: continuation bytes (10xxxxxx) belong to the code
 * point before them. */
static size_t utf8_prefix(const char *s, size_t len, size_t max)
{
	size_t i = 0, cps = 0;

	while (i < len) {
		if (((unsigned char)s[i] & 0xC0) != 0x80) {
			if (cps == max)
				break;
			cps++;
		}
		i++;
	}
	return i;
}

static size_t utf8_count(const char *s, size_t len)
{
	size_t n = 0;

	for (size_t i = 0; i < len; i++)
		n += ((unsigned char)s[i] & 0xC0) != 0x80;
	return n;
}

int dbt_mark_cause(const char *cause, size_t len, const char *delivery_id,
		   char *out, size_t outlen)
{
	char m[DBT_MARKER_MAX];
	size_t mlen, mcp, keep;

	dbt_marker(delivery_id, m);
	mlen = strlen(m);
	mcp = utf8_count(m, mlen);
	keep = utf8_prefix(cause, len, mcp < DBT_CAUSE_MAX
					   ? DBT_CAUSE_MAX - mcp : 0);
	if (keep + mlen + 1 > outlen)
		return -1;
	memcpy(out, cause, keep);
	memcpy(out + keep, m, mlen + 1);
	return 0;
}

int dbt_mark_body(const char *body, size_t len, const char *delivery_id,
		  char **out, size_t *outlen)
{
	char marked[DBT_CAUSE_MAX * 4 + 1];
	json_t *j = json_loadb(body, len, JSON_ALLOW_NUL, NULL), *c;
	int rc = -1;

	*out = NULL;
	if (!j || !json_is_object(j))
		goto done;
	c = json_object_get(j, "cause");
	if (!json_is_string(c)) {
		rc = 1;
		goto done;
	}
	if (dbt_mark_cause(json_string_value(c), json_string_length(c),
			   delivery_id, marked, sizeof marked) < 0 ||
	    json_object_set_new(j, "cause",
				json_stringn(marked, strlen(marked))) < 0)
		goto done;
	/* the same flags as tmpl_node_render: compact, order kept */
	*out = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
	if (*out) {
		*outlen = strlen(*out);
		rc = 0;
	}
done:
	json_decref(j);
	return rc;
}

int dbt_list_url(const struct dbt_target *t, int active, int offset,
		 char *out, size_t outlen)
{
	/* include_related=["trigger"], status__in=[1,2,3], URL-encoded */
	int n = snprintf(out, outlen,
			 "%s/api/v2/accounts/%s/runs/?job_definition_id=%s"
			 "%s&order_by=-id&limit=%d&offset=%d"
			 "&include_related=%%5B%%22trigger%%22%%5D",
			 t->base, t->account, t->job,
			 active ? "&status__in=%5B1%2C2%2C3%5D" : "",
			 DBT_LIST_LIMIT, offset < 0 ? 0 : offset);
	return n < 0 || (size_t)n >= outlen ? -1 : 0;
}

int dbt_run_url(const struct dbt_target *t, int64_t run_id, char *out,
		size_t outlen)
{
	int n = snprintf(out, outlen, "%s/api/v2/accounts/%s/runs/%lld/",
			 t->base, t->account, (long long)run_id);
	return n < 0 || (size_t)n >= outlen ? -1 : 0;
}

int dbt_cancel_url(const struct dbt_target *t, int64_t run_id, char *out,
		   size_t outlen)
{
	int n = snprintf(out, outlen, "%s/api/v2/accounts/%s/runs/%lld/cancel/",
			 t->base, t->account, (long long)run_id);
	return n < 0 || (size_t)n >= outlen ? -1 : 0;
}

static const struct {
	int status;
	const char *name;
} statuses[] = {
    {DBT_QUEUED, "queued"},	{DBT_STARTING, "starting"},
    {DBT_RUNNING, "running"},	{DBT_SUCCESS, "success"},
    {DBT_ERROR, "error"},	{DBT_CANCELLED, "cancelled"},
    {DBT_TIMEOUT, "timeout"},	{DBT_LOST, "lost"},
    {DBT_UNKNOWN, "unknown"},
};

const char *dbt_status_name(int status)
{
	for (size_t i = 0; i < sizeof statuses / sizeof statuses[0]; i++)
		if (statuses[i].status == status)
			return statuses[i].name;
	return NULL;
}

int dbt_status_parse(const char *s)
{
	for (size_t i = 0; s && i < sizeof statuses / sizeof statuses[0]; i++)
		if (strcmp(statuses[i].name, s) == 0)
			return statuses[i].status;
	return DBT_NONE;
}

int dbt_status_final(int status)
{
	return status >= DBT_SUCCESS;
}

int64_t dbt_parse_time(const char *s)
{
	int y, mo, d, h, mi, sec, n = 0;
	struct tm tm;
	long long frac_ms = 0;
	const char *p;

	/* field widths bound every number; timegm() normalises the rest */
	if (!s || sscanf(s, "%4d-%2d-%2d%*1[ T]%2d:%2d:%2d%n", &y, &mo, &d, // NOLINT(cert-err34-c)
			 &h, &mi, &sec, &n) != 6 || n == 0)
		return -1;
	p = s + n;
	if (*p == '.') {
		int digits = 0;
		for (p++; *p >= '0' && *p <= '9'; p++, digits++)
			if (digits < 3)
				frac_ms = frac_ms * 10 + (*p - '0');
		while (digits > 0 && digits < 3)
			frac_ms *= 10, digits++;
	}
	memset(&tm, 0, sizeof tm);
	tm.tm_year = y - 1900;
	tm.tm_mon = mo - 1;
	tm.tm_mday = d;
	tm.tm_hour = h;
	tm.tm_min = mi;
	tm.tm_sec = sec;
	int64_t t = (int64_t)timegm(&tm);
	if ((*p == '+' || *p == '-') && strlen(p) >= 6) {
		int oh = (p[1] - '0') * 10 + (p[2] - '0');
		int om = (p[4] - '0') * 10 + (p[5] - '0');
		int64_t off = (int64_t)oh * 3600 + (int64_t)om * 60;
		t += *p == '+' ? -off : off;
	}
	return t * 1000 + frac_ms;
}

static void copy_str(json_t *o, const char *key, char *out, size_t outlen)
{
	json_t *v = json_object_get(o, key);

	snprintf(out, outlen, "%s", json_is_string(v) ? json_string_value(v) : "");
}

/* A run object into out; 0, or -1 if it has no integer id. */
static int run_of(json_t *o, struct dbt_run *out)
{
	json_t *id = json_object_get(o, "id"), *st, *tr;

	memset(out, 0, sizeof *out);
	out->created_at_ms = -1;
	if (!json_is_object(o) || !json_is_integer(id))
		return -1;
	out->id = json_integer_value(id);
	st = json_object_get(o, "status");
	out->status = json_is_integer(st) ? (int)json_integer_value(st) : 0;
	copy_str(o, "href", out->href, sizeof out->href);
	copy_str(o, "finished_at", out->finished_at, sizeof out->finished_at);
	copy_str(o, "status_message", out->status_message,
		 sizeof out->status_message);
	tr = json_object_get(o, "trigger");
	if (json_is_object(tr) && json_is_string(json_object_get(tr, "cause")))
		copy_str(tr, "cause", out->cause, sizeof out->cause);
	else
		copy_str(o, "cause", out->cause, sizeof out->cause);
	st = json_object_get(o, "created_at");
	if (json_is_string(st))
		out->created_at_ms = dbt_parse_time(json_string_value(st));
	return 0;
}

int dbt_parse_run(const char *body, size_t len, struct dbt_run *out)
{
	json_t *j = body ? json_loadb(body, len, 0, NULL) : NULL;
	int rc = -1;

	memset(out, 0, sizeof *out);
	if (json_is_object(j))
		rc = run_of(json_object_get(j, "data"), out);
	json_decref(j);
	return rc;
}

int dbt_find_run(const char *body, size_t len, const char *marker,
		 struct dbt_run *found, int *nruns, int64_t *oldest_ms)
{
	json_t *j = body ? json_loadb(body, len, 0, NULL) : NULL, *data;
	struct dbt_run r;
	int rc = -1;

	*nruns = 0;
	*oldest_ms = -1;
	data = json_is_object(j) ? json_object_get(j, "data") : NULL;
	if (!json_is_array(data))
		goto out;
	rc = 0;
	*nruns = (int)json_array_size(data);
	for (size_t i = 0; i < json_array_size(data); i++) {
		if (run_of(json_array_get(data, i), &r) < 0)
			continue;
		if (r.created_at_ms >= 0 &&
		    (*oldest_ms < 0 || r.created_at_ms < *oldest_ms))
			*oldest_ms = r.created_at_ms;
		if (!marker || (marker[0] && strstr(r.cause, marker))) {
			*found = r;
			rc = 1;
			break;
		}
	}
out:
	json_decref(j);
	return rc;
}
