/*-------------------------------------------------------------------------
 * relay.h
 *	  What the files of wa_notify_relay share: the settings (relay_config.c),
 *	  the log line, the database pool (relay_db.c), and the guards against
 *	  hostile traffic (relay_guard.c).  wa_notify_relay.c is the HTTP side.
 *-------------------------------------------------------------------------
 */
#ifndef WA_RELAY_H
#define WA_RELAY_H

#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

#include <microhttpd.h>

#if MHD_VERSION < 0x00097002
#define MHD_RESULT int
#else
#define MHD_RESULT enum MHD_Result
#endif

/* ------------------------------------------------------------ settings */

/* the keys of the config file, each with its default and range (one table) */
typedef struct Config
{
	char	   *listen;
	char	   *path;
	char	   *conninfo;		/* NULL: libpq's environment */
	size_t		max_body;		/* bytes: one body's cap */
	size_t		body_budget;	/* bytes: all bodies buffered at once */
	size_t		pool_size;		/* database connections (and their threads) */
	size_t		timeout;		/* s: idle HTTP connection */
	size_t		request_timeout;	/* s: headers and body, absolute */
	size_t		connection_limit;	/* HTTP connections at once */
	size_t		per_ip_connection_limit;	/* the same per peer address, 0 off */
	size_t		statement_timeout;	/* ms, on the relay's sessions */
	size_t		lock_timeout;	/* ms, on the relay's sessions */
} Config;

extern Config cfg;

extern void config_defaults(void);
extern bool config_read(const char *file);
extern bool config_check(void);
extern void config_usage(FILE *f);

extern void logline(const char *fmt,...) __attribute__((format(printf, 1, 2)));
extern int64_t now_ms(void);	/* monotonic */

/* ------------------------------------------------------------- requests */

typedef enum JobKind
{
	JOB_NONE = 0,
	JOB_RECEIVE,				/* webhook_receive(body, signature) */
	JOB_VERIFY,					/* webhook_verify(mode, token, challenge) */
	JOB_HEALTH					/* SELECT 1 */
} JobKind;

typedef struct ConnTrack ConnTrack;

/* One HTTP request; between queueing and the answer it belongs to relay_db.c */
typedef struct Req
{
	struct MHD_Connection *conn;
	ConnTrack  *track;
	int64_t		start_ms;
	bool		is_post;
	bool		too_large;
	bool		over_budget;
	bool		answered;		/* a response was queued */
	JobKind		job;
	atomic_bool done;			/* the database answered (result_* are set) */
	char	   *body;
	size_t		len;
	size_t		cap;
	size_t		reserved;		/* bytes of the body budget held */
	char	   *args[3];		/* copies: signature, or mode/token/challenge */
	int64_t		queued_ms;
	struct Req *next;			/* the job queue */
	unsigned int result_status;
	const char *result_type;
	char	   *result_text;	/* malloc'd */
	unsigned int status;		/* answered with */
	char		sqlstate[6];
	char		method[8];
	char		path[65];		/* printable ASCII, truncated */
} Req;

/* ------------------------------------------------------- database pool */

extern void db_start(void);
extern void db_enqueue(Req *r);
extern void db_stop(void);

/* --------------------------------------------------------------- guard */

/* reasons /healthz reports "degraded" (bits) */
enum
{
	DEGRADED_DATABASE = 1,		/* the last connection attempt failed */
	DEGRADED_CONNECTIONS = 2,	/* connections refused over a limit */
	DEGRADED_DEADLINE = 4,		/* connections closed at the request deadline */
	DEGRADED_BUDGET = 8,		/* bodies refused over the memory budget */
	DEGRADED_POOL = 16,			/* requests waited too long for the pool */
	DEGRADED_PARAMS_LOGGED = 32 /* log_parameter_max_length is not 0 */
};

extern void guard_note(int reason);
extern void guard_clear(int reason);
extern int	guard_degraded(void);
extern void guard_describe(int reasons, char *buf, size_t len);

extern bool budget_reserve(size_t n);
extern void budget_release(size_t n);

extern void guard_mhd_logger(void *cls, const char *fmt, va_list ap);
extern void guard_notify_connection(void *cls, struct MHD_Connection *c,
									void **socket_context,
									enum MHD_ConnectionNotificationCode code);
extern ConnTrack *guard_track(struct MHD_Connection *c);
extern void guard_busy(ConnTrack *t, bool busy);
extern void guard_request_done(ConnTrack *t);
extern void guard_start(void);
extern void guard_stop(void);
extern size_t guard_fd_limit(size_t want);

#endif							/* WA_RELAY_H */
