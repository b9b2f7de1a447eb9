-- 30_dispatch_security.sql: check_connection() and sync_templates() run as
-- the extension's owner (SECURITY DEFINER, fixed search_path), so that the
-- admin role of doc/roles.md, which has EXECUTE but no right on the state
-- table, can call them; the token is looked up where secrets.c reads it
-- (the secrets file when set).  Otherwise as in 1.0.

-- 1.1: per sender (25_senders.sql); check_connection() checks 'default'.
-- Grants on the 1.0 function (a site's admin role) survive its re-creation.
SELECT pg_catalog.set_config('wa_notify_upgrade.check_grantees',
       coalesce(string_agg(DISTINCT quote_ident(r.rolname), ','), ''), true)
  FROM pg_catalog.pg_proc p, aclexplode(p.proacl) a, pg_catalog.pg_roles r
 WHERE p.oid = 'wa_notify.check_connection()'::regprocedure AND a.privilege_type = 'EXECUTE'
   AND r.oid = a.grantee AND a.grantee <> p.proowner;
DROP FUNCTION wa_notify.check_connection();
CREATE FUNCTION wa_notify.check_connection(sender text DEFAULT 'default',
    OUT api_status text, OUT display_phone_number text, OUT verified_name text,
    OUT quality_rating text, OUT messaging_limit text, OUT throughput_level text,
    OUT error text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, wa_notify AS $$
#variable_conflict use_column
DECLARE
    pnid text := (SELECT e.phone_number_id FROM wa_notify._sender_effective() e
                   WHERE e.sender = check_connection.sender);
    g record;
    j jsonb;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM wa_notify.sender s WHERE s.sender = check_connection.sender) THEN
        RAISE EXCEPTION 'there is no sender "%"', left(sender, 64)
            USING ERRCODE = 'undefined_object',
                  HINT = format('The senders are %s.', wa_notify._sender_names());
    END IF;
    IF coalesce(pnid, '') = '' OR NOT wa_notify._sender_secret_available(sender, 'access_token') THEN
        error := 'access_token and phone_number_id must be configured';
    ELSE
        -- quality rating, messaging tier (the portfolio's since October 2025)
        -- and throughput level of the sender's number
        SELECT * INTO g FROM wa_notify._graph_get(pnid ||
            '?fields=display_phone_number,verified_name,quality_rating,messaging_limit_tier,whatsapp_business_manager_messaging_limit,throughput',
            sender);
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
    PERFORM wa_notify._sender_checked(sender, error, display_phone_number, verified_name,
                                      quality_rating, messaging_limit, throughput_level);
    IF error IS NULL THEN
        PERFORM wa_notify._wake_on_commit();     -- a lifted pause: dispatch now
    END IF;
END $$;
COMMENT ON FUNCTION wa_notify.check_connection(text) IS
    'check a sender''s Graph API connection now (GET its phone number: quality, tier, throughput); success lifts its account pause';
DO $$
DECLARE
    g text;
BEGIN
    FOREACH g IN ARRAY string_to_array(current_setting('wa_notify_upgrade.check_grantees'), ',') LOOP
        EXECUTE format('GRANT EXECUTE ON FUNCTION wa_notify.check_connection(text) TO %s', g);
    END LOOP;
END $$;

-- sync_templates() is redefined once, in 40_cloud_api.sql (it reads the 1.1
-- template fields), SECURITY DEFINER like check_connection() here.
