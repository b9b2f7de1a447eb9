-- The message tally (45_tally.sql): what the status card, the senders view
-- and counts() read is exact after every kind of change -- inserts, the
-- worker's and webhooks' updates, deletes, a TRUNCATE, merges, partial hours
-- at either end of a range, and a session in another TimeZone.
-- wa_notify._tally_check() lists where the tally and a count of the
-- messages themselves disagree: every check below must list nothing.
-- Everything runs in one transaction rolled back at the end.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS wa_notify;
RESET client_min_messages;
\set VERBOSITY terse
BEGIN;
SET LOCAL timezone = 'UTC';
TRUNCATE wa_notify.message CASCADE;
SELECT count(*) AS tally_rows_after_truncate FROM wa_notify.message_tally WHERE part = 'infinity';

-- 1. inserts: 120 messages over 2026-03-10 09:00 to 14:50 UTC, two senders,
-- every status, some billable (two markets, two categories)
INSERT INTO wa_notify.sender (sender) VALUES ('store2') ON CONFLICT DO NOTHING;
INSERT INTO wa_notify.message (event, order_key, phone, params, sender, status, created_at, sent_at,
                               delivered_at, read_at, failed_at, billable, pricing_category)
SELECT 'order_placed', 'T' || g, CASE WHEN g % 4 = 0 THEN '14155550' ELSE '55119876' END || lpad(g::text, 3, '0'),
       '{}', CASE WHEN g % 3 = 0 THEN 'store2' ELSE 'default' END,
       (ARRAY['queued', 'sending', 'sent', 'delivered', 'read', 'failed', 'skipped', 'review'])[g % 8 + 1],
       t, CASE WHEN g % 8 BETWEEN 2 AND 4 THEN t + interval '1 minute' END,
       CASE WHEN g % 8 IN (3, 4) THEN t + interval '2 minutes' END,
       CASE WHEN g % 8 = 4 THEN t + interval '3 minutes' END,
       CASE WHEN g % 8 = 5 THEN t + interval '1 minute' END,
       CASE WHEN g % 8 BETWEEN 2 AND 4 THEN g % 5 <> 0 END,
       CASE WHEN g % 8 BETWEEN 2 AND 4 THEN CASE WHEN g % 2 = 0 THEN 'utility' ELSE 'marketing' END END
  FROM generate_series(1, 120) g, LATERAL (SELECT timestamptz '2026-03-10 09:00+00' + g * interval '175 seconds' AS t) x;
SELECT * FROM wa_notify._tally_check();

-- 2. the worker's and the webhooks' updates: a claim, a send, statuses
-- (one row at a time, as webhook_receive() does), a failure
UPDATE wa_notify.message SET status = 'sending', claimed_at = now() WHERE status = 'queued';
UPDATE wa_notify.message SET status = 'sent', sent_at = created_at + interval '30 seconds', wamid = 'wamid.' || id
 WHERE status = 'sending';
UPDATE wa_notify.message SET status = 'delivered', delivered_at = sent_at + interval '5 seconds',
       billable = true, pricing_category = 'utility'
 WHERE id = (SELECT min(id) FROM wa_notify.message WHERE status = 'sent');
UPDATE wa_notify.message SET status = 'read', read_at = delivered_at + interval '1 minute'
 WHERE id = (SELECT min(id) FROM wa_notify.message WHERE status = 'delivered');
UPDATE wa_notify.message SET status = 'failed', failed_at = sent_at + interval '1 hour'
 WHERE id = (SELECT max(id) FROM wa_notify.message WHERE status = 'sent');
UPDATE wa_notify.message SET held_reason = 'nothing the tally counts' WHERE status = 'review';
SELECT * FROM wa_notify._tally_check();

-- 3. deletes, then maintain()'s merge of the shards of old hours (these
-- are months old) into shard 0
DELETE FROM wa_notify.message WHERE status = 'skipped';
SELECT wa_notify._tally_compact() > 0 AS merged;
SELECT count(*) AS rows_of_other_shards FROM wa_notify.message_tally WHERE shard <> 0;
SELECT * FROM wa_notify._tally_check();
-- a change after the merge is counted on top of it
UPDATE wa_notify.message SET status = 'read', read_at = now() WHERE status = 'delivered';
SELECT * FROM wa_notify._tally_check();

-- a role that may change messages (an admin requeueing by hand) counts its
-- change, though it has no right on the tally, which it cannot write itself
CREATE ROLE tally_editor;
GRANT USAGE ON SCHEMA wa_notify TO tally_editor;
GRANT SELECT, UPDATE ON wa_notify.message TO tally_editor;
SET LOCAL ROLE tally_editor;
UPDATE wa_notify.message SET status = 'queued', claimed_at = NULL WHERE status = 'review';
SAVEPOINT before_denied;
INSERT INTO wa_notify.message_tally VALUES ('c', now(), 'default', 'read', 'infinity', 0, 1000);
ROLLBACK TO SAVEPOINT before_denied;
RESET ROLE;
SELECT * FROM wa_notify._tally_check();

-- 4. counts() over whole hours, partial hours, less than an hour, and in a
-- session in a half-hour time zone: as a count of the messages
SET LOCAL timezone = 'Asia/Kolkata';
SELECT r.lo, r.hi, (c.delivered, c.read, c.pending, c.failed, c.total, c.sent, c.skipped, c.expired, c.review)
                   = (SELECT count(*) FILTER (WHERE status IN ('delivered', 'read')),
                              count(*) FILTER (WHERE status = 'read'),
                              count(*) FILTER (WHERE status IN ('queued', 'sending')),
                              count(*) FILTER (WHERE status = 'failed'), count(*),
                              count(*) FILTER (WHERE status IN ('sent', 'delivered', 'read')),
                              count(*) FILTER (WHERE status = 'skipped'),
                              count(*) FILTER (WHERE status = 'expired'),
                              count(*) FILTER (WHERE status = 'review')
                        FROM wa_notify.message m WHERE m.created_at >= r.lo AND m.created_at < r.hi) AS exact,
       c.total
  FROM (VALUES (timestamptz '2026-03-10 10:00+00', timestamptz '2026-03-10 13:00+00'),
               ('2026-03-10 10:17+00', '2026-03-10 13:41+00'),
               ('2026-03-10 11:05+00', '2026-03-10 11:50+00'),
               ('2026-03-10 11:05+00', 'infinity'),
               ('-infinity', '2026-03-10 12:30+00')) AS r(lo, hi),
       LATERAL wa_notify.counts(r.lo, r.hi) c
 ORDER BY 1, 2;
-- the other axes over a partial range, by sender and key, as the messages say
SELECT a.axis,
       (SELECT coalesce(array_agg(x ORDER BY x), '{}') FROM
          (SELECT s.sender || ' ' || s.k || ' ' || sum(s.n) AS x
             FROM wa_notify._tally_sum(a.axis, '2026-03-10 10:17+00', '2026-03-10 13:41+00') s GROUP BY s.sender, s.k) y)
       = (SELECT coalesce(array_agg(x ORDER BY x), '{}') FROM
          (SELECT s.sender || ' ' || s.k || ' ' || sum(s.n) AS x
             FROM wa_notify._tally_scan(a.axis, '2026-03-10 10:17+00', '2026-03-10 13:41+00') s GROUP BY s.sender, s.k) y)
       AS exact
  FROM unnest('{c,s,f,b}'::"char"[]) AS a(axis) ORDER BY 1;
-- the billable hours carry the market prefix and the category
SELECT k, sum(n) AS billable FROM wa_notify._tally_sum('b', '-infinity', 'infinity') GROUP BY k ORDER BY k;
RESET timezone;
SET LOCAL timezone = 'UTC';

-- 5. rows moved to the archive through its parent (as maintain() moves
-- them): counted there, and still exact
SELECT wa_notify._archive_partition_for('2026-03-10 12:00+00') IS NOT NULL AS partition_ready;
WITH d AS (DELETE FROM wa_notify.message m WHERE m.status IN ('read', 'failed') RETURNING m.*)
INSERT INTO wa_notify.message_archive SELECT * FROM d;
SELECT part, sum(n) FILTER (WHERE axis = 'c') AS messages
  FROM wa_notify.message_tally t
 GROUP BY part HAVING sum(n) FILTER (WHERE axis = 'c') <> 0 ORDER BY part;
SELECT * FROM wa_notify._tally_check();

-- 6. TRUNCATE of the live table takes its counts, not the archive's
TRUNCATE wa_notify.message CASCADE;
SELECT * FROM wa_notify._tally_check();
SELECT sum(n) AS archived_messages FROM wa_notify._tally_sum('c', '-infinity', 'infinity');
ROLLBACK;
