/*
 * admin — the admin API's answers as JSON (see admin.h): the loaded
 * triggers with secrets masked, and deliveries from the store's rows.
 *
 * DESIGN: builds a jansson tree and dumps it; called from HTTP threads
 * with a config reference held or rows read, touches nothing else.
 */
#include "admin.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "config.h"
#include "store.h"
#include "util.h"

int admin_mask_template(const char *src, struct buf *out)
{
	const char *p = src;
	int rc = 0;

	while (*p && rc == 0) {
		if (strncmp(p, "$${{", 4) == 0) {
			rc = buf_append(out, p, 4);
			p += 4;
			continue;
		}
		const char *end = strncmp(p, "${{", 3) == 0 ? strstr(p, "}}")
							   : NULL;
		if (!end) {
			rc = buf_putc(out, *p++);
			continue;
		}
		const char *name = p + 3;
		while (*name == ' ')
			name++;
		if (strncmp(name, "secrets.", 8) == 0) {
			size_t n = 0;
			name += 8;
			while (name + n < end && name[n] != ' ')
				n++;
			rc = buf_puts(out, "<secret:");
			rc |= buf_append(out, name, n);
			rc |= buf_putc(out, '>');
		} else {
			rc = buf_append(out, p, (size_t)(end + 2 - p));
		}
		p = end + 2;
	}
	return rc ? -1 : 0;
}

static json_t *masked(const struct tmpl *t)
{
	struct buf b;
	buf_init(&b, 1 << 20);
	json_t *s = admin_mask_template(tmpl_source(t), &b) == 0
			    ? json_stringn(buf_str(&b), b.len)
			    : NULL;
	buf_free(&b);
	return s;
}

static json_t *body_json(const struct tmpl_node *n)
{
	json_t *j = NULL;
	switch (n->kind) {
	case TMPL_NODE_STRING: return masked(n->str);
	case TMPL_NODE_INTEGER: return json_integer(n->integer);
	case TMPL_NODE_REAL: return json_real(n->real);
	case TMPL_NODE_BOOL: return json_boolean(n->boolean);
	case TMPL_NODE_NULL: return json_null();
	case TMPL_NODE_ARRAY:
		j = json_array();
		for (size_t i = 0; j && i < n->nchildren; i++)
			json_array_append_new(j, body_json(&n->children[i]));
		return j;
	case TMPL_NODE_OBJECT:
		j = json_object();
		for (size_t i = 0; j && i < n->nchildren; i++)
			json_object_set_new(j, n->children[i].key,
					    body_json(&n->children[i]));
		return j;
	}
	return NULL;
}

static json_t *trigger_json(const struct config_trigger *t)
{
	json_t *headers = json_object(), *rules = json_array();
	json_t *jobs = json_array();

	for (size_t i = 0; i < t->nheaders; i++)
		json_object_set_new(headers, t->headers[i].name,
				    masked(t->headers[i].value));
	for (size_t i = 0; i < t->nrules; i++) {
		json_t *values = json_array();
		for (size_t v = 0; v < t->rules[i].nvalues; v++)
			json_array_append_new(values,
					      json_string(t->rules[i].values[v]));
		json_array_append_new(
			rules, json_pack("{s:s,s:s,s:o}", "variable_name",
					 t->rules[i].field, "operation",
					 rules_op_name(t->rules[i].op), "value",
					 values));
	}
	for (size_t i = 0; i < t->njobs; i++)
		json_array_append_new(jobs, json_string(t->jobs[i]));
	return json_pack("{s:s,s:s?,s:b,s:s,s:o,s:o,s:o?,s:o,s:o}", "name",
			 t->name, "description", t->description, "is_active",
			 t->active, "method", t->method, "url", masked(t->url),
			 "header", headers, "body",
			 t->body ? (t->body_is_json ? body_json(t->body)
						    : masked(t->body->str))
				 : NULL,
			 "rules", rules, "jobs", jobs);
}

/* {"done": [jobs with an event that counts], "missing": [the others]} */
static json_t *waiting_json(const struct config_trigger *t, const int *done)
{
	json_t *d = json_array(), *m = json_array();

	for (size_t i = 0; i < t->njobs; i++)
		json_array_append_new(done[i] ? d : m, json_string(t->jobs[i]));
	return json_pack("{s:o,s:o}", "done", d, "missing", m);
}

int admin_triggers_json(const struct config *cfg, const int *const *fanin_done,
			struct buf *out)
{
	json_t *list = json_array();
	for (size_t i = 0; list && i < cfg->ntriggers; i++) {
		json_t *t = trigger_json(&cfg->triggers[i]);
		if (t && fanin_done && fanin_done[i])
			json_object_set_new(
			    t, "waiting",
			    waiting_json(&cfg->triggers[i], fanin_done[i]));
		json_array_append_new(list, t);
	}
	json_t *o = json_pack("{s:o}", "triggers", list);
	char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
	json_decref(o);
	int rc = s ? buf_puts(out, s) : -1;
	free(s);
	return rc;
}

/* ---- deliveries (SPEC section 7) ---- */

/* t as a JSON string, or null. Text that is not valid UTF-8 (an error
 * sentence quoting a server) keeps its ASCII, other bytes become '?'. */
static json_t *jtext(const char *t)
{
	json_t *v;
	char *copy;

	if (!t)
		return json_null();
	v = json_string(t);
	if (v || !(copy = strdup(t)))
		return v;
	for (char *p = copy; *p; p++)
		if ((unsigned char)*p >= 0x80)
			*p = '?';
	v = json_string(copy);
	free(copy);
	return v;
}

static json_t *jtime(int64_t ms)
{
	char t[40];

	if (ms < 0)
		return json_null();
	util_rfc3339(ms, t, sizeof t);
	return json_string(t);
}

static json_t *jint(int64_t v)
{
	return v < 0 ? json_null() : json_integer(v);
}

/* A delivery's dbt run: null, or {"id","href","status","finished_at",
 * "status_message"} (SPEC section 8). */
static json_t *run_json(const struct store_delivery *d)
{
	json_t *o;

	if (d->run_id < 0)
		return json_null();
	o = json_pack("{s:I,s:o,s:o,s:o,s:o}", "id", (json_int_t)d->run_id,
		      "href", jtext(d->run_href), "status",
		      jtext(d->run_status), "finished_at",
		      jtext(d->run_finished_at), "status_message",
		      jtext(d->run_message));
	return o;
}

/* The ids of d's batch, arrival order (SPEC section 9): its one event
 * for an ordinary delivery. */
static json_t *events_json(const struct store_delivery *d)
{
	json_t *a = json_array();

	if (!d->batched)
		json_array_append_new(a, jtext(d->event_id));
	for (size_t i = 0; d->batched && i < d->nevents; i++)
		json_array_append_new(a, jtext(d->events[i]));
	return a;
}

/* The delivery object: {"id","event","trigger","state","attempts",
 * "last_status","last_error","next_attempt_at","created_at","run",
 * "events"}. */
static json_t *delivery_json(const struct store_delivery *d)
{
	json_t *o = json_object();

	if (!o || json_object_set_new(o, "id", jtext(d->id)) ||
	    json_object_set_new(o, "event", jtext(d->event_id)) ||
	    json_object_set_new(o, "trigger", jtext(d->trigger)) ||
	    json_object_set_new(o, "state",
				jtext(store_state_name(d->state))) ||
	    json_object_set_new(o, "attempts", jint(d->attempts)) ||
	    json_object_set_new(o, "last_status", jint(d->last_status)) ||
	    json_object_set_new(o, "last_error", jtext(d->last_error)) ||
	    json_object_set_new(o, "next_attempt_at",
				jtime(d->next_attempt_at_ms)) ||
	    json_object_set_new(o, "created_at", jtime(d->created_at_ms)) ||
	    json_object_set_new(o, "run", run_json(d)) ||
	    json_object_set_new(o, "events", events_json(d))) {
		json_decref(o);
		return NULL;
	}
	return o;
}

static int dump_cb(const char *p, size_t n, void *data)
{
	return buf_append(data, p, n);
}

/* Appends v as compact JSON and drops v; on failure out is as it was. */
static int dump_json(json_t *v, struct buf *out)
{
	size_t len0 = out->len;
	int rc = v && json_dump_callback(v, dump_cb, out, JSON_COMPACT) == 0
		     ? 0
		     : -1;

	if (rc < 0) {
		out->len = len0;
		if (out->data)
			out->data[len0] = '\0';
	}
	json_decref(v);
	return rc;
}

int admin_deliveries_json(const struct store_delivery_list *l,
			  struct buf *out)
{
	json_t *list = json_array();

	for (size_t i = 0; list && i < l->n; i++) {
		if (json_array_append_new(list, delivery_json(&l->v[i])) < 0) {
			json_decref(list);
			return -1;
		}
	}
	return dump_json(json_pack("{s:o}", "deliveries", list), out);
}

int admin_delivery_json(const struct store_delivery_full *f, struct buf *out)
{
	json_t *o = delivery_json(&f->d), *history = json_array();

	for (size_t i = 0; o && history && i < f->nhistory; i++) {
		const struct store_history *h = &f->history[i];
		json_t *a = json_pack("{s:o,s:o,s:o,s:o}", "at", jtime(h->at_ms),
				      "status", jint(h->status), "error",
				      jtext(h->error), "ms", jint(h->ms));
		if (json_array_append_new(history, a) < 0) {
			json_decref(history);
			history = NULL;
		}
	}
	if (!o || !history || json_object_set_new(o, "history", history) < 0) {
		json_decref(o);
		return -1;
	}
	/* The event as it was received (an addition for the console: which
	 * event set the delivery off); null if it cannot be read as JSON. */
	json_t *ev = f->event_body ? json_loads(f->event_body, 0, NULL) : NULL;
	if (json_object_set_new(o, "event_body", ev ? ev : json_null()) < 0) {
		json_decref(o);
		return -1;
	}
	return dump_json(o, out);
}
