-- 80_retention.sql: retention, anonymization and the archive's upkeep
-- (doc/retention.md), all run by maintain(): on demand, and by the worker
-- every _maintain_interval() seconds (src/worker.c, maintain_if_due).
--
--   1. the default partition: rows that landed there get their month's
--      partition (the status card says so meanwhile: history_problems);
--   2. retention (log_retention_days): archive partitions wholly older than
--      the limit are dropped; live rows older than it (stuck, or inserted
--      with an old created_at) are deleted;
--   3. the move: live messages that are final and untouched for longer than
--      Meta retries a webhook go to the archive, a batch at a time, through
--      the created_at index, skipping every row someone holds;
--   4. anonymization (anonymize_after_days), live and archived, a batch at a
--      time through a partial index of the rows not yet anonymized.
-- maintain() never waits: row locks are skipped (SKIP LOCKED), the move's
-- advisory lock is only tried, and its DDL (a partition made or dropped)
-- waits at most maintain()'s lock_timeout, else it is deferred
-- to the next run and said in the result ("deferred").
--
-- After every fragment that adds a column to wa_notify.message: the archive
-- is given those columns here, whatever fragment added them.

-------------------------------------------------------------------------------
-- the archive has the live table's columns, in its order
-------------------------------------------------------------------------------
ALTER TABLE wa_notify.message ADD COLUMN anonymized_at timestamptz;  -- NULL: not anonymized

DO $$
DECLARE
    c record;
    diff text;
BEGIN
    FOR c IN
        SELECT a.attname, format_type(a.atttypid, a.atttypmod) AS type, a.attnotnull
          FROM pg_attribute a
         WHERE a.attrelid = 'wa_notify.message'::regclass AND a.attnum > 0 AND NOT a.attisdropped
           AND NOT EXISTS (SELECT 1 FROM pg_attribute b
                            WHERE b.attrelid = 'wa_notify.message_archive'::regclass
                              AND b.attname = a.attname AND NOT b.attisdropped)
         ORDER BY a.attnum
    LOOP
        EXECUTE format('ALTER TABLE wa_notify.message_archive ADD COLUMN %I %s', c.attname, c.type);
    END LOOP;
    SELECT string_agg(coalesce(l.attname, '-') || ' / ' || coalesce(r.attname, '-'), ', ') INTO diff
      FROM (SELECT row_number() OVER (ORDER BY attnum) AS n, attname, atttypid
              FROM pg_attribute WHERE attrelid = 'wa_notify.message'::regclass AND attnum > 0 AND NOT attisdropped) l
      FULL JOIN (SELECT row_number() OVER (ORDER BY attnum) AS n, attname, atttypid
                   FROM pg_attribute WHERE attrelid = 'wa_notify.message_archive'::regclass AND attnum > 0 AND NOT attisdropped) r
        ON l.n = r.n
     WHERE l.attname IS DISTINCT FROM r.attname OR l.atttypid IS DISTINCT FROM r.atttypid;
    IF diff IS NOT NULL THEN
        RAISE EXCEPTION 'wa_notify.message_archive does not match wa_notify.message: %', diff
            USING ERRCODE = 'invalid_table_definition',
                  HINT = 'A fragment that adds a column to wa_notify.message after 35_history.sql and before 40_cloud_api.sql''s view must add it to the archive too.';
    END IF;
END $$;

-- the status card's today and this month read the live table by these, not
-- whole (a live table holds days of messages); neither column changes when a
-- webhook moves a message sent -> delivered -> read, so those updates stay HOT
CREATE INDEX message_sent ON wa_notify.message (sent_at) WHERE sent_at IS NOT NULL;
CREATE INDEX message_failed ON wa_notify.message (failed_at) WHERE failed_at IS NOT NULL;

-- (the anonymization walks the archived rows not yet anonymized: each
-- partition's index, _archive_indexes())

-- a resend may outlive its original in the live table (the original is
-- archived, or dropped by retention): resend_of is a plain reference now
DO $$
DECLARE
    con name;
BEGIN
    FOR con IN
        SELECT c.conname FROM pg_constraint c
         WHERE c.conrelid = 'wa_notify.message'::regclass AND c.contype = 'f'
           AND c.confrelid = 'wa_notify.message'::regclass
    LOOP
        EXECUTE format('ALTER TABLE wa_notify.message DROP CONSTRAINT %I', con);
    END LOOP;
END $$;

-------------------------------------------------------------------------------
-- the rules' numbers, one home each
-------------------------------------------------------------------------------
-- A message moves to the archive once final and untouched for longer than
-- Meta retries a webhook: "we will keep trying with decreasing frequency
-- until the request succeeds, for up to 7 days" (Meta, WhatsApp Cloud API,
-- "Webhooks": https://developers.facebook.com/docs/whatsapp/cloud-api/webhooks).
-- A status arriving later still (none should) finds no live message and is
-- counted in state.webhook_unknown_statuses, as any unknown status.
CREATE FUNCTION wa_notify._archive_after() RETURNS interval
LANGUAGE sql IMMUTABLE AS $$ SELECT interval '8 days' $$;

-- rows one statement of maintain() moves, anonymizes or deletes, and the
-- most one maintain() touches (the rest is for the next run: the worker runs
-- it again at once while it says "more")
CREATE FUNCTION wa_notify._maintain_batch() RETURNS integer
LANGUAGE sql IMMUTABLE AS $$ SELECT 5000 $$;
CREATE FUNCTION wa_notify._maintain_max_rows() RETURNS integer
LANGUAGE sql IMMUTABLE AS $$ SELECT 50000 $$;

-- the advisory lock between staging a capture (shared, 20_capture.sql) and
-- the move (exclusive, tried): the archive's oid and 1
CREATE FUNCTION wa_notify._archive_move_lock() RETURNS bigint
LANGUAGE sql STABLE AS $$ SELECT ('wa_notify.message_archive'::regclass::oid::bigint << 8) | 1 $$;

-- the statuses a message never leaves by itself
CREATE FUNCTION wa_notify._final_statuses() RETURNS text[]
LANGUAGE sql IMMUTABLE AS $$ SELECT '{sent,delivered,read,failed,skipped,expired}'::text[] $$;

-------------------------------------------------------------------------------
-- partitions
-------------------------------------------------------------------------------
-- one partition per calendar month (UTC) of created_at: message_archive_YYYY_MM
CREATE FUNCTION wa_notify._archive_partition_name(month timestamptz) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT 'message_archive_' || to_char(month AT TIME ZONE 'UTC', 'YYYY_MM')
$$;

CREATE FUNCTION wa_notify._month_start(t timestamptz) RETURNS timestamptz
LANGUAGE sql STABLE AS $$ SELECT date_trunc('month', t AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' $$;
-- the start of the next UTC month: month arithmetic on timestamptz follows
-- the session's TimeZone, and across a daylight-saving change "+ 1 month"
-- from a UTC month start lands an hour off (a partition bound that
-- overlaps the next month's)
CREATE FUNCTION wa_notify._month_after(t timestamptz) RETURNS timestamptz
LANGUAGE sql STABLE AS $$ SELECT (date_trunc('month', t AT TIME ZONE 'UTC') + interval '1 month') AT TIME ZONE 'UTC' $$;

-- the month partitions, oldest first, with their bounds
CREATE FUNCTION wa_notify._archive_partitions(OUT part text, OUT lo timestamptz, OUT hi timestamptz)
RETURNS SETOF record LANGUAGE sql STABLE SET search_path = pg_catalog, wa_notify AS $$
    SELECT 'wa_notify.' || c.relname, m.lo, wa_notify._month_after(m.lo)
      FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid,
           LATERAL (SELECT to_date(substr(c.relname, 17), 'YYYY_MM')::timestamp AT TIME ZONE 'UTC' AS lo) m
     WHERE i.inhparent = 'wa_notify.message_archive'::regclass
       AND c.relname ~ '^message_archive_[0-9]{4}_[0-9]{2}$'
     ORDER BY m.lo
$$;

-- A partition's indexes (35_history.sql: each partition's own), unless it
-- has them: what the reports and the once-per-(event, order) probe read.
CREATE FUNCTION wa_notify._archive_indexes(part text) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, wa_notify AS $$
DECLARE
    t text := split_part(part, '.', 2);
BEGIN
    EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON wa_notify.%I (created_at DESC)', t || '_created', t);
    -- the once-per-(event, order) probe when a capture is staged (20_capture.sql)
    EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON wa_notify.%I (event, order_key)
                     WHERE resend_of IS NULL AND order_key IS NOT NULL', t || '_event_order', t);
    -- costs() and partial hours of the tally count messages by the day they were sent, or failed
    EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON wa_notify.%I (sent_at) WHERE sent_at IS NOT NULL', t || '_sent', t);
    EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON wa_notify.%I (failed_at) WHERE failed_at IS NOT NULL', t || '_failed', t);
    -- the anonymization walks the rows not yet anonymized
    EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON wa_notify.%I (created_at) WHERE anonymized_at IS NULL',
                   t || '_to_anonymize', t);
END $$;

-- Make the partition of a month unless it exists (and the default partition
-- with the first one, 35_history.sql), with its indexes; true when made.
CREATE FUNCTION wa_notify._archive_partition_for(month timestamptz) RETURNS boolean
LANGUAGE plpgsql SET search_path = pg_catalog, wa_notify AS $$
DECLARE
    lo timestamptz := wa_notify._month_start(month);
    name text := wa_notify._archive_partition_name(lo);
BEGIN
    IF to_regclass('wa_notify.message_archive_default') IS NULL THEN
        CREATE TABLE wa_notify.message_archive_default PARTITION OF wa_notify.message_archive DEFAULT;
        PERFORM wa_notify._archive_indexes('wa_notify.message_archive_default');
    END IF;
    IF to_regclass('wa_notify.' || name) IS NOT NULL THEN
        RETURN false;
    END IF;
    EXECUTE format('CREATE TABLE wa_notify.%I PARTITION OF wa_notify.message_archive FOR VALUES FROM (%L) TO (%L)',
                   name, lo, wa_notify._month_after(lo));
    PERFORM wa_notify._archive_indexes('wa_notify.' || name);
    RETURN true;
END $$;

-- rows in the default partition (0 when there is none yet)
CREATE FUNCTION wa_notify._archive_default_rows() RETURNS bigint
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, wa_notify AS $$
DECLARE
    n bigint := 0;
BEGIN
    IF to_regclass('wa_notify.message_archive_default') IS NOT NULL THEN
        SELECT count(*) INTO n FROM wa_notify.message_archive_default;
    END IF;
    RETURN n;
END $$;

-- the columns of the live table, for the move (by name: the two tables are
-- checked equal above, this keeps it right if they ever are not in order)
CREATE FUNCTION wa_notify._message_columns() RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum)
      FROM pg_attribute a
     WHERE a.attrelid = 'wa_notify.message'::regclass AND a.attnum > 0 AND NOT a.attisdropped
$$;

-------------------------------------------------------------------------------
-- anonymization: one home for what it replaces
-------------------------------------------------------------------------------
-- digit runs that may be a phone number, in free text (an error message or a
-- hold reason quoting a number): 8 digits or more, with separators
CREATE FUNCTION wa_notify._scrub_numbers(t text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT regexp_replace(t, '\(?\+?[0-9][0-9 ().-]{6,}[0-9]', '[number removed]', 'g')
$$;

CREATE FUNCTION wa_notify._recipient_hash(value text) RETURNS text
    AS 'MODULE_PATHNAME', 'wa_notify_recipient_hash' LANGUAGE C STABLE STRICT;
COMMENT ON FUNCTION wa_notify._recipient_hash(text) IS
    'internal: a keyed hash of a phone or BSUID (HMAC-SHA256 under the per-install callback_key, own label)';

-- The SET list of an anonymizing UPDATE of rows aliased m: phone by its
-- masked form and a keyed hash (counts per recipient still work), the BSUID
-- by its keyed hash, wa_id and the wamid (which encodes the recipient's
-- number) gone, params down to order_number, the captured source row gone,
-- numbers scrubbed from the error and hold texts.
CREATE FUNCTION wa_notify._anonymize_set() RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT $set$
        phone = CASE WHEN m.phone IS NOT NULL
                     THEN concat_ws(' #', wa_notify.mask_phone(m.phone), wa_notify._recipient_hash(m.phone)) END,
        wa_id = NULL,
        wamid = NULL,
        recipient_user_id = CASE WHEN m.recipient_user_id IS NOT NULL
                                 THEN '#' || wa_notify._recipient_hash(m.recipient_user_id) END,
        params = CASE WHEN m.params IS NOT NULL
                      THEN jsonb_strip_nulls(jsonb_build_object('order_number', m.params -> 'order_number')) END,
        source_row = NULL,
        error_message = wa_notify._scrub_numbers(m.error_message),
        held_reason = wa_notify._scrub_numbers(m.held_reason),
        anonymized_at = now()
    $set$
$$;

-------------------------------------------------------------------------------
-- the steps of maintain(); each adds to the result r and returns it
-------------------------------------------------------------------------------
CREATE FUNCTION wa_notify._jsonb_add(r jsonb, key text, n bigint) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$ SELECT r || jsonb_build_object(key, coalesce((r ->> key)::bigint, 0) + n) $$;

CREATE FUNCTION wa_notify._jsonb_append(r jsonb, key text, v text) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$ SELECT r || jsonb_build_object(key, coalesce(r -> key, '[]') || to_jsonb(v)) $$;

-- 1. rows in the default partition get their month's partition: a table of
-- their own, filled from the default, then attached (a partition cannot be
-- created while the default holds rows of its range)
CREATE FUNCTION wa_notify._maintain_default(r jsonb) RETURNS jsonb
LANGUAGE plpgsql SET search_path = pg_catalog, wa_notify AS $$
DECLARE
    lo timestamptz;
    name text;
    n bigint;
BEGIN
    IF wa_notify._archive_default_rows() = 0 THEN
        RETURN r;
    END IF;
    FOR lo IN
        SELECT DISTINCT wa_notify._month_start(d.created_at) FROM wa_notify.message_archive_default d
    LOOP
        name := wa_notify._archive_partition_name(lo);
        BEGIN
            IF to_regclass('wa_notify.' || name) IS NOT NULL THEN
                -- a month partition exists, so the row was put there by hand
                -- while it was detached: it goes back into it (not through
                -- the parent, whose trigger would count it in the tally a
                -- second time: 45_tally.sql)
                EXECUTE format('WITH d AS (DELETE FROM wa_notify.message_archive_default d
                                            WHERE d.created_at >= $1 AND d.created_at < $2 RETURNING d.*)
                                INSERT INTO wa_notify.%I SELECT * FROM d', name) USING lo, wa_notify._month_after(lo);
                CONTINUE;
            END IF;
            EXECUTE format('CREATE TABLE wa_notify.%I (LIKE wa_notify.message_archive)', name);
            EXECUTE format('WITH d AS (DELETE FROM wa_notify.message_archive_default d
                                        WHERE d.created_at >= $1 AND d.created_at < $2 RETURNING d.*)
                            INSERT INTO wa_notify.%I SELECT * FROM d', name) USING lo, wa_notify._month_after(lo);
            GET DIAGNOSTICS n = ROW_COUNT;
            PERFORM wa_notify._archive_indexes('wa_notify.' || name);
            EXECUTE format('ALTER TABLE wa_notify.message_archive ATTACH PARTITION wa_notify.%I FOR VALUES FROM (%L) TO (%L)',
                           name, lo, wa_notify._month_after(lo));
            r := wa_notify._jsonb_append(r, 'created_partitions', 'wa_notify.' || name);
            r := wa_notify._jsonb_add(r, 'default_rows_moved', n);
        EXCEPTION WHEN lock_not_available THEN
            r := wa_notify._jsonb_append(r, 'deferred', format('partition %s for rows of the default partition: a lock was busy', name));
        END;
    END LOOP;
    RETURN r;
END $$;

-- 2. retention: archive partitions wholly older than the limit are dropped,
-- live rows (and default-partition rows) older than it deleted
CREATE FUNCTION wa_notify._maintain_retention(r jsonb, keep_days integer) RETURNS jsonb
LANGUAGE plpgsql SET search_path = pg_catalog, wa_notify AS $$
DECLARE
    cutoff timestamptz := now() - keep_days * interval '1 day';
    p record;
    n bigint;
    total bigint := 0;
BEGIN
    IF keep_days = 0 THEN
        RETURN r;
    END IF;
    FOR p IN SELECT * FROM wa_notify._archive_partitions() WHERE hi <= cutoff LOOP
        BEGIN
            EXECUTE format('DROP TABLE %s', p.part);
            -- and its counts (the tally's part of an archive month: 45_tally.sql)
            DELETE FROM wa_notify.message_tally t WHERE t.part = wa_notify._tally_part(false, p.lo);
            r := wa_notify._jsonb_append(r, 'dropped_partitions', p.part);
        EXCEPTION WHEN lock_not_available THEN
            r := wa_notify._jsonb_append(r, 'deferred', format('dropping %s: a reader held it', p.part));
        END;
    END LOOP;
    IF wa_notify._archive_default_rows() > 0 THEN
        -- through the parent, whose trigger takes them out of the tally
        DELETE FROM wa_notify.message_archive m
         WHERE m.tableoid = 'wa_notify.message_archive_default'::regclass
           AND m.ctid = ANY (ARRAY(SELECT d.ctid FROM wa_notify.message_archive_default d
                                    WHERE d.created_at < cutoff));
        GET DIAGNOSTICS n = ROW_COUNT;
        total := total + n;
    END IF;
    -- live rows: not one the worker is sending (it records its outcome)
    LOOP
        DELETE FROM wa_notify.message m
         WHERE m.id = ANY (ARRAY(SELECT l.id FROM wa_notify.message l
                                  WHERE l.created_at < cutoff AND l.status <> 'sending'
                                  ORDER BY l.created_at
                                  LIMIT wa_notify._maintain_batch() FOR UPDATE SKIP LOCKED));
        GET DIAGNOSTICS n = ROW_COUNT;
        total := total + n;
        EXIT WHEN n < wa_notify._maintain_batch() OR total >= wa_notify._maintain_max_rows();
    END LOOP;
    IF total >= wa_notify._maintain_max_rows() THEN
        r := r || '{"more": true}';
    END IF;
    RETURN wa_notify._jsonb_add(r, 'deleted', total);
END $$;

-- 3. the move: final, untouched messages to the archive, oldest first, each
-- batch's months given their partitions (and the month after: made ahead)
CREATE FUNCTION wa_notify._maintain_move(r jsonb) RETURNS jsonb
LANGUAGE plpgsql SET search_path = pg_catalog, wa_notify AS $$
DECLARE
    before timestamptz := now() - wa_notify._archive_after();
    since timestamptz := '-infinity';
    cols text := wa_notify._message_columns();
    ids bigint[];
    lo timestamptz;
    hi timestamptz;
    month timestamptz;
    n bigint;
    total bigint := 0;
BEGIN
    IF NOT pg_try_advisory_xact_lock(wa_notify._archive_move_lock()) THEN
        RETURN wa_notify._jsonb_append(r, 'deferred', 'the move: captures were being staged');
    END IF;
    LOOP
        SELECT array_agg(c.id), min(c.created_at), max(c.created_at) INTO ids, lo, hi
          FROM (SELECT m.id, m.created_at FROM wa_notify.message m
                 WHERE m.created_at >= since AND m.created_at < before
                   AND m.status = ANY (wa_notify._final_statuses()) AND m.updated_at < before
                 ORDER BY m.created_at
                 LIMIT wa_notify._maintain_batch() FOR UPDATE SKIP LOCKED) c;
        EXIT WHEN ids IS NULL;
        BEGIN
            FOR month IN SELECT g AT TIME ZONE 'UTC'      -- months counted in UTC
                           FROM generate_series(wa_notify._month_start(lo) AT TIME ZONE 'UTC',
                                                wa_notify._month_after(hi) AT TIME ZONE 'UTC', interval '1 month') g
            LOOP
                IF wa_notify._archive_partition_for(month) THEN
                    r := wa_notify._jsonb_append(r, 'created_partitions', 'wa_notify.' || wa_notify._archive_partition_name(month));
                END IF;
            END LOOP;
        EXCEPTION WHEN lock_not_available THEN
            RETURN wa_notify._jsonb_add(wa_notify._jsonb_append(r, 'deferred', 'the move: making a partition, a reader held the archive'),
                                        'moved', total);
        END;
        EXECUTE format('WITH d AS (DELETE FROM wa_notify.message m WHERE m.id = ANY ($1) RETURNING %s)
                        INSERT INTO wa_notify.message_archive (%s) SELECT %s FROM d', cols, cols, cols)
          USING ids;
        GET DIAGNOSTICS n = ROW_COUNT;
        total := total + n;
        since := hi;
        IF total >= wa_notify._maintain_max_rows() THEN
            r := r || '{"more": true}';
            EXIT;
        END IF;
    END LOOP;
    RETURN wa_notify._jsonb_add(r, 'moved', total);
END $$;

-- 4. anonymization of final messages older than the limit: live ones by the
-- created_at index, archived ones partition by partition through each
-- one's index of the rows not yet anonymized (_archive_indexes())
CREATE FUNCTION wa_notify._maintain_anonymize(r jsonb, anon_days integer) RETURNS jsonb
LANGUAGE plpgsql SET search_path = pg_catalog, wa_notify AS $$
DECLARE
    cutoff timestamptz := now() - anon_days * interval '1 day';
    p text;
    plo timestamptz;
    phi timestamptz;
    n bigint;
    total bigint := 0;
BEGIN
    IF anon_days = 0 THEN
        RETURN r;
    END IF;
    LOOP
        EXECUTE format('UPDATE wa_notify.message m SET %s
                         WHERE m.id = ANY (ARRAY(SELECT l.id FROM wa_notify.message l
                                                  WHERE l.created_at < $1 AND l.anonymized_at IS NULL
                                                    AND l.status = ANY (wa_notify._final_statuses())
                                                  ORDER BY l.created_at LIMIT $2 FOR UPDATE SKIP LOCKED))',
                       wa_notify._anonymize_set())
          USING cutoff, wa_notify._maintain_batch();
        GET DIAGNOSTICS n = ROW_COUNT;
        total := total + n;
        EXIT WHEN n < wa_notify._maintain_batch() OR total >= wa_notify._maintain_max_rows();
    END LOOP;
    -- (through the parent, one partition's rows at a time: its range
    -- prunes the others, its tableoid tells its row addresses from theirs,
    -- and the parent's trigger keeps the tally: a masked phone may have
    -- another market prefix, 45_tally.sql)
    FOR p, plo, phi IN SELECT x.part, x.lo, x.hi FROM wa_notify._archive_partitions() x WHERE x.lo < cutoff
             UNION ALL SELECT 'wa_notify.message_archive_default', '-infinity', 'infinity'
                        WHERE wa_notify._archive_default_rows() > 0
    LOOP
        LOOP
            EXIT WHEN total >= wa_notify._maintain_max_rows();
            EXECUTE format('UPDATE wa_notify.message_archive m SET %s
                             WHERE m.created_at >= $3 AND m.created_at < $4 AND m.tableoid = %L::regclass
                               AND m.ctid = ANY (ARRAY(SELECT a.ctid FROM %s a
                                                        WHERE a.anonymized_at IS NULL AND a.created_at < $1
                                                        LIMIT $2 FOR UPDATE SKIP LOCKED))',
                           wa_notify._anonymize_set(), p, p)
              USING cutoff, wa_notify._maintain_batch(), plo, phi;
            GET DIAGNOSTICS n = ROW_COUNT;
            total := total + n;
            EXIT WHEN n < wa_notify._maintain_batch();
        END LOOP;
    END LOOP;
    IF total >= wa_notify._maintain_max_rows() THEN
        r := r || '{"more": true}';
    END IF;
    RETURN wa_notify._jsonb_add(r, 'anonymized', total);
END $$;

-- 0. the tally (45_tally.sql) counts what a restore brought back without
-- its triggers: an archive month restored partition by partition (pg_dump
-- writes each partition's rows into it, past the parent's trigger), or a
-- live table restored with --disable-triggers.  Such a part, with messages
-- and no count at all, is counted again from its messages (the live table
-- under a SHARE lock, which waits at most maintain()'s lock_timeout, else
-- deferred: a checkout waits for the count, a fraction of a second, once).
CREATE FUNCTION wa_notify._tally_repair(r jsonb) RETURNS jsonb
LANGUAGE plpgsql SET search_path = pg_catalog, wa_notify AS $$
DECLARE
    p record;
BEGIN
    FOR p IN SELECT x.part, wa_notify._tally_part(false, x.lo) AS month FROM wa_notify._archive_partitions() x LOOP
        CONTINUE WHEN EXISTS (SELECT 1 FROM wa_notify.message_tally t WHERE t.part = p.month);
        IF wa_notify._tally_count(p.part::regclass, p.month) > 0 THEN
            r := wa_notify._jsonb_append(r, 'tally_recounted', p.part);
        END IF;
    END LOOP;
    IF EXISTS (SELECT 1 FROM wa_notify.message)
       AND NOT EXISTS (SELECT 1 FROM wa_notify.message_tally t WHERE t.part = 'infinity') THEN
        BEGIN
            LOCK TABLE wa_notify.message IN SHARE MODE;
            PERFORM wa_notify._tally_count('wa_notify.message', 'infinity');
            r := wa_notify._jsonb_append(r, 'tally_recounted', 'wa_notify.message');
        EXCEPTION WHEN lock_not_available THEN
            r := wa_notify._jsonb_append(r, 'deferred', 'counting the live table into the tally: a lock was busy');
        END;
    END IF;
    RETURN r;
END $$;

-------------------------------------------------------------------------------
-- maintain()
-------------------------------------------------------------------------------
CREATE FUNCTION wa_notify.maintain() RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, wa_notify
SET lock_timeout = '50ms'      -- the longest its DDL waits: then deferred, see above
AS $$
DECLARE
    keep_days integer := coalesce(wa_notify._setting_value('log_retention_days')::integer, 400);
    anon_days integer := coalesce(wa_notify._setting_value('anonymize_after_days')::integer, 90);
    r jsonb := '{"moved": 0, "anonymized": 0, "deleted": 0, "dropped_partitions": [],
                 "created_partitions": [], "deferred": [], "more": false}';
    started timestamptz := clock_timestamp();
BEGIN
    r := wa_notify._tally_repair(r);
    -- first, before the move's advisory lock (which a checkout's staging
    -- waits for) is taken: the tally rows it merges are held until commit
    PERFORM wa_notify._tally_compact();
    r := wa_notify._maintain_default(r);
    r := wa_notify._maintain_retention(r, keep_days);
    r := wa_notify._maintain_move(r);
    r := wa_notify._maintain_anonymize(r, anon_days);
    r := r || jsonb_build_object('default_partition_rows', wa_notify._archive_default_rows(),
                                 'seconds', round(extract(epoch FROM clock_timestamp() - started)::numeric, 3));
    -- (a webhook's or the worker's short transaction may hold the state
    -- row: this one statement waits for it rather than fail the run)
    PERFORM set_config('lock_timeout', '0', true);
    UPDATE wa_notify.state SET maintained_at = now(), last_maintain = r;
    RETURN r;
END $$;
COMMENT ON FUNCTION wa_notify.maintain() IS
    'retention, anonymization and the archive''s upkeep now; returns what it did (doc/retention.md)';

-- The worker's call: maintain(), a failure logged rather than raised (the
-- worker goes on sending); returns the seconds until the next run (0 while
-- maintain() says there is more to do).
CREATE FUNCTION wa_notify._maintain_by_worker() RETURNS integer
LANGUAGE plpgsql SET search_path = pg_catalog, wa_notify AS $$
DECLARE
    r jsonb;
BEGIN
    r := wa_notify.maintain();
    IF (r ->> 'more')::boolean THEN
        RETURN 0;
    END IF;
    RETURN wa_notify._maintain_interval();
EXCEPTION WHEN OTHERS THEN
    RAISE WARNING 'wa_notify: maintain() failed: %', SQLERRM
        USING HINT = 'The worker tries again in an hour; SELECT wa_notify.maintain() shows the error now.';
    RETURN wa_notify._maintain_interval();
END $$;

REVOKE ALL ON FUNCTION wa_notify.maintain(), wa_notify._maintain_by_worker(),
                       wa_notify._maintain_default(jsonb), wa_notify._maintain_retention(jsonb, integer),
                       wa_notify._maintain_move(jsonb), wa_notify._maintain_anonymize(jsonb, integer),
                       wa_notify._archive_partition_for(timestamptz), wa_notify._recipient_hash(text),
                       wa_notify._tally_repair(jsonb), wa_notify._archive_indexes(text)
  FROM PUBLIC;
