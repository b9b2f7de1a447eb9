/*-------------------------------------------------------------------------
 * relay_config.c
 *	  wa_notify_relay's settings: the config file (key = value lines), the
 *	  defaults and ranges of its numeric keys (declared once, in size_keys[],
 *	  and printed by --help from the same table), and the log line.
 *	  doc/relay.md lists the keys for operators.
 *-------------------------------------------------------------------------
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "relay.h"

Config		cfg;

#define DEFAULT_LISTEN "127.0.0.1:8080"
#define DEFAULT_PATH "/webhook"

typedef struct SizeKey
{
	const char *name;
	size_t	   *dst;
	size_t		dflt;
	size_t		min;
	size_t		max;
	const char *unit;
	const char *what;
} SizeKey;

#define MB ((size_t) 1024 * 1024)

/*
 * max_body's default mirrors the default of the setting webhook_max_body
 * (wa_notify.setting), the one home of the 3 MB cap, which webhook_receive()
 * enforces: the relay must cap a body before it has a database connection to
 * read the setting from.  Keep the two equal.
 */
static const SizeKey size_keys[] = {
	{"max_body", &cfg.max_body, 3 * MB, 1024, 1024 * MB, "bytes",
	"one webhook body's cap (Meta's payloads are at most 3 MB)"},
	{"body_budget", &cfg.body_budget, 64 * MB, 1024, 64 * 1024 * MB, "bytes",
	"all bodies buffered at once; over it: 503 with Retry-After"},
	{"pool_size", &cfg.pool_size, 4, 1, 64, "connections",
	"database connections, each with its own thread"},
	{"timeout", &cfg.timeout, 30, 1, 3600, "s",
	"an idle HTTP connection is closed after this"},
	{"request_timeout", &cfg.request_timeout, 10, 1, 3600, "s",
	"headers and body must arrive within this, whatever the trickle rate"},
	{"connection_limit", &cfg.connection_limit, 4000, 16, 1000000, "connections",
	"HTTP connections at once; more are refused"},
	{"per_ip_connection_limit", &cfg.per_ip_connection_limit, 64, 0, 1000000, "connections",
	"HTTP connections at once from one address (0: no limit)"},
	{"statement_timeout", &cfg.statement_timeout, 5000, 100, 600000, "ms",
	"the relay's sessions' statement_timeout; a timeout answers 503"},
	{"lock_timeout", &cfg.lock_timeout, 2000, 10, 600000, "ms",
	"the relay's sessions' lock_timeout; a timeout answers 503"},
};

#define N_SIZE_KEYS (sizeof(size_keys) / sizeof(size_keys[0]))

void
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

int64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void
config_defaults(void)
{
	cfg.listen = DEFAULT_LISTEN;
	cfg.path = DEFAULT_PATH;
	cfg.conninfo = NULL;
	for (size_t i = 0; i < N_SIZE_KEYS; i++)
		*size_keys[i].dst = size_keys[i].dflt;
}

void
config_usage(FILE *f)
{
	fprintf(f,
			"Usage: wa_notify_relay [--config FILE] [--listen HOST:PORT] [--path PATH]\n"
			"\n"
			"Relays Meta's WhatsApp webhooks to wa_notify.webhook_verify() and\n"
			"wa_notify.webhook_receive().  Defaults: --listen " DEFAULT_LISTEN " --path " DEFAULT_PATH ".\n"
			"Config file keys (key = value): listen, path, conninfo, and\n");
	for (size_t i = 0; i < N_SIZE_KEYS; i++)
		fprintf(f, "  %-24s %s (%s, default %zu, %zu-%zu)\n", size_keys[i].name,
				size_keys[i].what, size_keys[i].unit, size_keys[i].dflt,
				size_keys[i].min, size_keys[i].max);
	fprintf(f,
			"The database connection comes from libpq's environment (PGHOST, PGPORT,\n"
			"PGDATABASE, PGUSER, PGSERVICE, PGPASSFILE, ...) or the config file's conninfo.\n");
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
set_size(const SizeKey *k, const char *v, const char *where)
{
	char	   *end;
	unsigned long long n;

	errno = 0;
	n = strtoull(v, &end, 10);
	if (errno || end == v || *end != '\0' || v[0] == '-' || n < k->min || n > k->max)
	{
		fprintf(stderr, "wa_notify_relay: %s: %s must be %s between %zu and %zu\n",
				where, k->name, k->unit, k->min, k->max);
		return false;
	}
	*k->dst = (size_t) n;
	return true;
}

static bool
set_key(const char *key, const char *value, const char *where)
{
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
	else
	{
		for (size_t i = 0; i < N_SIZE_KEYS; i++)
			if (strcmp(key, size_keys[i].name) == 0)
				return set_size(&size_keys[i], value, where);
		fprintf(stderr, "wa_notify_relay: %s: unknown key \"%s\"\n", where, key);
		return false;
	}
	return true;
}

bool
config_read(const char *file)
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

/* rules between keys, once all are read */
bool
config_check(void)
{
	if (cfg.body_budget < cfg.max_body)
	{
		fprintf(stderr, "wa_notify_relay: body_budget (%zu) must be at least max_body (%zu)\n",
				cfg.body_budget, cfg.max_body);
		return false;
	}
	return true;
}
