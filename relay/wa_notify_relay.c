/*-------------------------------------------------------------------------
 * wa_notify_relay.c
 *	  The webhook relay (doc/design.md, "Webhooks"): a small HTTP server
 *	  (libmicrohttpd) that answers Meta's webhook GET handshake and POSTs on
 *	  one path by calling wa_notify.webhook_verify() and
 *	  wa_notify.webhook_receive() through libpq, as a least-privileged role.
 *
 *	  wa_notify_relay [--config FILE] [--listen HOST:PORT] [--path PATH]
 *
 *	  - the raw POST body reaches webhook_receive() byte for byte (a binary
 *	    bytea parameter), with the X-Hub-Signature-256 header;
 *	  - bodies over the cap are refused from Content-Length before they are
 *	    read, and while streaming (chunked) without being kept;
 *	  - answers: 200 applied (or a duplicate), 401 no signature, 403 bad
 *	    signature or wrong verify token, 400 malformed, 413 over the cap,
 *	    503 database unreachable (Meta retries), 500 anything else;
 *	  - GET /healthz: 200 while the database answers, else 503;
 *	  - reconnects after a database restart (one retry per request);
 *	  - SIGTERM/SIGINT: stop accepting, finish running requests, exit 0;
 *	  - one log line per request on stderr, never a body, query string
 *	    (it holds the verify token) or secret.
 *
 *	  The database connection comes from libpq's environment (PGHOST,
 *	  PGPORT, PGDATABASE, PGUSER, PGSERVICE, PGPASSFILE ...) or the config
 *	  file's conninfo line, never from the command line.  See doc/relay.md.
 *-------------------------------------------------------------------------
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>
#include <microhttpd.h>

#if MHD_VERSION < 0x00097002
#define MHD_RESULT int
#else
#define MHD_RESULT enum MHD_Result
#endif

#define RELAY_VERSION "1.0"
#define DEFAULT_LISTEN "127.0.0.1:8080"
#define DEFAULT_PATH "/webhook"
/*
 * Meta's payloads are up to 3 MB.  The one home of that cap is the default
 * of the setting webhook_max_body (wa_notify.setting, which
 * webhook_receive() enforces); the relay must cap bodies before it has a
 * database connection to read it from, so this default mirrors it.  Keep
 * the two equal.
 */
#define DEFAULT_MAX_BODY (3 * 1024 * 1024)
#define DEFAULT_POOL 4
#define SHUTDOWN_GRACE_SECS 10

/* ------------------------------------------------------------ settings */

typedef struct Config
{
	char	   *listen;
	char	   *path;
	char	   *conninfo;		/* NULL: libpq's environment */
	size_t		max_body;
	int			pool_size;
	int			timeout;		/* HTTP connection idle timeout, s */
} Config;

static Config cfg;

static void
logline(const char *fmt,...)
{
	char		ts[32];
	struct timespec now;
	struct tm	tm;
	va_list		ap;

	clock_gettime(CLOCK_REALTIME, &now);
	gmtime_r(&now.tv_sec, &tm);
	strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
	flockfile(stderr);
	fprintf(stderr, "%s.%03ldZ wa_notify_relay: ", ts, now.tv_nsec / 1000000);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	fflush(stderr);
	funlockfile(stderr);
}

static void
usage(FILE *f)
{
	fprintf(f,
			"Usage: wa_notify_relay [--config FILE] [--listen HOST:PORT] [--path PATH]\n"
			"\n"
			"Relays Meta's WhatsApp webhooks to wa_notify.webhook_verify() and\n"
			"wa_notify.webhook_receive().  Defaults: --listen " DEFAULT_LISTEN " --path " DEFAULT_PATH ".\n"
			"Config file keys (key = value): listen, path, conninfo, max_body (bytes,\n"
			"default %d), pool_size (database connections and HTTP threads, default %d),\n"
			"timeout (idle HTTP connection timeout, s, default 30).\n"
			"The database connection comes from libpq's environment (PGHOST, PGPORT,\n"
			"PGDATABASE, PGUSER, PGSERVICE, PGPASSFILE, ...) or the config file's conninfo.\n",
			DEFAULT_MAX_BODY, DEFAULT_POOL);
}

static char *
trim(char *s)
{
	char	   *e;

	while (*s == ' ' || *s == '\t')
		s++;
	e = s + strlen(s);
	while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\n' || e[-1] == '\r'))
		*--e = '\0';
	return s;
}

static bool
parse_size(const char *v, size_t *out, size_t min, size_t max)
{
	char	   *end;
	unsigned long long n;

	errno = 0;
	n = strtoull(v, &end, 10);
	if (errno || end == v || *end != '\0' || n < min || n > max)
		return false;
	*out = (size_t) n;
	return true;
}

static bool
set_key(const char *key, const char *value, const char *where)
{
	size_t		n;

	if (strcmp(key, "listen") == 0)
		cfg.listen = strdup(value);
	else if (strcmp(key, "path") == 0)
	{
		if (value[0] != '/')
		{
			fprintf(stderr, "wa_notify_relay: %s: path must start with \"/\"\n", where);
			return false;
		}
		cfg.path = strdup(value);
	}
	else if (strcmp(key, "conninfo") == 0)
		cfg.conninfo = strdup(value);
	else if (strcmp(key, "max_body") == 0)
	{
		if (!parse_size(value, &cfg.max_body, 1024, (size_t) 1 << 30))
		{
			fprintf(stderr, "wa_notify_relay: %s: max_body must be bytes between 1024 and 1073741824\n", where);
			return false;
		}
	}
	else if (strcmp(key, "pool_size") == 0)
	{
		if (!parse_size(value, &n, 1, 64))
		{
			fprintf(stderr, "wa_notify_relay: %s: pool_size must be between 1 and 64\n", where);
			return false;
		}
		cfg.pool_size = (int) n;
	}
	else if (strcmp(key, "timeout") == 0)
	{
		if (!parse_size(value, &n, 1, 3600))
		{
			fprintf(stderr, "wa_notify_relay: %s: timeout must be seconds between 1 and 3600\n", where);
			return false;
		}
		cfg.timeout = (int) n;
	}
	else
	{
		fprintf(stderr, "wa_notify_relay: %s: unknown key \"%s\"\n", where, key);
		return false;
	}
	return true;
}

static bool
read_config(const char *file)
{
	FILE	   *f = fopen(file, "r");
	char		line[4096];
	int			lineno = 0;

	if (f == NULL)
	{
		fprintf(stderr, "wa_notify_relay: cannot open config file \"%s\": %s\n", file, strerror(errno));
		return false;
	}
	while (fgets(line, sizeof(line), f))
	{
		char	   *s = trim(line);
		char	   *eq;
		char		where[600];

		lineno++;
		if (*s == '\0' || *s == '#')
			continue;
		snprintf(where, sizeof(where), "%.500s line %d", file, lineno);
		eq = strchr(s, '=');
		if (eq == NULL)
		{
			fprintf(stderr, "wa_notify_relay: %s: expected key = value\n", where);
			fclose(f);
			return false;
		}
		*eq = '\0';
		if (!set_key(trim(s), trim(eq + 1), where))
		{
			fclose(f);
			return false;
		}
	}
	fclose(f);
	return true;
}

/* ------------------------------------------------------ database pool */

typedef struct Pool
{
	pthread_mutex_t lock;
	pthread_cond_t freed;
	PGconn	  **conns;
	bool	   *busy;
	int			size;
} Pool;

static Pool pool;

static PGconn *
db_connect(void)
{
	const char *keys[4];
	const char *vals[4];
	int			n = 0;

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
	return PQconnectdbParams(keys, vals, 1);
}

static int
pool_acquire(void)
{
	int			slot = -1;

	pthread_mutex_lock(&pool.lock);
	for (;;)
	{
		for (int i = 0; i < pool.size; i++)
			if (!pool.busy[i])
			{
				slot = i;
				break;
			}
		if (slot >= 0)
			break;
		pthread_cond_wait(&pool.freed, &pool.lock);
	}
	pool.busy[slot] = true;
	pthread_mutex_unlock(&pool.lock);
	return slot;
}

static void
pool_release(int slot)
{
	pthread_mutex_lock(&pool.lock);
	pool.busy[slot] = false;
	pthread_cond_signal(&pool.freed);
	pthread_mutex_unlock(&pool.lock);
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

/*
 * Run one statement on a pooled connection; (re)connect as needed and retry
 * once when the connection turns out dead (a database restart).  Returns the
 * result (caller PQclear()s it) or NULL when the database cannot be reached.
 */
static PGresult *
db_exec(const char *sql, int nparams, const char *const *values,
		const int *lengths, const int *formats)
{
	int			slot = pool_acquire();
	PGresult   *res = NULL;

	for (int attempt = 0; attempt < 2; attempt++)
	{
		PGconn	   *conn = pool.conns[slot];

		if (conn == NULL || PQstatus(conn) != CONNECTION_OK)
		{
			if (conn)
				PQfinish(conn);
			conn = pool.conns[slot] = db_connect();
			if (PQstatus(conn) != CONNECTION_OK)
			{
				char	   *msg = PQerrorMessage(conn);
				size_t		len = strcspn(msg, "\n");

				logline("database connection failed: %.*s", (int) (len > 300 ? 300 : len), msg);
				break;
			}
		}
		res = PQexecParams(conn, sql, nparams, NULL, values, lengths, formats, 0);
		if (!connection_trouble(conn, res))
			break;
		PQclear(res);
		res = NULL;
		/* a dead connection: drop it; the next attempt reconnects */
		PQfinish(conn);
		pool.conns[slot] = NULL;
	}
	pool_release(slot);
	return res;
}

/* -------------------------------------------------------------- HTTP */

typedef struct Req
{
	struct timespec start;
	bool		is_post;
	bool		too_large;
	bool		answered;		/* a response was queued early */
	char	   *body;
	size_t		len;
	size_t		cap;
	unsigned int status;
	char		sqlstate[6];
	char		method[8];
	char		path[65];		/* printable ASCII, truncated */
} Req;

static atomic_int active_requests;

static MHD_RESULT
reply(struct MHD_Connection *c, Req *r, unsigned int status, const char *type, const char *text)
{
	struct MHD_Response *resp;
	MHD_RESULT	ret;

	resp = MHD_create_response_from_buffer(strlen(text), (void *) text, MHD_RESPMEM_MUST_COPY);
	if (resp == NULL)
		return MHD_NO;
	MHD_add_response_header(resp, "Content-Type", type);
	MHD_add_response_header(resp, "Cache-Control", "no-store");
	if (status == 405)
		MHD_add_response_header(resp, "Allow", "GET, POST");
	ret = MHD_queue_response(c, status, resp);
	MHD_destroy_response(resp);
	r->status = status;
	r->answered = true;
	return ret;
}

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
		strcmp(state, "40P01") == 0)
		return 503;				/* try again later */
	return 500;					/* 55000 app_secret unset, privileges, bugs */
}

static MHD_RESULT
handle_post(struct MHD_Connection *c, Req *r)
{
	const char *sig = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Hub-Signature-256");
	const char *values[2];
	int			lengths[2];
	int			formats[2] = {1, 0};
	PGresult   *res;
	MHD_RESULT	ret;

	if (r->too_large)
		return reply(c, r, 413, "text/plain", "payload too large\n");
	if (sig == NULL || sig[0] == '\0')
		return reply(c, r, 401, "text/plain", "missing X-Hub-Signature-256\n");

	values[0] = r->body ? r->body : "";
	lengths[0] = (int) r->len;
	values[1] = sig;
	lengths[1] = 0;
	res = db_exec("SELECT wa_notify.webhook_receive($1::bytea, $2::text)",
				  2, values, lengths, formats);
	if (res == NULL)
		return reply(c, r, 503, "text/plain", "database unavailable\n");
	if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1)
	{
		ret = reply(c, r, 200, "application/json", PQgetvalue(res, 0, 0));
	}
	else
	{
		const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
		unsigned int st = status_for(state);

		if (state)
			snprintf(r->sqlstate, sizeof(r->sqlstate), "%s", state);
		ret = reply(c, r, st, "text/plain",
					st == 403 ? "bad signature\n" :
					st == 400 ? "malformed payload\n" :
					st == 413 ? "payload too large\n" :
					st == 503 ? "database unavailable\n" : "internal error\n");
	}
	PQclear(res);
	return ret;
}

static MHD_RESULT
handle_verify(struct MHD_Connection *c, Req *r)
{
	const char *values[3];
	PGresult   *res;
	MHD_RESULT	ret;

	values[0] = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "hub.mode");
	values[1] = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "hub.verify_token");
	values[2] = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "hub.challenge");
	if (values[0] == NULL || values[1] == NULL || values[2] == NULL)
		return reply(c, r, 403, "text/plain", "forbidden\n");
	res = db_exec("SELECT wa_notify.webhook_verify($1, $2, $3)", 3, values, NULL, NULL);
	if (res == NULL)
		return reply(c, r, 503, "text/plain", "database unavailable\n");
	if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 && !PQgetisnull(res, 0, 0))
		ret = reply(c, r, 200, "text/plain", PQgetvalue(res, 0, 0));
	else if (PQresultStatus(res) == PGRES_TUPLES_OK)
		ret = reply(c, r, 403, "text/plain", "forbidden\n");
	else
	{
		const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
		unsigned int st = status_for(state);

		if (state)
			snprintf(r->sqlstate, sizeof(r->sqlstate), "%s", state);
		ret = reply(c, r, st == 503 ? 503 : 500, "text/plain",
					st == 503 ? "database unavailable\n" : "internal error\n");
	}
	PQclear(res);
	return ret;
}

static MHD_RESULT
handle_health(struct MHD_Connection *c, Req *r)
{
	PGresult   *res = db_exec("SELECT 1", 0, NULL, NULL, NULL);
	bool		ok = res && PQresultStatus(res) == PGRES_TUPLES_OK;

	PQclear(res);
	return ok ? reply(c, r, 200, "text/plain", "ok\n")
		: reply(c, r, 503, "text/plain", "database unavailable\n");
}

static MHD_RESULT
handler(void *cls, struct MHD_Connection *c, const char *url, const char *method,
		const char *version, const char *upload_data, size_t *upload_size, void **con_cls)
{
	Req		   *r = *con_cls;

	(void) cls;
	(void) version;
	if (r == NULL)
	{
		const char *cl;

		r = calloc(1, sizeof(Req));
		if (r == NULL)
			return MHD_NO;
		clock_gettime(CLOCK_MONOTONIC, &r->start);
		*con_cls = r;
		atomic_fetch_add(&active_requests, 1);
		r->is_post = strcmp(method, "POST") == 0;
		snprintf(r->method, sizeof(r->method), "%s", method);
		for (size_t i = 0; url[i] && i < sizeof(r->path) - 1; i++)
			r->path[i] = (url[i] > 0x20 && url[i] < 0x7f) ? url[i] : '?';
		if (!r->is_post)
			return MHD_YES;
		if (strcmp(url, cfg.path) != 0)
			return MHD_YES;		/* 404 once the body is drained */
		/* refuse early, before reading a byte of the body */
		cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
		if (cl)
		{
			char	   *end;
			unsigned long long n = strtoull(cl, &end, 10);

			if (*end != '\0' || n > cfg.max_body)
			{
				r->too_large = true;
				return reply(c, r, 413, "text/plain", "payload too large\n");
			}
		}
		return MHD_YES;
	}

	if (*upload_size > 0)
	{
		size_t		n = *upload_size;

		*upload_size = 0;
		if (r->answered || r->too_large || !r->is_post || strcmp(url, cfg.path) != 0)
			return MHD_YES;		/* drained, not kept */
		if (r->len + n > cfg.max_body)
		{
			/* streaming past the cap: stop keeping it, answer 413 at the end */
			r->too_large = true;
			free(r->body);
			r->body = NULL;
			r->len = r->cap = 0;
			return MHD_YES;
		}
		if (r->len + n > r->cap)
		{
			size_t		ncap = r->cap ? r->cap : 16384;
			char	   *nb;

			while (ncap < r->len + n)
				ncap *= 2;
			if (ncap > cfg.max_body)
				ncap = cfg.max_body;
			nb = realloc(r->body, ncap);
			if (nb == NULL)
				return MHD_NO;
			r->body = nb;
			r->cap = ncap;
		}
		memcpy(r->body + r->len, upload_data, n);
		r->len += n;
		return MHD_YES;
	}
	if (r->answered)
		return MHD_YES;

	if (strcmp(url, "/healthz") == 0 && strcmp(method, "GET") == 0)
		return handle_health(c, r);
	if (strcmp(url, cfg.path) != 0)
		return reply(c, r, 404, "text/plain", "not found\n");
	if (strcmp(method, "GET") == 0)
		return handle_verify(c, r);
	if (r->is_post)
		return handle_post(c, r);
	return reply(c, r, 405, "text/plain", "method not allowed\n");
}

static void
completed(void *cls, struct MHD_Connection *c, void **con_cls,
		  enum MHD_RequestTerminationCode toe)
{
	Req		   *r = *con_cls;
	struct timespec now;
	const union MHD_ConnectionInfo *ci;
	char		peer[64] = "-";

	(void) cls;
	if (r == NULL)
		return;
	clock_gettime(CLOCK_MONOTONIC, &now);
	ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	if (ci && ci->client_addr)
		getnameinfo(ci->client_addr,
					ci->client_addr->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
					: sizeof(struct sockaddr_in),
					peer, sizeof(peer), NULL, 0, NI_NUMERICHOST);
	/* no query string (the verify token is in it), no body */
	logline("%s %s %s status=%u bytes=%zu ms=%.1f%s%s%s", peer, r->method, r->path, r->status,
			r->len, (now.tv_sec - r->start.tv_sec) * 1000.0 + (now.tv_nsec - r->start.tv_nsec) / 1e6,
			r->sqlstate[0] ? " sqlstate=" : "", r->sqlstate,
			toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? "" : " (connection closed)");
	free(r->body);
	free(r);
	*con_cls = NULL;
	atomic_fetch_sub(&active_requests, 1);
}

/* --------------------------------------------------------------- main */

static bool
resolve_listen(const char *spec, struct sockaddr_storage *ss, socklen_t *sslen)
{
	char		host[256];
	const char *port;
	const char *colon;
	struct addrinfo hints = {0};
	struct addrinfo *ai;
	int			rc;

	if (spec[0] == '[')
	{
		const char *close = strchr(spec, ']');

		if (close == NULL || close[1] != ':')
			return false;
		snprintf(host, sizeof(host), "%.*s", (int) (close - spec - 1), spec + 1);
		port = close + 2;
	}
	else
	{
		colon = strrchr(spec, ':');
		if (colon == NULL)
			return false;
		snprintf(host, sizeof(host), "%.*s", (int) (colon - spec), spec);
		port = colon + 1;
	}
	if (*port == '\0')
		return false;
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	rc = getaddrinfo(host[0] ? host : NULL, port, &hints, &ai);
	if (rc != 0)
	{
		fprintf(stderr, "wa_notify_relay: cannot resolve \"%s\": %s\n", spec, gai_strerror(rc));
		return false;
	}
	memcpy(ss, ai->ai_addr, ai->ai_addrlen);
	*sslen = ai->ai_addrlen;
	freeaddrinfo(ai);
	return true;
}

int
main(int argc, char **argv)
{
	const char *config_file = NULL;
	const char *cli_listen = NULL;
	const char *cli_path = NULL;
	struct sockaddr_storage ss;
	socklen_t	sslen;
	struct MHD_Daemon *d;
	sigset_t	sigs;
	int			sig;
	unsigned int flags;

	cfg.listen = DEFAULT_LISTEN;
	cfg.path = DEFAULT_PATH;
	cfg.max_body = DEFAULT_MAX_BODY;
	cfg.pool_size = DEFAULT_POOL;
	cfg.timeout = 30;

	for (int i = 1; i < argc; i++)
	{
		const char *a = argv[i];
		static const char *const names[3] = {"--config", "--listen", "--path"};
		const char **dsts[3] = {&config_file, &cli_listen, &cli_path};
		bool		matched = false;

		if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0)
		{
			usage(stdout);
			return 0;
		}
		if (strcmp(a, "--version") == 0)
		{
			printf("wa_notify_relay " RELAY_VERSION "\n");
			return 0;
		}
		for (int k = 0; k < 3 && !matched; k++)
		{
			size_t		n = strlen(names[k]);

			if (strncmp(a, names[k], n) == 0 && a[n] == '=')
			{
				*dsts[k] = a + n + 1;
				matched = true;
			}
			else if (strcmp(a, names[k]) == 0 && i + 1 < argc)
			{
				*dsts[k] = argv[++i];
				matched = true;
			}
		}
		if (!matched)
		{
			fprintf(stderr, "wa_notify_relay: unknown or incomplete option \"%s\"\n", a);
			usage(stderr);
			return 2;
		}
	}
	if (config_file && !read_config(config_file))
		return 2;
	if (cli_listen)
		cfg.listen = (char *) cli_listen;
	if (cli_path)
	{
		if (cli_path[0] != '/')
		{
			fprintf(stderr, "wa_notify_relay: --path must start with \"/\"\n");
			return 2;
		}
		cfg.path = (char *) cli_path;
	}
	if (strcmp(cfg.path, "/healthz") == 0)
	{
		fprintf(stderr, "wa_notify_relay: the webhook path cannot be /healthz\n");
		return 2;
	}
	if (!resolve_listen(cfg.listen, &ss, &sslen))
	{
		fprintf(stderr, "wa_notify_relay: bad listen address \"%s\" (HOST:PORT)\n", cfg.listen);
		return 2;
	}

	pthread_mutex_init(&pool.lock, NULL);
	pthread_cond_init(&pool.freed, NULL);
	pool.size = cfg.pool_size;
	pool.conns = calloc(pool.size, sizeof(PGconn *));
	pool.busy = calloc(pool.size, sizeof(bool));

	/* signals go to the main thread's sigwait(), not to the HTTP threads */
	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);

	flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG | MHD_USE_ITC;
	if (ss.ss_family == AF_INET6)
		flags |= MHD_USE_IPv6;
	d = MHD_start_daemon(flags, 0, NULL, NULL, handler, NULL,
						 MHD_OPTION_SOCK_ADDR, (struct sockaddr *) &ss,
						 MHD_OPTION_THREAD_POOL_SIZE, (unsigned int) cfg.pool_size,
						 MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int) cfg.timeout,
						 MHD_OPTION_NOTIFY_COMPLETED, completed, NULL,
						 MHD_OPTION_END);
	if (d == NULL)
	{
		fprintf(stderr, "wa_notify_relay: cannot listen on %s\n", cfg.listen);
		return 1;
	}
	logline("listening on %s, path %s, body cap %zu bytes, %d connections to %s",
			cfg.listen, cfg.path, cfg.max_body, cfg.pool_size,
			cfg.conninfo ? "the config file's conninfo" : "libpq's environment");

	for (;;)
	{
		if (sigwait(&sigs, &sig) != 0)
			continue;
		if (sig == SIGHUP)
		{
			logline("SIGHUP ignored (restart to change settings)");
			continue;
		}
		break;
	}
	logline("shutting down (%s): no new connections, finishing %d running requests",
			sig == SIGTERM ? "SIGTERM" : "SIGINT", atomic_load(&active_requests));
	MHD_quiesce_daemon(d);
	for (int i = 0; i < SHUTDOWN_GRACE_SECS * 20 && atomic_load(&active_requests) > 0; i++)
	{
		struct timespec ts = {0, 50 * 1000 * 1000};

		nanosleep(&ts, NULL);
	}
	MHD_stop_daemon(d);
	for (int i = 0; i < pool.size; i++)
		if (pool.conns[i])
			PQfinish(pool.conns[i]);
	logline("stopped");
	return 0;
}
