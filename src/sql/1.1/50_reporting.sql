-- 50_reporting.sql: the status card.  Redefined in 1.1 by several
-- concerns; each adds its columns at the END of the list (CREATE OR REPLACE
-- VIEW keeps the existing columns in place).
--  capture: capture_problems (capture_queue damage, broken watches).

CREATE OR REPLACE VIEW wa_notify.status AS
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
       s.webhook_last_callback,
       -- 1.1 (capture): what keeps captures from being staged or a watch
       -- from working (NULL: nothing)
       (SELECT string_agg(p.problem, '; ' ORDER BY p.ord)
          FROM (SELECT 0::bigint AS ord, wa_notify._capture_queue_damage() AS problem
                UNION ALL
                SELECT w.id, format('watch %s (%s on %s): %s', w.id, w.event, w.source, wp.problem)
                  FROM wa_notify.watch w, LATERAL (SELECT wa_notify._watch_problem(w.id) AS problem) wp
                 WHERE wp.problem IS NOT NULL) p
         WHERE p.problem IS NOT NULL) AS capture_problems
  FROM wa_notify.state s, cfg, sent_today, queue;
COMMENT ON VIEW wa_notify.status IS 'the status card: API, number (masked), today''s messages, queue, worker, webhook';
