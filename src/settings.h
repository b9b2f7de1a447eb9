/*-------------------------------------------------------------------------
 * settings.h
 *	  The typed settings snapshot (settings.c): every row of
 *	  wa_notify.setting, read by name in one query, parsed once.
 *-------------------------------------------------------------------------
 */
#ifndef WA_SETTINGS_H
#define WA_SETTINGS_H

#include "postgres.h"

/*
 * One field per setting, named as the setting.  Text fields are NULL when
 * the setting is unset and has no default; every other field holds the
 * value, else the row's default (src/sql/1.1/10_config.sql declares both).
 */
typedef struct WaSettings
{
	/* credentials (the secrets are not here: secrets.c, wa_secret_get) */
	char	   *phone_number_id;
	char	   *app_id;
	char	   *business_account_id;
	/* Graph API */
	char	   *api_version;
	char	   *api_base_url;	/* no trailing '/' */
	/* switches and templates */
	bool		enabled;
	bool		use_templates;
	bool		allow_marketing_category;
	char	   *default_language;
	/* dispatch and anti-ban */
	int			polling_interval;	/* s */
	double		min_delay;		/* s */
	double		max_delay;		/* s */
	int			max_per_batch;
	int			lookback_days;
	double		max_rate;		/* msg/s, 0: no cap */
	int			max_in_flight;
	double		recipient_gap;	/* s */
	int			daily_recipient_limit;	/* 0: none */
	char	   *quiet_hours_start;	/* "HH:MM" or NULL */
	char	   *quiet_hours_end;
	char	   *timezone;
	char	   *delivery_semantics;
	/* capture */
	char	   *default_country_code;
	int			context_timeout;	/* s */
	/* webhook */
	char	   *webhook_public_url;
	int64		webhook_max_body;	/* bytes */
	char	   *opt_out_keywords;	/* a text[] literal */
	/* tracking */
	char	   *default_tracking_url;
	/* retention and review */
	int			log_retention_days; /* 0: keep for ever */
	int			anonymize_after_days;	/* 0: never */
	int			review_window;	/* s */
	char	   *review_resend;
} WaSettings;

/*
 * The snapshot for the current transaction: loaded by the first call in a
 * transaction (one query) unless the one an earlier transaction loaded is
 * still current (no configuration change committed since: settings.c),
 * then shared by every later call in it (the worker's cycle, each render
 * of a batch).  It is dropped when a subtransaction aborts and when this
 * backend writes wa_notify.setting, wa_notify.event or wa_notify.carrier.
 * The struct and its strings belong to settings.c: read them in the
 * transaction, copy what must outlive it.
 */
extern const WaSettings *wa_settings(void);

/* The setting is unset or holds its default (the current snapshot). */
extern bool wa_setting_is_default(const char *name);

/*
 * A number that changes whenever the snapshot is dropped and at the end of
 * every transaction: render.c keys its own per-transaction cache (events,
 * carriers) on it.
 */
extern uint64 wa_settings_generation(void);

/*
 * A number that changes whenever the snapshot is loaded again, or 0 when
 * this transaction has no current snapshot (none loaded yet, or a
 * configuration change committed since): secrets.c keys its cache of the
 * secret rows of wa_notify.setting on it, across transactions.
 */
extern uint64 wa_settings_version(void);

#endif							/* WA_SETTINGS_H */
