/*-------------------------------------------------------------------------
 * relay_guard.c
 *	  What keeps wa_notify_relay on the air under hostile traffic:
 *	    - the body budget: the bytes of request bodies buffered at once, over
 *	      all connections, never exceed body_budget (a reservation is taken
 *	      before a byte is kept, from Content-Length when there is one);
 *	    - the request deadline: every connection is tracked from its accept
 *	      (and again from the end of each answered request); one whose request
 *	      has not fully arrived within request_timeout seconds, whatever the
 *	      trickle rate, is shut down by the sweeper thread.  Requests waiting
 *	      for the database are exempt (statement_timeout bounds them);
 *	    - refused connections (libmicrohttpd's connection_limit and
 *	      per_ip_connection_limit) are counted from its log callback, not
 *	      logged one by one: the sweeper writes one line per burst, and the
 *	      same for connections closed at the deadline;
 *	    - the reasons /healthz says "degraded": each is noted with the time
 *	      it last happened and reported for HEALTH_WINDOW_MS after.
 *
 *	  Locking: the tracked-connection list has one mutex, taken by the
 *	  libmicrohttpd thread when a connection opens or closes and by the
 *	  sweeper while it scans; libmicrohttpd tells a connection's close
 *	  before it closes the socket, so the sweeper never shuts down a file
 *	  descriptor that was reused.  Counters and times are atomics.
 *-------------------------------------------------------------------------
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "relay.h"

/* a reason stays on /healthz this long after it last happened */
#define HEALTH_WINDOW_MS 10000
/* the sweeper's period; a burst ends after this much quiet */
#define SWEEP_PERIOD_MS 100
#define BURST_QUIET_MS 1000
/* a burst that goes on is summarised at least this often */
#define BURST_REPORT_MS 60000
/* libmicrohttpd's own messages: at most one line per this */
#define MHD_LOG_PERIOD_MS 1000
/* file descriptors beyond the connections: listen socket, libpq, logs */
#define FD_RESERVE 64

struct ConnTrack
{
	int			fd;
	atomic_llong since_ms;		/* accepted, or last request answered */
	atomic_bool busy;			/* waiting for the database */
	bool		closed_by_us;
	ConnTrack  *prev;
	ConnTrack  *next;
};

static pthread_mutex_t track_lock = PTHREAD_MUTEX_INITIALIZER;
static ConnTrack *tracked;
static pthread_t sweeper;
static atomic_bool sweeper_stop;

static atomic_size_t budget_used;
static atomic_long refused_total;	/* connections refused over a limit */
static atomic_long deadline_total;	/* connections closed at the deadline */
static atomic_llong degraded_at[6];	/* per reason bit: last time, 0 never */
static atomic_int degraded_now;	/* reasons that hold until cleared */

/* ---------------------------------------------------------- health */

static int
bit_index(int reason)
{
	return __builtin_ctz((unsigned int) reason);
}

void
guard_note(int reason)
{
	atomic_store(&degraded_at[bit_index(reason)], now_ms());
	if (reason == DEGRADED_DATABASE || reason == DEGRADED_PARAMS_LOGGED)
		atomic_fetch_or(&degraded_now, reason);
}

void
guard_clear(int reason)
{
	atomic_fetch_and(&degraded_now, ~reason);
}

int
guard_degraded(void)
{
	int			reasons = atomic_load(&degraded_now);
	int64_t		now = now_ms();

	for (int i = 0; i < 6; i++)
	{
		int64_t		at = atomic_load(&degraded_at[i]);

		if ((1 << i) != DEGRADED_DATABASE && (1 << i) != DEGRADED_PARAMS_LOGGED &&
			at != 0 && now - at < HEALTH_WINDOW_MS)
			reasons |= 1 << i;
	}
	return reasons;
}

void
guard_describe(int reasons, char *buf, size_t len)
{
	static const char *const why[6] = {
		"database unreachable",
		"connections refused over connection_limit or per_ip_connection_limit",
		"connections closed at request_timeout",
		"bodies refused over body_budget",
		"requests waited longer than statement_timeout for a database connection",
		"log_parameter_max_length is not 0 for the relay's role",
	};
	size_t		used = 0;

	buf[0] = '\0';
	for (int i = 0; i < 6; i++)
		if (reasons & (1 << i))
			used += snprintf(buf + used, used < len ? len - used : 0, "%s%s",
							 used ? "; " : "", why[i]);
}

/* ---------------------------------------------------------- budget */

bool
budget_reserve(size_t n)
{
	size_t		used = atomic_load(&budget_used);

	do
	{
		if (used + n > cfg.body_budget)
		{
			guard_note(DEGRADED_BUDGET);
			return false;
		}
	} while (!atomic_compare_exchange_weak(&budget_used, &used, used + n));
	return true;
}

void
budget_release(size_t n)
{
	if (n)
		atomic_fetch_sub(&budget_used, n);
}

/* ------------------------------------------------- libmicrohttpd hooks */

/*
 * libmicrohttpd's messages: refusals are counted (the sweeper logs them per
 * burst); the rest, often one per connection under attack ("connection
 * socket is closed ..."), are logged at most once per MHD_LOG_PERIOD_MS with
 * the number left out.
 */
void
guard_mhd_logger(void *cls, const char *fmt, va_list ap)
{
	static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
	static int64_t last_logged;
	static long left_out;
	char		msg[512];
	size_t		len;
	int64_t		now = now_ms();

	(void) cls;
	if (strstr(fmt, "connection limit") != NULL)
	{
		atomic_fetch_add(&refused_total, 1);
		guard_note(DEGRADED_CONNECTIONS);
		return;
	}
	pthread_mutex_lock(&lock);
	if (last_logged != 0 && now - last_logged < MHD_LOG_PERIOD_MS)
	{
		left_out++;
		pthread_mutex_unlock(&lock);
		return;
	}
	vsnprintf(msg, sizeof(msg), fmt, ap);
	len = strlen(msg);
	while (len > 0 && (msg[len - 1] == '\n' || msg[len - 1] == '\r'))
		msg[--len] = '\0';
	if (left_out > 0)
		logline("libmicrohttpd: %s (and %ld more messages since the last one)", msg, left_out);
	else
		logline("libmicrohttpd: %s", msg);
	left_out = 0;
	last_logged = now;
	pthread_mutex_unlock(&lock);
}

void
guard_notify_connection(void *cls, struct MHD_Connection *c, void **socket_context,
						enum MHD_ConnectionNotificationCode code)
{
	ConnTrack  *t;

	(void) cls;
	if (code == MHD_CONNECTION_NOTIFY_STARTED)
	{
		const union MHD_ConnectionInfo *ci =
			MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);

		t = calloc(1, sizeof(ConnTrack));
		if (t == NULL || ci == NULL)
		{
			free(t);
			*socket_context = NULL;
			return;
		}
		t->fd = ci->connect_fd;
		atomic_store(&t->since_ms, now_ms());
		pthread_mutex_lock(&track_lock);
		t->next = tracked;
		if (tracked)
			tracked->prev = t;
		tracked = t;
		pthread_mutex_unlock(&track_lock);
		*socket_context = t;
	}
	else if (code == MHD_CONNECTION_NOTIFY_CLOSED && (t = *socket_context) != NULL)
	{
		pthread_mutex_lock(&track_lock);
		if (t->prev)
			t->prev->next = t->next;
		else
			tracked = t->next;
		if (t->next)
			t->next->prev = t->prev;
		pthread_mutex_unlock(&track_lock);
		free(t);
		*socket_context = NULL;
	}
}

ConnTrack *
guard_track(struct MHD_Connection *c)
{
	const union MHD_ConnectionInfo *ci =
		MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);

	return ci ? ci->socket_context : NULL;
}

void
guard_busy(ConnTrack *t, bool busy)
{
	if (t)
		atomic_store(&t->busy, busy);
}

/* the next request on this connection has its own request_timeout */
void
guard_request_done(ConnTrack *t)
{
	if (t)
	{
		atomic_store(&t->since_ms, now_ms());
		atomic_store(&t->busy, false);
	}
}

/* ------------------------------------------------------------- sweeper */

typedef struct Burst
{
	const char *what;
	atomic_long *counter;
	long		seen;
	long		count;			/* in this burst */
	int64_t		started;
	int64_t		last;
	int64_t		reported;
} Burst;

static void
burst_tick(Burst *b, int64_t now)
{
	long		total = atomic_load(b->counter);

	if (total != b->seen)
	{
		if (b->count == 0)
			b->started = b->reported = now;
		b->count += total - b->seen;
		b->seen = total;
		b->last = now;
	}
	if (b->count > 0 &&
		(now - b->last >= BURST_QUIET_MS || now - b->reported >= BURST_REPORT_MS))
	{
		logline("%s %ld connections in %.1f s (connection_limit %zu, per_ip_connection_limit %zu,"
				" request_timeout %zu s)", b->what, b->count, (b->last - b->started) / 1000.0,
				cfg.connection_limit, cfg.per_ip_connection_limit, cfg.request_timeout);
		b->count = 0;
		b->started = b->reported = now;
	}
}

static long
close_overdue(int64_t now)
{
	long		closed = 0;
	int64_t		limit = (int64_t) cfg.request_timeout * 1000;

	pthread_mutex_lock(&track_lock);
	for (ConnTrack *t = tracked; t; t = t->next)
		if (!t->closed_by_us && !atomic_load(&t->busy) &&
			now - atomic_load(&t->since_ms) > limit)
		{
			/* libmicrohttpd sees the end of the stream and closes it */
			shutdown(t->fd, SHUT_RDWR);
			t->closed_by_us = true;
			closed++;
		}
	pthread_mutex_unlock(&track_lock);
	return closed;
}

static void *
sweep(void *arg)
{
	Burst		refused = {"refused", &refused_total, 0, 0, 0, 0, 0};
	Burst		overdue = {"closed at the request deadline", &deadline_total, 0, 0, 0, 0, 0};

	(void) arg;
	while (!atomic_load(&sweeper_stop))
	{
		struct timespec ts = {0, SWEEP_PERIOD_MS * 1000000L};
		int64_t		now = now_ms();
		long		closed = close_overdue(now);

		if (closed > 0)
		{
			atomic_fetch_add(&deadline_total, closed);
			guard_note(DEGRADED_DEADLINE);
		}
		burst_tick(&refused, now);
		burst_tick(&overdue, now);
		nanosleep(&ts, NULL);
	}
	return NULL;
}

void
guard_start(void)
{
	if (pthread_create(&sweeper, NULL, sweep, NULL) != 0)
	{
		logline("cannot start the sweeper thread");
		exit(1);
	}
}

void
guard_stop(void)
{
	atomic_store(&sweeper_stop, true);
	pthread_join(sweeper, NULL);
}

/*
 * Raise the open-file limit to what `want` connections need; returns the
 * number of connections the limit allows.
 */
size_t
guard_fd_limit(size_t want)
{
	struct rlimit rl;
	rlim_t		need = (rlim_t) want + cfg.pool_size + FD_RESERVE;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return want;
	if (rl.rlim_cur < need)
	{
		rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= need ? need : rl.rlim_max;
		(void) setrlimit(RLIMIT_NOFILE, &rl);
		(void) getrlimit(RLIMIT_NOFILE, &rl);
	}
	if (rl.rlim_cur >= need)
		return want;
	return rl.rlim_cur > cfg.pool_size + FD_RESERVE + 16 ?
		(size_t) (rl.rlim_cur - cfg.pool_size - FD_RESERVE) : 16;
}
