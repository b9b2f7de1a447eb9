-- 30_dispatch.sql: what a Graph error does, applied once for the dispatcher
-- and the webhook; recording a batch's outcomes; the skip rule; claiming.
--
-- Who owns what: the error table (codes, classes, effects) is C
-- (src/graph_errors.c), because the worker needs a class inside its send
-- loop without a query; SQL reads its rows through wa_notify._graph_error()
-- and the view wa_notify.graph_errors.  The UPDATEs an error causes are
-- here, in wa_notify._apply_error(), called by _record() (answers to
-- sends) and by webhook_receive() (failed statuses).  1.0 coded them
-- twice, with different outcomes (a template failure only held the event
-- when a webhook reported it; different blacklist and pause texts; the
-- spam-rate cool-down in three files).

-------------------------------------------------------------------------------
-- the error table as SQL sees it
-------------------------------------------------------------------------------
-- 1.0's five columns first, then the effects: the view keeps its grants
-- (CREATE OR REPLACE VIEW may only add columns at the end)
CREATE FUNCTION wa_notify._graph_error_table(
    OUT code integer, OUT class text, OUT blacklist_source text, OUT title text, OUT hint text,
    OUT on_send text, OUT error_hint boolean, OUT hold_template boolean,
    OUT template_status text, OUT pause_account boolean, OUT cooldown_secs integer,
    OUT slow_down boolean, OUT stop_batch boolean, OUT retry_after_secs integer, OUT retry_max integer)
    RETURNS SETOF record AS 'MODULE_PATHNAME', 'wa_notify_graph_errors' LANGUAGE C IMMUTABLE;

CREATE OR REPLACE VIEW wa_notify.graph_errors AS SELECT * FROM wa_notify._graph_error_table();
COMMENT ON VIEW wa_notify.graph_errors IS
    'Graph API error codes and what wa_notify does about each: on_send = the message''s fate after a send (fail, requeue, backoff, throttled, pair_wait); the other columns apply to a send and a webhook alike';
DROP FUNCTION wa_notify._graph_errors();

-- the row for one failure (code NULL: no error object; http NULL: 400)
CREATE FUNCTION wa_notify._graph_error(error_code integer, http_status integer)
    RETURNS wa_notify.graph_errors AS 'MODULE_PATHNAME', 'wa_notify_graph_error' LANGUAGE C IMMUTABLE;
COMMENT ON FUNCTION wa_notify._graph_error(integer, integer) IS
    'internal: the graph_errors row that applies to a failed request or status';

-- 1.0's cool-down helper held its length as a literal; it is now a column
DROP FUNCTION wa_notify._spam_cooldown();

-------------------------------------------------------------------------------
-- may this message be sent at all? (NULL: yes)  _claim and _resolve_pending;
-- the rule is _skip_reasons(), which _claim applies to a batch in one query
-------------------------------------------------------------------------------
CREATE FUNCTION wa_notify._skip_reasons(events text[], phones text[])
RETURNS TABLE (ord bigint, reason text)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, wa_notify AS $$
BEGIN
    -- plpgsql, not sql: the backend keeps the plan (a sql function is planned at every call)
    RETURN QUERY
    SELECT x.ord, coalesce(
               CASE WHEN NOT e.enabled THEN format('event %s is disabled', e.event) END,
               CASE WHEN b.phone_key IS NOT NULL
                    THEN format('phone %s is blacklisted (%s%s)', x.phone, b.source, coalesce(': ' || b.reason, '')) END)
      FROM unnest(events, phones) WITH ORDINALITY AS x(event, phone, ord)
      LEFT JOIN wa_notify.event e ON e.event = x.event
      LEFT JOIN wa_notify.blocked b ON b.phone_key = wa_notify.phone_key(x.phone);
END $$;
COMMENT ON FUNCTION wa_notify._skip_reasons(text[], text[]) IS
    'internal: the skip rule for many messages at once (element i: event i to phone i): why each is skipped (disabled event, blacklisted number), NULL when it may be sent';

CREATE FUNCTION wa_notify._skip_reason(event text, phone text) RETURNS text
LANGUAGE sql STABLE SET search_path = pg_catalog, wa_notify AS $$
    SELECT s.reason FROM wa_notify._skip_reasons(ARRAY[event], ARRAY[phone]) s
$$;
COMMENT ON FUNCTION wa_notify._skip_reason(text, text) IS
    'internal: why a message of this event to this phone is skipped (disabled event, blacklisted number), NULL when it may be sent';

-------------------------------------------------------------------------------
-- what a Graph error does
-------------------------------------------------------------------------------
-- message_id: the message the error is about; code, http: as classified
-- (the worker passes http 0 for a transport error); via: 'send' (an answer
-- to the worker's request: the message is 'sending' and its fate is the
-- row's on_send) or 'webhook' (a failed status: webhook_receive() has
-- already made it 'failed'); error: the readable text (Meta's message and
-- details).  Everything else is the same both ways: error columns, hint,
-- blacklist, template hold, account pause, cool-down, pair-rate wait.
-- Returns the row's slow_down: the dispatcher lowers its rate once per
-- batch (_record), a webhook does not.
CREATE FUNCTION wa_notify._apply_error(message_id bigint, code integer, http integer, via text,
                                       error text, max_attempts integer DEFAULT 6,
                                       recipient text DEFAULT NULL)
RETURNS boolean
LANGUAGE plpgsql SET search_path = pg_catalog, wa_notify AS $$
#variable_conflict use_variable
DECLARE
    ge record;
    msg wa_notify.message;
    ph text;
    held text;
    wait float8;
BEGIN
    IF via IS DISTINCT FROM 'send' AND via IS DISTINCT FROM 'webhook' THEN
        RAISE EXCEPTION 'via must be ''send'' or ''webhook'', not %', coalesce(quote_literal(via), 'NULL')
              USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT * INTO msg FROM wa_notify.message m WHERE m.id = message_id FOR UPDATE;
    IF NOT FOUND OR (via = 'send' AND msg.status <> 'sending') THEN
        RETURN false;                       -- gone, or a webhook got there first
    END IF;
    SELECT * INTO ge FROM wa_notify._graph_error(code, http);

    UPDATE wa_notify.message m
       SET error_code = code, error_class = ge.class,
           error_message = error || CASE WHEN ge.error_hint THEN coalesce(' Hint: ' || ge.hint, '') ELSE '' END,
           http_status = CASE WHEN via = 'send' THEN nullif(http, 0) ELSE m.http_status END,
           updated_at = now()
     WHERE m.id = message_id;

    -- a failure that is tried again later (131049: after 24 h, twice), from
    -- the failure's own time (a webhook's status timestamp), with a new
    -- wamid; never blacklisted (the error's row says so)
    IF ge.retry_after_secs > 0 AND msg.deferred_retries < ge.retry_max THEN
        UPDATE wa_notify.message m
           SET status = 'queued', deferred_retries = m.deferred_retries + 1,
               failed_at = coalesce(m.failed_at, now()),
               next_attempt_at = coalesce(m.failed_at, now()) + make_interval(secs => ge.retry_after_secs),
               error_message = m.error_message || format(' (retry %s of %s after %s)', m.deferred_retries + 1,
                                                         ge.retry_max, make_interval(secs => ge.retry_after_secs)),
               wamid = NULL, claimed_at = NULL
         WHERE m.id = message_id;
        RETURN ge.slow_down;
    END IF;

    -- the message's own fate after a send (a webhook has set it 'failed')
    IF via = 'send' THEN
        CASE ge.on_send
        WHEN 'fail' THEN
            UPDATE wa_notify.message m SET status = 'failed', failed_at = now() WHERE m.id = message_id;
        WHEN 'requeue' THEN
            UPDATE wa_notify.message m SET status = 'queued', claimed_at = NULL WHERE m.id = message_id;
        WHEN 'throttled' THEN
            wait := least(power(2, msg.attempts) * 2, 300) * (0.5 + random());
        WHEN 'pair_wait' THEN
            wait := power(4, least(msg.attempts, 6));
        ELSE                                -- backoff
            IF msg.attempts >= max_attempts THEN
                UPDATE wa_notify.message m
                   SET status = 'failed', failed_at = now(),
                       error_message = m.error_message || format(' (gave up after %s attempts)', msg.attempts)
                 WHERE m.id = message_id;
            ELSE
                wait := least(5 * power(2, msg.attempts - 1), 600) * (0.5 + random());
            END IF;
        END CASE;
        IF wait IS NOT NULL THEN
            UPDATE wa_notify.message m
               SET status = 'queued', claimed_at = NULL, next_attempt_at = now() + make_interval(secs => wait)
             WHERE m.id = message_id;
        END IF;
    END IF;

    -- the recipient's other queued messages wait as long (pair rate limit)
    IF ge.on_send = 'pair_wait' AND msg.phone IS NOT NULL THEN
        wait := power(4, least(msg.attempts, 6));
        UPDATE wa_notify.message m
           SET next_attempt_at = greatest(coalesce(m.next_attempt_at, now()), now() + make_interval(secs => wait)),
               updated_at = now()
         WHERE m.phone = msg.phone AND m.queued AND m.status = 'queued' AND m.id <> message_id;
    END IF;

    -- the number is blacklisted, unless it already is (a manual block or an
    -- opt-out keeps its reason)
    IF ge.blacklist_source IS NOT NULL THEN
        -- the recipient a failed status names (its WhatsApp id); the
        -- message's phone when that is the same number (the phone has the
        -- Brazilian ninth digit the WhatsApp id may lack), or when none is named
        ph := CASE WHEN recipient IS NULL OR recipient = ''
                        OR wa_notify.phone_key(recipient) = wa_notify.phone_key(msg.phone)
                   THEN coalesce(msg.phone, msg.wa_id) ELSE recipient END;
        BEGIN
            IF NOT EXISTS (SELECT 1 FROM wa_notify.blocked b WHERE b.phone_key = wa_notify.phone_key(ph)) THEN
                PERFORM wa_notify._blacklist('+' || ph, ge.title, ge.blacklist_source, code);
                -- which sender's send or status said so (25_senders.sql)
                UPDATE wa_notify.blocked b SET sender = msg.sender
                 WHERE b.phone_key = wa_notify.phone_key(ph);
            END IF;
        EXCEPTION WHEN invalid_parameter_value OR null_value_not_allowed THEN
            RAISE WARNING 'cannot blacklist the recipient of message %: % is not a phone number',
                          message_id, coalesce(quote_literal(ph), 'NULL');
        END;
    END IF;

    -- the template is broken: the event and all its queued messages wait
    IF ge.hold_template THEN
        UPDATE wa_notify.event e
           SET held_reason = format('template %s: %s (%s)', e.template_name, ge.title, code)
                             || coalesce(' ' || ge.hint, ''),
               held_code = code, held_at = now(),
               template_status = coalesce(ge.template_status, e.template_status),
               template_status_at = CASE WHEN ge.template_status IS NOT NULL THEN now()
                                         ELSE e.template_status_at END
         WHERE e.event = msg.event AND (e.held_code IS DISTINCT FROM code OR e.held_reason IS NULL);
        SELECT e.held_reason INTO held FROM wa_notify.event e WHERE e.event = msg.event;
        UPDATE wa_notify.message m SET held_reason = held, updated_at = now()
         WHERE m.event = msg.event AND m.queued AND m.status = 'queued'
           AND m.held_reason IS DISTINCT FROM held;
    END IF;

    -- the account pause and the cool-down are the message's sender's alone
    IF ge.pause_account THEN
        PERFORM wa_notify._sender_pause(msg.sender,
                                        format('%s (%s)', ge.title, code) || coalesce(' ' || ge.hint, ''), code);
    END IF;

    IF ge.cooldown_secs > 0 THEN
        PERFORM wa_notify._sender_cooldown(msg.sender, ge.cooldown_secs);
    END IF;
    RETURN ge.slow_down;
END $$;
COMMENT ON FUNCTION wa_notify._apply_error(bigint, integer, integer, text, text, integer, text) IS
    'internal: apply what a Graph error does (wa_notify.graph_errors) to its message, the blacklist, the event and its sender''s dispatch state';

-------------------------------------------------------------------------------
-- record the outcomes of one batch, in the caller's single transaction:
-- parallel arrays, one element per message (typed: no JSON in between)
--   attempted: its request started; ok: the answer was a success (then
--   wamid, wa_id, user_id: the BSUID); else code (NULL: no error object), error
-------------------------------------------------------------------------------
DROP FUNCTION wa_notify._record(jsonb, integer);
CREATE FUNCTION wa_notify._record(ids bigint[], attempted boolean[], ok boolean[], http integer[],
                                  codes integer[], errors text[], wamids text[], wa_ids text[],
                                  user_ids text[], max_attempts integer DEFAULT 6)
RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, wa_notify AS $$
#variable_conflict use_column
DECLARE
    r record;
    throttled text[] := '{}';               -- senders a throttle answered
    sent text[];                            -- senders with a success
BEGIN
    -- successes: sending -> sent; a status a webhook already wrote is kept;
    -- their senders as the update returns them (not read again)
    WITH done AS (
        UPDATE wa_notify.message m
           SET status = CASE WHEN m.status = 'sending' THEN 'sent' ELSE m.status END,
               wamid = coalesce(m.wamid, x.wamid), wa_id = coalesce(m.wa_id, x.wa_id),
               recipient_user_id = coalesce(x.user_id, m.recipient_user_id),   -- 40_cloud_api.sql
               sent_at = coalesce(m.sent_at, now()), http_status = x.http,
               error_code = NULL, error_message = NULL, error_class = NULL,
               next_attempt_at = NULL, held_reason = NULL, updated_at = now()
          FROM unnest(ids, ok, http, wamids, wa_ids, user_ids) AS x(id, ok, http, wamid, wa_id, user_id)
         WHERE m.id = x.id AND x.ok
           AND m.id = ANY (ids)   -- the batch's rows by their key, whatever the statistics say
        RETURNING m.sender)
    SELECT array_agg(DISTINCT d.sender) INTO sent FROM done d;
    sent := coalesce(sent, '{}');

    -- requests never started (pause or shutdown mid-batch): back to the
    -- queue (the usual batch has none: then no query reads its rows again)
    IF false = ANY (attempted) THEN
        UPDATE wa_notify.message m
           SET status = 'queued', attempts = greatest(m.attempts - 1, 0), claimed_at = NULL, updated_at = now()
          FROM unnest(ids, attempted) AS x(id, attempted)
         WHERE m.id = x.id AND NOT x.attempted AND m.status = 'sending' AND m.id = ANY (ids);
    END IF;

    IF false = ANY (ok) THEN
        FOR r IN SELECT * FROM unnest(ids, attempted, ok, http, codes, errors)
                    AS x(id, attempted, ok, http, code, error)
                 WHERE x.attempted AND NOT x.ok
        LOOP
            IF wa_notify._apply_error(r.id, r.code, r.http, 'send', r.error, max_attempts) THEN
                throttled := throttled || (SELECT m.sender FROM wa_notify.message m WHERE m.id = r.id);
            END IF;
        END LOOP;
    END IF;

    -- each sender's rate factor: halved once per batch by a throttle, else
    -- recovering after a success (25_senders.sql)
    PERFORM wa_notify._sender_rate(t.sender, true) FROM (SELECT DISTINCT unnest(throttled) AS sender) t;
    PERFORM wa_notify._sender_rate(t.sender, false)
       FROM unnest(sent) AS t(sender) WHERE NOT t.sender = ANY (throttled);
END $$;
COMMENT ON FUNCTION wa_notify._record(bigint[], boolean[], boolean[], integer[], integer[], text[], text[], text[], text[], integer) IS
    'internal: the worker records a batch''s outcomes (one element per message in each array)';

-------------------------------------------------------------------------------
-- claim: up to n due messages, marked 'sending' and committed by the caller
-------------------------------------------------------------------------------
-- normalize_phone()'s number, NULL where it raises (no subtransaction per message)
CREATE FUNCTION wa_notify._phone_e164(phone text, default_country_code text)
    RETURNS text AS 'MODULE_PATHNAME', 'wa_notify_phone_e164' LANGUAGE C IMMUTABLE;
COMMENT ON FUNCTION wa_notify._phone_e164(text, text) IS
    'internal: normalize_phone(), NULL for a number it refuses';

-- the body _claim hands the worker: _render()'s, as the text POSTed
CREATE FUNCTION wa_notify._render_body(event text, phone text, params jsonb, message_id bigint)
    RETURNS text AS 'MODULE_PATHNAME', 'wa_notify_render_body' LANGUAGE C STABLE;
COMMENT ON FUNCTION wa_notify._render_body(text, text, jsonb, bigint) IS
    'internal: _render()''s request body as text, as POSTed (the worker''s claim)';

-- the head of one sender's queue: up to k due messages, locked (others'
-- locks skipped), in queue order.  The planner must walk message_due_sender
-- in its order and stop after k rows: with the table's statistics taken
-- while the queue was short (the usual case before a burst), it would
-- rather read every queued row and sort them, at every claim, which made a
-- claim cost as much as the queue is long.  enable_sort = off leaves it the
-- index walk (the function's one query; plpgsql keeps its plan).
CREATE FUNCTION wa_notify._queue_head(sender text, k integer, oldest timestamptz)
RETURNS TABLE (id bigint, event text, phone text, params jsonb, watch_id bigint)
LANGUAGE plpgsql SET search_path = pg_catalog, wa_notify SET enable_sort = off AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    SELECT m.id, m.event, m.phone, m.params, m.watch_id
      FROM wa_notify.message m
     WHERE m.queued AND m.status = 'queued' AND m.sender = _queue_head.sender
       AND (m.watch_id IS NULL OR m.resolved_at IS NOT NULL)
       AND (m.next_attempt_at IS NULL OR m.next_attempt_at <= now())
       AND m.held_reason IS NULL
       AND m.created_at >= oldest
     ORDER BY m.next_attempt_at NULLS FIRST, m.id
     LIMIT greatest(k, 0)
       FOR UPDATE SKIP LOCKED;
END $$;
COMMENT ON FUNCTION wa_notify._queue_head(text, integer, timestamptz) IS
    'internal: _claim''s candidates, the due head of one sender''s queue, locked, in queue order';

-- one sender's messages (25_senders.sql); daily_recipient_limit is its
-- portfolio's, counted over the messages of every sender of the portfolio
DROP FUNCTION wa_notify._claim(integer, float8, integer);
CREATE FUNCTION wa_notify._claim(n integer, recipient_gap float8 DEFAULT 0,
                                 daily_recipient_limit integer DEFAULT 0, sender text DEFAULT 'default')
RETURNS TABLE (id bigint, phone text, event text, body text)
LANGUAGE plpgsql SET search_path = pg_catalog, wa_notify AS $$
#variable_conflict use_column
DECLARE
    r record;
    cc text := (SELECT value FROM wa_notify.setting WHERE name = 'default_country_code');
    -- the cycle's holds and expiry, applied here too: the worker may claim
    -- several batches between two cycles
    held text[] := ARRAY(SELECT e.event FROM wa_notify.event e
                          WHERE e.held_reason IS NOT NULL
                             OR ((SELECT value FROM wa_notify.setting WHERE name = 'use_templates') = 'true'
                                 AND e.template_status IN ('PENDING', 'REJECTED', 'PAUSED', 'DISABLED')));
    oldest timestamptz := now() - make_interval(days => coalesce(
        (SELECT value FROM wa_notify.setting WHERE name = 'lookback_days')::integer, 3));
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
    portfolio text[] := wa_notify._portfolio_members(sender);
    fail_ids bigint[] := '{}';
    fail_msgs text[] := '{}';
    -- the candidates, locked, in queue order (element i of each: one message)
    c_ids bigint[];
    c_events text[];
    c_phones text[];
    c_params jsonb[];
    c_watches bigint[];
    c_e164 text[];     -- the numbers as sent (a hand-inserted one normalised; NULL: invalid)
    shared_e164 text[];
    c_skips text[];    -- why each candidate is skipped (NULL: it may be sent)
    params jsonb[] := '{}';
    renamed_ids bigint[] := '{}';
    renamed_phones text[] := '{}';
    k_ids bigint[];
    k_phones text[];
    k_events text[];
BEGIN
    IF daily_recipient_limit > 0 THEN
        recent := ARRAY(SELECT DISTINCT wa_notify.phone_key(x.phone) FROM wa_notify.message x
                         WHERE x.claimed_at > now() - interval '24 hours' AND x.phone IS NOT NULL
                           AND x.sender = ANY (portfolio));
        nrecent := cardinality(recent);
    END IF;
    -- the arrays are built in one pass over the head in its order (the
    -- function scan's ordinality is its order: no sort); an ORDER BY in
    -- each aggregate sorted the head once per array
    SELECT array_agg(h.id), array_agg(h.event), array_agg(h.phone), array_agg(h.params),
           array_agg(h.watch_id),
           -- a captured message's number was normalised when it was resolved
           array_agg(CASE WHEN h.watch_id IS NULL THEN wa_notify._phone_e164(h.phone, cc) ELSE h.phone END)
      INTO c_ids, c_events, c_phones, c_params, c_watches, c_e164
      FROM (SELECT * FROM wa_notify._queue_head(_claim.sender, greatest(n, 0) * 2 + 10, oldest) WITH ORDINALITY
                   AS q(id, event, phone, params, watch_id, ord)
             ORDER BY q.ord) h;
    -- the numbers that more than one candidate has (usually none)
    shared_e164 := ARRAY(SELECT x.e164 FROM unnest(c_e164) AS x(e164)
                          WHERE x.e164 IS NOT NULL GROUP BY x.e164 HAVING count(*) > 1);
    -- the skip rule for the whole head, element i for candidate i
    c_skips := ARRAY(SELECT s.reason FROM wa_notify._skip_reasons(c_events, c_e164) s ORDER BY s.ord);
    IF cardinality(c_skips) IS DISTINCT FROM coalesce(cardinality(c_ids), 0) THEN
        RAISE EXCEPTION 'wa_notify._skip_reasons() gave % reasons for % candidates',
                        cardinality(c_skips), coalesce(cardinality(c_ids), 0)
              USING ERRCODE = 'internal_error';
    END IF;
    -- the rule that reads other rows per candidate, whether the recipient
    -- gap is still open, in one query (a query per message cost more than
    -- the rest of the claim).  The query is a walk of the head in its order
    -- (the ordinality's: no join to reorder it, no sort, no window), so the
    -- loop reads it as it goes and the gap is probed only for the
    -- candidates the loop gets to, not for the whole head
    FOR r IN
        SELECT c.id, c.event, c.phone, c.e164, c.params, c.watch_id, c.skip,
               c.e164 = ANY (shared_e164) AS shared,
               g.last_claim > now() - make_interval(secs => recipient_gap) AS gap_open
          FROM unnest(c_ids, c_events, c_phones, c_e164, c_params, c_watches, c_skips)
               WITH ORDINALITY AS c(id, event, phone, e164, params, watch_id, skip, ord)
          -- the recipient's last claim: one probe of message_phone_claimed
          -- per candidate, whatever the statistics say (a condition on
          -- claimed_at would be planned on message_claimed, estimated from
          -- statistics that know no message of the last seconds, and read
          -- every message claimed within the gap: thousands at full speed)
          LEFT JOIN LATERAL (SELECT max(x.claimed_at) AS last_claim FROM wa_notify.message x
                              WHERE recipient_gap > 0 AND x.phone = c.e164) g ON true
         ORDER BY c.ord
    LOOP
        EXIT WHEN cardinality(ids) >= n;
        CONTINUE WHEN r.event = ANY (held);
        IF r.watch_id IS NULL THEN          -- inserted by hand
            IF r.e164 IS NULL THEN
                fail_ids := fail_ids || r.id;
                fail_msgs := fail_msgs || format('invalid phone number %s: expected E.164 digits or a national number', coalesce(quote_literal(r.phone), 'NULL'));
                CONTINUE;
            END IF;
            IF r.e164 IS DISTINCT FROM r.phone THEN   -- stored normalised, sent or not
                renamed_ids := renamed_ids || r.id;
                renamed_phones := renamed_phones || r.e164;
            END IF;
        END IF;
        IF r.skip IS NOT NULL THEN
            UPDATE wa_notify.message
               SET status = 'skipped', error_message = r.skip, updated_at = now()
             WHERE message.id = r.id;
            CONTINUE;
        END IF;
        CONTINUE WHEN r.e164 = ANY (pair_wait);   -- pair rate limit: this recipient waits
        IF recipient_gap > 0 THEN
            CONTINUE WHEN r.shared AND r.e164 = ANY (phones);
            CONTINUE WHEN r.gap_open;
        END IF;
        IF daily_recipient_limit > 0 AND NOT (wa_notify.phone_key(r.e164) = ANY (recent)) THEN
            CONTINUE WHEN nrecent >= daily_recipient_limit;
            recent := recent || wa_notify.phone_key(r.e164);
            nrecent := nrecent + 1;
        END IF;
        ids := ids || r.id;
        phones := phones || r.e164;
        events := events || r.event;
        params := params || coalesce(r.params, '{}');
    END LOOP;

    IF cardinality(renamed_ids) > 0 THEN
        UPDATE wa_notify.message m SET phone = x.phone
          FROM unnest(renamed_ids, renamed_phones) AS x(id, phone)
         WHERE m.id = x.id AND m.id = ANY (renamed_ids);
    END IF;

    -- the bodies, rendered together (one subtransaction); when one of them
    -- fails, the batch is rendered again message by message, and only
    -- those that fail are left out (failed, with the error)
    BEGIN
        bodies := ARRAY(SELECT wa_notify._render_body(x.event, x.phone, x.params, x.id)
                          FROM unnest(ids, events, phones, params) WITH ORDINALITY AS x(id, event, phone, params, ord)
                         ORDER BY x.ord);
    EXCEPTION WHEN OTHERS THEN
        k_ids := '{}'; k_phones := '{}'; k_events := '{}'; bodies := '{}';
        FOR i IN 1 .. cardinality(ids) LOOP
            BEGIN
                b := wa_notify._render_body(events[i], phones[i], params[i], ids[i]);
                k_ids := k_ids || ids[i];
                k_phones := k_phones || phones[i];
                k_events := k_events || events[i];
                bodies := bodies || b;
            EXCEPTION WHEN OTHERS THEN
                fail_ids := fail_ids || ids[i];
                fail_msgs := fail_msgs || ('could not render the message: ' || SQLERRM);
            END;
        END LOOP;
        ids := k_ids; phones := k_phones; events := k_events;
    END;

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

REVOKE ALL ON FUNCTION wa_notify._graph_error(integer, integer), wa_notify._skip_reason(text, text),
                       wa_notify._apply_error(bigint, integer, integer, text, text, integer, text),
                       wa_notify._record(bigint[], boolean[], boolean[], integer[], integer[], text[], text[], text[], text[], integer),
                       wa_notify._claim(integer, float8, integer, text),
                       wa_notify._skip_reasons(text[], text[]),
                       wa_notify._queue_head(text, integer, timestamptz),
                       wa_notify._render_body(text, text, jsonb, bigint),
                       wa_notify._phone_e164(text, text)
      FROM PUBLIC;
-- pure, as 1.0's _graph_errors() was: the view calls it
GRANT EXECUTE ON FUNCTION wa_notify._graph_error_table() TO PUBLIC;
