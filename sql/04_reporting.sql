-- message_log, counts(from, to) and the status card.
\set SHOW_CONTEXT never
-- "today" in a time zone where it is about noon now: rows up to 3 hours
-- old are today's whenever the suite runs (in UTC they were yesterday's
-- between midnight and 3 am)
SELECT wa_notify.configure(timezone => CASE WHEN h >= 12 THEN 'Etc/GMT+' || (h - 12) ELSE 'Etc/GMT-' || (12 - h) END)
  FROM (SELECT extract(hour FROM now() AT TIME ZONE 'UTC')::int AS h) AS utc;
INSERT INTO wa_notify.message (event, order_key, phone, params, status, created_at, sent_at, delivered_at, read_at,
                               failed_at, error_code, error_message, tracking)
VALUES ('order_placed', '1001', '5511987650001', '{}', 'read', now() - interval '3 hours',
        now() - interval '3 hours', now() - interval '2 hours', now() - interval '1 hour', NULL, NULL, NULL, NULL),
       ('shipment_created', '1001', '5511987650001', '{}', 'delivered', now() - interval '2 hours',
        now() - interval '2 hours', now() - interval '1 hour', NULL, NULL, NULL, NULL, 'AA123456789BR'),
       ('order_placed', '1002', '5511987650002', '{}', 'sent', now() - interval '1 hour',
        now() - interval '1 hour', NULL, NULL, NULL, NULL, NULL, NULL),
       ('order_placed', '1003', '5511987650003', '{}', 'failed', now() - interval '30 minutes',
        NULL, NULL, NULL, now() - interval '29 minutes', 131026, 'message undeliverable', NULL),
       ('order_placed', '1004', '5511987650004', '{}', 'queued', now() - interval '10 minutes',
        NULL, NULL, NULL, NULL, NULL, NULL, NULL),
       ('order_placed', '0999', '5511987650005', '{}', 'delivered', now() - interval '10 days',
        now() - interval '10 days', now() - interval '10 days', NULL, NULL, NULL, NULL, NULL);
UPDATE wa_notify.message SET held_reason = 'template order_confirmation is PENDING' WHERE order_key = '1004';

SELECT order_key, phone, type, status, tracking, sent_at IS NOT NULL AS has_sent_at, error
  FROM wa_notify.message_log LIMIT 50;

-- today (default range), an explicit range, and everything
SELECT * FROM wa_notify.counts();
SELECT delivered, read, pending, failed, total FROM wa_notify.counts(now() - interval '11 days', now() - interval '9 days');
SELECT delivered, read, pending, failed, total FROM wa_notify.counts('-infinity', 'infinity');
SELECT delivered, read, pending, failed, total FROM wa_notify.counts("from" => now() - interval '45 minutes');

UPDATE wa_notify.state SET api_status = 'connected', last_check_at = now(), display_phone_number = '+55 11 98765-4342',
       verified_name = 'Loja Exemplo', quality_rating = 'GREEN', messaging_limit = 'TIER_2K';
SELECT wa_notify.configure(phone_number_id => '106540352242922', webhook_public_url => 'https://shop.example.com/wa');
SELECT api_status, api_version, phone_number, phone_number_id, verified_name, quality_rating, messaging_limit,
       access_token_set, app_secret_set, messages_today, delivered_today, read_today, failed_today,
       queue_pending, queue_held, held_reasons, enabled, paused_reason, webhook_url
  FROM wa_notify.status;

DELETE FROM wa_notify.message;
UPDATE wa_notify.state SET api_status = 'unknown', last_check_at = NULL, display_phone_number = NULL,
       verified_name = NULL, quality_rating = NULL, messaging_limit = NULL;
UPDATE wa_notify.setting SET value = default_value WHERE name NOT IN ('webhook_verify_token', 'callback_key');
