/*-------------------------------------------------------------------------
 * secrets.c
 *	  Where the secrets come from, and where they must never go.
 *
 *	  - The secrets file: the GUC wa_notify.secrets_file (PGC_SIGHUP) names
 *	    a file, like ssl_key_file, read by the server only: one
 *	    "name = value" a line ('#' starts a comment), names access_token,
 *	    app_secret, webhook_verify_token, callback_key, and
 *	    SENDER.access_token / SENDER.app_secret for other senders.  It is
 *	    refused (a LOG line saying why, no value in it) unless it is a
 *	    regular file owned by the server's OS user that group and others
 *	    cannot read.  Each process keeps the parsed file and reads it again
 *	    when the setting or the file (inode, size, mtime) changes.  When the
 *	    file is set it is the only source of the secrets it can hold:
 *	    configure() refuses them (wa_notify._refuse_if_secrets_file()).
 *	    (inode, size, mode, mtime, ctime: a chmod is seen too).
 *	    Without it, the secrets are rows of wa_notify.setting (is_secret),
 *	    which pg_dump leaves out (15_secrets.sql).
 *	  - wa_secret_get(): the one lookup every C reader uses (the worker's
 *	    bearer token, the Graph GET, the webhook's app secret and verify
 *	    token, the callback key).
 *	  - The callback data: biz_opaque_callback_data is "<id>.<mac>", the
 *	    message id and a truncated HMAC-SHA256 of it under the per-install
 *	    callback_key, so that a status webhook can only match the message
 *	    it names when it comes from a request this install made.
 *	  - The log: an emit_log_hook that hides the statement (and the bind
 *	    parameters) of every server log line whose statement sets or
 *	    passes a secret, so a failed configure(access_token => ...) or a
 *	    relay handshake never writes a secret into the log, whatever
 *	    log_min_error_statement says.  log_statement = all and
 *	    log_min_duration_statement still log the text a client sends: that
 *	    is why the file is the production way (doc/install.md).
 *
 *	  - The recipient hash: anonymization (80_retention.sql) replaces a
 *	    phone or a BSUID by a truncated HMAC-SHA256 of it under the same
 *	    per-install callback_key, with its own label so that the two MACs
 *	    never coincide: counts per recipient still work, and without the
 *	    key no one can test a guessed number against the log.
 *
 *	  Senders other than 'default' (25_senders.sql): without the file, their
 *	  secrets are rows of wa_notify.sender_secret, which pg_dump never writes.
 *
 *	  SQL: wa_notify._secret_available(name), _sender_secret_available(sender, name),
 *	  _refuse_if_secrets_file(setting),
 *	  _callback_data(message_id), _secrets_source(), _recipient_hash(value).
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sys/stat.h>
#include <fcntl.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#if OPENSSL_VERSION_NUMBER >= 0x30000000L
#include <openssl/core_names.h>
#include <openssl/params.h>
#endif

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/backend_status.h"
#include "utils/builtins.h"
#include "utils/elog.h"
#include "utils/guc.h"
#include "utils/snapmgr.h"

#include "settings.h"
#include "wa_notify.h"

char	   *wa_secrets_file = NULL;

#define WA_SECRETS_MAX_BYTES	65536	/* a secrets file is a few lines */
#define WA_SECRET_MAX_NAME		96		/* sender (63) + "." + name */
#define WA_CALLBACK_MAC_BYTES	16		/* 128 bits of HMAC-SHA256, as hex */
#define WA_RECIPIENT_HASH_BYTES	8		/* 64 bits: apart for counting, not for guessing */

/* the names a secrets file may hold; a sender prefix is allowed on some */
static const struct
{
	const char *name;
	bool		per_sender;
}			secret_names[] =
{
	{"access_token", true},
	{"app_secret", true},
	{"webhook_verify_token", false},
	{"callback_key", false},
};

typedef struct SecretEntry
{
	char		name[WA_SECRET_MAX_NAME];
	char	   *value;			/* malloc'd, wiped when dropped */
} SecretEntry;

/* This process's copy of the file (malloc'd: it outlives every context). */
static struct
{
	char	   *path;			/* the setting it was read for; NULL: none */
	dev_t		dev;
	ino_t		ino;
	off_t		size;
	mode_t		mode;
	struct timespec mtime;
	struct timespec ctime;		/* a chmod changes only this */
	bool		usable;
	char		problem[256];	/* why it is not usable (no value in it) */
	int			n;
	SecretEntry *entries;
}			cache;

static emit_log_hook_type prev_emit_log_hook = NULL;

static void
cache_drop_entries(void)
{
	for (int i = 0; i < cache.n; i++)
	{
		explicit_bzero(cache.entries[i].value, strlen(cache.entries[i].value));
		free(cache.entries[i].value);
	}
	free(cache.entries);
	cache.entries = NULL;
	cache.n = 0;
}

bool
wa_secrets_file_set(void)
{
	return wa_secrets_file != NULL && wa_secrets_file[0] != '\0';
}

static bool
name_allowed(const char *name)
{
	const char *dot = strchr(name, '.');

	for (size_t i = 0; i < lengthof(secret_names); i++)
	{
		if (dot == NULL && strcmp(name, secret_names[i].name) == 0)
			return true;
		if (dot != NULL && secret_names[i].per_sender &&
			strcmp(dot + 1, secret_names[i].name) == 0 && dot > name &&
			(size_t) (dot - name) <= 63 &&
			strspn(name, "abcdefghijklmnopqrstuvwxyz0123456789_") == (size_t) (dot - name))
			return true;
	}
	return false;
}

static char *
trim(char *s)
{
	char	   *e;

	while (*s == ' ' || *s == '\t')
		s++;
	e = s + strlen(s);
	while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r'))
		*--e = '\0';
	return s;
}

/* Parse buf (NUL-terminated, modified) into the cache; false + problem. */
static bool
parse_secrets(char *buf)
{
	int			lineno = 0;
	char	   *line = buf;

	while (line != NULL)
	{
		char	   *next = strchr(line, '\n');
		char	   *eq;
		char	   *name;
		char	   *value;

		if (next)
			*next++ = '\0';
		lineno++;
		line = trim(line);
		if (line[0] == '\0' || line[0] == '#')
		{
			line = next;
			continue;
		}
		eq = strchr(line, '=');
		if (eq == NULL)
		{
			snprintf(cache.problem, sizeof(cache.problem),
					 "line %d is not \"name = value\"", lineno);
			return false;
		}
		*eq = '\0';
		name = trim(line);
		value = trim(eq + 1);
		if (strlen(name) >= WA_SECRET_MAX_NAME || !name_allowed(name))
		{
			snprintf(cache.problem, sizeof(cache.problem),
					 "line %d: \"%.*s\" is not a secret wa_notify knows (access_token, app_secret, webhook_verify_token, callback_key, SENDER.access_token, SENDER.app_secret)",
					 lineno, 64, name);
			return false;
		}
		if (value[0] == '\0')
		{
			snprintf(cache.problem, sizeof(cache.problem),
					 "line %d: %s has no value", lineno, name);
			return false;
		}
		for (int i = 0; i < cache.n; i++)
			if (strcmp(cache.entries[i].name, name) == 0)
			{
				snprintf(cache.problem, sizeof(cache.problem),
						 "line %d: %s is given twice", lineno, name);
				return false;
			}
		{
			SecretEntry *ne = realloc(cache.entries, sizeof(SecretEntry) * (cache.n + 1));

			if (ne == NULL)
			{
				snprintf(cache.problem, sizeof(cache.problem), "out of memory");
				return false;
			}
			cache.entries = ne;
			strlcpy(ne[cache.n].name, name, WA_SECRET_MAX_NAME);
			ne[cache.n].value = strdup(value);
			if (ne[cache.n].value == NULL)
			{
				snprintf(cache.problem, sizeof(cache.problem), "out of memory");
				return false;
			}
			cache.n++;
		}
		line = next;
	}
	return true;
}

/* Read the file named by the setting, which st describes; false + problem. */
static bool
load_secrets(const char *path, const struct stat *st)
{
	int			fd;
	char	   *buf;
	ssize_t		got;
	bool		ok;

	if (!S_ISREG(st->st_mode))
	{
		snprintf(cache.problem, sizeof(cache.problem), "it is not a regular file");
		return false;
	}
	if (st->st_uid != geteuid())
	{
		snprintf(cache.problem, sizeof(cache.problem),
				 "it is not owned by the database server's operating system user");
		return false;
	}
	if (st->st_mode & (S_IRWXG | S_IRWXO))
	{
		snprintf(cache.problem, sizeof(cache.problem),
				 "group or others have access to it (mode %04o); it must be readable by the server's user only (chmod 600)",
				 (unsigned int) (st->st_mode & 07777));
		return false;
	}
	if (st->st_size > WA_SECRETS_MAX_BYTES)
	{
		snprintf(cache.problem, sizeof(cache.problem), "it is larger than %d bytes",
				 WA_SECRETS_MAX_BYTES);
		return false;
	}
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
	{
		snprintf(cache.problem, sizeof(cache.problem), "it cannot be opened: %s", strerror(errno));
		return false;
	}
	buf = malloc(WA_SECRETS_MAX_BYTES + 1);
	if (buf == NULL)
	{
		close(fd);
		snprintf(cache.problem, sizeof(cache.problem), "out of memory");
		return false;
	}
	got = read(fd, buf, WA_SECRETS_MAX_BYTES);
	close(fd);
	if (got < 0)
	{
		free(buf);
		snprintf(cache.problem, sizeof(cache.problem), "it cannot be read: %s", strerror(errno));
		return false;
	}
	buf[got] = '\0';
	if ((ssize_t) strlen(buf) != got)
	{
		snprintf(cache.problem, sizeof(cache.problem), "it contains a NUL byte");
		ok = false;
	}
	else
		ok = parse_secrets(buf);
	explicit_bzero(buf, got);
	free(buf);
	if (!ok)
		cache_drop_entries();
	return ok;
}

/*
 * Bring this process's copy up to date with the setting and the file.  A
 * problem is logged once per state of the file, at LOG, without any value.
 */
static void
secrets_refresh(void)
{
	struct stat st;
	bool		same;

	if (!wa_secrets_file_set())
	{
		if (cache.path)
		{
			cache_drop_entries();
			free(cache.path);
			cache.path = NULL;
		}
		return;
	}
	if (stat(wa_secrets_file, &st) != 0)
	{
		int			save = errno;
		bool		was = cache.path && strcmp(cache.path, wa_secrets_file) == 0 &&
			!cache.usable && cache.ino == 0;

		cache_drop_entries();
		free(cache.path);
		cache.path = strdup(wa_secrets_file);
		cache.usable = false;
		cache.ino = 0;
		snprintf(cache.problem, sizeof(cache.problem), "it cannot be read: %s", strerror(save));
		if (!was)
			ereport(LOG,
					(errcode(ERRCODE_CONFIG_FILE_ERROR),
					 errmsg("wa_notify.secrets_file \"%s\" is refused: %s", wa_secrets_file, cache.problem),
					 errhint("Create it with one \"name = value\" a line, owned by the server's user, mode 0600, then reload.")));
		return;
	}
	same = cache.path != NULL && strcmp(cache.path, wa_secrets_file) == 0 &&
		cache.dev == st.st_dev && cache.ino == st.st_ino && cache.size == st.st_size &&
		cache.mode == st.st_mode &&
		cache.mtime.tv_sec == st.st_mtim.tv_sec && cache.mtime.tv_nsec == st.st_mtim.tv_nsec &&
		cache.ctime.tv_sec == st.st_ctim.tv_sec && cache.ctime.tv_nsec == st.st_ctim.tv_nsec;
	if (same)
		return;
	cache_drop_entries();
	free(cache.path);
	cache.path = strdup(wa_secrets_file);
	cache.dev = st.st_dev;
	cache.ino = st.st_ino;
	cache.size = st.st_size;
	cache.mode = st.st_mode;
	cache.mtime = st.st_mtim;
	cache.ctime = st.st_ctim;
	cache.problem[0] = '\0';
	cache.usable = load_secrets(wa_secrets_file, &st);
	if (!cache.usable)
		ereport(LOG,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("wa_notify.secrets_file \"%s\" is refused: %s", wa_secrets_file, cache.problem),
				 errhint("The file holds one \"name = value\" a line, is owned by the server's user and has mode 0600 (doc/install.md).")));
}

/* Why the secrets file cannot be used now, or NULL (it can, or is not set). */
const char *
wa_secrets_problem(void)
{
	if (!wa_secrets_file_set())
		return NULL;
	secrets_refresh();
	return cache.usable ? NULL : cache.problem;
}

/* The value of a secrets file line, or NULL. */
static const char *
file_secret(const char *key)
{
	secrets_refresh();
	if (!cache.usable)
		return NULL;
	for (int i = 0; i < cache.n; i++)
		if (strcmp(cache.entries[i].name, key) == 0)
			return cache.entries[i].value;
	return NULL;
}

/*
 * The secret rows read so far, kept across transactions while the settings
 * snapshot is the same load (settings.c's wa_settings_version(): a
 * committed configuration change, secrets included, loads it again; 0, no
 * current snapshot: not cached), so a webhook call does not query its app
 * secret each time.  malloc'd, wiped
 * when dropped; never the file's secrets (the file has its own reload rule).
 */
#define WA_SECRET_ROWS_CACHED 8
static struct
{
	uint64		version;		/* wa_settings_version() they were read at */
	int			n;
	struct
	{
		char		name[WA_SECRET_MAX_NAME];
		char	   *value;		/* NULL: the row is unset */
	}			rows[WA_SECRET_ROWS_CACHED];
}			row_cache;

static void
row_cache_drop(void)
{
	for (int i = 0; i < row_cache.n; i++)
		if (row_cache.rows[i].value)
		{
			explicit_bzero(row_cache.rows[i].value, strlen(row_cache.rows[i].value));
			free(row_cache.rows[i].value);
		}
	row_cache.n = 0;
}

/* The value of a secret row of wa_notify.setting, palloc'd, or NULL. */
static char *
setting_secret(const char *name)
{
	static SPIPlanPtr plan = NULL;
	Oid			type = TEXTOID;
	Datum		v = CStringGetTextDatum(name);
	MemoryContext caller = CurrentMemoryContext;
	uint64		version = wa_settings_version();
	char	   *value = NULL;

	if (row_cache.version != version)
	{
		row_cache_drop();
		row_cache.version = version;
	}
	for (int i = 0; version != 0 && i < row_cache.n; i++)
		if (strcmp(row_cache.rows[i].name, name) == 0)
			return row_cache.rows[i].value ? pstrdup(row_cache.rows[i].value) : NULL;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "wa_notify: SPI_connect failed");
	if (plan == NULL)
		plan = wa_prepare_kept("SELECT value FROM wa_notify.setting WHERE name = $1 AND is_secret",
							   1, &type, 0);
	/* as fresh as the settings snapshot it is cached with (settings.c) */
	if (SPI_execute_snapshot(plan, &v, NULL, GetLatestSnapshot(), InvalidSnapshot,
							 true, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "wa_notify: could not read a secret setting");
	if (SPI_processed == 1)
	{
		char	   *s = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);

		if (s != NULL && s[0] != '\0')
			value = MemoryContextStrdup(caller, s);
		if (s != NULL)
			explicit_bzero(s, strlen(s));
	}
	SPI_finish();
	if (version != 0 && row_cache.n < WA_SECRET_ROWS_CACHED && strlen(name) < WA_SECRET_MAX_NAME)
	{
		char	   *copy = value ? strdup(value) : NULL;

		if (value == NULL || copy != NULL)
		{
			strlcpy(row_cache.rows[row_cache.n].name, name, WA_SECRET_MAX_NAME);
			row_cache.rows[row_cache.n].value = copy;
			row_cache.n++;
		}
	}
	return value;
}

/*
 * A secret of a sender other than 'default': its row of
 * wa_notify.sender_secret (configure_sender(); never dumped), palloc'd, or
 * NULL.
 */
static char *
sender_secret(const char *sender, const char *name)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[2] = {TEXTOID, TEXTOID};
	Datum		v[2];
	MemoryContext caller = CurrentMemoryContext;
	char	   *value = NULL;

	v[0] = CStringGetTextDatum(sender);
	v[1] = CStringGetTextDatum(name);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "wa_notify: SPI_connect failed");
	if (plan == NULL)
		plan = wa_prepare_kept("SELECT value FROM wa_notify.sender_secret WHERE sender = $1 AND name = $2",
							   2, types, 0);
	if (SPI_execute_plan(plan, v, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "wa_notify: could not read a sender's secret");
	if (SPI_processed == 1)
	{
		char	   *s = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);

		if (s != NULL && s[0] != '\0')
			value = MemoryContextStrdup(caller, s);
	}
	SPI_finish();
	return value;
}

/*
 * A secret of a sender (NULL or "default": the plain names), palloc'd in
 * the current context, or NULL when it is not set.  With the secrets file
 * set, the file is the only source of the names it can hold (callback_key
 * alone falls back to the generated row).  The caller wipes it after use.
 */
char *
wa_secret_get(const char *sender, const char *name)
{
	if (wa_secrets_file_set())
	{
		char		key[WA_SECRET_MAX_NAME * 2];
		const char *v;

		if (sender && sender[0] && strcmp(sender, "default") != 0)
			snprintf(key, sizeof(key), "%s.%s", sender, name);
		else
			strlcpy(key, name, sizeof(key));
		v = file_secret(key);
		if (v != NULL)
			return pstrdup(v);
		if (strcmp(name, "callback_key") != 0)
			return NULL;
	}
	if (sender && sender[0] && strcmp(sender, "default") != 0)
		return sender_secret(sender, name);
	return setting_secret(name);
}

/* ------------------------------------------------------ callback data */

/* The callback key, read once per transaction (it never changes in one). */
static const char *
callback_key(void)
{
	static char *key = NULL;	/* malloc'd */
	static LocalTransactionId key_lxid = InvalidLocalTransactionId;

	if (key_lxid != MyProc->lxid || key == NULL)
	{
		char	   *k = wa_secret_get(NULL, "callback_key");

		if (key)
		{
			explicit_bzero(key, strlen(key));
			free(key);
			key = NULL;
		}
		if (k)
		{
			key = strdup(k);
			explicit_bzero(k, strlen(k));
			pfree(k);
		}
		key_lxid = MyProc->lxid;
	}
	return key;
}

#if OPENSSL_VERSION_NUMBER >= 0x30000000L
/*
 * OpenSSL 3's one-shot HMAC() looks the algorithms up at every call, a
 * third of the time a message's body takes: the context keyed last is kept
 * (with a copy of its key, wiped when it changes) and copied for each MAC.
 */
static EVP_MAC_CTX *
keyed_hmac(const char *key)
{
	static EVP_MAC *mac = NULL;
	static EVP_MAC_CTX *keyed = NULL;
	static char *keyed_with = NULL;	/* malloc'd */
	OSSL_PARAM params[2];

	if (keyed != NULL && keyed_with != NULL && strcmp(keyed_with, key) == 0)
		return keyed;
	EVP_MAC_CTX_free(keyed);
	keyed = NULL;
	if (keyed_with)
	{
		explicit_bzero(keyed_with, strlen(keyed_with));
		free(keyed_with);
		keyed_with = NULL;
	}
	if (mac == NULL && (mac = EVP_MAC_fetch(NULL, "HMAC", NULL)) == NULL)
		return NULL;
	params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *) "SHA256", 0);
	params[1] = OSSL_PARAM_construct_end();
	keyed = EVP_MAC_CTX_new(mac);
	keyed_with = strdup(key);
	if (keyed == NULL || keyed_with == NULL ||
		!EVP_MAC_init(keyed, (const unsigned char *) key, strlen(key), params))
	{
		EVP_MAC_CTX_free(keyed);
		keyed = NULL;
		free(keyed_with);
		keyed_with = NULL;
	}
	return keyed;
}
#endif

/* HMAC-SHA256 of data under key: every MAC of wa_notify (callback data, recipient hashes, webhook signatures) */
void
wa_hmac_sha256(const char *key, const void *data, size_t len, unsigned char out[32])
{
#if OPENSSL_VERSION_NUMBER >= 0x30000000L
	EVP_MAC_CTX *keyed = keyed_hmac(key);
	EVP_MAC_CTX *c = keyed ? EVP_MAC_CTX_dup(keyed) : NULL;
	size_t		n = 0;
	bool		ok = c != NULL && EVP_MAC_update(c, data, len) && EVP_MAC_final(c, out, &n, 32);

	EVP_MAC_CTX_free(c);
	if (!ok || n != 32)
		elog(ERROR, "wa_notify: HMAC-SHA256 failed");
#else
	unsigned int n = 32;

	if (HMAC(EVP_sha256(), key, (int) strlen(key), data, len, out, &n) == NULL || n != 32)
		elog(ERROR, "wa_notify: HMAC-SHA256 failed");
#endif
}

static void
callback_mac(const char *key, int64 id, char *hex)
{
	unsigned char mac[32];
	char		msg[64];
	static const char digits[] = "0123456789abcdef";

	snprintf(msg, sizeof(msg), "wa_notify message " INT64_FORMAT, id);
	wa_hmac_sha256(key, msg, strlen(msg), mac);
	for (int i = 0; i < WA_CALLBACK_MAC_BYTES; i++)
	{
		hex[2 * i] = digits[mac[i] >> 4];
		hex[2 * i + 1] = digits[mac[i] & 0xf];
	}
	hex[2 * WA_CALLBACK_MAC_BYTES] = '\0';
}

/*
 * biz_opaque_callback_data of a message: "<id>.<mac>", palloc'd; NULL when
 * no callback key exists (the status then matches by wamid only).
 */
char *
wa_callback_data(int64 message_id)
{
	const char *key = callback_key();
	char		hex[2 * WA_CALLBACK_MAC_BYTES + 1];

	if (key == NULL)
		return NULL;
	callback_mac(key, message_id, hex);
	return psprintf(INT64_FORMAT ".%s", message_id, hex);
}

/* The message id that callback data names, when its MAC checks. */
bool
wa_callback_data_check(const char *data, int64 *message_id)
{
	const char *dot;
	const char *key;
	char		hex[2 * WA_CALLBACK_MAC_BYTES + 1];
	size_t		idlen;
	char		idbuf[20];

	if (data == NULL || (dot = strchr(data, '.')) == NULL)
		return false;
	idlen = dot - data;
	if (idlen == 0 || idlen > 18 || strspn(data, "0123456789") != idlen ||
		strlen(dot + 1) != 2 * WA_CALLBACK_MAC_BYTES)
		return false;
	key = callback_key();
	if (key == NULL)
		return false;
	memcpy(idbuf, data, idlen);
	idbuf[idlen] = '\0';
	*message_id = strtoll(idbuf, NULL, 10);
	callback_mac(key, *message_id, hex);
	return CRYPTO_memcmp(hex, dot + 1, 2 * WA_CALLBACK_MAC_BYTES) == 0;
}

/* ----------------------------------------------------------- the log */

/*
 * Does a statement set or pass a secret?  A cheap, deliberately broad test
 * on the statement text: any statement naming a secret setting or the
 * webhook handshake (whose bind parameter is the verify token).
 */
static bool
statement_carries_secret(const char *q)
{
	static const char *const marks[] = {
		"access_token", "app_secret", "verify_token", "callback_key", "webhook_verify",
	};

	if (q == NULL)
		return false;
	for (size_t i = 0; i < lengthof(marks); i++)
		if (strcasestr(q, marks[i]) != NULL)
			return true;
	return false;
}

static bool
mentions_parameters(const char *s)
{
	return s != NULL && strstr(s, "parameters: ") != NULL;
}

/*
 * emit_log_hook: a server log line about a statement that carries a secret
 * loses its STATEMENT (at any log_min_error_statement) and the bind
 * parameters of its DETAIL or CONTEXT (log_statement, log_min_duration_*,
 * log_parameter_max_length_on_error).  The client still gets its error.
 */
#define WA_HIDDEN_ACTIVITY "-- a wa_notify statement that sets a secret (text hidden by wa_notify)"

static void
wa_emit_log_hook(ErrorData *edata)
{
	if (edata->output_to_server && debug_query_string != NULL &&
		statement_carries_secret(debug_query_string))
	{
		/*
		 * A statement that fails before configure() could hide it (a syntax
		 * error, an unknown argument) would stay in pg_stat_activity while
		 * the session idles: replace it there too.  No allocation happens.
		 */
		if (edata->elevel >= ERROR && CritSectionCount == 0 && MyProc != NULL &&
			MyBackendType == B_BACKEND)
			pgstat_report_activity(STATE_RUNNING, WA_HIDDEN_ACTIVITY);
		edata->hide_stmt = true;
		if (mentions_parameters(edata->detail))
			edata->detail = NULL;
		if (mentions_parameters(edata->detail_log))
			edata->detail_log = NULL;
		if (mentions_parameters(edata->context))
			edata->context = NULL;
	}
	if (prev_emit_log_hook)
		prev_emit_log_hook(edata);
}

void
wa_secrets_init(void)
{
	DefineCustomStringVariable("wa_notify.secrets_file",
							   "File holding wa_notify's secrets (access_token, app_secret, webhook_verify_token).",
							   "One \"name = value\" a line; owned by the server's user, mode 0600. When set, configure() refuses those secrets.",
							   &wa_secrets_file,
							   "",
							   PGC_SIGHUP,
							   0,
							   NULL, NULL, NULL);
	prev_emit_log_hook = emit_log_hook;
	emit_log_hook = wa_emit_log_hook;
}

/* ------------------------------------------------------ SQL functions */

static bool
is_file_secret(const char *setting)
{
	return strcmp(setting, "access_token") == 0 || strcmp(setting, "app_secret") == 0 ||
		strcmp(setting, "webhook_verify_token") == 0;
}

/*
 * wa_notify._refuse_if_secrets_file(setting text): called by configure()
 * (and configure_sender()) for each secret argument given.  With the
 * secrets file set: an error whose hint names the file.  Otherwise the
 * statement, which holds the secret, is replaced in pg_stat_activity by a
 * placeholder, so an idle session does not show it to pg_read_all_stats.
 */
PG_FUNCTION_INFO_V1(wa_notify_refuse_if_secrets_file);
Datum
wa_notify_refuse_if_secrets_file(PG_FUNCTION_ARGS)
{
	char	   *setting = text_to_cstring(PG_GETARG_TEXT_PP(0));

	if (wa_secrets_file_set() && is_file_secret(setting))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("%s cannot be set with configure() while wa_notify.secrets_file is set", setting),
				 errdetail("The secrets are read from the file \"%s\".", wa_secrets_file),
				 errhint("Put the line \"%s = ...\" into \"%s\" and reload the server configuration (SELECT pg_reload_conf()).",
						 setting, wa_secrets_file)));
	pgstat_report_activity(STATE_RUNNING, WA_HIDDEN_ACTIVITY);
	PG_RETURN_VOID();
}

/*
 * wa_notify._secret_available(name text) RETURNS boolean: whether the
 * secret is set where it is read from (the file when set, else the row).
 */
PG_FUNCTION_INFO_V1(wa_notify_secret_available);
Datum
wa_notify_secret_available(PG_FUNCTION_ARGS)
{
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	char	   *v = wa_secret_get(NULL, name);
	bool		set = v != NULL;

	if (v)
		explicit_bzero(v, strlen(v));
	PG_RETURN_BOOL(set);
}

/*
 * wa_notify._secret_available(sender text, name text) RETURNS boolean: the
 * same for a sender's access_token or app_secret (25_senders.sql).
 */
PG_FUNCTION_INFO_V1(wa_notify_sender_secret_available);
Datum
wa_notify_sender_secret_available(PG_FUNCTION_ARGS)
{
	char	   *sender = text_to_cstring(PG_GETARG_TEXT_PP(0));
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(1));
	char	   *v = wa_secret_get(sender, name);
	bool		set = v != NULL;

	if (v)
		explicit_bzero(v, strlen(v));
	PG_RETURN_BOOL(set);
}

/* wa_notify._secrets_source() RETURNS text: 'file', 'file (refused: ...)' or 'settings' */
PG_FUNCTION_INFO_V1(wa_notify_secrets_source);
Datum
wa_notify_secrets_source(PG_FUNCTION_ARGS)
{
	const char *problem;

	if (!wa_secrets_file_set())
		PG_RETURN_TEXT_P(cstring_to_text("settings"));
	problem = wa_secrets_problem();
	if (problem)
		PG_RETURN_TEXT_P(cstring_to_text(psprintf("file (refused: %s)", problem)));
	PG_RETURN_TEXT_P(cstring_to_text("file"));
}

/* wa_notify._callback_data(message_id bigint) RETURNS text (tests, support) */
PG_FUNCTION_INFO_V1(wa_notify_callback_data);
Datum
wa_notify_callback_data(PG_FUNCTION_ARGS)
{
	char	   *d = wa_callback_data(PG_GETARG_INT64(0));

	if (d == NULL)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(d));
}

/*
 * wa_notify._recipient_hash(value text) RETURNS text: hex of the first
 * WA_RECIPIENT_HASH_BYTES of HMAC-SHA256("wa_notify recipient " || value)
 * under callback_key; NULL when no key exists.
 */
PG_FUNCTION_INFO_V1(wa_notify_recipient_hash);
Datum
wa_notify_recipient_hash(PG_FUNCTION_ARGS)
{
	text	   *value = PG_GETARG_TEXT_PP(0);
	const char *key = callback_key();
	StringInfoData msg;
	unsigned char mac[32];
	char		hex[2 * WA_RECIPIENT_HASH_BYTES + 1];
	static const char digits[] = "0123456789abcdef";

	StaticAssertStmt(WA_RECIPIENT_HASH_BYTES <= 32, "a recipient hash is part of one HMAC-SHA256");
	if (key == NULL)
		PG_RETURN_NULL();
	initStringInfo(&msg);
	appendStringInfoString(&msg, "wa_notify recipient ");
	appendBinaryStringInfo(&msg, VARDATA_ANY(value), VARSIZE_ANY_EXHDR(value));
	wa_hmac_sha256(key, msg.data, msg.len, mac);
	for (int i = 0; i < WA_RECIPIENT_HASH_BYTES; i++)
	{
		hex[2 * i] = digits[mac[i] >> 4];
		hex[2 * i + 1] = digits[mac[i] & 0xf];
	}
	hex[2 * WA_RECIPIENT_HASH_BYTES] = '\0';
	pfree(msg.data);
	PG_RETURN_TEXT_P(cstring_to_text(hex));
}
