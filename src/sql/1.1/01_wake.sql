-- 01_wake.sql: waking the worker (src/wake.c owns the rule).
--
-- 1.0 woke the worker from a statement trigger on every INSERT into
-- wa_notify.message, including the worker's own (usually empty) INSERT ...
-- SELECT of each cycle, so an idle worker woke itself without end.  Now a
-- row trigger wakes it only for a row that is really queued, and the C side
-- ignores the worker's own transactions altogether.

DROP TRIGGER wake_worker ON wa_notify.message;
DROP TRIGGER wake_worker ON wa_notify.setting;
DROP TRIGGER wake_worker ON wa_notify.event;
DROP FUNCTION wa_notify._wake_at_commit();

CREATE FUNCTION wa_notify._wake_trigger() RETURNS trigger
    AS 'MODULE_PATHNAME', 'wa_notify_wake_trigger' LANGUAGE C;
COMMENT ON FUNCTION wa_notify._wake_trigger() IS
    'internal: wake the worker when the transaction commits';

-- a message inserted (or set back) 'queued' by hand, resend(), a setting or
-- an event changed
CREATE TRIGGER wake_worker AFTER INSERT OR UPDATE OF status ON wa_notify.message
    FOR EACH ROW WHEN (NEW.status = 'queued') EXECUTE FUNCTION wa_notify._wake_trigger();
CREATE TRIGGER wake_worker AFTER INSERT OR UPDATE OR DELETE ON wa_notify.setting
    FOR EACH STATEMENT EXECUTE FUNCTION wa_notify._wake_trigger();
CREATE TRIGGER wake_worker AFTER UPDATE ON wa_notify.event
    FOR EACH STATEMENT EXECUTE FUNCTION wa_notify._wake_trigger();

-- this database's worker's facts in shared memory (NULLs when the library
-- is not preloaded), and what the launcher says of its service ('served',
-- 'unserved: ...' beyond wa_notify.max_databases, NULL: no worker now)
CREATE FUNCTION wa_notify._worker_shared(OUT pid integer, OUT started_at timestamptz,
                                         OUT starts bigint, OUT wakeups bigint,
                                         OUT wakes_seen bigint, OUT service text)
    AS 'MODULE_PATHNAME', 'wa_notify_worker_shared' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION wa_notify._worker_shared() IS
    'internal: this database''s worker: pid, start, starts, wake-ups sent and handled, service';
