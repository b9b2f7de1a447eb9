-- configure_event(), events, carriers and tracking URLs.
\set SHOW_CONTEXT never
CREATE TEMP TABLE event_seed AS SELECT * FROM wa_notify.event;
SELECT event, description, enabled, template_name, template_language, params, button_param, template_status
  FROM wa_notify.events;

SELECT wa_notify.configure_event('order_processing', enabled => false);
SELECT wa_notify.configure_event(event => 'order_placed', template_name => 'pedido_confirmado',
                                 template_language => 'pt_PT', params => ARRAY['customer_name', 'total'],
                                 text_body => 'Pedido {order_number} recebido.');
SELECT event, enabled, template_name, template_language, language_overridden, params, text_body, template_status
  FROM wa_notify.events WHERE event IN ('order_placed', 'order_processing');
-- '' resets the language override to the default language
SELECT wa_notify.configure_event('order_placed', template_language => '');
SELECT template_language, language_overridden FROM wa_notify.events WHERE event = 'order_placed';

-- a template fix lifts a hold set by the dispatcher
UPDATE wa_notify.event SET held_reason = 'template parameter count mismatch (132000)', held_code = 132000,
       template_status = 'APPROVED' WHERE event = 'shipment_created';
SELECT wa_notify.configure_event('shipment_created', params => ARRAY['customer_name', 'order_number', 'tracking_number']);
SELECT held_reason, held_code, template_status FROM wa_notify.event WHERE event = 'shipment_created';

CREATE TEMP TABLE events_before AS SELECT * FROM wa_notify.event;
SELECT wa_notify.configure_event('order_shipped', enabled => true);
SELECT wa_notify.configure_event(NULL, enabled => true);
SELECT wa_notify.configure_event('order_placed', template_name => 'Pedido Confirmado');
SELECT wa_notify.configure_event('order_placed', template_language => 'brazilian');
SELECT wa_notify.configure_event('order_placed', params => ARRAY['customer name']);
SELECT wa_notify.configure_event('order_placed', params => ARRAY['customer_name', NULL]);
SELECT wa_notify.configure_event('order_placed', button_param => '1bad');
SELECT wa_notify.configure_event('order_placed', text_body => '   ');
SELECT count(*) AS events_changed_by_rejected_calls
  FROM (SELECT * FROM wa_notify.event EXCEPT SELECT * FROM events_before) AS d;

-- carriers: case-insensitive names, pattern must hold {tracking}
SELECT wa_notify.set_carrier('Correios', 'https://rastreamento.correios.com.br/app/index.php?objeto={tracking}');
SELECT wa_notify.set_carrier('Jadlog', 'https://www.jadlog.com.br/tracking?cte={tracking}');
SELECT wa_notify.set_carrier('JADLOG', 'https://www.jadlog.com.br/siteInstitucional/tracking.jsp?cte={tracking}');
SELECT wa_notify.set_carrier('Loggi', 'https://www.loggi.com/rastreador/');
SELECT wa_notify.set_carrier('Loggi', 'loggi.com/{tracking}');
SELECT wa_notify.set_carrier('', 'https://x.example/{tracking}');
SELECT carrier, url_pattern FROM wa_notify.carrier ORDER BY carrier;

SELECT wa_notify.tracking_url('correios', 'AA123456789BR');
SELECT wa_notify.tracking_url('Jadlog', '1234 5678/9&x=ç');     -- URL-encoded
SELECT wa_notify.tracking_url('Unknown Carrier', 'X1') IS NULL AS no_pattern_no_url;
SELECT wa_notify.configure(default_tracking_url => 'https://track.example.com/?code={tracking}');
SELECT wa_notify.tracking_url('Unknown Carrier', 'X1');
SELECT wa_notify.tracking_url(NULL, 'X1');
SELECT wa_notify.tracking_url('Correios', '') IS NULL AS no_tracking_no_url;
SELECT wa_notify.remove_carrier('CORREIOS'), wa_notify.remove_carrier('correios');
SELECT wa_notify.tracking_url('Correios', 'AA123456789BR');

-- restore the seed for later tests
UPDATE wa_notify.event e
   SET (enabled, template_name, template_language, params, button_param, text_body,
        template_status, held_reason, held_code) =
       (s.enabled, s.template_name, s.template_language, s.params, s.button_param, s.text_body,
        s.template_status, s.held_reason, s.held_code)
  FROM event_seed s WHERE e.event = s.event;
DELETE FROM wa_notify.carrier;
UPDATE wa_notify.setting SET value = NULL WHERE name = 'default_tracking_url';
