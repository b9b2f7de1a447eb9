-- 90_restore.sql: what a pg_dump restore does with the rows CREATE
-- EXTENSION seeds (1.0's trigger function, redefined once for 1.1).  After
-- every fragment that inserts setting or event rows: from here on, an INSERT
-- of a seeded row becomes an update of it, and a secret row is not taken.
--
-- setting: the dump holds no secret (15_secrets.sql: the config dump is
--   WHERE NOT is_secret; a 1.0 dump's secret rows are dropped here); the
--   first restored row records which secrets must be set again (a WARNING,
--   since a dump sets client_min_messages = warning, and
--   status.secrets_to_set);
-- event: the 1.1 columns come back with the rest.

CREATE OR REPLACE FUNCTION wa_notify._restore_upsert() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, wa_notify AS $$
DECLARE
    missing text[];
BEGIN
    IF TG_TABLE_NAME = 'setting' THEN
        IF NEW.is_secret THEN
            RETURN NULL;            -- a dump from 1.0: its secrets are not taken either
        END IF;
        UPDATE wa_notify.setting SET value = NEW.value, updated_at = NEW.updated_at
         WHERE name = NEW.name;
        IF (SELECT secrets_to_set IS NULL FROM wa_notify.state) THEN
            SELECT array_agg(s.name ORDER BY s.name) INTO missing
              FROM wa_notify.setting s
             WHERE s.is_secret AND s.name <> 'callback_key'
               AND NOT (wa_notify._secrets_source() = 'file' AND wa_notify._secret_available(s.name));
            UPDATE wa_notify.state SET secrets_to_set = coalesce(missing, '{}');
            IF missing IS NOT NULL THEN
                RAISE WARNING 'wa_notify: the dump holds no secrets; set again: %', array_to_string(missing, ', ')
                    USING HINT = 'Put them into the file named by wa_notify.secrets_file, or use wa_notify.configure(); webhook_verify_token was generated anew (rotate it in Meta''s webhook settings or set the old one). wa_notify.status shows what is still missing.';
            END IF;
        END IF;
    ELSE
        UPDATE wa_notify.event
           SET enabled = NEW.enabled, template_name = NEW.template_name,
               template_language = NEW.template_language, params = NEW.params,
               button_param = NEW.button_param, text_body = NEW.text_body,
               template_status = NEW.template_status, template_status_at = NEW.template_status_at,
               template_status_reason = NEW.template_status_reason,
               held_reason = NEW.held_reason, held_code = NEW.held_code, held_at = NEW.held_at,
               -- 1.1 (40_cloud_api.sql)
               parameter_format = NEW.parameter_format, param_names = NEW.param_names,
               header_document = NEW.header_document,
               header_filename = NEW.header_filename, header_image = NEW.header_image,
               category_hold = NEW.category_hold
         WHERE event = NEW.event;
    END IF;
    IF FOUND THEN
        RETURN NULL;
    END IF;
    RETURN NEW;
END $$;
