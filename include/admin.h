/*
 * admin — the admin API's JSON answers (SPEC section 7): the loaded
 * configuration, and deliveries built from the store's rows.
 *
 * DESIGN: pure code over a config the caller holds a reference to, or
 * rows the caller read. Shows templates as configured, with every
 * `${{secrets.NAME}}` written as `<secret:NAME>`: a secret's value is
 * never part of an answer.
 */
#ifndef TRIGGERD_ADMIN_H
#define TRIGGERD_ADMIN_H

struct buf;
struct config;
struct store_delivery_full;
struct store_delivery_list;

/* Appends {"triggers":[…]} to out. fanin_done (may be NULL) has, for
 * each fan-in trigger i, its progress (SPEC section 9): fanin_done[i][j]
 * is 1 if job j has an event that counts; NULL for other triggers.
 * 0, or -1 if out is full. */
int admin_triggers_json(const struct config *cfg, const int *const *fanin_done,
			struct buf *out);

/* Appends src to out with `${{ secrets.NAME }}` as `<secret:NAME>`. */
int admin_mask_template(const char *src, struct buf *out);

/* Appends {"deliveries":[…]} for the rows of l, in their order. 0, or -1
 * (out as it was). */
int admin_deliveries_json(const struct store_delivery_list *l,
			  struct buf *out);

/* Appends one delivery object plus "history" (every attempt as
 * {"at","status","error","ms"}). 0, or -1 (out as it was). */
int admin_delivery_json(const struct store_delivery_full *f, struct buf *out);

#endif
