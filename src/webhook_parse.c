/*-------------------------------------------------------------------------
 * webhook_parse.c
 *	  Pure parse step of Meta's WhatsApp Business webhook payloads (json-c):
 *	  validate the raw bytes (UTF-8, JSON, nesting depth), check the envelope
 *	  (object = "whatsapp_business_account", entry[].changes[].field/value)
 *	  and flatten the changes we act on into arrays of C structs
 *	  (webhook_parse.h).  Also the opt-out keyword normalisation and the
 *	  X-Hub-Signature-256 header decoding.
 *
 *	  No PostgreSQL headers and no database access: this file is linked
 *	  into the extension (src/webhook.c applies the result with SPI) and
 *	  into the libFuzzer target test/fuzz/fuzz_webhook_parse.c.  Every
 *	  allocation comes from a private arena freed by wh_payload_free().
 *-------------------------------------------------------------------------
 */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "webhook_parse.h"

/* ---------------------------------------------------------------- arena */

typedef struct ArenaBlock
{
	struct ArenaBlock *next;
	size_t		used;
	size_t		size;
	/* data follows, max-aligned */
	long double data[];
} ArenaBlock;

#define ARENA_BLOCK 8192

static void *
arena_alloc(WhPayload *p, size_t n)
{
	ArenaBlock *b = (ArenaBlock *) p->arena;

	n = (n + 15) & ~(size_t) 15;
	if (b == NULL || b->size - b->used < n)
	{
		size_t		size = n > ARENA_BLOCK ? n : ARENA_BLOCK;
		ArenaBlock *nb = malloc(sizeof(ArenaBlock) + size);

		if (nb == NULL)
			return NULL;
		nb->next = b;
		nb->used = 0;
		nb->size = size;
		p->arena = nb;
		b = nb;
	}
	b->used += n;
	return (char *) b->data + b->used - n;
}

void
wh_payload_free(WhPayload *p)
{
	ArenaBlock *b = (ArenaBlock *) p->arena;

	while (b)
	{
		ArenaBlock *next = b->next;

		free(b);
		b = next;
	}
	p->arena = NULL;
	/* the growable arrays live outside the arena (realloc) */
	free(p->statuses);
	free(p->inbound);
	free(p->templates);
	free(p->quality);
	free(p->categories);
	free(p->template_quality);
	p->categories = NULL;
	p->template_quality = NULL;
	p->ncategories = p->ntemplate_quality = 0;
	p->statuses = NULL;
	p->inbound = NULL;
	p->templates = NULL;
	p->quality = NULL;
	p->nstatuses = p->ninbound = p->ntemplates = p->nquality = 0;
}

/* ---------------------------------------------------------------- UTF-8 */

int
wh_utf8_valid(const unsigned char *s, size_t len)
{
	size_t		i = 0;

	while (i < len)
	{
		unsigned char c = s[i];
		size_t		n;
		uint32_t	cp;

		if (c < 0x80)
		{
			i++;
			continue;
		}
		if (c >= 0xC2 && c <= 0xDF)
		{
			n = 1;
			cp = c & 0x1F;
		}
		else if (c >= 0xE0 && c <= 0xEF)
		{
			n = 2;
			cp = c & 0x0F;
		}
		else if (c >= 0xF0 && c <= 0xF4)
		{
			n = 3;
			cp = c & 0x07;
		}
		else
			return 0;
		if (len - i <= n)
			return 0;
		for (size_t k = 1; k <= n; k++)
		{
			if ((s[i + k] & 0xC0) != 0x80)
				return 0;
			cp = (cp << 6) | (s[i + k] & 0x3F);
		}
		if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
			cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
			return 0;
		i += n + 1;
	}
	return 1;
}

/* ------------------------------------------------------------- helpers */

typedef struct Ctx
{
	WhPayload  *p;
	size_t		cap_st,
				cap_in,
				cap_tp,
				cap_q,
				cap_cat,
				cap_tq;
	int			oom;
} Ctx;

static WhParseResult fail(WhPayload *p, WhParseResult r, const char *fmt,...)
			__attribute__((format(printf, 3, 4)));

static WhParseResult
fail(WhPayload *p, WhParseResult r, const char *fmt,...)
{
	va_list		ap;

	va_start(ap, fmt);
	vsnprintf(p->error, sizeof(p->error), fmt, ap);
	va_end(ap);
	return r;
}

/* Grow an array by one element; NULL on out of memory. */
static void *
grow(void **arr, size_t *n, size_t *cap, size_t elsize)
{
	if (*n == *cap)
	{
		size_t		ncap = *cap ? *cap * 2 : 8;
		void	   *na = realloc(*arr, ncap * elsize);

		if (na == NULL)
			return NULL;
		*arr = na;
		*cap = ncap;
	}
	memset((char *) *arr + *n * elsize, 0, elsize);
	return (char *) *arr + (*n)++ * elsize;
}

/*
 * Copy the string member key of obj into the arena.  Returns 1 and sets
 * *out (NULL when absent or JSON null), 0 when present with another type,
 * -2 when not valid UTF-8 after unescaping, -1 when out of memory.
 */
static int
get_str(Ctx *c, json_object *obj, const char *key, const char **out)
{
	json_object *v;
	const char *s;
	size_t		len;
	char	   *copy;

	*out = NULL;
	if (!json_object_object_get_ex(obj, key, &v) || v == NULL)
		return 1;
	if (!json_object_is_type(v, json_type_string))
		return 0;
	s = json_object_get_string(v);
	len = strlen(s);			/* no \u0000: wh_parse() refused it */
	if (!wh_utf8_valid((const unsigned char *) s, len))
		return -2;
	copy = arena_alloc(c->p, len + 1);
	if (copy == NULL)
		return -1;
	memcpy(copy, s, len + 1);
	*out = copy;
	return 1;
}

/* An integer given as JSON number or as a string of digits. */
static int
get_int(json_object *obj, const char *key, int64_t *out, int64_t max)
{
	json_object *v;

	if (!json_object_object_get_ex(obj, key, &v) || v == NULL)
		return 1;
	if (json_object_is_type(v, json_type_int))
	{
		int64_t		i = json_object_get_int64(v);

		if (i < 0 || i > max)
			return 0;
		*out = i;
		return 1;
	}
	if (json_object_is_type(v, json_type_string))
	{
		const char *s = json_object_get_string(v);
		int64_t		i = 0;

		if (*s == '\0' || strlen(s) > 18)
			return 0;
		for (; *s; s++)
		{
			if (*s < '0' || *s > '9')
				return 0;
			i = i * 10 + (*s - '0');
		}
		if (i > max)
			return 0;
		*out = i;
		return 1;
	}
	return 0;
}

/*
 * An id given as a JSON number or a string (message_template_id is a number
 * in Meta's examples) as text in the arena; same results as get_str().
 */
static int
get_id_text(Ctx *c, json_object *obj, const char *key, const char **out)
{
	json_object *v;
	char		buf[32];
	char	   *copy;

	if (json_object_object_get_ex(obj, key, &v) && v != NULL &&
		json_object_is_type(v, json_type_int))
	{
		snprintf(buf, sizeof(buf), "%lld", (long long) json_object_get_int64(v));
		copy = arena_alloc(c->p, strlen(buf) + 1);
		if (copy == NULL)
			return -1;
		memcpy(copy, buf, strlen(buf) + 1);
		*out = copy;
		return 1;
	}
	return get_str(c, obj, key, out);
}

static json_object *
get_member(json_object *obj, const char *key, json_type type, int *bad)
{
	json_object *v;

	*bad = 0;
	if (!json_object_object_get_ex(obj, key, &v) || v == NULL)
		return NULL;
	if (!json_object_is_type(v, type))
	{
		*bad = 1;
		return NULL;
	}
	return v;
}

#define STR(obj, key, dst, what) \
	do { \
		int _r = get_str(c, (obj), (key), (dst)); \
		if (_r == -1) { c->oom = 1; return fail(c->p, WH_MALFORMED, "out of memory"); } \
		if (_r == -2) return fail(c->p, WH_MALFORMED, "%s.%s is not valid UTF-8", (what), (key)); \
		if (_r == 0) return fail(c->p, WH_BAD_SHAPE, "%s.%s is not a string", (what), (key)); \
	} while (0)

#define ID_TEXT(obj, key, dst, what) \
	do { \
		int _r = get_id_text(c, (obj), (key), (dst)); \
		if (_r == -1) { c->oom = 1; return fail(c->p, WH_MALFORMED, "out of memory"); } \
		if (_r == -2) return fail(c->p, WH_MALFORMED, "%s.%s is not valid UTF-8", (what), (key)); \
		if (_r == 0) return fail(c->p, WH_BAD_SHAPE, "%s.%s is not an id", (what), (key)); \
	} while (0)

/* ------------------------------------------------------------ the walk */

/*
 * The 2026 fields of a status (Meta's "Status messages webhook reference"):
 * recipient_user_id (the BSUID) and pricing {billable, pricing_model, type,
 * category}.
 */
static WhParseResult
parse_status_cloud(Ctx *c, json_object *st, WhStatus *s, const char *where)
{
	json_object *pricing;
	json_object *b;
	int			bad;

	s->billable = -1;
	STR(st, "recipient_user_id", &s->recipient_user_id, where);
	pricing = get_member(st, "pricing", json_type_object, &bad);
	if (bad)
		return fail(c->p, WH_BAD_SHAPE, "%s.pricing is not an object", where);
	if (pricing == NULL)
		return WH_OK;
	if (json_object_object_get_ex(pricing, "billable", &b) && b != NULL)
	{
		if (!json_object_is_type(b, json_type_boolean))
			return fail(c->p, WH_BAD_SHAPE, "%s.pricing.billable is not a boolean", where);
		s->billable = json_object_get_boolean(b) ? 1 : 0;
	}
	STR(pricing, "type", &s->pricing_type, "pricing");
	STR(pricing, "category", &s->pricing_category, "pricing");
	return WH_OK;
}

static WhParseResult
parse_status(Ctx *c, json_object *st, const char *where)
{
	WhStatus   *s;
	WhParseResult r;
	int			bad;
	json_object *errors;
	int64_t		ts = 0;

	if (!json_object_is_type(st, json_type_object))
		return fail(c->p, WH_BAD_SHAPE, "%s is not an object", where);
	s = grow((void **) &c->p->statuses, &c->p->nstatuses, &c->cap_st, sizeof(WhStatus));
	if (s == NULL)
		return fail(c->p, WH_MALFORMED, "out of memory");
	s->error_code = -1;
	STR(st, "id", &s->wamid, where);
	STR(st, "status", &s->status, where);
	if (s->wamid == NULL || s->wamid[0] == '\0')
		return fail(c->p, WH_BAD_SHAPE, "%s has no id", where);
	if (s->status == NULL)
		return fail(c->p, WH_BAD_SHAPE, "%s has no status", where);
	STR(st, "recipient_id", &s->recipient_id, where);
	STR(st, "biz_opaque_callback_data", &s->biz_opaque, where);
	if (!get_int(st, "timestamp", &ts, INT64_C(253402300799)))
		return fail(c->p, WH_BAD_SHAPE, "%s.timestamp is not a unix time", where);
	s->timestamp = ts;
	if ((r = parse_status_cloud(c, st, s, where)) != WH_OK)
		return r;
	if (strcmp(s->status, "sent") == 0)
		s->kind = WH_ST_SENT;
	else if (strcmp(s->status, "delivered") == 0)
		s->kind = WH_ST_DELIVERED;
	else if (strcmp(s->status, "read") == 0)
		s->kind = WH_ST_READ;
	else if (strcmp(s->status, "failed") == 0)
		s->kind = WH_ST_FAILED;
	else
		s->kind = WH_ST_OTHER;

	errors = get_member(st, "errors", json_type_array, &bad);
	if (bad)
		return fail(c->p, WH_BAD_SHAPE, "%s.errors is not an array", where);
	if (errors && json_object_array_length(errors) > 0)
	{
		json_object *e = json_object_array_get_idx(errors, 0);
		json_object *ed;
		int64_t		code = -1;

		if (e == NULL || !json_object_is_type(e, json_type_object))
			return fail(c->p, WH_BAD_SHAPE, "%s.errors[0] is not an object", where);
		if (!get_int(e, "code", &code, INT32_MAX))
			return fail(c->p, WH_BAD_SHAPE, "%s.errors[0].code is not an error code", where);
		s->error_code = (int) code;
		STR(e, "title", &s->error_title, "errors[0]");
		STR(e, "message", &s->error_message, "errors[0]");
		ed = get_member(e, "error_data", json_type_object, &bad);
		if (bad)
			return fail(c->p, WH_BAD_SHAPE, "%s.errors[0].error_data is not an object", where);
		if (ed)
			STR(ed, "details", &s->error_details, "errors[0].error_data");
	}
	return WH_OK;
}

static WhParseResult
parse_inbound(Ctx *c, json_object *m, const char *where)
{
	WhInbound  *in;
	int			bad;
	json_object *sub;
	int64_t		ts = 0;

	if (!json_object_is_type(m, json_type_object))
		return fail(c->p, WH_BAD_SHAPE, "%s is not an object", where);
	in = grow((void **) &c->p->inbound, &c->p->ninbound, &c->cap_in, sizeof(WhInbound));
	if (in == NULL)
		return fail(c->p, WH_MALFORMED, "out of memory");
	STR(m, "from", &in->from, where);
	STR(m, "from_user_id", &in->from_user_id, where);
	if (in->from != NULL && in->from[0] == '\0')
		in->from = NULL;
	if (in->from == NULL && (in->from_user_id == NULL || in->from_user_id[0] == '\0'))
		return fail(c->p, WH_BAD_SHAPE, "%s has neither from nor from_user_id", where);
	STR(m, "id", &in->id, where);
	STR(m, "type", &in->type, where);
	if (!get_int(m, "timestamp", &ts, INT64_C(253402300799)))
		return fail(c->p, WH_BAD_SHAPE, "%s.timestamp is not a unix time", where);
	in->timestamp = ts;

	/* the text a customer typed or tapped */
	if ((sub = get_member(m, "text", json_type_object, &bad)) != NULL)
		STR(sub, "body", &in->text, "text");
	else if (bad)
		return fail(c->p, WH_BAD_SHAPE, "%s.text is not an object", where);
	else if ((sub = get_member(m, "button", json_type_object, &bad)) != NULL)
		STR(sub, "text", &in->text, "button");
	else if (bad)
		return fail(c->p, WH_BAD_SHAPE, "%s.button is not an object", where);
	else if ((sub = get_member(m, "interactive", json_type_object, &bad)) != NULL)
	{
		json_object *r = get_member(sub, "button_reply", json_type_object, &bad);

		if (r == NULL && !bad)
			r = get_member(sub, "list_reply", json_type_object, &bad);
		if (bad)
			return fail(c->p, WH_BAD_SHAPE, "%s.interactive reply is not an object", where);
		if (r)
			STR(r, "title", &in->text, "interactive");
	}
	else if (bad)
		return fail(c->p, WH_BAD_SHAPE, "%s.interactive is not an object", where);
	else if ((sub = get_member(m, "system", json_type_object, &bad)) != NULL)
	{
		/* Meta's "System messages webhook reference": user_changed_number, user_changed_user_id */
		STR(sub, "type", &in->system_type, "system");
		STR(sub, "user_id", &in->system_user_id, "system");
		STR(sub, "previous_user_id", &in->system_previous_user_id, "system");
	}
	else if (bad)
		return fail(c->p, WH_BAD_SHAPE, "%s.system is not an object", where);
	return WH_OK;
}

/*
 * value.contacts[]: the BSUID of an inbound message's sender when the
 * message itself does not carry from_user_id (the contact whose wa_id is
 * the sender, or the only contact).
 */
static WhParseResult
parse_contacts(Ctx *c, json_object *value, size_t first, const char *where)
{
	int			bad;
	json_object *arr = get_member(value, "contacts", json_type_array, &bad);
	size_t		n;

	if (bad)
		return fail(c->p, WH_BAD_SHAPE, "%s.value.contacts is not an array", where);
	if (arr == NULL)
		return WH_OK;
	n = json_object_array_length(arr);
	for (size_t i = first; i < c->p->ninbound; i++)
	{
		WhInbound  *in = &c->p->inbound[i];

		if (in->from_user_id != NULL)
			continue;
		for (size_t k = 0; k < n; k++)
		{
			json_object *ct = json_object_array_get_idx(arr, k);
			const char *wa_id = NULL;
			const char *user_id = NULL;

			if (ct == NULL || !json_object_is_type(ct, json_type_object))
				return fail(c->p, WH_BAD_SHAPE, "%s.value.contacts[%zu] is not an object", where, k);
			STR(ct, "wa_id", &wa_id, "contacts[]");
			STR(ct, "user_id", &user_id, "contacts[]");
			if (user_id && ((in->from && wa_id && strcmp(in->from, wa_id) == 0) || n == 1))
			{
				in->from_user_id = user_id;
				break;
			}
		}
	}
	return WH_OK;
}

/*
 * message_template_status_update beyond 1.0's fields (Meta's
 * "message_template_status_update webhook reference"): message_template_id,
 * message_template_category, disable_info.disable_date, other_info.
 */
static WhParseResult
parse_template_status_cloud(Ctx *c, json_object *value, WhTemplate *t, const char *where)
{
	json_object *sub;
	int			bad;

	ID_TEXT(value, "message_template_id", &t->template_id, where);
	STR(value, "message_template_category", &t->category, where);
	if ((sub = get_member(value, "disable_info", json_type_object, &bad)) != NULL)
		ID_TEXT(sub, "disable_date", &t->disable_date, "disable_info");
	else if (bad)
		return fail(c->p, WH_BAD_SHAPE, "%s.value.disable_info is not an object", where);
	if ((sub = get_member(value, "other_info", json_type_object, &bad)) != NULL)
	{
		STR(sub, "title", &t->other_title, "other_info");
		STR(sub, "description", &t->other_description, "other_info");
	}
	else if (bad)
		return fail(c->p, WH_BAD_SHAPE, "%s.value.other_info is not an object", where);
	return WH_OK;
}

/* template_category_update (Meta's "template_category_update webhook reference") */
static WhParseResult
parse_template_category(Ctx *c, json_object *value, const char *where)
{
	WhTemplateCategory *t = grow((void **) &c->p->categories, &c->p->ncategories, &c->cap_cat,
								 sizeof(WhTemplateCategory));
	int64_t		ts = 0;

	if (t == NULL)
		return fail(c->p, WH_MALFORMED, "out of memory");
	STR(value, "message_template_name", &t->name, where);
	STR(value, "message_template_language", &t->language, where);
	ID_TEXT(value, "message_template_id", &t->template_id, where);
	STR(value, "previous_category", &t->previous_category, where);
	STR(value, "new_category", &t->new_category, where);
	STR(value, "correct_category", &t->correct_category, where);
	if (!get_int(value, "category_update_timestamp", &ts, INT64_C(253402300799)))
		return fail(c->p, WH_BAD_SHAPE, "%s.value.category_update_timestamp is not a unix time", where);
	t->update_timestamp = ts;
	if (t->name == NULL || t->language == NULL || t->new_category == NULL)
		return fail(c->p, WH_BAD_SHAPE,
					"%s.value needs message_template_name, message_template_language and new_category", where);
	return WH_OK;
}

/* message_template_quality_update */
static WhParseResult
parse_template_quality(Ctx *c, json_object *value, const char *where)
{
	WhTemplateQuality *t = grow((void **) &c->p->template_quality, &c->p->ntemplate_quality,
								&c->cap_tq, sizeof(WhTemplateQuality));

	if (t == NULL)
		return fail(c->p, WH_MALFORMED, "out of memory");
	STR(value, "message_template_name", &t->name, where);
	STR(value, "message_template_language", &t->language, where);
	ID_TEXT(value, "message_template_id", &t->template_id, where);
	STR(value, "new_quality_score", &t->new_quality, where);
	if (t->name == NULL || t->language == NULL || t->new_quality == NULL)
		return fail(c->p, WH_BAD_SHAPE,
					"%s.value needs message_template_name, message_template_language and new_quality_score", where);
	return WH_OK;
}

static WhParseResult
parse_change(Ctx *c, json_object *ch, size_t ei, size_t ci)
{
	const char *field;
	json_object *value;
	json_object *arr;
	int			bad;
	char		where[96];
	WhParseResult r;

	snprintf(where, sizeof(where), "entry[%zu].changes[%zu]", ei, ci);
	if (!json_object_is_type(ch, json_type_object))
		return fail(c->p, WH_BAD_SHAPE, "%s is not an object", where);
	STR(ch, "field", &field, where);
	if (field == NULL)
		return fail(c->p, WH_BAD_SHAPE, "%s has no field", where);
	value = get_member(ch, "value", json_type_object, &bad);
	if (value == NULL)
		return fail(c->p, WH_BAD_SHAPE, "%s.value is %s", where, bad ? "not an object" : "missing");

	if (strcmp(field, "messages") == 0)
	{
		/* the number the change is for (Meta's "messages webhook reference") */
		const char *pnid = NULL;
		size_t		first_status = c->p->nstatuses;
		json_object *metadata = get_member(value, "metadata", json_type_object, &bad);

		if (bad)
			return fail(c->p, WH_BAD_SHAPE, "%s.value.metadata is not an object", where);
		if (metadata)
			ID_TEXT(metadata, "phone_number_id", &pnid, where);
		arr = get_member(value, "statuses", json_type_array, &bad);
		if (bad)
			return fail(c->p, WH_BAD_SHAPE, "%s.value.statuses is not an array", where);
		for (size_t i = 0; arr && i < json_object_array_length(arr); i++)
		{
			char		w[128];

			snprintf(w, sizeof(w), "%s.value.statuses[%zu]", where, i);
			if ((r = parse_status(c, json_object_array_get_idx(arr, i), w)) != WH_OK)
				return r;
		}
		arr = get_member(value, "messages", json_type_array, &bad);
		if (bad)
			return fail(c->p, WH_BAD_SHAPE, "%s.value.messages is not an array", where);
		{
			size_t		first = c->p->ninbound;

			for (size_t i = 0; arr && i < json_object_array_length(arr); i++)
			{
				char		w[128];

				snprintf(w, sizeof(w), "%s.value.messages[%zu]", where, i);
				if ((r = parse_inbound(c, json_object_array_get_idx(arr, i), w)) != WH_OK)
					return r;
			}
			if ((r = parse_contacts(c, value, first, where)) != WH_OK)
				return r;
			for (size_t i = first; i < c->p->ninbound; i++)
				c->p->inbound[i].phone_number_id = pnid;
		}
		for (size_t i = first_status; i < c->p->nstatuses; i++)
			c->p->statuses[i].phone_number_id = pnid;
	}
	else if (strcmp(field, "message_template_status_update") == 0)
	{
		WhTemplate *t = grow((void **) &c->p->templates, &c->p->ntemplates, &c->cap_tp,
							 sizeof(WhTemplate));

		if (t == NULL)
			return fail(c->p, WH_MALFORMED, "out of memory");
		STR(value, "event", &t->event, where);
		STR(value, "message_template_name", &t->name, where);
		STR(value, "message_template_language", &t->language, where);
		STR(value, "reason", &t->reason, where);
		if (t->event == NULL || t->name == NULL || t->language == NULL)
			return fail(c->p, WH_BAD_SHAPE,
						"%s.value needs event, message_template_name and message_template_language", where);
		if ((r = parse_template_status_cloud(c, value, t, where)) != WH_OK)
			return r;
	}
	else if (strcmp(field, "template_category_update") == 0)
	{
		if ((r = parse_template_category(c, value, where)) != WH_OK)
			return r;
	}
	else if (strcmp(field, "message_template_quality_update") == 0)
	{
		if ((r = parse_template_quality(c, value, where)) != WH_OK)
			return r;
	}
	else if (strcmp(field, "phone_number_quality_update") == 0)
	{
		WhQuality  *q = grow((void **) &c->p->quality, &c->p->nquality, &c->cap_q,
							 sizeof(WhQuality));

		if (q == NULL)
			return fail(c->p, WH_MALFORMED, "out of memory");
		STR(value, "event", &q->event, where);
		STR(value, "current_limit", &q->current_limit, where);
		if (q->current_limit == NULL)
			STR(value, "messaging_limit_tier", &q->current_limit, where);
		STR(value, "quality_rating", &q->quality_rating, where);
		if (q->event == NULL && q->current_limit == NULL && q->quality_rating == NULL)
			return fail(c->p, WH_BAD_SHAPE, "%s.value has neither event nor current_limit", where);
	}
	else
		c->p->nignored++;
	return WH_OK;
}

WhParseResult
wh_parse(const char *data, size_t len, WhPayload *out)
{
	json_tokener *tok;
	json_object *root;
	json_object *obj;
	json_object *entries;
	enum json_tokener_error jerr;
	WhParseResult r = WH_OK;
	Ctx			c;
	int			bad;
	size_t		off;

	memset(out, 0, sizeof(*out));
	memset(&c, 0, sizeof(c));
	c.p = out;

	if (len == 0)
		return fail(out, WH_MALFORMED, "the body is empty");
	if (memchr(data, '\0', len) != NULL)
		return fail(out, WH_MALFORMED, "the body contains a NUL byte");
	if (!wh_utf8_valid((const unsigned char *) data, len))
		return fail(out, WH_MALFORMED, "the body is not valid UTF-8");
	if (len > INT32_MAX)
		return fail(out, WH_MALFORMED, "the body is too large to parse");

	tok = json_tokener_new_ex(WH_MAX_DEPTH);
	if (tok == NULL)
		return fail(out, WH_MALFORMED, "out of memory");
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
	root = json_tokener_parse_ex(tok, data, (int) len);
	jerr = json_tokener_get_error(tok);
	off = json_tokener_get_parse_end(tok);
	if (jerr == json_tokener_continue)
	{
		/* end of input: a top-level literal or number completes here */
		root = json_tokener_parse_ex(tok, "", 1);
		jerr = json_tokener_get_error(tok);
		off = len;
	}
	json_tokener_free(tok);
	if (jerr != json_tokener_success || root == NULL)
	{
		if (root)
			json_object_put(root);
		if (jerr == json_tokener_success)
			return fail(out, WH_NOT_WABA, "the JSON value is null");
		if (jerr == json_tokener_continue || off >= len)
			return fail(out, WH_MALFORMED, "the JSON text ends early");
		return fail(out, WH_MALFORMED, "%s at byte %zu", json_tokener_error_desc(jerr), off);
	}
	/*
	 * A \u0000 escape in any string (member name or value) is a malformed
	 * payload: C strings would end there, silently truncating an id.  The
	 * text is valid JSON by now, so a backslash is always an escape inside a
	 * string, and the escape after it is skipped whole.
	 */
	for (size_t i = 0; i + 1 < off; i++)
		if (data[i] == '\\')
		{
			if (data[i + 1] == 'u' && i + 5 < off && memcmp(data + i + 2, "0000", 4) == 0)
			{
				json_object_put(root);
				return fail(out, WH_MALFORMED, "a string holds a NUL character (\\u0000) at byte %zu", i);
			}
			i++;
		}
	/* only white space may follow the value */
	for (; off < len; off++)
		if (!strchr(" \t\r\n", data[off]))
		{
			json_object_put(root);
			return fail(out, WH_MALFORMED, "unexpected data after the JSON value at byte %zu", off);
		}

	if (!json_object_is_type(root, json_type_object))
	{
		r = fail(out, WH_NOT_WABA, "the JSON value is not an object");
		goto done;
	}
	obj = get_member(root, "object", json_type_string, &bad);
	if (obj == NULL || strcmp(json_object_get_string(obj), "whatsapp_business_account") != 0)
	{
		r = fail(out, WH_NOT_WABA, "member \"object\" is not \"whatsapp_business_account\"");
		goto done;
	}
	entries = get_member(root, "entry", json_type_array, &bad);
	if (entries == NULL)
	{
		r = fail(out, WH_NOT_WABA, "member \"entry\" is not an array");
		goto done;
	}
	for (size_t i = 0; i < json_object_array_length(entries); i++)
	{
		json_object *e = json_object_array_get_idx(entries, i);
		json_object *changes;

		if (e == NULL || !json_object_is_type(e, json_type_object))
		{
			r = fail(out, WH_BAD_SHAPE, "entry[%zu] is not an object", i);
			goto done;
		}
		changes = get_member(e, "changes", json_type_array, &bad);
		if (bad)
		{
			r = fail(out, WH_BAD_SHAPE, "entry[%zu].changes is not an array", i);
			goto done;
		}
		for (size_t j = 0; changes && j < json_object_array_length(changes); j++)
		{
			json_object *ch = json_object_array_get_idx(changes, j);

			if (ch == NULL)
			{
				r = fail(out, WH_BAD_SHAPE, "entry[%zu].changes[%zu] is null", i, j);
				goto done;
			}
			if ((r = parse_change(&c, ch, i, j)) != WH_OK)
				goto done;
		}
	}
done:
	json_object_put(root);
	return r;
}

/* ------------------------------------------------------- opt-out words */

/* Base letter of a Latin-1 supplement letter (U+00C0..U+00FF), or 0. */
static char
latin1_base(unsigned int cp)
{
	static const char map[] =
	/* C0 */ "AAAAAAACEEEEIIII"
	/* D0 */ "DNOOOOO*OUUUUYTS"
	/* E0 */ "AAAAAAACEEEEIIII"
	/* F0 */ "DNOOOOO/OUUUUYTY";

	if (cp < 0xC0 || cp > 0xFF)
		return 0;
	return map[cp - 0xC0];
}

void
wh_keyword_normalize(const char *in, char *out, size_t outlen)
{
	size_t		o = 0;
	int			pending_space = 0;
	const unsigned char *s = (const unsigned char *) in;

	if (outlen == 0)
		return;
	for (; *s && o + 1 < outlen; s++)
	{
		unsigned char ch = *s;
		char		b = 0;

		if (ch < 0x80)
		{
			if (isspace(ch) || ispunct(ch))
			{
				/* punctuation and white space only separate words */
				pending_space = o > 0;
				continue;
			}
			b = (char) toupper(ch);
		}
		else if ((ch == 0xC2 || ch == 0xC3) && (s[1] & 0xC0) == 0x80)
		{
			unsigned int cp = ((ch & 0x1F) << 6) | (s[1] & 0x3F);

			s++;
			b = latin1_base(cp);
			if (b == 0 || b == '*' || b == '/')
			{
				/* NBSP, inverted marks and other symbols separate words */
				pending_space = o > 0;
				continue;
			}
		}
		else
		{
			/* any other character is kept as it is, whole */
			size_t		n = ch >= 0xF0 ? 4 : ch >= 0xE0 ? 3 : ch >= 0xC0 ? 2 : 1;

			if (pending_space && o + 1 < outlen - 1)
				out[o++] = ' ';
			pending_space = 0;
			for (size_t k = 0; k < n && s[0] && o + 1 < outlen; k++)
				out[o++] = (char) *s++;
			s--;
			continue;
		}
		if (pending_space && o + 2 < outlen)
			out[o++] = ' ';
		pending_space = 0;
		out[o++] = b;
	}
	out[o] = '\0';
}

/* ------------------------------------------------------------ signature */

static int
hexval(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int
wh_signature_decode(const char *sig, size_t len, unsigned char out[32])
{
	if (len != 7 + 64 || strncmp(sig, "sha256=", 7) != 0)
		return 0;
	for (int i = 0; i < 32; i++)
	{
		int			hi = hexval((unsigned char) sig[7 + 2 * i]);
		int			lo = hexval((unsigned char) sig[8 + 2 * i]);

		if (hi < 0 || lo < 0)
			return 0;
		out[i] = (unsigned char) (hi << 4 | lo);
	}
	return 1;
}
