-- Capture rules: one message per (event, order), transition only, values
-- as committed, rollback enqueues nothing, failures logged without
-- touching the shop's transaction, skip reasons, resend, preview.
\set SHOW_CONTEXT never
SET search_path = public;
DELETE FROM wa_notify.message;
DELETE FROM wa_notify.capture_queue;
SELECT setval('wa_notify.message_id_seq', 1, false) AS reset_ids,
       setval('wa_notify.watch_id_seq', 1, false) AS reset_watch_ids;
CREATE TABLE cshop_customer (id int PRIMARY KEY, name text, phone text);
CREATE TABLE cshop_order (id serial PRIMARY KEY, customer_id int REFERENCES cshop_customer,
                          status text NOT NULL DEFAULT 'new', total numeric(12,2),
                          delivered_at timestamptz, note text);
CREATE TABLE cshop_label (id serial PRIMARY KEY, order_ref int, code text, carrier text);
INSERT INTO cshop_customer VALUES (1, 'Maria', '(11) 98765-4321'), (2, 'João', 'not a phone'),
                                  (3, 'Ana', NULL), (4, 'Zé', '+55 21 2345-6789');
CREATE VIEW cshop_messages AS
  SELECT event, order_key, status, phone, params, tracking, error_message,
         resend_of IS NOT NULL AS is_resend, resolved_at IS NOT NULL AS resolved
    FROM wa_notify.message ORDER BY id;

-- contexts run as wa_notify_context: it reads only what the shop grants it
GRANT SELECT ON ALL TABLES IN SCHEMA public TO wa_notify_context;
SELECT wa_notify.watch('order_placed', 'cshop_order', 'id',
  $$SELECT c.phone, c.name AS customer_name, o.id::text AS order_number, o.total
      FROM cshop_order o JOIN cshop_customer c ON c.id = o.customer_id WHERE o.id = $1::int$$) > 0 AS ok;
SELECT wa_notify.watch('order_cancelled', 'cshop_order', 'id',
  $$SELECT c.phone, c.name AS customer_name, o.id::text AS order_number, $2->>'status' AS status_then
      FROM cshop_order o JOIN cshop_customer c ON c.id = o.customer_id WHERE o.id = $1::int$$,
  $$status = 'canceled'$$) > 0 AS ok;
SELECT wa_notify.watch('shipment_delivered', 'cshop_order', 'cshop_order.id',
  $$SELECT c.phone, c.name AS customer_name, o.id::text AS order_number, $2->>'delivered_at' AS delivered_at
      FROM cshop_order o JOIN cshop_customer c ON c.id = o.customer_id WHERE o.id = $1::int$$,
  'delivered_at IS NOT NULL') > 0 AS ok;
-- what each watch stages for $2: nothing, the status column only, the whole row (a timestamp is read)
SELECT c.kind, c.args[2] AS event, c.args[5] AS stages
  FROM wa_notify._capture_entries('cshop_order') c ORDER BY c.kind, c.watch_id;

-- an order inserted then updated in one transaction: the committed total is sent
BEGIN;
INSERT INTO cshop_order (customer_id, total) VALUES (1, 10);
UPDATE cshop_order SET total = 1234.5 WHERE id = 1;
COMMIT;
-- a rolled-back order enqueues nothing
BEGIN;
INSERT INTO cshop_order (customer_id, total) VALUES (1, 99);
ROLLBACK;
SELECT count(*) AS staged_before_resolution FROM wa_notify.capture_queue;
SELECT count(*) AS messages_before_resolution FROM wa_notify.message;
SELECT wa_notify._resolve_pending();
SELECT * FROM cshop_messages;

-- transition only: cancelling fires once, later updates of the cancelled order do not
UPDATE cshop_order SET status = 'canceled' WHERE id = 1;
UPDATE cshop_order SET note = 'refund asked' WHERE id = 1;
UPDATE cshop_order SET status = 'canceled' WHERE id = 1;
-- un-cancelled and cancelled again: still one message per (event, order)
UPDATE cshop_order SET status = 'new' WHERE id = 1;
UPDATE cshop_order SET status = 'canceled' WHERE id = 1;
-- NULL to a value: delivered once
UPDATE cshop_order SET delivered_at = '2026-01-02 10:00+00' WHERE id = 1;
UPDATE cshop_order SET delivered_at = '2026-01-03 10:00+00' WHERE id = 1;
SELECT wa_notify._resolve_pending();
SELECT event, order_key, status, params->>'status_then' AS status_then, params->>'delivered_at' AS delivered_at
  FROM cshop_messages WHERE event <> 'order_placed';
SELECT event, source_row FROM wa_notify.message WHERE event = 'order_cancelled';
SELECT event, source_row->>'id' AS id, source_row->>'delivered_at' AS delivered_at, source_row->>'note' AS note
  FROM wa_notify.message WHERE event = 'shipment_delivered';
-- inserted already cancelled: fires on INSERT
INSERT INTO cshop_order (id, customer_id, status, total) VALUES (10, 4, 'canceled', 5);
SELECT wa_notify._resolve_pending();
SELECT event, order_key, status, phone FROM cshop_messages WHERE order_key = '10';

-- failures are logged, the shop's rows commit: bad phone, no phone, no context row
INSERT INTO cshop_order (id, customer_id, total) VALUES (20, 2, 1), (21, 3, 1), (22, NULL, 1);
SELECT count(*) AS shop_orders FROM cshop_order WHERE id IN (20, 21, 22);
SELECT wa_notify._resolve_pending();
SELECT order_key, status, phone, error_message FROM cshop_messages WHERE order_key IN ('20', '21', '22');
SELECT count(*) AS failed_with_time FROM wa_notify.message WHERE order_key IN ('20', '21', '22') AND failed_at IS NOT NULL;

-- a context that fails at run time (division by zero for this order) fails only its message
SELECT wa_notify.watch('order_processing', 'cshop_order', 'id',
  $$SELECT c.phone, c.name AS customer_name, (o.id / (o.total::int - 7))::text AS order_number
      FROM cshop_order o JOIN cshop_customer c ON c.id = o.customer_id WHERE o.id = $1::int$$,
  $$status = 'processing'$$) > 0 AS ok;
INSERT INTO cshop_order (id, customer_id, status, total) VALUES (30, 1, 'processing', 7), (31, 1, 'processing', 8);
SELECT wa_notify._resolve_pending();
SELECT order_key, status, params->>'order_number' AS order_number, error_message FROM cshop_messages
 WHERE event = 'order_processing';

-- a template parameter the context does not give: failed with the parameter named
UPDATE wa_notify.event SET params = '{customer_name,order_number,total}' WHERE event = 'order_processing';
INSERT INTO cshop_order (id, customer_id, status, total) VALUES (32, 1, 'processing', 8);
SELECT wa_notify._resolve_pending();
SELECT order_key, status, error_message FROM cshop_messages WHERE order_key = '32';
UPDATE wa_notify.event SET params = '{customer_name,order_number}' WHERE event = 'order_processing';

-- disabled event and blacklisted phone: skipped with the reason, phone and params kept
UPDATE wa_notify.event SET enabled = false WHERE event = 'order_placed';
INSERT INTO cshop_order (id, customer_id, total) VALUES (40, 1, 3);
SELECT wa_notify._resolve_pending();
UPDATE wa_notify.event SET enabled = true WHERE event = 'order_placed';
INSERT INTO wa_notify.blocked (phone_key, phone, reason, source)
  VALUES (wa_notify.phone_key('552123456789'), '552123456789', 'asked to stop', 'manual');
INSERT INTO cshop_order (id, customer_id, total) VALUES (41, 4, 3);
-- a blacklisted mobile matches without its ninth digit too
INSERT INTO wa_notify.blocked (phone_key, phone, reason, source)
  VALUES (wa_notify.phone_key('551187654321'), '551187654321', NULL, 'auto');
INSERT INTO cshop_order (id, customer_id, total) VALUES (42, 1, 3);
SELECT wa_notify._resolve_pending();
SELECT order_key, status, phone, params->>'customer_name' AS name, error_message FROM cshop_messages
 WHERE order_key IN ('40', '41', '42') ORDER BY order_key;
DELETE FROM wa_notify.blocked;

-- the order key from a scalar subquery, fires_when with a subquery (labels of
-- a shipped order), and a label inserted after the event in the same transaction
SELECT wa_notify.watch('shipment_created', 'cshop_label',
  '(SELECT o.id FROM cshop_order o WHERE o.id = cshop_label.order_ref)',
  $$SELECT c.phone, c.name AS customer_name, o.id::text AS order_number,
           l.carrier, l.code AS tracking_number
      FROM cshop_order o JOIN cshop_customer c ON c.id = o.customer_id
      JOIN LATERAL (SELECT * FROM cshop_label l WHERE l.order_ref = o.id AND l.code IS NOT NULL
                    ORDER BY l.id DESC LIMIT 1) l ON true
     WHERE o.id = $1::int$$,
  $$code IS NOT NULL AND EXISTS (SELECT 1 FROM cshop_order o WHERE o.id = order_ref AND o.status <> 'canceled')$$) > 0 AS ok;
SELECT tgname, pg_get_triggerdef(oid) LIKE '%WHEN%' AS has_when FROM pg_trigger
 WHERE tgrelid = 'cshop_label'::regclass ORDER BY tgname;
INSERT INTO cshop_order (id, customer_id, total) VALUES (50, 1, 3), (51, 1, 3);
UPDATE cshop_order SET status = 'canceled' WHERE id = 51;
BEGIN;
INSERT INTO cshop_label (order_ref, code, carrier) VALUES (50, 'OLD1', 'Correios');
UPDATE cshop_label SET code = 'QB123BR' WHERE order_ref = 50;
COMMIT;
INSERT INTO cshop_label (order_ref, code, carrier) VALUES (51, 'X1', 'Correios');  -- cancelled order: no fire
INSERT INTO cshop_label (order_ref, code, carrier) VALUES (99, 'X2', 'Correios');  -- no such order: no fire
SELECT wa_notify._resolve_pending();
SELECT order_key, status, tracking, params->>'carrier' AS carrier, error_message, resolved
  FROM cshop_messages WHERE event = 'shipment_created';

-- an order key expression failing at INSERT time: logged failed, the shop's row commits
SELECT wa_notify.watch('refund_issued', 'cshop_label', '(SELECT o.id FROM cshop_order o WHERE o.id >= cshop_label.order_ref)',
  $$SELECT '11987654321' AS phone$$, $$carrier = 'refund'$$) > 0 AS ok;
INSERT INTO cshop_label (order_ref, carrier) VALUES (1, 'refund');
-- and one giving NULL
INSERT INTO cshop_label (order_ref, carrier) VALUES (1000, 'refund');
SELECT count(*) AS labels FROM cshop_label WHERE carrier = 'refund';
SELECT wa_notify._resolve_pending();
SELECT event, order_key, status, error_message, resolved FROM cshop_messages WHERE event = 'refund_issued';

-- resend: a new row pointing at the original; a captured message is resolved again
SELECT id AS first_id FROM wa_notify.message WHERE event = 'order_placed' AND order_key = '1' \gset
UPDATE wa_notify.message SET status = 'sent' WHERE id = :first_id;
UPDATE cshop_customer SET phone = '11 91234-5678' WHERE id = 1;
SELECT wa_notify.resend(:first_id) > :first_id AS new_row;
SELECT wa_notify.resend(:first_id);  -- its resend is still queued
SELECT wa_notify._resolve_pending();
SELECT order_key, status, phone, is_resend FROM cshop_messages WHERE event = 'order_placed' AND order_key = '1';
SELECT wa_notify.resend(m.id) FROM wa_notify.message m WHERE m.resend_of = :first_id ORDER BY m.id LIMIT 1;
SELECT wa_notify.resend(-1);
-- a message inserted by hand (no watch): resend copies phone and params
INSERT INTO wa_notify.message (event, order_key, phone, params, status)
  VALUES ('order_placed', 'manual-1', '5511900000000', '{"customer_name": "M"}', 'failed') RETURNING id AS manual_id \gset
SELECT wa_notify.resend(:manual_id) IS NOT NULL AS resent;
SELECT order_key, status, phone, params, is_resend, resolved FROM cshop_messages WHERE order_key = 'manual-1';

-- preview: an existing message (its id as callback data), a pending one, none yet
SELECT wa_notify.preview('order_placed', '1') - 'biz_opaque_callback_data' AS existing,
       wa_notify.preview('order_placed', '1') ->> 'biz_opaque_callback_data'
         = wa_notify._callback_data((SELECT max(id) FROM wa_notify.message WHERE event = 'order_placed' AND order_key = '1')) AS newest_id;
INSERT INTO cshop_order (id, customer_id, total) VALUES (60, 1, 20);
SELECT wa_notify.preview('order_placed', '60') #> '{template,components,0,parameters}' AS pending;
SELECT wa_notify.preview('order_processing', '1')::text AS not_captured;
SELECT wa_notify.preview('order_processing', '12345');
SELECT wa_notify.preview('refund_issued', '1')->>'to' AS refund_to;

-- a partitioned table whose partitions order their columns differently
CREATE TABLE pshop_order (id int NOT NULL, note text, status text, phone text) PARTITION BY RANGE (id);
CREATE TABLE pshop_order_1 PARTITION OF pshop_order FOR VALUES FROM (0) TO (100);
CREATE TABLE pshop_order_2 (status text, phone text, note text, id int NOT NULL);
ALTER TABLE pshop_order ATTACH PARTITION pshop_order_2 FOR VALUES FROM (100) TO (200);
GRANT SELECT ON pshop_order TO wa_notify_context;
SELECT wa_notify.watch('order_cancelled', 'pshop_order', 'id',
  $$SELECT p.phone, 'P' AS customer_name, p.id::text AS order_number, $2->>'note' AS note_then FROM pshop_order p WHERE p.id = $1::int$$,
  $$status = 'canceled'$$) > 0 AS ok;
INSERT INTO pshop_order VALUES (5, 'first', 'new', '11 98765-4321'), (105, 'second', 'new', '21 98765-4321');
UPDATE pshop_order SET status = 'canceled', note = 'bye' WHERE true;
UPDATE pshop_order SET note = 'later' WHERE true;
SELECT wa_notify._resolve_pending();
SELECT event, order_key, status, phone, params->>'note_then' AS note_then, source_row
  FROM wa_notify.message WHERE order_key IN ('5', '105') AND event = 'order_cancelled'
 ORDER BY order_key;
SELECT wa_notify.unwatch('order_cancelled', 'pshop_order');
DROP TABLE pshop_order;

-- a capture rolled back to a savepoint is gone, the next one in the same
-- transaction is staged, under the staging table's lock again
BEGIN;
SAVEPOINT s;
INSERT INTO cshop_order (id, customer_id, total) VALUES (80, 1, 1);
ROLLBACK TO SAVEPOINT s;
INSERT INTO cshop_order (id, customer_id, total) VALUES (81, 1, 1);
SELECT mode FROM pg_locks WHERE relation = 'wa_notify.capture_queue'::regclass AND pid = pg_backend_pid();
COMMIT;
SELECT event, order_key FROM wa_notify.capture_queue WHERE order_key IN ('80', '81');

-- unwatch: the table's triggers are gone, inserts enqueue nothing
SELECT wa_notify.unwatch(event, to_regclass(source)) FROM wa_notify.watch ORDER BY id;
SELECT count(*) AS wa_triggers FROM pg_trigger WHERE tgfoid = 'wa_notify._capture()'::regprocedure;
INSERT INTO cshop_order (id, customer_id, total) VALUES (70, 1, 1);
SELECT count(*) AS messages_for_70 FROM wa_notify.message WHERE order_key = '70';
DROP VIEW cshop_messages;
DROP TABLE cshop_label, cshop_order, cshop_customer;
DELETE FROM wa_notify.message;
DELETE FROM wa_notify.capture_queue;
