-- 20_capture.sql: capture (watch/unwatch/watches), context resolution,
-- rendering, preview and resend.  See doc/capture.md.

-------------------------------------------------------------------------------
-- rendering (render.c)
-------------------------------------------------------------------------------
-- The exact JSON body POSTed to {base}/{version}/{phone_number_id}/messages.
CREATE FUNCTION wa_notify._render(event text, phone text, params jsonb, message_id bigint)
    RETURNS jsonb AS 'MODULE_PATHNAME', 'wa_notify_render' LANGUAGE C STABLE;
COMMENT ON FUNCTION wa_notify._render(text, text, jsonb, bigint) IS
    'request body of one message (template or text); message_id NULL leaves out biz_opaque_callback_data';

CREATE FUNCTION wa_notify._tracking_url(carrier text, tracking text)
    RETURNS text AS 'MODULE_PATHNAME', 'wa_notify_tracking_url' LANGUAGE C STABLE;
COMMENT ON FUNCTION wa_notify._tracking_url(text, text) IS
    'tracking URL: the carrier''s pattern (case-insensitive), else default_tracking_url; the number URL-encoded';

-- SPEC section 6: the URL a customer gets (NULL without a tracking number, or
-- when neither the carrier nor default_tracking_url has a pattern)
CREATE FUNCTION wa_notify.tracking_url(carrier text, tracking text) RETURNS text
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, wa_notify AS $$
    SELECT wa_notify._tracking_url(carrier, nullif(btrim(tracking), ''))
$$;

CREATE FUNCTION wa_notify._format_money(amount text)
    RETURNS text AS 'MODULE_PATHNAME', 'wa_notify_format_money' LANGUAGE C IMMUTABLE STRICT;
COMMENT ON FUNCTION wa_notify._format_money(text) IS
    'pt_BR money text (1.234,56) of a decimal number; other text unchanged';

-------------------------------------------------------------------------------
-- watches (capture.c holds the trigger and the validation helpers)
-------------------------------------------------------------------------------
CREATE TABLE wa_notify.watch (
    id          bigserial PRIMARY KEY,
    event       text NOT NULL REFERENCES wa_notify.event (event),
    -- the watched table as a schema-qualified, quoted name (not regclass:
    -- reg* columns would block pg_upgrade); the view shows it as regclass
    source      text NOT NULL,
    order_key   text NOT NULL,
    fires_when  text,
    context     text NOT NULL,
    search_path text NOT NULL,          -- the admin's, at watch(): the context runs with it
    -- the role that called watch() (current_user): the context runs as it.
    -- A name, not an oid: it survives pg_dump/restore into another cluster.
    owner       name NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (event, source)
);
SELECT pg_catalog.pg_extension_config_dump('wa_notify.watch', '');
SELECT pg_catalog.pg_extension_config_dump('wa_notify.watch_id_seq', '');

-- Captures staged by the trigger in the shop's transaction, moved into
-- wa_notify.message by _resolve_pending() after commit.  No index, no
-- trigger, no constraint beyond NOT NULL: the trigger appends with a direct
-- heap insert (capture.c checks this shape).  A restore keeps what was
-- staged but not yet moved.
CREATE TABLE wa_notify.capture_queue (
    watch_id    bigint NOT NULL,
    event       text NOT NULL,
    order_key   text,                 -- NULL: see error
    source_row  jsonb,                -- the row, or the columns the context reads of $2, or NULL
    error       text,                 -- the order key could not be computed
    captured_at timestamptz NOT NULL  -- the shop's transaction start (now())
);
SELECT pg_catalog.pg_extension_config_dump('wa_notify.capture_queue', '');

CREATE FUNCTION wa_notify._capture() RETURNS trigger
    AS 'MODULE_PATHNAME', 'wa_notify_capture' LANGUAGE C;

CREATE FUNCTION wa_notify._expr_info(source regclass, expr text, what text,
                                     OUT type regtype, OUT has_sublink boolean,
                                     OUT qualified text, OUT new_expr text, OUT old_expr text)
    AS 'MODULE_PATHNAME', 'wa_notify_expr_info' LANGUAGE C VOLATILE STRICT;

CREATE FUNCTION wa_notify._context_columns(context text) RETURNS text[]
    AS 'MODULE_PATHNAME', 'wa_notify_context_columns' LANGUAGE C VOLATILE STRICT;

-- capture_priv.c: the privilege gate (checks the CALLER, then writes the
-- watch row as the extension's owner) and the context run as the watch's
-- role.  None is SECURITY DEFINER: a direct call is no way around the checks.
CREATE FUNCTION wa_notify._watch_check(source regclass, unwatch boolean) RETURNS void
    AS 'MODULE_PATHNAME', 'wa_notify_watch_check' LANGUAGE C VOLATILE STRICT;

CREATE FUNCTION wa_notify._watch_store(event text, source regclass, order_key text,
                                       fires_when text, context text, search_path text)
    RETURNS bigint AS 'MODULE_PATHNAME', 'wa_notify_watch_store' LANGUAGE C VOLATILE;

CREATE FUNCTION wa_notify._context_exec(role name, search_path text, context text,
                                        order_key text, source_row jsonb)
    RETURNS jsonb[] AS 'MODULE_PATHNAME', 'wa_notify_context_exec' LANGUAGE C VOLATILE;

CREATE VIEW wa_notify.watches AS
    SELECT w.id, w.event, to_regclass(w.source) AS source, w.order_key, w.fires_when,
           w.context, w.created_at, w.owner
      FROM wa_notify.watch w;
COMMENT ON VIEW wa_notify.watches IS 'capture mappings: which table feeds which event (owner: the role its context runs as)';

CREATE FUNCTION wa_notify._drop_watch_triggers(source regclass, watch_id bigint)
RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog, wa_notify AS $$
DECLARE
    t name;
BEGIN
    FOR t IN SELECT tg.tgname FROM pg_trigger tg
              WHERE tg.tgrelid = source AND NOT tg.tgisinternal
                AND tg.tgfoid = 'wa_notify._capture()'::regprocedure
                AND tg.tgnargs = 5
                AND split_part(encode(tg.tgargs, 'escape'), '\000', 1) = watch_id::text
    LOOP
        EXECUTE format('DROP TRIGGER %I ON %s', t, source);
    END LOOP;
END $$;

-- No SET search_path here: names in the mapping resolve with the admin's
-- search path (recorded for the context; expressions are stored deparsed,
-- schema-qualified).
CREATE FUNCTION wa_notify.watch(event text, source regclass, order_key text, context text,
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
    when_ins text := '';
    keep_row text;                 -- '-', 'j' or 'c<columns>': what of the row to stage for $2
    cols     text[];
    key_col  name;                 -- order_key is this column
    alias    text;
    keysql   text;
    wid      bigint;
    trg      text;
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
        IF NOT fw_query THEN
            when_ins := format('WHEN ((%s) IS TRUE)', fwinfo.new_expr);
        END IF;
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
    -- The context will run as the caller: it must be allowed to read what
    -- the context reads and call what it calls.  EXPLAIN checks exactly that
    -- (the executor's permission checks) without running the query; other
    -- errors are left to the run.
    BEGIN
        EXECUTE 'EXPLAIN (COSTS OFF) ' || ctx USING NULL::text, NULL::jsonb;
    EXCEPTION
        WHEN insufficient_privilege THEN
            RAISE EXCEPTION 'invalid context query: %', SQLERRM
                USING ERRCODE = 'insufficient_privilege',
                      DETAIL = format('The context runs as the role that calls watch(), %s.', quote_ident(current_user)),
                      HINT = 'Grant that role what the context needs (SELECT on its tables, EXECUTE on its functions), or call watch() as a role that has it.';
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
    wid := wa_notify._watch_store(ev, source, ok, fw, ctx, pg_catalog.current_setting('search_path'));

    IF NOT fw_query THEN
        -- the transition is the trigger's WHEN clause; the key a column or a query
        IF key_col IS NOT NULL THEN
            keysql := NULL;
        ELSE
            keysql := format('SELECT (%s)::text FROM (SELECT ($1).*) AS %s', okinfo.qualified, alias);
        END IF;
        trg := format('wa_notify_%s_%s_ins', wid, ev);
        EXECUTE format('CREATE TRIGGER %I AFTER INSERT ON %s FOR EACH ROW %s EXECUTE FUNCTION wa_notify._capture(%L, %L, %L, %L, %L)',
                       trg, source,
                       when_ins,
                       wid, ev, CASE WHEN keysql IS NULL THEN 'k' ELSE 'e' END,
                       coalesce(keysql, quote_ident(key_col)), keep_row);
        IF fw IS NOT NULL THEN
            trg := format('wa_notify_%s_%s_upd', wid, ev);
            EXECUTE format('CREATE TRIGGER %I AFTER UPDATE ON %s FOR EACH ROW WHEN ((%s) IS TRUE AND (%s) IS NOT TRUE) EXECUTE FUNCTION wa_notify._capture(%L, %L, %L, %L, %L)',
                           trg, source, fwinfo.new_expr, fwinfo.old_expr,
                           wid, ev, CASE WHEN keysql IS NULL THEN 'k' ELSE 'e' END,
                           coalesce(keysql, quote_ident(key_col)), keep_row);
        END IF;
    ELSE
        -- fires_when holds a subquery: decided by the trigger's cached query
        keysql := format('SELECT (%s)::text FROM (SELECT ($1).*) AS %s WHERE (%s) IS TRUE',
                         okinfo.qualified, alias, fwinfo.qualified);
        EXECUTE format('CREATE TRIGGER %I AFTER INSERT ON %s FOR EACH ROW EXECUTE FUNCTION wa_notify._capture(%L, %L, %L, %L, %L)',
                       format('wa_notify_%s_%s_ins', wid, ev), source, wid, ev, 'e', keysql, keep_row);
        keysql := keysql || format(' AND (SELECT (%s) FROM (SELECT ($2).*) AS %s) IS NOT TRUE',
                                   fwinfo.qualified, alias);
        EXECUTE format('CREATE TRIGGER %I AFTER UPDATE ON %s FOR EACH ROW EXECUTE FUNCTION wa_notify._capture(%L, %L, %L, %L, %L)',
                       format('wa_notify_%s_%s_upd', wid, ev), source, wid, ev, 'e', keysql, keep_row);
    END IF;
    RETURN wid;
END $$;
COMMENT ON FUNCTION wa_notify.watch(text, regclass, text, text, text) IS
    'attach capture of one event to a shop table (replaces the watch of the same event and table)';

-- Run by _watch_store as the extension's owner: upsert the watch row and
-- drop the watch's previous triggers.  (Called directly by anyone else it
-- fails: writing wa_notify.watch needs more than the admin role has.)
CREATE FUNCTION wa_notify._watch_upsert(event text, source regclass, order_key text,
                                        fires_when text, context text, search_path text,
                                        owner name)
RETURNS bigint LANGUAGE plpgsql SET search_path = pg_catalog, wa_notify AS $$
DECLARE
    wid bigint;
BEGIN
    INSERT INTO wa_notify.watch AS w (event, source, order_key, fires_when, context, search_path, owner)
    SELECT _watch_upsert.event, format('%I.%I', n.nspname, c.relname), _watch_upsert.order_key,
           _watch_upsert.fires_when, _watch_upsert.context, _watch_upsert.search_path, _watch_upsert.owner
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.oid = _watch_upsert.source
    ON CONFLICT ON CONSTRAINT watch_event_source_key DO UPDATE
       SET order_key = EXCLUDED.order_key, fires_when = EXCLUDED.fires_when,
           context = EXCLUDED.context, search_path = EXCLUDED.search_path,
           owner = EXCLUDED.owner, updated_at = now()
    RETURNING w.id INTO wid;
    PERFORM wa_notify._drop_watch_triggers(source, wid);
    RETURN wid;
END $$;

-- Checks the caller (TRIGGER on the table, or member of its owner role),
-- then runs _unwatch_drop as the extension's owner.
CREATE FUNCTION wa_notify.unwatch(event text, source regclass)
    RETURNS boolean AS 'MODULE_PATHNAME', 'wa_notify_unwatch' LANGUAGE C VOLATILE STRICT;
COMMENT ON FUNCTION wa_notify.unwatch(text, regclass) IS
    'remove the capture of one event from a table (drops its triggers); false when there was none';

CREATE FUNCTION wa_notify._unwatch_drop(event text, source regclass)
RETURNS boolean LANGUAGE plpgsql SET search_path = pg_catalog, wa_notify AS $$
DECLARE
    wid bigint;
    found_any boolean := false;
BEGIN
    -- by the triggers on the table (robust to a renamed table) and by name
    FOR wid IN
        SELECT split_part(encode(tg.tgargs, 'escape'), '\000', 1)::bigint
          FROM pg_trigger tg
         WHERE tg.tgrelid = source AND tg.tgfoid = 'wa_notify._capture()'::regprocedure
           AND tg.tgnargs = 5 AND split_part(encode(tg.tgargs, 'escape'), '\000', 2) = _unwatch_drop.event
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

-------------------------------------------------------------------------------
-- context resolution (after commit, by the worker every cycle)
-------------------------------------------------------------------------------
-- The order context of one message: the watch's context query run with
-- ($1 order key, $2 source row), as the watch's role (never as the worker's
-- superuser) with the search path recorded at watch() time.  Raises a clear
-- error when the query fails or returns no row or several rows, when the
-- watch or its role is gone, or when the caller (preview() by another
-- admin) lacks the privileges of the watch's role.
CREATE FUNCTION wa_notify._context_row(watch_id bigint, order_key text, source_row jsonb)
RETURNS jsonb LANGUAGE plpgsql SET search_path = pg_catalog, wa_notify AS $$
DECLARE
    ctx  text;
    path text;
    own  name;
    rows jsonb[];
BEGIN
    SELECT w.context, w.search_path, w.owner INTO ctx, path, own FROM wa_notify.watch w WHERE w.id = watch_id;
    IF ctx IS NULL THEN
        RAISE EXCEPTION 'watch % no longer exists', watch_id USING ERRCODE = 'undefined_object';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles r WHERE r.rolname = own) THEN
        RAISE EXCEPTION 'role "%" of watch % no longer exists', own, watch_id
            USING ERRCODE = 'undefined_object',
                  HINT = 'The context runs as the role that called watch(): call wa_notify.watch() again as an existing role.';
    END IF;
    IF NOT pg_has_role(own, 'USAGE') THEN
        RAISE EXCEPTION 'permission denied to run the context of watch % as role "%"', watch_id, own
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'The context runs as the role that called watch(); only that role and its members can preview it.';
    END IF;
    BEGIN
        rows := wa_notify._context_exec(own, path, ctx, order_key, source_row);
    EXCEPTION WHEN OTHERS THEN
        RAISE EXCEPTION 'context query failed: %', SQLERRM USING ERRCODE = 'WA001';
    END;
    IF rows IS NULL THEN
        RAISE EXCEPTION 'context query returned no row for order %', order_key USING ERRCODE = 'WA002';
    ELSIF cardinality(rows) > 1 THEN
        RAISE EXCEPTION 'context query returned more than one row for order %', order_key USING ERRCODE = 'WA003';
    END IF;
    RETURN rows[1];
END $$;

-- Move staged captures into wa_notify.message, then resolve captured
-- messages: context -> phone, params, tracking; skip or fail with the reason.  Each message is isolated (its own subtransaction,
-- which writes nothing).  Returns how many messages it resolved.
CREATE FUNCTION wa_notify._resolve_pending(max_rows integer DEFAULT 1000)
RETURNS integer LANGUAGE plpgsql SET search_path = pg_catalog, wa_notify AS $$
DECLARE
    m        record;
    n        integer := 0;
    cc       text := (SELECT value FROM wa_notify.setting WHERE name = 'default_country_code');
    use_tmpl boolean := coalesce((SELECT value FROM wa_notify.setting WHERE name = 'use_templates'), 'true') = 'true';
    ctx      jsonb;
    raw      text;
    ph       text;
    err      text;
    det      text;
    skip     text;
    blk      record;
    need     text;
    i        integer;
BEGIN
    -- staged captures become messages (one per event and order; a failed
    -- order key is logged as a failed message at once)
    WITH staged AS (
        DELETE FROM wa_notify.capture_queue q
         WHERE q.ctid = ANY (ARRAY(SELECT c.ctid FROM wa_notify.capture_queue c
                                   LIMIT max_rows FOR UPDATE SKIP LOCKED))
        RETURNING q.ctid AS pos, q.*)
    INSERT INTO wa_notify.message AS msg (event, order_key, watch_id, source_row, created_at,
                                          status, error_message, failed_at, resolved_at)
    SELECT s.event, s.order_key, s.watch_id, s.source_row, s.captured_at,
           CASE WHEN s.error IS NULL THEN 'queued' ELSE 'failed' END, s.error,
           CASE WHEN s.error IS NOT NULL THEN now() END,
           CASE WHEN s.error IS NOT NULL THEN now() END
      FROM staged s
     ORDER BY s.captured_at, s.pos
    ON CONFLICT (event, order_key) WHERE resend_of IS NULL AND order_key IS NOT NULL DO NOTHING;

    FOR m IN
        SELECT msg.id, msg.event, msg.order_key, msg.source_row, msg.watch_id,
               e.enabled, e.params AS tparams, e.button_param, e.template_name
          FROM wa_notify.message msg JOIN wa_notify.event e ON e.event = msg.event
         WHERE msg.resolved_at IS NULL AND msg.watch_id IS NOT NULL
         ORDER BY msg.id
         LIMIT max_rows
           FOR UPDATE OF msg SKIP LOCKED
    LOOP
        ctx := NULL; raw := NULL; ph := NULL; err := NULL; skip := NULL;
        BEGIN
            ctx := wa_notify._context_row(m.watch_id, m.order_key, m.source_row);
            raw := ctx ->> 'phone';
            IF raw IS NULL OR btrim(raw) = '' THEN
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
        EXCEPTION WHEN OTHERS THEN
            err := SQLERRM;
        END;

        IF NOT m.enabled THEN
            skip := format('event %s is disabled', m.event);
        ELSIF err IS NULL THEN
            SELECT b.reason, b.source INTO blk FROM wa_notify.blocked b
             WHERE b.phone_key = wa_notify.phone_key(ph);
            IF FOUND THEN
                skip := format('phone %s is blacklisted (%s%s)', ph, blk.source,
                               coalesce(': ' || blk.reason, ''));
            ELSIF use_tmpl AND m.template_name IS NOT NULL THEN
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

        UPDATE wa_notify.message SET
               phone = ph,
               params = ctx,
               tracking = ctx ->> 'tracking_number',
               resolved_at = now(),
               updated_at = now(),
               status = CASE WHEN skip IS NOT NULL THEN 'skipped'
                             WHEN err IS NOT NULL THEN 'failed' ELSE status END,
               error_message = coalesce(skip, err),
               failed_at = CASE WHEN skip IS NULL AND err IS NOT NULL THEN now() END
         WHERE id = m.id;
        n := n + 1;
    END LOOP;
    RETURN n;
END $$;
COMMENT ON FUNCTION wa_notify._resolve_pending(integer) IS
    'run the context of captured messages: phone, params, skip or fail (the worker calls it every cycle)';

-------------------------------------------------------------------------------
-- preview and resend
-------------------------------------------------------------------------------
-- The exact body the worker will POST for (event, order_key):
--  * a message exists: its phone and params (resolved now if still pending),
--    its id as biz_opaque_callback_data;
--  * none yet: the event's watches' contexts (in id order, the first that
--    returns a row) with $2 = NULL; no biz_opaque_callback_data (no id yet).
CREATE FUNCTION wa_notify.preview(event text, order_key text)
RETURNS jsonb LANGUAGE plpgsql STABLE SET search_path = pg_catalog, wa_notify AS $$
DECLARE
    m   record;
    w   record;
    ctx jsonb;
    cc  text := (SELECT value FROM wa_notify.setting WHERE name = 'default_country_code');
BEGIN
    IF NOT EXISTS (SELECT 1 FROM wa_notify.event e WHERE e.event = preview.event) THEN
        RAISE EXCEPTION 'unknown event "%"', preview.event USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT msg.* INTO m FROM wa_notify.message msg
     WHERE msg.event = preview.event AND msg.order_key = preview.order_key
     ORDER BY msg.id DESC LIMIT 1;
    IF FOUND THEN
        IF m.watch_id IS NULL OR m.resolved_at IS NOT NULL THEN
            RETURN wa_notify._render(m.event, m.phone, m.params, m.id);
        END IF;
        ctx := wa_notify._context_row(m.watch_id, m.order_key, m.source_row);
        RETURN wa_notify._render(m.event, wa_notify.normalize_phone(ctx ->> 'phone', cc), ctx, m.id);
    END IF;
    FOR w IN SELECT wt.id FROM wa_notify.watch wt WHERE wt.event = preview.event ORDER BY wt.id LOOP
        BEGIN
            ctx := wa_notify._context_row(w.id, preview.order_key, NULL);
        EXCEPTION WHEN SQLSTATE 'WA002' THEN
            CONTINUE;
        END;
        RETURN wa_notify._render(preview.event, wa_notify.normalize_phone(ctx ->> 'phone', cc), ctx, NULL);
    END LOOP;
    RAISE EXCEPTION 'no message and no context for event % and order %', preview.event, preview.order_key
        USING ERRCODE = 'no_data_found',
              HINT = 'Watch a table for this event first, or preview with sample values: wa_notify.preview(event, ''{"phone": ...}''::jsonb).';
END $$;
COMMENT ON FUNCTION wa_notify.preview(text, text) IS
    'the exact JSON body that would be sent for this event and order';

-- With sample values: params as a context row would give them (phone included).
CREATE FUNCTION wa_notify.preview(event text, params jsonb)
RETURNS jsonb LANGUAGE plpgsql STABLE SET search_path = pg_catalog, wa_notify AS $$
DECLARE
    cc  text := (SELECT value FROM wa_notify.setting WHERE name = 'default_country_code');
BEGIN
    IF NOT EXISTS (SELECT 1 FROM wa_notify.event e WHERE e.event = preview.event) THEN
        RAISE EXCEPTION 'unknown event "%"', preview.event USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF params ->> 'phone' IS NULL THEN
        RAISE EXCEPTION 'sample values need a "phone"' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN wa_notify._render(preview.event, wa_notify.normalize_phone(params ->> 'phone', cc), params, NULL);
END $$;
COMMENT ON FUNCTION wa_notify.preview(text, jsonb) IS
    'the JSON body an event''s message would have with these sample values';

-- Queue a message again: a new row with resend_of = the original (the log
-- keeps both).  A captured message is resolved again (the context runs anew,
-- so a corrected phone or address is used); any other copies phone, params
-- and tracking.
CREATE FUNCTION wa_notify.resend(message_id bigint)
RETURNS bigint LANGUAGE plpgsql SET search_path = pg_catalog, wa_notify AS $$
DECLARE
    m   wa_notify.message;
    nid bigint;
    live boolean;
BEGIN
    SELECT * INTO m FROM wa_notify.message WHERE id = message_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'message % does not exist', message_id USING ERRCODE = 'no_data_found';
    END IF;
    IF m.status IN ('queued', 'sending') THEN
        RAISE EXCEPTION 'message % is still %', message_id, m.status
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Only a message that was sent, failed, skipped, expired or is under review can be resent.';
    END IF;
    SELECT r.id INTO nid FROM wa_notify.message r
     WHERE r.event = m.event AND r.order_key IS NOT DISTINCT FROM m.order_key
       AND r.resend_of IS NOT NULL AND r.status IN ('queued', 'sending') LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'a resend of this message is already queued (message %)', nid
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    live := m.watch_id IS NOT NULL AND EXISTS (SELECT 1 FROM wa_notify.watch w WHERE w.id = m.watch_id);
    INSERT INTO wa_notify.message (event, order_key, phone, params, tracking, status,
                                   resend_of, watch_id, source_row, resolved_at)
    VALUES (m.event, m.order_key,
            CASE WHEN live THEN NULL ELSE m.phone END,
            CASE WHEN live THEN NULL ELSE m.params END,
            CASE WHEN live THEN NULL ELSE m.tracking END,
            'queued', m.id,
            CASE WHEN live THEN m.watch_id END, m.source_row,
            CASE WHEN live THEN NULL ELSE now() END)
    RETURNING id INTO nid;
    PERFORM wa_notify.wake();
    RETURN nid;
END $$;
COMMENT ON FUNCTION wa_notify.resend(bigint) IS
    'queue a message again (a new row, resend_of = the original)';
