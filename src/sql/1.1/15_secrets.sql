-- 15_secrets.sql: secrets (src/secrets.c owns the rules).
--
-- - wa_notify.secrets_file (GUC) names a server-side file holding the
--   secrets; when it is set, configure() refuses them
--   (_refuse_if_secrets_file) and every reader takes them from the file.
-- - Without the file the secrets are rows of wa_notify.setting (is_secret);
--   pg_dump leaves those rows out, and a restore says which secrets must be
--   set again (a WARNING, since a dump sets client_min_messages = warning,
--   and status.secrets_to_set).
-- - callback_key: the per-install key of the MAC in biz_opaque_callback_data,
--   generated here (at CREATE EXTENSION and at the update from 1.0).
-- - A NOTICE when DROP EXTENSION wa_notify runs while messages are queued.

CREATE FUNCTION wa_notify._secret_available(name text) RETURNS boolean
    AS 'MODULE_PATHNAME', 'wa_notify_secret_available'
    LANGUAGE C STABLE STRICT SECURITY DEFINER SET search_path = pg_catalog, wa_notify;
COMMENT ON FUNCTION wa_notify._secret_available(text) IS
    'internal: whether a secret is set where it is read from (the secrets file when set, else the setting row); never its value';

CREATE FUNCTION wa_notify._refuse_if_secrets_file(setting text) RETURNS void
    AS 'MODULE_PATHNAME', 'wa_notify_refuse_if_secrets_file' LANGUAGE C VOLATILE STRICT;
COMMENT ON FUNCTION wa_notify._refuse_if_secrets_file(text) IS
    'internal: configure() calls it for each secret argument given: an error naming the file when wa_notify.secrets_file is set; else the statement is hidden from pg_stat_activity';

CREATE FUNCTION wa_notify._secrets_source() RETURNS text
    AS 'MODULE_PATHNAME', 'wa_notify_secrets_source' LANGUAGE C STABLE;
COMMENT ON FUNCTION wa_notify._secrets_source() IS
    'internal: where the secrets come from: settings, file, or file (refused: why)';

CREATE FUNCTION wa_notify._callback_data(message_id bigint) RETURNS text
    AS 'MODULE_PATHNAME', 'wa_notify_callback_data' LANGUAGE C STABLE STRICT;
COMMENT ON FUNCTION wa_notify._callback_data(bigint) IS
    'internal: the biz_opaque_callback_data of a message: its id and a MAC under callback_key';

-- functions created after 1.0's blanket REVOKE are executable by PUBLIC:
-- only the yes/no and the source stay so (the status card calls them)
REVOKE ALL ON FUNCTION wa_notify._refuse_if_secrets_file(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION wa_notify._callback_data(bigint) FROM PUBLIC;

-- the per-install callback key (hex of 32 random bytes); never dumped: a
-- restored database gets a new one, and statuses then match by wamid.
-- (Before _restore_upsert is replaced below: the new one drops secret rows.)
INSERT INTO wa_notify.setting (name, default_value, unit, is_secret, type, description, value, updated_at)
VALUES ('callback_key', NULL, NULL, true, 'secret',
        'Key of the MAC in biz_opaque_callback_data (generated at install)',
        wa_notify._random_token(32), now());

-- no secret in pg_dump output
SELECT pg_catalog.pg_extension_config_dump('wa_notify.setting', 'WHERE NOT is_secret');

-- which secrets a restore left unset (NULL: no restore happened)
ALTER TABLE wa_notify.state ADD COLUMN secrets_to_set text[];

-- Restoring a dump: CREATE EXTENSION seeds every setting and event row, then
-- the dump's rows arrive; they update the seeded rows instead of clashing.
-- The first setting row restored also records (and says in a WARNING) which
-- secrets the dump did not carry.
-- (_restore_upsert, which now drops secret rows, is redefined in
-- 90_restore.sql, after every fragment that inserts setting rows.)

-- a secret set after a restore leaves the list
CREATE FUNCTION wa_notify._secret_set_again() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, wa_notify AS $$
BEGIN
    UPDATE wa_notify.state SET secrets_to_set = array_remove(secrets_to_set, NEW.name)
     WHERE NEW.name = ANY (secrets_to_set);
    RETURN NULL;
END $$;
CREATE TRIGGER secret_set_again AFTER UPDATE OF value ON wa_notify.setting
    FOR EACH ROW WHEN (NEW.is_secret AND NEW.value IS NOT NULL AND NEW.value IS DISTINCT FROM OLD.value)
    EXECUTE FUNCTION wa_notify._secret_set_again();

-- DROP EXTENSION wa_notify while messages are queued: say so (it drops the
-- log, the blacklist and the shop's capture triggers; doc/install.md)
CREATE FUNCTION wa_notify._warn_drop_extension() RETURNS event_trigger
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
DECLARE
    queued bigint;
BEGIN
    IF current_query() !~* 'wa_notify' THEN
        RETURN;
    END IF;
    SELECT count(*) INTO queued FROM wa_notify.message WHERE status IN ('queued', 'sending');
    IF queued > 0 THEN
        RAISE NOTICE 'wa_notify: % message(s) are queued and will never be sent', queued
            USING DETAIL = 'DROP EXTENSION wa_notify drops the message log, the blacklist, the settings and, with CASCADE, the capture triggers on the shop''s tables.',
                  HINT = 'Dump wa_notify.message and wa_notify.blocked first (doc/install.md, Removing).';
    END IF;
EXCEPTION WHEN undefined_table OR insufficient_privilege THEN
    RETURN;                         -- nothing to count: nothing to say
END $$;
CREATE EVENT TRIGGER wa_notify_warn_drop ON ddl_command_start
    WHEN TAG IN ('DROP EXTENSION')
    EXECUTE FUNCTION wa_notify._warn_drop_extension();

-- the verify token comes from the file when it is set: no rotation here then
CREATE OR REPLACE FUNCTION wa_notify.rotate_verify_token() RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, wa_notify AS $$
DECLARE
    t text := wa_notify._random_token(32);
BEGIN
    PERFORM wa_notify._refuse_if_secrets_file('webhook_verify_token');
    UPDATE wa_notify.setting SET value = t, updated_at = now() WHERE name = 'webhook_verify_token';
    RETURN t;
END $$;
