/*
 * notify — tells systemd (Type=notify) what the daemon is doing.
 *
 * DESIGN: wraps libsystemd's sd_notify when the build found libsystemd
 * (HAVE_SYSTEMD), and does nothing otherwise or when NOTIFY_SOCKET is
 * unset. Called from the main thread only.
 */
#ifndef TRIGGERD_NOTIFY_H
#define TRIGGERD_NOTIFY_H

#include <stdint.h>

void notify_ready(void);     /* READY=1 (after listening, after a reload) */
void notify_reloading(void); /* RELOADING=1 */
void notify_stopping(void);  /* STOPPING=1 */
void notify_watchdog(void);  /* WATCHDOG=1 */

/* How often to send WATCHDOG=1 in ms (half of WatchdogSec=), or 0 when
 * the watchdog is off. */
int64_t notify_watchdog_interval_ms(void);

#endif
