/*
 * log — logfmt records on stderr (see include/log.h).
 *
 * DESIGN: the level and the journald flag are set by main before any
 * thread starts and only read afterwards. Each record is built in a stack
 * buffer and written with one write(2), so records never interleave.
 */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util.h"

static enum log_level min_level = LOG_INFO;
static int journald;

static const char *const level_names[] = {"debug", "info", "warn", "error"};
static const char syslog_prio[] = {'7', '6', '4', '3'};

void log_init(void)
{
	journald = getenv("JOURNAL_STREAM") != NULL;
}

int log_level_parse(const char *s, enum log_level *out)
{
	for (int i = 0; i < 4; i++) {
		if (strcmp(s, level_names[i]) == 0) {
			*out = (enum log_level)i;
			return 0;
		}
	}
	return -1;
}

void log_set_level(enum log_level level)
{
	min_level = level;
}

int log_enabled(enum log_level level)
{
	return level >= min_level;
}

/* Appends s at *pos in line (of size cap), truncating silently. */
static void put(char *line, size_t cap, size_t *pos, const char *s, size_t n)
{
	if (*pos >= cap)
		return;
	if (n > cap - *pos)
		n = cap - *pos;
	memcpy(line + *pos, s, n);
	*pos += n;
}

/* Appends a value, quoted and escaped when logfmt needs it. */
static void put_value(char *line, size_t cap, size_t *pos, const char *v)
{
	int quote = *v == '\0';
	for (const char *p = v; *p; p++)
		if (*p == ' ' || *p == '"' || *p == '=' || *p == '\\' ||
		    (unsigned char)*p < 0x20 || *p == 0x7f)
			quote = 1;
	if (!quote) {
		put(line, cap, pos, v, strlen(v));
		return;
	}
	put(line, cap, pos, "\"", 1);
	for (const unsigned char *p = (const unsigned char *)v; *p; p++) {
		char esc[8];
		if (*p == '"' || *p == '\\') {
			esc[0] = '\\';
			esc[1] = (char)*p;
			put(line, cap, pos, esc, 2);
		} else if (*p == '\n') {
			put(line, cap, pos, "\\n", 2);
		} else if (*p < 0x20 || *p == 0x7f) {
			int n = snprintf(esc, sizeof esc, "\\x%02x", *p);
			put(line, cap, pos, esc, (size_t)n);
		} else {
			put(line, cap, pos, (const char *)p, 1);
		}
	}
	put(line, cap, pos, "\"", 1);
}

void log_kv(enum log_level level, const char *msg, ...)
{
	if (level < min_level)
		return;
	char line[4096];
	size_t pos = 0, cap = sizeof line - 1;
	char ts[40];

	if (journald) {
		char prio[3] = {'<', syslog_prio[level], '>'};
		put(line, cap, &pos, prio, 3);
	}
	util_rfc3339(util_now_ms(), ts, sizeof ts);
	put(line, cap, &pos, "ts=", 3);
	put(line, cap, &pos, ts, strlen(ts));
	put(line, cap, &pos, " level=", 7);
	put(line, cap, &pos, level_names[level], strlen(level_names[level]));
	put(line, cap, &pos, " msg=", 5);
	put_value(line, cap, &pos, msg);

	va_list ap;
	va_start(ap, msg);
	for (;;) {
		const char *key = va_arg(ap, const char *);
		if (!key)
			break;
		const char *value = va_arg(ap, const char *);
		if (!value)
			continue;
		put(line, cap, &pos, " ", 1);
		put(line, cap, &pos, key, strlen(key));
		put(line, cap, &pos, "=", 1);
		put_value(line, cap, &pos, value);
	}
	va_end(ap);
	line[pos++] = '\n';
	/* One write per record; a short write to a pipe of < PIPE_BUF bytes
	 * cannot happen, and there is no one to tell if stderr is gone. */
	ssize_t w = write(STDERR_FILENO, line, pos);
	(void)w;
}
