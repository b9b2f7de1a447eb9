/*-------------------------------------------------------------------------
 * wake.c
 *	  Waking the worker (and the launcher): the one home of that rule.
 *
 *	  The worker sleeps on its latch (worker.c, wait_until) until it is woken
 *	  or its next due time comes.  It is woken:
 *	  - at COMMIT of a transaction that enqueued something or changed what
 *	    the worker must do: capture (capture.c), a message inserted or set
 *	    back to 'queued' by hand, a setting or an event changed, a webhook
 *	    that lifted a hold, CREATE/ALTER EXTENSION (the SQL triggers and
 *	    functions below all end in wa_wake_worker_at_commit());
 *	  - at once by wa_notify.wake() (SQL), for a nudge from a session.
 *	  Each database has its own worker (launcher.c): a wake-up goes to the
 *	  current database's.  When that database has no worker running (CREATE
 *	  EXTENSION in a database the launcher does not serve yet), the wake-up
 *	  goes to the launcher instead, as a request for a worker -- unless the
 *	  database is known to be left unserved (wa_notify.max_databases), so
 *	  that its captures do not wake the launcher for nothing.  The launcher
 *	  is also woken at the commit of CREATE DATABASE and DROP DATABASE
 *	  (launcher.c's utility hook asks here).
 *	  A rolled-back or prepared transaction wakes nobody, and the worker's own
 *	  transactions never wake the worker: it writes the message table and
 *	  the event table itself, and a self-wake would make it spin.
 *
 *	  SQL entry points: wake(), _wake_on_commit(), the trigger function
 *	  wa_notify_wake_trigger (1.0's _wake_at_commit, 1.1's _wake_trigger).
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "commands/trigger.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "storage/spin.h"
#include "storage/latch.h"

#include "wa_notify.h"

static bool wake_registered = false;	/* XactCallback registered */
static bool wake_at_commit = false;		/* this transaction asked for a wake */
static bool launcher_at_commit = false; /* ... for the launcher to look again */

static void register_callback(void);

/* True in the worker process itself: it never wakes itself. */
bool		wa_am_worker = false;

/*
 * Set this database's worker's latch now (no-op from the worker itself);
 * no worker running: ask the launcher for one.
 */
void
wa_wake_worker(void)
{
	WaDbSlot   *slot;
	Latch	   *latch = NULL;

	if (wa_shared == NULL || wa_am_worker)
		return;
	slot = wa_db_slot(MyDatabaseId);
	if (slot != NULL)
	{
		pg_atomic_fetch_add_u64(&slot->wakeups, 1);
		latch = slot->worker_latch;
	}
	if (latch != NULL)
		SetLatch(latch);
	else if (!wa_db_unserved(MyDatabaseId))
		wa_launcher_request(MyDatabaseId);
}

static void
wake_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			if (wake_at_commit)
				wa_wake_worker();
			if (launcher_at_commit)
				wa_launcher_rescan();
			wake_at_commit = false;
			launcher_at_commit = false;
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			/* a rolled-back (or prepared) transaction wakes nobody */
			wake_at_commit = false;
			launcher_at_commit = false;
			break;
		default:
			break;
	}
}

/*
 * Ask for the worker to be woken when the current transaction commits.
 * Cheap enough to call once per captured row.
 */
void
wa_wake_worker_at_commit(void)
{
	if (wa_am_worker)
		return;
	register_callback();
	wake_at_commit = true;
}

static void
register_callback(void)
{
	if (!wake_registered)
	{
		RegisterXactCallback(wake_xact_callback, NULL);
		wake_registered = true;
	}
}

/* Ask for the launcher to look at pg_database again when this transaction commits. */
void
wa_wake_launcher_at_commit(void)
{
	register_callback();
	launcher_at_commit = true;
}

/* wa_notify.wake(): nudge the worker now (not deferred to commit). */
PG_FUNCTION_INFO_V1(wa_notify_wake);
Datum
wa_notify_wake(PG_FUNCTION_ARGS)
{
	WaDbSlot   *slot = wa_db_slot(MyDatabaseId);

	if (slot == NULL || slot->worker_latch == NULL)
		PG_RETURN_BOOL(false);
	wa_wake_worker();
	PG_RETURN_BOOL(true);
}

/* wa_notify._wake_on_commit(): wake the worker when this transaction commits */
PG_FUNCTION_INFO_V1(wa_notify_wake_on_commit);
Datum
wa_notify_wake_on_commit(PG_FUNCTION_ARGS)
{
	wa_wake_worker_at_commit();
	PG_RETURN_VOID();
}

/* trigger: wake the worker when the transaction commits */
PG_FUNCTION_INFO_V1(wa_notify_wake_trigger);
Datum
wa_notify_wake_trigger(PG_FUNCTION_ARGS)
{
	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("wa_notify._wake_trigger() must be called as a trigger")));
	wa_wake_worker_at_commit();
	return PointerGetDatum(NULL);
}
