-- The 2026 Cloud API (issue 10, SPEC section 8): BSUIDs, pricing and costs,
-- template categories, named parameters, document headers, 131049, Graph
-- API version expiry.  Payloads are shaped like the examples of Meta's
-- WhatsApp Business Platform reference pages named above each one.
-- The pages (https://developers.facebook.com/documentation/business-messaging/whatsapp/...):
--   business-scoped-user-ids/                              send response and inbound user_id
--   webhooks/reference/messages/status/                    recipient_user_id, pricing, errors[]
--   webhooks/reference/messages/system/                    user_changed_user_id
--   webhooks/reference/template_category_update            warning and change forms
--   webhooks/reference/message_template_status_update      reason, disable_info, other_info
--   webhooks/reference/message_template_quality_update     new_quality_score
--   templates/components, templates/overview               named parameters, media headers
--   support/error-codes                                    131049, 131062, 130497
-- and https://developers.facebook.com/docs/graph-api/changelog/versions/ for the versions.
-- Everything runs in one transaction rolled back at the end (the files
-- after this one see the database as it was); each statement has its own
-- savepoint, so an expected error does not end the transaction.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS wa_notify;
RESET client_min_messages;
\set ON_ERROR_ROLLBACK on
BEGIN;
CREATE EXTENSION IF NOT EXISTS pgcrypto;
\set VERBOSITY terse
SET timezone = 'UTC';
UPDATE wa_notify.setting SET value = 'test-app-secret' WHERE name = 'app_secret';
UPDATE wa_notify.setting SET value = 'UTC' WHERE name = 'timezone';

CREATE FUNCTION cl_post(body jsonb) RETURNS jsonb LANGUAGE sql AS $$
SELECT wa_notify.webhook_receive(convert_to(body::text, 'UTF8'),
       'sha256=' || encode(hmac(convert_to(body::text, 'UTF8'), convert_to('test-app-secret', 'UTF8'), 'sha256'), 'hex')) $$;
CREATE FUNCTION cl_env(field text, value jsonb) RETURNS jsonb LANGUAGE sql AS $$
SELECT jsonb_build_object('object', 'whatsapp_business_account', 'entry', jsonb_build_array(
         jsonb_build_object('id', '102290129340398', 'changes', jsonb_build_array(
           jsonb_build_object('value', value, 'field', field))))) $$;
CREATE FUNCTION cl_meta() RETURNS jsonb LANGUAGE sql AS $$
SELECT jsonb_build_object('display_phone_number', '15550783881', 'phone_number_id', '106540352242922') $$;

---------------------------------------------------------------------------
-- BSUID: a user known only by BSUID opts out; the phone a send response
-- named with that BSUID is blocked with it; the next message is skipped
---------------------------------------------------------------------------
-- message 1 was sent to 5511987650001; the send response named its BSUID
-- (Meta's "Business-scoped user IDs" page: send responses carry
-- contacts[].user_id, "BR.<digits>" for a Brazilian user)
INSERT INTO wa_notify.message (id, event, order_key, phone, status, wamid, sent_at)
VALUES (1, 'order_placed', 'B1', '5511987650001', 'sending', NULL, NULL);
SELECT wa_notify._record('{1}', '{t}', '{t}', '{200}', '{NULL}', '{NULL}', '{wamid.B1}', '{5511987650001}', '{BR.13491208655302741918}');
SELECT id, status, wamid, recipient_user_id FROM wa_notify.message WHERE id = 1;
SELECT count(*) AS blocked_before FROM wa_notify.blocked;
-- PARAR from a user with a username and no phone: contacts[] has user_id and
-- no wa_id, the message has from_user_id and no from (Meta's "Business-scoped
-- user IDs" page, incoming messages webhook)
SELECT cl_post(cl_env('messages', jsonb_build_object('messaging_product', 'whatsapp', 'metadata', cl_meta(),
  'contacts', jsonb_build_array(jsonb_build_object('profile', jsonb_build_object('name', 'Ana', 'username', '@ana'),
                                                   'user_id', 'BR.13491208655302741918')),
  'messages', jsonb_build_array(jsonb_build_object('from_user_id', 'BR.13491208655302741918', 'id', 'wamid.IN1',
                                                   'timestamp', '1764590000', 'type', 'text',
                                                   'text', jsonb_build_object('body', 'PARAR')))))) ->> 'opt_outs' AS opt_outs;
SELECT number, source, user_id, reason FROM wa_notify.blacklist;
-- the next message to that phone is skipped when claimed
INSERT INTO wa_notify.message (id, event, order_key, phone, params, status)
VALUES (2, 'order_placed', 'B2', '5511987650001', '{"customer_name": "Ana", "order_number": "B2", "total": "10"}', 'queued');
SELECT count(*) AS claimed FROM wa_notify._claim(10);
SELECT id, status, error_message FROM wa_notify.message WHERE id = 2;

-- a BSUID blocked before any message named it: a later status naming it
-- (Meta's "Status messages webhook reference": recipient_user_id) links the
-- phone, and the phone's next message is skipped
SELECT wa_notify.block('BR.99990000111122223333', 'asked by phone');
SELECT wa_notify.block('BR.bad id');
INSERT INTO wa_notify.message (id, event, order_key, phone, status, wamid, sent_at)
VALUES (3, 'order_placed', 'B3', '5521987650003', 'sent', 'wamid.B3', now());
SELECT cl_post(cl_env('messages', jsonb_build_object('messaging_product', 'whatsapp', 'metadata', cl_meta(),
  'statuses', jsonb_build_array(jsonb_build_object('id', 'wamid.B3', 'status', 'delivered', 'timestamp', '1764590100',
      'recipient_id', '5521987650003', 'recipient_user_id', 'BR.99990000111122223333',
      'pricing', jsonb_build_object('billable', true, 'pricing_model', 'PMP', 'type', 'regular', 'category', 'utility'))))))
  ->> 'applied' AS applied;
SELECT number, source, user_id FROM wa_notify.blacklist WHERE user_id = 'BR.99990000111122223333';
SELECT user_id, pricing_category, pricing_type, billable FROM wa_notify.message_log WHERE id = 3;

-- user_changed_user_id (Meta's "System messages webhook reference": no
-- contacts array; system.type, previous_user_id and the new user_id) moves
-- the block to the new BSUID
SELECT wa_notify.block('BR.55550000111122223333', 'manual, no phone known');
SELECT cl_post(cl_env('messages', jsonb_build_object('messaging_product', 'whatsapp', 'metadata', cl_meta(),
  'messages', jsonb_build_array(jsonb_build_object('from_user_id', 'BR.66660000111122223333', 'id', 'wamid.SYS1',
      'timestamp', '1764590200', 'type', 'system',
      'system', jsonb_build_object('body', 'User changed', 'type', 'user_changed_user_id',
                                   'previous_user_id', 'BR.55550000111122223333',
                                   'user_id', 'BR.66660000111122223333')))))) ->> 'inbound' AS inbound;
SELECT count(*) FILTER (WHERE user_id = 'BR.55550000111122223333') AS old_id,
       count(*) FILTER (WHERE user_id = 'BR.66660000111122223333') AS new_id
  FROM wa_notify.blacklist;
SELECT wa_notify.unblock('BR.66660000111122223333') AS unblocked;

---------------------------------------------------------------------------
-- pricing from delivered/read statuses; costs() for a day with free and
-- billable messages (Meta's "Status messages webhook reference": pricing
-- {billable, pricing_model PMP, type regular | free_customer_service |
-- free_entry_point, category})
---------------------------------------------------------------------------
SELECT wa_notify.set_rate('utility', '55', 0.0080, 'USD', '2026-01-01');
SELECT wa_notify.set_rate('utility', '55', 0.0068, 'USD', '2026-10-01');
SELECT wa_notify.set_rate('marketing', '*', 0.0625, 'USD', '2026-01-01');
SELECT wa_notify.set_rate('utility', 'Brazil', 1, 'USD');
INSERT INTO wa_notify.message (id, event, order_key, phone, status, wamid, sent_at) VALUES
 (11, 'shipment_created', 'P11', '5511987650011', 'sent', 'wamid.P11', '2026-11-10 12:00+00'),
 (12, 'shipment_created', 'P12', '5511987650012', 'sent', 'wamid.P12', '2026-11-10 13:00+00'),
 (13, 'shipment_created', 'P13', '5511987650013', 'sent', 'wamid.P13', '2026-11-10 14:00+00');
CREATE FUNCTION cl_priced(wamid text, status text, billable boolean, ptype text) RETURNS jsonb LANGUAGE sql AS $$
SELECT jsonb_build_object('id', wamid, 'status', status, 'timestamp', '1762780000', 'recipient_id', '5511987650011',
         'pricing', jsonb_build_object('billable', billable, 'pricing_model', 'PMP', 'type', ptype, 'category', 'utility')) $$;
SELECT cl_post(cl_env('messages', jsonb_build_object('messaging_product', 'whatsapp', 'metadata', cl_meta(),
  'statuses', jsonb_build_array(cl_priced('wamid.P11', 'delivered', true, 'regular'),
                                cl_priced('wamid.P12', 'delivered', true, 'regular'),
                                cl_priced('wamid.P13', 'read', false, 'free_customer_service'))))) ->> 'applied' AS applied;
SELECT id, status, billable, pricing_type, pricing_category FROM wa_notify.message WHERE id IN (11, 12, 13) ORDER BY id;
SELECT * FROM wa_notify.costs('2026-11-10 00:00+00', '2026-11-11 00:00+00');

---------------------------------------------------------------------------
-- template_category_update to MARKETING holds exactly the event that uses
-- the template (Meta's "template_category_update webhook reference"); the
-- warning form first, shown on the status card
---------------------------------------------------------------------------
SELECT cl_post(cl_env('template_category_update', jsonb_build_object(
  'message_template_id', 1148245153505410, 'message_template_name', 'shipment_tracking',
  'message_template_language', 'pt_BR', 'correct_category', 'MARKETING', 'new_category', 'UTILITY',
  'category_update_timestamp', 1764979200))) ->> 'templates' AS templates;
SELECT template_warnings FROM wa_notify.status;
SELECT event FROM wa_notify.event WHERE held_reason IS NOT NULL;
SELECT cl_post(cl_env('template_category_update', jsonb_build_object(
  'message_template_id', 1148245153505410, 'message_template_name', 'shipment_tracking',
  'message_template_language', 'pt_BR', 'previous_category', 'UTILITY', 'new_category', 'MARKETING'))) ->> 'templates' AS templates;
SELECT event, held_reason FROM wa_notify.event WHERE held_reason IS NOT NULL;
SELECT name, language, category, template_id, events FROM wa_notify.templates;
-- its queued message waits; another event's goes
INSERT INTO wa_notify.message (id, event, order_key, phone, params, status) VALUES
 (31, 'shipment_created', 'C31', '5511987650031', '{"customer_name": "Bia", "order_number": "C31", "carrier": "Correios", "tracking_number": "AA1BR"}', 'queued'),
 (32, 'order_processing', 'C32', '5511987650032', '{"customer_name": "Caio", "order_number": "C32"}', 'queued');
SELECT 1 AS housekeeping FROM wa_notify._dispatch_cycle();
SELECT id FROM wa_notify._claim(10) ORDER BY id;
-- an APPROVED status update does not lift a MARKETING hold
-- (Meta's "message_template_status_update webhook reference")
SELECT cl_post(cl_env('message_template_status_update', jsonb_build_object(
  'event', 'APPROVED', 'message_template_id', 1148245153505410, 'message_template_name', 'shipment_tracking',
  'message_template_language', 'pt_BR', 'reason', 'NONE', 'message_template_category', 'MARKETING'))) ->> 'templates' AS templates;
SELECT event FROM wa_notify.event WHERE held_reason IS NOT NULL;
-- allow_marketing_category lifts it
UPDATE wa_notify.setting SET value = 'true' WHERE name = 'allow_marketing_category';
SELECT event FROM wa_notify.event WHERE held_reason IS NOT NULL;
UPDATE wa_notify.setting SET value = 'false' WHERE name = 'allow_marketing_category';
SELECT event FROM wa_notify.event WHERE held_reason IS NOT NULL;
-- quality and the rest of a status update: recorded
SELECT cl_post(cl_env('message_template_quality_update', jsonb_build_object(
  'previous_quality_score', 'GREEN', 'new_quality_score', 'YELLOW', 'message_template_id', 1148245153505410,
  'message_template_name', 'shipment_tracking', 'message_template_language', 'pt_BR'))) ->> 'quality' AS quality;
SELECT cl_post(cl_env('message_template_status_update', jsonb_build_object(
  'event', 'DISABLED', 'message_template_id', 1148245153505411, 'message_template_name', 'order_cancelled',
  'message_template_language', 'pt_BR', 'reason', 'LOW_QUALITY',
  'disable_info', jsonb_build_object('disable_date', 1764979200)))) ->> 'templates' AS templates;
SELECT cl_post(cl_env('message_template_status_update', jsonb_build_object(
  'event', 'PAUSED', 'message_template_id', 1148245153505412, 'message_template_name', 'refund_issued',
  'message_template_language', 'pt_BR', 'reason', 'NONE',
  'other_info', jsonb_build_object('title', 'FIRST_PAUSE', 'description', 'Paused for 3 hours: low quality')))) ->> 'templates' AS templates;
SELECT name, status, quality, reason, disable_date, lock_info FROM wa_notify.templates ORDER BY name;
UPDATE wa_notify.event SET held_reason = NULL, held_code = NULL, held_at = NULL, category_hold = false,
       template_status = 'unknown';
DELETE FROM wa_notify.template;

---------------------------------------------------------------------------
-- named parameters (Meta's "Send template messages": parameter_name) and a
-- document header with link and filename
---------------------------------------------------------------------------
SELECT wa_notify.configure_event('order_placed', parameter_format => 'named',
       header_document => 'invoice_url', header_filename => 'nota-fiscal-{order_number}.pdf');
SELECT wa_notify.preview('order_placed', '{"phone": "5511987654321", "customer_name": "Ana", "order_number": "1001", "total": "1234.5", "invoice_url": "https://shop.example.com/nfe/1001.pdf"}'::jsonb);
-- the template's own parameter names, when they are not the context's field names
SELECT wa_notify.configure_event('order_placed', param_names => ARRAY['first_name', 'pedido', 'valor']);
SELECT wa_notify.preview('order_placed', '{"phone": "5511987654321", "customer_name": "Ana", "order_number": "1001", "total": "1234.5", "invoice_url": "https://shop.example.com/nfe/1001.pdf"}'::jsonb)
       #> '{template,components,1,parameters}' AS renamed;
SELECT wa_notify.configure_event('order_placed', param_names => ARRAY['first_name']);
SELECT wa_notify.configure_event('order_placed', param_names => ARRAY['First', 'b', 'c']);
SELECT wa_notify.configure_event('order_placed', param_names => '{}');
SELECT param_names IS NULL AS field_names_again FROM wa_notify.events WHERE event = 'order_placed';
SELECT wa_notify.configure_event('order_placed', parameter_format => 'positional');
SELECT wa_notify.preview('order_placed', '{"phone": "5511987654321", "customer_name": "Ana", "order_number": "1001", "total": "1234.5", "invoice_url": "https://shop.example.com/nfe/1001.pdf"}'::jsonb)
       #> '{template,components,1,parameters,0}' AS positional;
-- the parameter format sync_templates() found is the default
INSERT INTO wa_notify.template (name, language, parameter_format) VALUES ('order_confirmation', 'pt_BR', 'NAMED');
SELECT wa_notify.configure_event('order_placed', parameter_format => '');
SELECT parameter_format FROM wa_notify.events WHERE event = 'order_placed';
SELECT wa_notify.preview('order_placed', '{"phone": "5511987654321", "customer_name": "Ana", "order_number": "1001", "total": "1", "invoice_url": "https://x.example/a.pdf"}'::jsonb)
       #> '{template,components,1,parameters,0}' AS from_sync;
DELETE FROM wa_notify.template;
-- a non-https link fails the message before any request
INSERT INTO wa_notify.message (id, event, order_key, phone, params, status) VALUES
 (41, 'order_placed', 'D41', '5511987650041', '{"customer_name": "Rui", "order_number": "D41", "total": "5", "invoice_url": "http://shop.example.com/nfe/41.pdf"}', 'queued'),
 (42, 'order_placed', 'D42', '5511987650042', '{"customer_name": "Eva", "order_number": "D42", "total": "5"}', 'queued');
SELECT count(*) AS claimed FROM wa_notify._claim(10);
SELECT id, status, error_message FROM wa_notify.message WHERE id IN (41, 42) ORDER BY id;
-- an image header the same way
SELECT wa_notify.configure_event('order_placed', header_document => '', header_filename => '', header_image => 'photo_url');
SELECT wa_notify.preview('order_placed', '{"phone": "5511987654321", "customer_name": "Ana", "order_number": "1", "total": "1", "photo_url": "https://x.example/p.jpg"}'::jsonb)
       #> '{template,components,0}' AS image_header;
SELECT wa_notify.configure_event('order_placed', header_document => 'a', header_image => 'b');
SELECT wa_notify.configure_event('order_placed', parameter_format => 'keyword');
SELECT wa_notify.configure_event('order_placed', header_image => '');

---------------------------------------------------------------------------
-- 131049: retried after 24 hours (from the failure's own time), at most
-- twice, never blacklisted (Meta's "Error codes" page: per-user marketing
-- limit).  From the dispatcher's answer, then from a webhook status.
---------------------------------------------------------------------------
INSERT INTO wa_notify.message (id, event, order_key, phone, status, attempts) VALUES
 (51, 'order_placed', 'M51', '5511987650051', 'sending', 1);
SELECT wa_notify._record('{51}', '{t}', '{f}', '{400}', '{131049}', ARRAY['Graph error 131049: This message was not delivered to maintain healthy ecosystem engagement.'], '{NULL}', '{NULL}', '{NULL}');
SELECT status, deferred_retries, next_attempt_at - failed_at AS waits, wamid IS NULL AS wamid_cleared
  FROM wa_notify.message WHERE id = 51;
UPDATE wa_notify.message SET status = 'sending' WHERE id = 51;
SELECT wa_notify._record('{51}', '{t}', '{f}', '{400}', '{131049}', ARRAY['again'], '{NULL}', '{NULL}', '{NULL}');
SELECT status, deferred_retries, next_attempt_at - failed_at AS waits FROM wa_notify.message WHERE id = 51;
UPDATE wa_notify.message SET status = 'sending' WHERE id = 51;
SELECT wa_notify._record('{51}', '{t}', '{f}', '{400}', '{131049}', ARRAY['third'], '{NULL}', '{NULL}', '{NULL}');
SELECT status, deferred_retries FROM wa_notify.message WHERE id = 51;
-- a failed status webhook with errors[] (Meta's "Status messages webhook reference")
INSERT INTO wa_notify.message (id, event, order_key, phone, status, wamid, sent_at) VALUES
 (52, 'order_placed', 'M52', '5511987650052', 'sent', 'wamid.M52', now());
SELECT cl_post(cl_env('messages', jsonb_build_object('messaging_product', 'whatsapp', 'metadata', cl_meta(),
  'statuses', jsonb_build_array(jsonb_build_object('id', 'wamid.M52', 'status', 'failed', 'timestamp', '1764590300',
      'recipient_id', '5511987650052',
      'errors', jsonb_build_array(jsonb_build_object('code', 131049,
          'title', 'This message was not delivered to maintain healthy ecosystem engagement.',
          'message', 'This message was not delivered to maintain healthy ecosystem engagement.',
          'error_data', jsonb_build_object('details', 'In order to maintain a healthy ecosystem engagement, the message failed to be delivered.'))))))))
  ->> 'applied' AS applied;
SELECT status, deferred_retries, failed_at = to_timestamp(1764590300) AS failed_at_is_meta_time,
       next_attempt_at - failed_at AS waits, wamid IS NULL AS wamid_cleared
  FROM wa_notify.message WHERE id = 52;
SELECT count(*) AS blacklisted FROM wa_notify.blocked WHERE phone IN ('5511987650051', '5511987650052');
SELECT code, class, title FROM wa_notify.graph_errors WHERE code IN (131049, 131062, 130497) ORDER BY code;

---------------------------------------------------------------------------
-- Graph API versions (Meta's Graph API changelog, "Versions"): an expired
-- one is refused with the oldest live one named; one within 90 days is
-- warned.  "today" is a parameter, so the figures do not depend on the date.
---------------------------------------------------------------------------
SELECT * FROM wa_notify._api_version_status('v21.0', '2026-12-01');
SELECT * FROM wa_notify._api_version_status('v23.0', '2026-12-01');
SELECT * FROM wa_notify._api_version_status('v21.0', '2027-02-01');
\set VERBOSITY default
SELECT wa_notify._check_api_version('v21.0', '2027-02-01');
\set VERBOSITY terse
SELECT wa_notify._check_api_version('v22.0', '2027-02-01');
-- configure() itself, with versions placed relative to the real date
INSERT INTO wa_notify.api_version VALUES ('v98.0', current_date - 400, current_date - 1),
                                         ('v99.0', current_date - 300, current_date + 30);
-- (the message and hint name dates that move with the calendar: SQLSTATE and shape only)
DO $$
DECLARE st text; msg text; hint text;
BEGIN
    PERFORM wa_notify.configure(api_version => 'v98.0');
    RAISE NOTICE 'accepted';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, hint = PG_EXCEPTION_HINT;
    RAISE NOTICE '% / % / %', st, msg = format('Graph API version v98.0 expired on %s', to_char(current_date - 1, 'YYYY-MM-DD')),
                 hint ~ '^The oldest version still live is v[0-9.]+ \(until [0-9-]+\);';
END $$;
SELECT value FROM wa_notify.setting WHERE name = 'api_version';
SELECT wa_notify.configure(api_version => 'v99.0');
SELECT api_version, api_version_expires = current_date + 30 AS expires_in_30_days,
       api_version_warning LIKE 'Graph API v99.0 expires on % (in 30 days)%' AS warned
  FROM wa_notify.status;
SELECT wa_notify.configure(api_version => 'v23.0');
DELETE FROM wa_notify.api_version WHERE version IN ('v98.0', 'v99.0');
ROLLBACK;
