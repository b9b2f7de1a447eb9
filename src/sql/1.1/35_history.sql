-- 35_history.sql: the message archive's table (doc/retention.md).
--
-- wa_notify.message stays the live queue; a message that is final and has
-- not changed for longer than Meta retries a webhook moves to
-- wa_notify.message_archive, partitioned by month of created_at, whose old
-- partitions retention drops whole.  maintain() and everything it does are in
-- 80_retention.sql; the table is created here, before 40_cloud_api.sql and
-- 50_*.sql, because the reports defined there (message_log, status, counts,
-- costs) read the live table and the archive together (the view
-- wa_notify.message_history, 40_cloud_api.sql).
--
-- Its columns are the live table's, in the same order: LIKE here, the
-- columns a later fragment adds to wa_notify.message are added here too
-- (40_cloud_api.sql) or, whatever fragment adds them, by 80_retention.sql,
-- which refuses to finish the update if the two differ.  queued, generated
-- in the live table, is a plain column here (archived rows never change).
CREATE TABLE wa_notify.message_archive (LIKE wa_notify.message)
    PARTITION BY RANGE (created_at);
COMMENT ON TABLE wa_notify.message_archive IS
    'messages that are final and untouched for longer than Meta retries a webhook, one partition per month of created_at (maintain())';

-- The partitions are made by maintain() (80_retention.sql), not by this
-- script, when it first has rows to archive: one per month, and the default
-- partition message_archive_default, where a row whose month has no partition
-- would land (maintain() then gives it one; the status card says so
-- meanwhile: history_problems).  They are not members of the extension, so
-- pg_dump writes them and their rows, as it writes the live table's (a config
-- table).  (A member partition would also make pg_dump --schema=wa_notify
-- crash, PostgreSQL 15.20, once another partition exists; and a partition
-- made at CREATE EXTENSION would clash with the same one in a dump being
-- restored.)
-- Its indexes are each partition's own, made with it by maintain()
-- (80_retention.sql, _archive_indexes()), none on the parent: an index of
-- the parent is the extension's and is not dumped, while a partition's is,
-- and a restore then made it twice (ATTACH PARTITION makes the child's
-- index of a parent's, then the dumped CREATE INDEX of the same name
-- failed: pg_restore --exit-on-error stopped there).

-- what the last maintain() did, for the status card
ALTER TABLE wa_notify.state
    ADD COLUMN maintained_at timestamptz,
    ADD COLUMN last_maintain jsonb;

-- how often the worker runs maintain() by itself (seconds)
CREATE FUNCTION wa_notify._maintain_interval() RETURNS integer
LANGUAGE sql IMMUTABLE AS $$ SELECT 3600 $$;

-- The status card's history_problems: what keeps the history from being
-- archived, anonymized or shed (NULL: nothing).  SECURITY DEFINER: the card's
-- reader sees the sentence, not the tables.
CREATE FUNCTION wa_notify._history_problems() RETURNS text
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, wa_notify AS $$
DECLARE
    in_default text;
BEGIN
    IF to_regclass('wa_notify.message_archive_default') IS NOT NULL THEN
        SELECT format('%s archived message(s) are in the default partition wa_notify.message_archive_default '
                      'because no monthly partition holds their month (created %s to %s): '
                      'maintain() gives them one; if this stays, see its "deferred" list',
                      count(*), min(d.created_at)::date, max(d.created_at)::date)
          INTO in_default
          FROM wa_notify.message_archive_default d
        HAVING count(*) > 0;
    END IF;
    RETURN nullif(concat_ws('; ', in_default,
        (SELECT 'maintain() deferred: ' || string_agg(x, '; ')
           FROM wa_notify.state s, jsonb_array_elements_text(s.last_maintain -> 'deferred') x),
        (SELECT format('maintain() last ran at %s (the worker runs it every %s s)',
                       s.maintained_at, wa_notify._maintain_interval())
           FROM wa_notify.state s
          WHERE s.maintained_at < now() - 2 * wa_notify._maintain_interval() * interval '1 second')), '');
END $$;
GRANT EXECUTE ON FUNCTION wa_notify._history_problems() TO PUBLIC;
