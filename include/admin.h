/*
 * admin — JSON views of the loaded configuration for the admin API.
 *
 * DESIGN: pure code over a config the caller holds a reference to. Shows
 * templates as configured, with every `${{secrets.NAME}}` written as
 * `<secret:NAME>`: a secret's value is never part of an answer.
 */
#ifndef TRIGGERD_ADMIN_H
#define TRIGGERD_ADMIN_H

struct buf;
struct config;

/* Appends {"triggers":[…]} to out. 0, or -1 if out is full. */
int admin_triggers_json(const struct config *cfg, struct buf *out);

/* Appends src to out with `${{ secrets.NAME }}` as `<secret:NAME>`. */
int admin_mask_template(const char *src, struct buf *out);

#endif
