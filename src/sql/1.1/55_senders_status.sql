-- 55_senders_status.sql: the status card per sender (SPEC 8), after the
-- Graph API version table (40_cloud_api.sql) it reads; the senders
-- themselves are 25_senders.sql's.

-------------------------------------------------------------------------------
-- the status card per sender
-------------------------------------------------------------------------------
CREATE VIEW wa_notify.senders AS
-- today's figures from the message tally (_tally_today()), the queue from
-- _waiting() (both 50_reporting.sql)
WITH waiting AS (
    SELECT w.sender, sum(w.messages)::bigint AS queued
      FROM wa_notify._waiting() w WHERE w.status IN ('queued', 'sending') GROUP BY w.sender)
SELECT e.sender, e.phone_number_id,
       wa_notify.mask_phone(e.display_phone_number) AS display_phone,
       e.enabled, e.api_status, e.last_check_at AS last_check, e.last_check_error,
       e.quality_rating, e.messaging_limit, e.throughput_level,
       e.paused_reason, e.paused_code, CASE WHEN e.pause_until > now() THEN e.pause_until END AS pause_until,
       e.rate_factor,
       coalesce(q.queued, 0) AS queued,
       coalesce(d.sent, 0) AS sent_today,
       coalesce(d.delivered, 0) AS delivered_today,
       coalesce(d.read, 0) AS read_today,
       coalesce(d.failed, 0) AS failed_today,
       e.portfolio, e.max_rate, e.max_in_flight, e.daily_recipient_limit, e.api_version,
       ver.expires AS api_version_expires, ver.warning AS api_version_warning,
       wa_notify._sender_secret_available(e.sender, 'access_token') AS access_token_set,
       wa_notify._sender_secret_available(e.sender, 'app_secret') AS app_secret_set
  FROM wa_notify._sender_effective() e
  LEFT JOIN wa_notify._tally_today() d ON d.sender = e.sender
  LEFT JOIN waiting q ON q.sender = e.sender,
       LATERAL wa_notify._api_version_status(e.api_version) AS ver
 ORDER BY e.sender = 'default' DESC, e.sender;
COMMENT ON VIEW wa_notify.senders IS
    'one status card row per sender: number (masked), connection, quality, tier, throughput, pause, today''s messages, Graph API version expiry';

