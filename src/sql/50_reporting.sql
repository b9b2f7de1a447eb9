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
