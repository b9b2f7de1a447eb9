-- 16_configure_secrets.sql: configure() as in 1.0, plus the secrets-file
-- refusal (its first statements).  Another 1.1 change rewrites configure()
-- table-driven: when merging, keep that rewrite and carry over only the
-- three PERFORMs below, before any validation, one per secret argument:
--     PERFORM wa_notify._refuse_if_secrets_file('<argument name>');
-- for access_token, app_secret and webhook_verify_token when given non-NULL
-- (and the same in configure_sender() for its access_token and app_secret).

CREATE OR REPLACE FUNCTION wa_notify.configure(
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
    -- secrets: refused while wa_notify.secrets_file is set (15_secrets.sql)
    IF access_token IS NOT NULL THEN
        PERFORM wa_notify._refuse_if_secrets_file('access_token');
    END IF;
    IF app_secret IS NOT NULL THEN
        PERFORM wa_notify._refuse_if_secrets_file('app_secret');
    END IF;
    IF webhook_verify_token IS NOT NULL THEN
        PERFORM wa_notify._refuse_if_secrets_file('webhook_verify_token');
    END IF;

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
