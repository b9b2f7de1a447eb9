-- 50_reporting.sql: the status card, redefined in full (1.0's columns in
-- their order, then the 1.1 columns at the end).  1.0's access_token_set and
-- app_secret_set now say whether the secret is set where it is read from
-- (the secrets file when set).  Added in 1.1: api_version_expires,
-- api_version_warning, billable_this_month, estimated_cost_this_month,
-- cost_currency, template_warnings (the 2026 Cloud API); secrets_source,
-- secrets_to_set (secrets); worker_started_at, worker_restarts; capture_problems
-- (capture_queue damage, broken watches); review_reasons (60_review.sql);
-- worker_service (the launcher:
-- 'served', or why this database is not, such as wa_notify.max_databases);
-- history_problems (80_retention.sql:
-- rows in the archive's default partition, maintenance deferred or late).
-- Today's figures and this month's cost read the message tally
-- (45_tally.sql: counts per hour, kept as messages change), the queue the
-- two indexes that hold the waiting messages: what the card costs does not
-- grow with the history, nor with the day of the month.
--
-- counts() is redefined here too: it reads the tally, which counts the live
-- queue and the archive, so anonymized and archived messages count.

-- The start of this day or month in the configured time zone (the card's
-- and the senders' "today" and "this month", counts()' default).
-- SECURITY DEFINER: the card's reader has no right on wa_notify.setting.
CREATE FUNCTION wa_notify._local_start(unit text) RETURNS timestamptz
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, wa_notify AS $$
DECLARE
    tz text := coalesce(wa_notify._setting_value('timezone'), 'UTC');
BEGIN
    RETURN date_trunc(unit, now() AT TIME ZONE tz) AT TIME ZONE tz;
END $$;

-- Today's messages per sender from the tally (45_tally.sql): sent (and of
-- them delivered and read) by sent_at, failed by failed_at.  The status card
-- sums them, the senders view shows them; the one reader of the 's' key.
CREATE FUNCTION wa_notify._tally_today(OUT sender text, OUT sent bigint, OUT delivered bigint,
                                       OUT read bigint, OUT failed bigint)
RETURNS SETOF record LANGUAGE sql STABLE SET search_path = pg_catalog, wa_notify AS $$
    SELECT x.sender, sum(x.sent)::bigint, sum(x.delivered)::bigint, sum(x.read)::bigint, sum(x.failed)::bigint
      FROM (SELECT t.sender, t.n AS sent,
                   CASE WHEN t.k LIKE 'd%' THEN t.n ELSE 0 END AS delivered,
                   CASE WHEN t.k LIKE '%r' THEN t.n ELSE 0 END AS read, 0 AS failed
              FROM wa_notify._tally_sum('s', wa_notify._local_start('day'), 'infinity') t
            UNION ALL
            SELECT f.sender, 0, 0, 0, f.n
              FROM wa_notify._tally_sum('f', wa_notify._local_start('day'), 'infinity') f) x
     GROUP BY x.sender
$$;
GRANT EXECUTE ON FUNCTION wa_notify._tally_today() TO PUBLIC;

-- The waiting messages per sender, status and hold, through the two
-- indexes that hold them: message_due (queued) and message_unconfirmed
-- (sending, review), never a scan of the live table (statistics taken
-- while a burst was queued would plan one: 60,000 rows read for an empty
-- queue), nor a bitmap scan (a plain index scan marks the entries a sent
-- burst left dead, so that the next look skips them).  The status card and
-- the senders view read it.
CREATE FUNCTION wa_notify._waiting(OUT sender text, OUT status text, OUT held_reason text, OUT messages bigint)
RETURNS SETOF record
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, wa_notify SET enable_seqscan = off SET enable_bitmapscan = off SET jit = off AS $$
    SELECT m.sender, m.status, m.held_reason, count(*) FROM wa_notify.message m WHERE m.queued GROUP BY 1, 2, 3
    UNION ALL
    SELECT u.sender, u.status, u.held_reason, count(*) FROM wa_notify._message_unconfirmed u GROUP BY 1, 2, 3
$$;
GRANT EXECUTE ON FUNCTION wa_notify._waiting() TO PUBLIC;

CREATE OR REPLACE VIEW wa_notify.status AS
WITH cfg AS (
    SELECT max(value) FILTER (WHERE name = 'timezone') AS tz,
           max(value) FILTER (WHERE name = 'api_version') AS api_version,
           max(value) FILTER (WHERE name = 'phone_number_id') AS phone_number_id,
           max(value) FILTER (WHERE name = 'enabled') AS enabled,
           max(value) FILTER (WHERE name = 'webhook_public_url') AS webhook_public_url,
           wa_notify._secret_available('access_token') AS token_set,
           wa_notify._secret_available('app_secret') AS secret_set
      FROM wa_notify.setting),
sent_today AS (
    SELECT coalesce(sum(t.sent), 0)::bigint AS messages, coalesce(sum(t.delivered), 0)::bigint AS delivered,
           coalesce(sum(t.read), 0)::bigint AS read, coalesce(sum(t.failed), 0)::bigint AS failed
      FROM wa_notify._tally_today() t),
queue AS (
    SELECT coalesce(sum(w.messages) FILTER (WHERE w.status IN ('queued', 'sending')), 0)::bigint AS pending,
           coalesce(sum(w.messages) FILTER (WHERE w.status = 'queued' AND w.held_reason IS NOT NULL), 0)::bigint AS held,
           string_agg(DISTINCT w.held_reason, '; ') FILTER (WHERE w.status = 'queued') AS held_reasons,
           coalesce(sum(w.messages) FILTER (WHERE w.status = 'review'), 0)::bigint AS review,
           string_agg(DISTINCT w.held_reason, '; ') FILTER (WHERE w.status = 'review') AS review_reasons
      FROM wa_notify._waiting() w)
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
       s.webhook_last_callback,
       -- 1.1, the 2026 Cloud API (40_cloud_api.sql, 50_costs.sql)
       ver.expires AS api_version_expires,
       ver.warning AS api_version_warning,
       month.billable AS billable_this_month,
       month.estimated_cost AS estimated_cost_this_month,
       month.currency AS cost_currency,
       (SELECT string_agg(format('template %s (%s) will move from %s to %s on %s', t.name, t.language,
                                 coalesce(t.category, '?'), t.pending_category,
                                 coalesce(t.pending_category_at::text, '?')), '; ' ORDER BY t.name, t.language)
          FROM wa_notify.template t WHERE t.pending_category IS NOT NULL) AS template_warnings,
       -- 1.1, secrets (15_secrets.sql): where they come from, what a restore left unset
       wa_notify._secrets_source() AS secrets_source,
       nullif(ARRAY(SELECT n FROM unnest(s.secrets_to_set) AS n
                     WHERE NOT (wa_notify._secrets_source() = 'file' AND wa_notify._secret_available(n))),
              '{}') AS secrets_to_set,
       -- 1.1, the worker: since when it runs, how often it was restarted
       w.started_at AS worker_started_at,
       CASE WHEN w.starts > 0 THEN w.starts - 1 END AS worker_restarts,
       -- 1.1 (capture): what keeps captures from being staged or a watch
       -- from working (NULL: nothing)
       (SELECT string_agg(p.problem, '; ' ORDER BY p.ord)
          FROM (SELECT 0::bigint AS ord, wa_notify._capture_queue_damage() AS problem
                UNION ALL
                SELECT wt.id, format('watch %s (%s on %s): %s', wt.id, wt.event, wt.source, wp.problem)
                  FROM wa_notify.watch wt, LATERAL (SELECT wa_notify._watch_problem(wt.id) AS problem) wp
                 WHERE wp.problem IS NOT NULL) p
         WHERE p.problem IS NOT NULL) AS capture_problems,
       -- 1.1 (webhooks per sender, 40_webhook.sql): changes for a number that is no sender's
       s.webhook_unknown_numbers,
       -- 1.1, one worker per database: served, or unserved and why
       w.service AS worker_service,
       -- 1.1 (80_retention.sql): what keeps the history from being archived,
       -- anonymized or shed (NULL: nothing)
       wa_notify._history_problems() AS history_problems,
       -- 1.1 (60_review.sql): why messages stay in review past review_window
       queue.review_reasons
  FROM wa_notify.state s, cfg, sent_today, queue, wa_notify._worker_shared() w,
       LATERAL wa_notify._api_version_status(cfg.api_version) AS ver,
       -- this month's billable messages and their cost, as costs() counts
       -- them (inline: a reporting role reads the card without EXECUTE on
       -- costs()), from the tally's billable hours (45_tally.sql): each
       -- day, market prefix and category looks its rate up once
       LATERAL (SELECT sum(g.billable) AS billable,
                       sum(g.billable * r.price) AS estimated_cost,
                       string_agg(DISTINCT r.currency, ', ') AS currency
                  FROM (SELECT split_part(t.k, '/', 2) AS pricing_category, (t.at AT TIME ZONE cfg.tz)::date AS day,
                               split_part(t.k, '/', 1) AS prefix, sum(t.n) AS billable
                          FROM wa_notify._tally_sum('b', wa_notify._local_start('month'), 'infinity') t
                         GROUP BY 1, 2, 3) g
                  LEFT JOIN LATERAL (
                       SELECT rt.price, rt.currency FROM wa_notify.rate rt
                        WHERE rt.category = g.pricing_category
                          AND rt.valid_from <= g.day
                          AND (rt.market = '*' OR g.prefix LIKE rt.market || '%')
                        ORDER BY (rt.market = '*'), length(rt.market) DESC, rt.valid_from DESC
                        LIMIT 1) r ON true) AS month;
COMMENT ON VIEW wa_notify.status IS 'the status card: API, number (masked), today''s messages, queue, worker (since, restarts, service), webhook, secrets, capture problems, Graph API version expiry, this month''s cost';

CREATE OR REPLACE FUNCTION wa_notify.counts("from" timestamptz DEFAULT NULL, "to" timestamptz DEFAULT NULL,
                                 OUT delivered bigint, OUT read bigint, OUT pending bigint,
                                 OUT failed bigint, OUT total bigint,
                                 OUT sent bigint, OUT skipped bigint, OUT expired bigint,
                                 OUT review bigint)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, wa_notify SET jit = off AS $$
    SELECT coalesce(sum(t.n) FILTER (WHERE t.k IN ('delivered', 'read')), 0)::bigint,
           coalesce(sum(t.n) FILTER (WHERE t.k = 'read'), 0)::bigint,
           coalesce(sum(t.n) FILTER (WHERE t.k IN ('queued', 'sending')), 0)::bigint,
           coalesce(sum(t.n) FILTER (WHERE t.k = 'failed'), 0)::bigint,
           coalesce(sum(t.n), 0)::bigint,
           coalesce(sum(t.n) FILTER (WHERE t.k IN ('sent', 'delivered', 'read')), 0)::bigint,
           coalesce(sum(t.n) FILTER (WHERE t.k = 'skipped'), 0)::bigint,
           coalesce(sum(t.n) FILTER (WHERE t.k = 'expired'), 0)::bigint,
           coalesce(sum(t.n) FILTER (WHERE t.k = 'review'), 0)::bigint
      FROM wa_notify._tally_sum('c', coalesce($1, wa_notify._local_start('day')),
                                coalesce($2, 'infinity')) t
$$;
