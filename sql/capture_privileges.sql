-- Capture's privilege model (doc/capture.md, Privileges): watch() needs
-- the TRIGGER privilege on the shop's table, checked against the caller;
-- unwatch() needs TRIGGER or membership in the table's owner role; the
-- watch records the calling role; every context runs as the role
-- wa_notify_context (in the worker too, never as the superuser nor as the
-- admin), so a context can read only what the shop granted that role.  The
-- admin roles have exactly doc/roles.md's admin grants.
\set SHOW_CONTEXT never
SET search_path = public;
DELETE FROM wa_notify.message;
DELETE FROM wa_notify.capture_queue;
SELECT setval('wa_notify.message_id_seq', 1, false) AS reset_ids,
       setval('wa_notify.watch_id_seq', 100, false) AS reset_watch_ids;

CREATE ROLE regress_cp_shop;                 -- the shop's role: owns the tables
CREATE ROLE regress_cp_admin;                -- admin + TRIGGER on the orders table
CREATE ROLE regress_cp_other;                -- admin, no TRIGGER
CREATE ROLE regress_cp_gone;                 -- admin + TRIGGER, dropped later
CREATE ROLE regress_cp_super SUPERUSER;
DO $$
DECLARE r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['regress_cp_admin', 'regress_cp_other', 'regress_cp_gone'] LOOP
        -- doc/roles.md: admin
        EXECUTE format('GRANT USAGE ON SCHEMA wa_notify TO %I', r);
        EXECUTE format('GRANT SELECT ON ALL TABLES IN SCHEMA wa_notify TO %I', r);
        EXECUTE format('GRANT INSERT, UPDATE ON wa_notify.message TO %I', r);
        EXECUTE format('GRANT USAGE ON SEQUENCE wa_notify.message_id_seq TO %I', r);
        EXECUTE format('GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA wa_notify TO %I', r);
    END LOOP;
END $$;

CREATE TABLE ppshop_customer (id int PRIMARY KEY, name text, phone text);
CREATE TABLE ppshop_order (id serial PRIMARY KEY, customer_id int, total numeric(12,2),
                           status text NOT NULL DEFAULT 'new');
CREATE TABLE ppshop_card (customer_id int, number text);     -- no admin may read it
INSERT INTO ppshop_customer VALUES (1, 'Maria', '(11) 98765-4321');
INSERT INTO ppshop_card VALUES (1, '4111111111111111');
ALTER TABLE ppshop_customer OWNER TO regress_cp_shop;
ALTER TABLE ppshop_order OWNER TO regress_cp_shop;
ALTER TABLE ppshop_card OWNER TO regress_cp_shop;
ALTER SEQUENCE ppshop_order_id_seq OWNER TO regress_cp_shop;
GRANT SELECT ON ppshop_customer, ppshop_order TO regress_cp_admin, regress_cp_other, regress_cp_gone;
GRANT TRIGGER ON ppshop_order TO regress_cp_admin, regress_cp_gone;
-- contexts run as wa_notify_context: the shop grants it what they read
GRANT SELECT ON ppshop_customer, ppshop_order TO wa_notify_context;

-- no TRIGGER privilege: a clear error, nothing attached, nothing recorded
SET ROLE regress_cp_other;
SELECT wa_notify.watch('order_placed', 'ppshop_order', 'id',
  $$SELECT c.phone FROM ppshop_order o JOIN ppshop_customer c ON c.id = o.customer_id WHERE o.id = $1::int$$);
-- the gate and the internals, called directly, give nothing more
SELECT wa_notify._watch_store('order_placed', 'ppshop_order', 'id', NULL, 'SELECT 1 AS phone', 'public');
SELECT wa_notify._watch_upsert('order_placed', 'ppshop_order', 'id', NULL, 'SELECT 1 AS phone', 'public', 'regress_cp_super');
SELECT wa_notify._context_exec('public', $$SELECT pg_read_file('PG_VERSION') AS phone$$, NULL, NULL, 5);
RESET ROLE;
SELECT count(*) AS watches FROM wa_notify.watch;
SELECT count(*) AS triggers FROM pg_trigger WHERE tgrelid = 'ppshop_order'::regclass AND NOT tgisinternal;

-- the admin with TRIGGER (not the owner) watches; each watch records it
SET ROLE regress_cp_admin;
SELECT wa_notify.watch('order_placed', 'ppshop_order', 'id',
  $$SELECT c.phone, c.name AS customer_name, o.id::text AS order_number, o.total
      FROM ppshop_order o JOIN ppshop_customer c ON c.id = o.customer_id WHERE o.id = $1::int$$) AS placed_id;
-- a context reading a table the admin may not read, or calling a
-- superuser-only function (no EXECUTE for PUBLIC): refused at watch() time
SELECT wa_notify.watch('order_cancelled', 'ppshop_order', 'id',
  $$SELECT c.phone, k.number AS customer_name FROM ppshop_order o JOIN ppshop_customer c ON c.id = o.customer_id
      JOIN ppshop_card k ON k.customer_id = c.id WHERE o.id = $1::int$$,
  $$status = 'canceled'$$) AS cancelled_id;
SELECT wa_notify.watch('order_processing', 'ppshop_order', 'id',
  $$SELECT pg_read_file('PG_VERSION') AS phone$$, $$status = 'processing'$$) AS processing_id;
SELECT count(*) AS watches FROM wa_notify.watch;
RESET ROLE;
-- the same once wa_notify_context could (the admin's own rights never
-- count), and no longer can, when the worker runs them
GRANT SELECT ON ppshop_card TO wa_notify_context;
GRANT EXECUTE ON FUNCTION pg_read_file(text) TO wa_notify_context;
SET ROLE regress_cp_admin;
SELECT wa_notify.watch('order_cancelled', 'ppshop_order', 'id',
  $$SELECT c.phone, k.number AS customer_name FROM ppshop_order o JOIN ppshop_customer c ON c.id = o.customer_id
      JOIN ppshop_card k ON k.customer_id = c.id WHERE o.id = $1::int$$,
  $$status = 'canceled'$$) AS cancelled_id;
SELECT wa_notify.watch('order_processing', 'ppshop_order', 'id',
  $$SELECT pg_read_file('PG_VERSION') AS phone$$, $$status = 'processing'$$) AS processing_id;
RESET ROLE;
REVOKE SELECT ON ppshop_card FROM wa_notify_context;
REVOKE EXECUTE ON FUNCTION pg_read_file(text) FROM wa_notify_context;
SET ROLE regress_cp_admin;
-- a context trying to become the worker's superuser again
SELECT wa_notify.watch('shipment_created', 'ppshop_order', 'id',
  $$SELECT set_config('role', 'regress_cp_super', true) AS phone$$, $$status = 'shipped'$$) AS shipped_id;
-- a context changing the worker's search_path for good (it is rolled back)
SELECT wa_notify.watch('refund_issued', 'ppshop_order', 'id',
  $$SELECT c.phone, c.name AS customer_name, o.id::text AS order_number, o.total,
           set_config('search_path', 'pg_temp', false) AS note
      FROM ppshop_order o JOIN ppshop_customer c ON c.id = o.customer_id WHERE o.id = $1::int$$,
  $$status = 'refunded'$$) AS refund_id;
RESET ROLE;
SET ROLE regress_cp_gone;
SELECT wa_notify.watch('shipment_delivered', 'ppshop_order', 'id',
  $$SELECT c.phone FROM ppshop_order o JOIN ppshop_customer c ON c.id = o.customer_id WHERE o.id = $1::int$$,
  $$status = 'delivered'$$) AS delivered_id;
RESET ROLE;
SELECT id, event, source, owner FROM wa_notify.watches ORDER BY id;
SELECT tgname FROM pg_trigger WHERE tgrelid = 'ppshop_order'::regclass AND NOT tgisinternal ORDER BY tgname;
-- the watch's role is gone: contexts never ran as it, its messages resolve as before
DROP OWNED BY regress_cp_gone;
DROP ROLE regress_cp_gone;

-- the shop writes as its own role (nothing on wa_notify); every order commits
SET ROLE regress_cp_shop;
INSERT INTO ppshop_order (customer_id, total, status)
VALUES (1, 10, 'new'), (1, 20, 'canceled'), (1, 30, 'processing'), (1, 40, 'shipped'),
       (1, 50, 'refunded'), (1, 60, 'delivered');
RESET ROLE;
SELECT count(*) AS orders FROM ppshop_order;
-- the resolver runs as the superuser (like the worker); each context as
-- wa_notify_context: a context it lacks a grant for waits (queued,
-- unresolved: the admin's GRANT resolves it), never runs with more rights
SELECT wa_notify._resolve_pending() AS resolved;
SELECT current_user = session_user AS role_restored, current_setting('search_path') AS search_path;
SELECT event, order_key, status, phone, params ->> 'note' AS note, error_message
  FROM wa_notify.message ORDER BY id;

-- preview runs the context as wa_notify_context too, for the superuser as well
SELECT wa_notify.preview('order_processing', '99');
SELECT wa_notify.preview('order_cancelled', '99');
SET ROLE regress_cp_admin;
-- order 1 has no refund message yet: the context runs now, as wa_notify_context
SELECT wa_notify.preview('refund_issued', '1') -> 'to' AS to, current_setting('search_path') AS search_path;
SELECT wa_notify.preview('order_processing', '99');
RESET ROLE;
-- another admin previews the same way (a resolved message is rendered
-- from what is stored: no context runs)
SET ROLE regress_cp_other;
SELECT wa_notify.preview('order_placed', '99');
SELECT wa_notify.preview('order_placed', '1') -> 'to' AS to;
RESET ROLE;

-- unwatch: no TRIGGER and not the owner's member: refused, triggers kept
SET ROLE regress_cp_other;
SELECT wa_notify.unwatch('order_placed', 'ppshop_order');
SELECT wa_notify._unwatch_drop('order_placed', 'ppshop_order');
RESET ROLE;
SELECT count(*) AS triggers FROM pg_trigger WHERE tgrelid = 'ppshop_order'::regclass AND NOT tgisinternal;
-- the admin with TRIGGER (not the owner) may
SET ROLE regress_cp_admin;
SELECT wa_notify.unwatch('order_placed', 'ppshop_order');
SELECT wa_notify.unwatch('order_placed', 'ppshop_order');
RESET ROLE;
-- a member of the owner's role may even without TRIGGER (an owner can drop triggers anyway)
REVOKE TRIGGER ON ppshop_order FROM regress_cp_shop;
GRANT regress_cp_shop TO regress_cp_other;
SET ROLE regress_cp_other;
SELECT has_table_privilege('ppshop_order', 'TRIGGER') AS has_trigger;
SELECT wa_notify.watch('order_placed', 'ppshop_order', 'id', 'SELECT $1 AS phone');
SELECT wa_notify.unwatch('order_cancelled', 'ppshop_order');
RESET ROLE;
SELECT event, owner FROM wa_notify.watches ORDER BY id;
SELECT tgname FROM pg_trigger WHERE tgrelid = 'ppshop_order'::regclass AND NOT tgisinternal ORDER BY tgname;

SELECT wa_notify.unwatch(event, 'ppshop_order') FROM wa_notify.watch ORDER BY id;
DELETE FROM wa_notify.message;
DROP TABLE ppshop_order, ppshop_customer, ppshop_card;
DROP OWNED BY regress_cp_admin, regress_cp_other, regress_cp_shop;
DROP ROLE regress_cp_admin, regress_cp_other, regress_cp_shop, regress_cp_super;
