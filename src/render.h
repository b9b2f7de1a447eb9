/*-------------------------------------------------------------------------
 * render.h
 *	  Message rendering (render.c): request bodies, pt_BR money, tracking URLs.
 *-------------------------------------------------------------------------
 */
#ifndef WA_RENDER_H
#define WA_RENDER_H

#include "utils/jsonb.h"

/* The JSON body for one message; message_id < 0 omits biz_opaque_callback_data. */
extern char *wa_render_body(const char *event, const char *phone, Jsonb *params,
							int64 message_id);
extern char *wa_format_money(const char *in);
extern char *wa_tracking_url_from_pattern(const char *pattern, const char *tracking);

#endif							/* WA_RENDER_H */
