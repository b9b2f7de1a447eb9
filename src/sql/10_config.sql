-- 10_config.sql: configuration functions, blacklist, carriers, reporting views.

-------------------------------------------------------------------------------
-- blacklist (internal upsert shared by block(), the dispatcher and webhooks)
-------------------------------------------------------------------------------
CREATE FUNCTION wa_notify._blacklist(phone text, reason text, source text, error_code integer DEFAULT NULL)
RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog, wa_notify AS $$
DECLARE
    e164 text := wa_notify.normalize_phone(phone,
                    (SELECT value FROM wa_notify.setting WHERE name = 'default_country_code'));
BEGIN
    INSERT INTO wa_notify.blocked AS b (phone_key, phone, reason, source, error_code)
    VALUES (wa_notify.phone_key(e164), e164, reason, source, error_code)
    ON CONFLICT (phone_key) DO UPDATE
       SET reason = EXCLUDED.reason, source = EXCLUDED.source,
           error_code = EXCLUDED.error_code, created_at = now();
END $$;

CREATE FUNCTION wa_notify.is_blocked(phone text) RETURNS boolean
LANGUAGE sql STABLE SET search_path = pg_catalog, wa_notify AS $$
    SELECT EXISTS (SELECT 1 FROM wa_notify.blocked WHERE phone_key = wa_notify.phone_key(phone))
$$;
