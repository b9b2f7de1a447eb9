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
