/*-------------------------------------------------------------------------
 * relay_db.c
 *	  The database side of wa_notify_relay: pool_size threads, each with its
 *	  own libpq connection, take complete requests from one FIFO queue, call
 *	  webhook_receive() / webhook_verify() / SELECT 1, store the answer in
 *	  the request and resume its (suspended) HTTP connection.
 *
 *	  Why this shape: libmicrohttpd's one event thread accepts and reads
 *	  every connection and never waits on the database, so a slow or locked
 *	  database cannot stop the relay from accepting, reading, answering
 *	  /healthz or refusing.  What a request may cost the database is bounded
 *	  by the sessions' statement_timeout and lock_timeout (set on every
 *	  connection, with log_parameter_max_length(_on_error) = 0 so that bind
 *	  parameters, the verify token among them, never reach the server log);
 *	  a request that waited in the queue longer than statement_timeout is
 *	  answered 503 without running (Meta retries).  A lost connection is
 *	  reopened and the statement retried once (a database restart).
 *-------------------------------------------------------------------------
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "relay.h"

static pthread_mutex_t queue_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t queue_cond = PTHREAD_COND_INITIALIZER;
static Req *queue_head;
static Req *queue_tail;
static bool stopping;
static pthread_t *threads;
static atomic_bool params_warned;

/* HTTP status for an SQLSTATE raised by the webhook functions. */
static unsigned int
status_for(const char *state)
{
	if (state == NULL)
		return 500;
	if (strcmp(state, "28000") == 0)
		return 403;				/* signature does not match */
	if (strcmp(state, "22032") == 0 || strcmp(state, "22023") == 0 ||
		strcmp(state, "22004") == 0)
		return 400;				/* malformed, not a WABA webhook */
	if (strcmp(state, "54000") == 0)
		return 413;				/* over webhook_max_body */
	if (strncmp(state, "08", 2) == 0 || strncmp(state, "57P", 3) == 0 ||
		strncmp(state, "53", 2) == 0 || strcmp(state, "40001") == 0 ||
		strcmp(state, "40P01") == 0 || strcmp(state, "57014") == 0 ||
		strcmp(state, "55P03") == 0)
		return 503;				/* try again later (timeouts included) */
	return 500;					/* 55000 app_secret unset, privileges, bugs */
}

static void
set_result(Req *r, unsigned int status, const char *type, const char *text)
{
	r->result_status = status;
	r->result_type = type;
	r->result_text = strdup(text);
}

/* Is this result (or its absence) a lost or refused connection? */
static bool
connection_trouble(PGconn *conn, PGresult *res)
{
	const char *state;

	if (res == NULL || PQstatus(conn) == CONNECTION_BAD)
		return true;
	state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
	return state && (strncmp(state, "08", 2) == 0 || strncmp(state, "57P", 3) == 0 ||
					 strcmp(state, "53300") == 0);
}

static bool
session_exec(PGconn *conn, const char *sql)
{
	PGresult   *res = PQexec(conn, sql);
	bool		ok = PQresultStatus(res) == PGRES_COMMAND_OK ||
		PQresultStatus(res) == PGRES_TUPLES_OK;

	PQclear(res);
	return ok;
}

/*
 * The session's limits.  log_parameter_max_length is superuser-only: a
 * least-privileged role gets it from ALTER ROLE (doc/roles.md); if neither
 * that nor the SET took, say so once and let /healthz report it.
 */
static bool
session_setup(PGconn *conn)
{
	char		sql[200];
	PGresult   *res;
	bool		params_hidden = false;

	snprintf(sql, sizeof(sql),
			 "SET statement_timeout = %zu; SET lock_timeout = %zu;"
			 " SET log_parameter_max_length_on_error = 0",
			 cfg.statement_timeout, cfg.lock_timeout);
	if (!session_exec(conn, sql))
		return false;
	for (int attempt = 0; attempt < 2; attempt++)
	{
		res = PQexec(conn, "SELECT current_setting('log_parameter_max_length')::int = 0");
		params_hidden = PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 &&
			strcmp(PQgetvalue(res, 0, 0), "t") == 0;
		PQclear(res);
		if (params_hidden || attempt > 0)
			break;
		/* not set for the role: a superuser's session may SET it */
		(void) session_exec(conn, "SET log_parameter_max_length = 0");
	}
	if (params_hidden)
		guard_clear(DEGRADED_PARAMS_LOGGED);
	else
	{
		guard_note(DEGRADED_PARAMS_LOGGED);
		if (!atomic_exchange(&params_warned, true))
			logline("warning: log_parameter_max_length is not 0 for the relay's role: bind parameters"
					" (the verify token) may reach the server log; see doc/roles.md");
	}
	return true;
}

static PGconn *
db_connect(void)
{
	const char *keys[4];
	const char *vals[4];
	int			n = 0;
	PGconn	   *conn;

	if (getenv("PGCONNECT_TIMEOUT") == NULL)
	{
		keys[n] = "connect_timeout";
		vals[n++] = "5";
	}
	keys[n] = "fallback_application_name";
	vals[n++] = "wa_notify_relay";
	keys[n] = "dbname";
	vals[n++] = cfg.conninfo;	/* NULL: PGDATABASE etc. */
	keys[n] = NULL;
	vals[n] = NULL;
	conn = PQconnectdbParams(keys, vals, 1);
	if (PQstatus(conn) == CONNECTION_OK && !session_setup(conn))
	{
		logline("database session set-up failed: %.300s", PQerrorMessage(conn));
		PQfinish(conn);
		return NULL;
	}
	if (PQstatus(conn) != CONNECTION_OK)
	{
		char	   *msg = PQerrorMessage(conn);
		size_t		len = strcspn(msg, "\n");

		logline("database connection failed: %.*s", (int) (len > 300 ? 300 : len), msg);
		PQfinish(conn);
		return NULL;
	}
	return conn;
}

/*
 * Run one statement on this thread's connection; (re)connect as needed and
 * retry once when the connection turns out dead.  NULL: the database cannot
 * be reached.
 */
static PGresult *
db_exec(PGconn **connp, const char *sql, int nparams, const char *const *values,
		const int *lengths, const int *formats)
{
	PGresult   *res = NULL;

	for (int attempt = 0; attempt < 2; attempt++)
	{
		if (*connp == NULL || PQstatus(*connp) != CONNECTION_OK)
		{
			if (*connp)
				PQfinish(*connp);
			*connp = db_connect();
			if (*connp == NULL)
			{
				guard_note(DEGRADED_DATABASE);
				return NULL;
			}
		}
		res = PQexecParams(*connp, sql, nparams, NULL, values, lengths, formats, 0);
		if (!connection_trouble(*connp, res))
		{
			guard_clear(DEGRADED_DATABASE);
			return res;
		}
		PQclear(res);
		res = NULL;
		PQfinish(*connp);		/* dead: the next attempt reconnects */
		*connp = NULL;
	}
	guard_note(DEGRADED_DATABASE);
	return NULL;
}

static void
result_error(Req *r, PGresult *res, bool is_verify)
{
	const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
	unsigned int st = status_for(state);

	if (state)
		snprintf(r->sqlstate, sizeof(r->sqlstate), "%s", state);
	if (is_verify && st != 503)
		st = 500;
	set_result(r, st, "text/plain",
			   st == 403 ? "bad signature\n" :
			   st == 400 ? "malformed payload\n" :
			   st == 413 ? "payload too large\n" :
			   st == 503 ? "database unavailable\n" : "internal error\n");
}

static void
run_receive(PGconn **connp, Req *r)
{
	const char *values[2] = {r->body ? r->body : "", r->args[0]};
	int			lengths[2] = {(int) r->len, 0};
	int			formats[2] = {1, 0};
	PGresult   *res = db_exec(connp, "SELECT wa_notify.webhook_receive($1::bytea, $2::text)",
							  2, values, lengths, formats);

	if (res == NULL)
		set_result(r, 503, "text/plain", "database unavailable\n");
	else if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1)
		set_result(r, 200, "application/json", PQgetvalue(res, 0, 0));
	else
		result_error(r, res, false);
	PQclear(res);
}

static void
run_verify(PGconn **connp, Req *r)
{
	PGresult   *res = db_exec(connp, "SELECT wa_notify.webhook_verify($1, $2, $3)",
							  3, (const char *const *) r->args, NULL, NULL);

	if (res == NULL)
		set_result(r, 503, "text/plain", "database unavailable\n");
	else if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 && !PQgetisnull(res, 0, 0))
		set_result(r, 200, "text/plain", PQgetvalue(res, 0, 0));
	else if (PQresultStatus(res) == PGRES_TUPLES_OK)
		set_result(r, 403, "text/plain", "forbidden\n");
	else
		result_error(r, res, true);
	PQclear(res);
}

/* ok, or degraded with the reasons; 503 when the database does not answer */
static void
run_health(PGconn **connp, Req *r)
{
	PGresult   *res = db_exec(connp, "SELECT 1", 0, NULL, NULL, NULL);
	bool		ok = res && PQresultStatus(res) == PGRES_TUPLES_OK;
	int			reasons = guard_degraded();
	char		text[300];

	PQclear(res);
	if (!ok)
		reasons |= DEGRADED_DATABASE;
	else
		reasons &= ~DEGRADED_DATABASE;
	if (reasons == 0)
		snprintf(text, sizeof(text), "ok\n");
	else
	{
		char		why[256];

		guard_describe(reasons, why, sizeof(why));
		snprintf(text, sizeof(text), "degraded: %s\n", why);
	}
	set_result(r, ok ? 200 : 503, "text/plain", text);
}

static Req *
queue_pop(void)
{
	Req		   *r;

	pthread_mutex_lock(&queue_lock);
	while (queue_head == NULL && !stopping)
		pthread_cond_wait(&queue_cond, &queue_lock);
	r = queue_head;
	if (r)
	{
		queue_head = r->next;
		if (queue_head == NULL)
			queue_tail = NULL;
		r->next = NULL;
	}
	pthread_mutex_unlock(&queue_lock);
	return r;
}

static void *
db_thread(void *arg)
{
	PGconn	   *conn = NULL;
	Req		   *r;

	(void) arg;
	while ((r = queue_pop()) != NULL)
	{
		if (now_ms() - r->queued_ms > (int64_t) cfg.statement_timeout)
		{
			guard_note(DEGRADED_POOL);
			set_result(r, 503, "text/plain", "busy\n");
		}
		else if (r->job == JOB_RECEIVE)
			run_receive(&conn, r);
		else if (r->job == JOB_VERIFY)
			run_verify(&conn, r);
		else
			run_health(&conn, r);
		/* the body is no longer needed: give its bytes back to the budget */
		free(r->body);
		r->body = NULL;
		budget_release(r->reserved);
		r->reserved = 0;
		atomic_store(&r->done, true);
		MHD_resume_connection(r->conn);
	}
	if (conn)
		PQfinish(conn);
	return NULL;
}

void
db_start(void)
{
	threads = calloc(cfg.pool_size, sizeof(pthread_t));
	for (size_t i = 0; i < cfg.pool_size; i++)
		if (pthread_create(&threads[i], NULL, db_thread, NULL) != 0)
		{
			logline("cannot start database thread %zu", i);
			exit(1);
		}
}

/* the caller has suspended r->conn; a database thread resumes it */
void
db_enqueue(Req *r)
{
	r->queued_ms = now_ms();
	r->next = NULL;
	pthread_mutex_lock(&queue_lock);
	if (queue_tail)
		queue_tail->next = r;
	else
		queue_head = r;
	queue_tail = r;
	pthread_cond_signal(&queue_cond);
	pthread_mutex_unlock(&queue_lock);
}

/* after the HTTP side has drained: threads finish the queue and exit */
void
db_stop(void)
{
	pthread_mutex_lock(&queue_lock);
	stopping = true;
	pthread_cond_broadcast(&queue_cond);
	pthread_mutex_unlock(&queue_lock);
	for (size_t i = 0; i < cfg.pool_size; i++)
		pthread_join(threads[i], NULL);
}
