-- 25_senders.sql -- PROVISIONAL (webhook branch, issue 12).
--
-- THIS FILE IS A STAND-IN.  The senders helper owns src/sql/1.1/25_senders.sql
-- (the wa_notify.sender table, configure_sender(), the senders view, ...);
-- at merge the lead keeps that version and drops this one.  The webhook
-- branch needs only the minimal surface below, with the pinned shapes of
-- BRIEF.md, so that webhooks can be routed per sender:
--   - wa_notify.sender (sender, phone_number_id) with its 'default' row;
--   - wa_notify._sender_for_phone_number_id(text) RETURNS text;
--   - wa_notify.message.sender text NOT NULL DEFAULT 'default';
--   - wa_notify.blocked.sender: which sender an opt-out (or an error) came to.
-- What the senders helper's version must also keep for the webhook (see
-- doc/webhooks.md, "Several senders"): the statement trigger config_changed
-- on wa_notify.sender, so that a backend's cached routing (src/webhook.c,
-- keyed on the settings snapshot, src/settings.c) is reloaded after a change.

CREATE TABLE wa_notify.sender (
    sender          text PRIMARY KEY CHECK (sender ~ '^[a-z0-9_]{1,63}$'),
    phone_number_id text UNIQUE
);
INSERT INTO wa_notify.sender (sender) VALUES ('default');
-- the 'default' row is the extension's own (a restore creates it): not dumped
SELECT pg_catalog.pg_extension_config_dump('wa_notify.sender', 'WHERE sender <> ''default''');

-- The sender whose number this is: a row's phone_number_id, else 'default'
-- when it is the settings' phone_number_id; NULL when no sender has it.
CREATE FUNCTION wa_notify._sender_for_phone_number_id(phone_number_id text)
RETURNS text LANGUAGE sql STABLE SET search_path = pg_catalog, wa_notify AS $$
    SELECT coalesce(
        (SELECT s.sender FROM wa_notify.sender s
          WHERE s.phone_number_id = _sender_for_phone_number_id.phone_number_id),
        (SELECT 'default' FROM wa_notify.setting st
          WHERE st.name = 'phone_number_id'
            AND st.value = _sender_for_phone_number_id.phone_number_id))
$$;
REVOKE ALL ON FUNCTION wa_notify._sender_for_phone_number_id(text) FROM PUBLIC;

ALTER TABLE wa_notify.message ADD COLUMN sender text NOT NULL DEFAULT 'default';
ALTER TABLE wa_notify.blocked ADD COLUMN sender text;
CREATE TRIGGER config_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON wa_notify.sender
    FOR EACH STATEMENT EXECUTE FUNCTION wa_notify._config_changed();
