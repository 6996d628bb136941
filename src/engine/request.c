/*
 * request — render a trigger's HTTP request for an event (see request.h).
 *
 * DESIGN: called by dispatcher workers (each on its own request) and by
 * --dry-run; reads only the config it is given. Rendered buffers may hold
 * secrets, so request_clear() wipes them before freeing.
 */
#include "request.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "buf.h"
#include "config.h"
#include "dbt.h"

static const char user_agent[] = "triggerd/" TRIGGERD_VERSION;

/* Frees a buffer that may hold a secret, wiping it first. */
static void wipe_free(char *p, size_t len)
{
	if (!p)
		return;
	explicit_bzero(p, len);
	free(p);
}

static int has_header(const struct config_trigger *t, const char *name)
{
	for (size_t i = 0; i < t->nheaders; i++)
		if (strcasecmp(t->headers[i].name, name) == 0)
			return 1;
	return 0;
}

/* Appends one header; value is copied. */
static int add_header(struct request *r, const char *name, const char *value,
		      size_t len)
{
	char *v = malloc(len + 1);
	if (!v)
		return -1;
	memcpy(v, value, len);
	v[len] = '\0';
	r->headers[r->nheaders].name = name;
	r->headers[r->nheaders].value = v;
	r->header_values[r->nheaders] = v;
	r->nheaders++;
	return 0;
}

/* Renders the configured headers; refuses values that could inject. */
static int render_headers(const struct config_trigger *t,
			  const struct tmpl_env *env, struct request *r,
			  char *err, size_t errlen)
{
	struct buf b;
	int rc = -1;

	buf_init(&b, REQUEST_MAX_HEADER);
	for (size_t i = 0; i < t->nheaders; i++) {
		buf_reset(&b);
		if (tmpl_render(t->headers[i].value, env, TMPL_ENC_RAW, &b,
				NULL) < 0) {
			snprintf(err, errlen, "header %s is longer than %d bytes after rendering; not sent",
				 t->headers[i].name, REQUEST_MAX_HEADER);
			goto out;
		}
		if (memchr(b.data ? b.data : "", '\r', b.len) ||
		    memchr(b.data ? b.data : "", '\n', b.len) ||
		    strlen(buf_str(&b)) != b.len) {
			snprintf(err, errlen, "header %s contains a line break or NUL after rendering; not sent",
				 t->headers[i].name);
			goto out;
		}
		if (add_header(r, t->headers[i].name, buf_str(&b), b.len) < 0)
			goto out;
	}
	rc = 0;
out:
	if (b.data)
		explicit_bzero(b.data, b.cap);
	buf_free(&b);
	return rc;
}

static int render_body(const struct config_trigger *t,
		       const struct tmpl_env *env, struct request *r,
		       char *err, size_t errlen)
{
	struct buf b;
	int rc;

	if (!t->body)
		return 0;
	buf_init(&b, REQUEST_MAX_BODY);
	if (t->body_is_json)
		rc = tmpl_node_render(t->body, env, &b, NULL);
	else
		rc = tmpl_render(t->body->str, env, TMPL_ENC_RAW, &b, NULL);
	if (rc < 0) {
		snprintf(err, errlen, "body is longer than %d bytes after rendering; not sent",
			 REQUEST_MAX_BODY);
		if (b.data)
			explicit_bzero(b.data, b.cap);
		buf_free(&b);
		return -1;
	}
	r->body_len = b.len;
	r->body = buf_steal(&b);
	return r->body ? 0 : -1;
}

/* A dbt trigger's cause gets the delivery's marker (SPEC section 8); with
 * no delivery (--dry-run) there is nothing to mark it with. */
static int mark_body(const struct config_trigger *t, const char *delivery_id,
		     struct request *r, char *err, size_t errlen)
{
	char *marked;
	size_t len;
	int rc;

	if (!t->dbt.is_dbt || !t->dbt.mark || !t->body_is_json ||
	    !delivery_id || !r->body)
		return 0;
	rc = dbt_mark_body(r->body, r->body_len, delivery_id, &marked, &len);
	if (rc == 1)
		return 0;
	if (rc < 0) {
		snprintf(err, errlen, "the body's cause cannot be marked; not sent");
		return -1;
	}
	wipe_free(r->body, r->body_len);
	r->body = marked;
	r->body_len = len;
	return 0;
}

int request_render(const struct config *cfg, const struct config_trigger *t,
		   const struct event *ev, const struct event *const *batch,
		   size_t nbatch, const char *delivery_id, int mask_secrets,
		   struct request *out, char *err, size_t errlen)
{
	struct tmpl_env env;
	struct buf url;
	size_t max = t->nheaders + 3;

	memset(out, 0, sizeof *out);
	if (errlen)
		err[0] = '\0';
	out->method = t->method;
	out->headers = calloc(max, sizeof *out->headers);
	out->header_values = calloc(max, sizeof *out->header_values);
	if (!out->headers || !out->header_values)
		goto fail;
	config_env(cfg, ev, mask_secrets, &env);
	env.batch = batch;
	env.nbatch = nbatch;

	buf_init(&url, REQUEST_MAX_URL);
	if (tmpl_render(t->url, &env, TMPL_ENC_URL, &url, NULL) < 0) {
		snprintf(err, errlen, "url is longer than %d bytes after rendering; not sent",
			 REQUEST_MAX_URL);
		wipe_free(url.data, url.cap);
		goto fail;
	}
	out->url = buf_steal(&url);
	if (!out->url || render_headers(t, &env, out, err, errlen) < 0 ||
	    render_body(t, &env, out, err, errlen) < 0 ||
	    mark_body(t, delivery_id, out, err, errlen) < 0)
		goto fail;
	if (t->body && t->body_is_json && !t->has_content_type &&
	    add_header(out, "Content-Type", "application/json", 16) < 0)
		goto fail;
	if (!has_header(t, "User-Agent") &&
	    add_header(out, "User-Agent", user_agent, strlen(user_agent)) < 0)
		goto fail;
	if (delivery_id && !has_header(t, "Idempotency-Key") &&
	    add_header(out, "Idempotency-Key", delivery_id,
		       strlen(delivery_id)) < 0)
		goto fail;
	return 0;
fail:
	if (!*err)
		snprintf(err, errlen, "out of memory while rendering the request");
	request_clear(out);
	return -1;
}

int request_redact(const struct config *cfg, const char *in, size_t len,
		   struct buf *out)
{
	size_t i = 0, from = 0;
	int rc = 0;

	while (i < len && rc == 0) {
		size_t s = 0;
		for (; s < cfg->nsecrets; s++) {
			const struct config_secret *sec = &cfg->secrets[s];
			if (sec->len >= CONFIG_MIN_REDACT &&
			    sec->len <= len - i &&
			    memcmp(in + i, sec->value, sec->len) == 0)
				break;
		}
		if (s == cfg->nsecrets) {
			i++;
			continue;
		}
		rc |= buf_append(out, in + from, i - from);
		rc |= buf_printf(out, "<secret:%s>", cfg->secrets[s].name);
		i += cfg->secrets[s].len;
		from = i;
	}
	rc |= buf_append(out, in + from, len - from);
	return rc ? -1 : 0;
}

void request_clear(struct request *r)
{
	if (r->url)
		wipe_free(r->url, strlen(r->url));
	for (size_t i = 0; r->header_values && i < r->nheaders; i++)
		/* NOLINTNEXTLINE(clang-analyzer-core.NonNullParamChecker) */
		wipe_free(r->header_values[i], strlen(r->header_values[i]));
	free(r->header_values);
	free(r->headers);
	wipe_free(r->body, r->body_len);
	memset(r, 0, sizeof *r);
}

int request_dedup_key(const struct config *cfg, const struct event *ev,
		      struct buf *key)
{
	struct tmpl_env env;
	int missing = 0;

	config_env(cfg, ev, 1, &env);
	if (tmpl_render(cfg->dedup_key, &env, TMPL_ENC_RAW, key, &missing) < 0)
		return -1;
	return missing ? 1 : 0;
}
