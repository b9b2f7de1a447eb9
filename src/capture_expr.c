/*-------------------------------------------------------------------------
 * capture_expr.c
 *	  fires_when, evaluated in C: the expression the admin gave watch(),
 *	  parsed against the watched table (with pg_catalog and the schemas
 *	  recorded at watch() time as search path), planned and compiled once
 *	  per backend, watch and table, and compiled again whenever the table,
 *	  a function or a type changes (relcache and syscache invalidation).
 *
 *	  The capture trigger (capture.c) evaluates it on its own slots (the
 *	  scan tuple of the expression: only the columns it reads are
 *	  deformed, no whole-row value is built), so no trigger of wa_notify
 *	  has a WHEN clause that names a column, and the shop may change a
 *	  watched column's type (enum to text and back), add or drop other
 *	  columns with the watch attached.  When the
 *	  expression no longer makes sense, the error is the capture's error
 *	  (a failed message) and wa_notify._expr_check() says why on the
 *	  status card.
 *
 *	  Safety: an expression made only of columns, constants, boolean
 *	  logic, NULL tests, CASE/COALESCE and leakproof operators and
 *	  functions (int4eq, texteq, enum_eq...: they cannot raise on any
 *	  input) is evaluated directly; any other is evaluated in a
 *	  subtransaction, so that its error never fails the shop's statement;
 *	  an error counts as firing, and the trigger stages the error.
 *
 *	  wa_run_protected() is the one subtransaction wrapper of capture: it
 *	  turns an error into text, except PostgreSQL's own resource errors and
 *	  operator interventions (out of memory, disk full, cancel, shutdown),
 *	  which go on failing the statement.
 *
 *	  SQL: wa_notify._expr_check().
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/relation.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/executor.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "nodes/nodeFuncs.h"
#include "optimizer/optimizer.h"
#include "parser/analyze.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/resowner.h"
#include "utils/syscache.h"

#include "wa_notify.h"

typedef struct FiresKey
{
	int64		watch_id;
	Oid			relid;
} FiresKey;

struct WaFiresWhen
{
	FiresKey	key;
	bool		valid;
	char	   *expr;			/* the texts it was built from */
	char	   *path;
	char	   *alias;
	MemoryContext cxt;			/* everything below */
	char	   *parse_error;	/* NULL: compiled */
	ExprState  *state;
	bool		safe;
	ExprContext *econtext;
	Bitmapset  *columns;		/* the columns it reads (attno - FirstLowInvalidHeapAttributeNumber) */
	bool		whole_row;		/* it reads the whole row: any change may matter */
};

static HTAB *fires_cache = NULL;

static void
fires_invalidate(Oid relid)
{
	HASH_SEQ_STATUS seq;
	WaFiresWhen *e;

	hash_seq_init(&seq, fires_cache);
	while ((e = hash_seq_search(&seq)) != NULL)
		if (!OidIsValid(relid) || e->key.relid == relid)
			e->valid = false;
}

static void
fires_relcache_cb(Datum arg, Oid relid)
{
	fires_invalidate(relid);
}

static void
fires_syscache_cb(Datum arg, int cacheid, uint32 hashvalue)
{
	fires_invalidate(InvalidOid);
}

static void
fires_cache_init(void)
{
	HASHCTL		ctl;

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(FiresKey);
	ctl.entrysize = sizeof(WaFiresWhen);
	fires_cache = hash_create("wa_notify fires_when", 32, &ctl, HASH_ELEM | HASH_BLOBS);
	CacheRegisterRelcacheCallback(fires_relcache_cb, (Datum) 0);
	CacheRegisterSyscacheCallback(PROCOID, fires_syscache_cb, (Datum) 0);
	CacheRegisterSyscacheCallback(TYPEOID, fires_syscache_cb, (Datum) 0);
	CacheRegisterSyscacheCallback(OPEROID, fires_syscache_cb, (Datum) 0);
}

/*
 * Run fn(arg) in a subtransaction.  False, with *error (allocated in the
 * caller's memory context), when it raised an ordinary error; resource
 * errors and cancels are raised again.
 */
bool
wa_run_protected(void (*fn) (void *), void *arg, char **error)
{
	MemoryContext callerctx = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	volatile bool ok = true;

	*error = NULL;
	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(callerctx);
	PG_TRY();
	{
		fn(arg);
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(callerctx);
		CurrentResourceOwner = owner;
	}
	PG_CATCH();
	{
		ErrorData  *edata;
		int			category;

		MemoryContextSwitchTo(callerctx);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(callerctx);
		CurrentResourceOwner = owner;
		category = ERRCODE_TO_CATEGORY(edata->sqlerrcode);
		if (category == ERRCODE_INSUFFICIENT_RESOURCES ||
			category == ERRCODE_OPERATOR_INTERVENTION ||
			category == ERRCODE_PROGRAM_LIMIT_EXCEEDED)
			ReThrowError(edata);
		*error = pstrdup(edata->message);
		FreeErrorData(edata);
		ok = false;
	}
	PG_END_TRY();
	return ok;
}

/*
 * Functions that cannot raise on any input although not marked leakproof
 * (comparisons of enums and numerics).
 */
static bool
known_safe(Oid funcid)
{
	switch (funcid)
	{
		case F_ENUM_EQ:
		case F_ENUM_NE:
		case F_ENUM_LT:
		case F_ENUM_GT:
		case F_ENUM_LE:
		case F_ENUM_GE:
		case F_NUMERIC_EQ:
		case F_NUMERIC_NE:
		case F_NUMERIC_LT:
		case F_NUMERIC_GT:
		case F_NUMERIC_LE:
		case F_NUMERIC_GE:
			return true;
		default:
			return get_func_leakproof(funcid);
	}
}

/* leakproof functions cannot raise on any input: no subtransaction needed */
static bool
unsafe_walker(Node *node, void *context)
{
	if (node == NULL)
		return false;
	switch (nodeTag(node))
	{
		case T_Var:
		case T_Const:
		case T_BoolExpr:
		case T_NullTest:
		case T_BooleanTest:
		case T_RelabelType:
		case T_CaseExpr:
		case T_CaseWhen:
		case T_CaseTestExpr:
		case T_CoalesceExpr:
		case T_List:
			break;
		case T_FuncExpr:
			if (!known_safe(((FuncExpr *) node)->funcid))
				return true;
			break;
		case T_OpExpr:
		case T_DistinctExpr:
		case T_NullIfExpr:
			set_opfuncid((OpExpr *) node);
			if (!known_safe(((OpExpr *) node)->opfuncid))
				return true;
			break;
		case T_ScalarArrayOpExpr:
			set_sa_opfuncid((ScalarArrayOpExpr *) node);
			if (!known_safe(((ScalarArrayOpExpr *) node)->opfuncid))
				return true;
			break;
		default:
			return true;
	}
	return expression_tree_walker(node, unsafe_walker, context);
}

/*
 * The boolean expression of "SELECT (expr) FROM ONLY rel AS alias", planned
 * (constants folded), parsed with search_path = pg_catalog, path.  Its Vars
 * are the table's columns (varno 1: the scan tuple of an ExprContext).
 */
static Expr *
parse_fires_when(Relation rel, const char *expr, const char *path, const char *alias,
				 bool want_bool, bool plan)
{
	char	   *sql;
	List	   *raw;
	Query	   *q;
	TargetEntry *te;
	int			nestlevel;
	Expr	   *result;

	sql = psprintf("SELECT (%s\n) FROM ONLY %s AS %s", expr,
				   quote_qualified_identifier(get_namespace_name(RelationGetNamespace(rel)),
											  RelationGetRelationName(rel)),
				   quote_identifier(alias));
	nestlevel = NewGUCNestLevel();
	(void) set_config_option("search_path", path[0] ? psprintf("pg_catalog, %s", path) : "pg_catalog",
							 PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);
	raw = pg_parse_query(sql);
	if (list_length(raw) != 1)
		ereport(ERROR,
				(errcode(ERRCODE_SYNTAX_ERROR),
				 errmsg("fires_when must be a single expression")));
	q = parse_analyze_fixedparams(linitial_node(RawStmt, raw), sql, NULL, 0, NULL);
	AtEOXact_GUC(true, nestlevel);
	if (q->commandType != CMD_SELECT || list_length(q->targetList) != 1 ||
		q->hasSubLinks || q->hasAggs || q->hasWindowFuncs || q->hasTargetSRFs)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("fires_when must be one value of the row, without subquery")));
	te = linitial_node(TargetEntry, q->targetList);
	if (want_bool && exprType((Node *) te->expr) != BOOLOID)
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("fires_when is of type %s, not boolean",
						format_type_be(exprType((Node *) te->expr)))));
	/* planning folds constants: it runs functions, so only where the row's writer runs it */
	result = plan ? expression_planner(te->expr) : te->expr;
	return result;
}

typedef struct BuildArgs
{
	WaFiresWhen *e;
	Relation	rel;
} BuildArgs;

/* the columns an expression reads (every Var's: fires_when has one table) */
static bool
columns_walker(Node *node, WaFiresWhen *e)
{
	if (node == NULL)
		return false;
	if (IsA(node, Var))
	{
		Var		   *v = (Var *) node;

		if (v->varattno == InvalidAttrNumber)
			e->whole_row = true;
		else
			e->columns = bms_add_member(e->columns, v->varattno - FirstLowInvalidHeapAttributeNumber);
		return false;
	}
	return expression_tree_walker(node, columns_walker, (void *) e);
}

static void
build_entry(void *arg)
{
	BuildArgs  *b = (BuildArgs *) arg;
	WaFiresWhen *e = b->e;
	Expr	   *planned = parse_fires_when(b->rel, e->expr, e->path, e->alias, true, true);
	MemoryContext old = MemoryContextSwitchTo(e->cxt);

	planned = copyObject(planned);
	e->safe = !unsafe_walker((Node *) planned, NULL);
	(void) columns_walker((Node *) planned, e);
	if (contain_volatile_functions((Node *) planned))
		e->whole_row = true;	/* may differ on equal rows */
	e->state = ExecInitExpr(planned, NULL);
	MemoryContextSwitchTo(old);
}

/* The compiled fires_when of a watch on relid (built when missing or stale). */
WaFiresWhen *
wa_fires_lookup(int64 watch_id, Oid relid, const char *expr, const char *path,
				const char *alias)
{
	FiresKey	key;
	WaFiresWhen *e;
	bool		found;
	BuildArgs	b;
	char	   *error;
	MemoryContext old;

	if (fires_cache == NULL)
		fires_cache_init();
	memset(&key, 0, sizeof(key));
	key.watch_id = watch_id;
	key.relid = relid;
	e = hash_search(fires_cache, &key, HASH_ENTER, &found);
	if (found && e->valid && strcmp(e->expr, expr) == 0 && strcmp(e->path, path) == 0 &&
		strcmp(e->alias, alias) == 0)
		return e;
	if (found && e->cxt)
		MemoryContextDelete(e->cxt);
	e->valid = false;
	e->cxt = AllocSetContextCreate(CacheMemoryContext, "wa_notify fires_when",
								   ALLOCSET_SMALL_SIZES);
	old = MemoryContextSwitchTo(e->cxt);
	e->expr = pstrdup(expr);
	e->path = pstrdup(path);
	e->alias = pstrdup(alias);
	e->parse_error = NULL;
	e->state = NULL;
	e->safe = false;
	e->columns = NULL;
	e->whole_row = false;
	e->econtext = CreateStandaloneExprContext();
	MemoryContextSwitchTo(old);

	b.e = e;
	b.rel = RelationIdGetRelation(relid);
	if (!RelationIsValid(b.rel))
		elog(ERROR, "could not open relation with OID %u", relid);
	if (!wa_run_protected(build_entry, &b, &error))
		e->parse_error = MemoryContextStrdup(e->cxt, error);
	RelationClose(b.rel);
	e->valid = true;
	return e;
}

static bool
eval_on(WaFiresWhen *e, TupleTableSlot *slot)
{
	bool		isnull;
	Datum		d;

	e->econtext->ecxt_scantuple = slot;
	d = ExecEvalExprSwitchContext(e->state, e->econtext, &isnull);
	ResetExprContext(e->econtext);
	return !isnull && DatumGetBool(d);
}

typedef struct EvalArgs
{
	WaFiresWhen *e;
	TupleTableSlot *newslot;
	TupleTableSlot *oldslot;
	bool		fires;
} EvalArgs;

static void
eval_transition(void *arg)
{
	EvalArgs   *a = (EvalArgs *) arg;

	/* (new) IS TRUE AND (old) IS NOT TRUE: the row enters the condition */
	a->fires = eval_on(a->e, a->newslot) && (a->oldslot == NULL || !eval_on(a->e, a->oldslot));
}

/*
 * Does the row (UPDATE: from oldslot to newslot) fire?  True with *error
 * when the expression failed (never raised, but for resource errors).
 */
bool
wa_fires_eval(WaFiresWhen *e, TupleTableSlot *newslot, TupleTableSlot *oldslot, char **error)
{
	EvalArgs	a;

	*error = NULL;
	if (e->parse_error)
	{
		*error = pstrdup(e->parse_error);
		return true;
	}
	a.e = e;
	a.newslot = newslot;
	a.oldslot = oldslot;
	a.fires = false;
	if (e->safe)
		eval_transition(&a);
	else if (!wa_run_protected(eval_transition, &a, error))
		return true;
	return a.fires;
}

/*
 * Can an UPDATE that changed only these columns (tg_updatedcols) change
 * what the expression gives?  Not when it reads none of them: it is
 * compiled only when it has no subquery and no volatile function, so on
 * the old and the new row, equal in every column it reads, it gives the
 * same.  (A BEFORE trigger may change other columns: the caller checks
 * that the table has none.)  True when it did not compile: the error is
 * the capture's.
 */
bool
wa_fires_reads_any(WaFiresWhen *e, const Bitmapset *columns)
{
	return e->parse_error != NULL || e->whole_row || bms_overlap(e->columns, columns);
}

/* false once a change of the table, a function, an operator or a type made it stale */
bool
wa_fires_current(WaFiresWhen *e)
{
	return e->valid;
}

typedef struct CheckArgs
{
	Relation	rel;
	const char *expr;
	const char *path;
	const char *alias;
	bool		want_bool;
} CheckArgs;

static void
check_parse(void *arg)
{
	CheckArgs  *c = (CheckArgs *) arg;

	(void) parse_fires_when(c->rel, c->expr, c->path, c->alias, c->want_bool, false);
}

/*
 * wa_notify._expr_check(source regclass, expr text, search_path text,
 *     alias text, is_condition boolean) RETURNS text: why a watch's order key
 * or fires_when no longer parses on the table (NULL: it does).  Parse
 * analysis only: nothing of the expression runs.  The watches view and the
 * status card show it.
 */
PG_FUNCTION_INFO_V1(wa_notify_expr_check);
Datum
wa_notify_expr_check(PG_FUNCTION_ARGS)
{
	CheckArgs	c;
	char	   *error;
	bool		ok;

	c.rel = try_relation_open(PG_GETARG_OID(0), AccessShareLock);
	if (c.rel == NULL)
		PG_RETURN_TEXT_P(cstring_to_text("the table no longer exists"));
	c.expr = text_to_cstring(PG_GETARG_TEXT_PP(1));
	c.path = text_to_cstring(PG_GETARG_TEXT_PP(2));
	c.alias = text_to_cstring(PG_GETARG_TEXT_PP(3));
	c.want_bool = PG_GETARG_BOOL(4);
	ok = wa_run_protected(check_parse, &c, &error);
	relation_close(c.rel, AccessShareLock);
	if (ok)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(error));
}
