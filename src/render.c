/*-------------------------------------------------------------------------
 * render.c
 *	  Message rendering: the exact JSON body POSTed to the Graph API
 *	  ({base}/{version}/{phone_number_id}/messages) for one message, built
 *	  with json-c from the event's configuration (wa_notify.event), the
 *	  settings (use_templates, default_language, default_tracking_url, from
 *	  the transaction's snapshot, settings.c), the carrier table and the
 *	  message's params (the order context).  Events and carriers are read
 *	  once per snapshot, so a batch of renders (the worker's _claim(), or
 *	  preview()) costs no query per message.
 *
 *	  Owns: template bodies (body parameters in the configured order,
 *	  positional or named, the optional document or image header, the
 *	  optional URL button), text bodies ({field} placeholders), pt_BR money
 *	  formatting of the "total" field, tracking URLs (carrier pattern or the
 *	  default, tracking number URL-encoded).
 *
 *	  SQL: wa_notify._render(event, phone, params, message_id),
 *	       wa_notify._tracking_url(carrier, tracking),
 *	       wa_notify._format_money(text).
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <ctype.h>
#include <string.h>

/* json-c's type name clashes with PostgreSQL's json_object() SQL function */
#define json_object wa_json_object
#include <json-c/json.h>
#undef json_object
typedef wa_json_object JObj;

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "utils/array.h"
#include "catalog/pg_collation.h"
#include "utils/builtins.h"
#include "utils/formatting.h"
#include "utils/memutils.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"

#include "wa_notify.h"
#include "render.h"
#include "settings.h"

/* One event's configuration, as read for one render. */
typedef struct RenderConfig RenderConfig;	/* below, after RenderEvent */

/*
 * The value of a top-level key of a jsonb object as text; NULL when absent
 * or JSON null.  Numbers keep their exact decimal text.
 */
static char *
jsonb_field_text(Jsonb *jb, const char *key)
{
	JsonbValue	k;
	JsonbValue *v;

	if (jb == NULL || !JB_ROOT_IS_OBJECT(jb))
		return NULL;
	k.type = jbvString;
	k.val.string.val = (char *) key;
	k.val.string.len = strlen(key);
	v = findJsonbValueFromContainer(&jb->root, JB_FOBJECT, &k);
	if (v == NULL)
		return NULL;
	switch (v->type)
	{
		case jbvNull:
			return NULL;
		case jbvString:
			return pnstrdup(v->val.string.val, v->val.string.len);
		case jbvNumeric:
			return DatumGetCString(DirectFunctionCall1(numeric_out,
													   NumericGetDatum(v->val.numeric)));
		case jbvBool:
			return pstrdup(v->val.boolean ? "true" : "false");
		case jbvBinary:
			return JsonbToCString(NULL, v->val.binary.data, v->val.binary.len);
		default:
			return NULL;
	}
}

/*
 * pt_BR money: "1234.5" -> "1.234,50" (rounded half up to cents).  Text
 * that is not a plain decimal number is returned unchanged (the shop may
 * already have formatted it).
 */
char *
wa_format_money(const char *in)
{
	const char *p = in;
	bool		neg = false;
	char		intpart[64];
	int			ni = 0;
	int			frac[3] = {0, 0, 0};
	int			nf = 0;
	int			cents;
	StringInfoData out;
	char		rev[96];
	int			nr = 0;

	while (*p == ' ')
		p++;
	if (*p == '-' || *p == '+')
		neg = (*p++ == '-');
	while (isdigit((unsigned char) *p))
	{
		if (ni >= (int) sizeof(intpart) - 2)
			return pstrdup(in);
		intpart[ni++] = *p++;
	}
	if (*p == '.')
	{
		p++;
		if (!isdigit((unsigned char) *p) && ni == 0)
			return pstrdup(in);
		while (isdigit((unsigned char) *p))
		{
			if (nf < 3)
				frac[nf] = *p - '0';
			nf++;
			p++;
		}
	}
	while (*p == ' ')
		p++;
	if (*p != '\0' || (ni == 0 && nf == 0))
		return pstrdup(in);
	if (ni == 0)
		intpart[ni++] = '0';
	intpart[ni] = '\0';

	/* round half up to two decimals, carrying into the integer part */
	cents = frac[0] * 10 + frac[1] + (frac[2] >= 5 ? 1 : 0);
	if (cents == 100)
	{
		int			i = ni - 1;

		cents = 0;
		while (i >= 0 && intpart[i] == '9')
			intpart[i--] = '0';
		if (i >= 0)
			intpart[i]++;
		else
		{
			memmove(intpart + 1, intpart, ni + 1);
			intpart[0] = '1';
			ni++;
		}
	}
	/* drop leading zeros of the integer part */
	p = intpart;
	while (p[0] == '0' && p[1] != '\0')
		p++;
	ni = strlen(p);

	/* integer part with '.' every three digits, built reversed */
	for (int i = ni - 1, g = 0; i >= 0; i--, g++)
	{
		if (g > 0 && g % 3 == 0)
			rev[nr++] = '.';
		rev[nr++] = p[i];
	}
	initStringInfo(&out);
	if (neg && (cents != 0 || strcmp(p, "0") != 0))
		appendStringInfoChar(&out, '-');
	while (nr > 0)
		appendStringInfoChar(&out, rev[--nr]);
	appendStringInfo(&out, ",%02d", cents);
	return out.data;
}

/* RFC 3986 percent-encoding: everything but unreserved characters. */
static void
append_url_encoded(StringInfo buf, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";

	for (; *s; s++)
	{
		unsigned char c = (unsigned char) *s;

		if (isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~')
			appendStringInfoChar(buf, (char) c);
		else
		{
			appendStringInfoChar(buf, '%');
			appendStringInfoChar(buf, hex[c >> 4]);
			appendStringInfoChar(buf, hex[c & 15]);
		}
	}
}

/* pattern with every "{tracking}" replaced by the URL-encoded number */
char *
wa_tracking_url_from_pattern(const char *pattern, const char *tracking)
{
	StringInfoData buf;
	const char *p = pattern;
	const char *hit;

	initStringInfo(&buf);
	while ((hit = strstr(p, "{tracking}")) != NULL)
	{
		appendBinaryStringInfo(&buf, p, hit - p);
		append_url_encoded(&buf, tracking);
		p = hit + strlen("{tracking}");
	}
	appendStringInfoString(&buf, p);
	return buf.data;
}

/* One row of wa_notify.event, as rendering needs it. */
typedef struct RenderEvent
{
	char	   *event;
	char	   *template_name;
	char	   *template_language;	/* NULL: default_language */
	int			nparams;
	char	  **params;
	char	   *button_param;
	char	   *text_body;
	bool		named;			/* parameter_format: the event's, else the template's */
	char	   *header_document;	/* context fields of the header (NULL: none) */
	char	   *header_filename;
	char	   *header_image;
	int			nparam_names;	/* parameter_name of each body parameter */
	char	  **param_names;	/* (NULL: the context field names) */
} RenderEvent;

/*
 * What one render needs: its event's configuration (cached, read-only) and
 * the settings and carrier pattern that apply to it.
 */
struct RenderConfig
{
	const RenderEvent *ev;
	const char *language;		/* the event's, else default_language */
	bool		use_templates;
	const char *default_tracking_url;
	const char *carrier_pattern;	/* pattern of params.carrier, if any */
};

/*
 * Events and carriers, read once per settings snapshot (settings.c): a
 * batch of renders in one transaction reads them once, and a change to
 * either table drops them with the snapshot.
 */
static MemoryContext render_cxt = NULL;
static uint64 render_generation = 0;
static RenderEvent *events = NULL;
static int	nevents = 0;
static char **carriers = NULL;		/* carrier names, lower case */
static char **carrier_patterns = NULL;
static int	ncarriers = 0;

/* A text[] column as a palloc'd array of C strings (NULL and 0 when NULL). */
static char **
text_array(HeapTuple tup, TupleDesc desc, int col, int *n)
{
	bool		isnull;
	Datum		arr = SPI_getbinval(tup, desc, col, &isnull);
	Datum	   *elems;
	bool	   *enulls;
	char	  **out;

	*n = 0;
	if (isnull)
		return NULL;
	deconstruct_array(DatumGetArrayTypeP(arr), TEXTOID, -1, false, TYPALIGN_INT,
					  &elems, &enulls, n);
	out = palloc0(sizeof(char *) * (*n + 1));
	for (int i = 0; i < *n; i++)
		out[i] = enulls[i] ? NULL : TextDatumGetCString(elems[i]);
	return out;
}

static void
load_events_and_carriers(void)
{
	MemoryContext old;

	if (render_cxt == NULL)
		render_cxt = AllocSetContextCreate(TopMemoryContext, "wa_notify render",
										   ALLOCSET_SMALL_SIZES);
	MemoryContextReset(render_cxt);
	events = NULL;
	carriers = carrier_patterns = NULL;
	nevents = ncarriers = 0;
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (SPI_execute("SELECT e.event, e.template_name, e.template_language, e.params, e.button_param,"
					"       e.text_body,"
	/* the event's parameter format, else the template's (sync_templates) */
					"       coalesce(e.parameter_format,"
					"                (SELECT lower(t.parameter_format) FROM wa_notify.template t"
					"                  WHERE t.sender = 'default' AND t.name = e.template_name"
					"                    AND t.language = coalesce(e.template_language,"
					"                        wa_notify._setting_value('default_language'))),"
					"                'positional') = 'named',"
					"       e.header_document, e.header_filename, e.header_image, e.param_names"
					"  FROM wa_notify.event e", true, 0) != SPI_OK_SELECT)
		elog(ERROR, "reading the event configuration failed");
	old = MemoryContextSwitchTo(render_cxt);
	events = palloc0(sizeof(RenderEvent) * Max(SPI_processed, 1));
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		RenderEvent *e = &events[i];

		e->event = SPI_getvalue(tup, desc, 1);
		e->template_name = SPI_getvalue(tup, desc, 2);
		e->template_language = SPI_getvalue(tup, desc, 3);
		e->params = text_array(tup, desc, 4, &e->nparams);
		e->button_param = SPI_getvalue(tup, desc, 5);
		e->text_body = SPI_getvalue(tup, desc, 6);
		{
			char	   *named = SPI_getvalue(tup, desc, 7);

			e->named = named != NULL && strcmp(named, "t") == 0;
		}
		e->header_document = SPI_getvalue(tup, desc, 8);
		e->header_filename = SPI_getvalue(tup, desc, 9);
		e->header_image = SPI_getvalue(tup, desc, 10);
		e->param_names = text_array(tup, desc, 11, &e->nparam_names);
	}
	nevents = (int) SPI_processed;
	MemoryContextSwitchTo(old);

	if (SPI_execute("SELECT carrier, url_pattern FROM wa_notify.carrier", true, 0) != SPI_OK_SELECT)
		elog(ERROR, "reading the carriers failed");
	old = MemoryContextSwitchTo(render_cxt);
	carriers = palloc0(sizeof(char *) * Max(SPI_processed, 1));
	carrier_patterns = palloc0(sizeof(char *) * Max(SPI_processed, 1));
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		carriers[i] = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);
		carrier_patterns[i] = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2);
	}
	ncarriers = (int) SPI_processed;
	MemoryContextSwitchTo(old);
	SPI_finish();
}

/* The URL pattern of a carrier named as the context gave it (lower(btrim())). */
static char *
carrier_pattern(const char *carrier)
{
	size_t		len;
	char	   *key;

	if (carrier == NULL)
		return NULL;
	while (*carrier == ' ')
		carrier++;
	len = strlen(carrier);
	while (len > 0 && carrier[len - 1] == ' ')
		len--;
	key = str_tolower(carrier, len, DEFAULT_COLLATION_OID);
	for (int i = 0; i < ncarriers; i++)
		if (strcmp(carriers[i], key) == 0)
			return carrier_patterns[i];
	return NULL;
}

/*
 * The event's configuration, the settings a render needs and the URL
 * pattern of the given carrier, from the transaction's settings snapshot.
 * The strings belong to the caches: read them, do not keep them.
 */
static void
load_config(const char *event, const char *carrier, RenderConfig *cfg)
{
	const WaSettings *set = wa_settings();
	RenderEvent *ev = NULL;

	if (render_generation != wa_settings_generation())
	{
		load_events_and_carriers();
		render_generation = wa_settings_generation();
	}
	for (int i = 0; i < nevents; i++)
		if (strcmp(events[i].event, event) == 0)
			ev = &events[i];
	if (ev == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown event \"%s\"", event),
				 errhint("The events are order_placed, order_processing, shipment_created, shipment_delivered, order_cancelled and refund_issued.")));

	cfg->ev = ev;
	cfg->language = ev->template_language ? ev->template_language : set->default_language;
	cfg->use_templates = set->use_templates;
	cfg->default_tracking_url = set->default_tracking_url;
	cfg->carrier_pattern = carrier_pattern(carrier);
}

/*
 * The text a context field contributes to a message: "total" as pt_BR
 * money, "tracking_url" derived from carrier and tracking_number unless the
 * context gave one; NULL when the field is absent.
 */
static char *
field_value(const char *name, Jsonb *params, const RenderConfig *cfg)
{
	char	   *v = jsonb_field_text(params, name);

	if (strcmp(name, "total") == 0 && v != NULL)
		return wa_format_money(v);
	if (strcmp(name, "tracking_url") == 0 && v == NULL)
	{
		char	   *tracking = jsonb_field_text(params, "tracking_number");
		const char *pattern = cfg->carrier_pattern ? cfg->carrier_pattern
			: cfg->default_tracking_url;

		if (tracking == NULL || pattern == NULL)
			return NULL;
		return wa_tracking_url_from_pattern(pattern, tracking);
	}
	return v;
}

/* text body with {field} placeholders replaced; unknown fields give "" */
static char *
render_text_body(const char *body, Jsonb *params, const RenderConfig *cfg)
{
	StringInfoData buf;
	const char *p = body ? body : "";

	initStringInfo(&buf);
	while (*p)
	{
		if (*p == '{')
		{
			const char *q = p + 1;

			while (isalnum((unsigned char) *q) || *q == '_')
				q++;
			if (*q == '}' && q > p + 1)
			{
				char	   *name = pnstrdup(p + 1, q - p - 1);
				char	   *v = field_value(name, params, cfg);

				if (v)
					appendStringInfoString(&buf, v);
				p = q + 1;
				continue;
			}
		}
		appendStringInfoChar(&buf, *p++);
	}
	return buf.data;
}

static JObj *
text_parameter(const char *value)
{
	JObj *o = json_object_new_object();

	json_object_object_add(o, "type", json_object_new_string("text"));
	json_object_object_add(o, "text", json_object_new_string(value ? value : ""));
	return o;
}

/*
 * A body parameter of a template created with parameter_format NAMED
 * (Meta's "Send template messages" page: {"type": "text",
 * "parameter_name": "first_name", "text": "Jessica"}): the name is the
 * event's param_names entry, else the context field's.
 */
static JObj *
named_text_parameter(const char *name, const char *value)
{
	JObj *o = json_object_new_object();

	json_object_object_add(o, "type", json_object_new_string("text"));
	json_object_object_add(o, "parameter_name", json_object_new_string(name));
	json_object_object_add(o, "text", json_object_new_string(value ? value : ""));
	return o;
}

/*
 * The https URL a header takes from the context field, or an error before
 * any request: Meta fetches the file itself, and only over https.
 */
static const char *
header_url(const char *field, const char *what, Jsonb *params)
{
	char	   *url = jsonb_field_text(params, field);

	if (url == NULL || url[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the context has no %s URL in field \"%s\"", what, field),
				 errhint("The context query must return the %s's https URL in column \"%s\".", what, field)));
	if (pg_strncasecmp(url, "https://", 8) != 0 || url[8] == '\0' || strpbrk(url, " \t\r\n") != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the %s URL in field \"%s\" is not an https URL", what, field),
				 errdetail("The URL given was \"%s\".", url),
				 errhint("Meta downloads header files over https only: give a public https:// link.")));
	return url;
}

/*
 * The header component of a document (invoice, boleto PDF) or image header:
 * {"type": "header", "parameters": [{"type": "document", "document":
 * {"link": ..., "filename": ...}}]}.  NULL when the event has none.
 */
static JObj *
header_component(Jsonb *params, const RenderConfig *cfg)
{
	JObj *header;
	JObj *plist;
	JObj *p;
	JObj *media;

	if (cfg->ev->header_document == NULL && cfg->ev->header_image == NULL)
		return NULL;
	header = json_object_new_object();
	plist = json_object_new_array();
	p = json_object_new_object();
	media = json_object_new_object();
	if (cfg->ev->header_document != NULL)
	{
		json_object_object_add(media, "link",
							   json_object_new_string(header_url(cfg->ev->header_document, "document", params)));
		if (cfg->ev->header_filename != NULL)
		{
			const char *fn = strchr(cfg->ev->header_filename, '{')
				? render_text_body(cfg->ev->header_filename, params, cfg)
				: field_value(cfg->ev->header_filename, params, cfg);

			if (fn != NULL && fn[0] != '\0')
				json_object_object_add(media, "filename", json_object_new_string(fn));
		}
		json_object_object_add(p, "type", json_object_new_string("document"));
		json_object_object_add(p, "document", media);
	}
	else
	{
		json_object_object_add(media, "link",
							   json_object_new_string(header_url(cfg->ev->header_image, "image", params)));
		json_object_object_add(p, "type", json_object_new_string("image"));
		json_object_object_add(p, "image", media);
	}
	json_object_array_add(plist, p);
	json_object_object_add(header, "type", json_object_new_string("header"));
	json_object_object_add(header, "parameters", plist);
	return header;
}

/*
 * Build the request body.  Returns a palloc'd JSON string.  message_id < 0
 * leaves out biz_opaque_callback_data (a preview of a message not queued).
 */
char *
wa_render_body(const char *event, const char *phone, Jsonb *params, int64 message_id)
{
	RenderConfig cfg;
	char	   *carrier = jsonb_field_text(params, "carrier");
	JObj *root;
	char	   *result;

	load_config(event, carrier, &cfg);

	root = json_object_new_object();
	json_object_object_add(root, "messaging_product", json_object_new_string("whatsapp"));
	json_object_object_add(root, "recipient_type", json_object_new_string("individual"));
	json_object_object_add(root, "to", phone ? json_object_new_string(phone) : NULL);

	if (cfg.use_templates && cfg.ev->template_name != NULL)
	{
		JObj *tmpl = json_object_new_object();
		JObj *lang = json_object_new_object();
		JObj *components = json_object_new_array();

		json_object_object_add(root, "type", json_object_new_string("template"));
		json_object_object_add(tmpl, "name", json_object_new_string(cfg.ev->template_name));
		json_object_object_add(lang, "code",
							   json_object_new_string(cfg.language));
		json_object_object_add(tmpl, "language", lang);

		{
			JObj *header = header_component(params, &cfg);

			if (header != NULL)
				json_object_array_add(components, header);
		}
		if (cfg.ev->nparams > 0)
		{
			JObj *body = json_object_new_object();
			JObj *plist = json_object_new_array();

			for (int i = 0; i < cfg.ev->nparams; i++)
			{
				const char *v = cfg.ev->params[i] ? field_value(cfg.ev->params[i], params, &cfg) : NULL;

				const char *name = i < cfg.ev->nparam_names && cfg.ev->param_names[i]
					? cfg.ev->param_names[i] : cfg.ev->params[i];

				json_object_array_add(plist, cfg.ev->named && name
									  ? named_text_parameter(name, v)
									  : text_parameter(v));
			}
			json_object_object_add(body, "type", json_object_new_string("body"));
			json_object_object_add(body, "parameters", plist);
			json_object_array_add(components, body);
		}
		if (cfg.ev->button_param != NULL)
		{
			JObj *button = json_object_new_object();
			JObj *plist = json_object_new_array();

			json_object_array_add(plist,
								  text_parameter(field_value(cfg.ev->button_param, params, &cfg)));
			json_object_object_add(button, "type", json_object_new_string("button"));
			json_object_object_add(button, "sub_type", json_object_new_string("url"));
			json_object_object_add(button, "index", json_object_new_string("0"));
			json_object_object_add(button, "parameters", plist);
			json_object_array_add(components, button);
		}
		json_object_object_add(tmpl, "components", components);
		json_object_object_add(root, "template", tmpl);
	}
	else
	{
		JObj *text = json_object_new_object();

		json_object_object_add(root, "type", json_object_new_string("text"));
		json_object_object_add(text, "preview_url", json_object_new_boolean(1));
		json_object_object_add(text, "body",
							   json_object_new_string(render_text_body(cfg.ev->text_body, params, &cfg)));
		json_object_object_add(root, "text", text);
	}
	if (message_id >= 0)
	{
		/* the id with its MAC (secrets.c): a status can prove it is ours */
		char	   *callback = wa_callback_data(message_id);

		if (callback != NULL)
			json_object_object_add(root, "biz_opaque_callback_data", json_object_new_string(callback));
	}

	result = pstrdup(json_object_to_json_string_ext(root,
													JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
	json_object_put(root);
	return result;
}

/* The body of (event, phone, params, message id) from SQL arguments; NULL: no event. */
static char *
render_args(FunctionCallInfo fcinfo)
{
	char	   *phone = NULL;
	Jsonb	   *params = NULL;
	int64		id = -1;

	if (PG_ARGISNULL(0))
		return NULL;
	if (!PG_ARGISNULL(1))
		phone = text_to_cstring(PG_GETARG_TEXT_PP(1));
	if (!PG_ARGISNULL(2))
		params = PG_GETARG_JSONB_P(2);
	if (!PG_ARGISNULL(3))
		id = PG_GETARG_INT64(3);
	return wa_render_body(text_to_cstring(PG_GETARG_TEXT_PP(0)), phone, params, id);
}

/* wa_notify._render(): the body as jsonb (preview, tests) */
PG_FUNCTION_INFO_V1(wa_notify_render);
Datum
wa_notify_render(PG_FUNCTION_ARGS)
{
	char	   *body = render_args(fcinfo);

	if (body == NULL)
		PG_RETURN_NULL();
	PG_RETURN_DATUM(DirectFunctionCall1(jsonb_in, CStringGetDatum(body)));
}

/* wa_notify._render_body(): the same body as the text POSTed (_claim: no jsonb parse and print) */
PG_FUNCTION_INFO_V1(wa_notify_render_body);
Datum
wa_notify_render_body(PG_FUNCTION_ARGS)
{
	char	   *body = render_args(fcinfo);

	if (body == NULL)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(body));
}

/* wa_notify._tracking_url(carrier, tracking): the URL a customer gets */
PG_FUNCTION_INFO_V1(wa_notify_tracking_url);
Datum
wa_notify_tracking_url(PG_FUNCTION_ARGS)
{
	char	   *carrier = PG_ARGISNULL(0) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(0));
	char	   *tracking;
	RenderConfig cfg;
	const char *pattern;

	if (PG_ARGISNULL(1))
		PG_RETURN_NULL();
	tracking = text_to_cstring(PG_GETARG_TEXT_PP(1));
	load_config("order_placed", carrier, &cfg);
	pattern = cfg.carrier_pattern ? cfg.carrier_pattern : cfg.default_tracking_url;
	if (pattern == NULL)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(wa_tracking_url_from_pattern(pattern, tracking)));
}

/* wa_notify._format_money(text): pt_BR money text */
PG_FUNCTION_INFO_V1(wa_notify_format_money);
Datum
wa_notify_format_money(PG_FUNCTION_ARGS)
{
	char	   *in = text_to_cstring(PG_GETARG_TEXT_PP(0));

	PG_RETURN_TEXT_P(cstring_to_text(wa_format_money(in)));
}
