-- 31_dispatch_cycle.sql: the worker's per-cycle housekeeping and the state
-- it computes (quiet hours, pause, next due time, the batch window).
--
-- Who owns what: the settings themselves reach the worker through its typed
-- snapshot (src/settings.c, read by name); this function only computes what
-- is not a setting, reading the settings it needs through
-- _setting_value() and the typed accessors (so no default is written here).
-- 1.0 returned the settings too (21 columns read back by number); its
-- signature changes, so it is dropped and created.

DROP FUNCTION wa_notify._dispatch_cycle(boolean);

CREATE FUNCTION wa_notify._dispatch_cycle(count_window boolean DEFAULT false,
    OUT quiet_until timestamptz, OUT paused_reason text, OUT paused_code integer,
    OUT pause_until timestamptz, OUT rate_factor float8,
    OUT settings_version text, OUT next_due timestamptz, OUT expired integer,
    OUT sent_in_window integer, OUT window_first timestamptz)
LANGUAGE plpgsql SET search_path = pg_catalog, wa_notify AS $$
#variable_conflict use_column
DECLARE
    st wa_notify.state;
    changed timestamptz := (SELECT max(updated_at) FROM wa_notify.setting);
    use_templates boolean := wa_notify._setting_bool('use_templates');
    lookback_days integer := wa_notify._setting_int('lookback_days');
BEGIN
    quiet_until := wa_notify._quiet_until(wa_notify._setting_value('quiet_hours_start'),
                                          wa_notify._setting_value('quiet_hours_end'),
                                          wa_notify._setting_value('timezone'));
    settings_version := changed::text;

    -- an account pause lifts when a setting changed after it (configure() also clears it)
    SELECT * INTO st FROM wa_notify.state;
    IF st.paused_reason IS NOT NULL AND changed > st.paused_at THEN
        UPDATE wa_notify.state SET paused_reason = NULL, paused_code = NULL, paused_at = NULL;
        st.paused_reason := NULL;
    END IF;
    paused_reason := st.paused_reason;
    paused_code := st.paused_code;
    pause_until := CASE WHEN st.pause_until > now() THEN st.pause_until END;
    rate_factor := st.rate_factor;

    -- lookback: older unsent messages expire
    UPDATE wa_notify.message
       SET status = 'expired', updated_at = now(), next_attempt_at = NULL,
           error_message = format('not sent within lookback_days (%s)', lookback_days)
     WHERE queued AND status = 'queued'
       AND created_at < now() - make_interval(days => lookback_days);
    GET DIAGNOSTICS expired = ROW_COUNT;

    -- templates known not approved, or proved broken: their messages wait
    IF EXISTS (SELECT 1 FROM wa_notify.event e
                WHERE e.held_reason IS NOT NULL
                   OR (use_templates AND e.template_status IN ('PENDING', 'REJECTED', 'PAUSED', 'DISABLED'))) THEN
        UPDATE wa_notify.message m
           SET held_reason = h.reason, updated_at = now()
          FROM (SELECT e.event,
                       coalesce(e.held_reason,
                                format('template %s is %s', e.template_name, e.template_status)) AS reason
                  FROM wa_notify.event e
                 WHERE e.held_reason IS NOT NULL
                    OR (use_templates AND e.template_status IN ('PENDING', 'REJECTED', 'PAUSED', 'DISABLED'))) h
         WHERE m.event = h.event AND m.queued AND m.status = 'queued'
           AND m.held_reason IS DISTINCT FROM h.reason;
    END IF;
    UPDATE wa_notify.message m
       SET held_reason = NULL, updated_at = now()
      FROM wa_notify.event e
     WHERE m.held_reason IS NOT NULL AND m.queued AND m.status = 'queued' AND e.event = m.event
       AND e.held_reason IS NULL
       AND NOT (use_templates AND e.template_status IN ('PENDING', 'REJECTED', 'PAUSED', 'DISABLED'));

    SELECT min(m.next_attempt_at) INTO next_due FROM wa_notify.message m
     WHERE m.queued AND m.status = 'queued' AND m.next_attempt_at > now() AND m.held_reason IS NULL;
    -- the per-batch window, when the worker (re)starts
    IF count_window THEN
        SELECT count(*), min(m.claimed_at) INTO sent_in_window, window_first FROM wa_notify.message m
         WHERE m.claimed_at > now() - make_interval(secs => wa_notify._setting_int('polling_interval'));
    END IF;
END $$;
COMMENT ON FUNCTION wa_notify._dispatch_cycle(boolean) IS
    'internal: the worker''s per-cycle housekeeping (expiry, holds, pause) and computed state';
REVOKE ALL ON FUNCTION wa_notify._dispatch_cycle(boolean) FROM PUBLIC;
