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
