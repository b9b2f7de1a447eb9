-- Webhooks: webhook_verify() and webhook_receive() with payloads shaped like
-- Meta's documented examples, signatures computed here (pgcrypto's hmac).
CREATE EXTENSION IF NOT EXISTS pgcrypto;
\set VERBOSITY terse
SET timezone = 'UTC';

UPDATE wa_notify.setting SET value = 'test-app-secret' WHERE name = 'app_secret';
UPDATE wa_notify.setting SET value = 'verify-me-123' WHERE name = 'webhook_verify_token';

-- post a body (text, sent as its UTF-8 bytes) with a correct signature
CREATE FUNCTION wh_sig(body bytea, secret text DEFAULT 'test-app-secret') RETURNS text
LANGUAGE sql AS $$ SELECT 'sha256=' || encode(hmac(body, convert_to(secret, 'UTF8'), 'sha256'), 'hex') $$;
CREATE FUNCTION wh_post(body text) RETURNS jsonb
LANGUAGE sql AS $$ SELECT wa_notify.webhook_receive(convert_to(body, 'UTF8'), wh_sig(convert_to(body, 'UTF8'))) $$;
-- the same, catching the error: SQLSTATE, message and detail
CREATE FUNCTION wh_try(body bytea, sig text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE st text; msg text; det text;
BEGIN
    PERFORM wa_notify.webhook_receive(body, sig);
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, det = PG_EXCEPTION_DETAIL;
    RETURN st || ': ' || msg || coalesce(' / ' || nullif(det, ''), '');
END $$;
-- Meta's envelope around one change
CREATE FUNCTION wh_env(field text, value jsonb) RETURNS text LANGUAGE sql AS $$
SELECT jsonb_build_object('object', 'whatsapp_business_account', 'entry', jsonb_build_array(
         jsonb_build_object('id', '102290129340398', 'changes', jsonb_build_array(
           jsonb_build_object('value', value, 'field', field)))))::text $$;
-- one status, as Meta sends it
CREATE FUNCTION wh_status(wamid text, status text, ts bigint, extra jsonb DEFAULT '{}') RETURNS jsonb
LANGUAGE sql AS $$
SELECT jsonb_build_object('id', wamid, 'status', status, 'timestamp', ts::text,
         'recipient_id', '5511987654321',
         'conversation', jsonb_build_object('id', 'c1f0e5a8', 'origin', jsonb_build_object('type', 'utility')),
         'pricing', jsonb_build_object('billable', true, 'pricing_model', 'PMP', 'category', 'utility',
                                       'type', 'regular')) || extra $$;
CREATE FUNCTION wh_statuses(VARIADIC st jsonb[]) RETURNS text LANGUAGE sql AS $$
SELECT wh_env('messages', jsonb_build_object('messaging_product', 'whatsapp',
         'metadata', jsonb_build_object('display_phone_number', '15550783881', 'phone_number_id', '106540352242922'),
         'statuses', to_jsonb(st))) $$;
-- everything a webhook may change, as one digest
CREATE VIEW wh_snapshot AS SELECT md5(
    (SELECT string_agg(m::text, '|' ORDER BY id) FROM wa_notify.message m) ||
    (SELECT string_agg(e::text, '|' ORDER BY event) FROM wa_notify.event e) ||
    coalesce((SELECT string_agg(b::text, '|' ORDER BY phone_key) FROM wa_notify.blocked b), '') ||
    (SELECT (to_jsonb(s) - 'webhook_last_callback')::text FROM wa_notify.state s)) AS digest;
-- (webhook_last_callback is left out: it records that a callback came)
CREATE FUNCTION wh_ts(t timestamptz) RETURNS bigint LANGUAGE sql AS $$ SELECT extract(epoch FROM t)::bigint $$;

INSERT INTO wa_notify.message (id, event, order_key, phone, status, wamid, sent_at) VALUES
 (1, 'order_placed', '1001', '5511987654321', 'sent',      'wamid.M1', NULL),
 (2, 'order_placed', '1002', '5511987654321', 'review',    NULL, NULL),
 (3, 'order_placed', '1003', '5511912345678', 'sent',      'wamid.M3', now()),
 (4, 'order_placed', '1004', '5521998877665', 'sent',      'wamid.M4', now()),
 (5, 'shipment_created', '1005', '5521998877001', 'sent',  'wamid.M5', now()),
 (6, 'order_placed', '1006', '5521998877002', 'sent',      'wamid.M6', now()),
 (7, 'order_placed', '1007', '5521998877003', 'delivered', 'wamid.M7', now()),
 (8, 'order_placed', '1008', '14155550123',   'queued',    NULL, NULL),
 (9, 'order_placed', '1009', '5521998877004', 'sent',      'wamid.M9', NULL);

---------------------------------------------------------------------------
-- the handshake
---------------------------------------------------------------------------
SELECT wa_notify.webhook_verify('subscribe', 'wrong-token', '1158201444') AS wrong_token,
       wa_notify.webhook_verify('unsubscribe', 'verify-me-123', '1158201444') AS wrong_mode,
       wa_notify.webhook_verify('subscribe', NULL, '1158201444') AS no_token,
       wa_notify.webhook_verify(NULL, 'verify-me-123', '1158201444') AS no_mode;
SELECT webhook_last_verified IS NULL AS not_verified_yet FROM wa_notify.state;
SELECT wa_notify.webhook_verify('subscribe', 'verify-me-123', '1158201444') AS challenge;
SELECT webhook_last_verified IS NOT NULL AS verified FROM wa_notify.state;

---------------------------------------------------------------------------
-- Meta's documented "sent" status: conversation and pricing objects
---------------------------------------------------------------------------
SELECT webhook_last_callback IS NULL AS no_callback_yet FROM wa_notify.state;
SELECT wh_post($${
  "object": "whatsapp_business_account",
  "entry": [{
    "id": "102290129340398",
    "changes": [{
      "value": {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"},
        "statuses": [{
          "id": "wamid.M9",
          "status": "sent",
          "timestamp": "1750030073",
          "recipient_id": "552198877004",
          "conversation": {"id": "ba8ed1c1f6b0da4b1c5c5e1f1b2a3c4d", "expiration_timestamp": "1750116480",
                           "origin": {"type": "utility"}},
          "pricing": {"billable": true, "pricing_model": "PMP", "category": "utility", "type": "regular"},
          "biz_opaque_callback_data": "9"
        }]
      },
      "field": "messages"
    }]
  }]
}$$);
SELECT id, status, wh_ts(sent_at) AS sent, wa_id FROM wa_notify.message WHERE id = 9;
SELECT webhook_last_callback IS NOT NULL AS callback_recorded FROM wa_notify.state;

---------------------------------------------------------------------------
-- out of order (read, delivered, sent) and duplicated: read, three timestamps
---------------------------------------------------------------------------
SELECT wh_post(wh_statuses(wh_status('wamid.M1', 'read', 1700000300)));
SELECT id, status, wh_ts(sent_at) AS sent, wh_ts(delivered_at) AS delivered, wh_ts(read_at) AS read
  FROM wa_notify.message WHERE id = 1;
SELECT wh_post(wh_statuses(wh_status('wamid.M1', 'delivered', 1700000200)));
SELECT wh_post(wh_statuses(wh_status('wamid.M1', 'sent', 1700000100)));
SELECT id, status, wh_ts(sent_at) AS sent, wh_ts(delivered_at) AS delivered, wh_ts(read_at) AS read
  FROM wa_notify.message WHERE id = 1;
-- every one of them again, in one POST, with later timestamps: nothing changes
SELECT digest AS before_repeat FROM wh_snapshot \gset
SELECT wh_post(wh_statuses(wh_status('wamid.M1', 'sent', 1700009100),
                           wh_status('wamid.M1', 'read', 1700009300),
                           wh_status('wamid.M1', 'delivered', 1700009200)));
SELECT digest = :'before_repeat' AS repeat_changed_nothing FROM wh_snapshot;

---------------------------------------------------------------------------
-- matched by biz_opaque_callback_data: a "review" message was sent after all
---------------------------------------------------------------------------
-- (its callback data carries the id and its MAC, secrets.c; the WhatsApp id
-- lacks the ninth digit of the message's phone: the same number)
SELECT wh_post(wh_statuses(wh_status('wamid.M2', 'delivered', 1700000500,
                                     jsonb_build_object('biz_opaque_callback_data', wa_notify._callback_data(2),
                                                        'recipient_id', '551187654321'))));
SELECT id, status, wamid, wa_id, wh_ts(delivered_at) AS delivered, sent_at FROM wa_notify.message WHERE id = 2;
-- the stored wamid now matches directly
SELECT wh_post(wh_statuses(wh_status('wamid.M2', 'read', 1700000600)));
-- a queued message was never sent: even its own callback data does not match it
SELECT wh_post(wh_statuses(wh_status('wamid.M8', 'sent', 1700000700,
                                     jsonb_build_object('biz_opaque_callback_data', wa_notify._callback_data(8),
                                                        'recipient_id', '14155550123'))));
SELECT id, status, wamid, wh_ts(sent_at) AS sent FROM wa_notify.message WHERE id IN (2, 8) ORDER BY id;
-- biz_opaque_callback_data of a message that has another wamid: not that one
SELECT wh_post(wh_statuses(wh_status('wamid.OTHER', 'read', 1700000800,
                                     jsonb_build_object('biz_opaque_callback_data', wa_notify._callback_data(3),
                                                        'recipient_id', '5511912345678'))));

---------------------------------------------------------------------------
-- failures, many entries and statuses in one POST, error objects as Meta's
---------------------------------------------------------------------------
SELECT wh_post($${
  "object": "whatsapp_business_account",
  "entry": [{
    "id": "102290129340398",
    "changes": [{
      "value": {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"},
        "statuses": [{
          "id": "wamid.M3", "status": "failed", "timestamp": "1700001000", "recipient_id": "551112345678",
          "errors": [{"code": 131026, "title": "Message undeliverable", "message": "Message undeliverable",
                      "error_data": {"details": "Message Undeliverable."}}]
        }, {
          "id": "wamid.M4", "status": "failed", "timestamp": "1700001001", "recipient_id": "5521998877665",
          "errors": [{"code": 131047, "title": "Re-engagement message", "message": "Re-engagement message",
                      "error_data": {"details": "Message failed to send because more than 24 hours have passed since the customer last replied to this number."}}]
        }]
      },
      "field": "messages"
    }]
  }, {
    "id": "102290129340398",
    "changes": [{
      "value": {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"},
        "statuses": [{
          "id": "wamid.M5", "status": "failed", "timestamp": "1700001002", "recipient_id": "5521998877001",
          "errors": [{"code": 132001, "title": "Template name does not exist in the translation",
                      "message": "Template name does not exist in the translation",
                      "error_data": {"details": "template name (shipment_tracking) does not exist in pt_BR"}}]
        }, {
          "id": "wamid.M6", "status": "failed", "timestamp": "1700001003", "recipient_id": "5521998877002",
          "errors": [{"code": 190, "title": "Access token has expired", "message": "Access token has expired",
                      "error_data": {"details": "Error validating access token: Session has expired."}}]
        }, {
          "id": "wamid.M7", "status": "failed", "timestamp": "1700001004", "recipient_id": "5521998877003",
          "errors": [{"code": 131026, "title": "Message undeliverable", "message": "Message undeliverable",
                      "error_data": {"details": "Message Undeliverable."}}]
        }]
      },
      "field": "messages"
    }]
  }]
}$$);
SELECT id, status, wh_ts(failed_at) AS failed, error_code, error_class, error_message, wa_id
  FROM wa_notify.message WHERE id BETWEEN 3 AND 7 ORDER BY id;
-- recipient class: blacklisted by phone_key (the WhatsApp id lacked the ninth digit)
SELECT phone_key, phone, reason, source, error_code FROM wa_notify.blocked ORDER BY phone_key;
-- template class: the event is held; account class: dispatch paused
SELECT event, held_reason, held_code, held_at IS NOT NULL AS held FROM wa_notify.event WHERE held_code IS NOT NULL;
SELECT paused_reason, paused_code, paused_at IS NOT NULL AS paused FROM wa_notify.state;
-- the same failures again change nothing (no second blacklist write either)
SELECT digest AS before_repeat FROM wh_snapshot \gset
SELECT wh_post(wh_statuses(wh_status('wamid.M3', 'failed', 1700001999,
  '{"errors": [{"code": 131026, "title": "Message undeliverable", "message": "Message undeliverable", "error_data": {"details": "Message Undeliverable."}}]}')));
SELECT digest = :'before_repeat' AS repeat_changed_nothing FROM wh_snapshot;
-- 131050: the user stopped the business's messages -> opt_out; and 131048 cool-down
-- (the blacklist takes the recipient the status names: recipient_id as the message's)
INSERT INTO wa_notify.message (id, event, order_key, phone, status, wamid) VALUES
 (10, 'order_placed', '1010', '5531988887777', 'sent', 'wamid.M10'),
 (11, 'order_placed', '1011', '5531988886666', 'sent', 'wamid.M11');
SELECT wh_post(wh_statuses(
  wh_status('wamid.M10', 'failed', 1700002000, '{"recipient_id": "5531988887777", "errors": [{"code": 131050, "title": "Unable to deliver the message. This recipient has chosen to stop receiving marketing messages on WhatsApp from your business", "message": "Unable to deliver", "error_data": {"details": "The user stopped marketing messages."}}]}'),
  wh_status('wamid.M11', 'failed', 1700002001, '{"errors": [{"code": 131048, "title": "Spam rate limit hit", "message": "Spam rate limit hit", "error_data": {"details": "Message failed to send because there are restrictions on how many messages can be sent from this phone number."}}]}')));
SELECT phone_key, source, error_code FROM wa_notify.blocked WHERE phone_key LIKE '5531%';
SELECT pause_until > now() + interval '14 minutes' AS spam_cooldown FROM wa_notify.state;
SELECT id, status, error_class FROM wa_notify.message WHERE id IN (10, 11) ORDER BY id;

---------------------------------------------------------------------------
-- unknown wamid: counted, ignored
---------------------------------------------------------------------------
SELECT webhook_unknown_statuses FROM wa_notify.state;
SELECT wh_post(wh_statuses(wh_status('wamid.NOPE1', 'delivered', 1700003000),
                           wh_status('wamid.NOPE2', 'read', 1700003001, '{"biz_opaque_callback_data": "999999"}'),
                           wh_status('wamid.M1', 'deleted', 1700003002)));
SELECT webhook_unknown_statuses FROM wa_notify.state;

---------------------------------------------------------------------------
-- inbound messages: opt-out keywords, case- and accent-insensitive
---------------------------------------------------------------------------
SELECT wh_post($${
  "object": "whatsapp_business_account",
  "entry": [{
    "id": "102290129340398",
    "changes": [{
      "value": {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"},
        "contacts": [{"profile": {"name": "Sheena Nelson"}, "wa_id": "554199990000"}],
        "messages": [{
          "from": "554199990000", "id": "wamid.IN1", "timestamp": "1749416383",
          "type": "text", "text": {"body": "  Párar! "}
        }, {
          "from": "554188880000", "id": "wamid.IN2", "timestamp": "1749416384",
          "type": "text", "text": {"body": "Quero parar de receber?"}
        }, {
          "from": "14155550199", "id": "wamid.IN3", "timestamp": "1749416385",
          "type": "button", "button": {"payload": "STOP_PROMOS", "text": "stop"}
        }, {
          "from": "554177770000", "id": "wamid.IN4", "timestamp": "1749416386",
          "type": "interactive", "interactive": {"type": "button_reply", "button_reply": {"id": "b1", "title": "Cancelar"}}
        }, {
          "from": "554166660000", "id": "wamid.IN5", "timestamp": "1749416387",
          "type": "image", "image": {"id": "1234", "mime_type": "image/jpeg"}
        }]
      },
      "field": "messages"
    }]
  }]
}$$);
SELECT phone_key, phone, reason, source FROM wa_notify.blocked WHERE source = 'opt_out' ORDER BY phone_key;
-- configurable keywords; a repeat changes nothing
UPDATE wa_notify.setting SET value = '{SAIR,"NÃO QUERO"}' WHERE name = 'opt_out_keywords';
SELECT wh_post(wh_env('messages', '{"messaging_product": "whatsapp", "messages": [
  {"from": "554155550000", "id": "wamid.IN6", "timestamp": "1749416390", "type": "text", "text": {"body": "nao   quero"}},
  {"from": "554144440000", "id": "wamid.IN7", "timestamp": "1749416391", "type": "text", "text": {"body": "STOP"}}]}'));
SELECT digest AS before_repeat FROM wh_snapshot \gset
SELECT wh_post(wh_env('messages', '{"messaging_product": "whatsapp", "messages": [
  {"from": "554155550000", "id": "wamid.IN6", "timestamp": "1749416390", "type": "text", "text": {"body": "nao   quero"}}]}'));
SELECT digest = :'before_repeat' AS repeat_changed_nothing FROM wh_snapshot;
SELECT phone_key, reason, source FROM wa_notify.blocked WHERE phone_key LIKE '5541%' ORDER BY phone_key;

---------------------------------------------------------------------------
-- template status updates
---------------------------------------------------------------------------
UPDATE wa_notify.event SET template_language = 'en_US' WHERE event = 'order_cancelled';
SELECT wh_post($${
  "entry": [{
    "id": "102290129340398",
    "time": 1674864290,
    "changes": [{
      "value": {"event": "REJECTED", "message_template_id": 12345678, "message_template_name": "order_confirmation",
                "message_template_language": "pt_BR", "reason": "INCORRECT_CATEGORY"},
      "field": "message_template_status_update"
    }, {
      "value": {"event": "APPROVED", "message_template_id": 12345679, "message_template_name": "shipment_tracking",
                "message_template_language": "pt_BR", "reason": "NONE"},
      "field": "message_template_status_update"
    }, {
      "value": {"event": "PAUSED", "message_template_id": 12345680, "message_template_name": "order_cancelled",
                "message_template_language": "pt_BR", "reason": "NONE"},
      "field": "message_template_status_update"
    }, {
      "value": {"event": "DISABLED", "message_template_id": 12345681, "message_template_name": "order_cancelled",
                "message_template_language": "en_US", "reason": "NONE"},
      "field": "message_template_status_update"
    }]
  }],
  "object": "whatsapp_business_account"
}$$);
SELECT event, template_status, template_status_reason, template_status_at IS NOT NULL AS status_at,
       held_reason, held_code
  FROM wa_notify.event ORDER BY event;

---------------------------------------------------------------------------
-- phone number quality update
---------------------------------------------------------------------------
SELECT wh_post(wh_env('phone_number_quality_update',
  '{"display_phone_number": "15550783881", "event": "FLAGGED", "current_limit": "TIER_10K"}'));
SELECT quality_rating, messaging_limit, quality_updated_at IS NOT NULL AS updated FROM wa_notify.state;
-- fields we do not act on are accepted and ignored
SELECT wh_post(wh_env('account_update', '{"phone_number": "15550783881", "event": "VERIFIED_ACCOUNT"}'));

---------------------------------------------------------------------------
-- bad input: a distinct error each, and nothing changes
---------------------------------------------------------------------------
SELECT digest AS before_bad FROM wh_snapshot \gset
SELECT wh_statuses(wh_status('wamid.M4', 'read', 1700009999)) AS good \gset
SELECT wh_try(convert_to(:'good', 'UTF8'), wh_sig(convert_to(:'good', 'UTF8'), 'another-secret')) AS wrong_secret;
SELECT wh_try(convert_to(:'good', 'UTF8'), wh_sig(convert_to(:'good' || ' ', 'UTF8'))) AS body_changed;
SELECT wh_try(convert_to(:'good', 'UTF8'), 'sha1=' || encode(hmac(convert_to(:'good', 'UTF8'), 'test-app-secret', 'sha1'), 'hex')) AS sha1_signature;
SELECT wh_try(convert_to(:'good', 'UTF8'), NULL) AS no_signature;
SELECT wh_try(convert_to(:'good', 'UTF8'), '') AS empty_signature;
SELECT wh_try(NULL, 'sha256=00') AS null_body;
SELECT wh_try(convert_to(t, 'UTF8'), wh_sig(convert_to(t, 'UTF8'))) AS malformed
  FROM (VALUES ('{"object": "whatsapp_business_account", "entry": ['), ('not json'), (''),
               ('{"object": "whatsapp_business_account", "entry": []} {}'), ('{"a": 1,}')) v(t);
SELECT wh_try(b, wh_sig(b)) AS not_utf8
  FROM (VALUES ('\x7b22613a22e97d'::bytea), ('\x7b7d00'::bytea)) v(b);
SELECT wh_try(convert_to(t, 'UTF8'), wh_sig(convert_to(t, 'UTF8'))) AS not_waba
  FROM (VALUES ('{"object": "page", "entry": []}'), ('[1, 2]'), ('{"entry": []}'), ('null'), ('42'),
               ('{"object": "whatsapp_business_account", "entry": {}}')) v(t);
SELECT wh_try(convert_to(t, 'UTF8'), wh_sig(convert_to(t, 'UTF8'))) AS bad_shape
  FROM (VALUES (wh_env('messages', '{"statuses": {}}')),
               (wh_env('messages', '{"statuses": [{"status": "read"}]}')),
               (wh_env('messages', '{"statuses": [{"id": "wamid.M4", "status": "read", "timestamp": "yesterday"}]}')),
               (wh_env('messages', '{"statuses": [{"id": "wamid.M4", "status": "failed", "errors": [{"code": "x"}]}]}')),
               (wh_env('message_template_status_update', '{"event": "APPROVED"}')),
               (wh_env('messages', '[]'))) v(t);
-- a good status followed by a bad one: the good one is not applied either
SELECT wh_statuses(wh_status('wamid.M4', 'read', 1700009999), '{"id": 5, "status": "read"}') AS mixed \gset
SELECT wh_try(convert_to(:'mixed', 'UTF8'), wh_sig(convert_to(:'mixed', 'UTF8'))) AS mixed;
-- over the cap (setting webhook_max_body), checked before anything else
UPDATE wa_notify.setting SET value = '100' WHERE name = 'webhook_max_body';
SELECT wh_try(convert_to(:'good', 'UTF8'), NULL) AS too_large;
UPDATE wa_notify.setting SET value = '3145728' WHERE name = 'webhook_max_body';
-- no app secret
UPDATE wa_notify.setting SET value = NULL WHERE name = 'app_secret';
SELECT wh_try(convert_to(:'good', 'UTF8'), wh_sig(convert_to(:'good', 'UTF8'))) AS no_app_secret;
UPDATE wa_notify.setting SET value = 'test-app-secret' WHERE name = 'app_secret';
SELECT digest = :'before_bad' AS bad_input_changed_nothing FROM wh_snapshot;
-- upper-case hex digits are the same signature; a "read" after "failed"
-- proves the message arrived after all
SELECT wa_notify.webhook_receive(convert_to(:'good', 'UTF8'),
         'sha256=' || upper(substr(wh_sig(convert_to(:'good', 'UTF8')), 8)));
SELECT id, status, wh_ts(read_at) AS read, wh_ts(failed_at) AS failed, error_code FROM wa_notify.message WHERE id = 4;

---------------------------------------------------------------------------
-- privileges: a relay role may call the two functions and nothing else
---------------------------------------------------------------------------
CREATE ROLE regress_wh_relay LOGIN;
CREATE ROLE regress_wh_nobody LOGIN;
GRANT USAGE ON SCHEMA wa_notify TO regress_wh_relay, regress_wh_nobody;
GRANT EXECUTE ON FUNCTION wa_notify.webhook_verify(text, text, text),
                          wa_notify.webhook_receive(bytea, text) TO regress_wh_relay;
GRANT EXECUTE ON FUNCTION wh_sig(bytea, text) TO regress_wh_relay;
SELECT wh_statuses(wh_status('wamid.M9', 'delivered', 1700010000)) AS relay_body \gset
SELECT wh_sig(convert_to(:'relay_body', 'UTF8')) AS relay_sig \gset
SET ROLE regress_wh_relay;
SELECT wa_notify.webhook_verify('subscribe', 'verify-me-123', 'ch-42') AS challenge;
SELECT wa_notify.webhook_receive(convert_to(:'relay_body', 'UTF8'), :'relay_sig');
SELECT count(*) FROM wa_notify.message;
SELECT value FROM wa_notify.setting WHERE name = 'app_secret';
SELECT * FROM wa_notify.blocked;
UPDATE wa_notify.state SET paused_reason = NULL;
RESET ROLE;
SET ROLE regress_wh_nobody;
SELECT wa_notify.webhook_verify('subscribe', 'verify-me-123', 'ch-42');
SELECT wa_notify.webhook_receive(convert_to(:'relay_body', 'UTF8'), :'relay_sig');
RESET ROLE;
SELECT id, status, wh_ts(delivered_at) AS delivered FROM wa_notify.message WHERE id = 9;
SELECT p.proname, p.prosecdef, p.proconfig FROM pg_proc p
 WHERE p.pronamespace = 'wa_notify'::regnamespace AND p.proname LIKE 'webhook%' ORDER BY 1;

DROP OWNED BY regress_wh_relay, regress_wh_nobody;
DROP ROLE regress_wh_relay, regress_wh_nobody;

---------------------------------------------------------------------------
-- statuses at the edges of the one-statement path (webhook.c fast path)
---------------------------------------------------------------------------
INSERT INTO wa_notify.message (id, event, order_key, phone, status, wamid, wa_id, sent_at, delivered_at, read_at, failed_at) VALUES
 (20, 'order_placed', '1020', '5541988880020', 'skipped',   'wamid.M20', NULL, NULL, NULL, NULL, NULL),
 (21, 'order_placed', '1021', '5541988880021', 'delivered', 'wamid.M21', NULL, to_timestamp(1700004000), to_timestamp(1700004001), NULL, NULL),
 (22, 'order_placed', '1022', '5541988880022', 'read',      'wamid.M22', NULL, to_timestamp(1700004000), to_timestamp(1700004001), to_timestamp(1700004002), NULL),
 (23, 'order_placed', '1023', '5541988880023', 'sending',   NULL,        NULL, NULL, NULL, NULL, NULL),
 (24, 'order_placed', '1024', '5541988880024', 'failed',    'wamid.M24', NULL, NULL, NULL, NULL, to_timestamp(1700004003));
-- a skipped message: ignored, nothing changes
SELECT digest AS before_skipped FROM wh_snapshot \gset
SELECT wh_post(wh_statuses(wh_status('wamid.M20', 'delivered', 1700005000)));
SELECT digest = :'before_skipped' AS skipped_changed_nothing FROM wh_snapshot;
-- a repeat that only brings the wa_id: applied, the timestamp stays; then a true repeat
SELECT wh_post(wh_statuses(wh_status('wamid.M21', 'delivered', 1700005001)));
SELECT wh_post(wh_statuses(wh_status('wamid.M21', 'delivered', 1700005002)));
-- "failed" after "read": only the wa_id is learnt, no failure, no blacklist
SELECT wh_post(wh_statuses(wh_status('wamid.M22', 'failed', 1700005003,
  '{"errors": [{"code": 131026, "title": "Message undeliverable", "message": "Message undeliverable"}]}')));
-- without recipient_id, a "failed" repeat for it changes nothing
SELECT wh_post(wh_statuses(wh_status('wamid.M22', 'failed', 1700005004) - 'recipient_id'));
-- "failed" without an error object, matched by biz_opaque_callback_data: takes the wamid
SELECT wh_post(wh_statuses(wh_status('wamid.M23', 'failed', 1700005005,
                                     jsonb_build_object('biz_opaque_callback_data', wa_notify._callback_data(23),
                                                        'recipient_id', '5541988880023'))));
-- "sent" after "failed" fills sent_at only; "delivered" proves the message arrived
SELECT wh_post(wh_statuses(wh_status('wamid.M24', 'sent', 1700005006) - 'recipient_id'));
SELECT wh_post(wh_statuses(wh_status('wamid.M24', 'delivered', 1700005007) - 'recipient_id'));
SELECT id, status, wamid, wa_id, wh_ts(sent_at) AS sent, wh_ts(delivered_at) AS delivered,
       wh_ts(read_at) AS read, wh_ts(failed_at) AS failed, error_code, error_class, error_message
  FROM wa_notify.message WHERE id BETWEEN 20 AND 24 ORDER BY id;
SELECT count(*) AS blacklisted FROM wa_notify.blocked WHERE phone_key LIKE '554198888002%';

---------------------------------------------------------------------------
-- webhook matching cannot be forged: statuses for unknown wamids whose
-- callback data names a message change nothing unless the MAC checks, the
-- message was claimed and the recipient is its phone; a \u0000 anywhere is
-- a malformed payload
---------------------------------------------------------------------------
INSERT INTO wa_notify.message (id, event, order_key, phone, status, wamid) VALUES
 (40, 'order_placed', '1040', '5561988880040', 'queued',  NULL),
 (41, 'order_placed', '1041', '5561988880041', 'sending', NULL),
 (42, 'order_placed', '1042', '5561988880042', 'review',  NULL);
-- (the count of unknown statuses goes up: that is all)
SELECT digest AS before_forged, webhook_unknown_statuses AS unknown_before FROM wh_snapshot, wa_notify.state \gset
UPDATE wa_notify.state SET webhook_unknown_statuses = webhook_unknown_statuses + 7;
SELECT digest AS before_forged FROM wh_snapshot \gset
UPDATE wa_notify.state SET webhook_unknown_statuses = :unknown_before;
SELECT count(*) AS blocked_before FROM wa_notify.blocked \gset
-- a bare id (1.0's callback data), a wrong MAC, another message's MAC
SELECT wh_post(wh_statuses(
  wh_status('wamid.F1', 'failed', 1700006001, '{"biz_opaque_callback_data": "41", "recipient_id": "5561988880041",
            "errors": [{"code": 131026, "title": "Message undeliverable"}]}'),
  wh_status('wamid.F2', 'delivered', 1700006002, jsonb_build_object('recipient_id', '5561988880041',
            'biz_opaque_callback_data', '41.' || repeat('0', 32))),
  wh_status('wamid.F3', 'delivered', 1700006003, jsonb_build_object('recipient_id', '5561988880041',
            'biz_opaque_callback_data', '41.' || split_part(wa_notify._callback_data(42), '.', 2)))));
-- the right MAC of a queued message (never sent)
SELECT wh_post(wh_statuses(
  wh_status('wamid.F4', 'failed', 1700006004, jsonb_build_object('recipient_id', '5561988880040',
            'biz_opaque_callback_data', wa_notify._callback_data(40),
            'errors', '[{"code": 131026, "title": "Message undeliverable"}]'::jsonb))));
-- the right MAC of a claimed message, but another recipient (a CRM on the number)
SELECT wh_post(wh_statuses(
  wh_status('wamid.F5', 'failed', 1700006005, jsonb_build_object('recipient_id', '5561988889999',
            'biz_opaque_callback_data', wa_notify._callback_data(42),
            'errors', '[{"code": 131026, "title": "Message undeliverable"}]'::jsonb)),
  wh_status('wamid.F6', 'read', 1700006006, jsonb_build_object('recipient_id', '5561988889999',
            'biz_opaque_callback_data', wa_notify._callback_data(41)))));
-- a NUL character in a string, escaped: malformed (22032), nothing applied
SELECT wh_try(convert_to(b, 'UTF8'), wh_sig(convert_to(b, 'UTF8'))) AS nul_in_id
  FROM replace(wh_statuses(wh_status('wamid.M41', 'read', 1700006007,
         jsonb_build_object('biz_opaque_callback_data', wa_notify._callback_data(41),
                            'recipient_id', '5561988880041'))),
         '"wamid.M41"', '"wamid.M41\u0000x"') AS b;
SELECT wh_try(convert_to(b, 'UTF8'), wh_sig(convert_to(b, 'UTF8'))) AS nul_in_a_name
  FROM replace(wh_statuses(wh_status('wamid.M41', 'read', 1700006008)), '"pricing"', '"pri\u0000cing"') AS b;
-- an escaped backslash followed by "u0000" is no NUL: applied (unknown wamid)
SELECT wh_try(convert_to(b, 'UTF8'), wh_sig(convert_to(b, 'UTF8'))) AS escaped_backslash
  FROM replace(wh_statuses(wh_status('wamid.M41', 'read', 1700006009)), '"wamid.M41"', '"wamid.M41\\u0000"') AS b;
SELECT digest = :'before_forged' AS forged_changed_nothing FROM wh_snapshot;
SELECT count(*) = :blocked_before AS nobody_blacklisted FROM wa_notify.blocked;
SELECT id, status, wamid FROM wa_notify.message WHERE id BETWEEN 40 AND 42 ORDER BY id;
-- the genuine status, for contrast: the claimed message takes it; a failure
-- blacklists the recipient the status names (here the message's phone)
SELECT wh_post(wh_statuses(
  wh_status('wamid.G1', 'failed', 1700006010, jsonb_build_object('recipient_id', '5561988880041',
            'biz_opaque_callback_data', wa_notify._callback_data(41),
            'errors', '[{"code": 131026, "title": "Message undeliverable"}]'::jsonb))));
SELECT id, status, wamid, error_code FROM wa_notify.message WHERE id = 41;
SELECT phone FROM wa_notify.blocked WHERE phone_key = wa_notify.phone_key('5561988880041');
-- a failed status found by wamid whose recipient is another number: that number is blacklisted
INSERT INTO wa_notify.message (id, event, order_key, phone, status, wamid) VALUES
 (43, 'order_placed', '1043', '5561988880043', 'sent', 'wamid.G2');
SELECT wh_post(wh_statuses(
  wh_status('wamid.G2', 'failed', 1700006011, '{"recipient_id": "5561988887777",
            "errors": [{"code": 131026, "title": "Message undeliverable"}]}')));
SELECT phone FROM wa_notify.blocked WHERE phone_key IN (wa_notify.phone_key('5561988887777'),
                                                       wa_notify.phone_key('5561988880043'));

