/*-------------------------------------------------------------------------
 * capture_priv.c
 *	  Capture's privilege model: who may watch() and unwatch() a shop table,
 *	  and the role a watch's context query runs as.
 *
 *	  - watch() needs the TRIGGER privilege on the table, unwatch() the
 *	    TRIGGER privilege or membership in the table's owner role; both are
 *	    checked here against the CALLER (GetUserId() on entry: these functions
 *	    are not SECURITY DEFINER, so a direct call cannot pretend to be
 *	    someone else, even by a role granted EXECUTE on every function of
 *	    the schema).  Only then do they switch to the extension's owner (the
 *	    owner of wa_notify.watch) to write wa_notify.watch and drop
 *	    wa_notify's own triggers, running fixed SQL with a fixed search_path;
 *	    no SQL text from the caller runs with that role.
 *	  - the watch records the calling role's name (current_user at watch()
 *	    time; names survive pg_dump/restore, oids do not), for the record:
 *	    since 1.1 every context runs as wa_notify_context, never as the
 *	    watch's role (capture_context.c).
 *
 *	  A table's capture triggers hold all its watches (one trigger per event
 *	  kind), so attaching one watch drops and creates them again: done as
 *	  the extension's owner as well, once the caller's TRIGGER privilege on
 *	  the table and on each of its partitions is checked (what CREATE
 *	  TRIGGER would check as the caller).
 *
 *	  SQL: wa_notify._watch_check(), wa_notify._watch_store(),
 *	       wa_notify._watch_attach(), wa_notify.unwatch().
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_inherits.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"

#include "wa_notify.h"

/* the owner of a relation */
static Oid
rel_owner(Oid relid)
{
	HeapTuple	tup;
	Oid			owner;

	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	if (!HeapTupleIsValid(tup))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation with OID %u does not exist", relid)));
	owner = ((Form_pg_class) GETSTRUCT(tup))->relowner;
	ReleaseSysCache(tup);
	return owner;
}

/*
 * The caller may watch (TRIGGER on the table) or unwatch (TRIGGER, or member
 * of the table's owner role: an owner can drop triggers anyway).
 */
static void
check_watch_privilege(Oid relid, bool unwatch)
{
	Oid			caller = GetUserId();
	char	   *relname = get_rel_name(relid);
	char	   *qualified;

	if (relname == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation with OID %u does not exist", relid)));
	qualified = quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)),
										   relname);
	if (pg_class_aclcheck(relid, caller, ACL_TRIGGER) == ACLCHECK_OK)
		return;
	if (unwatch && has_privs_of_role(caller, rel_owner(relid)))
		return;
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("permission denied to %s table %s", unwatch ? "unwatch" : "watch", qualified),
			 errdetail("Role \"%s\" has no TRIGGER privilege on it%s.",
					   GetUserNameFromId(caller, false),
					   unwatch ? " and is not a member of its owner" : ""),
			 errhint("The table's owner can grant it: GRANT TRIGGER ON %s TO %s;",
					 qualified, quote_identifier(GetUserNameFromId(caller, false)))));
}

/*
 * Run one fixed statement as the extension's owner with search_path
 * pg_catalog, wa_notify; the result is the first column of its one row, a
 * pass-by-value type.
 */
static Datum
run_as_extension_owner(const char *sql, int nargs, Oid *types, Datum *values,
					   const char *nulls)
{
	Oid			nsp = get_namespace_oid("wa_notify", false);
	Oid			watchrel = get_relname_relid("watch", nsp);
	Oid			save_userid;
	int			save_sec;
	int			nestlevel;
	Datum		result;
	bool		isnull;

	if (!OidIsValid(watchrel))
		elog(ERROR, "table wa_notify.watch does not exist");
	GetUserIdAndSecContext(&save_userid, &save_sec);
	SetUserIdAndSecContext(rel_owner(watchrel), save_sec | SECURITY_LOCAL_USERID_CHANGE);
	nestlevel = NewGUCNestLevel();
	(void) set_config_option("search_path", "pg_catalog, wa_notify", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (SPI_execute_with_args(sql, nargs, types, values, nulls, false, 1) != SPI_OK_SELECT ||
		SPI_processed != 1)
		elog(ERROR, "unexpected result of %s", sql);
	result = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	if (isnull)
		elog(ERROR, "unexpected NULL from %s", sql);
	SPI_finish();

	AtEOXact_GUC(true, nestlevel);
	SetUserIdAndSecContext(save_userid, save_sec);
	return result;
}

/*
 * wa_notify._watch_check(source regclass, unwatch boolean) RETURNS void:
 * the privilege check alone (watch() calls it before validating anything).
 */
PG_FUNCTION_INFO_V1(wa_notify_watch_check);
Datum
wa_notify_watch_check(PG_FUNCTION_ARGS)
{
	check_watch_privilege(PG_GETARG_OID(0), PG_GETARG_BOOL(1));
	PG_RETURN_VOID();
}

/*
 * wa_notify._watch_store(event text, source regclass, order_key text,
 *     fires_when text, context text, search_path text) RETURNS bigint
 *
 * Checks the caller's TRIGGER privilege on source, then, as the extension's
 * owner, upserts the watch row (owner = the caller) and drops the watch's
 * previous triggers.  watch() then creates the new triggers as the caller.
 */
PG_FUNCTION_INFO_V1(wa_notify_watch_store);
Datum
wa_notify_watch_store(PG_FUNCTION_ARGS)
{
	Oid			types[7] = {TEXTOID, REGCLASSOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, NAMEOID};
	Datum		values[7];
	char		nulls[7] = {' ', ' ', ' ', ' ', ' ', ' ', ' '};
	Name		owner;

	for (int i = 0; i < 6; i++)
	{
		if (PG_ARGISNULL(i))
		{
			if (i != 3)
				ereport(ERROR,
						(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
						 errmsg("argument %d of wa_notify._watch_store must not be NULL", i + 1)));
			nulls[i] = 'n';
			values[i] = (Datum) 0;
		}
		else
			values[i] = PG_GETARG_DATUM(i);
	}
	check_watch_privilege(PG_GETARG_OID(1), false);
	owner = (Name) palloc0(NAMEDATALEN);
	namestrcpy(owner, GetUserNameFromId(GetUserId(), false));
	values[6] = NameGetDatum(owner);

	PG_RETURN_DATUM(run_as_extension_owner("SELECT wa_notify._watch_upsert($1, $2, $3, $4, $5, $6, $7)",
										   7, types, values, nulls));
}

/*
 * wa_notify.unwatch(event text, source regclass) RETURNS boolean: checks the
 * caller (TRIGGER on source, or member of its owner), then drops the
 * watch's triggers and row as the extension's owner.  False: there was none.
 */
PG_FUNCTION_INFO_V1(wa_notify_unwatch);
Datum
wa_notify_unwatch(PG_FUNCTION_ARGS)
{
	Oid			types[2] = {TEXTOID, REGCLASSOID};
	Datum		values[2];

	values[0] = PG_GETARG_DATUM(0);
	values[1] = PG_GETARG_DATUM(1);
	check_watch_privilege(PG_GETARG_OID(1), true);
	PG_RETURN_DATUM(run_as_extension_owner("SELECT wa_notify._unwatch_drop($1, $2)",
										   2, types, values, NULL));
}

/*
 * wa_notify._watch_attach(source regclass, watch_id bigint, ins text[],
 *     upd text[]) RETURNS boolean: checks the caller's TRIGGER privilege on
 * source and its partitions, then, as the extension's owner, attaches the
 * table's capture triggers again with the watch's new entries
 * (wa_notify._capture_rebuild).
 */
PG_FUNCTION_INFO_V1(wa_notify_watch_attach);
Datum
wa_notify_watch_attach(PG_FUNCTION_ARGS)
{
	Oid			types[4] = {REGCLASSOID, INT8OID, TEXTARRAYOID, TEXTARRAYOID};
	Datum		values[4];
	char		nulls[4] = {' ', ' ', ' ', ' '};
	List	   *rels;
	ListCell   *lc;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("the table and the watch id of wa_notify._watch_attach must not be NULL")));
	rels = find_all_inheritors(PG_GETARG_OID(0), NoLock, NULL);
	foreach(lc, rels)
		check_watch_privilege(lfirst_oid(lc), false);
	for (int i = 0; i < 4; i++)
	{
		values[i] = PG_ARGISNULL(i) ? (Datum) 0 : PG_GETARG_DATUM(i);
		if (PG_ARGISNULL(i))
			nulls[i] = 'n';
	}
	PG_RETURN_DATUM(run_as_extension_owner("SELECT wa_notify._capture_rebuild($1, $2, $3, $4)",
										   4, types, values, nulls));
}
