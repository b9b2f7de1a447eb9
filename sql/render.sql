-- Rendering: the exact request bodies of the seed's templates, text bodies,
-- pt_BR money, tracking URLs.
\set SHOW_CONTEXT never
SET search_path = wa_notify, public;
CREATE TEMP TABLE saved_event AS SELECT * FROM wa_notify.event;
DELETE FROM wa_notify.carrier;
INSERT INTO wa_notify.carrier (carrier, url_pattern) VALUES
    ('correios', 'https://rastreamento.correios.com.br/app/index.php?objeto={tracking}'),
    ('jadlog', 'https://www.jadlog.com.br/tracking?cte={tracking}');
UPDATE wa_notify.setting SET value = 'https://track.example.com/{tracking}/status' WHERE name = 'default_tracking_url';

-- money
SELECT v, _format_money(v) FROM (VALUES ('0'), ('5'), ('1234.5'), ('1234.56'), ('1234.565'),
    ('999.995'), ('-1234567.891'), ('0.004'), ('.5'), ('1000000'), ('R$ 10,00'), ('12a'), ('')) t(v);

-- tracking URLs: carrier case-insensitive, default pattern, URL-encoding
SELECT _tracking_url('Correios', 'BR 123/45&x') AS correios,
       _tracking_url('JADLOG', 'AB123') AS jadlog,
       _tracking_url('unknown carrier', 'AB123') AS fallback,
       _tracking_url(NULL, 'AB123') AS no_carrier;

-- order confirmation (order_placed): body parameters in order, total in pt_BR
SELECT _render('order_placed', '5511987654321',
    '{"phone": "(11) 98765-4321", "customer_name": "Maria", "order_number": "1001", "total": 1234.5}', 42)
  = '{"messaging_product":"whatsapp","recipient_type":"individual","to":"5511987654321","type":"template",
      "template":{"name":"order_confirmation","language":{"code":"pt_BR"},
        "components":[{"type":"body","parameters":[{"type":"text","text":"Maria"},
                                                  {"type":"text","text":"1001"},
                                                  {"type":"text","text":"1.234,50"}]}]},
      "biz_opaque_callback_data":"42"}'::jsonb
     || jsonb_build_object('biz_opaque_callback_data', wa_notify._callback_data(42)) AS order_confirmation_ok;
SELECT _render('order_placed', '5511987654321',
    '{"customer_name": "Maria", "order_number": 1001, "total": "99.9"}', 42)::text
       = replace('{"to": "5511987654321", "type": "template", "template": {"name": "order_confirmation", "language": {"code": "pt_BR"}, "components": [{"type": "body", "parameters": [{"text": "Maria", "type": "text"}, {"text": "1001", "type": "text"}, {"text": "99,90", "type": "text"}]}]}, "recipient_type": "individual", "messaging_product": "whatsapp", "biz_opaque_callback_data": "CB"}',
                 'CB', wa_notify._callback_data(42)) AS order_confirmation_text_ok;
-- the callback data: the message id, a dot, 32 hex digits of MAC (secrets.c)
SELECT _render('order_placed', '5511987654321', '{"customer_name": "M", "order_number": "1", "total": "1"}', 42)
       ->> 'biz_opaque_callback_data' ~ '^42\.[0-9a-f]{32}$' AS callback_is_id_and_mac,
       wa_notify._callback_data(42) <> wa_notify._callback_data(43) AS mac_per_id;

-- shipment tracking: carrier, tracking number, URL button with the number
SELECT _render('shipment_created', '5511987654321',
    '{"customer_name": "João", "order_number": "1002", "carrier": "Correios", "tracking_number": "QB123456789BR"}', 7)
  = '{"messaging_product":"whatsapp","recipient_type":"individual","to":"5511987654321","type":"template",
      "template":{"name":"shipment_tracking","language":{"code":"pt_BR"},
        "components":[{"type":"body","parameters":[{"type":"text","text":"João"},
                                                  {"type":"text","text":"1002"},
                                                  {"type":"text","text":"Correios"},
                                                  {"type":"text","text":"QB123456789BR"}]},
                      {"type":"button","sub_type":"url","index":"0",
                       "parameters":[{"type":"text","text":"QB123456789BR"}]}]},
      "biz_opaque_callback_data":"7"}'::jsonb
     || jsonb_build_object('biz_opaque_callback_data', wa_notify._callback_data(7)) AS shipment_tracking_ok;

-- delivery confirmation, with a language override
UPDATE wa_notify.event SET template_language = 'pt_PT' WHERE event = 'shipment_delivered';
SELECT _render('shipment_delivered', '5521912345678',
    '{"customer_name": "Ana", "order_number": "A-77"}', 9)
  = '{"messaging_product":"whatsapp","recipient_type":"individual","to":"5521912345678","type":"template",
      "template":{"name":"delivery_confirmation","language":{"code":"pt_PT"},
        "components":[{"type":"body","parameters":[{"type":"text","text":"Ana"},
                                                  {"type":"text","text":"A-77"}]}]},
      "biz_opaque_callback_data":"9"}'::jsonb
     || jsonb_build_object('biz_opaque_callback_data', wa_notify._callback_data(9)) AS delivery_confirmation_ok;
UPDATE wa_notify.event SET template_language = NULL WHERE event = 'shipment_delivered';

-- default_language applies when the event has no override
UPDATE wa_notify.setting SET value = 'en_US' WHERE name = 'default_language';
SELECT _render('shipment_delivered', '5521912345678', '{"customer_name": "Ana", "order_number": "1"}', 9)
       #>> '{template,language,code}' AS language;
UPDATE wa_notify.setting SET value = 'pt_BR' WHERE name = 'default_language';

-- a missing field renders as an empty text (resolution fails such messages first)
SELECT _render('shipment_delivered', '5521912345678', '{"customer_name": "Ana"}', 9)
       #> '{template,components,0,parameters}' AS parameters;

-- text bodies when templates are off: placeholders, tracking_url, money
UPDATE wa_notify.setting SET value = 'false' WHERE name = 'use_templates';
SELECT _render('shipment_created', '5511987654321',
    '{"customer_name": "João", "order_number": "1002", "carrier": "correios", "tracking_number": "QB 1/2"}', 7)
  = jsonb_build_object('messaging_product', 'whatsapp', 'recipient_type', 'individual',
      'to', '5511987654321', 'type', 'text',
      'text', jsonb_build_object('preview_url', true, 'body',
        'Olá João! Seu pedido #1002 foi enviado pela correios. Código de rastreio: QB 1/2. Acompanhe: https://rastreamento.correios.com.br/app/index.php?objeto=QB%201%2F2'),
      'biz_opaque_callback_data', wa_notify._callback_data(7)) AS text_shipment_ok;
SELECT _render('order_placed', '5511987654321',
    '{"customer_name": "Maria", "order_number": "1001", "total": "1234567.8"}', 1) -> 'text' ->> 'body' AS text_order;
SELECT _render('refund_issued', '5511987654321', '{"customer_name": "Maria", "order_number": "1001"}', 1)
       -> 'text' ->> 'body' AS text_missing_total;
-- a context-given tracking_url wins; unknown {names} and stray braces
UPDATE wa_notify.event SET text_body = 'Link {tracking_url} {nope} {not a field} {} {{order_number}}' WHERE event = 'shipment_created';
SELECT _render('shipment_created', '5511987654321',
    '{"tracking_url": "https://x.test/1", "order_number": "5"}', 1) -> 'text' ->> 'body' AS text_custom;
UPDATE wa_notify.setting SET value = 'true' WHERE name = 'use_templates';

-- a template-less event falls back to text; no id: no biz_opaque_callback_data
UPDATE wa_notify.event SET template_name = NULL WHERE event = 'order_cancelled';
SELECT _render('order_cancelled', '5511987654321', '{"customer_name": "Maria", "order_number": "3"}', NULL)::text;
-- a button parameter that is tracking_url itself
UPDATE wa_notify.event SET button_param = 'tracking_url' WHERE event = 'order_processing';
SELECT _render('order_processing', '5511987654321',
    '{"customer_name": "M", "order_number": "3", "carrier": "JadLog", "tracking_number": "X9"}', 3)
       #> '{template,components,1}' AS button;
SELECT _render('no_such_event', '5511987654321', '{}', 1);

-- preview with sample values
SELECT preview('order_placed', '{"phone": "(11) 98765-4321", "customer_name": "Maria", "order_number": "1001", "total": 10}'::jsonb)::text;
SELECT preview('order_placed', '{"customer_name": "Maria"}'::jsonb);
SELECT preview('order_placed', '{"phone": "12"}'::jsonb);

-- leave the configuration as found
UPDATE wa_notify.event e SET template_name = s.template_name, template_language = s.template_language,
       params = s.params, button_param = s.button_param, text_body = s.text_body
  FROM saved_event s WHERE s.event = e.event;
UPDATE wa_notify.setting SET value = NULL WHERE name = 'default_tracking_url';
DELETE FROM wa_notify.carrier;
