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

-- sync_templates() is redefined once, in 40_cloud_api.sql (it reads the 1.1
-- template fields), SECURITY DEFINER like check_connection() here.
