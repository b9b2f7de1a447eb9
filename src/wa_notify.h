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

/* GUCs (wa_notify.c) */
extern char *wa_database;

/*
 * Shared memory (wa_notify.c).  The worker publishes its latch here so that
 * committing backends (capture) and wake() can set it.
 */
typedef struct WaShared
{
	Latch	   *worker_latch;	/* NULL while no worker runs */
	pid_t		worker_pid;
	pg_atomic_uint64 wakeups;	/* wake requests sent (wake.c) */
	pg_atomic_uint64 wakes_seen;	/* latch wake-ups the worker handled */
	pg_atomic_uint64 worker_starts; /* worker processes started since boot */
	TimestampTz worker_started_at;	/* the running worker's start */
} WaShared;

extern WaShared *wa_shared;		/* NULL when not preloaded */

/* wake.c: the one home of waking the worker */
extern bool wa_am_worker;
extern void wa_wake_worker(void);
extern void wa_wake_worker_at_commit(void);

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

#endif							/* WA_NOTIFY_H */
