/*-------------------------------------------------------------------------
 * graph.c
 *	  The Graph API client: POSTs of messages through libcurl's multi
 *	  interface (a bounded pool of reused easy handles, one shared header
 *	  list holding the bearer token), answer parsing with json-c (wamid,
 *	  contacts[0].wa_id, error.code / message / error_data.details), and the
 *	  blocking GET behind wa_notify._graph_get() (check_connection,
 *	  sync_templates).
 *
 *	  Each request may carry its sender's URL and header list (WaGraphAuth:
 *	  several senders share one pool of handles and connections).
 *	  The access token lives only in the Authorization header list handed to
 *	  libcurl; it is never put into an error, a log line or a URL.  Verbose
 *	  output is never enabled.  libcurl callbacks never palloc or ereport
 *	  (no longjmp through libcurl): the response is kept in a malloc'd buffer
 *	  per pool slot, capped, reused from one request to the next.
 *	  Transfers are driven by events (curl_multi_socket_action with an
 *	  epoll set of the sockets libcurl names, and libcurl's own timer), so
 *	  that a wait or a start costs what is ready, not what is in flight:
 *	  with a thousand requests in flight, curl_multi_perform and
 *	  curl_multi_poll would visit every one of them at every turn.  Where
 *	  there is no epoll the client falls back to curl_multi_poll.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sys/time.h>
#include <unistd.h>
#ifdef HAVE_SYS_EPOLL_H
#include <sys/epoll.h>
#define WA_EVENT_DRIVEN 1
#endif
#include <curl/curl.h>

#include "fmgr.h"
#include "funcapi.h"
#include "executor/spi.h"
#include "utils/memutils.h"
/* fmgrprotos.h declares a json_object() that clashes with json-c's type */
#define json_object wa_pg_json_object_fn
#include "utils/builtins.h"
#undef json_object

#include <json-c/json.h>

#include "graph.h"
#include "settings.h"
#include "wa_notify.h"

#define WA_MAX_RESPONSE (1024 * 1024)

typedef struct WaSlot
{
	CURL	   *easy;
	int			index;			/* in the client's slots[] */
	bool		busy;
	char	   *buf;			/* malloc'd response buffer */
	size_t		len;
	size_t		cap;
	bool		overflow;
	WaGraphRequest *req;
	char		errbuf[CURL_ERROR_SIZE];
	/* the timeouts set_common_opts() gave the handle (-1: none yet) */
	long		connect_timeout_ms;
	long		timeout_ms;
} WaSlot;

struct WaGraphClient
{
	CURLM	   *multi;
	WaSlot	  **slots;			/* malloc'd array of malloc'd slots: a slot
								 * never moves, since its easy handle keeps
								 * pointers to it (WRITEDATA, PRIVATE,
								 * ERRORBUFFER) */
	int			nslots;
	int		   *free_slots;		/* malloc'd stack of idle slots' indexes */
	int			nfree;
	int			max_in_flight;
	int			in_flight;
	int			epfd;			/* the sockets libcurl waits on; -1: none */
	double		timer_at;		/* when libcurl wants its timeout action; < 0: never */
	struct curl_slist *headers;
	char	   *url;			/* malloc'd */
	long		connect_timeout_ms;
	long		timeout_ms;
	struct json_tokener *tok;	/* answers' parser, reset for each (NULL: none yet) */
};

static bool curl_ready = false;

double
wa_now(void)
{
	struct timeval tv;

	gettimeofday(&tv, NULL);
	return tv.tv_sec + tv.tv_usec / 1e6;
}

void
wa_graph_global_init(void)
{
	if (curl_ready)
		return;
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not initialize libcurl")));
	curl_ready = true;
}

/* Build "Authorization: Bearer ..." + Content-Type; the scratch is wiped. */
static struct curl_slist *
make_headers(const char *token, bool json_body)
{
	struct curl_slist *h = NULL;
	struct curl_slist *t;
	size_t		n = strlen(token) + 32;
	char	   *line = malloc(n);

	if (line == NULL)
		return NULL;
	snprintf(line, n, "Authorization: Bearer %s", token);
	t = curl_slist_append(h, line);
	explicit_bzero(line, n);
	free(line);
	if (t == NULL)
		return NULL;
	h = t;
	if (json_body)
	{
		t = curl_slist_append(h, "Content-Type: application/json");
		if (t == NULL)
		{
			curl_slist_free_all(h);
			return NULL;
		}
		h = t;
	}
	t = curl_slist_append(h, "Expect:");
	if (t == NULL)
	{
		curl_slist_free_all(h);
		return NULL;
	}
	return t;
}

struct WaGraphAuth
{
	struct curl_slist *headers;
};

/* A sender's header list, for the requests that name it (graph.h). */
WaGraphAuth *
wa_graph_auth_create(const char *token)
{
	WaGraphAuth *a = calloc(1, sizeof(WaGraphAuth));

	if (a == NULL || (a->headers = make_headers(token ? token : "", true)) == NULL)
	{
		free(a);
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
	}
	return a;
}

void
wa_graph_auth_free(WaGraphAuth *a)
{
	if (a == NULL)
		return;
	curl_slist_free_all(a->headers);
	free(a);
}

static size_t
write_cb(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	WaSlot	   *s = (WaSlot *) userdata;
	size_t		n = size * nmemb;

	if (s->len + n + 1 > WA_MAX_RESPONSE)
	{
		s->overflow = true;
		return 0;				/* abort the transfer: CURLE_WRITE_ERROR */
	}
	if (s->len + n + 1 > s->cap)
	{
		size_t		ncap = s->cap ? s->cap : 4096;
		char	   *nbuf;

		while (ncap < s->len + n + 1)
			ncap *= 2;
		nbuf = realloc(s->buf, ncap);
		if (nbuf == NULL)
			return 0;
		s->buf = nbuf;
		s->cap = ncap;
	}
	memcpy(s->buf + s->len, ptr, n);
	s->len += n;
	s->buf[s->len] = '\0';
	return n;
}

#ifdef WA_EVENT_DRIVEN
/*
 * libcurl names a socket to wait on, changes what to wait for, or drops it
 * (CURLMOPT_SOCKETFUNCTION).  socketp is non-NULL once the socket is in the
 * epoll set.  Never ereports (called inside libcurl): a failed epoll_ctl
 * leaves the socket to libcurl's timeouts.
 */
static int
socket_cb(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
	WaGraphClient *c = (WaGraphClient *) userp;
	struct epoll_event ev;

	if (what == CURL_POLL_REMOVE)
	{
		if (socketp)
			epoll_ctl(c->epfd, EPOLL_CTL_DEL, fd, NULL);
		curl_multi_assign(c->multi, fd, NULL);
		return 0;
	}
	memset(&ev, 0, sizeof(ev));
	ev.data.fd = fd;
	ev.events = ((what & CURL_POLL_IN) ? EPOLLIN : 0) | ((what & CURL_POLL_OUT) ? EPOLLOUT : 0);
	if (epoll_ctl(c->epfd, socketp ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, fd, &ev) != 0)
		epoll_ctl(c->epfd, socketp ? EPOLL_CTL_ADD : EPOLL_CTL_MOD, fd, &ev);
	if (socketp == NULL)
		curl_multi_assign(c->multi, fd, c);
	return 0;
}

/* libcurl's timer (CURLMOPT_TIMERFUNCTION): when to call its timeout action. */
static int
timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
	WaGraphClient *c = (WaGraphClient *) userp;

	c->timer_at = timeout_ms < 0 ? -1 : wa_now() + timeout_ms / 1000.0;
	return 0;
}
#endif

WaGraphClient *
wa_graph_client_create(void)
{
	WaGraphClient *c;

	wa_graph_global_init();
	c = calloc(1, sizeof(WaGraphClient));
	if (c == NULL)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
	c->multi = curl_multi_init();
	if (c->multi == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not create a libcurl multi handle")));
	c->epfd = -1;
	c->timer_at = -1;
#ifdef WA_EVENT_DRIVEN
	c->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (c->epfd < 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not create an epoll set for the Graph API client: %m")));
	curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
	curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c);
	curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
	curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c);
#endif
	return c;
}

/*
 * Let libcurl act on what is due: its timer if it expired (a new transfer
 * is due at once), else nothing.  Without epoll, one pass over every
 * transfer.
 */
static void
drive_due(WaGraphClient *c)
{
	int			running;

#ifdef WA_EVENT_DRIVEN
	if (c->timer_at >= 0 && wa_now() >= c->timer_at)
	{
		c->timer_at = -1;
		curl_multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	}
#else
	curl_multi_perform(c->multi, &running);
#endif
}

/* Wait up to timeout_ms for a socket or libcurl's timer, and act on what is ready. */
static void
drive_ready(WaGraphClient *c, long timeout_ms)
{
	int			running;
#ifdef WA_EVENT_DRIVEN
	struct epoll_event evs[256];
	int			n;

	if (c->timer_at >= 0)
	{
		long		until_timer = (long) ((c->timer_at - wa_now()) * 1000.0 + 0.999);

		timeout_ms = Max(0, Min(timeout_ms, until_timer));
	}
	n = epoll_wait(c->epfd, evs, lengthof(evs), (int) timeout_ms);
	for (int i = 0; i < n; i++)
	{
		int			mask = 0;

		if (evs[i].events & EPOLLIN)
			mask |= CURL_CSELECT_IN;
		if (evs[i].events & EPOLLOUT)
			mask |= CURL_CSELECT_OUT;
		if (evs[i].events & (EPOLLERR | EPOLLHUP))
			mask |= CURL_CSELECT_ERR;
		curl_multi_socket_action(c->multi, evs[i].data.fd, mask, &running);
	}
	drive_due(c);
#else
	int			numfds;

	curl_multi_poll(c->multi, NULL, 0, (int) timeout_ms, &numfds);
	curl_multi_perform(c->multi, &running);
#endif
}

/*
 * (Re)configure: token, URL, pool size, timeouts.  Only between batches
 * (nothing in flight).  The pool only grows; handles are reused.
 */
void
wa_graph_client_configure(WaGraphClient *c, const char *token, const char *url,
						  int max_in_flight, long connect_timeout_ms, long timeout_ms)
{
	struct curl_slist *h;

	/* the header list and URL are shared by the transfers in flight */
	if (c->in_flight != 0)
		elog(ERROR, "wa_notify: the Graph client cannot be reconfigured while requests are in flight");
	h = make_headers(token ? token : "", true);
	if (h == NULL)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
	if (c->headers)
		curl_slist_free_all(c->headers);
	c->headers = h;

	free(c->url);
	c->url = strdup(url);
	if (c->url == NULL)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));

	if (max_in_flight < 1)
		max_in_flight = 1;
	if (max_in_flight > c->nslots)
	{
		/* grow the array of pointers only: the slots themselves stay put */
		WaSlot	  **ns = realloc(c->slots, sizeof(WaSlot *) * max_in_flight);
		int		   *nf;

		if (ns == NULL)
			ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
		c->slots = ns;
		nf = realloc(c->free_slots, sizeof(int) * max_in_flight);
		if (nf == NULL)
			ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
		c->free_slots = nf;
		while (c->nslots < max_in_flight)
		{
			WaSlot	   *slot = calloc(1, sizeof(WaSlot));

			if (slot == NULL)
				ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
			slot->index = c->nslots;
			slot->connect_timeout_ms = slot->timeout_ms = -1;
			c->free_slots[c->nfree++] = c->nslots;
			c->slots[c->nslots++] = slot;
		}
	}
	c->max_in_flight = max_in_flight;
	c->connect_timeout_ms = connect_timeout_ms;
	c->timeout_ms = timeout_ms;
	curl_multi_setopt(c->multi, CURLMOPT_MAXCONNECTS, (long) max_in_flight);
	curl_multi_setopt(c->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long) max_in_flight);
}

int
wa_graph_in_flight(WaGraphClient *c)
{
	return c->in_flight;
}

static void
set_common_opts(CURL *e, long connect_timeout_ms, long timeout_ms)
{
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, connect_timeout_ms);
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, timeout_ms);
	curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
	curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
#if LIBCURL_VERSION_NUM >= 0x075500
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
#else
	curl_easy_setopt(e, CURLOPT_PROTOCOLS, (long) (CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
	curl_easy_setopt(e, CURLOPT_USERAGENT, "wa_notify/1.0");
	curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
}

/* Start r on a free pool slot; false when in-flight is at its bound. */
bool
wa_graph_start(WaGraphClient *c, WaGraphRequest *r)
{
	WaSlot	   *s = NULL;
	int			i;
	CURLMcode	mc;

	if (c->in_flight >= c->max_in_flight || c->nfree == 0)
		return false;
	i = c->free_slots[c->nfree - 1];
	s = c->slots[i];
	if (s->easy == NULL)
	{
		s->easy = curl_easy_init();
		if (s->easy == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INTERNAL_ERROR),
					 errmsg("could not create a libcurl handle")));
		curl_easy_setopt(s->easy, CURLOPT_WRITEFUNCTION, write_cb);
		curl_easy_setopt(s->easy, CURLOPT_WRITEDATA, s);
		curl_easy_setopt(s->easy, CURLOPT_PRIVATE, s);
		curl_easy_setopt(s->easy, CURLOPT_ERRORBUFFER, s->errbuf);
		/* answers are small: keep the pooled handles' buffers small too */
		curl_easy_setopt(s->easy, CURLOPT_BUFFERSIZE, 4096L);
#if LIBCURL_VERSION_NUM >= 0x073e00
		curl_easy_setopt(s->easy, CURLOPT_UPLOAD_BUFFERSIZE, 16384L);
#endif
	}
	/* a handle keeps its options from one request to the next */
	if (s->connect_timeout_ms != c->connect_timeout_ms || s->timeout_ms != c->timeout_ms)
	{
		set_common_opts(s->easy, c->connect_timeout_ms, c->timeout_ms);
		s->connect_timeout_ms = c->connect_timeout_ms;
		s->timeout_ms = c->timeout_ms;
	}
	/* each request its sender's URL and token, else the client's */
	curl_easy_setopt(s->easy, CURLOPT_URL, r->url ? r->url : c->url);
	curl_easy_setopt(s->easy, CURLOPT_HTTPHEADER, r->auth ? r->auth->headers : c->headers);
	curl_easy_setopt(s->easy, CURLOPT_POSTFIELDSIZE, (long) strlen(r->body));
	curl_easy_setopt(s->easy, CURLOPT_POSTFIELDS, r->body);
	s->len = 0;
	s->overflow = false;
	s->errbuf[0] = '\0';
	if (s->buf)
		s->buf[0] = '\0';
	s->req = r;
	r->slot = i;
	r->started = true;
	r->done = false;
	r->started_at = wa_now();
	mc = curl_multi_add_handle(c->multi, s->easy);
	if (mc != CURLM_OK)
	{
		s->req = NULL;
		r->started = false;
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not start a request: %s", curl_multi_strerror(mc))));
	}
	s->busy = true;
	c->nfree--;
	c->in_flight++;
	/* get the request on the wire now, not at the next wait */
	drive_due(c);
	return true;
}

static char *
json_str(struct json_object *o, const char *key)
{
	struct json_object *v;

	if (o && json_object_object_get_ex(o, key, &v) && json_object_is_type(v, json_type_string))
		return pstrdup(json_object_get_string(v));
	return NULL;
}

static void parse_outcome_in(WaGraphRequest *r, WaSlot *s, CURLcode cc,
							 struct json_tokener *tok);

/*
 * Turn a finished transfer into r's outcome fields (palloc'd).  The
 * client's one parser is reset for each answer (a parser per answer cost
 * its allocations at every request).
 */
static void
parse_outcome(WaGraphClient *c, WaGraphRequest *r, WaSlot *s, CURLcode cc)
{
	/* the outcome lives as long as the request (its batch's context) */
	MemoryContext old = MemoryContextSwitchTo(r->cxt ? r->cxt : CurrentMemoryContext);

	if (c->tok == NULL)
		c->tok = json_tokener_new();	/* NULL: out of memory, the answer is "not JSON" */
	else
		json_tokener_reset(c->tok);
	parse_outcome_in(r, s, cc, c->tok);
	MemoryContextSwitchTo(old);
}

static void
parse_outcome_in(WaGraphRequest *r, WaSlot *s, CURLcode cc, struct json_tokener *tok)
{
	r->done = true;
	r->curl_code = (int) cc;
	r->graph_code = -1;
	r->http_status = 0;
	r->wamid = r->wa_id = r->user_id = r->error = NULL;
	if (cc != CURLE_OK)
	{
		if (s->overflow)
			r->error = psprintf("the answer is larger than %d bytes", WA_MAX_RESPONSE);
		else
			r->error = psprintf("request failed: %s%s%s", curl_easy_strerror(cc),
								s->errbuf[0] ? ": " : "", s->errbuf);
		return;
	}
	curl_easy_getinfo(s->easy, CURLINFO_RESPONSE_CODE, &r->http_status);
	{
		struct json_object *root = NULL;

		if (tok && s->len > 0)
			root = json_tokener_parse_ex(tok, s->buf, (int) s->len);
		if (root && json_tokener_get_error(tok) != json_tokener_success)
		{
			json_object_put(root);
			root = NULL;
		}
		if (root == NULL || !json_object_is_type(root, json_type_object))
		{
			r->error = psprintf("HTTP %ld: the answer is not JSON", r->http_status);
		}
		else
		{
			struct json_object *err;
			struct json_object *arr;
			struct json_object *v;

			if (json_object_object_get_ex(root, "error", &err) &&
				json_object_is_type(err, json_type_object))
			{
				char	   *msg = json_str(err, "message");
				char	   *details = NULL;
				struct json_object *ed;

				if (json_object_object_get_ex(err, "code", &v) && json_object_is_type(v, json_type_int))
					r->graph_code = json_object_get_int(v);
				if (json_object_object_get_ex(err, "error_data", &ed))
					details = json_str(ed, "details");
				r->error = psprintf("Graph error %d: %s%s%s", r->graph_code,
									msg ? msg : "(no message)",
									details ? ": " : "", details ? details : "");
			}
			else
			{
				if (json_object_object_get_ex(root, "messages", &arr) &&
					json_object_is_type(arr, json_type_array) &&
					json_object_array_length(arr) > 0)
					r->wamid = json_str(json_object_array_get_idx(arr, 0), "id");
				if (json_object_object_get_ex(root, "contacts", &arr) &&
					json_object_is_type(arr, json_type_array) &&
					json_object_array_length(arr) > 0)
				{
					r->wa_id = json_str(json_object_array_get_idx(arr, 0), "wa_id");
					r->user_id = json_str(json_object_array_get_idx(arr, 0), "user_id");
				}
				if (r->wamid == NULL)
					r->error = psprintf("HTTP %ld: the answer has no message id", r->http_status);
			}
		}
		if (root)
			json_object_put(root);
	}
}

static void
release_slot(WaGraphClient *c, WaSlot *s)
{
	curl_multi_remove_handle(c->multi, s->easy);
	s->busy = false;
	s->req = NULL;
	c->free_slots[c->nfree++] = s->index;
	c->in_flight--;
}

/* Move finished transfers' requests into completed[] (at most max_completed). */
static int
take_finished(WaGraphClient *c, WaGraphRequest **completed, int max_completed)
{
	int			n = 0;
	CURLMsg    *msg;
	int			left;

	while (n < max_completed && (msg = curl_multi_info_read(c->multi, &left)) != NULL)
	{
		WaSlot	   *s = NULL;

		if (msg->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **) &s);
		if (s == NULL || s->req == NULL)
			continue;
		parse_outcome(c, s->req, s, msg->data.result);
		completed[n++] = s->req;
		release_slot(c, s);
	}
	return n;
}

/*
 * Drive transfers for up to timeout_ms; put finished requests into
 * completed[] (at most max_completed) and return how many.
 */
int
wa_graph_wait(WaGraphClient *c, long timeout_ms, WaGraphRequest **completed, int max_completed)
{
	int			n;

	drive_due(c);
	n = take_finished(c, completed, max_completed);
	if (n == 0 && c->in_flight > 0)
	{
		drive_ready(c, Max(timeout_ms, 0));
		n = take_finished(c, completed, max_completed);
	}
	return n;
}

/* Drop every transfer in flight (their outcome stays unknown). */
void
wa_graph_abort_all(WaGraphClient *c)
{
	if (c == NULL)
		return;
	for (int i = 0; i < c->nslots; i++)
		if (c->slots[i]->busy)
			release_slot(c, c->slots[i]);
	c->in_flight = 0;
}

/*
 * Blocking GET; *body and *error palloc'd.  The easy handle is freed on
 * every path.
 */
bool
wa_graph_get(const char *url, const char *token, long connect_timeout_ms, long timeout_ms,
			 long *http_status, char **body, char **error)
{
	CURL	   *volatile e = NULL;
	struct curl_slist *volatile h = NULL;
	WaSlot		s;
	volatile bool ok = false;

	wa_graph_global_init();
	memset(&s, 0, sizeof(s));
	*http_status = 0;
	*body = NULL;
	*error = NULL;
	PG_TRY();
	{
		CURLcode	cc;

		e = curl_easy_init();
		h = make_headers(token, false);
		if (e == NULL || h == NULL)
			ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
		set_common_opts(e, connect_timeout_ms, timeout_ms);
		curl_easy_setopt(e, CURLOPT_URL, url);
		curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
		curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, write_cb);
		curl_easy_setopt(e, CURLOPT_WRITEDATA, &s);
		curl_easy_setopt(e, CURLOPT_ERRORBUFFER, s.errbuf);
		cc = curl_easy_perform(e);
		if (cc != CURLE_OK)
			*error = psprintf("request failed: %s%s%s", curl_easy_strerror(cc),
							  s.errbuf[0] ? ": " : "", s.errbuf);
		else
		{
			curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, http_status);
			*body = pstrdup(s.buf ? s.buf : "");
			ok = true;
		}
	}
	PG_FINALLY();
	{
		if (e)
			curl_easy_cleanup(e);
		if (h)
			curl_slist_free_all(h);
		free(s.buf);
	}
	PG_END_TRY();
	return ok;
}

/* request timeout (s) for SQL-side GETs: the worker's GUC */
extern int	wa_request_timeout;

/* A sender's API version (its own, else the setting), palloc'd, or NULL. */
static char *
sender_api_version(const char *sender)
{
	Oid			type = TEXTOID;
	Datum		v = CStringGetTextDatum(sender);
	MemoryContext caller = CurrentMemoryContext;
	char	   *version = NULL;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "wa_notify: SPI_connect failed");
	if (SPI_execute_with_args("SELECT api_version FROM wa_notify._sender_effective() WHERE sender = $1",
							  1, &type, &v, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "wa_notify: could not read a sender's API version");
	if (SPI_processed == 1)
	{
		char	   *s = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);

		if (s)
			version = MemoryContextStrdup(caller, s);
	}
	SPI_finish();
	return version;
}

/*
 * wa_notify._graph_get(path [, sender]) -> (http_status, body, error):
 * GET {api_base_url}/{api_version}/{path} with the access token (of the
 * sender when given: its token and API version, 25_senders.sql).
 */
PG_FUNCTION_INFO_V1(wa_notify_graph_get);
Datum
wa_notify_graph_get(PG_FUNCTION_ARGS)
{
	char	   *path = text_to_cstring(PG_GETARG_TEXT_PP(0));
	TupleDesc	tupdesc;
	Datum		values[3];
	bool		nulls[3] = {false, false, false};
	char	   *base = NULL,
			   *version = NULL,
			   *token = NULL,
			   *sender = NULL;
	long		http = 0;
	char	   *body = NULL,
			   *error = NULL;
	char	   *url;

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	if (strstr(path, "://") != NULL || path[0] == '/')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("path must be relative to the Graph API version")));

	{
		const WaSettings *set = wa_settings();

		base = set->api_base_url ? pstrdup(set->api_base_url) : NULL;
		version = set->api_version ? pstrdup(set->api_version) : NULL;
	}
	if (PG_NARGS() > 1 && !PG_ARGISNULL(1))
		sender = text_to_cstring(PG_GETARG_TEXT_PP(1));
	if (sender)
		version = sender_api_version(sender);
	/* the secrets file when set, else the secret row (secrets.c) */
	token = wa_secret_get(sender, "access_token");

	if (base == NULL || version == NULL || token == NULL || token[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the Graph API is not configured"),
				 wa_secrets_file_set()
				 ? errhint("Set api_base_url and api_version with wa_notify.configure(), and access_token in the file \"%s\" (wa_notify.secrets_file).", wa_secrets_file)
				 : errhint("Set access_token, api_base_url and api_version with wa_notify.configure().")));
	while (strlen(base) > 0 && base[strlen(base) - 1] == '/')
		base[strlen(base) - 1] = '\0';
	url = psprintf("%s/%s/%s", base, version, path);
	(void) wa_graph_get(url, token, Min(10000L, wa_request_timeout * 1000L),
						wa_request_timeout * 1000L, &http, &body, &error);
	explicit_bzero(token, strlen(token));

	values[0] = Int32GetDatum((int32) http);
	if (body)
		values[1] = CStringGetTextDatum(body);
	else
		nulls[1] = true;
	if (error)
		values[2] = CStringGetTextDatum(error);
	else
		nulls[2] = true;
	if (http == 0)
		nulls[0] = true;
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(tupdesc), values, nulls)));
}
