-- Saleor: text statuses (draft -> unfulfilled, canceled), uuid order ids,
-- tracking on order_fulfillment, the phone in account_address, a refund
-- as a payment transaction event linked to its order through a subquery.
\set SHOW_CONTEXT never
SET search_path = public;
DELETE FROM wa_notify.message;
DELETE FROM wa_notify.capture_queue;
SELECT setval('wa_notify.message_id_seq', 1, false) AS reset_ids,
       setval('wa_notify.watch_id_seq', 1, false) AS reset_watch_ids;
INSERT INTO wa_notify.carrier (carrier, url_pattern)
  VALUES ('correios', 'https://rastreamento.correios.com.br/app/index.php?objeto={tracking}')
  ON CONFLICT DO NOTHING;

CREATE TABLE account_address (
    id serial PRIMARY KEY, first_name varchar(256) NOT NULL DEFAULT '', last_name varchar(256) NOT NULL DEFAULT '',
    company_name varchar(256) NOT NULL DEFAULT '', street_address_1 varchar(256) NOT NULL DEFAULT '',
    city varchar(256) NOT NULL DEFAULT '', postal_code varchar(20) NOT NULL DEFAULT '',
    country varchar(2) NOT NULL DEFAULT 'BR', phone varchar(128) NOT NULL DEFAULT '');
CREATE TABLE order_order (
    id uuid PRIMARY KEY, number serial UNIQUE, created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(), status varchar(32) NOT NULL,
    charge_status varchar(32) NOT NULL DEFAULT 'none', user_email varchar(254) NOT NULL DEFAULT '',
    billing_address_id int REFERENCES account_address, shipping_address_id int REFERENCES account_address,
    shipping_method_name varchar(255), total_gross_amount numeric(12,3) NOT NULL DEFAULT 0,
    currency varchar(3) NOT NULL DEFAULT 'BRL', metadata jsonb NOT NULL DEFAULT '{}',
    private_metadata jsonb NOT NULL DEFAULT '{}');
CREATE INDEX order_order_user_email_idx ON order_order (user_email);
CREATE TABLE order_fulfillment (
    id serial PRIMARY KEY, fulfillment_order int NOT NULL, order_id uuid NOT NULL REFERENCES order_order,
    status varchar(32) NOT NULL, tracking_number varchar(255) NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now(), metadata jsonb NOT NULL DEFAULT '{}',
    private_metadata jsonb NOT NULL DEFAULT '{}');
CREATE TABLE payment_transactionitem (
    id serial PRIMARY KEY, order_id uuid REFERENCES order_order, name varchar(512) NOT NULL DEFAULT '',
    psp_reference varchar(512), currency varchar(3) NOT NULL DEFAULT 'BRL',
    charged_value numeric(20,3) NOT NULL DEFAULT 0, refunded_value numeric(20,3) NOT NULL DEFAULT 0);
CREATE TABLE payment_transactionevent (
    id serial PRIMARY KEY, created_at timestamptz NOT NULL DEFAULT now(),
    transaction_id int NOT NULL REFERENCES payment_transactionitem, type varchar(128),
    amount_value numeric(20,3) NOT NULL DEFAULT 0, currency varchar(3) NOT NULL DEFAULT 'BRL',
    psp_reference varchar(512), message varchar(512) NOT NULL DEFAULT '');

-- the mapping of doc/mappings.md
\set order_ctx 'SELECT a.phone, a.first_name AS customer_name, o.number::text AS order_number, o.total_gross_amount AS total FROM order_order o JOIN account_address a ON a.id = o.billing_address_id WHERE o.id = $1::uuid'
\set ship_ctx 'SELECT a.phone, a.first_name AS customer_name, o.number::text AS order_number, o.shipping_method_name AS carrier, f.tracking_number FROM order_order o JOIN account_address a ON a.id = o.billing_address_id LEFT JOIN LATERAL (SELECT * FROM order_fulfillment f WHERE f.order_id = o.id AND f.tracking_number <> '''' ORDER BY f.id = ($2->>''id'')::int DESC NULLS LAST, f.id DESC LIMIT 1) f ON true WHERE o.id = $1::uuid'
\set refund_ctx 'SELECT a.phone, a.first_name AS customer_name, o.number::text AS order_number, coalesce(($2->>''amount_value'')::numeric, (SELECT sum(t.refunded_value) FROM payment_transactionitem t WHERE t.order_id = o.id)) AS total FROM order_order o JOIN account_address a ON a.id = o.billing_address_id WHERE o.id = $1::uuid'
-- contexts run as wa_notify_context: it reads only what the shop grants it
GRANT SELECT ON ALL TABLES IN SCHEMA public TO wa_notify_context;
SELECT wa_notify.watch('order_placed', 'order_order', 'id', :'order_ctx',
                       $$status IN ('unconfirmed', 'unfulfilled')$$) IS NOT NULL AS placed,
       wa_notify.watch('order_processing', 'order_order', 'id', :'order_ctx',
                       $$charge_status IN ('full', 'overcharged')$$) IS NOT NULL AS processing,
       wa_notify.watch('order_cancelled', 'order_order', 'order_order.id', :'order_ctx',
                       $$order_order.status = 'canceled'$$) IS NOT NULL AS cancelled,
       wa_notify.watch('shipment_created', 'order_fulfillment', 'order_id', :'ship_ctx',
                       $$order_fulfillment.status = 'fulfilled' AND order_fulfillment.tracking_number <> ''$$) IS NOT NULL AS shipped,
       wa_notify.watch('shipment_delivered', 'order_fulfillment', 'order_id', :'ship_ctx',
                       $$metadata ? 'delivered_at'$$) IS NOT NULL AS delivered,
       wa_notify.watch('refund_issued', 'payment_transactionevent',
                       '(SELECT t.order_id FROM payment_transactionitem t WHERE t.id = payment_transactionevent.transaction_id)',
                       :'refund_ctx', $$type = 'refund_success'$$) IS NOT NULL AS refunded;

INSERT INTO account_address (first_name, last_name, phone) VALUES
    ('Maria', 'Silva', '+5511987654321'), ('João', 'Souza', '+55 21 99876-5432'), ('Pedro', 'Alves', '');

-- order A: a draft from the dashboard (no event), completed, paid, fulfilled, tracking added, delivered
INSERT INTO order_order (id, status, billing_address_id, shipping_method_name, total_gross_amount)
VALUES ('a0000000-0000-0000-0000-000000000001', 'draft', 1, 'Correios', 150);
UPDATE order_order SET total_gross_amount = 199.9 WHERE number = 1;
UPDATE order_order SET status = 'unfulfilled' WHERE number = 1;
UPDATE order_order SET status = 'unconfirmed' WHERE number = 1;   -- still "placed": no second message
UPDATE order_order SET charge_status = 'partial' WHERE number = 1;
UPDATE order_order SET charge_status = 'full' WHERE number = 1;
INSERT INTO order_fulfillment (fulfillment_order, order_id, status)
VALUES (1, 'a0000000-0000-0000-0000-000000000001', 'fulfilled');      -- no tracking yet: no event
UPDATE order_fulfillment SET tracking_number = 'QB987654321BR' WHERE id = 1;
UPDATE order_order SET status = 'fulfilled' WHERE number = 1;
UPDATE order_fulfillment SET metadata = '{"delivered_at": "2026-03-01T10:00:00Z"}' WHERE id = 1;
UPDATE order_fulfillment SET metadata = '{"delivered_at": "2026-03-01T10:00:00Z", "note": "x"}' WHERE id = 1;

-- order B: created unconfirmed, paid, canceled, touched while canceled, refunded
INSERT INTO order_order (id, status, billing_address_id, total_gross_amount, charge_status)
VALUES ('b0000000-0000-0000-0000-000000000002', 'unconfirmed', 2, 80, 'full');
UPDATE order_order SET status = 'canceled' WHERE number = 2;
UPDATE order_order SET updated_at = now(), private_metadata = '{"x": 1}' WHERE number = 2;
INSERT INTO payment_transactionitem (order_id, charged_value) VALUES ('b0000000-0000-0000-0000-000000000002', 80);
INSERT INTO payment_transactionevent (transaction_id, type, amount_value) VALUES (1, 'charge_success', 80);
BEGIN;
INSERT INTO payment_transactionevent (transaction_id, type, amount_value) VALUES (1, 'refund_success', 80);
UPDATE payment_transactionitem SET refunded_value = 80 WHERE id = 1;
COMMIT;

-- order C: a customer without a phone
INSERT INTO order_order (id, status, billing_address_id, total_gross_amount)
VALUES ('c0000000-0000-0000-0000-000000000003', 'unfulfilled', 3, 10);

SELECT wa_notify._resolve_pending() AS resolved;
SELECT event, order_key, status, phone, params, tracking, error_message
  FROM wa_notify.message ORDER BY id;
SELECT wa_notify.preview('shipment_created', 'a0000000-0000-0000-0000-000000000001')
       #> '{template,components}' AS shipment_components;

SELECT wa_notify.unwatch(event, to_regclass(source)) FROM wa_notify.watch ORDER BY id;
DROP TABLE payment_transactionevent, payment_transactionitem, order_fulfillment, order_order, account_address;
DELETE FROM wa_notify.message;
DELETE FROM wa_notify.capture_queue;
