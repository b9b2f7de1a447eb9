-- 10_config.sql: settings are declared once, as rows of wa_notify.setting.
--
-- Each row says what its setting is (type, range, pattern, allowed values,
-- hints), and everything else reads that row: configure() validates every
-- argument with one generic validator (_check_setting), the settings view
-- shows the rules, _setting_value() and the typed accessors give the value
-- or the default, and the C snapshot (src/settings.c) loads every setting by
-- name in one query.  A default (such as the Graph API version) is the row's
-- default_value and nowhere else; hints name it through "{default}".
--
-- Who owns what: this file owns the rules of each setting and their SQL
-- readers; src/settings.c owns the typed C copy of the values (one query per
-- transaction).  Cross-setting rules (min_delay <= max_delay, quiet hours set
-- together) stay explicit in configure().

-------------------------------------------------------------------------------
-- the rules, as columns (an installed 1.0 gets them too; values are kept)
-------------------------------------------------------------------------------
ALTER TABLE wa_notify.setting
    ADD COLUMN type text NOT NULL DEFAULT 'text'
        CHECK (type IN ('text', 'secret', 'url', 'url_pattern', 'integer', 'numeric',
                        'boolean', 'time', 'timezone', 'enum', 'keywords')),
    ADD COLUMN min_value numeric,           -- integer, numeric: inclusive bounds
    ADD COLUMN max_value numeric,
    ADD COLUMN range_unit text,             -- the bounds' unit, in words, for the hint
    ADD COLUMN pattern text,                -- text, secret, url: a regular expression
    ADD COLUMN allowed_values text[],       -- enum
    ADD COLUMN hint text,                   -- what a valid value looks like; "{default}": the default
    ADD COLUMN unset_hint text;             -- NULL: '' unsets it; else '' is refused with this hint

-- settings new in 1.1 (other fragments may have seeded some of these rows
-- with ON CONFLICT DO NOTHING: this is their definition)
INSERT INTO wa_notify.setting AS s (name, default_value, value, unit, is_secret, description) VALUES
 ('context_timeout',          '5',     '5',     's', false, 'Longest run of one capture context query'),
 ('allow_marketing_category', 'false', 'false', NULL, false, 'Send with a template Meta moved to MARKETING (off: its event is held)'),
 ('log_retention_days',       '400',   '400',   'd', false, 'Log rows older than this are removed (0: keep for ever)'),
 ('anonymize_after_days',     '90',    '90',    'd', false, 'Phone, wa_id, BSUID and params are replaced after this (0: never)'),
 ('review_window',            '900',   '900',   's', false, 'How long a review message waits for a status webhook before it is queued again'),
 ('review_resend',            'auto',  'auto',  NULL, false, 'auto: requeue review messages after review_window when webhooks flow; never: leave them for a person')
ON CONFLICT (name) DO UPDATE
   SET default_value = EXCLUDED.default_value, unit = EXCLUDED.unit,
       is_secret = EXCLUDED.is_secret, description = EXCLUDED.description,
       value = coalesce(s.value, EXCLUDED.value);
-- max_in_flight: 0 = auto is the new default (src/in_flight.c); an install
-- that kept 1.0's default of 32 requests in flight gets auto
UPDATE wa_notify.setting
   SET default_value = '0',
       description = 'Maximum concurrent requests to the Graph API (0: auto, sized from the response time and the allowed rate)'
 WHERE name = 'max_in_flight';
UPDATE wa_notify.setting SET value = '0' WHERE name = 'max_in_flight' AND value = '32';

UPDATE wa_notify.setting s
   SET type = r.type, min_value = r.lo, max_value = r.hi, range_unit = r.range_unit,
       pattern = r.pattern, allowed_values = r.allowed, hint = r.hint, unset_hint = r.unset_hint
  FROM (VALUES
    ('access_token', 'secret', NULL::numeric, NULL::numeric, NULL, '^[A-Za-z0-9._~+/=|-]{16,}$', NULL::text[],
     'The access token is a permanent System User token from Meta Business Settings: 16 or more characters, no spaces.', NULL),
    ('app_secret', 'secret', NULL, NULL, NULL, '^[A-Za-z0-9]{16,128}$', NULL,
     'The app secret is shown in the Meta app dashboard (Settings, Basic): letters and digits, no spaces.', NULL),
    ('phone_number_id', 'text', NULL, NULL, NULL, '^[0-9]{1,32}$', NULL,
     'The phone number ID is digits only, as shown in WhatsApp Manager (API Setup).', NULL),
    ('app_id', 'text', NULL, NULL, NULL, '^[0-9]{1,32}$', NULL, 'The app ID is digits only.', NULL),
    ('business_account_id', 'text', NULL, NULL, NULL, '^[0-9]{1,32}$', NULL,
     'The WhatsApp Business Account ID (WABA ID) is digits only.', NULL),
    ('api_version', 'text', NULL, NULL, NULL, '^v[0-9]{1,3}\.[0-9]{1,2}$', NULL,
     'The Graph API version looks like "{default}".', 'The Graph API version looks like "{default}".'),
    ('api_base_url', 'url', NULL, NULL, NULL, '^https?://[A-Za-z0-9.\[\]:-]+(/[A-Za-z0-9._~/-]*)?$', NULL,
     'Give an http(s) URL without query or fragment, such as "{default}".',
     'Give an http(s) URL such as "{default}".'),
    ('enabled', 'boolean', NULL, NULL, NULL, NULL, NULL, NULL, NULL),
    ('use_templates', 'boolean', NULL, NULL, NULL, NULL, NULL, NULL, NULL),
    ('allow_marketing_category', 'boolean', NULL, NULL, NULL, NULL, NULL, NULL, NULL),
    ('default_language', 'text', NULL, NULL, NULL, '^[a-z]{2,3}(_[A-Z]{2})?$', NULL,
     'A language code is two or three lower-case letters, optionally followed by "_" and a two-letter region, such as "{default}", "en" or "es_AR".',
     'default_language cannot be unset: give a language code such as "{default}".'),
    ('polling_interval', 'integer', 60, 3600, 'seconds', NULL, NULL, NULL, NULL),
    ('min_delay', 'numeric', 0, 3600, 'seconds', NULL, NULL, NULL, NULL),
    ('max_delay', 'numeric', 0, 3600, 'seconds', NULL, NULL, NULL, NULL),
    ('max_per_batch', 'integer', 1, 100000, 'messages', NULL, NULL, NULL, NULL),
    ('lookback_days', 'integer', 1, 365, 'days', NULL, NULL, NULL, NULL),
    ('max_rate', 'numeric', 0, 1000, 'messages per second (0: no cap)', NULL, NULL, NULL, NULL),
    ('max_in_flight', 'integer', 0, 1000, 'requests (0: auto)', NULL, NULL, NULL, NULL),
    ('recipient_gap', 'numeric', 0, 86400, 'seconds', NULL, NULL, NULL, NULL),
    ('daily_recipient_limit', 'integer', 0, 10000000, 'recipients (0: no limit)', NULL, NULL, NULL, NULL),
    ('webhook_max_body', 'integer', 65536, 67108864, 'bytes', NULL, NULL, NULL, NULL),
    ('context_timeout', 'integer', 1, 300, 'seconds', NULL, NULL, NULL, NULL),
    ('log_retention_days', 'integer', 0, 36500, 'days (0: keep for ever)', NULL, NULL, NULL, NULL),
    ('anonymize_after_days', 'integer', 0, 36500, 'days (0: never)', NULL, NULL, NULL, NULL),
    ('review_window', 'integer', 60, 86400, 'seconds', NULL, NULL, NULL, NULL),
    ('quiet_hours_start', 'time', NULL, NULL, NULL, NULL, NULL,
     'Quiet hours are given as local times "HH:MM" (00:00 to 23:59), or '''' to turn them off.', NULL),
    ('quiet_hours_end', 'time', NULL, NULL, NULL, NULL, NULL,
     'Quiet hours are given as local times "HH:MM" (00:00 to 23:59), or '''' to turn them off.', NULL),
    ('timezone', 'timezone', NULL, NULL, NULL, NULL, NULL,
     'Give a time zone name from pg_timezone_names, such as "{default}".', NULL),
    ('default_country_code', 'text', NULL, NULL, NULL, '^[1-9][0-9]{0,2}$', NULL,
     'A country calling code is 1 to 3 digits without "+", such as "{default}".',
     'default_country_code cannot be unset: give 1 to 3 digits without "+", such as "{default}".'),
    ('webhook_public_url', 'url', NULL, NULL, NULL, '^https://[A-Za-z0-9.:-]+(/[A-Za-z0-9._~/-]*)?$', NULL,
     'Meta only calls https URLs: give the relay''s public URL, such as "https://shop.example.com/whatsapp".', NULL),
    ('webhook_verify_token', 'secret', NULL, NULL, NULL, '^[A-Za-z0-9._~-]{16,128}$', NULL,
     'The verify token is 16 to 128 characters from A-Z, a-z, 0-9, ".", "_", "~", "-"; rotate_verify_token() makes a random one.',
     'Use rotate_verify_token() for a new random token, or give 16 to 128 characters from A-Z, a-z, 0-9, ".", "_", "~", "-".'),
    ('default_tracking_url', 'url_pattern', NULL, NULL, NULL, NULL, NULL, NULL, NULL),
    ('opt_out_keywords', 'keywords', NULL, NULL, NULL, NULL, NULL,
     'Give a non-empty list of non-empty keywords, such as ARRAY[''PARAR'', ''SAIR'', ''STOP'', ''CANCELAR''].', NULL),
    ('delivery_semantics', 'enum', NULL, NULL, NULL, NULL, '{at_most_once,at_least_once}',
     'delivery_semantics is "at_most_once" (a message in flight at a crash goes to review) or "at_least_once" (it is sent again).', NULL),
    ('review_resend', 'enum', NULL, NULL, NULL, NULL, '{auto,never}',
     'review_resend is "auto" (a review message is queued again after review_window when webhooks flow) or "never" (it waits for a person).', NULL)
  ) AS r(name, type, lo, hi, range_unit, pattern, allowed, hint, unset_hint)
 WHERE s.name = r.name;
ALTER TABLE wa_notify.setting
    ADD CONSTRAINT setting_secret_type CHECK (is_secret = (type = 'secret')),
    ADD CONSTRAINT setting_range CHECK ((type IN ('integer', 'numeric'))
                                        = (min_value IS NOT NULL AND max_value IS NOT NULL)),
    ADD CONSTRAINT setting_enum CHECK ((type = 'enum') = (allowed_values IS NOT NULL));

-------------------------------------------------------------------------------
-- reading settings: the value, else the row's default
-------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION wa_notify._setting_value(name text) RETURNS text
LANGUAGE sql STABLE SET search_path = pg_catalog, wa_notify AS $$
    SELECT coalesce(s.value, s.default_value) FROM wa_notify.setting s WHERE s.name = _setting_value.name
$$;

CREATE FUNCTION wa_notify._setting_bool(name text) RETURNS boolean
LANGUAGE sql STABLE SET search_path = pg_catalog, wa_notify AS $$
    SELECT wa_notify._setting_value(name)::boolean
$$;

CREATE FUNCTION wa_notify._setting_int(name text) RETURNS integer
LANGUAGE sql STABLE SET search_path = pg_catalog, wa_notify AS $$
    SELECT wa_notify._setting_value(name)::integer
$$;

CREATE FUNCTION wa_notify._setting_num(name text) RETURNS numeric
LANGUAGE sql STABLE SET search_path = pg_catalog, wa_notify AS $$
    SELECT wa_notify._setting_value(name)::numeric
$$;

COMMENT ON FUNCTION wa_notify._setting_value(text) IS 'internal: a setting''s value, else its default';
COMMENT ON FUNCTION wa_notify._setting_bool(text) IS 'internal: a boolean setting (value, else default)';
COMMENT ON FUNCTION wa_notify._setting_int(text) IS 'internal: an integer setting (value, else default)';
COMMENT ON FUNCTION wa_notify._setting_num(text) IS 'internal: a numeric setting (value, else default)';

-- a hint with "{default}" filled in
CREATE FUNCTION wa_notify._setting_hint(hint text, default_value text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT replace(hint, '{default}', coalesce(default_value, ''))
$$;

-------------------------------------------------------------------------------
-- the one validator: a value given as text -> the text to store ('' unsets)
-------------------------------------------------------------------------------
CREATE FUNCTION wa_notify._check_setting(name text, v text) RETURNS text
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, wa_notify AS $$
DECLARE
    s wa_notify.setting;
    hint text;
    n numeric;
    words text[];
BEGIN
    SELECT * INTO s FROM wa_notify.setting x WHERE x.name = _check_setting.name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown setting "%"', name
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'The settings are listed in the view wa_notify.settings.';
    END IF;
    IF v IS NULL THEN
        RETURN NULL;
    END IF;
    hint := wa_notify._setting_hint(s.hint, s.default_value);
    IF v = '' AND s.unset_hint IS NOT NULL THEN
        PERFORM wa_notify._invalid(name, wa_notify._setting_hint(s.unset_hint, s.default_value));
    END IF;
    CASE s.type
    WHEN 'integer', 'numeric' THEN
        BEGIN
            n := v::numeric;
        EXCEPTION WHEN invalid_text_representation THEN
            n := NULL;
        END;
        IF n IS NULL OR (s.type = 'integer' AND n <> trunc(n)) THEN
            PERFORM wa_notify._invalid(name,
                format('%s is a %s between %s and %s %s.', name,
                       CASE s.type WHEN 'integer' THEN 'whole number' ELSE 'number' END,
                       s.min_value, s.max_value, s.range_unit),
                format('The value given was "%s".', v));
        END IF;
        RETURN wa_notify._check_range(name, n, s.min_value, s.max_value, s.range_unit);
    WHEN 'boolean' THEN
        BEGIN
            RETURN v::boolean::text;
        EXCEPTION WHEN invalid_text_representation THEN
            PERFORM wa_notify._invalid(name, format('%s is true or false.', name),
                                       format('The value given was "%s".', v));
        END;
    WHEN 'time' THEN
        RETURN wa_notify._check_pattern(name, v, '^([01][0-9]|2[0-3]):[0-5][0-9]$', hint);
    WHEN 'timezone' THEN
        BEGIN
            PERFORM now() AT TIME ZONE v;
            IF v = '' THEN
                RAISE invalid_parameter_value;
            END IF;
        EXCEPTION WHEN invalid_parameter_value THEN
            PERFORM wa_notify._invalid(name, hint, format('The value given was "%s".', v));
        END;
        RETURN v;
    WHEN 'enum' THEN
        IF v <> ALL (s.allowed_values) THEN
            PERFORM wa_notify._invalid(name, hint, format('The value given was "%s".', v));
        END IF;
        RETURN v;
    WHEN 'keywords' THEN
        BEGIN
            words := v::text[];
        EXCEPTION WHEN invalid_text_representation OR array_subscript_error THEN
            words := '{}';
        END;
        IF cardinality(words) = 0
           OR EXISTS (SELECT 1 FROM unnest(words) w WHERE w IS NULL OR btrim(w) = '') THEN
            PERFORM wa_notify._invalid(name, hint);
        END IF;
        RETURN (SELECT array_agg(upper(btrim(w)) ORDER BY o)
                  FROM unnest(words) WITH ORDINALITY AS t(w, o))::text;
    WHEN 'url_pattern' THEN
        IF v <> '' THEN
            PERFORM wa_notify._check_tracking_pattern(name, v);
        END IF;
        RETURN v;
    WHEN 'url' THEN
        RETURN rtrim(wa_notify._check_pattern(name, v, s.pattern, hint), '/');
    ELSE                                    -- text, secret
        RETURN wa_notify._check_pattern(name, v, s.pattern, hint, s.is_secret);
    END CASE;
END $$;
COMMENT ON FUNCTION wa_notify._check_setting(text, text) IS
    'internal: validate a value for a setting against its row; returns the text to store ('''': unset)';

-- event template languages follow default_language's rule
CREATE OR REPLACE FUNCTION wa_notify._language_ok(setting text, v text) RETURNS text
LANGUAGE sql STABLE SET search_path = pg_catalog, wa_notify AS $$
    SELECT wa_notify._check_pattern(setting, v, s.pattern, wa_notify._setting_hint(s.hint, s.default_value))
      FROM wa_notify.setting s WHERE s.name = 'default_language'
$$;

-- every default obeys its own rule (a wrong row fails the install, not a user)
SELECT wa_notify._check_setting(name, default_value) FROM wa_notify.setting
 WHERE default_value IS NOT NULL;

-------------------------------------------------------------------------------
-- configure(name => value, ...): NULL leaves a setting unchanged, '' unsets a
-- setting that may be unset.  Every argument is validated (by its row) before
-- anything is written; a call that changes nothing changes nothing.  1.0's
-- arguments keep their names and order; 1.1's follow.
-------------------------------------------------------------------------------
-- grants on the 1.0 function (a site's admin role) survive its re-creation
SELECT pg_catalog.set_config('wa_notify_upgrade.configure_grantees',
       coalesce(string_agg(DISTINCT quote_ident(r.rolname), ','), ''), true)
  FROM pg_catalog.pg_proc p, aclexplode(p.proacl) a, pg_catalog.pg_roles r
 WHERE p.oid = 'wa_notify.configure'::regproc AND a.privilege_type = 'EXECUTE'
   AND r.oid = a.grantee AND a.grantee <> p.proowner;

DROP FUNCTION wa_notify.configure(text, text, text, text, text, text, text, boolean, boolean, text,
                                  integer, numeric, numeric, integer, integer, numeric, integer,
                                  numeric, integer, text, text, text, text, text, text, text,
                                  text[], text, integer);

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
    webhook_max_body      integer DEFAULT NULL,
    -- 1.1
    context_timeout          integer DEFAULT NULL,
    allow_marketing_category boolean DEFAULT NULL,
    log_retention_days       integer DEFAULT NULL,
    anonymize_after_days     integer DEFAULT NULL,
    review_window            integer DEFAULT NULL,
    review_resend            text    DEFAULT NULL)
RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, wa_notify AS $$
DECLARE
    given jsonb := jsonb_strip_nulls(jsonb_build_object(
        'access_token', access_token, 'phone_number_id', phone_number_id, 'app_id', app_id,
        'app_secret', app_secret, 'business_account_id', business_account_id,
        'api_version', api_version, 'api_base_url', api_base_url, 'enabled', enabled,
        'use_templates', use_templates, 'default_language', default_language,
        'polling_interval', polling_interval, 'min_delay', min_delay, 'max_delay', max_delay,
        'max_per_batch', max_per_batch, 'lookback_days', lookback_days, 'max_rate', max_rate,
        'max_in_flight', max_in_flight, 'recipient_gap', recipient_gap,
        'daily_recipient_limit', daily_recipient_limit, 'quiet_hours_start', quiet_hours_start,
        'quiet_hours_end', quiet_hours_end, 'timezone', timezone,
        'default_country_code', default_country_code, 'webhook_public_url', webhook_public_url,
        'webhook_verify_token', webhook_verify_token, 'default_tracking_url', default_tracking_url,
        'opt_out_keywords', opt_out_keywords::text, 'delivery_semantics', delivery_semantics,
        'webhook_max_body', webhook_max_body, 'context_timeout', context_timeout,
        'allow_marketing_category', allow_marketing_category,
        'log_retention_days', log_retention_days, 'anonymize_after_days', anonymize_after_days,
        'review_window', review_window, 'review_resend', review_resend));
    new_values jsonb := '{}';
    k text;
    v text;
    cur_min numeric;
    cur_max numeric;
    qs text;
    qe text;
    changed integer := 0;
    n integer;
BEGIN
    -- a secret given in SQL text: refused while the secrets file holds the
    -- secrets, else hidden from pg_stat_activity (15_secrets.sql)
    FOR k IN SELECT s.name FROM wa_notify.setting s WHERE given ? s.name AND s.is_secret ORDER BY s.name LOOP
        PERFORM wa_notify._refuse_if_secrets_file(k);
    END LOOP;

    -- each value against its own row
    FOR k IN SELECT s.name FROM wa_notify.setting s WHERE given ? s.name ORDER BY s.name LOOP
        new_values := new_values || jsonb_build_object(k, wa_notify._check_setting(k, given ->> k));
    END LOOP;

    -- rules beyond one row: an expired Graph API version (40_cloud_api.sql)
    IF nullif(new_values ->> 'api_version', '') IS NOT NULL THEN
        PERFORM wa_notify._check_api_version(new_values ->> 'api_version');
    END IF;

    -- rules across settings
    cur_min := coalesce((new_values ->> 'min_delay')::numeric, wa_notify._setting_num('min_delay'));
    cur_max := coalesce((new_values ->> 'max_delay')::numeric, wa_notify._setting_num('max_delay'));
    IF cur_min > cur_max THEN
        RAISE EXCEPTION 'min_delay (%) is greater than max_delay (%)', cur_min, cur_max
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'The random delay between sends is drawn from [min_delay, max_delay]: min_delay must not exceed max_delay; set both in one call if needed.';
    END IF;
    IF new_values ?| ARRAY['quiet_hours_start', 'quiet_hours_end'] THEN
        qs := coalesce(new_values ->> 'quiet_hours_start', wa_notify._setting_value('quiet_hours_start'), '');
        qe := coalesce(new_values ->> 'quiet_hours_end', wa_notify._setting_value('quiet_hours_end'), '');
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
    END IF;

    -- everything is valid: apply
    FOR k, v IN SELECT key, value FROM jsonb_each_text(new_values) LOOP
        UPDATE wa_notify.setting s SET value = nullif(v, ''), updated_at = now()
         WHERE s.name = k AND s.value IS DISTINCT FROM nullif(v, '');
        GET DIAGNOSTICS n = ROW_COUNT;
        changed := changed + n;
    END LOOP;
    IF changed > 0 THEN
        -- an account pause lifts when settings change (doc/design.md, "Dispatch and Graph errors")
        UPDATE wa_notify.state
           SET settings_changed_at = now(), paused_reason = NULL, paused_code = NULL, paused_at = NULL;
        PERFORM wa_notify.wake();
    END IF;
    RETURN changed;
END $$;
COMMENT ON FUNCTION wa_notify.configure IS
    'set settings by name (NULL: unchanged; '''': unset); returns how many changed';

REVOKE ALL ON FUNCTION wa_notify.configure FROM PUBLIC;
DO $$
DECLARE
    g text;
BEGIN
    FOREACH g IN ARRAY string_to_array(current_setting('wa_notify_upgrade.configure_grantees'), ',') LOOP
        EXECUTE format('GRANT EXECUTE ON FUNCTION wa_notify.configure TO %s', g);
    END LOOP;
END $$;

REVOKE ALL ON FUNCTION wa_notify._setting_bool(text), wa_notify._setting_int(text),
                       wa_notify._setting_num(text), wa_notify._check_setting(text, text)
    FROM PUBLIC;
-- pure, and the settings view calls it
GRANT EXECUTE ON FUNCTION wa_notify._setting_hint(text, text) TO PUBLIC;

-------------------------------------------------------------------------------
-- settings view: like pg_settings, secrets masked, with each setting's rule
-------------------------------------------------------------------------------
CREATE OR REPLACE VIEW wa_notify.settings AS
SELECT name,
       CASE WHEN is_secret AND value IS NOT NULL THEN '********' ELSE value END AS value,
       CASE WHEN is_secret AND default_value IS NOT NULL THEN '********' ELSE default_value END AS default_value,
       description, unit, is_secret, updated_at,
       type, min_value, max_value, allowed_values,
       wa_notify._setting_hint(hint, default_value) AS hint,
       unset_hint IS NULL AND type IN ('text', 'secret', 'url', 'url_pattern', 'time') AS may_be_unset
  FROM wa_notify.setting
 ORDER BY name;

-------------------------------------------------------------------------------
-- the C snapshot (src/settings.c) is per transaction; a write to the
-- configuration tables drops it in the writing backend at once
-------------------------------------------------------------------------------
CREATE FUNCTION wa_notify._config_changed() RETURNS trigger
    AS 'MODULE_PATHNAME', 'wa_notify_config_changed' LANGUAGE C;
COMMENT ON FUNCTION wa_notify._config_changed() IS
    'internal: this backend reads settings, events and carriers again';
CREATE TRIGGER config_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON wa_notify.setting
    FOR EACH STATEMENT EXECUTE FUNCTION wa_notify._config_changed();
CREATE TRIGGER config_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON wa_notify.event
    FOR EACH STATEMENT EXECUTE FUNCTION wa_notify._config_changed();
CREATE TRIGGER config_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON wa_notify.carrier
    FOR EACH STATEMENT EXECUTE FUNCTION wa_notify._config_changed();
REVOKE ALL ON FUNCTION wa_notify._config_changed() FROM PUBLIC;
