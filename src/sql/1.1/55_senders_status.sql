-- 55_senders_status.sql: the status card per sender (SPEC 8), after the
-- Graph API version table (40_cloud_api.sql) it reads; the senders
-- themselves are 25_senders.sql's.

-------------------------------------------------------------------------------
-- the status card per sender
-------------------------------------------------------------------------------
CREATE VIEW wa_notify.senders AS
WITH today AS (
    SELECT date_trunc('day', now() AT TIME ZONE tz) AT TIME ZONE tz AS start
      FROM (SELECT coalesce(value, default_value) AS tz FROM wa_notify.setting WHERE name = 'timezone') t)
SELECT e.sender, e.phone_number_id,
       wa_notify.mask_phone(e.display_phone_number) AS display_phone,
       e.enabled, e.api_status, e.last_check_at AS last_check, e.last_check_error,
       e.quality_rating, e.messaging_limit, e.throughput_level,
       e.paused_reason, e.paused_code, CASE WHEN e.pause_until > now() THEN e.pause_until END AS pause_until,
       e.rate_factor,
       (SELECT count(*) FROM wa_notify.message m
         WHERE m.sender = e.sender AND m.status IN ('queued', 'sending')) AS queued,
       (SELECT count(*) FROM wa_notify.message m, today
         WHERE m.sender = e.sender AND m.sent_at >= today.start) AS sent_today,
       (SELECT count(*) FROM wa_notify.message m, today
         WHERE m.sender = e.sender AND m.sent_at >= today.start
           AND (m.delivered_at IS NOT NULL OR m.status IN ('delivered', 'read'))) AS delivered_today,
       (SELECT count(*) FROM wa_notify.message m, today
         WHERE m.sender = e.sender AND m.sent_at >= today.start
           AND (m.read_at IS NOT NULL OR m.status = 'read')) AS read_today,
       (SELECT count(*) FROM wa_notify.message m, today
         WHERE m.sender = e.sender AND m.status = 'failed' AND m.failed_at >= today.start) AS failed_today,
       e.portfolio, e.max_rate, e.max_in_flight, e.daily_recipient_limit, e.api_version,
       ver.expires AS api_version_expires, ver.warning AS api_version_warning,
       wa_notify._sender_secret_available(e.sender, 'access_token') AS access_token_set,
       wa_notify._sender_secret_available(e.sender, 'app_secret') AS app_secret_set
  FROM wa_notify._sender_effective() e,
       LATERAL wa_notify._api_version_status(e.api_version) AS ver
 ORDER BY e.sender = 'default' DESC, e.sender;
COMMENT ON VIEW wa_notify.senders IS
    'one status card row per sender: number (masked), connection, quality, tier, throughput, pause, today''s messages, Graph API version expiry';

