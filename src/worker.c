/*-------------------------------------------------------------------------
 * worker.c
 *	  The background worker's main loop.  (Foundation stage: it connects to
 *	  wa_notify.database, publishes its latch, names itself in
 *	  pg_stat_activity and waits; dispatch arrives with the dispatcher.)
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/backend_status.h"

#include "wa_notify.h"

static void
wa_worker_detach(int code, Datum arg)
{
	if (wa_shared && wa_shared->worker_latch == &MyProc->procLatch)
	{
		wa_shared->worker_latch = NULL;
		wa_shared->worker_pid = 0;
	}
}

void
wa_worker_main(Datum main_arg)
{
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, SignalHandlerForShutdownRequest);
	BackgroundWorkerUnblockSignals();

	BackgroundWorkerInitializeConnection(wa_database, NULL, 0);
	pgstat_report_appname("wa_notify worker");

	if (wa_shared)
	{
		wa_shared->worker_latch = &MyProc->procLatch;
		wa_shared->worker_pid = MyProcPid;
		on_shmem_exit(wa_worker_detach, (Datum) 0);
	}
	elog(LOG, "wa_notify worker started for database \"%s\"", wa_database);
	pgstat_report_activity(STATE_IDLE, "idle");

	while (!ShutdownRequestPending)
	{
		(void) WaitLatch(MyLatch,
						 WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 60 * 1000L, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
	}
	proc_exit(0);
}
