-- 30_dispatch_security.sql: check_connection() and sync_templates() run as
-- the extension's owner (SECURITY DEFINER, fixed search_path), so that the
-- admin role of doc/roles.md, which has EXECUTE but no right on the state
-- table, can call them; the token is looked up where secrets.c reads it
-- (the secrets file when set).  Otherwise as in 1.0.

CREATE OR REPLACE FUNCTION wa_notify.check_connection(
    OUT api_status text, OUT display_phone_number text, OUT verified_name text,
    OUT quality_rating text, OUT messaging_limit text, OUT throughput_level text,
    OUT error text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, wa_notify AS $$
#variable_conflict use_column
DECLARE
    pnid text := (SELECT value FROM wa_notify.setting WHERE name = 'phone_number_id');
    g record;
    j jsonb;
BEGIN
    IF coalesce(pnid, '') = '' OR NOT wa_notify._secret_available('access_token') THEN
        error := 'access_token and phone_number_id must be configured';
    ELSE
        SELECT * INTO g FROM wa_notify._graph_get(pnid ||
            '?fields=display_phone_number,verified_name,quality_rating,messaging_limit_tier,whatsapp_business_manager_messaging_limit,throughput');
        IF g.error IS NOT NULL THEN
            error := g.error;
        ELSE
            BEGIN
                j := g.body::jsonb;
            EXCEPTION WHEN OTHERS THEN
                j := NULL;
            END;
            IF j IS NULL OR jsonb_typeof(j) <> 'object' THEN
                error := format('HTTP %s: the answer is not JSON', g.http_status);
            ELSIF j ? 'error' THEN
                error := format('HTTP %s: Graph error %s: %s', g.http_status, j #>> '{error,code}',
                                concat_ws(': ', j #>> '{error,message}', j #>> '{error,error_data,details}'));
            ELSIF g.http_status <> 200 THEN
                error := format('HTTP %s', g.http_status);
            ELSE
                display_phone_number := j ->> 'display_phone_number';
                verified_name := j ->> 'verified_name';
                quality_rating := j ->> 'quality_rating';
                messaging_limit := coalesce(j ->> 'whatsapp_business_manager_messaging_limit',
                                            j ->> 'messaging_limit_tier');
                throughput_level := coalesce(j #>> '{throughput,level}', j ->> 'throughput');
            END IF;
        END IF;
    END IF;
    api_status := CASE WHEN error IS NULL THEN 'connected' ELSE 'disconnected' END;
    IF error IS NULL THEN
        UPDATE wa_notify.state s
           SET api_status = 'connected', last_check_at = now(), last_check_error = NULL,
               display_phone_number = check_connection.display_phone_number,
               verified_name = check_connection.verified_name,
               quality_rating = check_connection.quality_rating,
               messaging_limit = check_connection.messaging_limit,
               throughput_level = check_connection.throughput_level,
               paused_reason = NULL, paused_code = NULL, paused_at = NULL;
        PERFORM wa_notify._wake_on_commit();     -- a lifted pause: dispatch now
    ELSE
        UPDATE wa_notify.state s
           SET api_status = 'disconnected', last_check_at = now(), last_check_error = error;
    END IF;
END $$;
COMMENT ON FUNCTION wa_notify.check_connection() IS
    'check the Graph API connection now (GET the phone number); success lifts an account pause';

-------------------------------------------------------------------------------
-- template sync: GET {base}/{version}/{waba_id}/message_templates
-------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION wa_notify.sync_templates(OUT templates integer, OUT events_updated integer,
                                         OUT events_missing integer)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, wa_notify AS $$
#variable_conflict use_column
DECLARE
    waba text := (SELECT value FROM wa_notify.setting WHERE name = 'business_account_id');
    deflang text := (SELECT value FROM wa_notify.setting WHERE name = 'default_language');
    g record;
    j jsonb;
    after text := NULL;
    pages integer := 0;
    found_tpl jsonb := '{}';
    t jsonb;
    st text;
BEGIN
    IF coalesce(waba, '') = '' THEN
        RAISE EXCEPTION 'business_account_id is not configured'
              USING ERRCODE = 'object_not_in_prerequisite_state',
                    HINT = 'Set it with wa_notify.configure(business_account_id => ...).';
    END IF;
    templates := 0;
    LOOP
        SELECT * INTO g FROM wa_notify._graph_get(waba || '/message_templates?fields=name,language,status&limit=100'
                                                  || coalesce('&after=' || after, ''));
        IF g.error IS NOT NULL THEN
            RAISE EXCEPTION 'could not read message templates: %', g.error
                  USING ERRCODE = 'connection_failure';
        END IF;
        BEGIN
            j := g.body::jsonb;
        EXCEPTION WHEN OTHERS THEN
            RAISE EXCEPTION 'could not read message templates: HTTP %, the answer is not JSON', g.http_status
                  USING ERRCODE = 'connection_failure';
        END;
        IF j ? 'error' OR g.http_status <> 200 THEN
            RAISE EXCEPTION 'could not read message templates: HTTP %, Graph error %: %', g.http_status,
                  j #>> '{error,code}', concat_ws(': ', j #>> '{error,message}', j #>> '{error,error_data,details}')
                  USING ERRCODE = 'connection_failure';
        END IF;
        FOR t IN SELECT * FROM jsonb_array_elements(coalesce(j -> 'data', '[]')) LOOP
            templates := templates + 1;
            found_tpl := found_tpl || jsonb_build_object((t ->> 'name') || '/' || (t ->> 'language'),
                                                         t ->> 'status');
        END LOOP;
        pages := pages + 1;
        EXIT WHEN j #>> '{paging,next}' IS NULL OR pages >= 100;
        after := j #>> '{paging,cursors,after}';
        EXIT WHEN after IS NULL;
    END LOOP;

    events_updated := 0;
    events_missing := 0;
    FOR t IN SELECT to_jsonb(e) FROM wa_notify.event e WHERE e.template_name IS NOT NULL LOOP
        st := found_tpl ->> ((t ->> 'template_name') || '/' || coalesce(t ->> 'template_language', deflang));
        IF st IS NULL THEN
            events_missing := events_missing + 1;
            CONTINUE;
        END IF;
        st := CASE WHEN st IN ('APPROVED', 'PENDING', 'REJECTED', 'PAUSED', 'DISABLED') THEN st ELSE 'unknown' END;
        UPDATE wa_notify.event e
           SET template_status = st, template_status_at = now(),
               -- an approved template lifts a hold that a send put on it
               held_reason = CASE WHEN st = 'APPROVED' THEN NULL ELSE held_reason END,
               held_code = CASE WHEN st = 'APPROVED' THEN NULL ELSE held_code END,
               held_at = CASE WHEN st = 'APPROVED' THEN NULL ELSE held_at END
         WHERE e.event = t ->> 'event'
           AND (e.template_status IS DISTINCT FROM st OR (st = 'APPROVED' AND e.held_reason IS NOT NULL));
        IF FOUND THEN
            events_updated := events_updated + 1;
        END IF;
    END LOOP;
END $$;
COMMENT ON FUNCTION wa_notify.sync_templates() IS
    'refresh the events'' template approval statuses from the WhatsApp Business Account';
