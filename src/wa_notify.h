/*-------------------------------------------------------------------------
 * wa_notify.h
 *	  Declarations shared by the C files of wa_notify.
 *
 * Each .c file owns one concern (see its header comment); this header holds
 * only what crosses file boundaries: GUCs, the shared-memory block, and the
 * entry points of each concern.
 *-------------------------------------------------------------------------
 */
#ifndef WA_NOTIFY_H
#define WA_NOTIFY_H

#include "postgres.h"
#include "executor/spi.h"
#include "storage/latch.h"
#include "port/atomics.h"
#include "datatype/timestamp.h"
#include "storage/spin.h"

/* GUCs (wa_notify.c) */
extern char *wa_database;		/* '' : every database; else a list */
extern int	wa_max_databases;

/*
 * Shared memory (wa_notify.c lays it out; launcher.c owns the slots' life).
 *
 * One slot per database worker (wa_notify.max_databases of them).  The
 * launcher assigns a slot to a database before it starts the worker and
 * frees it when the database no longer needs one; the worker publishes its
 * latch and pid in its slot, so that committing backends of that database
 * (capture, wake()) can set it.  The counters stay with the slot while the
 * database keeps it, so a restarted worker counts its restarts.
 */
typedef struct WaDbSlot
{
	Oid			dboid;			/* InvalidOid: free (changed under mutex) */
	bool		starting;		/* registered by the launcher, not attached yet */
	Latch	   *worker_latch;	/* NULL while no worker runs */
	pid_t		worker_pid;
	int			exit_reason;	/* WaWorkerExit: what the last worker said */
	pg_atomic_uint64 wakeups;	/* wake requests sent (wake.c) */
	pg_atomic_uint64 wakes_seen;	/* latch wake-ups the worker handled */
	pg_atomic_uint64 worker_starts; /* worker processes started for it */
	TimestampTz worker_started_at;	/* the running worker's start */
} WaDbSlot;

/* Why a database's worker exited (WaDbSlot.exit_reason). */
typedef enum WaWorkerExit
{
	WA_EXIT_UNKNOWN = 0,		/* died, terminated, error: the launcher restarts it */
	WA_EXIT_NO_EXTENSION,		/* the database has no wa_notify: not restarted */
	WA_EXIT_DATABASE_GOING		/* DROP DATABASE asked it to leave */
} WaWorkerExit;

#define WA_LAUNCHER_REQUESTS	16	/* databases asking for a worker, queued */
#define WA_UNSERVED_MAX			64	/* databases left unserved, remembered */
#define WA_DROPPING_MAX			8	/* databases being dropped at once */

typedef struct WaShared
{
	slock_t		mutex;			/* the fields below but the counters */
	Latch	   *launcher_latch; /* NULL while no launcher runs */
	pid_t		launcher_pid;
	int			n_requests;		/* requests[]: CREATE EXTENSION, wake() */
	Oid			requests[WA_LAUNCHER_REQUESTS];
	bool		rescan;			/* requests overflowed, CREATE DATABASE: look at all */
	Oid			probe_dboid;	/* the database a probe is looking at */
	int			probe_result;	/* 1: has the extension, 0: not, -1: pending */
	int			n_unserved;		/* over wa_notify.max_databases (the launcher writes) */
	Oid			unserved[WA_UNSERVED_MAX];
	Oid			dropping[WA_DROPPING_MAX];	/* DROP DATABASE in progress */
	pg_atomic_uint64 config_generation; /* bumped when a transaction that
										 * wrote the configuration tables
										 * commits, in any database
										 * (settings.c) */
	int			n_slots;
	WaDbSlot	slots[FLEXIBLE_ARRAY_MEMBER];
} WaShared;

extern WaShared *wa_shared;		/* NULL when not preloaded */
extern Size wa_shared_size(void);

/* launcher.c: one worker per database */
extern void wa_launcher_init(void);
extern PGDLLEXPORT void wa_launcher_main(Datum main_arg);
extern WaDbSlot *wa_db_slot(Oid dboid);
extern bool wa_db_unserved(Oid dboid);
extern bool wa_db_dropping(Oid dboid);
extern void wa_launcher_request(Oid dboid);
extern void wa_launcher_rescan(void);
extern void wa_install_sigterm_handler(void);
extern bool wa_terminated_by_postmaster(void);
extern WaDbSlot *wa_worker_attach(Oid dboid);
extern void wa_worker_set_exit(WaDbSlot *slot, WaWorkerExit reason);
extern void wa_probe_report(Oid dboid, bool has_extension);

/* bgw_extra of a database worker */
typedef struct WaWorkerArgs
{
	bool		listed;			/* named in wa_notify.database: waits for CREATE EXTENSION */
	bool		probe;			/* only say whether the extension is there, then exit */
} WaWorkerArgs;

/* wake.c: the one home of waking the worker */
extern bool wa_am_worker;
extern void wa_wake_worker(void);
extern void wa_wake_worker_at_commit(void);
extern void wa_wake_launcher_at_commit(void);

/*
 * SPI_prepare_cursor + SPI_keepplan, with an error naming the statement when
 * it does not prepare (wa_notify.c).  Callers cache the plan for the backend.
 */
extern SPIPlanPtr wa_prepare_kept(const char *sql, int nargs, Oid *types, int cursor_options);

/* capture_expr.c: fires_when compiled in C, and capture's subtransaction */
typedef struct WaFiresWhen WaFiresWhen;
struct TupleTableSlot;
extern bool wa_run_protected(void (*fn) (void *), void *arg, char **error);
extern WaFiresWhen *wa_fires_lookup(int64 watch_id, Oid relid, const char *expr,
									const char *path, const char *alias);
extern bool wa_fires_eval(WaFiresWhen *e, struct TupleTableSlot *newslot,
						  struct TupleTableSlot *oldslot, char **error);
extern bool wa_fires_current(WaFiresWhen *e);
extern bool wa_fires_reads_any(WaFiresWhen *e, const struct Bitmapset *columns);

/* worker.c */
extern PGDLLEXPORT void wa_worker_main(Datum main_arg);
extern void wa_worker_define_gucs(void);
extern int	wa_request_timeout;

/* phone.c: E.164 normalisation, Brazilian ninth-digit key */
extern bool wa_phone_normalize(const char *input, const char *default_cc,
							   char *out, size_t outlen, const char **error);
extern void wa_phone_key(const char *e164, char *out, size_t outlen);

#define WA_PHONE_MAXLEN 16		/* 15 digits + NUL */

/* secrets.c: the secrets file, the one secret lookup, callback data, the log hook */
extern char *wa_secrets_file;
extern void wa_secrets_init(void);
extern bool wa_secrets_file_set(void);
extern const char *wa_secrets_problem(void);
extern char *wa_secret_get(const char *sender, const char *name);
extern char *wa_callback_data(int64 message_id);
extern bool wa_callback_data_check(const char *data, int64 *message_id);
extern void wa_hmac_sha256(const char *key, const void *data, size_t len, unsigned char out[32]);

#endif							/* WA_NOTIFY_H */
