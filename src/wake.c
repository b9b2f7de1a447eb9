/*-------------------------------------------------------------------------
 * wake.c
 *	  Waking the worker: the one home of that rule.
 *
 *	  The worker sleeps on its latch (worker.c, wait_until) until it is woken
 *	  or its next due time comes.  It is woken:
 *	  - at COMMIT of a transaction that enqueued something or changed what
 *	    the worker must do: capture (capture.c), a message inserted or set
 *	    back to 'queued' by hand, a setting or an event changed, a webhook
 *	    that lifted a hold, CREATE/ALTER EXTENSION (the SQL triggers and
 *	    functions below all end in wa_wake_worker_at_commit());
 *	  - at once by wa_notify.wake() (SQL), for a nudge from a session.
 *	  A rolled-back or prepared transaction wakes nobody, nor does a
 *	  transaction in another database than wa_notify.database (the worker
 *	  serves that one only: a shop's capture elsewhere gives it nothing to
 *	  do), and the worker's own transactions never wake the worker: it writes the message table and
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
#include "commands/dbcommands.h"
#include "storage/latch.h"

#include "wa_notify.h"

static bool wake_registered = false;	/* XactCallback registered */
static bool wake_at_commit = false;		/* this transaction asked for a wake */

/* True in the worker process itself: it never wakes itself. */
bool		wa_am_worker = false;

/* Set the worker's latch now (no-op when no worker runs, or from it). */
void
wa_wake_worker(void)
{
	Latch	   *latch;

	if (wa_shared == NULL || wa_am_worker)
		return;
	pg_atomic_fetch_add_u64(&wa_shared->wakeups, 1);
	latch = wa_shared->worker_latch;
	if (latch != NULL)
		SetLatch(latch);
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
			wake_at_commit = false;
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			/* a rolled-back (or prepared) transaction wakes nobody */
			wake_at_commit = false;
			break;
		default:
			break;
	}
}

/*
 * Is this backend's database the worker's?  Looked up once (within a
 * transaction: the caller's): wa_notify.database is fixed at server start.
 */
static bool
in_worker_database(void)
{
	static int	answer = -1;

	if (answer < 0)
	{
		char	   *name = get_database_name(MyDatabaseId);

		answer = (wa_database == NULL || name == NULL || strcmp(name, wa_database) == 0);
	}
	return answer == 1;
}

/*
 * Ask for the worker to be woken when the current transaction commits.
 * Cheap enough to call once per captured row.
 */
void
wa_wake_worker_at_commit(void)
{
	if (wa_am_worker || !in_worker_database())
		return;
	if (!wake_registered)
	{
		RegisterXactCallback(wake_xact_callback, NULL);
		wake_registered = true;
	}
	wake_at_commit = true;
}

/* wa_notify.wake(): nudge the worker now (not deferred to commit). */
PG_FUNCTION_INFO_V1(wa_notify_wake);
Datum
wa_notify_wake(PG_FUNCTION_ARGS)
{
	if (wa_shared == NULL || wa_shared->worker_latch == NULL)
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
