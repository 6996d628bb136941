/*
 * dispatch_int — what dispatch.c and dispatch_text.c share. Not an
 * interface: other modules see include/dispatch.h only.
 */
#ifndef TRIGGERD_DISPATCH_INT_H
#define TRIGGERD_DISPATCH_INT_H

#include <stddef.h>
#include <stdint.h>

/* "72h", "30m", "90s" or "1500ms": the largest unit that is exact. */
void dispatch_fmt_duration(int64_t ms, char *out, size_t outlen);

/* Writes "HTTP <status> from <host>[: <the server's explanation>]" into
 * out: dbt Cloud's status.user_message, else a JSON body's "message",
 * "error" or "detail", else the body's first line; cut to fit. */
void dispatch_http_error(int status, const char *host, const char *body,
			 size_t len, char *out, size_t outlen);

#endif
