-- Capture on a table of its own runs once per statement over its
-- transition tables and stages the statement's captures together
-- (heap_multi_insert, 1000 rows at a time): every row written is staged
-- exactly once with its own order key, a row whose fires_when fails stages
-- its error without losing the others, a row not written (skipped by a
-- BEFORE trigger, statement failed, savepoint rolled back) stages nothing.
\set SHOW_CONTEXT never
SET search_path = public;
DELETE FROM wa_notify.message;
DELETE FROM wa_notify.capture_queue;
CREATE TABLE sshop_order (id int PRIMARY KEY, status text NOT NULL DEFAULT 'new',
                          note text, qty int CHECK (qty IS NULL OR qty >= 0));
GRANT SELECT ON sshop_order TO wa_notify_context;
SELECT wa_notify.watch('order_placed', 'sshop_order', 'id',
  $$SELECT 'x' AS phone FROM sshop_order o WHERE o.id = $1::int$$) > 0 AS ok;
SELECT wa_notify.watch('order_cancelled', 'sshop_order', 'id',
  $$SELECT 'x' AS phone FROM sshop_order o WHERE o.id = $1::int$$, $$status = 'canceled'$$) > 0 AS ok;
-- a fires_when that raises on some rows (note 'x' is no integer)
SELECT wa_notify.watch('order_processing', 'sshop_order', 'id',
  $$SELECT 'x' AS phone FROM sshop_order o WHERE o.id = $1::int$$, $$note::int > 0$$) > 0 AS ok;
-- one call per statement, over the transition tables
SELECT tgname, pg_get_triggerdef(oid) ~ 'REFERENCING .* FOR EACH STATEMENT' AS per_statement
  FROM pg_trigger WHERE tgrelid = 'sshop_order'::regclass ORDER BY tgname;

-- 2500 rows in one statement (three batches): each staged once, its own
-- key; with a small work_mem the transition tables spill to disk
SET work_mem = '64kB';
INSERT INTO sshop_order (id) SELECT g FROM generate_series(1, 2500) g;
SELECT event, count(*) AS staged, count(DISTINCT order_key) AS keys, min(order_key::int), max(order_key::int),
       count(*) FILTER (WHERE error IS NOT NULL) AS errors
  FROM wa_notify.capture_queue GROUP BY event ORDER BY event;
DELETE FROM wa_notify.capture_queue;

-- an UPDATE of every row: only the rows entering the condition fire (the
-- old and the new row of each are paired): ids 1-10 were canceled already,
-- odd ids stay new
UPDATE sshop_order SET status = 'canceled' WHERE id <= 10;
DELETE FROM wa_notify.capture_queue;
UPDATE sshop_order SET status = CASE WHEN id % 2 = 0 OR id <= 10 THEN 'canceled' ELSE 'new' END, note = '0';
RESET work_mem;
SELECT event, count(*) AS staged, min(order_key::int), max(order_key::int),
       bool_and(order_key::int % 2 = 0 AND order_key::int > 10) AS only_even_new_ones
  FROM wa_notify.capture_queue GROUP BY event ORDER BY event;
DELETE FROM wa_notify.capture_queue;

-- a row whose fires_when fails stages its error; the rows around it their keys
UPDATE sshop_order SET note = CASE id WHEN 1 THEN '5' WHEN 2 THEN 'x' WHEN 3 THEN '7' ELSE note END
 WHERE id <= 3;
SELECT event, order_key, error LIKE 'fires_when of watch % (order_processing on public.sshop_order) failed: %' AS fires_when_failed
  FROM wa_notify.capture_queue ORDER BY order_key NULLS LAST;
DELETE FROM wa_notify.capture_queue;

-- a statement that fails stages nothing (the 3rd row breaks the CHECK)
INSERT INTO sshop_order (id, qty) VALUES (3001, 1), (3002, 1), (3003, -1);
-- nor does one that fails after capture has staged its rows (a statement
-- trigger firing after capture's raises)
CREATE FUNCTION sshop_fail() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the shop refuses this statement';
END $$;
CREATE TRIGGER zz_fail AFTER INSERT ON sshop_order FOR EACH STATEMENT EXECUTE FUNCTION sshop_fail();
INSERT INTO sshop_order (id) SELECT g FROM generate_series(3101, 3110) g;
DROP TRIGGER zz_fail ON sshop_order;
-- nor does one rolled back to a savepoint; the statement before it stays
BEGIN;
INSERT INTO sshop_order (id) VALUES (3004);
SAVEPOINT s;
INSERT INTO sshop_order (id) SELECT g FROM generate_series(3005, 3010) g;
ROLLBACK TO SAVEPOINT s;
COMMIT;
SELECT event, order_key FROM wa_notify.capture_queue ORDER BY order_key;
DELETE FROM wa_notify.capture_queue;

-- a row skipped by a BEFORE trigger is not staged; a row a BEFORE trigger
-- changes is staged as written
CREATE FUNCTION sshop_before() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.id % 3 = 0 THEN RETURN NULL; END IF;
    IF NEW.note = 'cancel me' THEN NEW.status := 'canceled'; END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER sshop_before BEFORE INSERT ON sshop_order FOR EACH ROW EXECUTE FUNCTION sshop_before();
INSERT INTO sshop_order (id, note) SELECT g, CASE WHEN g = 4001 THEN 'cancel me' END
  FROM generate_series(4000, 4005) g;
SELECT event, order_key FROM wa_notify.capture_queue ORDER BY event, order_key;
DELETE FROM wa_notify.capture_queue;
DROP TRIGGER sshop_before ON sshop_order;

-- other statement triggers reading the same transition table, before and
-- after capture's, each see every row, and so does capture
CREATE TABLE sshop_seen (who text, n bigint);
CREATE FUNCTION sshop_count() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO sshop_seen SELECT TG_NAME, count(*) FROM new_rows;
    RETURN NULL;
END $$;
CREATE TRIGGER a_count AFTER INSERT ON sshop_order REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION sshop_count();
CREATE TRIGGER z_count AFTER INSERT ON sshop_order REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION sshop_count();
INSERT INTO sshop_order (id) SELECT g FROM generate_series(5001, 5040) g;
SELECT * FROM sshop_seen ORDER BY who;
SELECT event, count(*) AS staged FROM wa_notify.capture_queue GROUP BY event;
DELETE FROM wa_notify.capture_queue;
DROP TRIGGER a_count ON sshop_order;
DROP TRIGGER z_count ON sshop_order;

-- INSERT ... ON CONFLICT DO UPDATE: the update is captured as one
INSERT INTO sshop_order (id) VALUES (5001), (6001)
  ON CONFLICT (id) DO UPDATE SET status = 'canceled';
-- COPY is captured too; a statement of no rows stages nothing
COPY sshop_order (id, status) FROM stdin;
6002	canceled
6003	new
\.
UPDATE sshop_order SET status = 'canceled' WHERE false;
SELECT event, order_key FROM wa_notify.capture_queue ORDER BY event, order_key;
DELETE FROM wa_notify.capture_queue;

-- an UPDATE that sets no column fires_when reads cannot fire it (nothing
-- is read); but a column a BEFORE trigger changes, or a generated column
-- fed by a set column, fires it, and a fires_when that no longer compiles
-- stages its error whatever the UPDATE sets
INSERT INTO sshop_order (id) VALUES (7001), (7002);
DELETE FROM wa_notify.capture_queue;
UPDATE sshop_order SET note = '0' WHERE id IN (7001, 7002);
SELECT count(*) AS staged_for_note_only FROM wa_notify.capture_queue;
CREATE FUNCTION sshop_before_upd() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.qty = 0 THEN NEW.status := 'canceled'; END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER sshop_before_upd BEFORE UPDATE ON sshop_order FOR EACH ROW EXECUTE FUNCTION sshop_before_upd();
UPDATE sshop_order SET qty = 0 WHERE id = 7001;
SELECT event, order_key FROM wa_notify.capture_queue ORDER BY event, order_key;
DELETE FROM wa_notify.capture_queue;
DROP TRIGGER sshop_before_upd ON sshop_order;
DROP FUNCTION sshop_before_upd();
ALTER TABLE sshop_order ADD COLUMN big boolean GENERATED ALWAYS AS (qty > 100) STORED;
SELECT wa_notify.watch('order_processing', 'sshop_order', 'id',
  $$SELECT 'x' AS phone FROM sshop_order o WHERE o.id = $1::int$$, $$big$$) > 0 AS ok;
UPDATE sshop_order SET qty = 500 WHERE id = 7002;
SELECT event, order_key FROM wa_notify.capture_queue ORDER BY event, order_key;
DELETE FROM wa_notify.capture_queue;
ALTER TABLE sshop_order RENAME COLUMN status TO state;
UPDATE sshop_order SET note = '1' WHERE id = 7002;
SELECT event, order_key, error LIKE 'fires_when of watch % (order_cancelled on public.sshop_order) failed: %' AS fires_when_failed
  FROM wa_notify.capture_queue ORDER BY event;
DELETE FROM wa_notify.capture_queue;
ALTER TABLE sshop_order RENAME COLUMN state TO status;

-- a partitioned table keeps one call per row (cloned to each partition, so
-- a write to a partition itself is captured)
CREATE TABLE sshop_part (id int, status text) PARTITION BY RANGE (id);
CREATE TABLE sshop_part_1 PARTITION OF sshop_part FOR VALUES FROM (0) TO (100);
GRANT SELECT ON sshop_part TO wa_notify_context;
SELECT wa_notify.watch('order_placed', 'sshop_part', 'id',
  $$SELECT 'x' AS phone FROM sshop_part o WHERE o.id = $1::int$$) > 0 AS ok;
SELECT tgrelid::regclass, pg_get_triggerdef(oid) ~ 'FOR EACH ROW' AS per_row
  FROM pg_trigger WHERE tgrelid IN ('sshop_part'::regclass, 'sshop_part_1'::regclass) ORDER BY 1;
INSERT INTO sshop_part VALUES (1, 'new');
INSERT INTO sshop_part_1 VALUES (2, 'new');
SELECT event, order_key FROM wa_notify.capture_queue ORDER BY order_key;

-- statement-level triggers block no DDL: a watched table may become a
-- partition or an inheritance parent; watch() again makes its triggers
-- per row
CREATE TABLE sshop_solo (id int, status text);
GRANT SELECT ON sshop_solo TO wa_notify_context;
SELECT wa_notify.watch('order_placed', 'sshop_solo', 'id',
  $$SELECT 'x' AS phone FROM sshop_solo o WHERE o.id = $1::int$$) > 0 AS ok;
CREATE TABLE sshop_parent (id int, status text) PARTITION BY RANGE (id);
ALTER TABLE sshop_parent ATTACH PARTITION sshop_solo FOR VALUES FROM (0) TO (1000);
CREATE TABLE sshop_kid () INHERITS (sshop_order);
SELECT wa_notify.watch('order_placed', 'sshop_solo', 'id',
  $$SELECT 'x' AS phone FROM sshop_solo o WHERE o.id = $1::int$$) > 0 AS ok;
SELECT tgrelid::regclass, tgname, pg_get_triggerdef(oid) ~ 'FOR EACH ROW' AS per_row
  FROM pg_trigger WHERE tgrelid = 'sshop_solo'::regclass ORDER BY 2;
SELECT wa_notify.unwatch('order_placed', 'sshop_solo');
DROP TABLE sshop_parent, sshop_kid;

-- clean up
SELECT wa_notify.unwatch(w.event, w.source::regclass) FROM (VALUES ('order_placed', 'sshop_order'), ('order_cancelled', 'sshop_order'),
  ('order_processing', 'sshop_order'), ('order_placed', 'sshop_part')) w(event, source);
DELETE FROM wa_notify.capture_queue;
DROP TABLE sshop_order, sshop_part, sshop_seen;
DROP FUNCTION sshop_before(), sshop_count(), sshop_fail();
