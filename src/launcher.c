/*-------------------------------------------------------------------------
 * launcher.c
 *	  One worker per database: the launcher, the database slots' life, and
 *	  the utility hook that keeps our workers out of the way of DROP
 *	  DATABASE.
 *
 *	  The launcher ("wa_notify launcher" in pg_stat_activity) is a
 *	  background worker registered at preload.  It connects to no database:
 *	  it reads the shared catalog pg_database, and for each database that
 *	  may be served (it accepts connections, is no template, is named in
 *	  wa_notify.database when that list is set) it first starts a short
 *	  probe ("wa_notify probe": connect, look at pg_extension, report in
 *	  shared memory, exit), then a dispatcher ("wa_notify worker",
 *	  worker.c) for each database that has the extension, at most
 *	  wa_notify.max_databases of them.  A database named in the list gets
 *	  its worker without a probe: it waits for CREATE EXTENSION, as 1.0's
 *	  single worker did.  The databases left over are named in a WARNING and
 *	  listed in shared memory, where their status card reads it.
 *
 *	  Why this shape.  pg_extension is a per-database catalog: only a
 *	  process connected to a database can see it, so a probe looks (the
 *	  TimescaleDB loader's launcher does the same).  Probes run one at a
 *	  time, so that they never take more than one background worker slot.
 *	  The dispatchers are dynamic workers that the postmaster never restarts
 *	  (BGW_NEVER_RESTART): after a crash the postmaster forgets them and the
 *	  restarted launcher starts them afresh (a restartable dynamic worker
 *	  would survive the crash and be started a second time by the new
 *	  launcher).  The launcher restarts a worker that exited for an unknown
 *	  reason (pg_terminate_backend(), an error) after WA_RESTART_DELAY,
 *	  and only when its database still exists and is not being dropped: it
 *	  never starts a process for a database that is gone, so the server
 *	  log never shows a FATAL for one.
 *
 *	  When the launcher looks again.  It sleeps on its latch and is woken:
 *	  by a worker's start or exit (bgw_notify_pid), by a database asking
 *	  for service (CREATE EXTENSION's commit, wake.c), by the commit of
 *	  CREATE DATABASE and DROP DATABASE (this file's utility hook, through
 *	  wake.c), and when a restart falls due.  On a standby it also looks
 *	  once a second for the promotion, then probes again the databases that
 *	  had no extension (CREATE EXTENSION may have been replayed).  Idle, it
 *	  does no transaction and no wake-up.
 *
 *	  DROP DATABASE.  PostgreSQL refuses to drop a database another process
 *	  is connected to.  The utility hook marks the database "dropping" in
 *	  shared memory (the launcher starts nothing for it, a worker starting
 *	  for it leaves before connecting), asks its worker to exit (SIGTERM)
 *	  and waits for it, WA_DROP_WAIT at most, then lets the DROP run.  A
 *	  failed DROP clears the mark and the worker comes back at once; a
 *	  successful one leaves it until the launcher sees the database gone.
 *
 *	  Locking: wa_shared->mutex (a spinlock) guards the slots' dboid and
 *	  starting flags, the request list, the probe fields and the unserved
 *	  and dropping lists; each holder does a few assignments only.  Readers
 *	  that only wake (wake.c) read a slot's dboid and latch without it: at
 *	  worst a wake-up goes to a worker that is leaving.
 *
 *	  Also here: the SIGTERM handler shared by the launcher and the workers
 *	  (a shutdown exits 0, anyone else's SIGTERM exits 1).
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <signal.h>

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/pg_database.h"
#include "commands/dbcommands.h"
#include "commands/defrem.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "replication/syncrep.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "tcop/utility.h"
#include "utils/acl.h"
#include "utils/backend_status.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/varlena.h"

#include "wa_notify.h"
#include "graph.h"

#define WA_RESTART_DELAY	5.0		/* a worker that exited unexpectedly, s */
#define WA_STANDBY_POLL		1.0		/* a standby's launcher looks for the promotion, s */
#define WA_DROP_WAIT		10.0	/* DROP DATABASE waits this long for our worker, s */

/* ------------------------------------------------- SIGTERM, shared */

static volatile sig_atomic_t terminated_by_postmaster = false;

static void
wa_sigterm(int signo, siginfo_t *info, void *context)
{
	int			save_errno = errno;

	if (info != NULL && info->si_pid == PostmasterPid)
		terminated_by_postmaster = true;
	ShutdownRequestPending = true;
	/*
	 * A commit waiting for a synchronous standby that is gone (a failover
	 * promoted it) would hold the shutdown for ever: cancel that wait as
	 * die() does for a backend.  The commit stays local, and the worker
	 * ends at its next CHECK_FOR_INTERRUPTS(), before any request starts
	 * (worker.c, stop_if_dying()).
	 */
	if (MyProc != NULL && MyProc->syncRepState == SYNC_REP_WAITING)
	{
		ProcDiePending = true;
		InterruptPending = true;
	}
	SetLatch(MyLatch);
	errno = save_errno;
}

/*
 * SIGTERM sets ShutdownRequestPending and remembers whether the postmaster
 * sent it (a shutdown) or someone else did (pg_terminate_backend()).
 */
void
wa_install_sigterm_handler(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = wa_sigterm;
	sa.sa_flags = SA_SIGINFO | SA_RESTART;
	sigfillset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
}

bool
wa_terminated_by_postmaster(void)
{
	return terminated_by_postmaster;
}

/* ------------------------------------------------- shared lists */

WaDbSlot *
wa_db_slot(Oid dboid)
{
	if (wa_shared == NULL || !OidIsValid(dboid))
		return NULL;
	for (int i = 0; i < wa_shared->n_slots; i++)
		if (wa_shared->slots[i].dboid == dboid)
			return &wa_shared->slots[i];
	return NULL;
}

static bool
oid_in(const Oid *list, int n, Oid dboid)
{
	for (int i = 0; i < n; i++)
		if (list[i] == dboid)
			return true;
	return false;
}

bool
wa_db_unserved(Oid dboid)
{
	bool		found;

	if (wa_shared == NULL)
		return false;
	SpinLockAcquire(&wa_shared->mutex);
	found = oid_in(wa_shared->unserved, wa_shared->n_unserved, dboid);
	SpinLockRelease(&wa_shared->mutex);
	return found;
}

bool
wa_db_dropping(Oid dboid)
{
	bool		found;

	if (wa_shared == NULL)
		return false;
	SpinLockAcquire(&wa_shared->mutex);
	found = oid_in(wa_shared->dropping, WA_DROPPING_MAX, dboid);
	SpinLockRelease(&wa_shared->mutex);
	return found;
}

/* A database asks for a worker (wake.c: a commit that wants one, none runs). */
void
wa_launcher_request(Oid dboid)
{
	Latch	   *latch;

	if (wa_shared == NULL)
		return;
	SpinLockAcquire(&wa_shared->mutex);
	if (!oid_in(wa_shared->requests, Min(wa_shared->n_requests, WA_LAUNCHER_REQUESTS), dboid))
	{
		if (wa_shared->n_requests < WA_LAUNCHER_REQUESTS)
			wa_shared->requests[wa_shared->n_requests] = dboid;
		/* past the end: the launcher probes every database again */
		wa_shared->n_requests = Min(wa_shared->n_requests + 1, WA_LAUNCHER_REQUESTS + 1);
	}
	latch = wa_shared->launcher_latch;
	SpinLockRelease(&wa_shared->mutex);
	if (latch)
		SetLatch(latch);
}

/* CREATE DATABASE, DROP DATABASE committed: look at pg_database again. */
void
wa_launcher_rescan(void)
{
	Latch	   *latch;

	if (wa_shared == NULL)
		return;
	SpinLockAcquire(&wa_shared->mutex);
	wa_shared->rescan = true;
	latch = wa_shared->launcher_latch;
	SpinLockRelease(&wa_shared->mutex);
	if (latch)
		SetLatch(latch);
}

/* ------------------------------------------------- the worker's side */

static WaDbSlot *my_slot = NULL;

static void
worker_detach(int code, Datum arg)
{
	Latch	   *launcher;

	if (my_slot == NULL)
		return;
	SpinLockAcquire(&wa_shared->mutex);
	if (my_slot->worker_pid == MyProcPid)
	{
		my_slot->worker_latch = NULL;
		my_slot->worker_pid = 0;
	}
	launcher = wa_shared->launcher_latch;
	SpinLockRelease(&wa_shared->mutex);
	my_slot = NULL;
	if (launcher)
		SetLatch(launcher);
}

/*
 * The worker takes its database's slot (the launcher assigned it).  NULL:
 * no slot, or another live worker holds it; the caller exits quietly.
 */
WaDbSlot *
wa_worker_attach(Oid dboid)
{
	WaDbSlot   *slot = wa_db_slot(dboid);
	bool		ok = false;

	if (slot == NULL)
		return NULL;
	SpinLockAcquire(&wa_shared->mutex);
	if (slot->dboid == dboid &&
		(slot->worker_pid == 0 || kill(slot->worker_pid, 0) != 0))
	{
		slot->worker_latch = &MyProc->procLatch;
		slot->worker_pid = MyProcPid;
		slot->starting = false;
		slot->exit_reason = WA_EXIT_UNKNOWN;
		slot->worker_started_at = GetCurrentTimestamp();
		ok = true;
	}
	SpinLockRelease(&wa_shared->mutex);
	if (!ok)
		return NULL;
	pg_atomic_fetch_add_u64(&slot->worker_starts, 1);
	my_slot = slot;
	on_shmem_exit(worker_detach, (Datum) 0);
	return slot;
}

void
wa_worker_set_exit(WaDbSlot *slot, WaWorkerExit reason)
{
	if (slot)
		slot->exit_reason = reason;
}

void
wa_probe_report(Oid dboid, bool has_extension)
{
	SpinLockAcquire(&wa_shared->mutex);
	if (wa_shared->probe_dboid == dboid)
		wa_shared->probe_result = has_extension ? 1 : 0;
	SpinLockRelease(&wa_shared->mutex);
}

/* ------------------------------------------------- the launcher's table */

typedef enum WaDbState
{
	DB_NEW,						/* not looked at yet: probe (or start, if listed) */
	DB_SERVED,					/* holds a slot: a worker runs, starts or restarts */
	DB_NO_EXTENSION,			/* probed: no wa_notify there */
	DB_UNSERVED					/* wants a worker, none free (max_databases) */
} WaDbState;

typedef struct WaLaunchDb
{
	Oid			oid;
	NameData	name;
	bool		listed;			/* named in wa_notify.database */
	bool		has_extension;	/* the probe saw it */
	bool		seen;			/* in the last scan of pg_database */
	WaDbState	state;
	int			slot;			/* DB_SERVED: index in wa_shared->slots */
	double		restart_at;		/* DB_SERVED, no worker: start again then (0: not due) */
	BackgroundWorkerHandle *handle;
} WaLaunchDb;

static MemoryContext launcher_cxt;
static WaLaunchDb *dbs = NULL;
static int	n_dbs = 0;
static int	cap_dbs = 0;
static List *listed_names = NIL;	/* wa_notify.database, split */
static bool scan_due = true;
static bool first_scan = true;
static BackgroundWorkerHandle *probe_handle = NULL;
static WaLaunchDb *probe_db = NULL;
static char *reported_unserved = NULL;	/* the names last warned about */
static Oid *all_oids = NULL;	/* every database of the last scan, served or not */
static int	n_all_oids = 0;

static void refind_probe_db(void);

static bool
name_listed(const char *name)
{
	ListCell   *lc;

	foreach(lc, listed_names)
		if (strcmp((const char *) lfirst(lc), name) == 0)
			return true;
	return false;
}

static WaLaunchDb *
db_find(Oid oid)
{
	for (int i = 0; i < n_dbs; i++)
		if (dbs[i].oid == oid)
			return &dbs[i];
	return NULL;
}

static WaLaunchDb *
db_add(Oid oid, const char *name)
{
	WaLaunchDb *db;
	WaDbSlot   *slot = wa_db_slot(oid);

	if (n_dbs == cap_dbs)
	{
		cap_dbs = Max(16, cap_dbs * 2);
		dbs = dbs ? repalloc(dbs, sizeof(WaLaunchDb) * cap_dbs)
			: MemoryContextAlloc(launcher_cxt, sizeof(WaLaunchDb) * cap_dbs);
		refind_probe_db();		/* pointers into the array moved */
	}
	db = &dbs[n_dbs++];
	memset(db, 0, sizeof(*db));
	db->oid = oid;
	namestrcpy(&db->name, name);
	db->state = DB_NEW;
	if (slot != NULL)
	{
		/* a slot from a previous launcher: its worker may still run */
		db->state = DB_SERVED;
		db->slot = slot - wa_shared->slots;
		db->has_extension = true;
		slot->starting = false;
	}
	return db;
}

/* Allocate a free slot to db (counters start at zero); false: none free. */
static bool
slot_take(WaLaunchDb *db)
{
	bool		ok = false;

	SpinLockAcquire(&wa_shared->mutex);
	for (int i = 0; i < wa_shared->n_slots && !ok; i++)
	{
		WaDbSlot   *slot = &wa_shared->slots[i];

		if (OidIsValid(slot->dboid))
			continue;
		slot->dboid = db->oid;
		slot->starting = false;
		slot->worker_latch = NULL;
		slot->worker_pid = 0;
		slot->exit_reason = WA_EXIT_UNKNOWN;
		slot->worker_started_at = 0;
		pg_atomic_write_u64(&slot->wakeups, 0);
		pg_atomic_write_u64(&slot->wakes_seen, 0);
		pg_atomic_write_u64(&slot->worker_starts, 0);
		db->slot = i;
		ok = true;
	}
	SpinLockRelease(&wa_shared->mutex);
	return ok;
}

static void
slot_release(WaLaunchDb *db)
{
	SpinLockAcquire(&wa_shared->mutex);
	wa_shared->slots[db->slot].dboid = InvalidOid;
	wa_shared->slots[db->slot].starting = false;
	SpinLockRelease(&wa_shared->mutex);
	if (db->handle)
		pfree(db->handle);
	db->handle = NULL;
	db->restart_at = 0;
}

/* ------------------------------------------------- starting processes */

static bool
register_worker(WaLaunchDb *db, bool probe, BackgroundWorkerHandle **handle)
{
	BackgroundWorker w;
	WaWorkerArgs args = {db->listed, probe};

	memset(&w, 0, sizeof(w));
	w.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	/* started on a standby too: the worker idles there and serves after promotion */
	w.bgw_start_time = BgWorkerStart_ConsistentState;
	w.bgw_restart_time = BGW_NEVER_RESTART;	/* the launcher restarts it */
	snprintf(w.bgw_library_name, BGW_MAXLEN, "wa_notify");
	snprintf(w.bgw_function_name, BGW_MAXLEN, "wa_worker_main");
	snprintf(w.bgw_name, BGW_MAXLEN, "wa_notify %s for database %s",
			 probe ? "probe" : "worker", NameStr(db->name));
	snprintf(w.bgw_type, BGW_MAXLEN, probe ? "wa_notify probe" : "wa_notify worker");
	w.bgw_main_arg = ObjectIdGetDatum(db->oid);
	StaticAssertStmt(sizeof(WaWorkerArgs) <= BGW_EXTRALEN, "worker arguments fit in bgw_extra");
	memcpy(w.bgw_extra, &args, sizeof(args));
	w.bgw_notify_pid = MyProcPid;
	if (RegisterDynamicBackgroundWorker(&w, handle))
		return true;
	ereport(WARNING,
			(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
			 errmsg("wa_notify could not start a process for database \"%s\"", NameStr(db->name)),
			 errdetail("No background worker slot is free."),
			 errhint("Raise max_worker_processes to at least wa_notify.max_databases plus two, plus what parallel queries use.")));
	return false;
}

/* Start (or restart) db's worker in its slot. */
static void
start_worker(WaLaunchDb *db)
{
	BackgroundWorkerHandle *handle;

	if (db->handle)
		pfree(db->handle);
	db->handle = NULL;
	wa_shared->slots[db->slot].starting = true;
	if (register_worker(db, false, &handle))
	{
		db->handle = handle;
		db->restart_at = 0;
	}
	else
	{
		wa_shared->slots[db->slot].starting = false;
		db->restart_at = wa_now() + WA_RESTART_DELAY;
	}
}

static void
start_probe(WaLaunchDb *db)
{
	SpinLockAcquire(&wa_shared->mutex);
	wa_shared->probe_dboid = db->oid;
	wa_shared->probe_result = -1;
	SpinLockRelease(&wa_shared->mutex);
	if (register_worker(db, true, &probe_handle))
		probe_db = db;
	else
	{
		probe_handle = NULL;
		SpinLockAcquire(&wa_shared->mutex);
		wa_shared->probe_dboid = InvalidOid;
		SpinLockRelease(&wa_shared->mutex);
	}
}

static bool
handle_stopped(BackgroundWorkerHandle *h)
{
	pid_t		pid;

	return h == NULL || GetBackgroundWorkerPid(h, &pid) == BGWH_STOPPED;
}

/* ------------------------------------------------- the loop's steps */

/* Requests from databases (CREATE EXTENSION): probe them again. */
static void
take_requests(void)
{
	Oid			req[WA_LAUNCHER_REQUESTS];
	int			n;
	bool		all;

	SpinLockAcquire(&wa_shared->mutex);
	n = Min(wa_shared->n_requests, WA_LAUNCHER_REQUESTS);
	all = wa_shared->n_requests > WA_LAUNCHER_REQUESTS;
	memcpy(req, wa_shared->requests, sizeof(Oid) * n);
	wa_shared->n_requests = 0;
	if (wa_shared->rescan)
		scan_due = true;
	wa_shared->rescan = false;
	SpinLockRelease(&wa_shared->mutex);

	for (int i = 0; i < n_dbs; i++)
		if (dbs[i].state == DB_NO_EXTENSION && (all || oid_in(req, n, dbs[i].oid)))
			dbs[i].state = DB_NEW;
	for (int i = 0; i < n; i++)
		if (!oid_in(all_oids, n_all_oids, req[i]))
			scan_due = true;	/* a database this launcher has not seen yet */
	if (all)
		scan_due = true;
}

/* A worker that left: why decides what happens next. */
static void
worker_exited(WaLaunchDb *db, WaWorkerExit reason)
{
	switch (reason)
	{
		case WA_EXIT_NO_EXTENSION:
			slot_release(db);
			db->state = DB_NO_EXTENSION;
			db->has_extension = false;
			break;
		case WA_EXIT_DATABASE_GOING:
			/* back at once if the DROP fails; the scan forgets it if it succeeds */
			db->restart_at = wa_now();
			break;
		case WA_EXIT_UNKNOWN:
			db->restart_at = wa_now() + WA_RESTART_DELAY;
			scan_due = true;	/* make sure the database is still there */
			break;
	}
}

/* Notice the workers and the probe that exited. */
static void
reap_exited(void)
{
	for (int i = 0; i < n_dbs; i++)
	{
		WaLaunchDb *db = &dbs[i];
		WaDbSlot   *slot;

		if (db->state != DB_SERVED || db->restart_at > 0)
			continue;
		slot = &wa_shared->slots[db->slot];
		if (slot->starting)
		{
			if (!handle_stopped(db->handle))
				continue;
			slot->starting = false; /* it died before attaching */
			worker_exited(db, WA_EXIT_UNKNOWN);
		}
		else if (slot->worker_pid == 0)
			worker_exited(db, (WaWorkerExit) slot->exit_reason);
	}
	if (probe_handle && handle_stopped(probe_handle))
	{
		int			result;

		SpinLockAcquire(&wa_shared->mutex);
		result = wa_shared->probe_result;
		wa_shared->probe_dboid = InvalidOid;
		SpinLockRelease(&wa_shared->mutex);
		if (probe_db && probe_db->state == DB_NEW)
		{
			probe_db->has_extension = result == 1;
			if (result != 1)
				probe_db->state = DB_NO_EXTENSION;
		}
		pfree(probe_handle);
		probe_handle = NULL;
		probe_db = NULL;
	}
}

/* May this pg_database row be served? */
static bool
may_serve(Form_pg_database d)
{
	if (!d->datallowconn)
		return false;
#ifdef DATCONNLIMIT_INVALID_DB
	if (d->datconnlimit == DATCONNLIMIT_INVALID_DB)
		return false;			/* an interrupted DROP DATABASE */
#endif
	if (listed_names != NIL)
		return name_listed(NameStr(d->datname));
	return !d->datistemplate;
}

/* The probe's database, after the table moved. */
static void
refind_probe_db(void)
{
	probe_db = NULL;
	if (probe_handle)
		for (int k = 0; k < n_dbs; k++)
			if (dbs[k].oid == wa_shared->probe_dboid)
				probe_db = &dbs[k];
}

static int
db_cmp(const void *a, const void *b)
{
	Oid			x = ((const WaLaunchDb *) a)->oid;
	Oid			y = ((const WaLaunchDb *) b)->oid;

	return x < y ? -1 : x > y ? 1 : 0;
}

/* Forget a database that is gone (dropped, or no longer to be served). */
static void
forget_db(int i)
{
	WaLaunchDb *db = &dbs[i];

	if (db->state == DB_SERVED)
	{
		WaDbSlot   *slot = &wa_shared->slots[db->slot];

		if (slot->worker_pid != 0 || slot->starting)
			return;				/* still leaving: next time */
		slot_release(db);
	}
	if (probe_db == db)
		return;
	dbs[i] = dbs[--n_dbs];
	refind_probe_db();
}

/* The "dropping" marks of databases that are gone are done with. */
static void
clear_dropped_marks(void)
{
	SpinLockAcquire(&wa_shared->mutex);
	for (int k = 0; k < WA_DROPPING_MAX; k++)
		if (OidIsValid(wa_shared->dropping[k]))
		{
			bool		exists = false;

			for (int i = 0; i < n_dbs && !exists; i++)
				exists = dbs[i].seen && dbs[i].oid == wa_shared->dropping[k];
			if (!exists)
				wa_shared->dropping[k] = InvalidOid;
		}
	SpinLockRelease(&wa_shared->mutex);
}

/* The databases named in wa_notify.database that do not exist (yet): said once. */
static void
report_missing_listed(void)
{
	ListCell   *lc;

	foreach(lc, listed_names)
	{
		const char *name = lfirst(lc);
		bool		found = false;

		for (int i = 0; i < n_dbs && !found; i++)
			found = strcmp(NameStr(dbs[i].name), name) == 0;
		if (!found)
			ereport(LOG,
					(errmsg("wa_notify: database \"%s\" named in wa_notify.database does not exist or accepts no connections", name),
					 errdetail("It is served once it is created.")));
	}
}

/* Read pg_database (a shared catalog: no database connection needed). */
static void
scan_databases(void)
{
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tup;

	scan_due = false;
	for (int i = 0; i < n_dbs; i++)
		dbs[i].seen = false;
	n_all_oids = 0;
	StartTransactionCommand();
	(void) GetTransactionSnapshot();
	rel = table_open(DatabaseRelationId, AccessShareLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	while (HeapTupleIsValid(tup = heap_getnext(scan, ForwardScanDirection)))
	{
		Form_pg_database d = (Form_pg_database) GETSTRUCT(tup);
		WaLaunchDb *db;
		MemoryContext old;

		old = MemoryContextSwitchTo(launcher_cxt);
		/* remembered so that a request from a database not served costs no scan */
		if (all_oids == NULL || n_all_oids % 64 == 0)
			all_oids = all_oids ? repalloc(all_oids, sizeof(Oid) * (n_all_oids + 64))
				: palloc(sizeof(Oid) * 64);
		all_oids[n_all_oids++] = d->oid;
		MemoryContextSwitchTo(old);
		if (!may_serve(d))
			continue;
		old = MemoryContextSwitchTo(launcher_cxt);
		db = db_find(d->oid);
		if (db == NULL)
			db = db_add(d->oid, NameStr(d->datname));
		MemoryContextSwitchTo(old);
		namestrcpy(&db->name, NameStr(d->datname));
		db->listed = listed_names != NIL;
		db->seen = true;
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	CommitTransactionCommand();
	MemoryContextSwitchTo(launcher_cxt);

	for (int i = n_dbs - 1; i >= 0; i--)
		if (!dbs[i].seen)
			forget_db(i);
	/* the oldest databases first: they keep their workers when the slots run out */
	if (n_dbs > 1)
		qsort(dbs, n_dbs, sizeof(WaLaunchDb), db_cmp);
	refind_probe_db();
	clear_dropped_marks();
	if (first_scan)
		report_missing_listed();
	first_scan = false;
}

/* Start what may start: restarts due, new databases (probe first), unserved ones. */
static void
start_due(void)
{
	double		now = wa_now();

	for (int i = 0; i < n_dbs; i++)
	{
		WaLaunchDb *db = &dbs[i];

		if (wa_db_dropping(db->oid))
			continue;
		if (db->state == DB_SERVED)
		{
			if (db->restart_at > 0 && db->restart_at <= now)
				start_worker(db);
			continue;
		}
		if (db->state == DB_NO_EXTENSION)
			continue;
		if (!db->listed && !db->has_extension)
		{
			/* DB_NEW, unknown: one probe at a time */
			if (probe_handle == NULL)
				start_probe(db);
			continue;
		}
		if (slot_take(db))
		{
			db->state = DB_SERVED;
			start_worker(db);
		}
		else
			db->state = DB_UNSERVED;
	}
}

/*
 * The unserved databases, into shared memory (their status card reads it),
 * and a WARNING naming them whenever the list changes.
 */
static void
publish_unserved(void)
{
	StringInfoData names;
	int			n = 0;

	initStringInfo(&names);
	SpinLockAcquire(&wa_shared->mutex);
	for (int i = 0; i < n_dbs; i++)
		if (dbs[i].state == DB_UNSERVED && n < WA_UNSERVED_MAX)
			wa_shared->unserved[n++] = dbs[i].oid;
	wa_shared->n_unserved = n;
	SpinLockRelease(&wa_shared->mutex);
	for (int i = 0; i < n_dbs; i++)
		if (dbs[i].state == DB_UNSERVED)
			appendStringInfo(&names, "%s\"%s\"", names.len ? ", " : "", NameStr(dbs[i].name));
	if (names.len > 0 && (reported_unserved == NULL || strcmp(reported_unserved, names.data) != 0))
		ereport(WARNING,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("wa_notify serves %d databases (wa_notify.max_databases): unserved: %s",
						wa_max_databases, names.data),
				 errdetail("Their messages stay queued; their status card says they are unserved."),
				 errhint("Raise wa_notify.max_databases (and max_worker_processes) and restart the server, or drop the extension where it is not used.")));
	if (reported_unserved)
		pfree(reported_unserved);
	reported_unserved = names.data;
}

/* pg_stat_activity's query column: what the launcher serves. */
static void
report_activity(void)
{
	StringInfoData names;
	char	   *line;
	int			served = 0;

	initStringInfo(&names);
	for (int i = 0; i < n_dbs; i++)
		if (dbs[i].state == DB_SERVED)
			appendStringInfo(&names, "%s%s", served++ ? ", " : ": ", NameStr(dbs[i].name));
	line = psprintf("%s %d database%s%s", probe_handle ? "probing; serving" : "serving",
					served, served == 1 ? "" : "s", names.data);
	pgstat_report_activity(STATE_RUNNING, line);
	pfree(line);
	pfree(names.data);
}

/* How long to sleep: until the next restart falls due (-1: until woken). */
static long
next_timeout(bool in_recovery)
{
	double		now = wa_now();
	double		until = in_recovery ? now + WA_STANDBY_POLL : 0;

	for (int i = 0; i < n_dbs; i++)
		if (dbs[i].state == DB_SERVED && dbs[i].restart_at > 0 &&
			(until == 0 || dbs[i].restart_at < until))
			until = dbs[i].restart_at;
	if (until == 0)
		return -1;
	return Max(1, (long) ((until - now) * 1000.0));
}

static void
launcher_wait(long timeout)
{
	int			events = WL_LATCH_SET | WL_EXIT_ON_PM_DEATH | (timeout >= 0 ? WL_TIMEOUT : 0);

	(void) WaitLatch(MyLatch, events, timeout, PG_WAIT_EXTENSION);
	ResetLatch(MyLatch);
	CHECK_FOR_INTERRUPTS();
	if (ConfigReloadPending)
	{
		ConfigReloadPending = false;
		ProcessConfigFile(PGC_SIGHUP);
	}
}

static void
launcher_detach(int code, Datum arg)
{
	SpinLockAcquire(&wa_shared->mutex);
	if (wa_shared->launcher_pid == MyProcPid)
	{
		wa_shared->launcher_latch = NULL;
		wa_shared->launcher_pid = 0;
	}
	SpinLockRelease(&wa_shared->mutex);
}

static void
split_listed_names(void)
{
	char	   *raw = pstrdup(wa_database ? wa_database : "");

	listed_names = NIL;
	if (raw[0] != '\0' && !SplitGUCList(raw, ',', &listed_names))
		ereport(WARNING,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("wa_notify.database is not a valid list of database names: every database is served"),
				 errhint("Give names separated by commas, such as 'shop_a, shop_b'.")));
}

void
wa_launcher_main(Datum main_arg)
{
	bool		was_in_recovery;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	wa_install_sigterm_handler();
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);
	pgstat_report_appname("wa_notify launcher");

	launcher_cxt = AllocSetContextCreate(TopMemoryContext, "wa_notify launcher",
										 ALLOCSET_DEFAULT_SIZES);
	MemoryContextSwitchTo(launcher_cxt);
	split_listed_names();
	SpinLockAcquire(&wa_shared->mutex);
	wa_shared->launcher_latch = &MyProc->procLatch;
	wa_shared->launcher_pid = MyProcPid;
	SpinLockRelease(&wa_shared->mutex);
	on_shmem_exit(launcher_detach, (Datum) 0);
	was_in_recovery = RecoveryInProgress();

	while (!ShutdownRequestPending)
	{
		bool		in_recovery = RecoveryInProgress();

		if (was_in_recovery && !in_recovery)
		{
			/* promoted: CREATE EXTENSION may have been replayed meanwhile */
			for (int i = 0; i < n_dbs; i++)
				if (dbs[i].state == DB_NO_EXTENSION)
					dbs[i].state = DB_NEW;
			scan_due = true;
		}
		was_in_recovery = in_recovery;
		take_requests();
		reap_exited();
		if (scan_due)
			scan_databases();
		start_due();
		publish_unserved();
		report_activity();
		MemoryContextSwitchTo(launcher_cxt);
		launcher_wait(next_timeout(in_recovery));
	}
	proc_exit(wa_terminated_by_postmaster() ? 0 : 1);
}

/* ------------------------------------------------- DROP DATABASE, CREATE DATABASE */

static ProcessUtility_hook_type prev_utility_hook = NULL;

static void
mark_dropping(Oid dboid, bool on)
{
	SpinLockAcquire(&wa_shared->mutex);
	for (int k = 0; k < WA_DROPPING_MAX; k++)
		if (on ? !OidIsValid(wa_shared->dropping[k]) : wa_shared->dropping[k] == dboid)
		{
			wa_shared->dropping[k] = on ? dboid : InvalidOid;
			if (on)
				break;
		}
	SpinLockRelease(&wa_shared->mutex);
}

/* Is a process of ours connected to (or connecting to) the database? */
static pid_t
our_process_in(Oid dboid, bool *busy)
{
	WaDbSlot   *slot = wa_db_slot(dboid);
	pid_t		pid = 0;

	SpinLockAcquire(&wa_shared->mutex);
	*busy = wa_shared->probe_dboid == dboid;
	if (slot && slot->dboid == dboid)
	{
		pid = slot->worker_pid;
		*busy = *busy || slot->starting || pid != 0;
	}
	SpinLockRelease(&wa_shared->mutex);
	return pid;
}

/*
 * Before DROP DATABASE: mark it, ask our worker to leave, wait for it
 * (WA_DROP_WAIT at most: then the DROP says who is still connected).
 * Returns the database's OID, InvalidOid when nothing was done.
 */
static Oid
database_going(const char *dbname)
{
	Oid			dboid = get_database_oid(dbname, true);
	double		deadline = wa_now() + WA_DROP_WAIT;
	pid_t		signalled = 0;
	bool		busy;

	if (!OidIsValid(dboid) || !pg_database_ownercheck(dboid, GetUserId()))
		return InvalidOid;		/* the DROP itself says why not */
	mark_dropping(dboid, true);
	for (;;)
	{
		pid_t		pid = our_process_in(dboid, &busy);

		if (!busy || wa_now() > deadline)
			break;
		if (pid != 0 && pid != signalled)
		{
			kill(pid, SIGTERM);
			signalled = pid;
		}
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, 20,
						 PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
	return dboid;
}

/*
 * The database a statement needs to itself (no other process connected):
 * DROP DATABASE (its worker does not come back), ALTER DATABASE ...
 * RENAME and CREATE DATABASE ... TEMPLATE (it comes back after).  NULL:
 * none.
 */
static const char *
database_needed_alone(Node *parsetree, bool *comes_back)
{
	ListCell   *lc;

	*comes_back = true;
	if (IsA(parsetree, DropdbStmt))
	{
		*comes_back = false;
		return ((DropdbStmt *) parsetree)->dbname;
	}
	if (IsA(parsetree, RenameStmt) && ((RenameStmt *) parsetree)->renameType == OBJECT_DATABASE)
		return ((RenameStmt *) parsetree)->subname;
	if (IsA(parsetree, CreatedbStmt))
		foreach(lc, ((CreatedbStmt *) parsetree)->options)
		{
			DefElem    *opt = lfirst(lc);

			if (strcmp(opt->defname, "template") == 0 && opt->arg != NULL)
				return defGetString(opt);
		}
	return NULL;
}

static bool
drops_our_extension(Node *parsetree)
{
	DropStmt   *drop = (DropStmt *) parsetree;
	ListCell   *lc;

	if (!IsA(parsetree, DropStmt) || drop->removeType != OBJECT_EXTENSION)
		return false;
	foreach(lc, drop->objects)
		if (IsA(lfirst(lc), String) && strcmp(strVal(lfirst(lc)), "wa_notify") == 0)
			return true;
	return false;
}

static void
wa_utility_hook(PlannedStmt *pstmt, const char *queryString, bool readOnlyTree,
				ProcessUtilityContext context, ParamListInfo params,
				QueryEnvironment *queryEnv, DestReceiver *dest, QueryCompletion *qc)
{
	Node	   *parsetree = pstmt->utilityStmt;
	volatile Oid going = InvalidOid;

	bool		back = false;
	const char *alone = wa_shared ? database_needed_alone(parsetree, &back) : NULL;
	volatile bool comes_back = back;	/* the worker returns after the statement */

	if (alone != NULL)
		going = database_going(alone);
	PG_TRY();
	{
		if (prev_utility_hook)
			prev_utility_hook(pstmt, queryString, readOnlyTree, context, params,
							  queryEnv, dest, qc);
		else
			standard_ProcessUtility(pstmt, queryString, readOnlyTree, context, params,
									queryEnv, dest, qc);
	}
	PG_CATCH();
	{
		if (OidIsValid(going))
		{
			mark_dropping(going, false);	/* the worker comes back */
			wa_launcher_rescan();
		}
		PG_RE_THROW();
	}
	PG_END_TRY();
	if (wa_shared == NULL)
		return;
	if (OidIsValid(going) && comes_back)
	{
		mark_dropping(going, false);
		wa_launcher_rescan();
	}
	if (IsA(parsetree, DropdbStmt) || IsA(parsetree, CreatedbStmt))
		wa_wake_launcher_at_commit();
	else if (drops_our_extension(parsetree))
		wa_wake_worker_at_commit();	/* it sees the extension gone and leaves */
}

/* ------------------------------------------------- registration */

/* At preload: the launcher, and the utility hook (in every backend). */
void
wa_launcher_init(void)
{
	BackgroundWorker worker;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_ConsistentState;
	worker.bgw_restart_time = 5;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "wa_notify");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "wa_launcher_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "wa_notify launcher");
	snprintf(worker.bgw_type, BGW_MAXLEN, "wa_notify launcher");
	RegisterBackgroundWorker(&worker);

	prev_utility_hook = ProcessUtility_hook;
	ProcessUtility_hook = wa_utility_hook;
}
