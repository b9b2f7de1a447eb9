-- wa_notify install script, assembled by the Makefile from src/sql/*.sql.
-- 00_schema.sql: tables (the data model of SPEC section 6) and C helpers.

\echo Use "CREATE EXTENSION wa_notify" to load this file. \quit

-------------------------------------------------------------------------------
-- C utilities
-------------------------------------------------------------------------------
CREATE FUNCTION wa_notify._random_token(nbytes integer DEFAULT 32) RETURNS text
    AS 'MODULE_PATHNAME', 'wa_notify_random_token' LANGUAGE C VOLATILE STRICT;

CREATE FUNCTION wa_notify.normalize_phone(phone text, default_country_code text DEFAULT NULL)
    RETURNS text AS 'MODULE_PATHNAME', 'wa_notify_normalize_phone' LANGUAGE C IMMUTABLE;
COMMENT ON FUNCTION wa_notify.normalize_phone(text, text) IS
    'E.164 digits (no plus) of a phone number; national numbers get the default country code (default 55)';

CREATE FUNCTION wa_notify.phone_key(e164 text) RETURNS text
    AS 'MODULE_PATHNAME', 'wa_notify_phone_key' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION wa_notify.phone_key(text) IS
    'blacklist key: a Brazilian mobile with and without its ninth digit gives the same key';

CREATE FUNCTION wa_notify.graph_error_class(code integer, http_status integer DEFAULT 400) RETURNS text
    AS 'MODULE_PATHNAME', 'wa_notify_graph_error_class' LANGUAGE C IMMUTABLE;

CREATE FUNCTION wa_notify._graph_errors(OUT code integer, OUT class text, OUT blacklist_source text,
                                        OUT title text, OUT hint text)
    RETURNS SETOF record AS 'MODULE_PATHNAME', 'wa_notify_graph_errors' LANGUAGE C IMMUTABLE;

CREATE VIEW wa_notify.graph_errors AS SELECT * FROM wa_notify._graph_errors();
COMMENT ON VIEW wa_notify.graph_errors IS 'Graph API error codes and what wa_notify does about each';

CREATE FUNCTION wa_notify.wake() RETURNS boolean
    AS 'MODULE_PATHNAME', 'wa_notify_wake' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION wa_notify.wake() IS 'nudge the worker now; false when no worker runs';

-------------------------------------------------------------------------------
-- settings: one row per setting; values as text, validated by configure()
-------------------------------------------------------------------------------
CREATE TABLE wa_notify.setting (
    name          text PRIMARY KEY,
    value         text,                 -- NULL: unset
    default_value text,
    description   text NOT NULL,
    unit          text,
    is_secret     boolean NOT NULL DEFAULT false,
    updated_at    timestamptz
);

INSERT INTO wa_notify.setting (name, default_value, unit, is_secret, description) VALUES
 ('access_token',        NULL, NULL, true,  'Permanent System User access token (Graph API bearer token)'),
 ('phone_number_id',     NULL, NULL, false, 'WhatsApp Business phone number ID (digits)'),
 ('app_id',              NULL, NULL, false, 'Meta app ID (digits)'),
 ('app_secret',          NULL, NULL, true,  'Meta app secret, used to check webhook signatures'),
 ('business_account_id', NULL, NULL, false, 'WhatsApp Business Account ID, WABA (digits)'),
 ('api_version',         'v23.0', NULL, false, 'Graph API version'),
 ('api_base_url',        'https://graph.facebook.com', NULL, false, 'Graph API base URL'),
 ('enabled',             'true', NULL, false, 'Master switch: when off, nothing is sent'),
 ('use_templates',       'true', NULL, false, 'Send approved template messages (off: plain text bodies)'),
 ('default_language',    'pt_BR', NULL, false, 'Default template language code'),
 ('polling_interval',    '300', 's', false, 'Polling interval: the batch period (60-3600)'),
 ('min_delay',           '3', 's', false, 'Minimum random delay between two sends'),
 ('max_delay',           '10', 's', false, 'Maximum random delay between two sends'),
 ('max_per_batch',       '50', NULL, false, 'Maximum messages sent per polling interval'),
 ('lookback_days',       '3', 'd', false, 'Messages older than this expire unsent'),
 ('max_rate',            '20', 'msg/s', false, 'Maximum send rate (0: no cap)'),
 ('max_in_flight',       '32', NULL, false, 'Maximum concurrent requests to the Graph API'),
 ('recipient_gap',       '6', 's', false, 'Minimum time between two messages to one recipient'),
 ('daily_recipient_limit','0', NULL, false, 'Maximum unique recipients per rolling 24 h (0: none)'),
 ('quiet_hours_start',   NULL, NULL, false, 'Start of quiet hours, local time (unset: no quiet hours)'),
 ('quiet_hours_end',     NULL, NULL, false, 'End of quiet hours, local time'),
 ('timezone',            'America/Sao_Paulo', NULL, false, 'Time zone of quiet hours and of "today"'),
 ('default_country_code','55', NULL, false, 'Country code applied to national phone numbers'),
 ('webhook_public_url',  NULL, NULL, false, 'Public https URL of the webhook relay'),
 ('webhook_verify_token',NULL, NULL, true,  'Verify token of the webhook handshake (generated at install)'),
 ('webhook_max_body',    '3145728', 'bytes', false, 'Largest webhook body webhook_receive() accepts (Meta sends up to 3 MB)'),
 ('default_tracking_url',NULL, NULL, false, 'Tracking URL with {tracking}, for carriers without a pattern'),
 ('opt_out_keywords',    '{PARAR,SAIR,STOP,CANCELAR}', NULL, false, 'Inbound texts that blacklist the sender'),
 ('delivery_semantics',  'at_most_once', NULL, false, 'After a crash: at_most_once (review) or at_least_once (resend)');

UPDATE wa_notify.setting SET value = default_value;
UPDATE wa_notify.setting SET value = wa_notify._random_token(32), updated_at = now()
 WHERE name = 'webhook_verify_token';

-------------------------------------------------------------------------------
-- events: the six notification events and their messages
-------------------------------------------------------------------------------
CREATE TABLE wa_notify.event (
    event             text PRIMARY KEY
                      CHECK (event IN ('order_placed', 'order_processing', 'shipment_created',
                                       'shipment_delivered', 'order_cancelled', 'refund_issued')),
    enabled           boolean NOT NULL DEFAULT true,
    template_name     text,
    template_language text,                       -- NULL: default_language
    params            text[] NOT NULL DEFAULT '{}',
    button_param      text,
    text_body         text,
    template_status   text NOT NULL DEFAULT 'unknown'
                      CHECK (template_status IN ('APPROVED', 'PENDING', 'REJECTED', 'PAUSED',
                                                 'DISABLED', 'unknown')),
    template_status_at     timestamptz,
    template_status_reason text,
    -- set by the dispatcher or the webhook when a send proved the template broken
    held_reason       text,
    held_code         integer,
    held_at           timestamptz,
    description       text NOT NULL
);

INSERT INTO wa_notify.event (event, description, template_name, params, button_param, text_body) VALUES
 ('order_placed', 'Order confirmation', 'order_confirmation',
  '{customer_name,order_number,total}', NULL,
  'Olá {customer_name}! Recebemos seu pedido #{order_number} no valor de R$ {total}. Obrigado pela compra!'),
 ('order_processing', 'Order being prepared', 'order_processing',
  '{customer_name,order_number}', NULL,
  'Olá {customer_name}! Seu pedido #{order_number} está sendo preparado.'),
 ('shipment_created', 'Shipment tracking', 'shipment_tracking',
  '{customer_name,order_number,carrier,tracking_number}', 'tracking_number',
  'Olá {customer_name}! Seu pedido #{order_number} foi enviado pela {carrier}. Código de rastreio: {tracking_number}. Acompanhe: {tracking_url}'),
 ('shipment_delivered', 'Delivery confirmation', 'delivery_confirmation',
  '{customer_name,order_number}', NULL,
  'Olá {customer_name}! Seu pedido #{order_number} foi entregue. Esperamos que goste!'),
 ('order_cancelled', 'Order cancelled', 'order_cancelled',
  '{customer_name,order_number}', NULL,
  'Olá {customer_name}. Seu pedido #{order_number} foi cancelado.'),
 ('refund_issued', 'Refund issued', 'refund_issued',
  '{customer_name,order_number,total}', NULL,
  'Olá {customer_name}. O reembolso de R$ {total} do pedido #{order_number} foi emitido.');

-------------------------------------------------------------------------------
-- carriers: tracking URL pattern per carrier (name stored lower-case)
-------------------------------------------------------------------------------
CREATE TABLE wa_notify.carrier (
    carrier     text PRIMARY KEY CHECK (carrier = lower(carrier) AND carrier <> ''),
    url_pattern text NOT NULL CHECK (strpos(url_pattern, '{tracking}') > 0),
    created_at  timestamptz NOT NULL DEFAULT now()
);

-------------------------------------------------------------------------------
-- blacklist: keyed by phone_key (ninth-digit aware)
-------------------------------------------------------------------------------
CREATE TABLE wa_notify.blocked (
    phone_key  text PRIMARY KEY,
    phone      text NOT NULL,                  -- E.164 digits as given / received
    reason     text,
    source     text NOT NULL CHECK (source IN ('auto', 'manual', 'opt_out')),
    error_code integer,
    created_at timestamptz NOT NULL DEFAULT now()
);

-------------------------------------------------------------------------------
-- message: queue and log
-------------------------------------------------------------------------------
CREATE TABLE wa_notify.message (
    id              bigserial PRIMARY KEY,
    event           text NOT NULL REFERENCES wa_notify.event (event),
    order_key       text,
    phone           text,                      -- E.164 digits
    params          jsonb,                     -- order context captured at enqueue
    status          text NOT NULL DEFAULT 'queued'
                    CHECK (status IN ('queued', 'sending', 'sent', 'delivered', 'read',
                                      'failed', 'skipped', 'expired', 'review')),
    wamid           text,
    wa_id           text,
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    sent_at         timestamptz,
    delivered_at    timestamptz,
    read_at         timestamptz,
    failed_at       timestamptz,
    http_status     integer,
    error_code      integer,
    error_message   text,
    tracking        text,
    -- beyond the contract
    error_class     text,                      -- graph_errors class of the last error
    held_reason     text,                      -- why a queued message waits (template, pair limit)
    claimed_at      timestamptz,               -- when the worker marked it sending
    resend_of       bigint REFERENCES wa_notify.message (id),
    watch_id        bigint,                    -- capture: which watch enqueued it
    source_row      jsonb,                     -- capture: the row as the event fired
    resolved_at     timestamptz,               -- capture: context resolved (NULL: pending)
    updated_at      timestamptz NOT NULL DEFAULT now(),
    -- derived, for the queue's partial indexes: they name this column rather
    -- than status, so that a webhook moving a message sent -> delivered ->
    -- read changes no indexed column and stays a HOT update
    queued          boolean GENERATED ALWAYS AS (status = 'queued') STORED
) WITH (fillfactor = 75);   -- every message is updated 3-5 times: room for HOT updates

-- one message per (event, order) unless resent explicitly
CREATE UNIQUE INDEX message_event_order_key ON wa_notify.message (event, order_key)
    WHERE resend_of IS NULL AND order_key IS NOT NULL;
CREATE INDEX message_due ON wa_notify.message (next_attempt_at NULLS FIRST, id)
    WHERE queued;
CREATE INDEX message_created ON wa_notify.message (created_at DESC);
CREATE INDEX message_wamid ON wa_notify.message (wamid) WHERE wamid IS NOT NULL;
CREATE INDEX message_unresolved ON wa_notify.message (id)
    WHERE resolved_at IS NULL AND watch_id IS NOT NULL;

-------------------------------------------------------------------------------
-- state: one row the worker and the webhook write, the status card reads
-------------------------------------------------------------------------------
CREATE TABLE wa_notify.state (
    id                     boolean PRIMARY KEY DEFAULT true CHECK (id),
    api_status             text NOT NULL DEFAULT 'unknown'
                           CHECK (api_status IN ('unknown', 'connected', 'disconnected')),
    last_check_at          timestamptz,
    last_check_error       text,
    display_phone_number   text,
    verified_name          text,
    quality_rating         text,
    messaging_limit        text,
    throughput_level       text,
    paused_reason          text,               -- NULL: not paused
    paused_code            integer,
    paused_at              timestamptz,
    pause_until            timestamptz,        -- a cool-down that lifts by itself
    rate_factor            double precision NOT NULL DEFAULT 1.0,  -- throttling back-off
    next_dispatch_at       timestamptz,
    worker_pid             integer,
    worker_started_at      timestamptz,
    worker_activity        text,
    webhook_last_verified  timestamptz,
    webhook_last_callback  timestamptz,
    webhook_unknown_statuses bigint NOT NULL DEFAULT 0,
    quality_updated_at     timestamptz,
    settings_changed_at    timestamptz
);
INSERT INTO wa_notify.state DEFAULT VALUES;

-- configuration survives pg_dump / restore; runtime state and messages do too
-- where they are the shop's record (messages, blacklist)
SELECT pg_catalog.pg_extension_config_dump('wa_notify.setting', '');
SELECT pg_catalog.pg_extension_config_dump('wa_notify.event', '');
SELECT pg_catalog.pg_extension_config_dump('wa_notify.carrier', '');
SELECT pg_catalog.pg_extension_config_dump('wa_notify.blocked', '');
SELECT pg_catalog.pg_extension_config_dump('wa_notify.message', '');
SELECT pg_catalog.pg_extension_config_dump('wa_notify.message_id_seq', '');

-- Restoring a dump: CREATE EXTENSION seeds every setting and event row, then
-- the dump's rows arrive; they update the seeded rows instead of clashing.
CREATE FUNCTION wa_notify._restore_upsert() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, wa_notify AS $$
BEGIN
    IF TG_TABLE_NAME = 'setting' THEN
        UPDATE wa_notify.setting SET value = NEW.value, updated_at = NEW.updated_at
         WHERE name = NEW.name;
    ELSE
        UPDATE wa_notify.event
           SET enabled = NEW.enabled, template_name = NEW.template_name,
               template_language = NEW.template_language, params = NEW.params,
               button_param = NEW.button_param, text_body = NEW.text_body,
               template_status = NEW.template_status, template_status_at = NEW.template_status_at,
               template_status_reason = NEW.template_status_reason,
               held_reason = NEW.held_reason, held_code = NEW.held_code, held_at = NEW.held_at
         WHERE event = NEW.event;
    END IF;
    IF FOUND THEN
        RETURN NULL;
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER restore_upsert BEFORE INSERT ON wa_notify.setting
    FOR EACH ROW EXECUTE FUNCTION wa_notify._restore_upsert();
CREATE TRIGGER restore_upsert BEFORE INSERT ON wa_notify.event
    FOR EACH ROW EXECUTE FUNCTION wa_notify._restore_upsert();
-- 10_config.sql: configuration functions, blacklist, carriers, reporting views.

-------------------------------------------------------------------------------
-- blacklist (internal upsert shared by block(), the dispatcher and webhooks)
-------------------------------------------------------------------------------
CREATE FUNCTION wa_notify._blacklist(phone text, reason text, source text, error_code integer DEFAULT NULL)
RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog, wa_notify AS $$
DECLARE
    e164 text := wa_notify.normalize_phone(phone,
                    (SELECT value FROM wa_notify.setting WHERE name = 'default_country_code'));
BEGIN
    INSERT INTO wa_notify.blocked AS b (phone_key, phone, reason, source, error_code)
    VALUES (wa_notify.phone_key(e164), e164, reason, source, error_code)
    ON CONFLICT (phone_key) DO UPDATE
       SET reason = EXCLUDED.reason, source = EXCLUDED.source,
           error_code = EXCLUDED.error_code, created_at = now();
END $$;

CREATE FUNCTION wa_notify.is_blocked(phone text) RETURNS boolean
LANGUAGE sql STABLE SET search_path = pg_catalog, wa_notify AS $$
    SELECT EXISTS (SELECT 1 FROM wa_notify.blocked b WHERE b.phone_key = wa_notify.phone_key(regexp_replace(is_blocked.phone, '[^0-9]', '', 'g')))
$$;

-------------------------------------------------------------------------------
-- small pure helpers
-------------------------------------------------------------------------------
CREATE FUNCTION wa_notify._setting_value(name text) RETURNS text
LANGUAGE sql STABLE SET search_path = pg_catalog, wa_notify AS $$
    SELECT s.value FROM wa_notify.setting s WHERE s.name = _setting_value.name
$$;

-- "+55 11 9••••-••42": enough to recognise one's own number, not to dial it
CREATE FUNCTION wa_notify.mask_phone(phone text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN d IS NULL OR d = '' THEN NULL
        WHEN d ~ '^55[1-9]{2}9[0-9]{8}$' THEN
            '+55 ' || substr(d, 3, 2) || ' ' || substr(d, 5, 1) || '••••-••' || right(d, 2)
        WHEN d ~ '^55[1-9]{2}[0-9]{8}$' THEN
            '+55 ' || substr(d, 3, 2) || ' ' || substr(d, 5, 1) || '•••-••' || right(d, 2)
        WHEN length(d) <= 4 THEN '+' || repeat('•', length(d))
        ELSE '+' || left(d, 2) || repeat('•', length(d) - 4) || right(d, 2)
    END
    FROM (SELECT regexp_replace(phone, '[^0-9]', '', 'g') AS d) AS x
$$;

CREATE FUNCTION wa_notify._invalid(setting text, hint text, detail text DEFAULT NULL) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF detail IS NULL THEN
        RAISE EXCEPTION 'invalid value for setting "%"', setting
            USING ERRCODE = 'invalid_parameter_value', HINT = hint;
    END IF;
    RAISE EXCEPTION 'invalid value for setting "%"', setting
        USING ERRCODE = 'invalid_parameter_value', HINT = hint, DETAIL = detail;
END $$;

CREATE FUNCTION wa_notify._check_range(setting text, v numeric, lo numeric, hi numeric, unit text)
RETURNS text LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF v IS NULL THEN
        RETURN NULL;
    END IF;
    IF v < lo OR v > hi THEN
        PERFORM wa_notify._invalid(setting,
            format('%s must be between %s and %s%s.', setting, lo, hi,
                   CASE WHEN unit IS NULL THEN '' ELSE ' ' || unit END),
            format('The value given was %s.', v));
    END IF;
    RETURN v::text;
END $$;

CREATE FUNCTION wa_notify._check_pattern(setting text, v text, pattern text, hint text,
                                          secret boolean DEFAULT false)
RETURNS text LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF v IS NULL OR v = '' THEN
        RETURN v;
    END IF;
    IF v !~ pattern THEN
        PERFORM wa_notify._invalid(setting, hint,
            CASE WHEN secret THEN 'The value is not shown because it is secret.'
                 ELSE format('The value given was "%s".', v) END);
    END IF;
    RETURN v;
END $$;

CREATE FUNCTION wa_notify._language_ok(setting text, v text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT wa_notify._check_pattern(setting, v, '^[a-z]{2,3}(_[A-Z]{2})?$',
        'A language code is two or three lower-case letters, optionally followed by "_" and a two-letter region, such as "pt_BR", "en" or "es_AR".')
$$;

CREATE FUNCTION wa_notify._check_tracking_pattern(setting text, pattern text) RETURNS void
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF pattern IS NULL OR strpos(pattern, '{tracking}') = 0 THEN
        RAISE EXCEPTION 'tracking URL pattern for % has no {tracking} placeholder', setting
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('The pattern given was "%s".', pattern),
                  HINT = 'Put {tracking} where the tracking number goes, such as "https://rastreamento.correios.com.br/app/index.php?objeto={tracking}".';
    END IF;
    IF pattern !~ '^https?://[^[:space:]]+$' THEN
        RAISE EXCEPTION 'tracking URL pattern for % is not an http(s) URL', setting
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('The pattern given was "%s".', pattern),
                  HINT = 'Give a URL starting with "https://" and without spaces.';
    END IF;
END $$;

-------------------------------------------------------------------------------
-- configure(name => value, ...): NULL leaves a setting unchanged, '' unsets a
-- text setting that may be unset.  Everything is validated before anything
-- changes; a rejected call changes nothing.
-------------------------------------------------------------------------------
CREATE FUNCTION wa_notify.configure(
    access_token          text    DEFAULT NULL,
    phone_number_id       text    DEFAULT NULL,
    app_id                text    DEFAULT NULL,
    app_secret            text    DEFAULT NULL,
    business_account_id   text    DEFAULT NULL,
    api_version           text    DEFAULT NULL,
    api_base_url          text    DEFAULT NULL,
    enabled               boolean DEFAULT NULL,
    use_templates         boolean DEFAULT NULL,
    default_language      text    DEFAULT NULL,
    polling_interval      integer DEFAULT NULL,
    min_delay             numeric DEFAULT NULL,
    max_delay             numeric DEFAULT NULL,
    max_per_batch         integer DEFAULT NULL,
    lookback_days         integer DEFAULT NULL,
    max_rate              numeric DEFAULT NULL,
    max_in_flight         integer DEFAULT NULL,
    recipient_gap         numeric DEFAULT NULL,
    daily_recipient_limit integer DEFAULT NULL,
    quiet_hours_start     text    DEFAULT NULL,
    quiet_hours_end       text    DEFAULT NULL,
    timezone              text    DEFAULT NULL,
    default_country_code  text    DEFAULT NULL,
    webhook_public_url    text    DEFAULT NULL,
    webhook_verify_token  text    DEFAULT NULL,
    default_tracking_url  text    DEFAULT NULL,
    opt_out_keywords      text[]  DEFAULT NULL,
    delivery_semantics    text    DEFAULT NULL,
    webhook_max_body      integer DEFAULT NULL)
RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, wa_notify AS $$
DECLARE
    new_values jsonb := '{}';
    nums jsonb;
    k text;
    lo numeric;
    hi numeric;
    unit text;
    v text;
    cur_min numeric;
    cur_max numeric;
    qs text;
    qe text;
    changed integer := 0;
    n integer;
BEGIN
    -- credentials
    IF access_token IS NOT NULL THEN
        PERFORM wa_notify._check_pattern('access_token', access_token, '^[A-Za-z0-9._~+/=|-]{16,}$',
            'The access token is a permanent System User token from Meta Business Settings: 16 or more characters, no spaces.', true);
        new_values := new_values || jsonb_build_object('access_token', access_token);
    END IF;
    IF app_secret IS NOT NULL THEN
        PERFORM wa_notify._check_pattern('app_secret', app_secret, '^[A-Za-z0-9]{16,128}$',
            'The app secret is shown in the Meta app dashboard (Settings, Basic): letters and digits, no spaces.', true);
        new_values := new_values || jsonb_build_object('app_secret', app_secret);
    END IF;
    IF phone_number_id IS NOT NULL THEN
        new_values := new_values || jsonb_build_object('phone_number_id',
            wa_notify._check_pattern('phone_number_id', phone_number_id, '^[0-9]{1,32}$',
                'The phone number ID is digits only, as shown in WhatsApp Manager (API Setup).'));
    END IF;
    IF app_id IS NOT NULL THEN
        new_values := new_values || jsonb_build_object('app_id',
            wa_notify._check_pattern('app_id', app_id, '^[0-9]{1,32}$', 'The app ID is digits only.'));
    END IF;
    IF business_account_id IS NOT NULL THEN
        new_values := new_values || jsonb_build_object('business_account_id',
            wa_notify._check_pattern('business_account_id', business_account_id, '^[0-9]{1,32}$',
                'The WhatsApp Business Account ID (WABA ID) is digits only.'));
    END IF;
    IF api_version IS NOT NULL THEN
        IF api_version = '' THEN
            PERFORM wa_notify._invalid('api_version', 'The Graph API version looks like "v23.0".');
        END IF;
        new_values := new_values || jsonb_build_object('api_version',
            wa_notify._check_pattern('api_version', api_version, '^v[0-9]{1,3}\.[0-9]{1,2}$',
                'The Graph API version looks like "v23.0".'));
    END IF;
    IF api_base_url IS NOT NULL THEN
        IF api_base_url = '' THEN
            PERFORM wa_notify._invalid('api_base_url', 'Give an http(s) URL such as "https://graph.facebook.com".');
        END IF;
        PERFORM wa_notify._check_pattern('api_base_url', api_base_url,
            '^https?://[A-Za-z0-9.\[\]:-]+(/[A-Za-z0-9._~/-]*)?$',
            'Give an http(s) URL without query or fragment, such as "https://graph.facebook.com".');
        new_values := new_values || jsonb_build_object('api_base_url', rtrim(api_base_url, '/'));
    END IF;

    -- switches and templates
    IF enabled IS NOT NULL THEN
        new_values := new_values || jsonb_build_object('enabled', enabled::text);
    END IF;
    IF use_templates IS NOT NULL THEN
        new_values := new_values || jsonb_build_object('use_templates', use_templates::text);
    END IF;
    IF default_language IS NOT NULL THEN
        IF default_language = '' THEN
            PERFORM wa_notify._invalid('default_language',
                'default_language cannot be unset: give a language code such as "pt_BR".');
        END IF;
        new_values := new_values || jsonb_build_object('default_language',
            wa_notify._language_ok('default_language', default_language));
    END IF;

    -- dispatch and anti-ban: numeric ranges, one table
    nums := jsonb_strip_nulls(jsonb_build_object(
        'polling_interval', polling_interval, 'min_delay', min_delay, 'max_delay', max_delay,
        'max_per_batch', max_per_batch, 'lookback_days', lookback_days, 'max_rate', max_rate,
        'max_in_flight', max_in_flight, 'recipient_gap', recipient_gap,
        'daily_recipient_limit', daily_recipient_limit, 'webhook_max_body', webhook_max_body));
    FOR k, lo, hi, unit IN
        SELECT * FROM (VALUES ('polling_interval', 60, 3600, 'seconds'),
                              ('min_delay', 0, 3600, 'seconds'),
                              ('max_delay', 0, 3600, 'seconds'),
                              ('max_per_batch', 1, 100000, 'messages'),
                              ('lookback_days', 1, 365, 'days'),
                              ('max_rate', 0, 1000, 'messages per second (0: no cap)'),
                              ('max_in_flight', 1, 1000, 'requests'),
                              ('recipient_gap', 0, 86400, 'seconds'),
                              ('daily_recipient_limit', 0, 10000000, 'recipients (0: no limit)'),
                              ('webhook_max_body', 65536, 67108864, 'bytes')) AS r(k, lo, hi, unit)
         WHERE nums ? r.k
    LOOP
        new_values := new_values || jsonb_build_object(k,
            wa_notify._check_range(k, (nums ->> k)::numeric, lo, hi, unit));
    END LOOP;
    cur_min := coalesce(min_delay, wa_notify._setting_value('min_delay')::numeric);
    cur_max := coalesce(max_delay, wa_notify._setting_value('max_delay')::numeric);
    IF cur_min > cur_max THEN
        RAISE EXCEPTION 'min_delay (%) is greater than max_delay (%)', cur_min, cur_max
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'The random delay between sends is drawn from [min_delay, max_delay]: min_delay must not exceed max_delay; set both in one call if needed.';
    END IF;
    qs := coalesce(quiet_hours_start, wa_notify._setting_value('quiet_hours_start'), '');
    qe := coalesce(quiet_hours_end, wa_notify._setting_value('quiet_hours_end'), '');
    IF quiet_hours_start IS NOT NULL OR quiet_hours_end IS NOT NULL THEN
        PERFORM wa_notify._check_pattern('quiet_hours_start', qs, '^([01][0-9]|2[0-3]):[0-5][0-9]$',
            'Quiet hours are given as local times "HH:MM" (00:00 to 23:59), or '''' to turn them off.');
        PERFORM wa_notify._check_pattern('quiet_hours_end', qe, '^([01][0-9]|2[0-3]):[0-5][0-9]$',
            'Quiet hours are given as local times "HH:MM" (00:00 to 23:59), or '''' to turn them off.');
        IF (qs = '') <> (qe = '') THEN
            RAISE EXCEPTION 'quiet_hours_start and quiet_hours_end must be set together'
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'Give both, such as quiet_hours_start => ''21:00'', quiet_hours_end => ''08:00'', or set both to '''' to turn quiet hours off.';
        END IF;
        IF qs <> '' AND qs = qe THEN
            RAISE EXCEPTION 'quiet hours cannot start and end at the same time'
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'Give two different times, or set both to '''' to turn quiet hours off.';
        END IF;
        new_values := new_values || jsonb_build_object('quiet_hours_start', qs, 'quiet_hours_end', qe);
    END IF;
    IF timezone IS NOT NULL THEN
        BEGIN
            PERFORM now() AT TIME ZONE configure.timezone;
            IF timezone = '' THEN
                RAISE invalid_parameter_value;
            END IF;
        EXCEPTION WHEN invalid_parameter_value THEN
            PERFORM wa_notify._invalid('timezone',
                'Give a time zone name from pg_timezone_names, such as "America/Sao_Paulo".',
                format('The value given was "%s".', timezone));
        END;
        new_values := new_values || jsonb_build_object('timezone', timezone);
    END IF;
    IF default_country_code IS NOT NULL THEN
        IF default_country_code = '' THEN
            PERFORM wa_notify._invalid('default_country_code',
                'default_country_code cannot be unset: give 1 to 3 digits without "+", such as "55".');
        END IF;
        PERFORM wa_notify._check_pattern('default_country_code', default_country_code,
            '^[1-9][0-9]{0,2}$', 'A country calling code is 1 to 3 digits without "+", such as "55".');
        new_values := new_values || jsonb_build_object('default_country_code', default_country_code);
    END IF;

    -- webhook
    IF webhook_public_url IS NOT NULL THEN
        new_values := new_values || jsonb_build_object('webhook_public_url',
            rtrim(wa_notify._check_pattern('webhook_public_url', webhook_public_url,
                '^https://[A-Za-z0-9.:-]+(/[A-Za-z0-9._~/-]*)?$',
                'Meta only calls https URLs: give the relay''s public URL, such as "https://shop.example.com/whatsapp".'), '/'));
    END IF;
    IF webhook_verify_token IS NOT NULL THEN
        IF webhook_verify_token = '' THEN
            PERFORM wa_notify._invalid('webhook_verify_token',
                'Use rotate_verify_token() for a new random token, or give 16 to 128 characters from A-Z, a-z, 0-9, ".", "_", "~", "-".');
        END IF;
        new_values := new_values || jsonb_build_object('webhook_verify_token',
            wa_notify._check_pattern('webhook_verify_token', webhook_verify_token, '^[A-Za-z0-9._~-]{16,128}$',
                'The verify token is 16 to 128 characters from A-Z, a-z, 0-9, ".", "_", "~", "-"; rotate_verify_token() makes a random one.', true));
    END IF;

    -- tracking
    IF default_tracking_url IS NOT NULL THEN
        IF default_tracking_url <> '' THEN
            PERFORM wa_notify._check_tracking_pattern('default_tracking_url', default_tracking_url);
        END IF;
        new_values := new_values || jsonb_build_object('default_tracking_url', default_tracking_url);
    END IF;
    IF opt_out_keywords IS NOT NULL THEN
        IF cardinality(opt_out_keywords) = 0
           OR EXISTS (SELECT 1 FROM unnest(opt_out_keywords) w WHERE w IS NULL OR btrim(w) = '') THEN
            PERFORM wa_notify._invalid('opt_out_keywords',
                'Give a non-empty list of non-empty keywords, such as ARRAY[''PARAR'', ''SAIR'', ''STOP'', ''CANCELAR''].');
        END IF;
        new_values := new_values || jsonb_build_object('opt_out_keywords',
            (SELECT array_agg(upper(btrim(w)) ORDER BY o) FROM unnest(opt_out_keywords) WITH ORDINALITY AS t(w, o))::text);
    END IF;
    IF delivery_semantics IS NOT NULL THEN
        IF delivery_semantics NOT IN ('at_most_once', 'at_least_once') THEN
            PERFORM wa_notify._invalid('delivery_semantics',
                'delivery_semantics is "at_most_once" (a message in flight at a crash goes to review) or "at_least_once" (it is sent again).',
                format('The value given was "%s".', delivery_semantics));
        END IF;
        new_values := new_values || jsonb_build_object('delivery_semantics', delivery_semantics);
    END IF;

    -- everything is valid: apply
    FOR k, v IN SELECT key, value FROM jsonb_each_text(new_values) LOOP
        UPDATE wa_notify.setting s SET value = nullif(v, ''), updated_at = now()
         WHERE s.name = k AND s.value IS DISTINCT FROM nullif(v, '');
        GET DIAGNOSTICS n = ROW_COUNT;
        changed := changed + n;
    END LOOP;
    IF changed > 0 THEN
        -- SPEC 3: an account pause lifts when settings change
        UPDATE wa_notify.state
           SET settings_changed_at = now(), paused_reason = NULL, paused_code = NULL, paused_at = NULL;
        PERFORM wa_notify.wake();
    END IF;
    RETURN changed;
END $$;
COMMENT ON FUNCTION wa_notify.configure IS
    'set settings by name (NULL: unchanged; '''': unset); returns how many changed';

CREATE FUNCTION wa_notify.rotate_verify_token() RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, wa_notify AS $$
DECLARE
    t text := wa_notify._random_token(32);
BEGIN
    UPDATE wa_notify.setting SET value = t, updated_at = now() WHERE name = 'webhook_verify_token';
    RETURN t;
END $$;
COMMENT ON FUNCTION wa_notify.rotate_verify_token() IS
    'replace the webhook verify token by a new random one (256 bits) and return it, to paste into Meta''s webhook settings';

-------------------------------------------------------------------------------
-- settings view: like pg_settings, secrets masked
-------------------------------------------------------------------------------
CREATE VIEW wa_notify.settings AS
SELECT name,
       CASE WHEN is_secret AND value IS NOT NULL THEN '********' ELSE value END AS value,
       CASE WHEN is_secret AND default_value IS NOT NULL THEN '********' ELSE default_value END AS default_value,
       description, unit, is_secret, updated_at
  FROM wa_notify.setting
 ORDER BY name;

-------------------------------------------------------------------------------
-- events
-------------------------------------------------------------------------------
CREATE FUNCTION wa_notify._check_event(event text) RETURNS void
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, wa_notify AS $$
BEGIN
    IF event IS NULL OR NOT EXISTS (SELECT 1 FROM wa_notify.event e WHERE e.event = _check_event.event) THEN
        RAISE EXCEPTION 'unknown event "%"', event
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'The events are order_placed, order_processing, shipment_created, shipment_delivered, order_cancelled and refund_issued.';
    END IF;
END $$;

CREATE FUNCTION wa_notify.configure_event(
    event             text,
    enabled           boolean DEFAULT NULL,
    template_name     text    DEFAULT NULL,
    template_language text    DEFAULT NULL,
    params            text[]  DEFAULT NULL,
    button_param      text    DEFAULT NULL,
    text_body         text    DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, wa_notify AS $$
DECLARE
    bad text;
BEGIN
    PERFORM wa_notify._check_event(event);
    IF template_name IS NOT NULL AND (template_name !~ '^[a-z0-9_]+$' OR length(template_name) > 512) THEN
        RAISE EXCEPTION 'invalid template name "%"', template_name
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'WhatsApp template names are lower-case letters, digits and underscores, as in WhatsApp Manager.';
    END IF;
    IF template_language IS NOT NULL AND template_language <> '' THEN
        PERFORM wa_notify._language_ok('template_language', template_language);
    END IF;
    IF params IS NOT NULL THEN
        SELECT p INTO bad FROM unnest(params) AS p WHERE p IS NULL OR p !~ '^[A-Za-z_][A-Za-z0-9_]{0,62}$' LIMIT 1;
        IF FOUND THEN
            RAISE EXCEPTION 'invalid template parameter name "%"', coalesce(bad, 'NULL')
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'params lists order-context field names for {{1}}..{{n}}, such as ARRAY[''customer_name'', ''order_number'', ''total''].';
        END IF;
        IF cardinality(params) > 100 THEN
            RAISE EXCEPTION 'too many template parameters (%)', cardinality(params)
                USING ERRCODE = 'invalid_parameter_value', HINT = 'A template body has at most 100 parameters.';
        END IF;
    END IF;
    IF button_param IS NOT NULL AND button_param <> '' AND button_param !~ '^[A-Za-z_][A-Za-z0-9_]{0,62}$' THEN
        RAISE EXCEPTION 'invalid button parameter name "%"', button_param
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'button_param names one order-context field, such as ''tracking_number'', or '''' for no URL button.';
    END IF;
    IF text_body IS NOT NULL AND (btrim(text_body) = '' OR length(text_body) > 4096) THEN
        RAISE EXCEPTION 'invalid text body for event "%"', event
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'A text body is 1 to 4096 characters; {field} placeholders take order-context fields.';
    END IF;

    UPDATE wa_notify.event e
       SET enabled = coalesce(configure_event.enabled, e.enabled),
           template_name = coalesce(configure_event.template_name, e.template_name),
           template_language = CASE WHEN configure_event.template_language IS NULL THEN e.template_language
                                    ELSE nullif(configure_event.template_language, '') END,
           params = coalesce(configure_event.params, e.params),
           button_param = CASE WHEN configure_event.button_param IS NULL THEN e.button_param
                               ELSE nullif(configure_event.button_param, '') END,
           text_body = coalesce(configure_event.text_body, e.text_body),
           -- a new template (or language) has not been synced yet; a fix lifts a hold
           template_status = CASE WHEN configure_event.template_name IS DISTINCT FROM NULL
                                       AND configure_event.template_name <> e.template_name
                                    OR (configure_event.template_language IS NOT NULL
                                        AND nullif(configure_event.template_language, '') IS DISTINCT FROM e.template_language)
                                  THEN 'unknown' ELSE e.template_status END,
           held_reason = CASE WHEN configure_event.template_name IS NOT NULL OR configure_event.template_language IS NOT NULL
                                   OR configure_event.params IS NOT NULL OR configure_event.button_param IS NOT NULL
                              THEN NULL ELSE e.held_reason END,
           held_code = CASE WHEN configure_event.template_name IS NOT NULL OR configure_event.template_language IS NOT NULL
                                 OR configure_event.params IS NOT NULL OR configure_event.button_param IS NOT NULL
                            THEN NULL ELSE e.held_code END
     WHERE e.event = configure_event.event;
    PERFORM wa_notify.wake();
END $$;

CREATE VIEW wa_notify.events AS
SELECT e.event, e.description, e.enabled, e.template_name,
       coalesce(e.template_language, l.value) AS template_language,
       e.template_language IS NOT NULL AS language_overridden,
       e.params, e.button_param, e.text_body, e.template_status, e.template_status_at,
       e.held_reason, e.held_code, e.held_at
  FROM wa_notify.event e
  CROSS JOIN (SELECT value FROM wa_notify.setting WHERE name = 'default_language') AS l
 ORDER BY array_position(ARRAY['order_placed', 'order_processing', 'shipment_created',
                               'shipment_delivered', 'order_cancelled', 'refund_issued'], e.event);

-------------------------------------------------------------------------------
-- carriers and tracking URLs
-------------------------------------------------------------------------------
CREATE FUNCTION wa_notify.set_carrier(carrier text, url_pattern text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, wa_notify AS $$
BEGIN
    IF carrier IS NULL OR btrim(carrier) = '' THEN
        RAISE EXCEPTION 'carrier name is empty'
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Give the carrier''s name as the shop stores it, such as ''Correios''.';
    END IF;
    PERFORM wa_notify._check_tracking_pattern(format('carrier "%s"', carrier), url_pattern);
    INSERT INTO wa_notify.carrier AS c (carrier, url_pattern)
    VALUES (lower(btrim(set_carrier.carrier)), set_carrier.url_pattern)
    ON CONFLICT ON CONSTRAINT carrier_pkey DO UPDATE SET url_pattern = EXCLUDED.url_pattern;
END $$;

CREATE FUNCTION wa_notify.remove_carrier(carrier text) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, wa_notify AS $$
BEGIN
    DELETE FROM wa_notify.carrier c WHERE c.carrier = lower(btrim(remove_carrier.carrier));
    RETURN FOUND;
END $$;

-------------------------------------------------------------------------------
-- blacklist
-------------------------------------------------------------------------------
CREATE FUNCTION wa_notify.block(phone text, reason text DEFAULT NULL) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, wa_notify AS $$
BEGIN
    PERFORM wa_notify._blacklist(phone, coalesce(reason, 'blocked by admin'), 'manual', NULL);
    RETURN wa_notify.normalize_phone(phone, wa_notify._setting_value('default_country_code'));
END $$;
COMMENT ON FUNCTION wa_notify.block(text, text) IS 'blacklist a number (returns it as E.164 digits)';

CREATE FUNCTION wa_notify.unblock(phone text) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, wa_notify AS $$
BEGIN
    -- the digits as the blacklist shows them (E.164, any country)...
    DELETE FROM wa_notify.blocked b WHERE b.phone = regexp_replace(unblock.phone, '[^0-9]', '', 'g');
    IF FOUND THEN
        RETURN true;
    END IF;
    -- ...or any spelling of the number, ninth digit or not
    DELETE FROM wa_notify.blocked b
     WHERE b.phone_key = wa_notify.phone_key(
               wa_notify.normalize_phone(unblock.phone, wa_notify._setting_value('default_country_code')));
    RETURN FOUND;
END $$;

CREATE VIEW wa_notify.blacklist AS
SELECT phone AS number, reason, source, error_code, created_at
  FROM wa_notify.blocked
 ORDER BY created_at DESC;
-- 20_capture.sql: capture (watch/unwatch/watches), context resolution,
-- rendering, preview and resend.  See doc/capture.md.

-------------------------------------------------------------------------------
-- rendering (render.c)
-------------------------------------------------------------------------------
-- The exact JSON body POSTed to {base}/{version}/{phone_number_id}/messages.
CREATE FUNCTION wa_notify._render(event text, phone text, params jsonb, message_id bigint)
    RETURNS jsonb AS 'MODULE_PATHNAME', 'wa_notify_render' LANGUAGE C STABLE;
COMMENT ON FUNCTION wa_notify._render(text, text, jsonb, bigint) IS
    'request body of one message (template or text); message_id NULL leaves out biz_opaque_callback_data';

CREATE FUNCTION wa_notify._tracking_url(carrier text, tracking text)
    RETURNS text AS 'MODULE_PATHNAME', 'wa_notify_tracking_url' LANGUAGE C STABLE;
COMMENT ON FUNCTION wa_notify._tracking_url(text, text) IS
    'tracking URL: the carrier''s pattern (case-insensitive), else default_tracking_url; the number URL-encoded';

-- SPEC section 6: the URL a customer gets (NULL without a tracking number, or
-- when neither the carrier nor default_tracking_url has a pattern)
CREATE FUNCTION wa_notify.tracking_url(carrier text, tracking text) RETURNS text
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, wa_notify AS $$
    SELECT wa_notify._tracking_url(carrier, nullif(btrim(tracking), ''))
$$;

CREATE FUNCTION wa_notify._format_money(amount text)
    RETURNS text AS 'MODULE_PATHNAME', 'wa_notify_format_money' LANGUAGE C IMMUTABLE STRICT;
COMMENT ON FUNCTION wa_notify._format_money(text) IS
    'pt_BR money text (1.234,56) of a decimal number; other text unchanged';

-------------------------------------------------------------------------------
-- watches (capture.c holds the trigger and the validation helpers)
-------------------------------------------------------------------------------
CREATE TABLE wa_notify.watch (
    id          bigserial PRIMARY KEY,
    event       text NOT NULL REFERENCES wa_notify.event (event),
    -- the watched table as a schema-qualified, quoted name (not regclass:
    -- reg* columns would block pg_upgrade); the view shows it as regclass
    source      text NOT NULL,
    order_key   text NOT NULL,
    fires_when  text,
    context     text NOT NULL,
    search_path text NOT NULL,          -- the admin's, at watch(): the context runs with it
    -- the role that called watch() (current_user): the context runs as it.
    -- A name, not an oid: it survives pg_dump/restore into another cluster.
    owner       name NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (event, source)
);
SELECT pg_catalog.pg_extension_config_dump('wa_notify.watch', '');
SELECT pg_catalog.pg_extension_config_dump('wa_notify.watch_id_seq', '');

-- Captures staged by the trigger in the shop's transaction, moved into
-- wa_notify.message by _resolve_pending() after commit.  No index, no
-- trigger, no constraint beyond NOT NULL: the trigger appends with a direct
-- heap insert (capture.c checks this shape).  A restore keeps what was
-- staged but not yet moved.
CREATE TABLE wa_notify.capture_queue (
    watch_id    bigint NOT NULL,
    event       text NOT NULL,
    order_key   text,                 -- NULL: see error
    source_row  jsonb,                -- the row, or the columns the context reads of $2, or NULL
    error       text,                 -- the order key could not be computed
    captured_at timestamptz NOT NULL  -- the shop's transaction start (now())
);
SELECT pg_catalog.pg_extension_config_dump('wa_notify.capture_queue', '');

CREATE FUNCTION wa_notify._capture() RETURNS trigger
    AS 'MODULE_PATHNAME', 'wa_notify_capture' LANGUAGE C;

CREATE FUNCTION wa_notify._expr_info(source regclass, expr text, what text,
                                     OUT type regtype, OUT has_sublink boolean,
                                     OUT qualified text, OUT new_expr text, OUT old_expr text)
    AS 'MODULE_PATHNAME', 'wa_notify_expr_info' LANGUAGE C VOLATILE STRICT;

CREATE FUNCTION wa_notify._context_columns(context text) RETURNS text[]
    AS 'MODULE_PATHNAME', 'wa_notify_context_columns' LANGUAGE C VOLATILE STRICT;

-- capture_priv.c: the privilege gate (checks the CALLER, then writes the
-- watch row as the extension's owner) and the context run as the watch's
-- role.  None is SECURITY DEFINER: a direct call is no way around the checks.
CREATE FUNCTION wa_notify._watch_check(source regclass, unwatch boolean) RETURNS void
    AS 'MODULE_PATHNAME', 'wa_notify_watch_check' LANGUAGE C VOLATILE STRICT;

CREATE FUNCTION wa_notify._watch_store(event text, source regclass, order_key text,
                                       fires_when text, context text, search_path text)
    RETURNS bigint AS 'MODULE_PATHNAME', 'wa_notify_watch_store' LANGUAGE C VOLATILE;

CREATE FUNCTION wa_notify._context_exec(role name, search_path text, context text,
                                        order_key text, source_row jsonb)
    RETURNS jsonb[] AS 'MODULE_PATHNAME', 'wa_notify_context_exec' LANGUAGE C VOLATILE;

CREATE VIEW wa_notify.watches AS
    SELECT w.id, w.event, to_regclass(w.source) AS source, w.order_key, w.fires_when,
           w.context, w.created_at, w.owner
      FROM wa_notify.watch w;
COMMENT ON VIEW wa_notify.watches IS 'capture mappings: which table feeds which event (owner: the role its context runs as)';

CREATE FUNCTION wa_notify._drop_watch_triggers(source regclass, watch_id bigint)
RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog, wa_notify AS $$
DECLARE
    t name;
BEGIN
    FOR t IN SELECT tg.tgname FROM pg_trigger tg
              WHERE tg.tgrelid = source AND NOT tg.tgisinternal
                AND tg.tgfoid = 'wa_notify._capture()'::regprocedure
                AND tg.tgnargs = 5
                AND split_part(encode(tg.tgargs, 'escape'), '\000', 1) = watch_id::text
    LOOP
        EXECUTE format('DROP TRIGGER %I ON %s', t, source);
    END LOOP;
END $$;

-- No SET search_path here: names in the mapping resolve with the admin's
-- search path (recorded for the context; expressions are stored deparsed,
-- schema-qualified).
CREATE FUNCTION wa_notify.watch(event text, source regclass, order_key text, context text,
                                fires_when text DEFAULT NULL)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    ev       text := watch.event;
    rel      record;
    ok       text := btrim(order_key);
    fw       text := nullif(btrim(fires_when), '');
    ctx      text := regexp_replace(context, '[\s;]+$', '');
    okinfo   record;
    fwinfo   record;
    fw_query boolean := false;     -- fires_when needs the trigger's query
    when_ins text := '';
    keep_row text;                 -- '-', 'j' or 'c<columns>': what of the row to stage for $2
    cols     text[];
    key_col  name;                 -- order_key is this column
    alias    text;
    keysql   text;
    wid      bigint;
    trg      text;
BEGIN
    IF ev IS NULL OR NOT EXISTS (SELECT 1 FROM wa_notify.event e WHERE e.event = ev) THEN
        RAISE EXCEPTION 'unknown event "%"', ev
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'The events are order_placed, order_processing, shipment_created, shipment_delivered, order_cancelled and refund_issued.';
    END IF;
    IF source IS NULL THEN
        RAISE EXCEPTION 'source table must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    -- the caller needs TRIGGER on the table (checked again by _watch_store)
    PERFORM wa_notify._watch_check(source, false);
    SELECT c.relname, c.relkind, n.nspname INTO rel
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = source;
    IF rel.relkind NOT IN ('r', 'p') THEN
        RAISE EXCEPTION 'cannot watch "%": it is not a table', source::text
            USING ERRCODE = 'wrong_object_type',
                  HINT = 'Watch the table the shop writes; views and foreign tables have no row triggers wa_notify can use.';
    END IF;
    IF rel.nspname = 'wa_notify' THEN
        RAISE EXCEPTION 'cannot watch wa_notify''s own table "%"', source::text
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    alias := quote_ident(rel.relname);

    IF ok IS NULL OR ok = '' THEN
        RAISE EXCEPTION 'order_key must not be empty' USING ERRCODE = 'invalid_parameter_value',
            HINT = 'Give the column (or expression) that holds the order''s key, such as "Id" or "OrderId".';
    END IF;
    okinfo := wa_notify._expr_info(source, ok, 'order_key expression');
    IF fw IS NOT NULL THEN
        fwinfo := wa_notify._expr_info(source, fw, 'fires_when expression');
        IF fwinfo.type <> 'boolean'::regtype THEN
            RAISE EXCEPTION 'invalid fires_when expression: it is of type %, not boolean', fwinfo.type
                USING ERRCODE = 'datatype_mismatch',
                      DETAIL = format('The fires_when expression was: %s', fw),
                      HINT = 'Write a condition such as "OrderStatusId" = 40 or delivered_at IS NOT NULL.';
        END IF;
        fw_query := fwinfo.has_sublink;
        IF NOT fw_query THEN
            when_ins := format('WHEN ((%s) IS TRUE)', fwinfo.new_expr);
        END IF;
    END IF;
    IF ctx IS NULL OR ctx = '' THEN
        RAISE EXCEPTION 'context query must not be empty' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    cols := wa_notify._context_columns(ctx);
    IF NOT 'phone' = ANY (cols) THEN
        RAISE EXCEPTION 'invalid context query: it returns no "phone" column'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('Its columns are: %s.', array_to_string(cols, ', ')),
                  HINT = 'Name the customer''s phone column "phone" (SELECT a."PhoneNumber" AS phone ...).';
    END IF;
    -- The context will run as the caller: it must be allowed to read what
    -- the context reads and call what it calls.  EXPLAIN checks exactly that
    -- (the executor's permission checks) without running the query; other
    -- errors are left to the run.
    BEGIN
        EXECUTE 'EXPLAIN (COSTS OFF) ' || ctx USING NULL::text, NULL::jsonb;
    EXCEPTION
        WHEN insufficient_privilege THEN
            RAISE EXCEPTION 'invalid context query: %', SQLERRM
                USING ERRCODE = 'insufficient_privilege',
                      DETAIL = format('The context runs as the role that calls watch(), %s.', quote_ident(current_user)),
                      HINT = 'Grant that role what the context needs (SELECT on its tables, EXECUTE on its functions), or call watch() as a role that has it.';
        WHEN OTHERS THEN
            NULL;
    END;

    -- What of the row to stage for $2: nothing when the context does not
    -- read $2; only the columns it reads when every use is $2->>'column' on
    -- a column whose text is the same in jsonb (text, integers, numeric,
    -- uuid); else the whole row as jsonb.
    keep_row := '-';
    IF ctx ~ '\$2(?![0-9])' THEN
        keep_row := 'j';
        IF (SELECT count(*) FROM regexp_matches(ctx, '\$2(?![0-9])', 'g'))
         = (SELECT count(*) FROM regexp_matches(ctx, '\$2\s*->>\s*''([^'']*)''', 'g')) THEN
            -- a key that is no column reads NULL either way: nothing to stage for it
            SELECT CASE WHEN bool_and(a.atttypid IN ('text'::regtype, 'varchar'::regtype, 'bpchar'::regtype,
                                                     'name'::regtype, 'int2'::regtype, 'int4'::regtype,
                                                     'int8'::regtype, 'numeric'::regtype, 'uuid'::regtype))
                                  IS NOT FALSE
                        THEN 'c' || coalesce(string_agg(quote_ident(a.attname), ',' ORDER BY a.attnum), '')
                        ELSE 'j' END
              INTO keep_row
              FROM pg_attribute a
             WHERE a.attrelid = source AND a.attnum > 0 AND NOT a.attisdropped
               AND a.attname IN (SELECT m[1] FROM regexp_matches(ctx, '\$2\s*->>\s*''([^'']*)''', 'g') m);
        END IF;
    END IF;

    -- the order key straight from a column of the row when it is one
    SELECT a.attname INTO key_col
      FROM pg_attribute a
     WHERE a.attrelid = source AND a.attnum > 0 AND NOT a.attisdropped
       AND (ok IN (quote_ident(a.attname), alias || '.' || quote_ident(a.attname))
            OR (ok ~ '^[A-Za-z_][A-Za-z0-9_]*$' AND lower(ok) = a.attname)
            OR (ok ~ '^[A-Za-z_][A-Za-z0-9_]*\.[A-Za-z_][A-Za-z0-9_]*$'
                AND lower(ok) = lower(rel.relname) || '.' || a.attname
                AND rel.relname = lower(rel.relname)));

    -- keep the watch row (same id when the watch is replaced; owner = the
    -- caller) and drop its previous triggers: done by the extension's owner
    -- once the caller's TRIGGER privilege is checked.  The new triggers are
    -- created below as the caller.
    wid := wa_notify._watch_store(ev, source, ok, fw, ctx, pg_catalog.current_setting('search_path'));

    IF NOT fw_query THEN
        -- the transition is the trigger's WHEN clause; the key a column or a query
        IF key_col IS NOT NULL THEN
            keysql := NULL;
        ELSE
            keysql := format('SELECT (%s)::text FROM (SELECT ($1).*) AS %s', okinfo.qualified, alias);
        END IF;
        trg := format('wa_notify_%s_%s_ins', wid, ev);
        EXECUTE format('CREATE TRIGGER %I AFTER INSERT ON %s FOR EACH ROW %s EXECUTE FUNCTION wa_notify._capture(%L, %L, %L, %L, %L)',
                       trg, source,
                       when_ins,
                       wid, ev, CASE WHEN keysql IS NULL THEN 'k' ELSE 'e' END,
                       coalesce(keysql, quote_ident(key_col)), keep_row);
        IF fw IS NOT NULL THEN
            trg := format('wa_notify_%s_%s_upd', wid, ev);
            EXECUTE format('CREATE TRIGGER %I AFTER UPDATE ON %s FOR EACH ROW WHEN ((%s) IS TRUE AND (%s) IS NOT TRUE) EXECUTE FUNCTION wa_notify._capture(%L, %L, %L, %L, %L)',
                           trg, source, fwinfo.new_expr, fwinfo.old_expr,
                           wid, ev, CASE WHEN keysql IS NULL THEN 'k' ELSE 'e' END,
                           coalesce(keysql, quote_ident(key_col)), keep_row);
        END IF;
    ELSE
        -- fires_when holds a subquery: decided by the trigger's cached query
        keysql := format('SELECT (%s)::text FROM (SELECT ($1).*) AS %s WHERE (%s) IS TRUE',
                         okinfo.qualified, alias, fwinfo.qualified);
        EXECUTE format('CREATE TRIGGER %I AFTER INSERT ON %s FOR EACH ROW EXECUTE FUNCTION wa_notify._capture(%L, %L, %L, %L, %L)',
                       format('wa_notify_%s_%s_ins', wid, ev), source, wid, ev, 'e', keysql, keep_row);
        keysql := keysql || format(' AND (SELECT (%s) FROM (SELECT ($2).*) AS %s) IS NOT TRUE',
                                   fwinfo.qualified, alias);
        EXECUTE format('CREATE TRIGGER %I AFTER UPDATE ON %s FOR EACH ROW EXECUTE FUNCTION wa_notify._capture(%L, %L, %L, %L, %L)',
                       format('wa_notify_%s_%s_upd', wid, ev), source, wid, ev, 'e', keysql, keep_row);
    END IF;
    RETURN wid;
END $$;
COMMENT ON FUNCTION wa_notify.watch(text, regclass, text, text, text) IS
    'attach capture of one event to a shop table (replaces the watch of the same event and table)';

-- Run by _watch_store as the extension's owner: upsert the watch row and
-- drop the watch's previous triggers.  (Called directly by anyone else it
-- fails: writing wa_notify.watch needs more than the admin role has.)
CREATE FUNCTION wa_notify._watch_upsert(event text, source regclass, order_key text,
                                        fires_when text, context text, search_path text,
                                        owner name)
RETURNS bigint LANGUAGE plpgsql SET search_path = pg_catalog, wa_notify AS $$
DECLARE
    wid bigint;
BEGIN
    INSERT INTO wa_notify.watch AS w (event, source, order_key, fires_when, context, search_path, owner)
    SELECT _watch_upsert.event, format('%I.%I', n.nspname, c.relname), _watch_upsert.order_key,
           _watch_upsert.fires_when, _watch_upsert.context, _watch_upsert.search_path, _watch_upsert.owner
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.oid = _watch_upsert.source
    ON CONFLICT ON CONSTRAINT watch_event_source_key DO UPDATE
       SET order_key = EXCLUDED.order_key, fires_when = EXCLUDED.fires_when,
           context = EXCLUDED.context, search_path = EXCLUDED.search_path,
           owner = EXCLUDED.owner, updated_at = now()
    RETURNING w.id INTO wid;
    PERFORM wa_notify._drop_watch_triggers(source, wid);
    RETURN wid;
END $$;

-- Checks the caller (TRIGGER on the table, or member of its owner role),
-- then runs _unwatch_drop as the extension's owner.
CREATE FUNCTION wa_notify.unwatch(event text, source regclass)
    RETURNS boolean AS 'MODULE_PATHNAME', 'wa_notify_unwatch' LANGUAGE C VOLATILE STRICT;
COMMENT ON FUNCTION wa_notify.unwatch(text, regclass) IS
    'remove the capture of one event from a table (drops its triggers); false when there was none';

CREATE FUNCTION wa_notify._unwatch_drop(event text, source regclass)
RETURNS boolean LANGUAGE plpgsql SET search_path = pg_catalog, wa_notify AS $$
DECLARE
    wid bigint;
    found_any boolean := false;
BEGIN
    -- by the triggers on the table (robust to a renamed table) and by name
    FOR wid IN
        SELECT split_part(encode(tg.tgargs, 'escape'), '\000', 1)::bigint
          FROM pg_trigger tg
         WHERE tg.tgrelid = source AND tg.tgfoid = 'wa_notify._capture()'::regprocedure
           AND tg.tgnargs = 5 AND split_part(encode(tg.tgargs, 'escape'), '\000', 2) = _unwatch_drop.event
        UNION
        SELECT w.id FROM wa_notify.watch w
         WHERE w.event = _unwatch_drop.event AND to_regclass(w.source) = _unwatch_drop.source
    LOOP
        PERFORM wa_notify._drop_watch_triggers(source, wid);
        DELETE FROM wa_notify.watch w WHERE w.id = wid;
        found_any := true;
    END LOOP;
    RETURN found_any;
END $$;

-------------------------------------------------------------------------------
-- context resolution (after commit, by the worker every cycle)
-------------------------------------------------------------------------------
-- The order context of one message: the watch's context query run with
-- ($1 order key, $2 source row), as the watch's role (never as the worker's
-- superuser) with the search path recorded at watch() time.  Raises a clear
-- error when the query fails or returns no row or several rows, when the
-- watch or its role is gone, or when the caller (preview() by another
-- admin) lacks the privileges of the watch's role.
CREATE FUNCTION wa_notify._context_row(watch_id bigint, order_key text, source_row jsonb)
RETURNS jsonb LANGUAGE plpgsql SET search_path = pg_catalog, wa_notify AS $$
DECLARE
    ctx  text;
    path text;
    own  name;
    rows jsonb[];
BEGIN
    SELECT w.context, w.search_path, w.owner INTO ctx, path, own FROM wa_notify.watch w WHERE w.id = watch_id;
    IF ctx IS NULL THEN
        RAISE EXCEPTION 'watch % no longer exists', watch_id USING ERRCODE = 'undefined_object';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles r WHERE r.rolname = own) THEN
        RAISE EXCEPTION 'role "%" of watch % no longer exists', own, watch_id
            USING ERRCODE = 'undefined_object',
                  HINT = 'The context runs as the role that called watch(): call wa_notify.watch() again as an existing role.';
    END IF;
    IF NOT pg_has_role(own, 'USAGE') THEN
        RAISE EXCEPTION 'permission denied to run the context of watch % as role "%"', watch_id, own
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'The context runs as the role that called watch(); only that role and its members can preview it.';
    END IF;
    BEGIN
        rows := wa_notify._context_exec(own, path, ctx, order_key, source_row);
    EXCEPTION WHEN OTHERS THEN
        RAISE EXCEPTION 'context query failed: %', SQLERRM USING ERRCODE = 'WA001';
    END;
    IF rows IS NULL THEN
        RAISE EXCEPTION 'context query returned no row for order %', order_key USING ERRCODE = 'WA002';
    ELSIF cardinality(rows) > 1 THEN
        RAISE EXCEPTION 'context query returned more than one row for order %', order_key USING ERRCODE = 'WA003';
    END IF;
    RETURN rows[1];
END $$;

-- Move staged captures into wa_notify.message, then resolve captured
-- messages: context -> phone, params, tracking; skip or fail with the reason.  Each message is isolated (its own subtransaction,
-- which writes nothing).  Returns how many messages it resolved.
CREATE FUNCTION wa_notify._resolve_pending(max_rows integer DEFAULT 1000)
RETURNS integer LANGUAGE plpgsql SET search_path = pg_catalog, wa_notify AS $$
DECLARE
    m        record;
    n        integer := 0;
    cc       text := (SELECT value FROM wa_notify.setting WHERE name = 'default_country_code');
    use_tmpl boolean := coalesce((SELECT value FROM wa_notify.setting WHERE name = 'use_templates'), 'true') = 'true';
    ctx      jsonb;
    raw      text;
    ph       text;
    err      text;
    det      text;
    skip     text;
    blk      record;
    need     text;
    i        integer;
BEGIN
    -- staged captures become messages (one per event and order; a failed
    -- order key is logged as a failed message at once)
    WITH staged AS (
        DELETE FROM wa_notify.capture_queue q
         WHERE q.ctid = ANY (ARRAY(SELECT c.ctid FROM wa_notify.capture_queue c
                                   LIMIT max_rows FOR UPDATE SKIP LOCKED))
        RETURNING q.ctid AS pos, q.*)
    INSERT INTO wa_notify.message AS msg (event, order_key, watch_id, source_row, created_at,
                                          status, error_message, failed_at, resolved_at)
    SELECT s.event, s.order_key, s.watch_id, s.source_row, s.captured_at,
           CASE WHEN s.error IS NULL THEN 'queued' ELSE 'failed' END, s.error,
           CASE WHEN s.error IS NOT NULL THEN now() END,
           CASE WHEN s.error IS NOT NULL THEN now() END
      FROM staged s
     ORDER BY s.captured_at, s.pos
    ON CONFLICT (event, order_key) WHERE resend_of IS NULL AND order_key IS NOT NULL DO NOTHING;

    FOR m IN
        SELECT msg.id, msg.event, msg.order_key, msg.source_row, msg.watch_id,
               e.enabled, e.params AS tparams, e.button_param, e.template_name
          FROM wa_notify.message msg JOIN wa_notify.event e ON e.event = msg.event
         WHERE msg.resolved_at IS NULL AND msg.watch_id IS NOT NULL
         ORDER BY msg.id
         LIMIT max_rows
           FOR UPDATE OF msg SKIP LOCKED
    LOOP
        ctx := NULL; raw := NULL; ph := NULL; err := NULL; skip := NULL;
        BEGIN
            ctx := wa_notify._context_row(m.watch_id, m.order_key, m.source_row);
            raw := ctx ->> 'phone';
            IF raw IS NULL OR btrim(raw) = '' THEN
                err := format('context returned no phone for order %s', m.order_key);
            ELSE
                BEGIN
                    ph := wa_notify.normalize_phone(raw, cc);
                EXCEPTION WHEN invalid_parameter_value THEN
                    GET STACKED DIAGNOSTICS det = PG_EXCEPTION_DETAIL;
                    err := format('invalid phone number "%s": %s%s', raw, lower(left(det, 1)),
                                  rtrim(substr(det, 2), '.'));
                END;
            END IF;
        EXCEPTION WHEN OTHERS THEN
            err := SQLERRM;
        END;

        IF NOT m.enabled THEN
            skip := format('event %s is disabled', m.event);
        ELSIF err IS NULL THEN
            SELECT b.reason, b.source INTO blk FROM wa_notify.blocked b
             WHERE b.phone_key = wa_notify.phone_key(ph);
            IF FOUND THEN
                skip := format('phone %s is blacklisted (%s%s)', ph, blk.source,
                               coalesce(': ' || blk.reason, ''));
            ELSIF use_tmpl AND m.template_name IS NOT NULL THEN
                -- a template parameter without a value would be refused by Meta
                FOR i IN 1 .. coalesce(cardinality(m.tparams), 0) LOOP
                    need := m.tparams[i];
                    IF need <> 'tracking_url' AND nullif(ctx ->> need, '') IS NULL THEN
                        err := format('context returned no %s for order %s (template %s parameter {{%s}})',
                                      need, m.order_key, m.template_name, i);
                        EXIT;
                    END IF;
                END LOOP;
                IF err IS NULL AND m.button_param IS NOT NULL AND m.button_param <> 'tracking_url'
                   AND nullif(ctx ->> m.button_param, '') IS NULL THEN
                    err := format('context returned no %s for order %s (template %s URL button)',
                                  m.button_param, m.order_key, m.template_name);
                END IF;
            END IF;
        END IF;

        UPDATE wa_notify.message SET
               phone = ph,
               params = ctx,
               tracking = ctx ->> 'tracking_number',
               resolved_at = now(),
               updated_at = now(),
               status = CASE WHEN skip IS NOT NULL THEN 'skipped'
                             WHEN err IS NOT NULL THEN 'failed' ELSE status END,
               error_message = coalesce(skip, err),
               failed_at = CASE WHEN skip IS NULL AND err IS NOT NULL THEN now() END
         WHERE id = m.id;
        n := n + 1;
    END LOOP;
    RETURN n;
END $$;
COMMENT ON FUNCTION wa_notify._resolve_pending(integer) IS
    'run the context of captured messages: phone, params, skip or fail (the worker calls it every cycle)';

-------------------------------------------------------------------------------
-- preview and resend
-------------------------------------------------------------------------------
-- The exact body the worker will POST for (event, order_key):
--  * a message exists: its phone and params (resolved now if still pending),
--    its id as biz_opaque_callback_data;
--  * none yet: the event's watches' contexts (in id order, the first that
--    returns a row) with $2 = NULL; no biz_opaque_callback_data (no id yet).
CREATE FUNCTION wa_notify.preview(event text, order_key text)
RETURNS jsonb LANGUAGE plpgsql STABLE SET search_path = pg_catalog, wa_notify AS $$
DECLARE
    m   record;
    w   record;
    ctx jsonb;
    cc  text := (SELECT value FROM wa_notify.setting WHERE name = 'default_country_code');
BEGIN
    IF NOT EXISTS (SELECT 1 FROM wa_notify.event e WHERE e.event = preview.event) THEN
        RAISE EXCEPTION 'unknown event "%"', preview.event USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT msg.* INTO m FROM wa_notify.message msg
     WHERE msg.event = preview.event AND msg.order_key = preview.order_key
     ORDER BY msg.id DESC LIMIT 1;
    IF FOUND THEN
        IF m.watch_id IS NULL OR m.resolved_at IS NOT NULL THEN
            RETURN wa_notify._render(m.event, m.phone, m.params, m.id);
        END IF;
        ctx := wa_notify._context_row(m.watch_id, m.order_key, m.source_row);
        RETURN wa_notify._render(m.event, wa_notify.normalize_phone(ctx ->> 'phone', cc), ctx, m.id);
    END IF;
    FOR w IN SELECT wt.id FROM wa_notify.watch wt WHERE wt.event = preview.event ORDER BY wt.id LOOP
        BEGIN
            ctx := wa_notify._context_row(w.id, preview.order_key, NULL);
        EXCEPTION WHEN SQLSTATE 'WA002' THEN
            CONTINUE;
        END;
        RETURN wa_notify._render(preview.event, wa_notify.normalize_phone(ctx ->> 'phone', cc), ctx, NULL);
    END LOOP;
    RAISE EXCEPTION 'no message and no context for event % and order %', preview.event, preview.order_key
        USING ERRCODE = 'no_data_found',
              HINT = 'Watch a table for this event first, or preview with sample values: wa_notify.preview(event, ''{"phone": ...}''::jsonb).';
END $$;
COMMENT ON FUNCTION wa_notify.preview(text, text) IS
    'the exact JSON body that would be sent for this event and order';

-- With sample values: params as a context row would give them (phone included).
CREATE FUNCTION wa_notify.preview(event text, params jsonb)
RETURNS jsonb LANGUAGE plpgsql STABLE SET search_path = pg_catalog, wa_notify AS $$
DECLARE
    cc  text := (SELECT value FROM wa_notify.setting WHERE name = 'default_country_code');
BEGIN
    IF NOT EXISTS (SELECT 1 FROM wa_notify.event e WHERE e.event = preview.event) THEN
        RAISE EXCEPTION 'unknown event "%"', preview.event USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF params ->> 'phone' IS NULL THEN
        RAISE EXCEPTION 'sample values need a "phone"' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN wa_notify._render(preview.event, wa_notify.normalize_phone(params ->> 'phone', cc), params, NULL);
END $$;
COMMENT ON FUNCTION wa_notify.preview(text, jsonb) IS
    'the JSON body an event''s message would have with these sample values';

-- Queue a message again: a new row with resend_of = the original (the log
-- keeps both).  A captured message is resolved again (the context runs anew,
-- so a corrected phone or address is used); any other copies phone, params
-- and tracking.
CREATE FUNCTION wa_notify.resend(message_id bigint)
RETURNS bigint LANGUAGE plpgsql SET search_path = pg_catalog, wa_notify AS $$
DECLARE
    m   wa_notify.message;
    nid bigint;
    live boolean;
BEGIN
    SELECT * INTO m FROM wa_notify.message WHERE id = message_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'message % does not exist', message_id USING ERRCODE = 'no_data_found';
    END IF;
    IF m.status IN ('queued', 'sending') THEN
        RAISE EXCEPTION 'message % is still %', message_id, m.status
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Only a message that was sent, failed, skipped, expired or is under review can be resent.';
    END IF;
    SELECT r.id INTO nid FROM wa_notify.message r
     WHERE r.event = m.event AND r.order_key IS NOT DISTINCT FROM m.order_key
       AND r.resend_of IS NOT NULL AND r.status IN ('queued', 'sending') LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'a resend of this message is already queued (message %)', nid
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    live := m.watch_id IS NOT NULL AND EXISTS (SELECT 1 FROM wa_notify.watch w WHERE w.id = m.watch_id);
    INSERT INTO wa_notify.message (event, order_key, phone, params, tracking, status,
                                   resend_of, watch_id, source_row, resolved_at)
    VALUES (m.event, m.order_key,
            CASE WHEN live THEN NULL ELSE m.phone END,
            CASE WHEN live THEN NULL ELSE m.params END,
            CASE WHEN live THEN NULL ELSE m.tracking END,
            'queued', m.id,
            CASE WHEN live THEN m.watch_id END, m.source_row,
            CASE WHEN live THEN NULL ELSE now() END)
    RETURNING id INTO nid;
    PERFORM wa_notify.wake();
    RETURN nid;
END $$;
COMMENT ON FUNCTION wa_notify.resend(bigint) IS
    'queue a message again (a new row, resend_of = the original)';
-- 30_dispatch.sql: the dispatcher's SQL side: crash recovery, the per-cycle
-- housekeeping and settings snapshot, claiming a batch, recording a batch's
-- outcomes, the connection check and the template sync.  The worker
-- (src/worker.c) calls the underscore functions; check_connection() and
-- sync_templates() are the SQL surface (SPEC section 6).

-- indexes the dispatcher's rules use (recipient gap, daily limit, holds)
CREATE INDEX message_phone_claimed ON wa_notify.message (phone, claimed_at)
    WHERE claimed_at IS NOT NULL;
CREATE INDEX message_claimed ON wa_notify.message (claimed_at)
    WHERE claimed_at IS NOT NULL;
CREATE INDEX message_held ON wa_notify.message (event)
    WHERE held_reason IS NOT NULL AND queued;

-------------------------------------------------------------------------------
-- waking the worker at commit
-------------------------------------------------------------------------------
CREATE FUNCTION wa_notify._wake_at_commit() RETURNS trigger
    AS 'MODULE_PATHNAME', 'wa_notify_wake_trigger' LANGUAGE C;

-- a hand-inserted message, a setting or an event change wakes the worker
CREATE FUNCTION wa_notify._wake_on_commit() RETURNS void
    AS 'MODULE_PATHNAME', 'wa_notify_wake_on_commit' LANGUAGE C VOLATILE;

CREATE TRIGGER wake_worker AFTER INSERT ON wa_notify.message
    FOR EACH STATEMENT EXECUTE FUNCTION wa_notify._wake_at_commit();
CREATE TRIGGER wake_worker AFTER INSERT OR UPDATE OR DELETE ON wa_notify.setting
    FOR EACH STATEMENT EXECUTE FUNCTION wa_notify._wake_at_commit();
CREATE TRIGGER wake_worker AFTER UPDATE ON wa_notify.event
    FOR EACH STATEMENT EXECUTE FUNCTION wa_notify._wake_at_commit();

-------------------------------------------------------------------------------
-- Graph API GET from SQL (C, graph.c): the token never leaves C
-------------------------------------------------------------------------------
CREATE FUNCTION wa_notify._graph_get(path text, OUT http_status integer, OUT body text,
                                     OUT error text)
    AS 'MODULE_PATHNAME', 'wa_notify_graph_get' LANGUAGE C VOLATILE STRICT;
COMMENT ON FUNCTION wa_notify._graph_get(text) IS
    'internal: GET {api_base_url}/{api_version}/{path} with the access token';

-------------------------------------------------------------------------------
-- crash recovery: rows left 'sending' by a dead worker
-------------------------------------------------------------------------------
CREATE FUNCTION wa_notify._dispatch_recover() RETURNS integer
LANGUAGE plpgsql SET search_path = pg_catalog, wa_notify AS $$
#variable_conflict use_column
DECLARE
    sem text := (SELECT value FROM wa_notify.setting WHERE name = 'delivery_semantics');
    n integer;
BEGIN
    IF sem = 'at_least_once' THEN
        UPDATE wa_notify.message
           SET status = 'queued', next_attempt_at = NULL, claimed_at = NULL,
               error_message = 'resent after a worker restart (at_least_once)', updated_at = now()
         WHERE status = 'sending';
    ELSE
        UPDATE wa_notify.message
           SET status = 'review', updated_at = now(),
               error_message = 'the worker stopped while this message was being sent: it may or may not have been delivered; resend() it if it was not (at_most_once)'
         WHERE status = 'sending';
    END IF;
    GET DIAGNOSTICS n = ROW_COUNT;
    UPDATE wa_notify.state SET worker_pid = pg_backend_pid(), worker_started_at = now();
    RETURN n;
END $$;

-------------------------------------------------------------------------------
-- quiet hours: NULL outside them, else when they end
-------------------------------------------------------------------------------
CREATE FUNCTION wa_notify._quiet_until(qstart text, qend text, tz text, at timestamptz DEFAULT now())
RETURNS timestamptz LANGUAGE plpgsql STABLE SET search_path = pg_catalog, wa_notify AS $$
#variable_conflict use_column
DECLARE
    lt timestamp := at AT TIME ZONE tz;
    s time := qstart::time;
    e time := qend::time;
    t time := lt::time;
    endt timestamp;
BEGIN
    IF qstart IS NULL OR qend IS NULL OR s = e THEN
        RETURN NULL;
    END IF;
    IF s < e THEN
        IF t >= s AND t < e THEN
            endt := lt::date + e;
        END IF;
    ELSE                                    -- wraps midnight, e.g. 22:00-08:00
        IF t >= s THEN
            endt := lt::date + 1 + e;
        ELSIF t < e THEN
            endt := lt::date + e;
        END IF;
    END IF;
    RETURN endt AT TIME ZONE tz;
END $$;

-------------------------------------------------------------------------------
-- per cycle: housekeeping and the snapshot the worker runs on
-------------------------------------------------------------------------------
CREATE FUNCTION wa_notify._dispatch_cycle(count_window boolean DEFAULT false,
    OUT enabled boolean, OUT ready boolean, OUT phone_number_id text,
    OUT api_base_url text, OUT api_version text, OUT use_templates boolean,
    OUT min_delay float8, OUT max_delay float8, OUT max_per_batch integer,
    OUT polling_interval float8, OUT max_rate float8, OUT max_in_flight integer,
    OUT recipient_gap float8, OUT daily_recipient_limit integer,
    OUT quiet_until timestamptz, OUT paused_reason text, OUT paused_code integer,
    OUT pause_until timestamptz, OUT rate_factor float8,
    OUT settings_version text, OUT next_due timestamptz, OUT expired integer,
    OUT sent_in_window integer, OUT window_first timestamptz)
LANGUAGE plpgsql SET search_path = pg_catalog, wa_notify AS $$
#variable_conflict use_column
DECLARE
    s jsonb := (SELECT jsonb_object_agg(name, value) FROM wa_notify.setting);
    st wa_notify.state;
    changed timestamptz := (SELECT max(updated_at) FROM wa_notify.setting);
BEGIN
    enabled := coalesce(s ->> 'enabled', 'true') = 'true';
    phone_number_id := s ->> 'phone_number_id';
    ready := coalesce(s ->> 'access_token', '') <> '' AND coalesce(phone_number_id, '') <> '';
    api_base_url := rtrim(coalesce(s ->> 'api_base_url', 'https://graph.facebook.com'), '/');
    api_version := coalesce(s ->> 'api_version', 'v23.0');
    use_templates := coalesce(s ->> 'use_templates', 'true') = 'true';
    min_delay := coalesce((s ->> 'min_delay')::float8, 0);
    max_delay := greatest(coalesce((s ->> 'max_delay')::float8, 0), min_delay);
    max_per_batch := coalesce((s ->> 'max_per_batch')::integer, 50);
    polling_interval := coalesce((s ->> 'polling_interval')::float8, 300);
    max_rate := coalesce((s ->> 'max_rate')::float8, 0);
    max_in_flight := greatest(coalesce((s ->> 'max_in_flight')::integer, 32), 1);
    recipient_gap := coalesce((s ->> 'recipient_gap')::float8, 0);
    daily_recipient_limit := coalesce((s ->> 'daily_recipient_limit')::integer, 0);
    quiet_until := wa_notify._quiet_until(s ->> 'quiet_hours_start', s ->> 'quiet_hours_end',
                                          coalesce(s ->> 'timezone', 'America/Sao_Paulo'));
    settings_version := changed::text;

    -- an account pause lifts when a setting changed after it (configure() also clears it)
    SELECT * INTO st FROM wa_notify.state;
    IF st.paused_reason IS NOT NULL AND changed > st.paused_at THEN
        UPDATE wa_notify.state SET paused_reason = NULL, paused_code = NULL, paused_at = NULL;
        st.paused_reason := NULL;
    END IF;
    paused_reason := st.paused_reason;
    paused_code := st.paused_code;
    pause_until := CASE WHEN st.pause_until > now() THEN st.pause_until END;
    rate_factor := st.rate_factor;

    -- lookback: older unsent messages expire
    UPDATE wa_notify.message
       SET status = 'expired', updated_at = now(), next_attempt_at = NULL,
           error_message = format('not sent within lookback_days (%s)', s ->> 'lookback_days')
     WHERE queued AND status = 'queued'
       AND created_at < now() - make_interval(days => coalesce((s ->> 'lookback_days')::integer, 3));
    GET DIAGNOSTICS expired = ROW_COUNT;

    -- templates known not approved, or proved broken: their messages wait
    IF EXISTS (SELECT 1 FROM wa_notify.event e
                WHERE e.held_reason IS NOT NULL
                   OR (use_templates AND e.template_status IN ('PENDING', 'REJECTED', 'PAUSED', 'DISABLED'))) THEN
        UPDATE wa_notify.message m
           SET held_reason = h.reason, updated_at = now()
          FROM (SELECT e.event,
                       coalesce(e.held_reason,
                                format('template %s is %s', e.template_name, e.template_status)) AS reason
                  FROM wa_notify.event e
                 WHERE e.held_reason IS NOT NULL
                    OR (use_templates AND e.template_status IN ('PENDING', 'REJECTED', 'PAUSED', 'DISABLED'))) h
         WHERE m.event = h.event AND m.queued AND m.status = 'queued'
           AND m.held_reason IS DISTINCT FROM h.reason;
    END IF;
    UPDATE wa_notify.message m
       SET held_reason = NULL, updated_at = now()
      FROM wa_notify.event e
     WHERE m.held_reason IS NOT NULL AND m.queued AND m.status = 'queued' AND e.event = m.event
       AND e.held_reason IS NULL
       AND NOT (use_templates AND e.template_status IN ('PENDING', 'REJECTED', 'PAUSED', 'DISABLED'));

    SELECT min(m.next_attempt_at) INTO next_due FROM wa_notify.message m
     WHERE m.queued AND m.status = 'queued' AND m.next_attempt_at > now() AND m.held_reason IS NULL;
    -- the per-batch window, when the worker (re)starts
    IF count_window THEN
        SELECT count(*), min(m.claimed_at) INTO sent_in_window, window_first FROM wa_notify.message m
         WHERE m.claimed_at > now() - make_interval(secs => polling_interval);
    END IF;
END $$;

-------------------------------------------------------------------------------
-- claim: up to n due messages, marked 'sending' and committed by the caller
-------------------------------------------------------------------------------
CREATE FUNCTION wa_notify._claim(n integer, recipient_gap float8 DEFAULT 0,
                                 daily_recipient_limit integer DEFAULT 0)
RETURNS TABLE (id bigint, phone text, event text, body text)
LANGUAGE plpgsql SET search_path = pg_catalog, wa_notify AS $$
#variable_conflict use_column
DECLARE
    r record;
    cc text := (SELECT value FROM wa_notify.setting WHERE name = 'default_country_code');
    disabled text[] := ARRAY(SELECT e.event FROM wa_notify.event e WHERE NOT e.enabled);
    -- the cycle's holds and expiry, applied here too: the worker may claim
    -- several batches between two cycles
    held text[] := ARRAY(SELECT e.event FROM wa_notify.event e
                          WHERE e.held_reason IS NOT NULL
                             OR ((SELECT value FROM wa_notify.setting WHERE name = 'use_templates') = 'true'
                                 AND e.template_status IN ('PENDING', 'REJECTED', 'PAUSED', 'DISABLED')));
    oldest timestamptz := now() - make_interval(days => coalesce(
        (SELECT value FROM wa_notify.setting WHERE name = 'lookback_days')::integer, 3));
    e164 text;
    b text;
    ids bigint[] := '{}';
    phones text[] := '{}';
    events text[] := '{}';
    bodies text[] := '{}';
    recent text[];
    pair_wait text[] := ARRAY(SELECT x.phone FROM wa_notify.message x
                               WHERE x.queued AND x.status = 'queued' AND x.next_attempt_at > now()
                                 AND x.error_class = 'pair_rate');
    nrecent integer := 0;
    fail_ids bigint[] := '{}';
    fail_msgs text[] := '{}';
BEGIN
    IF daily_recipient_limit > 0 THEN
        recent := ARRAY(SELECT DISTINCT wa_notify.phone_key(x.phone) FROM wa_notify.message x
                         WHERE x.claimed_at > now() - interval '24 hours' AND x.phone IS NOT NULL);
        nrecent := cardinality(recent);
    END IF;
    FOR r IN
        SELECT m.id, m.event, m.phone, m.params, m.watch_id
          FROM wa_notify.message m
         WHERE m.queued AND m.status = 'queued'
           AND (m.watch_id IS NULL OR m.resolved_at IS NOT NULL)
           AND (m.next_attempt_at IS NULL OR m.next_attempt_at <= now())
           AND m.held_reason IS NULL
           AND m.created_at >= oldest
         ORDER BY m.next_attempt_at NULLS FIRST, m.id
         LIMIT greatest(n, 0) * 2 + 10
           FOR UPDATE SKIP LOCKED
    LOOP
        EXIT WHEN cardinality(ids) >= n;
        CONTINUE WHEN r.event = ANY (held);
        e164 := r.phone;
        IF r.watch_id IS NULL THEN          -- inserted by hand: normalise here
            BEGIN
                e164 := wa_notify.normalize_phone(r.phone, cc);
            EXCEPTION WHEN OTHERS THEN
                e164 := NULL;
            END;
            IF e164 IS NULL THEN
                fail_ids := fail_ids || r.id;
                fail_msgs := fail_msgs || format('invalid phone number %s: expected E.164 digits or a national number', coalesce(quote_literal(r.phone), 'NULL'));
                CONTINUE;
            END IF;
            IF e164 IS DISTINCT FROM r.phone THEN
                UPDATE wa_notify.message SET phone = e164 WHERE message.id = r.id;
            END IF;
        END IF;
        IF r.event = ANY (disabled) THEN
            UPDATE wa_notify.message
               SET status = 'skipped', error_message = format('event %s is disabled', r.event),
                   updated_at = now()
             WHERE message.id = r.id;
            CONTINUE;
        END IF;
        -- (inline lookup by phone_key: the ninth-digit-aware blacklist key)
        IF EXISTS (SELECT 1 FROM wa_notify.blocked bl WHERE bl.phone_key = wa_notify.phone_key(e164)) THEN
            UPDATE wa_notify.message
               SET status = 'skipped', error_message = 'phone number is blacklisted', updated_at = now()
             WHERE message.id = r.id;
            CONTINUE;
        END IF;
        CONTINUE WHEN e164 = ANY (pair_wait);   -- pair rate limit: this recipient waits
        IF recipient_gap > 0 THEN
            CONTINUE WHEN e164 = ANY (phones);
            CONTINUE WHEN EXISTS (SELECT 1 FROM wa_notify.message x
                                   WHERE x.phone = e164
                                     AND x.claimed_at > now() - make_interval(secs => recipient_gap));
        END IF;
        IF daily_recipient_limit > 0 AND NOT (wa_notify.phone_key(e164) = ANY (recent)) THEN
            CONTINUE WHEN nrecent >= daily_recipient_limit;
            recent := recent || wa_notify.phone_key(e164);
            nrecent := nrecent + 1;
        END IF;
        BEGIN
            b := wa_notify._render(r.event, e164, coalesce(r.params, '{}'), r.id)::text;
        EXCEPTION WHEN OTHERS THEN
            b := NULL;
            fail_ids := fail_ids || r.id;
            fail_msgs := fail_msgs || ('could not render the message: ' || SQLERRM);
            CONTINUE;
        END;
        ids := ids || r.id;
        phones := phones || e164;
        events := events || r.event;
        bodies := bodies || b;
    END LOOP;

    IF cardinality(fail_ids) > 0 THEN
        UPDATE wa_notify.message m
           SET status = 'failed', failed_at = now(), error_message = f.msg, error_class = 'message',
               updated_at = now()
          FROM unnest(fail_ids, fail_msgs) AS f(id, msg)
         WHERE m.id = f.id;
    END IF;

    UPDATE wa_notify.message m
       SET status = 'sending', claimed_at = now(), attempts = m.attempts + 1, updated_at = now()
     WHERE m.id = ANY (ids);

    RETURN QUERY SELECT * FROM unnest(ids, phones, events, bodies);
END $$;

-------------------------------------------------------------------------------
-- record the outcomes of one batch, in the caller's single transaction
--   results: [{"id", "attempted", "http", "code", "class", "error", "wamid",
--              "wa_id", "blacklist", "title", "hint"}]
-------------------------------------------------------------------------------
-- Account-wide effects of a Graph error, shared by the dispatcher (answers to
-- sends) and webhook_receive() (asynchronous failures).
-- account or credentials: dispatch pauses until settings change or a check succeeds
CREATE FUNCTION wa_notify._pause_dispatch(reason text, code integer) RETURNS void
LANGUAGE sql SET search_path = pg_catalog, wa_notify AS $$
    UPDATE wa_notify.state
       SET paused_reason = reason, paused_code = code, paused_at = now()
     WHERE paused_reason IS DISTINCT FROM reason OR paused_code IS DISTINCT FROM code
$$;

-- 131048 (spam rate limit): all sending pauses for a 15-minute cool-down
CREATE FUNCTION wa_notify._spam_cooldown() RETURNS void
LANGUAGE sql SET search_path = pg_catalog, wa_notify AS $$
    UPDATE wa_notify.state
       SET pause_until = now() + interval '900 seconds'
     WHERE pause_until IS NULL OR pause_until < now() + interval '900 seconds'
$$;

CREATE FUNCTION wa_notify._record(results jsonb, max_attempts integer DEFAULT 6)
RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, wa_notify AS $$
#variable_conflict use_column
DECLARE
    r record;
    msg wa_notify.message;
    throttled boolean := false;
    any_ok boolean := false;
    wait float8;
    ev wa_notify.event;
BEGIN
    -- successes: sending -> sent; a status a webhook already wrote is kept
    UPDATE wa_notify.message m
       SET status = CASE WHEN m.status = 'sending' THEN 'sent' ELSE m.status END,
           wamid = coalesce(m.wamid, x.wamid), wa_id = coalesce(m.wa_id, x.wa_id),
           sent_at = coalesce(m.sent_at, now()), http_status = x.http,
           error_code = NULL, error_message = NULL, error_class = NULL,
           next_attempt_at = NULL, held_reason = NULL, updated_at = now()
      FROM jsonb_to_recordset(results) AS x(id bigint, class text, http integer, wamid text, wa_id text)
     WHERE m.id = x.id AND x.class = 'ok';
    any_ok := FOUND;

    -- requests never started (pause or shutdown mid-batch): back to the queue
    UPDATE wa_notify.message m
       SET status = 'queued', attempts = greatest(m.attempts - 1, 0), claimed_at = NULL, updated_at = now()
      FROM jsonb_to_recordset(results) AS x(id bigint, attempted boolean)
     WHERE m.id = x.id AND NOT x.attempted AND m.status = 'sending';

    FOR r IN SELECT * FROM jsonb_to_recordset(results)
                AS x(id bigint, attempted boolean, class text, http integer, code integer,
                     error text, blacklist text, title text, hint text)
             WHERE x.attempted AND x.class <> 'ok'
    LOOP
        SELECT * INTO msg FROM wa_notify.message WHERE message.id = r.id;
        CONTINUE WHEN msg.status <> 'sending';     -- a webhook got there first
        UPDATE wa_notify.message
           SET http_status = nullif(r.http, 0), error_code = r.code, error_class = r.class,
               error_message = r.error, updated_at = now()
         WHERE message.id = r.id;
        CASE r.class
        WHEN 'recipient' THEN
            UPDATE wa_notify.message SET status = 'failed', failed_at = now() WHERE message.id = r.id;
            PERFORM wa_notify._blacklist(msg.phone, r.title, coalesce(r.blacklist, 'auto'), r.code);
        WHEN 'message' THEN
            UPDATE wa_notify.message
               SET status = 'failed', failed_at = now(),
                   error_message = r.error || coalesce(' Hint: ' || r.hint, '')
             WHERE message.id = r.id;
        WHEN 'template' THEN
            UPDATE wa_notify.event
               SET held_reason = format('template %s: %s (%s)', template_name, r.title, r.code)
                                 || coalesce(' ' || r.hint, ''),
                   held_code = r.code, held_at = now(),
                   template_status = CASE r.code WHEN 132015 THEN 'PAUSED'
                                                 WHEN 132016 THEN 'DISABLED'
                                                 ELSE template_status END,
                   template_status_at = CASE WHEN r.code IN (132015, 132016) THEN now()
                                             ELSE template_status_at END
             WHERE event.event = msg.event
            RETURNING * INTO ev;
            UPDATE wa_notify.message
               SET status = 'queued', claimed_at = NULL, held_reason = ev.held_reason, updated_at = now()
             WHERE message.id = r.id;
            UPDATE wa_notify.message SET held_reason = ev.held_reason, updated_at = now()
             WHERE message.event = msg.event AND status = 'queued' AND held_reason IS NULL;
        WHEN 'account' THEN
            PERFORM wa_notify._pause_dispatch(
                format('%s (%s)', r.title, r.code) || coalesce(' ' || r.hint, ''), r.code);
            UPDATE wa_notify.message SET status = 'queued', claimed_at = NULL WHERE message.id = r.id;
        WHEN 'throttled' THEN
            throttled := true;
            wait := least(power(2, msg.attempts) * 2, 300) * (0.5 + random());
            UPDATE wa_notify.message
               SET status = 'queued', claimed_at = NULL,
                   next_attempt_at = now() + make_interval(secs => wait)
             WHERE message.id = r.id;
            IF r.code = 131048 THEN
                PERFORM wa_notify._spam_cooldown();
            END IF;
        WHEN 'pair_rate' THEN
            wait := power(4, least(msg.attempts, 6));
            UPDATE wa_notify.message
               SET status = 'queued', claimed_at = NULL,
                   next_attempt_at = now() + make_interval(secs => wait)
             WHERE message.id = r.id;
            UPDATE wa_notify.message
               SET next_attempt_at = greatest(coalesce(next_attempt_at, now()),
                                              now() + make_interval(secs => wait))
             WHERE message.phone = msg.phone AND status = 'queued' AND message.id <> r.id;
        ELSE                                     -- transient
            IF msg.attempts >= max_attempts THEN
                UPDATE wa_notify.message
                   SET status = 'failed', failed_at = now(),
                       error_message = r.error || format(' (gave up after %s attempts)', msg.attempts)
                 WHERE message.id = r.id;
            ELSE
                wait := least(5 * power(2, msg.attempts - 1), 600) * (0.5 + random());
                UPDATE wa_notify.message
                   SET status = 'queued', claimed_at = NULL,
                       next_attempt_at = now() + make_interval(secs => wait)
                 WHERE message.id = r.id;
            END IF;
        END CASE;
    END LOOP;

    IF throttled THEN
        UPDATE wa_notify.state SET rate_factor = greatest(rate_factor / 2, 1.0 / 64);
    ELSIF any_ok THEN
        UPDATE wa_notify.state SET rate_factor = least(rate_factor * 1.05 + 0.01, 1.0)
         WHERE rate_factor < 1.0;
    END IF;
END $$;

-------------------------------------------------------------------------------
-- what the worker is doing (status card, pg_stat_activity mirrors it)
-------------------------------------------------------------------------------
CREATE FUNCTION wa_notify._report(activity text, next_dispatch_at timestamptz)
RETURNS void LANGUAGE sql SET search_path = pg_catalog, wa_notify AS $$
    UPDATE wa_notify.state
       SET worker_activity = activity, next_dispatch_at = _report.next_dispatch_at,
           worker_pid = pg_backend_pid()
     WHERE worker_activity IS DISTINCT FROM activity
        OR state.next_dispatch_at IS DISTINCT FROM _report.next_dispatch_at
        OR worker_pid IS DISTINCT FROM pg_backend_pid()
$$;

-------------------------------------------------------------------------------
-- connection check: GET {base}/{version}/{phone_number_id}
-------------------------------------------------------------------------------
CREATE FUNCTION wa_notify.check_connection(
    OUT api_status text, OUT display_phone_number text, OUT verified_name text,
    OUT quality_rating text, OUT messaging_limit text, OUT throughput_level text,
    OUT error text)
LANGUAGE plpgsql SET search_path = pg_catalog, wa_notify AS $$
#variable_conflict use_column
DECLARE
    pnid text := (SELECT value FROM wa_notify.setting WHERE name = 'phone_number_id');
    g record;
    j jsonb;
BEGIN
    IF coalesce(pnid, '') = '' OR coalesce((SELECT value FROM wa_notify.setting
                                             WHERE name = 'access_token'), '') = '' THEN
        error := 'access_token and phone_number_id must be configured';
    ELSE
        SELECT * INTO g FROM wa_notify._graph_get(pnid ||
            '?fields=display_phone_number,verified_name,quality_rating,messaging_limit_tier,whatsapp_business_manager_messaging_limit,throughput');
        IF g.error IS NOT NULL THEN
            error := g.error;
        ELSE
            BEGIN
                j := g.body::jsonb;
            EXCEPTION WHEN OTHERS THEN
                j := NULL;
            END;
            IF j IS NULL OR jsonb_typeof(j) <> 'object' THEN
                error := format('HTTP %s: the answer is not JSON', g.http_status);
            ELSIF j ? 'error' THEN
                error := format('HTTP %s: Graph error %s: %s', g.http_status, j #>> '{error,code}',
                                concat_ws(': ', j #>> '{error,message}', j #>> '{error,error_data,details}'));
            ELSIF g.http_status <> 200 THEN
                error := format('HTTP %s', g.http_status);
            ELSE
                display_phone_number := j ->> 'display_phone_number';
                verified_name := j ->> 'verified_name';
                quality_rating := j ->> 'quality_rating';
                messaging_limit := coalesce(j ->> 'whatsapp_business_manager_messaging_limit',
                                            j ->> 'messaging_limit_tier');
                throughput_level := coalesce(j #>> '{throughput,level}', j ->> 'throughput');
            END IF;
        END IF;
    END IF;
    api_status := CASE WHEN error IS NULL THEN 'connected' ELSE 'disconnected' END;
    IF error IS NULL THEN
        UPDATE wa_notify.state s
           SET api_status = 'connected', last_check_at = now(), last_check_error = NULL,
               display_phone_number = check_connection.display_phone_number,
               verified_name = check_connection.verified_name,
               quality_rating = check_connection.quality_rating,
               messaging_limit = check_connection.messaging_limit,
               throughput_level = check_connection.throughput_level,
               paused_reason = NULL, paused_code = NULL, paused_at = NULL;
        PERFORM wa_notify._wake_on_commit();     -- a lifted pause: dispatch now
    ELSE
        UPDATE wa_notify.state s
           SET api_status = 'disconnected', last_check_at = now(), last_check_error = error;
    END IF;
END $$;
COMMENT ON FUNCTION wa_notify.check_connection() IS
    'check the Graph API connection now (GET the phone number); success lifts an account pause';

-------------------------------------------------------------------------------
-- template sync: GET {base}/{version}/{waba_id}/message_templates
-------------------------------------------------------------------------------
CREATE FUNCTION wa_notify.sync_templates(OUT templates integer, OUT events_updated integer,
                                         OUT events_missing integer)
LANGUAGE plpgsql SET search_path = pg_catalog, wa_notify AS $$
#variable_conflict use_column
DECLARE
    waba text := (SELECT value FROM wa_notify.setting WHERE name = 'business_account_id');
    deflang text := (SELECT value FROM wa_notify.setting WHERE name = 'default_language');
    g record;
    j jsonb;
    after text := NULL;
    pages integer := 0;
    found_tpl jsonb := '{}';
    t jsonb;
    st text;
BEGIN
    IF coalesce(waba, '') = '' THEN
        RAISE EXCEPTION 'business_account_id is not configured'
              USING ERRCODE = 'object_not_in_prerequisite_state',
                    HINT = 'Set it with wa_notify.configure(business_account_id => ...).';
    END IF;
    templates := 0;
    LOOP
        SELECT * INTO g FROM wa_notify._graph_get(waba || '/message_templates?fields=name,language,status&limit=100'
                                                  || coalesce('&after=' || after, ''));
        IF g.error IS NOT NULL THEN
            RAISE EXCEPTION 'could not read message templates: %', g.error
                  USING ERRCODE = 'connection_failure';
        END IF;
        BEGIN
            j := g.body::jsonb;
        EXCEPTION WHEN OTHERS THEN
            RAISE EXCEPTION 'could not read message templates: HTTP %, the answer is not JSON', g.http_status
                  USING ERRCODE = 'connection_failure';
        END;
        IF j ? 'error' OR g.http_status <> 200 THEN
            RAISE EXCEPTION 'could not read message templates: HTTP %, Graph error %: %', g.http_status,
                  j #>> '{error,code}', concat_ws(': ', j #>> '{error,message}', j #>> '{error,error_data,details}')
                  USING ERRCODE = 'connection_failure';
        END IF;
        FOR t IN SELECT * FROM jsonb_array_elements(coalesce(j -> 'data', '[]')) LOOP
            templates := templates + 1;
            found_tpl := found_tpl || jsonb_build_object((t ->> 'name') || '/' || (t ->> 'language'),
                                                         t ->> 'status');
        END LOOP;
        pages := pages + 1;
        EXIT WHEN j #>> '{paging,next}' IS NULL OR pages >= 100;
        after := j #>> '{paging,cursors,after}';
        EXIT WHEN after IS NULL;
    END LOOP;

    events_updated := 0;
    events_missing := 0;
    FOR t IN SELECT to_jsonb(e) FROM wa_notify.event e WHERE e.template_name IS NOT NULL LOOP
        st := found_tpl ->> ((t ->> 'template_name') || '/' || coalesce(t ->> 'template_language', deflang));
        IF st IS NULL THEN
            events_missing := events_missing + 1;
            CONTINUE;
        END IF;
        st := CASE WHEN st IN ('APPROVED', 'PENDING', 'REJECTED', 'PAUSED', 'DISABLED') THEN st ELSE 'unknown' END;
        UPDATE wa_notify.event e
           SET template_status = st, template_status_at = now(),
               -- an approved template lifts a hold that a send put on it
               held_reason = CASE WHEN st = 'APPROVED' THEN NULL ELSE held_reason END,
               held_code = CASE WHEN st = 'APPROVED' THEN NULL ELSE held_code END,
               held_at = CASE WHEN st = 'APPROVED' THEN NULL ELSE held_at END
         WHERE e.event = t ->> 'event'
           AND (e.template_status IS DISTINCT FROM st OR (st = 'APPROVED' AND e.held_reason IS NOT NULL));
        IF FOUND THEN
            events_updated := events_updated + 1;
        END IF;
    END LOOP;
END $$;
COMMENT ON FUNCTION wa_notify.sync_templates() IS
    'refresh the events'' template approval statuses from the WhatsApp Business Account';

SELECT wa_notify.wake();
-- 40_webhook.sql: Meta's webhooks (SPEC section 4): the GET handshake and
-- the signed POST, both in C (src/webhook.c), both SECURITY DEFINER with a
-- fixed search_path so that a least-privileged relay role may call them and
-- nothing else (doc/webhooks.md, doc/relay.md).

CREATE FUNCTION wa_notify.webhook_verify(mode text, token text, challenge text)
RETURNS text
AS 'MODULE_PATHNAME', 'wa_notify_webhook_verify'
LANGUAGE C VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, wa_notify;
COMMENT ON FUNCTION wa_notify.webhook_verify(text, text, text) IS
    'Meta''s webhook handshake: the challenge for mode subscribe with the right verify token, else NULL';

CREATE FUNCTION wa_notify.webhook_receive(body bytea, signature text)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'wa_notify_webhook_receive'
LANGUAGE C VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, wa_notify;
COMMENT ON FUNCTION wa_notify.webhook_receive(bytea, text) IS
    'Apply a signed Meta webhook POST: body = the raw bytes, signature = the X-Hub-Signature-256 header';

REVOKE ALL ON FUNCTION wa_notify.webhook_verify(text, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION wa_notify.webhook_receive(bytea, text) FROM PUBLIC;
-- 50_reporting.sql: the message log, counts and the status card (SPEC section 5).

CREATE VIEW wa_notify.message_log AS
SELECT m.id, m.created_at, m.order_key, m.phone, m.event AS type, m.status, m.tracking,
       m.sent_at, m.delivered_at, m.read_at,
       coalesce(m.error_message, m.held_reason) AS error, m.error_code, m.attempts
  FROM wa_notify.message m
 ORDER BY m.created_at DESC, m.id DESC;
COMMENT ON VIEW wa_notify.message_log IS
    'newest first; filter with WHERE created_at >= ... AND created_at < ...; the seed screen shows LIMIT 50';

-- Counts over [from, to): defaults to today in the configured time zone.
-- delivered counts messages delivered or read; read those read; pending those
-- queued or sending; failed those failed; total every message created.
CREATE FUNCTION wa_notify.counts("from" timestamptz DEFAULT NULL, "to" timestamptz DEFAULT NULL,
                                 OUT delivered bigint, OUT read bigint, OUT pending bigint,
                                 OUT failed bigint, OUT total bigint,
                                 OUT sent bigint, OUT skipped bigint, OUT expired bigint,
                                 OUT review bigint)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, wa_notify AS $$
    WITH bounds AS (
        SELECT coalesce($1, date_trunc('day', now() AT TIME ZONE tz) AT TIME ZONE tz) AS lo,
               coalesce($2, 'infinity'::timestamptz) AS hi
          FROM (SELECT value AS tz FROM wa_notify.setting WHERE name = 'timezone') AS z)
    SELECT count(*) FILTER (WHERE m.status IN ('delivered', 'read')),
           count(*) FILTER (WHERE m.status = 'read'),
           count(*) FILTER (WHERE m.status IN ('queued', 'sending')),
           count(*) FILTER (WHERE m.status = 'failed'),
           count(*),
           count(*) FILTER (WHERE m.status IN ('sent', 'delivered', 'read')),
           count(*) FILTER (WHERE m.status = 'skipped'),
           count(*) FILTER (WHERE m.status = 'expired'),
           count(*) FILTER (WHERE m.status = 'review')
      FROM wa_notify.message m, bounds b
     WHERE m.created_at >= b.lo AND m.created_at < b.hi
$$;

CREATE VIEW wa_notify.status AS
WITH cfg AS (
    SELECT max(value) FILTER (WHERE name = 'timezone') AS tz,
           max(value) FILTER (WHERE name = 'api_version') AS api_version,
           max(value) FILTER (WHERE name = 'phone_number_id') AS phone_number_id,
           max(value) FILTER (WHERE name = 'enabled') AS enabled,
           max(value) FILTER (WHERE name = 'webhook_public_url') AS webhook_public_url,
           bool_or(value IS NOT NULL) FILTER (WHERE name = 'access_token') AS token_set,
           bool_or(value IS NOT NULL) FILTER (WHERE name = 'app_secret') AS secret_set
      FROM wa_notify.setting),
today AS (
    SELECT date_trunc('day', now() AT TIME ZONE cfg.tz) AT TIME ZONE cfg.tz AS start FROM cfg),
sent_today AS (
    SELECT count(*) AS messages,
           count(*) FILTER (WHERE m.delivered_at IS NOT NULL OR m.status IN ('delivered', 'read')) AS delivered,
           count(*) FILTER (WHERE m.read_at IS NOT NULL OR m.status = 'read') AS read,
           (SELECT count(*) FROM wa_notify.message f, today
             WHERE f.status = 'failed' AND f.failed_at >= today.start) AS failed
      FROM wa_notify.message m, today
     WHERE m.sent_at >= today.start),
queue AS (
    SELECT count(*) FILTER (WHERE status IN ('queued', 'sending')) AS pending,
           count(*) FILTER (WHERE status = 'queued' AND held_reason IS NOT NULL) AS held,
           string_agg(DISTINCT held_reason, '; ') FILTER (WHERE status = 'queued') AS held_reasons,
           count(*) FILTER (WHERE status = 'review') AS review
      FROM wa_notify.message
     WHERE status IN ('queued', 'sending', 'review'))
SELECT s.api_status,
       s.last_check_at,
       s.last_check_error,
       cfg.api_version,
       wa_notify.mask_phone(s.display_phone_number) AS phone_number,
       cfg.phone_number_id,
       s.verified_name,
       s.quality_rating,
       s.messaging_limit,
       s.throughput_level,
       cfg.token_set AS access_token_set,
       cfg.secret_set AS app_secret_set,
       sent_today.messages AS messages_today,
       sent_today.delivered AS delivered_today,
       sent_today.read AS read_today,
       sent_today.failed AS failed_today,
       queue.pending AS queue_pending,
       queue.held AS queue_held,
       coalesce(queue.held_reasons,
                (SELECT string_agg(e.event || ': ' || e.held_reason, '; ' ORDER BY e.event)
                   FROM wa_notify.event e WHERE e.held_reason IS NOT NULL)) AS held_reasons,
       queue.review AS queue_review,
       s.next_dispatch_at,
       cfg.enabled::boolean AS enabled,
       s.paused_reason,
       s.paused_code,
       s.pause_until,
       EXISTS (SELECT 1 FROM pg_catalog.pg_stat_activity a
                WHERE a.backend_type = 'wa_notify worker' AND a.datname = current_database())
           AS worker_running,
       s.worker_activity,
       CASE WHEN cfg.webhook_public_url IS NULL THEN NULL
            ELSE cfg.webhook_public_url || '/webhook' END AS webhook_url,
       s.webhook_last_verified,
       s.webhook_last_callback
  FROM wa_notify.state s, cfg, sent_today, queue;
COMMENT ON VIEW wa_notify.status IS 'the status card: API, number (masked), today''s messages, queue, worker, webhook';
-- 99_privileges.sql: nothing is granted to PUBLIC but pure helpers; sites
-- grant roles as doc/roles.md says (admin, reporting, webhook relay).

REVOKE ALL ON ALL FUNCTIONS IN SCHEMA wa_notify FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA wa_notify FROM PUBLIC;

-- pure functions with no data access: harmless, and views call them
GRANT EXECUTE ON FUNCTION wa_notify.normalize_phone(text, text), wa_notify.phone_key(text),
                          wa_notify.mask_phone(text), wa_notify.graph_error_class(integer, integer),
                          wa_notify._graph_errors()
      TO PUBLIC;
