/*
 * notify — sd_notify messages for systemd (see notify.h).
 *
 * DESIGN: stateless wrappers; libsystemd is an optional dependency, so
 * without it every call is a no-op and the unit should use Type=simple.
 */
#include "notify.h"

#include <stdio.h>
#include <time.h>

#ifdef HAVE_SYSTEMD
#include <systemd/sd-daemon.h>

static void send_state(const char *state)
{
	sd_notify(0, state);
}

void notify_reloading(void)
{
	/* systemd >= 253 (Type=notify-reload) wants the monotonic time
	 * with RELOADING=1; older ones ignore it. */
	struct timespec ts;
	char msg[64];
	clock_gettime(CLOCK_MONOTONIC, &ts);
	snprintf(msg, sizeof msg, "RELOADING=1\nMONOTONIC_USEC=%llu",
		 (unsigned long long)ts.tv_sec * 1000000ULL +
			 (unsigned long long)ts.tv_nsec / 1000ULL);
	send_state(msg);
}

int64_t notify_watchdog_interval_ms(void)
{
	uint64_t usec = 0;
	if (sd_watchdog_enabled(0, &usec) <= 0)
		return 0;
	return (int64_t)(usec / 2000);
}
#else
static void send_state(const char *state)
{
	(void)state;
}

void notify_reloading(void)
{
}

int64_t notify_watchdog_interval_ms(void)
{
	return 0;
}
#endif

void notify_ready(void)
{
	send_state("READY=1\nSTATUS=serving");
}

void notify_stopping(void)
{
	send_state("STOPPING=1");
}

void notify_watchdog(void)
{
	send_state("WATCHDOG=1");
}
