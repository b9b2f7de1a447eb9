/*-------------------------------------------------------------------------
 * wa_notify_relay.c
 *	  The webhook relay (doc/relay.md, doc/design.md "Webhooks"): a small HTTP server
 *	  (libmicrohttpd) that answers Meta's webhook GET handshake and POSTs on
 *	  one path by calling wa_notify.webhook_verify() and
 *	  wa_notify.webhook_receive() through libpq, as a least-privileged role.
 *	  This file is the HTTP side and main(); relay_config.c the settings,
 *	  relay_db.c the database pool, relay_guard.c the limits.
 *
 *	  wa_notify_relay [--config FILE] [--listen HOST:PORT] [--path PATH]
 *
 *	  - one libmicrohttpd event thread (epoll, so no FD_SETSIZE ceiling)
 *	    accepts and reads every connection; it never waits on the
 *	    database: a complete request is queued for relay_db.c's threads and
 *	    its connection suspended until the answer is there;
 *	  - connection_limit and per_ip_connection_limit refuse connections at
 *	    once; request_timeout closes a request that has not arrived in time,
 *	    however slowly it trickles (relay_guard.c);
 *	  - the raw POST body reaches webhook_receive() byte for byte (a binary
 *	    bytea parameter), with the X-Hub-Signature-256 header;
 *	  - a POST without a signature is answered 401, and one whose
 *	    Content-Length is over the cap 413, before a byte of the body is
 *	    read; a body streamed past the cap (chunked) is not kept;
 *	  - bodies buffered at once stay within body_budget: over it, 503 with
 *	    Retry-After (Meta retries);
 *	  - answers: 200 applied (or a duplicate), 401 no signature, 403 bad
 *	    signature or wrong verify token, 400 malformed, 413 over the cap,
 *	    503 database unreachable, timed out or busy (Meta retries), 500
 *	    anything else;
 *	  - GET /healthz: 200 "ok", or 200 "degraded: <reasons>" (over a limit),
 *	    or 503 when the database does not answer;
 *	  - SIGTERM/SIGINT: stop accepting, finish running requests, exit 0;
 *	  - one log line per answered request on stderr, never a body, query
 *	    string (it holds the verify token) or secret; one line per burst of
 *	    refused or overdue connections.
 *
 *	  The database connection comes from libpq's environment (PGHOST,
 *	  PGPORT, PGDATABASE, PGUSER, PGSERVICE, PGPASSFILE ...) or the config
 *	  file's conninfo line, never from the command line.  See doc/relay.md.
 *-------------------------------------------------------------------------
 */
#define _GNU_SOURCE
#include <malloc.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "relay.h"

#define RELAY_VERSION "1.1"
#define SHUTDOWN_GRACE_SECS 10
/* seconds Meta is asked to wait before retrying a 503 */
#define RETRY_AFTER_SECS "5"
/* a chunked body's buffer starts at this and doubles */
#define FIRST_CHUNK_BUFFER 16384

static atomic_int active_requests;

/* -------------------------------------------------------------- HTTP */

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
	if (status == 503)
		MHD_add_response_header(resp, "Retry-After", RETRY_AFTER_SECS);
	ret = MHD_queue_response(c, status, resp);
	MHD_destroy_response(resp);
	r->status = status;
	r->answered = true;
	return ret;
}

static char *
dup_or_empty(const char *s)
{
	return strdup(s ? s : "");
}

/* hand a complete request to the database threads; they resume it */
static MHD_RESULT
to_database(struct MHD_Connection *c, Req *r, JobKind job)
{
	r->job = job;
	guard_busy(r->track, true);
	MHD_suspend_connection(c);
	db_enqueue(r);
	return MHD_YES;
}

/* the first call for a request: its headers are in, its body is not */
static MHD_RESULT
request_start(struct MHD_Connection *c, const char *url, const char *method, void **con_cls)
{
	Req		   *r = calloc(1, sizeof(Req));
	const char *cl;
	const char *sig;

	if (r == NULL)
		return MHD_NO;
	r->conn = c;
	r->track = guard_track(c);
	r->start_ms = now_ms();
	*con_cls = r;
	atomic_fetch_add(&active_requests, 1);
	r->is_post = strcmp(method, "POST") == 0;
	snprintf(r->method, sizeof(r->method), "%s", method);
	for (size_t i = 0; url[i] && i < sizeof(r->path) - 1; i++)
		r->path[i] = (url[i] > 0x20 && url[i] < 0x7f) ? url[i] : '?';
	if (!r->is_post || strcmp(url, cfg.path) != 0)
		return MHD_YES;			/* a body elsewhere is drained, then 404/405 */

	/* refuse early, before reading a byte of the body */
	sig = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Hub-Signature-256");
	if (sig == NULL || sig[0] == '\0')
		return reply(c, r, 401, "text/plain", "missing X-Hub-Signature-256\n");
	cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
	if (cl)
	{
		char	   *end;
		unsigned long long n = strtoull(cl, &end, 10);

		if (*end != '\0' || cl[0] == '-' || n > cfg.max_body)
		{
			r->too_large = true;
			return reply(c, r, 413, "text/plain", "payload too large\n");
		}
		/* the whole body's bytes are reserved now, or it is not read */
		if (!budget_reserve((size_t) n))
		{
			r->over_budget = true;
			return reply(c, r, 503, "text/plain", "busy\n");
		}
		r->reserved = (size_t) n;
	}
	r->args[0] = strdup(sig);
	return MHD_YES;
}

/* a piece of the body: kept within the cap and the budget, else drained */
static MHD_RESULT
request_body(Req *r, const char *url, const char *data, size_t n)
{
	size_t		need;

	if (r->answered || r->too_large || r->over_budget || !r->is_post ||
		strcmp(url, cfg.path) != 0)
		return MHD_YES;			/* drained, not kept */
	if (r->len + n > cfg.max_body)
	{
		/* streaming past the cap: stop keeping it, answer 413 at the end */
		r->too_large = true;
		free(r->body);
		r->body = NULL;
		r->len = r->cap = 0;
		return MHD_YES;
	}
	need = r->len + n;
	if (need > r->cap)
	{
		size_t		ncap = r->cap ? r->cap : FIRST_CHUNK_BUFFER;
		char	   *nb;

		while (ncap < need)
			ncap *= 2;
		if (ncap > cfg.max_body)
			ncap = cfg.max_body;
		if (ncap < r->reserved)
			ncap = r->reserved; /* Content-Length: one buffer of that size */
		if (ncap > r->reserved && !budget_reserve(ncap - r->reserved))
		{
			r->over_budget = true;
			free(r->body);
			r->body = NULL;
			r->len = r->cap = 0;
			return MHD_YES;
		}
		if (ncap > r->reserved)
			r->reserved = ncap;
		nb = realloc(r->body, ncap);
		if (nb == NULL)
			return MHD_NO;
		r->body = nb;
		r->cap = ncap;
	}
	memcpy(r->body + r->len, data, n);
	r->len += n;
	return MHD_YES;
}

/* the request is complete (or the database has answered it) */
static MHD_RESULT
request_end(struct MHD_Connection *c, Req *r, const char *url, const char *method)
{
	if (atomic_load(&r->done))
		return reply(c, r, r->result_status, r->result_type, r->result_text);
	if (r->answered)
		return MHD_YES;
	if (strcmp(url, "/healthz") == 0 && strcmp(method, "GET") == 0)
		return to_database(c, r, JOB_HEALTH);
	if (strcmp(url, cfg.path) != 0)
		return reply(c, r, 404, "text/plain", "not found\n");
	if (strcmp(method, "GET") == 0)
	{
		static const char *const keys[3] = {"hub.mode", "hub.verify_token", "hub.challenge"};

		for (int i = 0; i < 3; i++)
		{
			const char *v = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, keys[i]);

			if (v == NULL)
				return reply(c, r, 403, "text/plain", "forbidden\n");
			r->args[i] = dup_or_empty(v);
		}
		return to_database(c, r, JOB_VERIFY);
	}
	if (!r->is_post)
		return reply(c, r, 405, "text/plain", "method not allowed\n");
	if (r->too_large)
		return reply(c, r, 413, "text/plain", "payload too large\n");
	if (r->over_budget)
		return reply(c, r, 503, "text/plain", "busy\n");
	return to_database(c, r, JOB_RECEIVE);
}

static MHD_RESULT
handler(void *cls, struct MHD_Connection *c, const char *url, const char *method,
		const char *version, const char *upload_data, size_t *upload_size, void **con_cls)
{
	Req		   *r = *con_cls;

	(void) cls;
	(void) version;
	if (r == NULL)
		return request_start(c, url, method, con_cls);
	if (*upload_size > 0)
	{
		size_t		n = *upload_size;

		*upload_size = 0;
		return request_body(r, url, upload_data, n);
	}
	return request_end(c, r, url, method);
}

static void
completed(void *cls, struct MHD_Connection *c, void **con_cls,
		  enum MHD_RequestTerminationCode toe)
{
	Req		   *r = *con_cls;
	const union MHD_ConnectionInfo *ci;
	char		peer[64] = "-";

	(void) cls;
	if (r == NULL)
		return;
	guard_request_done(r->track);
	/* a request that never got an answer is counted by the guard's bursts */
	if (r->status != 0)
	{
		ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
		if (ci && ci->client_addr)
			getnameinfo(ci->client_addr,
						ci->client_addr->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
						: sizeof(struct sockaddr_in),
						peer, sizeof(peer), NULL, 0, NI_NUMERICHOST);
		/* no query string (the verify token is in it), no body */
		logline("%s %s %s status=%u bytes=%zu ms=%lld%s%s%s", peer, r->method, r->path, r->status,
				r->len, (long long) (now_ms() - r->start_ms),
				r->sqlstate[0] ? " sqlstate=" : "", r->sqlstate,
				toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? "" : " (connection closed)");
	}
	free(r->body);
	budget_release(r->reserved);
	for (int i = 0; i < 3; i++)
		free(r->args[i]);
	free(r->result_text);
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

/* --config, --listen, --path (and --help, --version); -1: exit 0, 0: go on, 2: bad */
static int
parse_args(int argc, char **argv, const char **config_file, const char **cli_listen,
		   const char **cli_path)
{
	for (int i = 1; i < argc; i++)
	{
		const char *a = argv[i];
		static const char *const names[3] = {"--config", "--listen", "--path"};
		const char **dsts[3] = {config_file, cli_listen, cli_path};
		bool		matched = false;

		if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0)
		{
			config_usage(stdout);
			return -1;
		}
		if (strcmp(a, "--version") == 0)
		{
			printf("wa_notify_relay " RELAY_VERSION "\n");
			return -1;
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
			config_usage(stderr);
			return 2;
		}
	}
	return 0;
}

static struct MHD_Daemon *
start_http(struct sockaddr_storage *ss)
{
	unsigned int flags = MHD_USE_EPOLL | MHD_USE_INTERNAL_POLLING_THREAD |
		MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
	size_t		connections = guard_fd_limit(cfg.connection_limit);

	if (connections < cfg.connection_limit)
	{
		logline("the open-file limit allows %zu connections, not connection_limit %zu:"
				" connection_limit lowered (raise LimitNOFILE / ulimit -n)",
				connections, cfg.connection_limit);
		cfg.connection_limit = connections;
	}
	if (ss->ss_family == AF_INET6)
		flags |= MHD_USE_IPv6;
	return MHD_start_daemon(flags, 0, NULL, NULL, handler, NULL,
							MHD_OPTION_EXTERNAL_LOGGER, guard_mhd_logger, NULL,
							MHD_OPTION_SOCK_ADDR, (struct sockaddr *) ss,
							MHD_OPTION_CONNECTION_LIMIT, (unsigned int) cfg.connection_limit,
							MHD_OPTION_PER_IP_CONNECTION_LIMIT,
							(unsigned int) cfg.per_ip_connection_limit,
							MHD_OPTION_CONNECTION_TIMEOUT,
							(unsigned int) (cfg.timeout < cfg.request_timeout ?
											cfg.timeout : cfg.request_timeout),
							MHD_OPTION_NOTIFY_CONNECTION, guard_notify_connection, NULL,
							MHD_OPTION_NOTIFY_COMPLETED, completed, NULL,
							MHD_OPTION_END);
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
	int			rc;

	config_defaults();
	rc = parse_args(argc, argv, &config_file, &cli_listen, &cli_path);
	if (rc != 0)
		return rc < 0 ? 0 : rc;
	if (config_file && !config_read(config_file))
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
	if (!config_check())
		return 2;
	if (!resolve_listen(cfg.listen, &ss, &sslen))
	{
		fprintf(stderr, "wa_notify_relay: bad listen address \"%s\" (HOST:PORT)\n", cfg.listen);
		return 2;
	}

	/*
	 * Bodies are big and short-lived: map them, so that a freed one goes back
	 * to the system at once (glibc would otherwise raise its threshold and
	 * keep them on the heap), and RSS follows the body budget.
	 */
	mallopt(M_MMAP_THRESHOLD, 128 * 1024);

	/* signals go to the main thread's sigwait(), not to the other threads */
	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);

	db_start();
	guard_start();
	d = start_http(&ss);
	if (d == NULL)
	{
		fprintf(stderr, "wa_notify_relay: cannot listen on %s\n", cfg.listen);
		return 1;
	}
	logline("listening on %s (epoll), path %s, body cap %zu bytes, body budget %zu bytes,"
			" %zu connections (%zu per address), request timeout %zu s, %zu database connections"
			" to %s (statement_timeout %zu ms, lock_timeout %zu ms)",
			cfg.listen, cfg.path, cfg.max_body, cfg.body_budget, cfg.connection_limit,
			cfg.per_ip_connection_limit, cfg.request_timeout, cfg.pool_size,
			cfg.conninfo ? "the config file's conninfo" : "libpq's environment",
			cfg.statement_timeout, cfg.lock_timeout);

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
	db_stop();
	guard_stop();
	logline("stopped");
	return 0;
}
