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
