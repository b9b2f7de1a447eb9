-- 45_tally.sql: the message tally, what the status card, the senders view
-- and counts() read instead of the messages (doc/retention.md, "What the
-- status card, the senders view and counts() read").
--
-- A report "for today" or "this month" read the messages of that period:
-- 20,000-60,000 rows on a busy day, 600,000 at a month's end, all of them
-- read again at every look.  The tally keeps their counts per hour instead,
-- as the messages change:
--
--   axis 'c'  the hour of created_at, per sender and status (counts());
--   axis 's'  the hour of sent_at, per sender and whether the message was
--             delivered ('d') and read ('r') (the card's and the senders'
--             sent, delivered and read today);
--   axis 'f'  the hour of failed_at of a failed message, per sender (failed
--             today);
--   axis 'b'  the hour of sent_at of a billable message, per sender, market
--             prefix and pricing category ('5511/utility': this month's cost).
--
-- src/tally.c is the one home of those keys.  Statement triggers on the
-- live table (insert, update, delete: every path, the worker's, a
-- webhook's, a hand edit) and on the archive's parent (maintain()'s move
-- and anonymization) add each statement's net change to the tally, in the
-- same transaction: a report is exact.  Each backend adds to rows of its
-- own (shard: its backend id, unique among the running backends), so no
-- writer ever waits for another's row or deadlocks with it; maintain()
-- merges the shards of hours older than a day into shard 0
-- (_tally_compact()), and a report sums them.  Partial hours at the ends
-- of a period are counted from the messages (_tally_sum()).
--
-- part says where the counted messages are: 'infinity' for the live table,
-- else the month (UTC) of created_at of archived ones, so that dropping an
-- archive partition drops its counts (80_retention.sql), TRUNCATE of the
-- live table its own, and maintain() can tell an archive month restored
-- without its counts (_tally_repair()).  The archive's rows change only by
-- maintain(), through the parent, but for two steps that keep the tally
-- themselves (80_retention.sql): the default partition's rows put into
-- their month (counted the same), and a month dropped whole.

CREATE TABLE wa_notify.message_tally (
    axis   "char" NOT NULL CHECK (axis IN ('c', 's', 'f', 'b')),
    hour   timestamptz NOT NULL,
    sender text NOT NULL,
    k      text NOT NULL,
    part   date NOT NULL,
    shard  integer NOT NULL,      -- the backend that added to it; 0: merged by maintain()
    n      bigint NOT NULL,
    PRIMARY KEY (axis, hour, sender, k, part, shard)
) WITH (fillfactor = 50);   -- the current hours' rows are updated at every change: room for HOT
COMMENT ON TABLE wa_notify.message_tally IS
    'messages counted per hour (45_tally.sql): created per status (c), sent and how far they got (s), failed (f), billable per market and category (b)';
REVOKE ALL ON wa_notify.message_tally FROM PUBLIC;

-- The rule of what a message counts for is src/tally.c's: the trigger
-- below, and these three for SQL (a partial hour's scan, the check, the
-- repair, a dropped month).
-- a message's keys: (axis, the time the axis counts, key)
CREATE FUNCTION wa_notify._tally_keys(created_at timestamptz, sent_at timestamptz,
                                      delivered_at timestamptz, read_at timestamptz,
                                      failed_at timestamptz, status text, billable boolean,
                                      pricing_category text, phone text,
                                      OUT axis "char", OUT at timestamptz, OUT k text)
RETURNS SETOF record
    AS 'MODULE_PATHNAME', 'wa_notify_tally_keys' LANGUAGE C IMMUTABLE ROWS 4;
-- the UTC hour of a time, whatever the session's TimeZone (+-infinity stay)
CREATE FUNCTION wa_notify._tally_hour(t timestamptz) RETURNS timestamptz
    AS 'MODULE_PATHNAME', 'wa_notify_tally_hour' LANGUAGE C IMMUTABLE STRICT;
-- where a row of the live table (live) or of the archive is counted
CREATE FUNCTION wa_notify._tally_part(live boolean, created_at timestamptz) RETURNS date
    AS 'MODULE_PATHNAME', 'wa_notify_tally_part' LANGUAGE C IMMUTABLE STRICT;

-- The statement trigger: a statement's rows, new +1 and old -1, net per
-- key, added in one INSERT ... ON CONFLICT (src/tally.c).  One run per
-- statement, whatever its rows; a webhook's one-row UPDATE adds to two to
-- four rows.
CREATE FUNCTION wa_notify._tally_trigger() RETURNS trigger
    AS 'MODULE_PATHNAME', 'wa_notify_tally_trigger' LANGUAGE C;

-- TRUNCATE of the live table: its counts go (the archive's stay; TRUNCATE
-- holds the table, so no writer adds to them meanwhile)
CREATE FUNCTION wa_notify._tally_truncated() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, wa_notify AS $$
BEGIN
    DELETE FROM wa_notify.message_tally WHERE part = 'infinity';
    RETURN NULL;
END $$;

CREATE TRIGGER tally_insert AFTER INSERT ON wa_notify.message
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION wa_notify._tally_trigger();
CREATE TRIGGER tally_update AFTER UPDATE ON wa_notify.message
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION wa_notify._tally_trigger();
CREATE TRIGGER tally_delete AFTER DELETE ON wa_notify.message
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION wa_notify._tally_trigger();
CREATE TRIGGER tally_truncate AFTER TRUNCATE ON wa_notify.message
    FOR EACH STATEMENT EXECUTE FUNCTION wa_notify._tally_truncated();
-- the archive: maintain() writes it through its parent (80_retention.sql)
CREATE TRIGGER tally_insert AFTER INSERT ON wa_notify.message_archive
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION wa_notify._tally_trigger();
CREATE TRIGGER tally_update AFTER UPDATE ON wa_notify.message_archive
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION wa_notify._tally_trigger();
CREATE TRIGGER tally_delete AFTER DELETE ON wa_notify.message_archive
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION wa_notify._tally_trigger();
-- (which archive month a part is: _tally_repair(), and a dropped partition's counts)
CREATE INDEX message_tally_part ON wa_notify.message_tally (part);

-- Merge the shards of the hours older than a day into shard 0 (maintain(),
-- hourly): a day's report reads its hours' shards, a month's mostly one row
-- per hour and key.  Rows a writer holds are left for the next run.
CREATE FUNCTION wa_notify._tally_compact() RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, wa_notify AS $$
DECLARE
    n bigint;
BEGIN
    WITH d AS (DELETE FROM wa_notify.message_tally t
                WHERE t.ctid = ANY (ARRAY(SELECT x.ctid FROM wa_notify.message_tally x
                                           WHERE x.hour < now() - interval '1 day' AND x.shard <> 0
                                           FOR UPDATE SKIP LOCKED))
               RETURNING t.*),
    g AS (SELECT d.axis, d.hour, d.sender, d.k, d.part, sum(d.n)::bigint AS n FROM d GROUP BY 1, 2, 3, 4, 5)
    INSERT INTO wa_notify.message_tally AS t (axis, hour, sender, k, part, shard, n)
    SELECT g.axis, g.hour, g.sender, g.k, g.part, 0, g.n FROM g
    ON CONFLICT (axis, hour, sender, k, part, shard) DO UPDATE SET n = t.n + EXCLUDED.n;
    GET DIAGNOSTICS n = ROW_COUNT;
    DELETE FROM wa_notify.message_tally t WHERE t.n = 0 AND t.shard = 0;
    RETURN n;
END $$;

-- The counts of one axis over [lo, hi): per hour (the start of the hour, or
-- lo in the first one), sender and key.  Whole hours from the tally (its
-- shards summed), the partial hours at either end from the messages themselves
-- (index ranges of message_created, message_sent, message_failed and the
-- archive's); SECURITY DEFINER: a report's reader has no right on them.
CREATE FUNCTION wa_notify._tally_sum(axis "char", lo timestamptz, hi timestamptz,
                                     OUT at timestamptz, OUT sender text, OUT k text, OUT n bigint)
RETURNS SETOF record
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, wa_notify SET jit = off AS $$
DECLARE
    a timestamptz := wa_notify._tally_hour(lo);
    b timestamptz := wa_notify._tally_hour(hi);
BEGIN
    IF a < lo THEN
        a := a + interval '1 hour';
    END IF;
    IF a >= b THEN          -- no whole hour: all from the messages
        a := hi;
        b := hi;
    END IF;
    RETURN QUERY
    SELECT greatest(t.hour, lo), t.sender, t.k, sum(t.n)::bigint
      FROM wa_notify.message_tally t
     WHERE t.axis = _tally_sum.axis AND t.hour >= a AND t.hour < b
     GROUP BY 1, 2, 3
    HAVING sum(t.n) <> 0;
    IF lo < a THEN
        RETURN QUERY SELECT * FROM wa_notify._tally_scan(axis, lo, least(a, hi));
    END IF;
    IF b < hi AND b >= a THEN
        RETURN QUERY SELECT * FROM wa_notify._tally_scan(axis, greatest(b, lo), hi);
    END IF;
END $$;

-- the same, counted from the messages (a partial hour; the tests' check):
-- each axis by the index of its own time column (live and archived), the
-- keys by _tally_keys()
CREATE FUNCTION wa_notify._tally_scan(axis "char", lo timestamptz, hi timestamptz,
                                      OUT at timestamptz, OUT sender text, OUT k text, OUT n bigint)
RETURNS SETOF record
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, wa_notify SET jit = off AS $$
DECLARE
    col text := CASE axis WHEN 'c' THEN 'created_at' WHEN 'f' THEN 'failed_at' ELSE 'sent_at' END;
BEGIN
    RETURN QUERY EXECUTE format(
        'SELECT greatest(wa_notify._tally_hour(x.at), $2), m.sender, x.k, count(*)
           FROM wa_notify.message_history m,
                LATERAL wa_notify._tally_keys(m.created_at, m.sent_at, m.delivered_at, m.read_at, m.failed_at,
                                              m.status, m.billable, m.pricing_category, m.phone) x
          WHERE m.%1$I >= $2 AND m.%1$I < $3 AND x.axis = $1
          GROUP BY 1, 2, 3', col)
      USING axis, lo, hi;
END $$;
-- Where the tally and the messages disagree, over all time (none: it is
-- exact).  Reads every message: a check for the tests and for a DBA who
-- doubts, not for a report.
CREATE FUNCTION wa_notify._tally_check(OUT axis "char", OUT sender text, OUT k text,
                                       OUT tally bigint, OUT messages bigint)
RETURNS SETOF record
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, wa_notify SET jit = off AS $$
    WITH t AS (SELECT a.axis, x.sender, x.k, sum(x.n)::bigint AS n
                 FROM unnest('{c,s,f,b}'::"char"[]) AS a(axis),
                      LATERAL wa_notify._tally_sum(a.axis, '-infinity', 'infinity') x
                GROUP BY 1, 2, 3),
         m AS (SELECT a.axis, x.sender, x.k, sum(x.n)::bigint AS n
                 FROM unnest('{c,s,f,b}'::"char"[]) AS a(axis),
                      LATERAL wa_notify._tally_scan(a.axis, '-infinity', 'infinity') x
                GROUP BY 1, 2, 3)
    SELECT axis, sender, k, coalesce(t.n, 0), coalesce(m.n, 0)
      FROM t FULL JOIN m USING (axis, sender, k)
     WHERE coalesce(t.n, 0) <> coalesce(m.n, 0)
     ORDER BY 1, 2, 3
$$;

-- Count the messages of a table into the tally as one part, in shard 0:
-- the messages an installed 1.0 had (below), and a part a restore brought
-- back without its counts (_tally_repair(), 80_retention.sql).  Returns the
-- tally rows written.
CREATE FUNCTION wa_notify._tally_count(source regclass, part date) RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, wa_notify AS $$
DECLARE
    n bigint;
BEGIN
    EXECUTE format('INSERT INTO wa_notify.message_tally AS t (axis, hour, sender, k, part, shard, n)
                    SELECT x.axis, wa_notify._tally_hour(x.at), m.sender, x.k, $1, 0, count(*)
                      FROM %s m,
                           LATERAL wa_notify._tally_keys(m.created_at, m.sent_at, m.delivered_at, m.read_at,
                                                         m.failed_at, m.status, m.billable, m.pricing_category,
                                                         m.phone) x
                     GROUP BY 1, 2, 3, 4
                    ON CONFLICT (axis, hour, sender, k, part, shard) DO UPDATE SET n = t.n + EXCLUDED.n',
                   source) USING part;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END $$;

REVOKE ALL ON FUNCTION wa_notify._tally_compact(), wa_notify._tally_check(), wa_notify._tally_count(regclass, date),
                       wa_notify._tally_scan("char", timestamptz, timestamptz) FROM PUBLIC;
-- the status card and the senders view (which a reporting role reads) call
-- it; it gives counts per sender and hour, no phone or message
GRANT EXECUTE ON FUNCTION wa_notify._tally_sum("char", timestamptz, timestamptz) TO PUBLIC;

-- An installed 1.0's messages are counted once, here (the ALTER TABLEs
-- before hold the live table: nothing writes it meanwhile; the archive is
-- empty until maintain() moves rows into it, through the triggers).
SELECT wa_notify._tally_count('wa_notify.message', 'infinity');
