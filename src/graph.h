/*-------------------------------------------------------------------------
 * graph.h
 *	  The Graph API client (libcurl multi + json-c) used by the dispatcher
 *	  and by the SQL-callable GET behind check_connection()/sync_templates().
 *-------------------------------------------------------------------------
 */
#ifndef WA_GRAPH_H
#define WA_GRAPH_H

#include "postgres.h"

/*
 * A sender's Authorization header (malloc'd; the token is wiped from every
 * scratch copy).  A request in flight points to it: free it only when
 * nothing is in flight.
 */
typedef struct WaGraphAuth WaGraphAuth;

/* One POST of a message.  Strings are palloc'd in the caller's context. */
typedef struct WaGraphRequest
{
	int64		id;				/* message id */
	const char *body;			/* JSON body, owned by the caller */
	const char *url;			/* its sender's URL (NULL: the client's) */
	const WaGraphAuth *auth;	/* its sender's token (NULL: the client's) */
	bool		started;
	bool		done;
	long		http_status;	/* 0: no HTTP answer */
	int			curl_code;		/* CURLcode, 0 on a transport success */
	int			graph_code;		/* error.code, -1 when there is none */
	char	   *error;			/* readable outcome (never the token) */
	char	   *wamid;			/* messages[0].id */
	char	   *wa_id;			/* contacts[0].wa_id */
	char	   *user_id;		/* contacts[0].user_id (BSUID), may be NULL */
	double		started_at;		/* epoch seconds */
	int			slot;			/* internal */
	MemoryContext cxt;			/* where the outcome strings go */
} WaGraphRequest;

typedef struct WaGraphClient WaGraphClient;

extern void wa_graph_global_init(void);
extern WaGraphClient *wa_graph_client_create(void);
extern void wa_graph_client_configure(WaGraphClient *c, const char *token,
									  const char *url, int max_in_flight,
									  long connect_timeout_ms, long timeout_ms);
extern WaGraphAuth *wa_graph_auth_create(const char *token);
extern void wa_graph_auth_free(WaGraphAuth *a);
extern bool wa_graph_start(WaGraphClient *c, WaGraphRequest *r);
extern int	wa_graph_in_flight(WaGraphClient *c);
extern int	wa_graph_wait(WaGraphClient *c, long timeout_ms,
						  WaGraphRequest **completed, int max_completed);
extern void wa_graph_abort_all(WaGraphClient *c);

/* Blocking GET (check_connection, sync_templates): false on transport error. */
extern bool wa_graph_get(const char *url, const char *token,
						 long connect_timeout_ms, long timeout_ms,
						 long *http_status, char **body, char **error);

extern double wa_now(void);

#endif
