-- 20_capture.sql: capture and context resolution that hold against a
-- hostile shop role, bad data and a stuck context (issue 13).  See
-- doc/capture.md ("What can and cannot fail a checkout", "Privileges").
--
--  * every context runs as the role wa_notify_context (created here when
--    absent), row_security off, search_path pg_catalog + the schemas
--    recorded at watch() time, read-only, under context_timeout and a lock
--    timeout (src/capture_context.c);
--  * one capture trigger per table and event kind (INSERT, UPDATE) holds
--    every watch of the table; it evaluates each fires_when in C on its
--    own tuples (src/capture.c, src/capture_expr.c) and has no WHEN
--    clause, so it is tied to no column and the shop's ALTER COLUMN ...
--    TYPE works;
--  * staging never fails the shop's statement; resolution isolates a row
--    that breaks the batch and refuses over-long order keys and contexts.

-------------------------------------------------------------------------------
-- the role contexts run as: NOLOGIN, no right on wa_notify.  A cluster may
-- hold it already (another database, a site that created it first).
-------------------------------------------------------------------------------
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'wa_notify_context') THEN
        CREATE ROLE wa_notify_context NOLOGIN;
        COMMENT ON ROLE wa_notify_context IS
            'wa_notify: context queries run as this role; grant it SELECT on the shop tables contexts read, nothing else';
    END IF;
END $$;

-- the context's time limit in seconds (the setting context_timeout,
-- declared with its range in 10_config.sql)
CREATE FUNCTION wa_notify._context_timeout() RETURNS integer
LANGUAGE sql STABLE SET search_path = pg_catalog, wa_notify AS $$
    SELECT wa_notify._setting_int('context_timeout')
$$;

-- the largest context row kept as a message's params (64 kB: far above
-- anything a template or a 4096-character text body can use)
CREATE FUNCTION wa_notify._max_context_bytes() RETURNS integer
LANGUAGE sql IMMUTABLE AS $$ SELECT 65536 $$;

-------------------------------------------------------------------------------
-- running contexts (capture_context.c)
-------------------------------------------------------------------------------
DROP FUNCTION wa_notify._context_exec(name, text, text, text, jsonb);
CREATE FUNCTION wa_notify._context_exec(search_path text, context text, order_key text,
                                        source_row jsonb, timeout integer)
    RETURNS jsonb[] AS 'MODULE_PATHNAME', 'wa_notify_context_exec' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION wa_notify._context_exec(text, text, text, jsonb, integer) IS
    'internal: at most two rows of a context, run as wa_notify_context (row_security off, time limit)';

CREATE FUNCTION wa_notify._context_explain(search_path text, context text, timeout integer)
    RETURNS void AS 'MODULE_PATHNAME', 'wa_notify_context_explain' LANGUAGE C VOLATILE STRICT;
COMMENT ON FUNCTION wa_notify._context_explain(text, text, integer) IS
    'internal: EXPLAIN a context as wa_notify_context (watch() checks its privileges with it)';

-------------------------------------------------------------------------------
-- the staging table's health, the checks the status card shows
-- (capture_expr.c, capture.c)
-------------------------------------------------------------------------------
CREATE FUNCTION wa_notify._expr_check(source regclass, expr text, search_path text, alias text,
                                      is_condition boolean)
    RETURNS text AS 'MODULE_PATHNAME', 'wa_notify_expr_check' LANGUAGE C STABLE STRICT;
COMMENT ON FUNCTION wa_notify._expr_check(regclass, text, text, text, boolean) IS
    'internal: why a watch''s order key or fires_when no longer parses on its table (NULL: it does)';

CREATE FUNCTION wa_notify._capture_queue_damage() RETURNS text
    AS 'MODULE_PATHNAME', 'wa_notify_capture_queue_damage' LANGUAGE C STABLE;
COMMENT ON FUNCTION wa_notify._capture_queue_damage() IS
    'internal: why captures cannot be staged in wa_notify.capture_queue (NULL: they can)';
GRANT EXECUTE ON FUNCTION wa_notify._capture_queue_damage() TO PUBLIC;

-- What is wrong with a watch (NULL: nothing): its table, its triggers, its
-- order key, fires_when or context no longer fit the table (a column renamed
-- or dropped, a type changed so that the expression no longer makes sense).
-- Parse analysis only: no expression of the mapping runs here.
CREATE FUNCTION wa_notify._watch_problem(watch_id bigint) RETURNS text
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, wa_notify AS $$
DECLARE
    w     wa_notify.watch;
    rel   regclass;
    alias name;
    p     text;
BEGIN
    SELECT * INTO w FROM wa_notify.watch x WHERE x.id = watch_id;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    rel := to_regclass(w.source);
    IF rel IS NULL THEN
        RETURN format('table %s no longer exists', w.source);
    END IF;
    IF NOT EXISTS (SELECT 1 FROM wa_notify._capture_entries(rel) c WHERE c.watch_id = w.id) THEN
        RETURN 'its capture trigger is gone (call watch() again)';
    END IF;
    SELECT c.relname INTO alias FROM pg_class c WHERE c.oid = rel;
    p := wa_notify._expr_check(rel, w.order_key, w.search_path, alias, false);
    IF p IS NOT NULL THEN
        RETURN format('order_key %s: %s', w.order_key, p);
    END IF;
    IF w.fires_when IS NOT NULL THEN
        p := wa_notify._expr_check(rel, w.fires_when, w.search_path, alias, true);
        IF p IS NOT NULL THEN
            RETURN format('fires_when %s: %s', w.fires_when, p);
        END IF;
    END IF;
    BEGIN
        PERFORM set_config('search_path', concat_ws(', ', 'pg_catalog', nullif(w.search_path, '')), true);
        PERFORM wa_notify._context_columns(w.context);
    EXCEPTION WHEN OTHERS THEN
        RETURN format('context: %s', SQLERRM);
    END;
    -- what wa_notify_context may not read (after an update from 1.0, whose
    -- contexts ran as the watch's owner, until the admin grants it)
    BEGIN
        PERFORM wa_notify._context_explain(w.search_path, w.context, wa_notify._context_timeout());
    EXCEPTION WHEN insufficient_privilege THEN
        GET STACKED DIAGNOSTICS p = PG_EXCEPTION_HINT;
        IF nullif(p, '') IS NULL AND SQLERRM ~ '^permission denied for table ' THEN
            p := format('GRANT SELECT ON %s TO wa_notify_context;',
                        substring(SQLERRM FROM '^permission denied for table (.*)$'));
        END IF;
        RETURN format('context: %s%s', SQLERRM, coalesce(' (' || nullif(p, '') || ')', ''));
    END;
    RETURN NULL;
END $$;
COMMENT ON FUNCTION wa_notify._watch_problem(bigint) IS
    'internal: what no longer fits in a watch (the watches view and the status card show it)';
GRANT EXECUTE ON FUNCTION wa_notify._watch_problem(bigint) TO PUBLIC;

-- (the skip rule, wa_notify._skip_reason(), shared by resolution and _claim,
-- is in 30_dispatch.sql)

-------------------------------------------------------------------------------
-- watches: triggers, watch(), unwatch()
-------------------------------------------------------------------------------
-- A table's capture triggers: one AFTER INSERT trigger holding every watch
-- of the table and one AFTER UPDATE trigger holding those with a
-- fires_when, named wa_notify_capture_ins and wa_notify_capture_upd, with
-- eight arguments per watch in watch id order (watch id, event, key mode
-- 'k' column or 'e' query, the key, what of the row to stage, fires_when
-- as the admin wrote it or '', the recorded schemas, the alias the
-- expressions use) and no WHEN clause: the trigger decides each watch's
-- transition in C, and no column is named.  On a table of its own (not a
-- partition, parent or child) the triggers are FOR EACH STATEMENT with
-- their transition tables: a statement costs one call, a row a copy into
-- the transition table (no trigger event, no re-fetch of the row), and the
-- statement's captures are staged together.  On a partitioned or
-- inheritance table they are FOR EACH ROW (cloned to every partition, so a
-- write to a partition itself is captured): a row costs one trigger event
-- however many watches the table has.

-- a trigger's arguments (pg_trigger.tgargs: each ends in a NUL byte)
CREATE FUNCTION wa_notify._trigger_args(tgargs bytea) RETURNS text[]
LANGUAGE plpgsql STABLE STRICT SET search_path = pg_catalog AS $$
DECLARE
    rest bytea := tgargs;
    p    integer;
    args text[] := '{}';
BEGIN
    LOOP
        p := position('\x00'::bytea IN rest);
        EXIT WHEN p = 0;
        args := args || convert_from(substring(rest FROM 1 FOR p - 1), current_setting('server_encoding'));
        rest := substring(rest FROM p + 1);
    END LOOP;
    RETURN args;
END $$;

-- The watches a table's capture triggers hold: per trigger and kind ('ins',
-- 'upd'), each watch's eight arguments.  A 1.0 trigger (one watch, five
-- arguments, fires_when in its WHEN clause) is read as the 1.1 entry of
-- the same watch, fires_when from its watch row; a 1.0 trigger with a WHEN
-- clause whose watch row is gone is left out (and left alone).
CREATE FUNCTION wa_notify._capture_entries(source regclass)
RETURNS TABLE (trigger_oid oid, kind text, watch_id bigint, args text[])
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    tg    record;
    a     text[];
    fw    text;
    path  text;
BEGIN
    FOR tg IN SELECT t.oid, t.tgtype, t.tgnargs, t.tgargs, t.tgqual IS NOT NULL AS has_when
                FROM pg_trigger t
               WHERE t.tgrelid = source AND t.tgparentid = 0
                 AND t.tgfoid = 'wa_notify._capture()'::regprocedure
               ORDER BY t.tgname
    LOOP
        a := wa_notify._trigger_args(tg.tgargs);
        trigger_oid := tg.oid;
        kind := CASE WHEN tg.tgtype & 16 <> 0 THEN 'upd' ELSE 'ins' END;
        IF tg.tgnargs = 5 THEN
            SELECT x.fires_when, x.search_path INTO fw, path
              FROM wa_notify.watch x WHERE x.id::text = a[1];
            CONTINUE WHEN tg.has_when AND fw IS NULL;
            watch_id := a[1]::bigint;
            args := a || ARRAY[CASE WHEN tg.has_when THEN fw ELSE '' END, coalesce(path, ''),
                               (SELECT c.relname::text FROM pg_class c WHERE c.oid = source)];
            RETURN NEXT;
        ELSIF tg.tgnargs % 8 = 0 THEN
            FOR i IN 0 .. tg.tgnargs / 8 - 1 LOOP
                watch_id := a[i * 8 + 1]::bigint;
                args := a[i * 8 + 1 : i * 8 + 8];
                RETURN NEXT;
            END LOOP;
        END IF;
    END LOOP;
END $$;

-- Attach a table's capture triggers again: the entries they hold, but
-- watch_id's (NULL: keep all), plus watch_id's new ones (ins, upd; NULL:
-- none).  Run as the extension's
-- owner (by _watch_attach, _watch_upsert, _unwatch_drop: dropping a
-- trigger takes the table's owner) and by the update script.
CREATE FUNCTION wa_notify._capture_rebuild(source regclass, watch_id bigint, ins text[], upd text[])
RETURNS boolean LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    old_triggers oid[];
    entries      jsonb;            -- what the triggers hold now, and what they will
    flat         text;
    k            text;
    -- a table of its own (no partition, parent or child): one call per
    -- statement over its transition tables; else one per row
    per_statement boolean := EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = source AND c.relkind = 'r'
                                                           AND NOT c.relispartition)
                             AND NOT EXISTS (SELECT 1 FROM pg_inherits i
                                              WHERE i.inhrelid = source OR i.inhparent = source);
BEGIN
    SELECT array_agg(DISTINCT c.trigger_oid),
           coalesce(jsonb_agg(jsonb_build_object('kind', c.kind, 'watch_id', c.watch_id, 'args', c.args))
                    FILTER (WHERE c.watch_id IS DISTINCT FROM _capture_rebuild.watch_id), '[]')
      INTO old_triggers, entries
      FROM wa_notify._capture_entries(source) c;
    IF ins IS NOT NULL THEN
        entries := entries || jsonb_build_array(jsonb_build_object('kind', 'ins', 'watch_id', watch_id, 'args', ins));
    END IF;
    IF upd IS NOT NULL THEN
        entries := entries || jsonb_build_array(jsonb_build_object('kind', 'upd', 'watch_id', watch_id, 'args', upd));
    END IF;
    FOR k IN SELECT t.tgname FROM pg_trigger t WHERE t.oid = ANY (old_triggers) LOOP
        EXECUTE format('DROP TRIGGER %I ON %s', k, source);
    END LOOP;
    FOREACH k IN ARRAY ARRAY['ins', 'upd'] LOOP
        SELECT string_agg(quote_literal(u.a), ', ' ORDER BY e.watch_id, u.pos) INTO flat
          FROM jsonb_to_recordset(entries) AS e(kind text, watch_id bigint, args text[]),
               unnest(e.args) WITH ORDINALITY AS u(a, pos)
         WHERE e.kind = k;
        IF flat IS NOT NULL THEN
            EXECUTE format('CREATE TRIGGER %I AFTER %s ON %s %s EXECUTE FUNCTION wa_notify._capture(%s)',
                           'wa_notify_capture_' || k, CASE k WHEN 'ins' THEN 'INSERT' ELSE 'UPDATE' END,
                           source,
                           CASE WHEN NOT per_statement THEN 'FOR EACH ROW'
                                WHEN k = 'ins' THEN 'REFERENCING NEW TABLE AS wa_notify_new FOR EACH STATEMENT'
                                ELSE 'REFERENCING OLD TABLE AS wa_notify_old NEW TABLE AS wa_notify_new FOR EACH STATEMENT' END,
                           flat);
        END IF;
    END LOOP;
    RETURN true;
END $$;

-- watch(): attach the watch's entries (checks the caller's TRIGGER
-- privilege on the table and its partitions, then runs _capture_rebuild
-- as the extension's owner; capture_priv.c)
CREATE FUNCTION wa_notify._watch_attach(source regclass, watch_id bigint, ins text[], upd text[])
    RETURNS boolean AS 'MODULE_PATHNAME', 'wa_notify_watch_attach' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION wa_notify._watch_attach(regclass, bigint, text[], text[]) IS
    'internal: attach a watch to its table''s capture triggers (the caller needs TRIGGER on the table)';

CREATE OR REPLACE FUNCTION wa_notify._drop_watch_triggers(source regclass, watch_id bigint)
RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog, wa_notify AS $$
BEGIN
    PERFORM wa_notify._capture_rebuild(source, watch_id, NULL, NULL);
END $$;

CREATE OR REPLACE FUNCTION wa_notify._unwatch_drop(event text, source regclass)
RETURNS boolean LANGUAGE plpgsql SET search_path = pg_catalog, wa_notify AS $$
DECLARE
    wid bigint;
    found_any boolean := false;
BEGIN
    -- by the triggers on the table (robust to a renamed table) and by name
    FOR wid IN
        SELECT c.watch_id FROM wa_notify._capture_entries(source) c
         WHERE c.args[2] = _unwatch_drop.event
        UNION
        SELECT w.id FROM wa_notify.watch w
         WHERE w.event = _unwatch_drop.event AND to_regclass(w.source) = _unwatch_drop.source
    LOOP
        PERFORM wa_notify._drop_watch_triggers(source, wid);
        DELETE FROM wa_notify.watch w WHERE w.id = wid;
        found_any := true;
    END LOOP;
    RETURN found_any;
END $$;

CREATE OR REPLACE FUNCTION wa_notify.watch(event text, source regclass, order_key text, context text,
                                fires_when text DEFAULT NULL)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    ev       text := watch.event;
    rel      record;
    ok       text := btrim(order_key);
    fw       text := nullif(btrim(fires_when), '');
    ctx      text := regexp_replace(context, '[\s;]+$', '');
    okinfo   record;
    fwinfo   record;
    fw_query boolean := false;     -- fires_when needs the trigger's query
    keep_row text;                 -- '-', 'j' or 'c<columns>': what of the row to stage for $2
    cols     text[];
    key_col  name;                 -- order_key is this column
    alias    text;
    keysql   text;
    wid      bigint;
    recorded text;                 -- the schemas of the caller's search path
    grant_it text;
    entry    text[];               -- the watch's arguments in its table's capture trigger
BEGIN
    IF ev IS NULL OR NOT EXISTS (SELECT 1 FROM wa_notify.event e WHERE e.event = ev) THEN
        RAISE EXCEPTION 'unknown event "%"', ev
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'The events are order_placed, order_processing, shipment_created, shipment_delivered, order_cancelled and refund_issued.';
    END IF;
    IF source IS NULL THEN
        RAISE EXCEPTION 'source table must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    -- the caller needs TRIGGER on the table (checked again by _watch_store)
    PERFORM wa_notify._watch_check(source, false);
    SELECT c.relname, c.relkind, n.nspname INTO rel
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = source;
    IF rel.relkind NOT IN ('r', 'p') THEN
        RAISE EXCEPTION 'cannot watch "%": it is not a table', source::text
            USING ERRCODE = 'wrong_object_type',
                  HINT = 'Watch the table the shop writes; views and foreign tables have no row triggers wa_notify can use.';
    END IF;
    IF rel.nspname = 'wa_notify' THEN
        RAISE EXCEPTION 'cannot watch wa_notify''s own table "%"', source::text
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    alias := quote_ident(rel.relname);

    IF ok IS NULL OR ok = '' THEN
        RAISE EXCEPTION 'order_key must not be empty' USING ERRCODE = 'invalid_parameter_value',
            HINT = 'Give the column (or expression) that holds the order''s key, such as "Id" or "OrderId".';
    END IF;
    okinfo := wa_notify._expr_info(source, ok, 'order_key expression');
    IF fw IS NOT NULL THEN
        fwinfo := wa_notify._expr_info(source, fw, 'fires_when expression');
        IF fwinfo.type <> 'boolean'::regtype THEN
            RAISE EXCEPTION 'invalid fires_when expression: it is of type %, not boolean', fwinfo.type
                USING ERRCODE = 'datatype_mismatch',
                      DETAIL = format('The fires_when expression was: %s', fw),
                      HINT = 'Write a condition such as "OrderStatusId" = 40 or delivered_at IS NOT NULL.';
        END IF;
        fw_query := fwinfo.has_sublink;
    END IF;
    IF ctx IS NULL OR ctx = '' THEN
        RAISE EXCEPTION 'context query must not be empty' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    cols := wa_notify._context_columns(ctx);
    IF NOT 'phone' = ANY (cols) THEN
        RAISE EXCEPTION 'invalid context query: it returns no "phone" column'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('Its columns are: %s.', array_to_string(cols, ', ')),
                  HINT = 'Name the customer''s phone column "phone" (SELECT a."PhoneNumber" AS phone ...).';
    END IF;
    -- Names of the mapping resolve, when the context runs and when
    -- fires_when is compiled again, with pg_catalog first and then the
    -- schemas of the caller's search path as they are now.
    recorded := coalesce((SELECT string_agg(quote_ident(s.nsp), ', ' ORDER BY s.pos)
                            FROM unnest(current_schemas(false)) WITH ORDINALITY AS s(nsp, pos)
                           WHERE s.nsp <> 'pg_catalog' AND s.nsp NOT LIKE 'pg\_temp%'), '');
    -- The context runs as wa_notify_context: that role must be allowed to
    -- read what the context reads and call what it calls.  EXPLAIN as that
    -- role checks exactly that (the executor's permission checks, row
    -- security included) without running the query; other errors are left
    -- to the run.
    BEGIN
        PERFORM wa_notify._context_explain(recorded, ctx, wa_notify._context_timeout());
    EXCEPTION
        WHEN insufficient_privilege THEN
            grant_it := CASE
                WHEN SQLERRM ~ '^permission denied for (table|view|materialized view|foreign table|sequence) '
                    THEN format('GRANT SELECT ON %s TO wa_notify_context;',
                                regexp_replace(SQLERRM, '^permission denied for (table|view|materialized view|foreign table|sequence) ', ''))
                WHEN SQLERRM ~ '^permission denied for schema '
                    THEN format('GRANT USAGE ON SCHEMA %s TO wa_notify_context;',
                                regexp_replace(SQLERRM, '^permission denied for schema ', ''))
                WHEN SQLERRM ~ '^permission denied for function '
                    THEN format('GRANT EXECUTE ON FUNCTION %s TO wa_notify_context;',
                                regexp_replace(SQLERRM, '^permission denied for function ', ''))
                WHEN SQLERRM ~ 'row-level security'
                    THEN 'Contexts run with row_security = off, so they cannot read a table under a row-security policy: read it through a view owned by the table''s owner, or drop the policy.'
                ELSE 'Grant wa_notify_context what the context needs (SELECT on its tables, USAGE on their schemas, EXECUTE on its functions).'
            END;
            RAISE EXCEPTION 'invalid context query: %', SQLERRM
                USING ERRCODE = 'insufficient_privilege',
                      DETAIL = 'Contexts run as the role wa_notify_context, which can read only what is granted to it.',
                      HINT = grant_it;
        WHEN undefined_object THEN
            RAISE;
        WHEN OTHERS THEN
            NULL;
    END;

    -- What of the row to stage for $2: nothing when the context does not
    -- read $2; only the columns it reads when every use is $2->>'column' on
    -- a column whose text is the same in jsonb (text, integers, numeric,
    -- uuid); else the whole row as jsonb.
    keep_row := '-';
    IF ctx ~ '\$2(?![0-9])' THEN
        keep_row := 'j';
        IF (SELECT count(*) FROM regexp_matches(ctx, '\$2(?![0-9])', 'g'))
         = (SELECT count(*) FROM regexp_matches(ctx, '\$2\s*->>\s*''([^'']*)''', 'g')) THEN
            -- a key that is no column reads NULL either way: nothing to stage for it
            SELECT CASE WHEN bool_and(a.atttypid IN ('text'::regtype, 'varchar'::regtype, 'bpchar'::regtype,
                                                     'name'::regtype, 'int2'::regtype, 'int4'::regtype,
                                                     'int8'::regtype, 'numeric'::regtype, 'uuid'::regtype))
                                  IS NOT FALSE
                        THEN 'c' || coalesce(string_agg(quote_ident(a.attname), ',' ORDER BY a.attnum), '')
                        ELSE 'j' END
              INTO keep_row
              FROM pg_attribute a
             WHERE a.attrelid = source AND a.attnum > 0 AND NOT a.attisdropped
               AND a.attname IN (SELECT m[1] FROM regexp_matches(ctx, '\$2\s*->>\s*''([^'']*)''', 'g') m);
        END IF;
    END IF;

    -- the order key straight from a column of the row when it is one
    SELECT a.attname INTO key_col
      FROM pg_attribute a
     WHERE a.attrelid = source AND a.attnum > 0 AND NOT a.attisdropped
       AND (ok IN (quote_ident(a.attname), alias || '.' || quote_ident(a.attname))
            OR (ok ~ '^[A-Za-z_][A-Za-z0-9_]*$' AND lower(ok) = a.attname)
            OR (ok ~ '^[A-Za-z_][A-Za-z0-9_]*\.[A-Za-z_][A-Za-z0-9_]*$'
                AND lower(ok) = lower(rel.relname) || '.' || a.attname
                AND rel.relname = lower(rel.relname)));

    -- keep the watch row (same id when the watch is replaced; owner = the
    -- caller) and drop its previous triggers: done by the extension's owner
    -- once the caller's TRIGGER privilege is checked.  The new triggers are
    -- created below as the caller.
    wid := wa_notify._watch_store(ev, source, ok, fw, ctx, recorded);

    IF NOT fw_query THEN
        -- the transition is decided in C by the table's capture trigger (no
        -- WHEN clause: no column named, so the shop's DDL is never
        -- blocked); the key a column or a query
        IF key_col IS NULL THEN
            keysql := format('SELECT (%s)::text FROM (SELECT ($1).*) AS %s', okinfo.qualified, alias);
        END IF;
        entry := ARRAY[wid::text, ev, CASE WHEN keysql IS NULL THEN 'k' ELSE 'e' END,
                       coalesce(keysql, quote_ident(key_col)), keep_row, coalesce(fw, ''),
                       recorded, rel.relname];
        PERFORM wa_notify._watch_attach(source, wid, entry, CASE WHEN fw IS NOT NULL THEN entry END);
    ELSE
        -- fires_when holds a subquery: decided by the watch's cached key
        -- query ($1 the new row, $2 the old one: no row, no event)
        keysql := format('SELECT (%s)::text FROM (SELECT ($1).*) AS %s WHERE (%s) IS TRUE',
                         okinfo.qualified, alias, fwinfo.qualified);
        entry := ARRAY[wid::text, ev, 'e', keysql, keep_row, '', recorded, rel.relname];
        keysql := keysql || format(' AND (SELECT (%s) FROM (SELECT ($2).*) AS %s) IS NOT TRUE',
                                   fwinfo.qualified, alias);
        PERFORM wa_notify._watch_attach(source, wid, entry,
                                        ARRAY[wid::text, ev, 'e', keysql, keep_row, '', recorded, rel.relname]);
    END IF;
    RETURN wid;
END $$;


-- Staged captures into wa_notify.message, in their order, one per event and
-- order.  An order key over 1024 bytes (the unique index
-- message_event_order_key breaks at about 2.7 kB) gives a failed message
-- without key that says so.
--
-- Once per (event, order) across the live queue and the archive: the unique
-- index message_event_order_key holds it in the live table; a message
-- already archived (80_retention.sql) is found by the NOT EXISTS below.  The
-- shared advisory lock keeps maintain()'s move (which takes it exclusively,
-- never waiting) out while a batch is staged, so that a message is never
-- between the two tables for this INSERT; it is taken in a statement of its
-- own, so that the INSERT's snapshot sees a move committed meanwhile.
-- (PL/pgSQL: the archive and its lock are made in later fragments.)
CREATE FUNCTION wa_notify._stage_messages(staged wa_notify.capture_queue[]) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, wa_notify AS $$
BEGIN
    PERFORM pg_advisory_xact_lock_shared(wa_notify._archive_move_lock());
    INSERT INTO wa_notify.message AS msg (event, order_key, watch_id, source_row, created_at,
                                          status, error_message, failed_at, resolved_at)
    SELECT s.event, CASE WHEN s.fail IS NULL THEN s.order_key END, s.watch_id,
           CASE WHEN s.fail IS NULL THEN s.source_row END, s.captured_at,
           CASE WHEN s.fail IS NULL THEN 'queued' ELSE 'failed' END, s.fail,
           CASE WHEN s.fail IS NOT NULL THEN now() END,
           CASE WHEN s.fail IS NOT NULL THEN now() END
      FROM (SELECT o.*, coalesce(o.error,
                       CASE WHEN octet_length(o.order_key) > 1024 THEN
                           format('the order key is %s bytes long, over the 1024 bytes wa_notify accepts (it begins %s)',
                                  octet_length(o.order_key), quote_literal(left(o.order_key, 40)))
                       END) AS fail
              FROM unnest(staged) WITH ORDINALITY
                   AS o(watch_id, event, order_key, source_row, error, captured_at, pos)) s
     WHERE s.fail IS NOT NULL OR s.order_key IS NULL
        OR NOT EXISTS (SELECT 1 FROM wa_notify.message_archive a
                        WHERE a.event = s.event AND a.order_key = s.order_key AND a.resend_of IS NULL)
     ORDER BY s.pos
    ON CONFLICT (event, order_key) WHERE resend_of IS NULL AND order_key IS NOT NULL DO NOTHING;
END $$;

-------------------------------------------------------------------------------
-- context resolution (after commit, by the worker every cycle)
-------------------------------------------------------------------------------
-- The order context of one message: the watch's context query run with
-- ($1 order key, $2 source row) as wa_notify_context (capture_context.c).
-- Raises a clear error when the query fails, times out, or returns no row
-- or several rows, or when the watch is gone.
CREATE OR REPLACE FUNCTION wa_notify._context_row(watch_id bigint, order_key text, source_row jsonb)
RETURNS jsonb LANGUAGE plpgsql SET search_path = pg_catalog, wa_notify AS $$
DECLARE
    ctx  text;
    path text;
    rows jsonb[];
BEGIN
    SELECT w.context, w.search_path INTO ctx, path FROM wa_notify.watch w WHERE w.id = watch_id;
    IF ctx IS NULL THEN
        RAISE EXCEPTION 'watch % no longer exists', watch_id USING ERRCODE = 'undefined_object';
    END IF;
    BEGIN
        rows := wa_notify._context_exec(path, ctx, order_key, source_row, wa_notify._context_timeout());
    EXCEPTION
        WHEN insufficient_privilege THEN
            -- a GRANT to wa_notify_context is missing: an admin's fix, not bad
            -- data; the message waits for it (a row-security policy on a
            -- table the context reads is no missing grant: that fails)
            IF SQLERRM LIKE 'permission denied%' THEN
                RAISE EXCEPTION 'context query failed: %', SQLERRM USING ERRCODE = 'WA006';
            END IF;
            RAISE EXCEPTION 'context query failed: %', SQLERRM USING ERRCODE = 'WA001';
        WHEN OTHERS THEN
            RAISE EXCEPTION 'context query failed: %', SQLERRM USING ERRCODE = 'WA001';
    END;
    IF rows IS NULL THEN
        RAISE EXCEPTION 'context query returned no row for order %', order_key USING ERRCODE = 'WA002';
    ELSIF cardinality(rows) > 1 THEN
        RAISE EXCEPTION 'context query returned more than one row for order %', order_key USING ERRCODE = 'WA003';
    END IF;
    RETURN rows[1];
END $$;

CREATE OR REPLACE FUNCTION wa_notify._resolve_pending(max_rows integer DEFAULT 1000)
RETURNS integer LANGUAGE plpgsql SET search_path = pg_catalog, wa_notify AS $$
DECLARE
    m        record;
    n        integer := 0;
    cc       text := wa_notify._setting_value('default_country_code');
    use_tmpl boolean := coalesce(wa_notify._setting_value('use_templates'), 'true') = 'true';
    ctx      jsonb;
    raw      text;
    ph       text;
    err      text;
    det      text;
    skip     text;
    staged   wa_notify.capture_queue[];
    s        wa_notify.capture_queue;
    need     text;
    i        integer;
    snd      text;                          -- the sender (25_senders.sql)
    snd_err  text;
BEGIN
    -- staged captures become messages (one per event and order; a failed
    -- capture is logged as a failed message at once)
    IF wa_notify._capture_queue_damage() IS NULL THEN
        WITH d AS (
            DELETE FROM wa_notify.capture_queue q
             WHERE q.ctid = ANY (ARRAY(SELECT c.ctid FROM wa_notify.capture_queue c
                                       LIMIT max_rows FOR UPDATE SKIP LOCKED))
            RETURNING q.ctid AS pos, q.*)
        SELECT array_agg(ROW(d.watch_id, d.event, d.order_key, d.source_row, d.error,
                             d.captured_at)::wa_notify.capture_queue ORDER BY d.captured_at, d.pos)
          INTO staged FROM d;
        IF staged IS NOT NULL THEN
            BEGIN
                PERFORM wa_notify._stage_messages(staged);
            EXCEPTION WHEN OTHERS THEN
                -- a row breaks the batch: each on its own, the culprit failed
                FOREACH s IN ARRAY staged LOOP
                    BEGIN
                        PERFORM wa_notify._stage_messages(ARRAY[s]);
                    EXCEPTION WHEN OTHERS THEN
                        err := SQLERRM;
                        BEGIN
                            INSERT INTO wa_notify.message (event, watch_id, created_at, status,
                                                           error_message, failed_at, resolved_at)
                            VALUES (s.event, s.watch_id, s.captured_at, 'failed',
                                    format('the capture could not be recorded: %s (order key %s)',
                                           err, left(s.order_key, 64)), now(), now());
                        EXCEPTION WHEN OTHERS THEN
                            RAISE WARNING 'wa_notify dropped a capture of % that could not be recorded: %', s.event, err;
                        END;
                    END;
                END LOOP;
            END;
        END IF;
    END IF;

    FOR m IN
        SELECT msg.id, msg.event, msg.order_key, msg.source_row, msg.watch_id,
               e.enabled, e.params AS tparams, e.button_param, e.template_name
          FROM wa_notify.message msg JOIN wa_notify.event e ON e.event = msg.event
         WHERE msg.resolved_at IS NULL AND msg.watch_id IS NOT NULL
         ORDER BY msg.id
         LIMIT max_rows
           FOR UPDATE OF msg SKIP LOCKED
    LOOP
        ctx := NULL; raw := NULL; ph := NULL; err := NULL; skip := NULL; snd := NULL; snd_err := NULL;
        BEGIN
            ctx := wa_notify._context_row(m.watch_id, m.order_key, m.source_row);
            IF octet_length(ctx::text) > wa_notify._max_context_bytes() THEN
                err := format('the context row is %s bytes, over the %s bytes wa_notify keeps as params',
                              octet_length(ctx::text), wa_notify._max_context_bytes());
                ctx := NULL;
                RAISE EXCEPTION USING ERRCODE = 'WA005';
            END IF;
            raw := ctx ->> 'phone';
            -- the sender a "sender" column names (25_senders.sql)
            SELECT c.sender, c.error INTO snd, snd_err FROM wa_notify._context_sender(ctx) c;
            IF snd_err IS NOT NULL THEN
                err := snd_err;
            ELSIF raw IS NULL OR btrim(raw) = '' THEN
                err := format('context returned no phone for order %s', m.order_key);
            ELSE
                BEGIN
                    ph := wa_notify.normalize_phone(raw, cc);
                EXCEPTION WHEN invalid_parameter_value THEN
                    GET STACKED DIAGNOSTICS det = PG_EXCEPTION_DETAIL;
                    err := format('invalid phone number "%s": %s%s', raw, lower(left(det, 1)),
                                  rtrim(substr(det, 2), '.'));
                END;
            END IF;
        EXCEPTION
            WHEN SQLSTATE 'WA005' THEN
                NULL;
            WHEN SQLSTATE 'WA006' THEN
                -- wa_notify_context lacks a grant: left unresolved until the
                -- admin grants it (watches.problem and the status card say which)
                CONTINUE;
            WHEN OTHERS THEN
                err := SQLERRM;
        END;

        -- disabled event or blacklisted phone: the rule _claim applies too
        skip := wa_notify._skip_reason(m.event, CASE WHEN err IS NULL THEN ph END);
        IF skip IS NULL AND err IS NULL THEN
            IF use_tmpl AND m.template_name IS NOT NULL THEN
                -- a template parameter without a value would be refused by Meta
                FOR i IN 1 .. coalesce(cardinality(m.tparams), 0) LOOP
                    need := m.tparams[i];
                    IF need <> 'tracking_url' AND nullif(ctx ->> need, '') IS NULL THEN
                        err := format('context returned no %s for order %s (template %s parameter {{%s}})',
                                      need, m.order_key, m.template_name, i);
                        EXIT;
                    END IF;
                END LOOP;
                IF err IS NULL AND m.button_param IS NOT NULL AND m.button_param <> 'tracking_url'
                   AND nullif(ctx ->> m.button_param, '') IS NULL THEN
                    err := format('context returned no %s for order %s (template %s URL button)',
                                  m.button_param, m.order_key, m.template_name);
                END IF;
            END IF;
        END IF;

        BEGIN
            UPDATE wa_notify.message SET
               phone = ph,
               params = ctx,
               sender = CASE WHEN snd_err IS NULL THEN coalesce(snd, 'default') ELSE 'default' END,
               tracking = ctx ->> 'tracking_number',
               resolved_at = now(),
               updated_at = now(),
               status = CASE WHEN skip IS NOT NULL THEN 'skipped'
                             WHEN err IS NOT NULL THEN 'failed' ELSE status END,
               error_message = coalesce(skip, err),
               failed_at = CASE WHEN skip IS NULL AND err IS NOT NULL THEN now() END
         WHERE id = m.id;
        EXCEPTION WHEN OTHERS THEN
            -- the result cannot be stored (a huge value, a broken index): that message fails
            err := SQLERRM;
            UPDATE wa_notify.message SET
                   resolved_at = now(), updated_at = now(), status = 'failed', failed_at = now(),
                   error_message = format('the context''s result could not be stored: %s', err)
             WHERE id = m.id;
        END;
        n := n + 1;
    END LOOP;
    RETURN n;
END $$;

-------------------------------------------------------------------------------
-- the watches view: what is wrong with each watch, last
-------------------------------------------------------------------------------
CREATE OR REPLACE VIEW wa_notify.watches AS
    SELECT w.id, w.event, to_regclass(w.source) AS source, w.order_key, w.fires_when,
           w.context, w.created_at, w.owner, wa_notify._watch_problem(w.id) AS problem
      FROM wa_notify.watch w;
COMMENT ON VIEW wa_notify.watches IS
    'capture mappings: which table feeds which event (owner: the role that called watch(); problem: what no longer fits)';

-------------------------------------------------------------------------------
-- 1.0 watches: the recorded search path becomes a list of schemas
-- ("$user" the watch owner's schema), and the 1.0 triggers (one per watch
-- and event kind, fires_when in a WHEN clause that names the table's
-- columns) are attached again the 1.1 way (same key, same row).
-------------------------------------------------------------------------------
UPDATE wa_notify.watch w
   SET search_path = coalesce((
        SELECT string_agg(CASE WHEN btrim(p.s) IN ('"$user"', '$user') THEN quote_ident(w.owner)
                               ELSE btrim(p.s) END, ', ' ORDER BY p.pos)
          FROM unnest(string_to_array(w.search_path, ',')) WITH ORDINALITY AS p(s, pos)
         WHERE btrim(p.s) NOT IN ('pg_catalog', 'pg_temp', '')), '');

-- every table with a 1.0 capture trigger: its watches into the table's
-- two capture triggers
DO $$
DECLARE
    rel regclass;
BEGIN
    FOR rel IN
        SELECT DISTINCT tg.tgrelid::regclass FROM pg_catalog.pg_trigger tg
         WHERE tg.tgfoid = 'wa_notify._capture()'::regprocedure AND tg.tgnargs = 5
           AND tg.tgparentid = 0
    LOOP
        PERFORM wa_notify._capture_rebuild(rel, NULL, NULL, NULL);
    END LOOP;
END $$;

-------------------------------------------------------------------------------
-- privileges: like 1.0's, nothing new for PUBLIC but what a view calls
-- (_capture_queue_damage, _watch_problem, granted above); the admin's EXECUTE ON ALL FUNCTIONS (doc/roles.md) is
-- granted again after the update
-------------------------------------------------------------------------------
REVOKE ALL ON FUNCTION wa_notify._context_timeout(), wa_notify._max_context_bytes(),
                       wa_notify._context_exec(text, text, text, jsonb, integer),
                       wa_notify._context_explain(text, text, integer),
                       wa_notify._expr_check(regclass, text, text, text, boolean),
                       wa_notify._trigger_args(bytea), wa_notify._capture_entries(regclass),
                       wa_notify._capture_rebuild(regclass, bigint, text[], text[]),
                       wa_notify._watch_attach(regclass, bigint, text[], text[]),
                       wa_notify._stage_messages(wa_notify.capture_queue[])
       FROM PUBLIC;
