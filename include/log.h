/*
 * log — logfmt records on stderr.
 *
 * DESIGN: one line per record, `ts=… level=… msg=… key=value…`, written with
 * a single write(2) so lines from different threads never interleave. When
 * JOURNAL_STREAM is set (systemd), each line starts with its syslog priority
 * (`<6>`) so journald keeps the level. Callable from any thread. Callers never
 * pass a secret's value: log once, where the decision is made, with the ids
 * (event=, delivery=, trigger=, attempt=) that let a person follow one event.
 */
#ifndef TRIGGERD_LOG_H
#define TRIGGERD_LOG_H

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };

/* Reads JOURNAL_STREAM. Call once from main before any thread starts. */
void log_init(void);

/* "debug", "info", "warn", "error" -> 0; anything else -> -1. */
int log_level_parse(const char *s, enum log_level *out);
void log_set_level(enum log_level level);
int log_enabled(enum log_level level);

/* Ends log_kv's arguments: a null pointer of the type va_arg reads (a
 * bare NULL may be an int in a variadic call). */
#define LOG_END ((const char *)0)

/*
 * Writes one record. After msg come key, value pairs of C strings, ended
 * by LOG_END. A NULL value is skipped. Values with spaces, quotes, '='
 * or control characters are quoted and escaped.
 *   log_kv(LOG_INFO, "delivered", "trigger", t, "delivery", id, LOG_END);
 */
void log_kv(enum log_level level, const char *msg, ...);

#endif
