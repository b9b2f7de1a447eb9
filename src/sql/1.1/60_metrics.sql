-- 60_metrics.sql: what Prometheus reads, through Debian's
-- prometheus-postgres-exporter and contrib/prometheus/wa_notify_queries.yaml
-- (one query per view below; doc/monitoring.md).  The exporter's role needs
-- no right on the log: members of pg_monitor (the exporter's usual role) may
-- read these views, which carry no phone, name or secret.
--
-- Why the figures cost the same with a year of history as with none: each
-- view reads only bounded sets through an index:
-- - the queue: the queued rows (message_due, WHERE queued) and the claimed,
--   unanswered ones (_message_unconfirmed, index message_unconfirmed);
-- - the message counters: today's messages only (message_created, a range
--   from local midnight in the setting timezone), the figures counts() gives
--   for today.  They are exported as Prometheus counters that start again at
--   local midnight: rate() and increase() read the drop as a counter reset;
-- - the sender's state: the one-row wa_notify.state; the worker: shared
--   memory and pg_stat_activity.
-- No view scans the log, so a scrape every 15 s is cheap; a message created
-- before midnight and delivered after it is counted on the day it was
-- created (as counts() counts it).
--
-- Per sender: every view has a sender column, one row (or one row per
-- status) for each sender of wa_notify.sender (25_senders.sql), zeros
-- included; a sender's state comes from _sender_effective(), the one
-- place that knows where it lives (not the senders view, whose today's
-- counts a scrape does not need).  The
-- webhook's last callback is the database's (one relay: state).

-- (_message_unconfirmed and its index: 32_in_flight.sql)

CREATE VIEW wa_notify.metrics_queue AS
WITH queued AS (
    SELECT m.sender,
           count(*) AS queued, count(*) FILTER (WHERE m.held_reason IS NOT NULL) AS held
      FROM wa_notify.message m
     WHERE m.queued
     GROUP BY m.sender),
unconfirmed AS (
    SELECT m.sender,
           count(*) FILTER (WHERE m.status = 'sending') AS sending,
           count(*) FILTER (WHERE m.status = 'review') AS review
      FROM wa_notify._message_unconfirmed m
     GROUP BY m.sender)
SELECT sd.sender, s.status,
       coalesce(CASE s.status WHEN 'queued' THEN q.queued WHEN 'held' THEN q.held
                              WHEN 'sending' THEN u.sending ELSE u.review END, 0) AS messages
  FROM wa_notify.sender sd
  LEFT JOIN queued q USING (sender)
  LEFT JOIN unconfirmed u USING (sender)
 CROSS JOIN (VALUES (1, 'queued'), (2, 'held'), (3, 'sending'), (4, 'review')) AS s(ord, status)
 ORDER BY sd.sender, s.ord;
COMMENT ON VIEW wa_notify.metrics_queue IS
    'Prometheus: messages waiting per sender: queued (held included), held, sending (in flight), review';

CREATE VIEW wa_notify.metrics_messages AS
WITH today AS (
    SELECT date_trunc('day', now() AT TIME ZONE z.tz) AT TIME ZONE z.tz AS start
      FROM (SELECT max(value) FILTER (WHERE name = 'timezone') AS tz FROM wa_notify.setting) z),
day AS (
    SELECT m.sender,
           count(*) FILTER (WHERE m.sent_at IS NOT NULL) AS sent,
           count(*) FILTER (WHERE m.delivered_at IS NOT NULL OR m.status IN ('delivered', 'read')) AS delivered,
           count(*) FILTER (WHERE m.read_at IS NOT NULL OR m.status = 'read') AS read,
           count(*) FILTER (WHERE m.status = 'failed') AS failed
      FROM wa_notify.message m, today
     WHERE m.created_at >= today.start
     GROUP BY m.sender),
-- OFFSET 0 keeps the planner from finding the minimum by walking
-- message_created from the oldest row, through the whole log, to the first
-- queued one: the queued rows are read (index message_due) and their
-- minimum taken
oldest AS (
    SELECT q.sender, min(q.created_at) AS created_at
      FROM (SELECT m.sender, m.created_at FROM wa_notify.message m WHERE m.queued OFFSET 0) q
     GROUP BY q.sender)
SELECT sd.sender,
       coalesce(d.sent, 0) AS sent_today, coalesce(d.delivered, 0) AS delivered_today,
       coalesce(d.read, 0) AS read_today, coalesce(d.failed, 0) AS failed_today,
       coalesce(extract(epoch FROM now() - o.created_at), 0)::float8 AS oldest_queued_age_seconds,
       extract(epoch FROM now() - s.webhook_last_callback)::float8 AS webhook_last_callback_age_seconds
  FROM wa_notify.sender sd
  LEFT JOIN day d USING (sender)
  LEFT JOIN oldest o USING (sender)
 CROSS JOIN wa_notify.state s
 ORDER BY sd.sender;
COMMENT ON VIEW wa_notify.metrics_messages IS
    'Prometheus: per sender, today''s messages sent, delivered, read, failed (created since local midnight: counters reset then), the oldest queued message''s age and the last webhook callback''s age (NULL: never)';

CREATE VIEW wa_notify.metrics_failures AS
WITH today AS (
    SELECT date_trunc('day', now() AT TIME ZONE z.tz) AT TIME ZONE z.tz AS start
      FROM (SELECT max(value) FILTER (WHERE name = 'timezone') AS tz FROM wa_notify.setting) z)
SELECT m.sender, coalesce(m.error_class, 'unclassified') AS error_class,
       count(*) AS failed_today
  FROM wa_notify.message m, today
 WHERE m.created_at >= today.start AND m.status = 'failed'
 GROUP BY 1, 2
 ORDER BY 1, 2;
COMMENT ON VIEW wa_notify.metrics_failures IS
    'Prometheus: per sender and error class (graph_errors), today''s failed messages';

CREATE VIEW wa_notify.metrics_sender AS
SELECT s.sender,
       coalesce(s.api_status, 'unknown') AS api_status,
       coalesce(s.quality_rating, 'unknown') AS quality_rating,
       coalesce(s.messaging_limit, 'unknown') AS messaging_limit,
       coalesce(s.throughput_level, 'unknown') AS throughput_level,
       (s.api_status = 'connected')::integer AS connected,
       (s.paused_reason IS NOT NULL OR coalesce(s.pause_until > now(), false))::integer AS paused,
       (s.enabled AND coalesce((SELECT value FROM wa_notify.setting WHERE name = 'enabled'), 'true')::boolean)::integer
           AS enabled
  FROM wa_notify._sender_effective() s;
COMMENT ON VIEW wa_notify.metrics_sender IS
    'Prometheus: per sender, the connection status, quality rating, messaging limit (tier) and throughput as labels; connected, paused (account pause or cool-down), enabled as 0/1';

CREATE VIEW wa_notify.metrics_worker AS
SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_stat_activity a
                WHERE a.backend_type = 'wa_notify worker' AND a.datname = current_database())::integer AS running,
       coalesce(greatest(w.starts - 1, 0), 0) AS restarts,
       extract(epoch FROM w.started_at)::float8 AS started_at_seconds
  FROM wa_notify._worker_shared() w;
COMMENT ON VIEW wa_notify.metrics_worker IS
    'Prometheus: the worker: running (0/1), restarts since the server started (as the status card''s worker_restarts), its start time';

GRANT USAGE ON SCHEMA wa_notify TO pg_monitor;
GRANT SELECT ON wa_notify.metrics_queue, wa_notify.metrics_messages, wa_notify.metrics_failures,
                wa_notify.metrics_sender, wa_notify.metrics_worker TO pg_monitor;
