-- watch(): mappings are validated when created, with errors naming the bad part.
\set SHOW_CONTEXT never
SET search_path = public;
SELECT setval('wa_notify.watch_id_seq', 1, false) AS reset_watch_ids;
CREATE TABLE wshop_order (id serial PRIMARY KEY, status text NOT NULL DEFAULT 'new',
                          phone text, total numeric(12,2), shipped_at timestamptz);
CREATE VIEW wshop_order_v AS SELECT * FROM wshop_order;
\set ctx 'SELECT o.phone, o.id::text AS order_number FROM wshop_order o WHERE o.id = $1::int'

-- unknown event, unknown table, not a table
-- contexts run as wa_notify_context: it reads only what the shop grants it
GRANT SELECT ON ALL TABLES IN SCHEMA public TO wa_notify_context;
SELECT wa_notify.watch('order_shipped', 'wshop_order', 'id', :'ctx');
SELECT wa_notify.watch('order_placed', 'no_such_table', 'id', :'ctx');
SELECT wa_notify.watch('order_placed', 'wshop_order_v', 'id', :'ctx');
SELECT wa_notify.watch('order_placed', 'wa_notify.message', 'id', :'ctx');
-- order_key: unknown column, does not parse, empty, aggregate
SELECT wa_notify.watch('order_placed', 'wshop_order', 'order_id', :'ctx');
SELECT wa_notify.watch('order_placed', 'wshop_order', 'id +', :'ctx');
SELECT wa_notify.watch('order_placed', 'wshop_order', ' ', :'ctx');
SELECT wa_notify.watch('order_placed', 'wshop_order', 'max(id)', :'ctx');
SELECT wa_notify.watch('order_placed', 'wshop_order', 'id) FROM pg_class; SELECT (1', :'ctx');
-- fires_when: not boolean, unknown column, does not parse
SELECT wa_notify.watch('order_cancelled', 'wshop_order', 'id', :'ctx', 'status');
SELECT wa_notify.watch('order_cancelled', 'wshop_order', 'id', :'ctx', 'state = ''canceled''');
SELECT wa_notify.watch('order_cancelled', 'wshop_order', 'id', :'ctx', 'status = = 1');
-- context: does not parse, unknown parameter, not a SELECT, no phone column, two statements
SELECT wa_notify.watch('order_placed', 'wshop_order', 'id', 'SELEC phone FROM wshop_order');
SELECT wa_notify.watch('order_placed', 'wshop_order', 'id', 'SELECT phone FROM wshop_order WHERE id = $3');
SELECT wa_notify.watch('order_placed', 'wshop_order', 'id', 'SELECT phone FROM wshop_order WHERE id = $1');
SELECT wa_notify.watch('order_placed', 'wshop_order', 'id', 'DELETE FROM wshop_order WHERE id = $1::int');
SELECT wa_notify.watch('order_placed', 'wshop_order', 'id', 'SELECT o.phone AS tel FROM wshop_order o WHERE o.id = $1::int');
SELECT wa_notify.watch('order_placed', 'wshop_order', 'id', 'SELECT 1 AS phone; SELECT 2 AS phone');
-- nothing was attached by the failed calls
SELECT count(*) AS watches FROM wa_notify.watches;
SELECT count(*) AS triggers FROM pg_trigger WHERE tgrelid = 'wshop_order'::regclass;

-- good mappings: a column key, a table-qualified expression, a trailing semicolon
SELECT wa_notify.watch('order_placed', 'wshop_order', 'id', :'ctx' || ' ;') AS placed_id \gset
SELECT wa_notify.watch('order_cancelled', 'wshop_order', 'wshop_order.id', :'ctx',
                       'wshop_order.status = ''canceled''') AS cancelled_id \gset
SELECT event, source, order_key, fires_when, context FROM wa_notify.watches ORDER BY id;
-- one trigger per event kind holds every watch of the table, without a WHEN clause
SELECT tgname, pg_get_triggerdef(oid) FROM pg_trigger
 WHERE tgrelid = 'wshop_order'::regclass ORDER BY tgname;
-- watching again replaces the mapping, keeps the id
SELECT wa_notify.watch('order_placed', 'wshop_order', 'id', :'ctx', 'total > 0') = :placed_id AS same_id;
SELECT fires_when FROM wa_notify.watches WHERE id = :placed_id;
SELECT count(*) AS triggers FROM pg_trigger WHERE tgrelid = 'wshop_order'::regclass;
-- what the trigger stages for $2: the columns read with ->> (a key that is
-- no column reads NULL either way), the whole row when a timestamp is read
-- or $2 is used otherwise
SELECT wa_notify.watch('order_processing', 'wshop_order', 'id',
  $$SELECT o.phone, $2->>'nope' AS x, $2 ->> 'status' AS s, $2->>'total' AS t FROM wshop_order o WHERE o.id = $1::int$$) > 0 AS ok;
SELECT wa_notify.watch('shipment_created', 'wshop_order', 'id',
  $$SELECT o.phone, $2->>'shipped_at' AS s FROM wshop_order o WHERE o.id = $1::int$$) > 0 AS ok;
SELECT wa_notify.watch('shipment_delivered', 'wshop_order', 'id',
  $$SELECT o.phone, $2 ? 'x' AS s FROM wshop_order o WHERE o.id = $1::int$$) > 0 AS ok;
SELECT wa_notify.watch('refund_issued', 'wshop_order', 'id',
  $$SELECT o.phone, $2->>'nope' AS s FROM wshop_order o WHERE o.id = $1::int$$) > 0 AS ok;
SELECT c.args[2] AS event, c.args[5] AS stages FROM wa_notify._capture_entries('wshop_order') c
 WHERE c.kind = 'ins' AND c.args[2] ~ '(processing|shipment|refund)' ORDER BY c.watch_id;
SELECT wa_notify.unwatch(e, 'wshop_order') FROM unnest('{order_processing,shipment_created,shipment_delivered,refund_issued}'::text[]) e;

-- unwatch takes the watch out of the table's triggers, the last one drops them
SELECT wa_notify.unwatch('order_placed', 'wshop_order');
SELECT wa_notify.unwatch('order_placed', 'wshop_order');
SELECT event FROM wa_notify.watches;
SELECT tgname FROM pg_trigger WHERE tgrelid = 'wshop_order'::regclass ORDER BY tgname;
SELECT c.kind, c.args[2] AS event FROM wa_notify._capture_entries('wshop_order') c ORDER BY c.kind, c.watch_id;
SELECT wa_notify.unwatch('order_cancelled', 'wshop_order');
SELECT count(*) AS triggers FROM pg_trigger WHERE tgrelid = 'wshop_order'::regclass;
DROP VIEW wshop_order_v;
DROP TABLE wshop_order;
