-- 25_senders.sql: senders, several WhatsApp numbers in one database (SPEC 8).
--
-- A sender is a number with its own credentials (phone number ID, access
-- token, WABA ID, app secret, API version), its own pacing (max_rate,
-- max_in_flight, daily_recipient_limit, shared by the senders of one
-- portfolio) and its own runtime state (connection check, pause, cool-down,
-- throttle factor).  The sender 'default' always exists: its credentials
-- and pacing are the settings configure() sets (its columns here stay NULL),
-- so a 1.0 install keeps working unchanged, and a NULL column of any sender
-- inherits the global setting.
--
-- Who owns what, and why:
-- - wa_notify.sender: configuration (dumped, but for the 'default' row that
--   CREATE EXTENSION seeds) and the runtime state of the senders other than
--   'default'.  The runtime state of 'default' has one home, wa_notify.state,
--   as in 1.0 (the status card, the webhook's quality updates and resume
--   paths read it there); the _sender_* helpers below are the one place that
--   knows which table holds a sender's state.
-- - wa_notify.sender_secret: the access token and app secret of the senders
--   other than 'default'; never registered with pg_extension_config_dump, so
--   pg_dump never writes it.  With wa_notify.secrets_file set, the file is
--   the only source (SENDER.access_token, SENDER.app_secret) and
--   configure_sender() refuses those arguments.  src/secrets.c
--   (wa_secret_get) is the one reader.
-- - the worker reads every sender's effective configuration and state with
--   _dispatch_senders() once per cycle, claims per sender (_claim's sender
--   argument, 30_dispatch.sql), and the error effects (_apply_error,
--   _record) act on the message's sender.

-------------------------------------------------------------------------------
-- the table
-------------------------------------------------------------------------------
CREATE TABLE wa_notify.sender (
    sender                text PRIMARY KEY CHECK (sender ~ '^[a-z0-9_]{1,63}$'),
    -- configuration (NULL: the global setting; always NULL for 'default')
    phone_number_id       text UNIQUE,
    business_account_id   text,
    api_version           text,
    enabled               boolean,                 -- NULL: true
    max_rate              numeric,
    max_in_flight         integer,                 -- NULL: the setting (auto later)
    daily_recipient_limit integer,
    portfolio             text,                    -- NULL: a portfolio of its own
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now(),
    -- runtime state (for 'default': wa_notify.state holds it, these stay NULL)
    api_status            text CHECK (api_status IN ('unknown', 'connected', 'disconnected')),
    last_check_at         timestamptz,
    last_check_error      text,
    display_phone_number  text,
    verified_name         text,
    quality_rating        text,
    messaging_limit       text,
    throughput_level      text,
    paused_reason         text,                    -- NULL: not paused
    paused_code           integer,
    paused_at             timestamptz,
    pause_until           timestamptz,             -- a cool-down that lifts by itself
    rate_factor           double precision,        -- throttling back-off (NULL: 1)
    quality_updated_at    timestamptz,             -- last phone_number_quality_update webhook
    CONSTRAINT sender_default_uses_settings CHECK (sender <> 'default' OR
        (phone_number_id IS NULL AND business_account_id IS NULL AND api_version IS NULL
         AND max_rate IS NULL AND max_in_flight IS NULL AND daily_recipient_limit IS NULL
         AND api_status IS NULL AND paused_reason IS NULL AND pause_until IS NULL
         AND rate_factor IS NULL))
);
COMMENT ON TABLE wa_notify.sender IS
    'WhatsApp numbers that send (configure_sender()); ''default'' is configure()''s number';
INSERT INTO wa_notify.sender (sender) VALUES ('default');
-- the configuration survives pg_dump; 'default' is seeded by CREATE EXTENSION
SELECT pg_catalog.pg_extension_config_dump('wa_notify.sender', 'WHERE sender <> ''default''');

CREATE TABLE wa_notify.sender_secret (
    sender     text NOT NULL REFERENCES wa_notify.sender ON DELETE CASCADE,
    name       text NOT NULL CHECK (name IN ('access_token', 'app_secret')),
    value      text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (sender, name),
    CHECK (sender <> 'default')             -- default's secrets are settings
);
COMMENT ON TABLE wa_notify.sender_secret IS
    'secrets of the senders other than default (never dumped; read by src/secrets.c)';
REVOKE ALL ON wa_notify.sender_secret FROM PUBLIC;

-- the sender that sends (or sent) a message
ALTER TABLE wa_notify.message ADD COLUMN sender text NOT NULL DEFAULT 'default';
CREATE INDEX message_due_sender ON wa_notify.message (sender, next_attempt_at NULLS FIRST, id)
    WHERE queued;
-- where an opt-out or an error came from (NULL: a manual block, or 1.0)
ALTER TABLE wa_notify.blocked ADD COLUMN sender text;

-------------------------------------------------------------------------------
-- lookups
-------------------------------------------------------------------------------
CREATE FUNCTION wa_notify._sender_for_phone_number_id(phone_number_id text) RETURNS text
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, wa_notify AS $$
    SELECT CASE WHEN _sender_for_phone_number_id.phone_number_id = wa_notify._setting_value('phone_number_id')
                THEN 'default'
                ELSE (SELECT s.sender FROM wa_notify.sender s
                       WHERE s.phone_number_id = _sender_for_phone_number_id.phone_number_id
                         AND s.sender <> 'default') END
$$;
COMMENT ON FUNCTION wa_notify._sender_for_phone_number_id(text) IS
    'internal: the sender whose number this is (NULL: none; default: the settings'' phone_number_id)';

CREATE FUNCTION wa_notify._sender_names() RETURNS text
LANGUAGE sql STABLE SET search_path = pg_catalog, wa_notify AS $$
    SELECT string_agg(s.sender, ', ' ORDER BY s.sender) FROM wa_notify.sender s
$$;
COMMENT ON FUNCTION wa_notify._sender_names() IS 'internal: the known senders, for messages';

-- the sender a context row names (NULL or absent: default); an error text
-- naming the known senders when there is no such sender
CREATE FUNCTION wa_notify._context_sender(ctx jsonb, OUT sender text, OUT error text)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, wa_notify AS $$
BEGIN
    sender := coalesce(nullif(btrim(ctx ->> 'sender'), ''), 'default');
    IF NOT EXISTS (SELECT 1 FROM wa_notify.sender s WHERE s.sender = _context_sender.sender) THEN
        error := format('the context named the sender "%s", which does not exist (senders: %s)',
                        left(sender, 64), wa_notify._sender_names());
    END IF;
END $$;
COMMENT ON FUNCTION wa_notify._context_sender(jsonb) IS
    'internal: the sender a context row routes its message to, or why it cannot';

-- the senders that share a sender's daily_recipient_limit (its portfolio)
CREATE FUNCTION wa_notify._portfolio_members(sender text) RETURNS text[]
LANGUAGE sql STABLE SET search_path = pg_catalog, wa_notify AS $$
    SELECT coalesce(
        (SELECT array_agg(o.sender ORDER BY o.sender) FROM wa_notify.sender s
           JOIN wa_notify.sender o ON o.portfolio = s.portfolio
          WHERE s.sender = _portfolio_members.sender AND s.portfolio IS NOT NULL),
        ARRAY[_portfolio_members.sender])
$$;
COMMENT ON FUNCTION wa_notify._portfolio_members(text) IS
    'internal: the senders of a sender''s business portfolio (itself when it names none)';

-------------------------------------------------------------------------------
-- a sender's runtime state: the one place that knows 'default' keeps its
-- own in wa_notify.state
-------------------------------------------------------------------------------
CREATE FUNCTION wa_notify._sender_pause(sender text, reason text, code integer) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, wa_notify AS $$
BEGIN
    IF sender = 'default' THEN
        PERFORM wa_notify._pause_dispatch(reason, code);
    ELSE
        UPDATE wa_notify.sender s
           SET paused_reason = reason, paused_code = code, paused_at = now()
         WHERE s.sender = _sender_pause.sender
           AND (s.paused_reason IS DISTINCT FROM reason OR s.paused_code IS DISTINCT FROM code);
    END IF;
END $$;

CREATE FUNCTION wa_notify._sender_cooldown(sender text, secs integer) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, wa_notify AS $$
DECLARE
    until timestamptz := now() + make_interval(secs => secs);
BEGIN
    IF sender = 'default' THEN
        UPDATE wa_notify.state SET pause_until = until WHERE pause_until IS NULL OR pause_until < until;
    ELSE
        UPDATE wa_notify.sender s SET pause_until = until
         WHERE s.sender = _sender_cooldown.sender AND (s.pause_until IS NULL OR s.pause_until < until);
    END IF;
END $$;

-- after a batch: a throttle halves the sender's rate factor, a success lets it recover
CREATE FUNCTION wa_notify._sender_rate(sender text, throttled boolean) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, wa_notify AS $$
BEGIN
    IF sender = 'default' THEN
        IF throttled THEN
            UPDATE wa_notify.state SET rate_factor = greatest(rate_factor / 2, 1.0 / 64);
        ELSE
            UPDATE wa_notify.state SET rate_factor = least(rate_factor * 1.05 + 0.01, 1.0)
             WHERE rate_factor < 1.0;
        END IF;
    ELSIF throttled THEN
        UPDATE wa_notify.sender s SET rate_factor = greatest(coalesce(s.rate_factor, 1) / 2, 1.0 / 64)
         WHERE s.sender = _sender_rate.sender;
    ELSE
        UPDATE wa_notify.sender s SET rate_factor = least(s.rate_factor * 1.05 + 0.01, 1.0)
         WHERE s.sender = _sender_rate.sender AND s.rate_factor < 1.0;
    END IF;
END $$;

-- the outcome of a connection check (check_connection(), 30_dispatch_security.sql)
CREATE FUNCTION wa_notify._sender_checked(sender text, error text, display_phone_number text,
                                          verified_name text, quality_rating text,
                                          messaging_limit text, throughput_level text)
RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog, wa_notify AS $$
#variable_conflict use_variable
BEGIN
    IF sender = 'default' AND error IS NULL THEN
        UPDATE wa_notify.state s
           SET api_status = 'connected', last_check_at = now(), last_check_error = NULL,
               display_phone_number = display_phone_number, verified_name = verified_name,
               quality_rating = quality_rating, messaging_limit = messaging_limit,
               throughput_level = throughput_level,
               paused_reason = NULL, paused_code = NULL, paused_at = NULL;
    ELSIF sender = 'default' THEN
        UPDATE wa_notify.state s
           SET api_status = 'disconnected', last_check_at = now(), last_check_error = error;
    ELSIF error IS NULL THEN
        UPDATE wa_notify.sender s
           SET api_status = 'connected', last_check_at = now(), last_check_error = NULL,
               display_phone_number = display_phone_number, verified_name = verified_name,
               quality_rating = quality_rating, messaging_limit = messaging_limit,
               throughput_level = throughput_level,
               paused_reason = NULL, paused_code = NULL, paused_at = NULL
         WHERE s.sender = _sender_checked.sender;
    ELSE
        UPDATE wa_notify.sender s
           SET api_status = 'disconnected', last_check_at = now(), last_check_error = error
         WHERE s.sender = _sender_checked.sender;
    END IF;
END $$;

-- a phone_number_quality_update webhook for a sender's number (for the
-- webhook's routing by metadata.phone_number_id): its quality rating, and the
-- messaging tier of its portfolio (Meta counts it per business portfolio
-- since October 2025: every sender of the portfolio gets it).  Returns how
-- many senders changed.
CREATE FUNCTION wa_notify._sender_quality(sender text, quality_rating text, messaging_limit text)
RETURNS integer LANGUAGE plpgsql SET search_path = pg_catalog, wa_notify AS $$
#variable_conflict use_variable
DECLARE
    members text[] := wa_notify._portfolio_members(sender);
    n integer := 0;
    k integer;
BEGIN
    IF 'default' = ANY (members) THEN
        UPDATE wa_notify.state s
           SET quality_rating = CASE WHEN sender = 'default' THEN coalesce(quality_rating, s.quality_rating)
                                     ELSE s.quality_rating END,
               messaging_limit = coalesce(messaging_limit, s.messaging_limit), quality_updated_at = now()
         WHERE (sender = 'default' AND s.quality_rating IS DISTINCT FROM coalesce(quality_rating, s.quality_rating))
            OR s.messaging_limit IS DISTINCT FROM coalesce(messaging_limit, s.messaging_limit)
            OR s.quality_updated_at IS NULL;
        GET DIAGNOSTICS n = ROW_COUNT;
    END IF;
    UPDATE wa_notify.sender s
       SET quality_rating = CASE WHEN s.sender = _sender_quality.sender
                                 THEN coalesce(quality_rating, s.quality_rating) ELSE s.quality_rating END,
           messaging_limit = coalesce(messaging_limit, s.messaging_limit), quality_updated_at = now()
     WHERE s.sender = ANY (members) AND s.sender <> 'default'
       AND ((s.sender = _sender_quality.sender AND s.quality_rating IS DISTINCT FROM coalesce(quality_rating, s.quality_rating))
            OR s.messaging_limit IS DISTINCT FROM coalesce(messaging_limit, s.messaging_limit)
            OR s.quality_updated_at IS NULL);
    GET DIAGNOSTICS k = ROW_COUNT;
    RETURN n + k;
END $$;
COMMENT ON FUNCTION wa_notify._sender_quality(text, text, text) IS
    'internal: a quality update for a sender''s number: its rating, and its portfolio''s messaging tier';

-- one row per sender: its effective configuration (a NULL column: the
-- setting) and its runtime state, wherever it lives
CREATE FUNCTION wa_notify._sender_effective()
RETURNS TABLE (sender text, phone_number_id text, business_account_id text, api_version text,
               enabled boolean, max_rate numeric, max_in_flight integer,
               daily_recipient_limit integer, portfolio text,
               api_status text, last_check_at timestamptz, last_check_error text,
               display_phone_number text, verified_name text, quality_rating text,
               messaging_limit text, throughput_level text, paused_reason text,
               paused_code integer, paused_at timestamptz, pause_until timestamptz,
               rate_factor float8, next_dispatch_at timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, wa_notify AS $$
    SELECT s.sender,
           CASE WHEN s.sender = 'default' THEN wa_notify._setting_value('phone_number_id') ELSE s.phone_number_id END,
           coalesce(s.business_account_id, wa_notify._setting_value('business_account_id')),
           coalesce(s.api_version, wa_notify._setting_value('api_version')),
           coalesce(s.enabled, true),
           coalesce(s.max_rate, wa_notify._setting_num('max_rate')),
           coalesce(s.max_in_flight, wa_notify._setting_int('max_in_flight')),
           coalesce(s.daily_recipient_limit, wa_notify._setting_int('daily_recipient_limit')),
           s.portfolio,
           coalesce(s.api_status, st.api_status, 'unknown'),
           coalesce(s.last_check_at, st.last_check_at),
           coalesce(s.last_check_error, st.last_check_error),
           coalesce(s.display_phone_number, st.display_phone_number),
           coalesce(s.verified_name, st.verified_name),
           coalesce(s.quality_rating, st.quality_rating),
           coalesce(s.messaging_limit, st.messaging_limit),
           coalesce(s.throughput_level, st.throughput_level),
           coalesce(s.paused_reason, st.paused_reason),
           coalesce(s.paused_code, st.paused_code),
           coalesce(s.paused_at, st.paused_at),
           coalesce(s.pause_until, st.pause_until),
           coalesce(s.rate_factor, st.rate_factor, 1.0),
           st.next_dispatch_at
      FROM wa_notify.sender s
      LEFT JOIN wa_notify.state st ON s.sender = 'default'
$$;
COMMENT ON FUNCTION wa_notify._sender_effective() IS
    'internal: each sender''s effective configuration (settings filling NULL columns) and runtime state';

-- the worker's per-cycle view of the senders: those that may send, each
-- with its portfolio's recipient limit (the smallest of its members')
CREATE FUNCTION wa_notify._dispatch_senders()
RETURNS TABLE (sender text, phone_number_id text, api_version text, ready boolean,
               max_rate float8, max_rate_inherited boolean, max_in_flight integer,
               daily_recipient_limit integer,
               paused_reason text, paused_code integer, pause_until float8, rate_factor float8,
               throughput_level text)
LANGUAGE sql STABLE SET search_path = pg_catalog, wa_notify AS $$
    SELECT e.sender, e.phone_number_id, e.api_version,
           coalesce(e.phone_number_id, '') <> '' AND wa_notify._sender_secret_available(e.sender, 'access_token'),
           e.max_rate::float8,
           NOT EXISTS (SELECT 1 FROM wa_notify.sender s
                        WHERE s.sender = e.sender AND s.max_rate IS NOT NULL),
           e.max_in_flight,
           (SELECT coalesce(min(p.daily_recipient_limit) FILTER (WHERE p.daily_recipient_limit > 0), 0)
              FROM wa_notify._sender_effective() p
             WHERE p.sender = ANY (wa_notify._portfolio_members(e.sender))),
           e.paused_reason, e.paused_code,
           CASE WHEN e.pause_until > now() THEN extract(epoch FROM e.pause_until)::float8 END,
           e.rate_factor, e.throughput_level
      FROM wa_notify._sender_effective() e
     WHERE e.enabled
     ORDER BY e.sender = 'default' DESC, e.sender
$$;
COMMENT ON FUNCTION wa_notify._dispatch_senders() IS
    'internal: the worker''s per-cycle list of enabled senders, their pacing and their state';

-------------------------------------------------------------------------------
-- secrets of the senders (src/secrets.c)
-------------------------------------------------------------------------------
CREATE FUNCTION wa_notify._sender_secret_available(sender text, name text) RETURNS boolean
    AS 'MODULE_PATHNAME', 'wa_notify_sender_secret_available'
    LANGUAGE C STABLE STRICT SECURITY DEFINER SET search_path = pg_catalog, wa_notify;
COMMENT ON FUNCTION wa_notify._sender_secret_available(text, text) IS
    'internal: whether a sender''s secret is set where it is read from; never its value';

-- GET {api_base_url}/{the sender's api_version}/{path} with its token
CREATE FUNCTION wa_notify._graph_get(path text, sender text, OUT http_status integer, OUT body text,
                                     OUT error text)
    AS 'MODULE_PATHNAME', 'wa_notify_graph_get' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION wa_notify._graph_get(text, text) IS
    'internal: GET a Graph API path with a sender''s access token and API version';

-------------------------------------------------------------------------------
-- configure_sender() / remove_sender()
-------------------------------------------------------------------------------
CREATE FUNCTION wa_notify._check_sender_name(sender text) RETURNS void
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF sender IS NULL OR sender !~ '^[a-z0-9_]{1,63}$' THEN
        RAISE EXCEPTION 'invalid sender name %', coalesce(quote_literal(left(sender, 80)), 'NULL')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'A sender is named with 1 to 63 lower-case letters, digits and underscores, such as ''store_2''.';
    END IF;
END $$;

CREATE FUNCTION wa_notify.configure_sender(
    sender                text,
    phone_number_id       text    DEFAULT NULL,
    access_token          text    DEFAULT NULL,
    business_account_id   text    DEFAULT NULL,
    app_secret            text    DEFAULT NULL,
    api_version           text    DEFAULT NULL,
    enabled               boolean DEFAULT NULL,
    max_rate              numeric DEFAULT NULL,
    max_in_flight         integer DEFAULT NULL,
    daily_recipient_limit integer DEFAULT NULL,
    portfolio             text    DEFAULT NULL)
RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, wa_notify AS $$
#variable_conflict use_variable
DECLARE
    secrets jsonb := jsonb_strip_nulls(jsonb_build_object('access_token', access_token,
                                                          'app_secret', app_secret));
    given jsonb := jsonb_strip_nulls(jsonb_build_object(
        'phone_number_id', phone_number_id, 'business_account_id', business_account_id,
        'api_version', api_version, 'max_rate', max_rate, 'max_in_flight', max_in_flight,
        'daily_recipient_limit', daily_recipient_limit));
    v jsonb := '{}';
    k text;
    cur wa_notify.sender;
    other text;
    is_new boolean;
    changed integer := 0;
    n integer;
BEGIN
    PERFORM wa_notify._check_sender_name(sender);
    -- a secret in SQL text: refused while the secrets file holds the secrets,
    -- else the statement is hidden from pg_stat_activity (15_secrets.sql)
    FOR k IN SELECT jsonb_object_keys(secrets) ORDER BY 1 LOOP
        IF sender <> 'default' AND wa_notify._secrets_source() <> 'settings' THEN
            RAISE EXCEPTION '% cannot be set with configure_sender() while wa_notify.secrets_file is set', k
                USING ERRCODE = 'object_not_in_prerequisite_state',
                      DETAIL = format('The secrets are read from the file "%s".', current_setting('wa_notify.secrets_file')),
                      HINT = format('Put the line "%s.%s = ..." into "%s" and reload the server configuration (SELECT pg_reload_conf()).',
                                    sender, k, current_setting('wa_notify.secrets_file'));
        END IF;
        PERFORM wa_notify._refuse_if_secrets_file(k);
    END LOOP;

    -- 'default' is configure()'s sender: its credentials and pacing are settings
    IF sender = 'default' THEN
        changed := wa_notify.configure(phone_number_id => phone_number_id, access_token => access_token,
                                       business_account_id => business_account_id, app_secret => app_secret,
                                       api_version => api_version, max_rate => max_rate,
                                       max_in_flight => max_in_flight,
                                       daily_recipient_limit => daily_recipient_limit);
    ELSE
        -- each value against its setting's rule ('' unsets: the setting applies)
        FOR k IN SELECT jsonb_object_keys(given || secrets) ORDER BY 1 LOOP
            v := v || jsonb_build_object(k, wa_notify._check_setting(k, (given || secrets) ->> k));
        END LOOP;
        IF nullif(v ->> 'api_version', '') IS NOT NULL THEN
            PERFORM wa_notify._check_api_version(v ->> 'api_version');
        END IF;
        SELECT * INTO cur FROM wa_notify.sender s WHERE s.sender = configure_sender.sender FOR UPDATE;
        is_new := NOT FOUND;
        IF is_new AND coalesce(v ->> 'phone_number_id', '') = '' THEN
            RAISE EXCEPTION 'a new sender needs a phone_number_id'
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = format('Add it with configure_sender(''%s'', phone_number_id => ..., access_token => ...); the senders are %s.',
                                    sender, wa_notify._sender_names());
        END IF;
        IF v ->> 'phone_number_id' = '' THEN
            RAISE EXCEPTION 'the phone_number_id of sender "%" cannot be unset', sender
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'Give another phone number ID, or remove the sender with remove_sender().';
        END IF;
        other := wa_notify._sender_for_phone_number_id(v ->> 'phone_number_id');
        IF other IS NOT NULL AND other <> sender THEN
            RAISE EXCEPTION 'the phone number ID % is already the sender "%"', v ->> 'phone_number_id', other
                USING ERRCODE = 'unique_violation',
                      HINT = 'Each WhatsApp number is one sender; change that sender instead.';
        END IF;
        IF is_new THEN
            INSERT INTO wa_notify.sender (sender, api_status, rate_factor)
            VALUES (sender, 'unknown', 1.0);
            changed := 1;
        END IF;
        UPDATE wa_notify.sender s
           SET phone_number_id = CASE WHEN v ? 'phone_number_id' THEN v ->> 'phone_number_id' ELSE s.phone_number_id END,
               business_account_id = CASE WHEN v ? 'business_account_id' THEN nullif(v ->> 'business_account_id', '')
                                          ELSE s.business_account_id END,
               api_version = CASE WHEN v ? 'api_version' THEN nullif(v ->> 'api_version', '') ELSE s.api_version END,
               max_rate = CASE WHEN v ? 'max_rate' THEN (v ->> 'max_rate')::numeric ELSE s.max_rate END,
               max_in_flight = CASE WHEN v ? 'max_in_flight' THEN (v ->> 'max_in_flight')::integer ELSE s.max_in_flight END,
               daily_recipient_limit = CASE WHEN v ? 'daily_recipient_limit' THEN (v ->> 'daily_recipient_limit')::integer
                                            ELSE s.daily_recipient_limit END
         WHERE s.sender = configure_sender.sender
           AND (s.phone_number_id, s.business_account_id, s.api_version, s.max_rate, s.max_in_flight,
                s.daily_recipient_limit) IS DISTINCT FROM
               (CASE WHEN v ? 'phone_number_id' THEN v ->> 'phone_number_id' ELSE s.phone_number_id END,
                CASE WHEN v ? 'business_account_id' THEN nullif(v ->> 'business_account_id', '') ELSE s.business_account_id END,
                CASE WHEN v ? 'api_version' THEN nullif(v ->> 'api_version', '') ELSE s.api_version END,
                CASE WHEN v ? 'max_rate' THEN (v ->> 'max_rate')::numeric ELSE s.max_rate END,
                CASE WHEN v ? 'max_in_flight' THEN (v ->> 'max_in_flight')::integer ELSE s.max_in_flight END,
                CASE WHEN v ? 'daily_recipient_limit' THEN (v ->> 'daily_recipient_limit')::integer ELSE s.daily_recipient_limit END);
        GET DIAGNOSTICS n = ROW_COUNT;
        changed := changed + n;
        FOR k IN SELECT jsonb_object_keys(secrets) ORDER BY 1 LOOP
            IF v ->> k = '' THEN
                DELETE FROM wa_notify.sender_secret x WHERE x.sender = configure_sender.sender AND x.name = k;
            ELSE
                INSERT INTO wa_notify.sender_secret AS x (sender, name, value)
                VALUES (sender, k, v ->> k)
                ON CONFLICT ON CONSTRAINT sender_secret_pkey DO UPDATE
                   SET value = EXCLUDED.value, updated_at = now()
                 WHERE x.value IS DISTINCT FROM EXCLUDED.value;
            END IF;
            GET DIAGNOSTICS n = ROW_COUNT;
            changed := changed + n;
        END LOOP;
    END IF;

    -- enabled and portfolio are the sender row's, 'default' included
    IF portfolio IS NOT NULL AND portfolio <> '' AND portfolio !~ '^[A-Za-z0-9_.-]{1,64}$' THEN
        RAISE EXCEPTION 'invalid portfolio name %', quote_literal(left(portfolio, 80))
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'A portfolio is named with 1 to 64 letters, digits, ''_'', ''.'' or ''-'' (the business portfolio ID will do); '''' unsets it.';
    END IF;
    UPDATE wa_notify.sender s
       SET enabled = coalesce(configure_sender.enabled, s.enabled),
           portfolio = CASE WHEN portfolio IS NULL THEN s.portfolio ELSE nullif(portfolio, '') END
     WHERE s.sender = configure_sender.sender
       AND (s.enabled IS DISTINCT FROM coalesce(configure_sender.enabled, s.enabled)
            OR s.portfolio IS DISTINCT FROM CASE WHEN portfolio IS NULL THEN s.portfolio ELSE nullif(portfolio, '') END);
    GET DIAGNOSTICS n = ROW_COUNT;
    changed := changed + n;

    IF changed > 0 THEN
        -- an account pause lifts when the sender's configuration changes
        UPDATE wa_notify.sender s
           SET updated_at = now(), paused_reason = NULL, paused_code = NULL, paused_at = NULL
         WHERE s.sender = configure_sender.sender AND s.sender <> 'default';
        PERFORM wa_notify.wake();
    END IF;
    RETURN changed;
END $$;
COMMENT ON FUNCTION wa_notify.configure_sender IS
    'add or change a sender (NULL: unchanged; '''': unset, the setting applies); returns how many changed';

CREATE FUNCTION wa_notify.remove_sender(sender text, force boolean DEFAULT false) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, wa_notify AS $$
#variable_conflict use_variable
DECLARE
    pending bigint;
    n integer;
BEGIN
    PERFORM wa_notify._check_sender_name(sender);
    IF sender = 'default' THEN
        RAISE EXCEPTION 'the sender "default" cannot be removed'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'It is the number configure() sets; turn it off with configure_sender(''default'', enabled => false).';
    END IF;
    PERFORM 1 FROM wa_notify.sender s WHERE s.sender = remove_sender.sender FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'there is no sender "%"', sender
            USING ERRCODE = 'undefined_object',
                  HINT = format('The senders are %s.', wa_notify._sender_names());
    END IF;
    SELECT count(*) INTO pending FROM wa_notify.message m
     WHERE m.sender = remove_sender.sender AND m.status IN ('queued', 'sending', 'review');
    IF pending > 0 AND NOT force THEN
        RAISE EXCEPTION 'sender "%" has % message(s) queued', sender, pending
            USING ERRCODE = 'object_in_use',
                  HINT = 'Wait until they are sent, or remove_sender(..., force => true) to mark them failed.';
    END IF;
    UPDATE wa_notify.message m
       SET status = 'failed', failed_at = now(), updated_at = now(), claimed_at = NULL,
           error_class = 'message',
           error_message = format('sender "%s" was removed before the message was sent', sender)
     WHERE m.sender = remove_sender.sender AND m.status IN ('queued', 'sending', 'review');
    GET DIAGNOSTICS n = ROW_COUNT;
    DELETE FROM wa_notify.sender s WHERE s.sender = remove_sender.sender;
    PERFORM wa_notify.wake();
    RETURN n;
END $$;
COMMENT ON FUNCTION wa_notify.remove_sender(text, boolean) IS
    'remove a sender; refused while it has queued messages unless force (they are then failed); returns how many were failed';

-------------------------------------------------------------------------------
-- privileges: the internals are the extension's; the view is readable like status
-------------------------------------------------------------------------------
REVOKE ALL ON FUNCTION wa_notify._sender_pause(text, text, integer), wa_notify._sender_cooldown(text, integer),
                       wa_notify._sender_quality(text, text, text),
                       wa_notify._sender_rate(text, boolean),
                       wa_notify._sender_checked(text, text, text, text, text, text, text),
                       wa_notify._dispatch_senders(), wa_notify._graph_get(text, text),
                       wa_notify.configure_sender(text, text, text, text, text, text, boolean, numeric,
                                                  integer, integer, text),
                       wa_notify.remove_sender(text, boolean)
      FROM PUBLIC;
-- the admins of configure() manage the senders too (10_config.sql)
DO $$
DECLARE
    g text;
BEGIN
    FOREACH g IN ARRAY string_to_array(current_setting('wa_notify_upgrade.configure_grantees'), ',') LOOP
        EXECUTE format('GRANT EXECUTE ON FUNCTION wa_notify.configure_sender, wa_notify.remove_sender TO %s', g);
    END LOOP;
END $$;

-- A sender's configuration or secret changed: every backend's settings
-- snapshot, and the webhook's number -> sender routing and app secrets kept
-- with it (webhook.c), load again (src/settings.c).  Only the configuration
-- columns count: the worker's writes of a sender's runtime state change
-- nothing a backend keeps.
CREATE TRIGGER config_changed AFTER INSERT OR DELETE OR TRUNCATE ON wa_notify.sender
    FOR EACH STATEMENT EXECUTE FUNCTION wa_notify._config_changed();
CREATE TRIGGER config_changed_columns
    AFTER UPDATE OF sender, phone_number_id, business_account_id, api_version, enabled,
                    max_rate, max_in_flight, daily_recipient_limit, portfolio ON wa_notify.sender
    FOR EACH STATEMENT EXECUTE FUNCTION wa_notify._config_changed();
CREATE TRIGGER config_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON wa_notify.sender_secret
    FOR EACH STATEMENT EXECUTE FUNCTION wa_notify._config_changed();
