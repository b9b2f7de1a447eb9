-- The archive's month partitions are UTC calendar months whatever the
-- session's TimeZone (80_retention.sql): across a daylight-saving change,
-- timestamptz + '1 month' follows the session's zone and gave bounds an
-- hour off, so that the next month's partition overlapped ("partition would
-- overlap"), and maintain() failed in such a session.
-- Everything runs in one transaction rolled back at the end.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS wa_notify;
RESET client_min_messages;
\set ON_ERROR_ROLLBACK on
BEGIN;
\set VERBOSITY terse
SET timezone = 'America/Los_Angeles';
-- March (DST starts on the 8th) and April, made one after the other
SELECT wa_notify._archive_partition_for('2031-03-15 12:00+00') AS march_made,
       wa_notify._archive_partition_for('2031-04-15 12:00+00') AS april_made,
       wa_notify._archive_partition_for('2031-11-15 12:00+00') AS november_made,
       wa_notify._archive_partition_for('2031-12-15 12:00+00') AS december_made;
SET timezone = 'UTC';
SELECT part, lo, hi FROM wa_notify._archive_partitions() WHERE lo >= '2031-01-01' ORDER BY lo;
SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) AS bound
  FROM pg_class c WHERE c.relkind = 'r' AND c.relname ~ '^message_archive_2031_' ORDER BY 1;
SELECT wa_notify._month_after('2031-03-01 00:00+00') AS after_march,
       wa_notify._month_after('2031-10-31 23:30+00') AS after_october;
ROLLBACK;
