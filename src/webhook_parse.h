/*-------------------------------------------------------------------------
 * webhook_parse.h
 *	  The pure parse step of Meta's WhatsApp Business webhook payloads:
 *	  raw bytes in, a flat list of changes out.  No PostgreSQL headers, no
 *	  database: the same code runs in the backend (src/webhook.c applies the
 *	  list with SPI) and in the libFuzzer target (test/fuzz/).
 *-------------------------------------------------------------------------
 */
#ifndef WA_WEBHOOK_PARSE_H
#define WA_WEBHOOK_PARSE_H

#include <stddef.h>
#include <stdint.h>

/* Outcome of wh_parse(). */
typedef enum WhParseResult
{
	WH_OK = 0,
	WH_MALFORMED,				/* not valid UTF-8 JSON (or nested too deep) */
	WH_NOT_WABA,				/* JSON, but not a WhatsApp Business webhook */
	WH_BAD_SHAPE				/* a WABA webhook with a known field of the wrong shape */
} WhParseResult;

typedef enum WhStatusKind
{
	WH_ST_OTHER = 0,			/* a status value we do not act on */
	WH_ST_SENT,
	WH_ST_DELIVERED,
	WH_ST_READ,
	WH_ST_FAILED
} WhStatusKind;

/* One entry of value.statuses[]. */
typedef struct WhStatus
{
	WhStatusKind kind;
	const char *status;			/* as received */
	const char *wamid;			/* id */
	const char *recipient_id;	/* WhatsApp id, may be NULL */
	const char *biz_opaque;		/* biz_opaque_callback_data, may be NULL */
	int64_t		timestamp;		/* unix seconds; 0 when absent */
	/* errors[0] of a failed status; error_code -1 when absent */
	int			error_code;
	const char *error_title;
	const char *error_message;
	const char *error_details;	/* error_data.details */
	/* 2026 Cloud API: the recipient's BSUID and the pricing object */
	const char *recipient_user_id;	/* may be NULL */
	int			billable;		/* pricing.billable: 1, 0, or -1 when absent */
	const char *pricing_type;	/* regular, free_customer_service, free_entry_point */
	const char *pricing_category;	/* utility, marketing, authentication, ... */
	/* the change's value.metadata.phone_number_id: the number it is for */
	const char *phone_number_id;	/* may be NULL */
} WhStatus;

/* One entry of value.messages[] (inbound). */
typedef struct WhInbound
{
	const char *from;			/* WhatsApp id of the sender; NULL for a user
								 * known only by BSUID (username adopted) */
	const char *from_user_id;	/* the sender's BSUID: from_user_id, else
								 * contacts[].user_id; may be NULL */
	const char *system_type;	/* type "system": system.type */
	const char *system_user_id; /* system.user_id (the new BSUID) */
	const char *system_previous_user_id;	/* system.previous_user_id */
	const char *id;
	const char *type;
	const char *text;			/* text.body, button.text or interactive title; may be NULL */
	int64_t		timestamp;
	const char *phone_number_id;	/* value.metadata.phone_number_id: the
									 * number it came to; may be NULL */
} WhInbound;

/* field message_template_status_update */
typedef struct WhTemplate
{
	const char *event;			/* APPROVED, REJECTED, PAUSED, ... */
	const char *name;			/* message_template_name */
	const char *language;		/* message_template_language */
	const char *reason;			/* may be NULL */
	const char *template_id;	/* message_template_id as text; may be NULL */
	const char *category;		/* message_template_category; may be NULL */
	const char *disable_date;	/* disable_info.disable_date; may be NULL */
	const char *other_title;	/* other_info.title (locked / unlocked) */
	const char *other_description;	/* other_info.description */
} WhTemplate;

/* field template_category_update: the warning form (correct_category,
 * category_update_timestamp) or the change (previous_category) */
typedef struct WhTemplateCategory
{
	const char *name;
	const char *language;
	const char *template_id;
	const char *previous_category;	/* the change */
	const char *new_category;
	const char *correct_category;	/* the warning */
	int64_t		update_timestamp;	/* 0 when absent */
} WhTemplateCategory;

/* field message_template_quality_update */
typedef struct WhTemplateQuality
{
	const char *name;
	const char *language;
	const char *template_id;
	const char *new_quality;	/* new_quality_score: GREEN, YELLOW, RED, UNKNOWN */
} WhTemplateQuality;

/* field phone_number_quality_update */
typedef struct WhQuality
{
	const char *event;			/* FLAGGED, UNFLAGGED, UPGRADE, DOWNGRADE, ... */
	const char *current_limit;	/* TIER_2K ...; may be NULL */
	const char *quality_rating; /* explicit rating when present; may be NULL */
} WhQuality;

typedef struct WhPayload
{
	WhStatus   *statuses;
	size_t		nstatuses;
	WhInbound  *inbound;
	size_t		ninbound;
	WhTemplate *templates;
	size_t		ntemplates;
	WhQuality  *quality;
	size_t		nquality;
	WhTemplateCategory *categories;
	size_t		ncategories;
	WhTemplateQuality *template_quality;
	size_t		ntemplate_quality;
	size_t		nignored;		/* changes with a field we do not act on */
	char		error[256];		/* what was wrong, when not WH_OK */
	void	   *arena;			/* private: every string and array above */
} WhPayload;

/* Deepest JSON nesting accepted (Meta's payloads are about 8 deep). */
#define WH_MAX_DEPTH 64

/*
 * Parse len raw bytes.  Always initialises *out; call wh_payload_free()
 * afterwards whatever the result.  Strings in *out are NUL-terminated valid
 * UTF-8 (a JSON \u0000 cuts a string short).
 */
extern WhParseResult wh_parse(const char *data, size_t len, WhPayload *out);
extern void wh_payload_free(WhPayload *p);

/* true when len bytes are valid UTF-8 (no overlongs, no surrogates). */
extern int	wh_utf8_valid(const unsigned char *s, size_t len);

/*
 * Normalise a keyword for the opt-out comparison: trim white space and
 * surrounding punctuation, fold Latin accents (á -> A, ç -> C ...), ASCII
 * upper case, collapse inner white space.  Writes at most outlen-1 bytes.
 */
extern void wh_keyword_normalize(const char *in, char *out, size_t outlen);

/* "sha256=<64 hex>" -> 32 bytes; 0 when not that shape. */
extern int	wh_signature_decode(const char *sig, size_t len, unsigned char out[32]);

#endif							/* WA_WEBHOOK_PARSE_H */
