-- Solidus (Spree): state machines in text columns (state, payment_state),
-- shipped_at on spree_shipments with the tracking code typed in the same
-- transaction, the carrier from the selected shipping method, refunds as
-- rows of spree_refunds linked to the order through spree_payments.
\set SHOW_CONTEXT never
SET search_path = public;
DELETE FROM wa_notify.message;
DELETE FROM wa_notify.capture_queue;
SELECT setval('wa_notify.message_id_seq', 1, false) AS reset_ids,
       setval('wa_notify.watch_id_seq', 1, false) AS reset_watch_ids;
INSERT INTO wa_notify.carrier (carrier, url_pattern)
  VALUES ('jadlog', 'https://www.jadlog.com.br/tracking?cte={tracking}')
  ON CONFLICT DO NOTHING;

CREATE TABLE spree_addresses (
    id serial PRIMARY KEY, name varchar, address1 varchar, city varchar, zipcode varchar,
    phone varchar, state_id int, country_id int, created_at timestamp, updated_at timestamp);
CREATE TABLE spree_orders (
    id serial PRIMARY KEY, number varchar(32), item_total numeric(10,2) NOT NULL DEFAULT 0,
    total numeric(10,2) NOT NULL DEFAULT 0, state varchar, adjustment_total numeric(10,2) NOT NULL DEFAULT 0,
    user_id int, completed_at timestamp, bill_address_id int REFERENCES spree_addresses,
    ship_address_id int REFERENCES spree_addresses, payment_total numeric(10,2) DEFAULT 0,
    shipment_state varchar, payment_state varchar, email varchar, currency varchar DEFAULT 'BRL',
    canceled_at timestamp, created_at timestamp NOT NULL DEFAULT now(), updated_at timestamp NOT NULL DEFAULT now());
CREATE UNIQUE INDEX index_spree_orders_on_number ON spree_orders (number);
CREATE TABLE spree_shipping_methods (id serial PRIMARY KEY, name varchar, carrier varchar,
    service_level varchar, tracking_url varchar);
CREATE TABLE spree_shipments (
    id serial PRIMARY KEY, tracking varchar, number varchar, cost numeric(10,2) DEFAULT 0,
    shipped_at timestamp, order_id int REFERENCES spree_orders, state varchar,
    stock_location_id int, created_at timestamp, updated_at timestamp,
    delivered_at timestamp);   -- not in Solidus core: added by the shop's delivery extension
CREATE TABLE spree_shipping_rates (id serial PRIMARY KEY, shipment_id int REFERENCES spree_shipments,
    shipping_method_id int REFERENCES spree_shipping_methods, selected boolean DEFAULT false,
    cost numeric(8,2) DEFAULT 0);
CREATE TABLE spree_payments (id serial PRIMARY KEY, amount numeric(10,2) NOT NULL DEFAULT 0,
    order_id int REFERENCES spree_orders, state varchar, number varchar);
CREATE TABLE spree_refunds (id serial PRIMARY KEY, payment_id int REFERENCES spree_payments,
    amount numeric(10,2) NOT NULL DEFAULT 0, transaction_id varchar, refund_reason_id int,
    created_at timestamp, updated_at timestamp);

-- the mapping of doc/mappings.md
\set order_ctx 'SELECT a.phone, split_part(a.name, '' '', 1) AS customer_name, o.number AS order_number, o.total FROM spree_orders o JOIN spree_addresses a ON a.id = o.bill_address_id WHERE o.id = $1::int'
\set ship_ctx 'SELECT a.phone, split_part(a.name, '' '', 1) AS customer_name, o.number AS order_number, sm.carrier, s.tracking AS tracking_number, replace(sm.tracking_url, '':tracking'', s.tracking) AS carrier_tracking_url FROM spree_orders o JOIN spree_addresses a ON a.id = o.bill_address_id LEFT JOIN LATERAL (SELECT * FROM spree_shipments s WHERE s.order_id = o.id AND s.shipped_at IS NOT NULL ORDER BY s.id = ($2->>''id'')::int DESC NULLS LAST, s.id DESC LIMIT 1) s ON true LEFT JOIN spree_shipping_rates r ON r.shipment_id = s.id AND r.selected LEFT JOIN spree_shipping_methods sm ON sm.id = r.shipping_method_id WHERE o.id = $1::int'
\set refund_ctx 'SELECT a.phone, split_part(a.name, '' '', 1) AS customer_name, o.number AS order_number, coalesce(($2->>''amount'')::numeric, (SELECT sum(r.amount) FROM spree_refunds r JOIN spree_payments p ON p.id = r.payment_id WHERE p.order_id = o.id)) AS total FROM spree_orders o JOIN spree_addresses a ON a.id = o.bill_address_id WHERE o.id = $1::int'
-- contexts run as wa_notify_context: it reads only what the shop grants it
GRANT SELECT ON ALL TABLES IN SCHEMA public TO wa_notify_context;
SELECT wa_notify.watch('order_placed', 'spree_orders', 'id', :'order_ctx', 'completed_at IS NOT NULL') IS NOT NULL AS placed,
       wa_notify.watch('order_processing', 'spree_orders', 'id', :'order_ctx', $$payment_state = 'paid'$$) IS NOT NULL AS processing,
       wa_notify.watch('order_cancelled', 'spree_orders', 'id', :'order_ctx', $$state = 'canceled'$$) IS NOT NULL AS cancelled,
       wa_notify.watch('shipment_created', 'spree_shipments', 'order_id', :'ship_ctx', 'shipped_at IS NOT NULL') IS NOT NULL AS shipped,
       wa_notify.watch('shipment_delivered', 'spree_shipments', 'order_id', :'ship_ctx', 'delivered_at IS NOT NULL') IS NOT NULL AS delivered,
       wa_notify.watch('refund_issued', 'spree_refunds',
                       '(SELECT p.order_id FROM spree_payments p WHERE p.id = spree_refunds.payment_id)',
                       :'refund_ctx') IS NOT NULL AS refunded;

INSERT INTO spree_addresses (name, phone) VALUES ('Maria Silva', '11 98765-4321'), ('João Souza', '(21) 2345-6789');
INSERT INTO spree_shipping_methods (name, carrier, service_level, tracking_url)
VALUES ('Jadlog .Package', 'Jadlog', 'package', 'https://www.jadlog.com.br/tracking?cte=:tracking');

-- order R100: the cart walks the checkout (no event until complete), paid, shipped, delivered
INSERT INTO spree_orders (number, state, total, bill_address_id) VALUES ('R100', 'cart', 0, 1);
UPDATE spree_orders SET state = 'address', total = 250 WHERE number = 'R100';
UPDATE spree_orders SET state = 'delivery' WHERE number = 'R100';
UPDATE spree_orders SET state = 'payment', total = 265.5 WHERE number = 'R100';
BEGIN;  -- Spree completes the order and records the payment state in one transaction
UPDATE spree_orders SET state = 'complete', completed_at = now(), payment_state = 'balance_due', shipment_state = 'pending' WHERE number = 'R100';
INSERT INTO spree_shipments (number, order_id, state) VALUES ('H100', 1, 'pending');
INSERT INTO spree_shipping_rates (shipment_id, shipping_method_id, selected) VALUES (1, 1, true);
COMMIT;
UPDATE spree_orders SET payment_state = 'paid', shipment_state = 'ready' WHERE number = 'R100';
UPDATE spree_shipments SET state = 'ready' WHERE id = 1;
BEGIN;  -- ship! sets shipped_at; the tracking code is saved afterwards in the same transaction
UPDATE spree_shipments SET state = 'shipped', shipped_at = now() WHERE id = 1;
UPDATE spree_orders SET shipment_state = 'shipped' WHERE number = 'R100';
UPDATE spree_shipments SET tracking = 'JD-0001/X' WHERE id = 1;
COMMIT;
UPDATE spree_shipments SET delivered_at = now() WHERE id = 1;
UPDATE spree_orders SET updated_at = now() WHERE number = 'R100';

-- order R200: completed, canceled, updated while canceled, refunded twice (one message)
INSERT INTO spree_orders (number, state, total, bill_address_id, completed_at, payment_state)
VALUES ('R200', 'complete', 99.9, 2, now(), 'paid');
UPDATE spree_orders SET state = 'canceled', canceled_at = now(), payment_state = 'void' WHERE number = 'R200';
UPDATE spree_orders SET updated_at = now() + interval '1 minute' WHERE number = 'R200';
INSERT INTO spree_payments (amount, order_id, state, number) VALUES (99.9, 2, 'completed', 'P200');
INSERT INTO spree_refunds (payment_id, amount, transaction_id) VALUES (1, 49.95, 'T1');
INSERT INTO spree_refunds (payment_id, amount, transaction_id) VALUES (1, 49.95, 'T2');

SELECT wa_notify._resolve_pending() AS resolved;
SELECT event, order_key, status, phone, params, tracking, error_message
  FROM wa_notify.message ORDER BY id;
-- the shop's own tracking URL is one more context field, next to the carrier pattern's
UPDATE wa_notify.setting SET value = 'false' WHERE name = 'use_templates';
UPDATE wa_notify.event SET text_body = 'Pedido {order_number}: {carrier_tracking_url} | {tracking_url}' WHERE event = 'shipment_created';
SELECT wa_notify.preview('shipment_created', '1') #>> '{text,body}' AS shipment_text;
UPDATE wa_notify.setting SET value = 'true' WHERE name = 'use_templates';
UPDATE wa_notify.event SET text_body = 'Olá {customer_name}! Seu pedido #{order_number} foi enviado pela {carrier}. Código de rastreio: {tracking_number}. Acompanhe: {tracking_url}'
 WHERE event = 'shipment_created';

SELECT wa_notify.unwatch(event, to_regclass(source)) FROM wa_notify.watch ORDER BY id;
DROP TABLE spree_refunds, spree_payments, spree_shipping_rates, spree_shipments, spree_shipping_methods,
           spree_orders, spree_addresses;
DELETE FROM wa_notify.message;
DELETE FROM wa_notify.capture_queue;
