/*-------------------------------------------------------------------------
 * render.c
 *	  Message rendering: the exact JSON body POSTed to the Graph API
 *	  ({base}/{version}/{phone_number_id}/messages) for one message, built
 *	  with json-c from the event's configuration (wa_notify.event), the
 *	  settings (use_templates, default_language, default_tracking_url), the
 *	  carrier table and the message's params (the order context).
 *
 *	  Owns: template bodies (body parameters in the configured order, the
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
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"

#include "wa_notify.h"
#include "render.h"

/* One event's configuration, as read for one render. */
typedef struct RenderConfig
{
	char	   *template_name;
	char	   *language;
	int			nparams;
	char	  **params;			/* context field names for {{1}}..{{n}} */
	char	   *button_param;
	char	   *text_body;
	bool		use_templates;
	char	   *default_tracking_url;
	char	   *carrier_pattern;	/* pattern of params.carrier, if any */
} RenderConfig;

static SPIPlanPtr config_plan = NULL;

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

static char *
spi_text(HeapTuple tup, TupleDesc desc, int col)
{
	return SPI_getvalue(tup, desc, col);	/* NULL for SQL NULL */
}

/*
 * Read the event's configuration, the settings a render needs, and the URL
 * pattern of the given carrier, in one cached query.  Values are palloc'd
 * in the caller's memory context.
 */
static void
load_config(const char *event, const char *carrier, RenderConfig *cfg)
{
	Datum		args[2];
	char		nulls[2] = {' ', ' '};
	int			rc;
	HeapTuple	tup;
	TupleDesc	desc;
	bool		isnull;
	Datum		arr;
	MemoryContext callerctx = CurrentMemoryContext;

	memset(cfg, 0, sizeof(*cfg));
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (config_plan == NULL)
	{
		Oid			types[2] = {TEXTOID, TEXTOID};
		SPIPlanPtr	plan;

		plan = wa_prepare_kept(
			"SELECT e.template_name,"
			"       coalesce(e.template_language,"
			"                (SELECT s.value FROM wa_notify.setting s WHERE s.name = 'default_language')),"
			"       e.params, e.button_param, e.text_body,"
			"       coalesce((SELECT s.value FROM wa_notify.setting s WHERE s.name = 'use_templates'), 'true'),"
			"       (SELECT s.value FROM wa_notify.setting s WHERE s.name = 'default_tracking_url'),"
			"       (SELECT c.url_pattern FROM wa_notify.carrier c WHERE c.carrier = lower(btrim($2)))"
			"  FROM wa_notify.event e WHERE e.event = $1",
			2, types, 0);
		config_plan = plan;
	}
	args[0] = CStringGetTextDatum(event);
	if (carrier)
		args[1] = CStringGetTextDatum(carrier);
	else
	{
		args[1] = (Datum) 0;
		nulls[1] = 'n';
	}
	rc = SPI_execute_plan(config_plan, args, nulls, true, 1);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "reading the event configuration failed: %s", SPI_result_code_string(rc));
	if (SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown event \"%s\"", event),
				 errhint("The events are order_placed, order_processing, shipment_created, shipment_delivered, order_cancelled and refund_issued.")));

	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;

	{
		MemoryContext spictx = MemoryContextSwitchTo(callerctx);
		char	   *s;

		cfg->template_name = spi_text(tup, desc, 1);
		cfg->language = spi_text(tup, desc, 2);
		cfg->button_param = spi_text(tup, desc, 4);
		cfg->text_body = spi_text(tup, desc, 5);
		s = spi_text(tup, desc, 6);
		cfg->use_templates = (s == NULL || strcmp(s, "true") == 0 || strcmp(s, "on") == 0);
		cfg->default_tracking_url = spi_text(tup, desc, 7);
		cfg->carrier_pattern = spi_text(tup, desc, 8);

		arr = SPI_getbinval(tup, desc, 3, &isnull);
		if (!isnull)
		{
			Datum	   *elems;
			bool	   *enulls;
			int			n;

			deconstruct_array(DatumGetArrayTypeP(arr), TEXTOID, -1, false, TYPALIGN_INT,
							  &elems, &enulls, &n);
			cfg->params = palloc0(sizeof(char *) * (n + 1));
			for (int i = 0; i < n; i++)
				cfg->params[i] = enulls[i] ? NULL : TextDatumGetCString(elems[i]);
			cfg->nparams = n;
		}
		MemoryContextSwitchTo(spictx);
	}
	SPI_finish();
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

	if (cfg.use_templates && cfg.template_name != NULL)
	{
		JObj *tmpl = json_object_new_object();
		JObj *lang = json_object_new_object();
		JObj *components = json_object_new_array();

		json_object_object_add(root, "type", json_object_new_string("template"));
		json_object_object_add(tmpl, "name", json_object_new_string(cfg.template_name));
		json_object_object_add(lang, "code",
							   json_object_new_string(cfg.language ? cfg.language : "pt_BR"));
		json_object_object_add(tmpl, "language", lang);

		if (cfg.nparams > 0)
		{
			JObj *body = json_object_new_object();
			JObj *plist = json_object_new_array();

			for (int i = 0; i < cfg.nparams; i++)
				json_object_array_add(plist,
									  text_parameter(cfg.params[i]
													 ? field_value(cfg.params[i], params, &cfg)
													 : NULL));
			json_object_object_add(body, "type", json_object_new_string("body"));
			json_object_object_add(body, "parameters", plist);
			json_object_array_add(components, body);
		}
		if (cfg.button_param != NULL)
		{
			JObj *button = json_object_new_object();
			JObj *plist = json_object_new_array();

			json_object_array_add(plist,
								  text_parameter(field_value(cfg.button_param, params, &cfg)));
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
							   json_object_new_string(render_text_body(cfg.text_body, params, &cfg)));
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

PG_FUNCTION_INFO_V1(wa_notify_render);
Datum
wa_notify_render(PG_FUNCTION_ARGS)
{
	char	   *event;
	char	   *phone = NULL;
	Jsonb	   *params = NULL;
	int64		id = -1;
	char	   *body;

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	event = text_to_cstring(PG_GETARG_TEXT_PP(0));
	if (!PG_ARGISNULL(1))
		phone = text_to_cstring(PG_GETARG_TEXT_PP(1));
	if (!PG_ARGISNULL(2))
		params = PG_GETARG_JSONB_P(2);
	if (!PG_ARGISNULL(3))
		id = PG_GETARG_INT64(3);
	body = wa_render_body(event, phone, params, id);
	PG_RETURN_DATUM(DirectFunctionCall1(jsonb_in, CStringGetDatum(body)));
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
