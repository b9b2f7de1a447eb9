-- 40_cloud_api.sql: the WhatsApp Cloud API as it stands in late 2026
-- (doc/webhooks.md, doc/dispatch.md, doc/configuration.md):
--   - business-scoped user IDs (BSUIDs): message.recipient_user_id, a
--     blacklist keyed on the phone key OR the BSUID, block() accepting a
--     BSUID, user_changed_user_id moving a block;
--   - per-message pricing columns (costs() is in 50_costs.sql);
--   - templates: category, quality, parameter format, last status reason,
--     disable date, lock info (table wa_notify.template, view templates);
--     a template moved to MARKETING holds its event unless the setting
--     allow_marketing_category is true;
--   - configure_event() gains parameter_format, header_document,
--     header_filename, header_image (render.c builds the body);
--   - 131049: the one special Graph-error effect (retry after 24 h, at most
--     twice), marked below for folding into the error table's effect columns;
--   - Graph API versions and their expiry (_check_api_version, called by
--     configure()).
-- The webhook side is src/webhook.c (apply_status_cloud, apply_inbound_cloud,
-- apply_template_cloud), which calls the underscore functions below.

-------------------------------------------------------------------------------
-- columns
-------------------------------------------------------------------------------
ALTER TABLE wa_notify.message
    ADD COLUMN recipient_user_id text,          -- BSUID, from the send response or a status
    ADD COLUMN pricing_category  text,          -- status pricing.category (utility, marketing, ...)
    ADD COLUMN pricing_type      text,          -- pricing.type (regular, free_customer_service, free_entry_point)
    ADD COLUMN billable          boolean,       -- pricing.billable
    ADD COLUMN deferred_retries  integer NOT NULL DEFAULT 0;  -- 131049 retries so far
-- (the archive carries every column of the live table: 35_history.sql)
ALTER TABLE wa_notify.message_archive
    ADD COLUMN recipient_user_id text,
    ADD COLUMN pricing_category  text,
    ADD COLUMN pricing_type      text,
    ADD COLUMN billable          boolean,
    ADD COLUMN deferred_retries  integer NOT NULL DEFAULT 0;
CREATE INDEX message_recipient_user_id ON wa_notify.message (recipient_user_id)
    WHERE recipient_user_id IS NOT NULL;

-- a block names a phone (ninth-digit-aware key), a BSUID, or both
ALTER TABLE wa_notify.blocked DROP CONSTRAINT blocked_pkey;
ALTER TABLE wa_notify.blocked
    ALTER COLUMN phone_key DROP NOT NULL,
    ALTER COLUMN phone DROP NOT NULL,
    ADD COLUMN user_id text,
    ADD CONSTRAINT blocked_phone_key_key UNIQUE (phone_key),
    ADD CONSTRAINT blocked_user_id_key UNIQUE (user_id),
    ADD CONSTRAINT blocked_names_someone CHECK (phone_key IS NOT NULL OR user_id IS NOT NULL);

ALTER TABLE wa_notify.event
    ADD COLUMN parameter_format text CHECK (parameter_format IN ('named', 'positional')),  -- NULL: the template's
    ADD COLUMN param_names      text[],         -- named templates: parameter_name of params[i] (NULL: the field's name)
    ADD COLUMN header_document  text,           -- context field holding the PDF's https URL
    ADD COLUMN header_filename  text,           -- context field, or a pattern with {field}s
    ADD COLUMN header_image     text,           -- context field holding the image's https URL
    ADD COLUMN category_hold    boolean NOT NULL DEFAULT false;  -- held_reason set because of MARKETING

-- (the setting allow_marketing_category is declared in 10_config.sql)

-- a dump's event rows update the seeded ones (1.0's trigger, with the 1.1 columns)
-- (_restore_upsert carries the new event columns: 90_restore.sql)

-------------------------------------------------------------------------------
-- templates as Meta reports them (sync_templates() and the template webhooks)
-------------------------------------------------------------------------------
CREATE TABLE wa_notify.template (
    sender            text NOT NULL DEFAULT 'default',
    name              text NOT NULL,
    language          text NOT NULL,
    template_id       text,                 -- Meta's message_template_id
    status            text,                 -- APPROVED, PAUSED, ... as Meta says
    category          text,                 -- UTILITY, MARKETING, AUTHENTICATION
    previous_category text,                 -- set when Meta moved it (template_category_update)
    category_changed_at timestamptz,
    -- the warning form, before Meta changes the category
    pending_category  text,                 -- correct_category: what it will become
    pending_category_at timestamptz,        -- category_update_timestamp: when
    quality           text,                 -- GREEN, YELLOW, RED, UNKNOWN
    parameter_format  text,                 -- NAMED or POSITIONAL
    reason            text,                 -- last status update's reason
    disable_date      text,                 -- disable_info.disable_date
    lock_info         text,                 -- other_info: title: description (locked/unlocked)
    updated_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (sender, name, language)
);
SELECT pg_catalog.pg_extension_config_dump('wa_notify.template', '');

CREATE VIEW wa_notify.templates AS
SELECT t.sender, t.name, t.language, t.status, t.category, t.quality,
       lower(t.parameter_format) AS parameter_format, t.reason, t.updated_at,
       t.previous_category, t.pending_category, t.pending_category_at, t.disable_date,
       t.lock_info, t.template_id,
       ARRAY(SELECT e.event FROM wa_notify.event e
              WHERE e.template_name = t.name
                AND coalesce(e.template_language, wa_notify._setting_value('default_language')) = t.language
              ORDER BY e.event) AS events
  FROM wa_notify.template t
 ORDER BY t.sender, t.name, t.language;
COMMENT ON VIEW wa_notify.templates IS
    'templates as Meta reports them: status, category (and a pending or past move), quality, parameter format, last reason';

-- Hold, or release, the events whose template Meta moved to MARKETING:
-- held unless allow_marketing_category.  Returns how many events changed.
CREATE FUNCTION wa_notify._apply_category_holds() RETURNS integer
LANGUAGE plpgsql SET search_path = pg_catalog, wa_notify AS $$
DECLARE
    allowed boolean := coalesce(wa_notify._setting_value('allow_marketing_category'), 'false') = 'true';
    deflang text := wa_notify._setting_value('default_language');
    n integer;
    m integer;
BEGIN
    WITH moved AS (
        SELECT e.event, format('template %s was moved by Meta from %s to MARKETING (higher price, per-user marketing limits); its messages wait: choose a utility template with configure_event(), or allow it with allow_marketing_category',
                               t.name, t.previous_category) AS reason
          FROM wa_notify.event e
          JOIN wa_notify.template t ON t.sender = 'default' AND t.name = e.template_name
                                   AND t.language = coalesce(e.template_language, deflang)
         WHERE t.category = 'MARKETING' AND t.previous_category IS DISTINCT FROM 'MARKETING'
           AND t.previous_category IS NOT NULL AND NOT allowed)
    UPDATE wa_notify.event e
       SET held_reason = moved.reason, held_code = NULL, held_at = now(), category_hold = true
      FROM moved
     WHERE e.event = moved.event AND (NOT e.category_hold OR e.held_reason IS DISTINCT FROM moved.reason)
       AND (e.held_reason IS NULL OR e.category_hold);
    GET DIAGNOSTICS n = ROW_COUNT;
    -- released: allowed now, moved back, or another template configured
    UPDATE wa_notify.event e
       SET held_reason = NULL, held_code = NULL, held_at = NULL, category_hold = false
     WHERE e.category_hold
       AND (allowed OR NOT EXISTS (
                SELECT 1 FROM wa_notify.template t
                 WHERE t.sender = 'default' AND t.name = e.template_name
                   AND t.language = coalesce(e.template_language, deflang)
                   AND t.category = 'MARKETING' AND t.previous_category IS NOT NULL
                   AND t.previous_category <> 'MARKETING'));
    GET DIAGNOSTICS m = ROW_COUNT;
    IF m > 0 THEN
        PERFORM wa_notify._wake_on_commit();
    END IF;
    RETURN n + m;
END $$;

CREATE FUNCTION wa_notify._category_setting_changed() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, wa_notify AS $$
BEGIN
    PERFORM wa_notify._apply_category_holds();
    RETURN NULL;
END $$;
CREATE TRIGGER category_holds AFTER UPDATE OF value ON wa_notify.setting
    FOR EACH ROW WHEN (NEW.name = 'allow_marketing_category' AND OLD.value IS DISTINCT FROM NEW.value)
    EXECUTE FUNCTION wa_notify._category_setting_changed();

-- template_category_update (webhook.c).  Two forms (Meta's
-- template_category_update webhook reference): the warning before the change
-- (correct_category, category_update_timestamp) and the change itself
-- (previous_category, new_category).
CREATE FUNCTION wa_notify._template_category_update(name text, language text, template_id text,
                                                    previous_category text, new_category text,
                                                    correct_category text, update_at timestamptz)
RETURNS integer LANGUAGE plpgsql SET search_path = pg_catalog, wa_notify AS $$
#variable_conflict use_column
BEGIN
    IF correct_category IS NOT NULL AND previous_category IS NULL THEN
        INSERT INTO wa_notify.template AS t (name, language, template_id, category,
                                             pending_category, pending_category_at)
        VALUES (name, language, template_id, upper(new_category), upper(correct_category), update_at)
        ON CONFLICT (sender, name, language) DO UPDATE
           SET template_id = coalesce(EXCLUDED.template_id, t.template_id),
               category = coalesce(EXCLUDED.category, t.category),
               pending_category = EXCLUDED.pending_category,
               pending_category_at = EXCLUDED.pending_category_at, updated_at = now();
        RETURN 0;
    END IF;
    INSERT INTO wa_notify.template AS t (name, language, template_id, category, previous_category,
                                         category_changed_at)
    VALUES (name, language, template_id, upper(new_category), upper(previous_category), now())
    ON CONFLICT (sender, name, language) DO UPDATE
       SET template_id = coalesce(EXCLUDED.template_id, t.template_id),
           category = EXCLUDED.category, previous_category = EXCLUDED.previous_category,
           category_changed_at = now(), pending_category = NULL, pending_category_at = NULL,
           updated_at = now();
    RETURN wa_notify._apply_category_holds();
END $$;

-- message_template_quality_update (webhook.c)
CREATE FUNCTION wa_notify._template_quality_update(name text, language text, template_id text,
                                                   new_quality text)
RETURNS void LANGUAGE sql SET search_path = pg_catalog, wa_notify AS $$
    INSERT INTO wa_notify.template AS t (name, language, template_id, quality)
    VALUES (name, language, template_id, upper(new_quality))
    ON CONFLICT (sender, name, language) DO UPDATE
       SET template_id = coalesce(EXCLUDED.template_id, t.template_id),
           quality = EXCLUDED.quality, updated_at = now()
$$;

-- message_template_status_update, what 1.0 dropped: reason, category,
-- disable_info.disable_date, other_info (locked / unlocked)
CREATE FUNCTION wa_notify._template_status_update(name text, language text, template_id text,
                                                  event text, reason text, category text,
                                                  disable_date text, lock_title text,
                                                  lock_description text)
RETURNS void LANGUAGE sql SET search_path = pg_catalog, wa_notify AS $$
    INSERT INTO wa_notify.template AS t (name, language, template_id, status, reason, category,
                                         disable_date, lock_info)
    VALUES (name, language, template_id, event, nullif(reason, 'NONE'), upper(category), disable_date,
            nullif(concat_ws(': ', lock_title, lock_description), ''))
    ON CONFLICT (sender, name, language) DO UPDATE
       SET template_id = coalesce(EXCLUDED.template_id, t.template_id),
           status = EXCLUDED.status, reason = EXCLUDED.reason,
           category = coalesce(EXCLUDED.category, t.category),
           disable_date = coalesce(EXCLUDED.disable_date, t.disable_date),
           lock_info = coalesce(EXCLUDED.lock_info, t.lock_info), updated_at = now();
    -- an APPROVED update lifts holds (webhook.c): not a MARKETING one
    SELECT wa_notify._apply_category_holds();
$$;

-------------------------------------------------------------------------------
-- business-scoped user IDs: the blacklist
-------------------------------------------------------------------------------
-- "CC.digits-and-letters" (parent BSUIDs "CC.ENT.xxx"), Meta's
-- "Business-scoped user IDs" page
CREATE FUNCTION wa_notify.is_bsuid(v text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT v ~ '^[A-Z]{2}\.(ENT\.)?[A-Za-z0-9]{1,128}$'
$$;

-- Block a BSUID.  The phone it is known to belong to (the newest message
-- whose send response or status named it) joins the same row, so that the
-- phone-keyed checks of capture and dispatch skip that phone's messages.
CREATE FUNCTION wa_notify._blacklist_user_id(user_id text, reason text, source text,
                                             error_code integer DEFAULT NULL)
RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog, wa_notify AS $$
#variable_conflict use_column
DECLARE
    ph text := (SELECT m.phone FROM wa_notify.message m
                 WHERE m.recipient_user_id = _blacklist_user_id.user_id AND m.phone IS NOT NULL
                 ORDER BY m.id DESC LIMIT 1);
BEGIN
    IF ph IS NOT NULL AND EXISTS (SELECT 1 FROM wa_notify.blocked b
                                   WHERE b.phone_key = wa_notify.phone_key(ph)) THEN
        DELETE FROM wa_notify.blocked b
         WHERE b.user_id = _blacklist_user_id.user_id AND b.phone_key IS DISTINCT FROM wa_notify.phone_key(ph);
        UPDATE wa_notify.blocked b
           SET user_id = _blacklist_user_id.user_id, reason = _blacklist_user_id.reason,
               source = _blacklist_user_id.source, error_code = _blacklist_user_id.error_code,
               created_at = now()
         WHERE b.phone_key = wa_notify.phone_key(ph);
        RETURN;
    END IF;
    INSERT INTO wa_notify.blocked AS b (phone_key, phone, user_id, reason, source, error_code)
    VALUES (wa_notify.phone_key(ph), ph, user_id, reason, source, error_code)
    ON CONFLICT (user_id) DO UPDATE
       SET reason = EXCLUDED.reason, source = EXCLUDED.source, error_code = EXCLUDED.error_code,
           phone = coalesce(b.phone, EXCLUDED.phone), phone_key = coalesce(b.phone_key, EXCLUDED.phone_key),
           created_at = now();
END $$;

-- An inbound opt-out keyword (webhook.c): by phone when Meta gave one, by
-- BSUID always when it gave one.  false when already blocked as opt_out.
CREATE FUNCTION wa_notify._opt_out(phone text, user_id text, reason text, sender text DEFAULT NULL)
RETURNS boolean LANGUAGE plpgsql SET search_path = pg_catalog, wa_notify AS $$
#variable_conflict use_column
DECLARE
    e164 text;
BEGIN
    -- the sender the opt-out came to (webhook.c; blocked.sender, 25_senders.sql)
    IF phone IS NOT NULL THEN
        e164 := wa_notify.normalize_phone(phone, wa_notify._setting_value('default_country_code'));
        IF EXISTS (SELECT 1 FROM wa_notify.blocked b
                    WHERE b.phone_key = wa_notify.phone_key(e164) AND b.source = 'opt_out'
                      AND (_opt_out.user_id IS NULL OR b.user_id = _opt_out.user_id)) THEN
            RETURN false;
        END IF;
        PERFORM wa_notify._blacklist(phone, reason, 'opt_out', NULL);
        IF user_id IS NOT NULL THEN
            DELETE FROM wa_notify.blocked b
             WHERE b.user_id = _opt_out.user_id AND b.phone_key IS DISTINCT FROM wa_notify.phone_key(e164);
        END IF;
        UPDATE wa_notify.blocked b SET user_id = coalesce(_opt_out.user_id, b.user_id), sender = _opt_out.sender
         WHERE b.phone_key = wa_notify.phone_key(e164)
           AND (_opt_out.user_id IS NOT NULL OR _opt_out.sender IS NOT NULL);
        RETURN true;
    END IF;
    IF EXISTS (SELECT 1 FROM wa_notify.blocked b WHERE b.user_id = _opt_out.user_id AND b.source = 'opt_out') THEN
        RETURN false;
    END IF;
    PERFORM wa_notify._blacklist_user_id(user_id, reason, 'opt_out', NULL);
    IF sender IS NOT NULL THEN
        UPDATE wa_notify.blocked b SET sender = _opt_out.sender WHERE b.user_id = _opt_out.user_id;
    END IF;
    RETURN true;
END $$;

-- user_changed_user_id (webhook.c): the block follows the user's new BSUID
CREATE FUNCTION wa_notify._user_id_changed(previous_user_id text, user_id text)
RETURNS integer LANGUAGE plpgsql SET search_path = pg_catalog, wa_notify AS $$
#variable_conflict use_column
DECLARE
    n integer;
BEGIN
    IF previous_user_id IS NULL OR user_id IS NULL OR previous_user_id = user_id THEN
        RETURN 0;
    END IF;
    IF EXISTS (SELECT 1 FROM wa_notify.blocked b WHERE b.user_id = _user_id_changed.user_id) THEN
        DELETE FROM wa_notify.blocked b WHERE b.user_id = previous_user_id AND b.phone_key IS NULL;
        GET DIAGNOSTICS n = ROW_COUNT;
        RETURN n;
    END IF;
    UPDATE wa_notify.blocked b
       SET user_id = _user_id_changed.user_id,
           reason = concat_ws('; ', b.reason, format('BSUID changed from %s', previous_user_id))
     WHERE b.user_id = previous_user_id;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END $$;

-- A message learns its BSUID (send response or status): when that BSUID is
-- blocked, the message's phone is blocked with it, so the next message to
-- that phone is skipped.
CREATE FUNCTION wa_notify._link_blocked_user_id() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, wa_notify AS $$
DECLARE
    blk wa_notify.blocked;
BEGIN
    SELECT * INTO blk FROM wa_notify.blocked b WHERE b.user_id = NEW.recipient_user_id;
    IF NOT FOUND OR NEW.phone IS NULL
       OR EXISTS (SELECT 1 FROM wa_notify.blocked b WHERE b.phone_key = wa_notify.phone_key(NEW.phone)) THEN
        RETURN NULL;
    END IF;
    IF blk.phone_key IS NULL THEN
        UPDATE wa_notify.blocked b SET phone = NEW.phone, phone_key = wa_notify.phone_key(NEW.phone)
         WHERE b.user_id = NEW.recipient_user_id;
    ELSE
        INSERT INTO wa_notify.blocked (phone_key, phone, reason, source, error_code)
        VALUES (wa_notify.phone_key(NEW.phone), NEW.phone,
                concat_ws('; ', blk.reason, format('same user as BSUID %s', blk.user_id)),
                blk.source, blk.error_code);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER link_blocked_user_id
    AFTER INSERT OR UPDATE OF recipient_user_id ON wa_notify.message
    FOR EACH ROW WHEN (NEW.recipient_user_id IS NOT NULL)
    EXECUTE FUNCTION wa_notify._link_blocked_user_id();

-- The send response's contacts[0].user_id (src/graph.c) is stored by
-- _record() (30_dispatch.sql) with the rest of the answer.

-- A status's BSUID and pricing (webhook.c, after the status itself is
-- applied and the message matched, so its wamid is known).
CREATE FUNCTION wa_notify._status_cloud(wamid text, user_id text, billable boolean,
                                        pricing_type text, pricing_category text)
RETURNS void LANGUAGE sql SET search_path = pg_catalog, wa_notify AS $$
    UPDATE wa_notify.message m
       SET recipient_user_id = coalesce(user_id, m.recipient_user_id),
           billable = coalesce(_status_cloud.billable, m.billable),
           pricing_type = coalesce(_status_cloud.pricing_type, m.pricing_type),
           pricing_category = coalesce(_status_cloud.pricing_category, m.pricing_category)
     WHERE m.wamid = _status_cloud.wamid
       AND m.status NOT IN ('skipped', 'expired')      -- never sent: a status for it is noise
       AND (m.recipient_user_id IS DISTINCT FROM coalesce(user_id, m.recipient_user_id)
            OR m.billable IS DISTINCT FROM coalesce(_status_cloud.billable, m.billable)
            OR m.pricing_type IS DISTINCT FROM coalesce(_status_cloud.pricing_type, m.pricing_type)
            OR m.pricing_category IS DISTINCT FROM coalesce(_status_cloud.pricing_category, m.pricing_category))
$$;

-------------------------------------------------------------------------------
-- block() / unblock() accept a BSUID; the views show it
-------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION wa_notify.block(phone text, reason text DEFAULT NULL) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, wa_notify AS $$
BEGIN
    IF wa_notify.is_bsuid(btrim(phone)) THEN
        PERFORM wa_notify._blacklist_user_id(btrim(phone), coalesce(reason, 'blocked by admin'), 'manual', NULL);
        RETURN btrim(phone);
    END IF;
    PERFORM wa_notify._blacklist(phone, coalesce(reason, 'blocked by admin'), 'manual', NULL);
    RETURN wa_notify.normalize_phone(phone, wa_notify._setting_value('default_country_code'));
END $$;
COMMENT ON FUNCTION wa_notify.block(text, text) IS
    'blacklist a number (returns it as E.164 digits) or a business-scoped user ID (BSUID, such as BR.13491208655302741918)';

CREATE OR REPLACE FUNCTION wa_notify.unblock(phone text) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, wa_notify AS $$
BEGIN
    IF wa_notify.is_bsuid(btrim(phone)) THEN
        DELETE FROM wa_notify.blocked b WHERE b.user_id = btrim(unblock.phone);
        RETURN FOUND;
    END IF;
    -- the digits as the blacklist shows them (E.164, any country)...
    DELETE FROM wa_notify.blocked b WHERE b.phone = regexp_replace(unblock.phone, '[^0-9]', '', 'g');
    IF FOUND THEN
        RETURN true;
    END IF;
    -- ...or any spelling of the number, ninth digit or not
    DELETE FROM wa_notify.blocked b
     WHERE b.phone_key = wa_notify.phone_key(
               wa_notify.normalize_phone(unblock.phone, wa_notify._setting_value('default_country_code')));
    RETURN FOUND;
END $$;

-- sender (25_senders.sql): which sender's send or status blacklisted it
-- (NULL: a manual block); the blacklist itself is shared by all senders
CREATE OR REPLACE VIEW wa_notify.blacklist AS
SELECT phone AS number, reason, source, error_code, created_at, user_id, sender
  FROM wa_notify.blocked
 ORDER BY created_at DESC;

-- every message kept: the live queue and the archive (doc/retention.md).
-- The reports below read it; its columns are the live table's as of here
-- (a column added later reaches the archive, not this view).
CREATE VIEW wa_notify.message_history AS
SELECT * FROM wa_notify.message
UNION ALL
SELECT * FROM wa_notify.message_archive;
COMMENT ON VIEW wa_notify.message_history IS
    'every message kept: the live queue (wa_notify.message) and the archive (wa_notify.message_archive)';

CREATE OR REPLACE VIEW wa_notify.message_log AS
SELECT m.id, m.created_at, m.order_key, m.phone, m.event AS type, m.status, m.tracking,
       m.sent_at, m.delivered_at, m.read_at,
       coalesce(m.error_message, m.held_reason) AS error, m.error_code, m.attempts,
       m.recipient_user_id AS user_id, m.pricing_category, m.pricing_type, m.billable
  FROM wa_notify.message_history m
 ORDER BY m.created_at DESC, m.id DESC;

-- 131049 (Meta's per-user marketing limit): retried 24 hours after the
-- failure, at most twice, never blacklisted.  The rule is two columns of the
-- error table (retry_after_secs, retry_max in src/graph_errors.c), applied
-- by wa_notify._apply_error() to a send and a webhook alike; the count is
-- message.deferred_retries.

-------------------------------------------------------------------------------
-- Graph API versions (Meta's Graph API changelog, "Versions":
-- https://developers.facebook.com/docs/graph-api/changelog/versions/)
-------------------------------------------------------------------------------
CREATE TABLE wa_notify.api_version (
    version  text PRIMARY KEY CHECK (version ~ '^v[0-9]{1,3}\.[0-9]{1,2}$'),
    released date NOT NULL,
    expires  date                  -- NULL: not announced yet
);
INSERT INTO wa_notify.api_version (version, released, expires) VALUES
 ('v19.0', '2024-01-23', '2026-05-21'),
 ('v20.0', '2024-05-21', '2026-09-24'),
 ('v21.0', '2024-10-02', '2027-01-21'),
 ('v22.0', '2025-01-21', '2027-05-20'),
 ('v23.0', '2025-05-29', '2027-10-08'),
 ('v24.0', '2025-10-08', '2028-02-18'),
 ('v25.0', '2026-02-18', '2028-07-29'),
 ('v26.0', '2026-07-29', NULL);
COMMENT ON TABLE wa_notify.api_version IS
    'Graph API versions and the day each stops working, from Meta''s Graph API changelog';

-- days before expiry from which the status card warns
CREATE FUNCTION wa_notify._api_version_warning_days() RETURNS integer
LANGUAGE sql IMMUTABLE AS $$ SELECT 90 $$;

-- The configured version's expiry and the status card's warning ("today" a parameter for tests)
CREATE FUNCTION wa_notify._api_version_status(version text, today date DEFAULT current_date,
                                              OUT expires date, OUT warning text)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, wa_notify AS $$
BEGIN
    SELECT v.expires INTO expires FROM wa_notify.api_version v WHERE v.version = _api_version_status.version;
    IF expires IS NOT NULL AND expires <= today THEN
        warning := format('Graph API %s expired on %s: configure(api_version => ...) with a live version',
                          version, to_char(expires, 'YYYY-MM-DD'));
    ELSIF expires IS NOT NULL AND expires - today <= wa_notify._api_version_warning_days() THEN
        warning := format('Graph API %s expires on %s (in %s days): move to a newer version with configure(api_version => ...)',
                          version, to_char(expires, 'YYYY-MM-DD'), expires - today);
    END IF;
END $$;

-- configure(api_version => ...) refuses an expired version
CREATE FUNCTION wa_notify._check_api_version(version text, today date DEFAULT current_date)
RETURNS void LANGUAGE plpgsql STABLE SET search_path = pg_catalog, wa_notify AS $$
DECLARE
    exp date := (SELECT v.expires FROM wa_notify.api_version v WHERE v.version = _check_api_version.version);
    oldest record;
BEGIN
    IF exp IS NULL OR exp > today THEN
        RETURN;
    END IF;
    SELECT v.version, v.expires INTO oldest FROM wa_notify.api_version v
     WHERE v.expires IS NULL OR v.expires > today
     ORDER BY v.released LIMIT 1;
    RAISE EXCEPTION 'Graph API version % expired on %', version, to_char(exp, 'YYYY-MM-DD')
        USING ERRCODE = 'invalid_parameter_value',
              HINT = format('The oldest version still live is %s%s; newer ones are listed in wa_notify.api_version.',
                            oldest.version, coalesce(format(' (until %s)', to_char(oldest.expires, 'YYYY-MM-DD')), ''));
END $$;

-------------------------------------------------------------------------------
-- configure_event(): 1.0's arguments first, then parameter_format and headers
-------------------------------------------------------------------------------
DROP FUNCTION wa_notify.configure_event(text, boolean, text, text, text[], text, text);
CREATE FUNCTION wa_notify.configure_event(
    event             text,
    enabled           boolean DEFAULT NULL,
    template_name     text    DEFAULT NULL,
    template_language text    DEFAULT NULL,
    params            text[]  DEFAULT NULL,
    button_param      text    DEFAULT NULL,
    text_body         text    DEFAULT NULL,
    parameter_format  text    DEFAULT NULL,   -- 'named', 'positional', '' = what sync_templates() found
    header_document   text    DEFAULT NULL,   -- context field with the PDF's https URL; '' = none
    header_filename   text    DEFAULT NULL,   -- context field, or pattern with {field}s; '' = none
    header_image      text    DEFAULT NULL,   -- context field with the image's https URL; '' = none
    param_names       text[]  DEFAULT NULL)   -- named templates: the parameter_name of each params entry; '{}' = the field names
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, wa_notify AS $$
DECLARE
    bad text;
    field_re constant text := '^[A-Za-z_][A-Za-z0-9_]{0,62}$';
BEGIN
    PERFORM wa_notify._check_event(event);
    IF template_name IS NOT NULL AND (template_name !~ '^[a-z0-9_]+$' OR length(template_name) > 512) THEN
        RAISE EXCEPTION 'invalid template name "%"', template_name
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'WhatsApp template names are lower-case letters, digits and underscores, as in WhatsApp Manager.';
    END IF;
    IF template_language IS NOT NULL AND template_language <> '' THEN
        PERFORM wa_notify._language_ok('template_language', template_language);
    END IF;
    IF params IS NOT NULL THEN
        SELECT p INTO bad FROM unnest(params) AS p WHERE p IS NULL OR p !~ field_re LIMIT 1;
        IF FOUND THEN
            RAISE EXCEPTION 'invalid template parameter name "%"', coalesce(bad, 'NULL')
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'params lists order-context field names for {{1}}..{{n}}, such as ARRAY[''customer_name'', ''order_number'', ''total''].';
        END IF;
        IF cardinality(params) > 100 THEN
            RAISE EXCEPTION 'too many template parameters (%)', cardinality(params)
                USING ERRCODE = 'invalid_parameter_value', HINT = 'A template body has at most 100 parameters.';
        END IF;
    END IF;
    IF button_param IS NOT NULL AND button_param <> '' AND button_param !~ field_re THEN
        RAISE EXCEPTION 'invalid button parameter name "%"', button_param
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'button_param names one order-context field, such as ''tracking_number'', or '''' for no URL button.';
    END IF;
    IF text_body IS NOT NULL AND (btrim(text_body) = '' OR length(text_body) > 4096) THEN
        RAISE EXCEPTION 'invalid text body for event "%"', event
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'A text body is 1 to 4096 characters; {field} placeholders take order-context fields.';
    END IF;
    IF parameter_format IS NOT NULL AND parameter_format NOT IN ('named', 'positional', '') THEN
        RAISE EXCEPTION 'invalid parameter format "%"', parameter_format
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'parameter_format is ''named'' (each body parameter carries parameter_name, the context field''s name), ''positional'' ({{1}}..{{n}}), or '''' for what sync_templates() found.';
    END IF;
    IF param_names IS NOT NULL AND cardinality(param_names) > 0 THEN
        -- Meta's named parameters: lower-case letters, digits and underscores
        SELECT p INTO bad FROM unnest(param_names) AS p WHERE p IS NULL OR p !~ '^[a-z_][a-z0-9_]{0,62}$' LIMIT 1;
        IF FOUND THEN
            RAISE EXCEPTION 'invalid template parameter name "%"', coalesce(bad, 'NULL')
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'A named template parameter is lower-case letters, digits and underscores, as in the template''s {{first_name}}.';
        END IF;
        IF cardinality(param_names) <> cardinality(coalesce(params,
                (SELECT e.params FROM wa_notify.event e WHERE e.event = configure_event.event))) THEN
            RAISE EXCEPTION 'param_names has % names for % params', cardinality(param_names),
                  cardinality(coalesce(params, (SELECT e.params FROM wa_notify.event e WHERE e.event = configure_event.event)))
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'Give one template parameter name per params entry, in the same order, or ''{}'' to use the field names.';
        END IF;
    END IF;
    IF header_document IS NOT NULL AND header_image IS NOT NULL AND header_document <> '' AND header_image <> '' THEN
        RAISE EXCEPTION 'a template has one header: header_document and header_image cannot both be set'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Give one of them, and '''' for the other.';
    END IF;
    SELECT f INTO bad FROM unnest(ARRAY[header_document, header_image]) AS f
     WHERE f IS NOT NULL AND f <> '' AND f !~ field_re LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'invalid header field name "%"', bad
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'header_document and header_image name the context column that holds the file''s https URL, such as ''invoice_url''.';
    END IF;
    IF header_filename IS NOT NULL AND header_filename <> '' AND header_filename !~ field_re
       AND (strpos(header_filename, '{') = 0 OR length(header_filename) > 240) THEN
        RAISE EXCEPTION 'invalid header file name "%"', header_filename
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'header_filename names a context column, or is a pattern with {field} placeholders such as ''nota-fiscal-{order_number}.pdf''.';
    END IF;

    UPDATE wa_notify.event e
       SET enabled = coalesce(configure_event.enabled, e.enabled),
           template_name = coalesce(configure_event.template_name, e.template_name),
           template_language = CASE WHEN configure_event.template_language IS NULL THEN e.template_language
                                    ELSE nullif(configure_event.template_language, '') END,
           params = coalesce(configure_event.params, e.params),
           button_param = CASE WHEN configure_event.button_param IS NULL THEN e.button_param
                               ELSE nullif(configure_event.button_param, '') END,
           text_body = coalesce(configure_event.text_body, e.text_body),
           parameter_format = CASE WHEN configure_event.parameter_format IS NULL THEN e.parameter_format
                                   ELSE nullif(configure_event.parameter_format, '') END,
           -- new params without new names: the field names again
           param_names = CASE WHEN configure_event.param_names IS NOT NULL
                                   THEN nullif(configure_event.param_names, '{}')
                              WHEN configure_event.params IS NOT NULL THEN NULL
                              ELSE e.param_names END,
           header_document = CASE WHEN configure_event.header_document IS NULL THEN e.header_document
                                  ELSE nullif(configure_event.header_document, '') END,
           header_filename = CASE WHEN configure_event.header_filename IS NULL THEN e.header_filename
                                  ELSE nullif(configure_event.header_filename, '') END,
           header_image = CASE WHEN configure_event.header_image IS NULL THEN e.header_image
                               ELSE nullif(configure_event.header_image, '') END,
           -- a new template (or language) has not been synced yet; a fix lifts a hold
           template_status = CASE WHEN configure_event.template_name IS DISTINCT FROM NULL
                                       AND configure_event.template_name <> e.template_name
                                    OR (configure_event.template_language IS NOT NULL
                                        AND nullif(configure_event.template_language, '') IS DISTINCT FROM e.template_language)
                                  THEN 'unknown' ELSE e.template_status END,
           held_reason = CASE WHEN configure_event.template_name IS NOT NULL OR configure_event.template_language IS NOT NULL
                                   OR configure_event.params IS NOT NULL OR configure_event.button_param IS NOT NULL
                                   OR configure_event.parameter_format IS NOT NULL OR configure_event.param_names IS NOT NULL
                              THEN NULL ELSE e.held_reason END,
           held_code = CASE WHEN configure_event.template_name IS NOT NULL OR configure_event.template_language IS NOT NULL
                                 OR configure_event.params IS NOT NULL OR configure_event.button_param IS NOT NULL
                                 OR configure_event.parameter_format IS NOT NULL OR configure_event.param_names IS NOT NULL
                            THEN NULL ELSE e.held_code END,
           category_hold = CASE WHEN configure_event.template_name IS NOT NULL OR configure_event.template_language IS NOT NULL
                                     OR configure_event.params IS NOT NULL OR configure_event.button_param IS NOT NULL
                                     OR configure_event.parameter_format IS NOT NULL
                                THEN false ELSE e.category_hold END
     WHERE e.event = configure_event.event;
    -- a template still in MARKETING keeps its event held
    PERFORM wa_notify._apply_category_holds();
    PERFORM wa_notify.wake();
END $$;
COMMENT ON FUNCTION wa_notify.configure_event IS
    'one event''s switch and message: template, parameters (positional or named), URL button, document or image header, text body';

-- the events view shows the new settings (at the end)
CREATE OR REPLACE VIEW wa_notify.events AS
SELECT e.event, e.description, e.enabled, e.template_name,
       coalesce(e.template_language, l.value) AS template_language,
       e.template_language IS NOT NULL AS language_overridden,
       e.params, e.button_param, e.text_body, e.template_status, e.template_status_at,
       e.held_reason, e.held_code, e.held_at,
       coalesce(e.parameter_format,
                (SELECT lower(t.parameter_format) FROM wa_notify.template t
                  WHERE t.sender = 'default' AND t.name = e.template_name
                    AND t.language = coalesce(e.template_language, l.value)),
                'positional') AS parameter_format,
       e.header_document, e.header_filename, e.header_image, e.param_names
  FROM wa_notify.event e
  CROSS JOIN (SELECT value FROM wa_notify.setting WHERE name = 'default_language') AS l
 ORDER BY array_position(ARRAY['order_placed', 'order_processing', 'shipment_created',
                               'shipment_delivered', 'order_cancelled', 'refund_issued'], e.event);

-- configure() (10_config.sql) refuses an expired Graph API version with
-- _check_api_version() above.

-------------------------------------------------------------------------------
-- sync_templates(): 1.0's, reading category, quality_score and
-- parameter_format too (Meta's message_templates edge) into wa_notify.template
-------------------------------------------------------------------------------
-- per sender (25_senders.sql): the templates of its WABA, with its token,
-- into wa_notify.template under its name; the events' approval status (one
-- per event, shared by the senders) follows the default sender's WABA.
-- Grants on the 1.0 function survive its re-creation.
SELECT pg_catalog.set_config('wa_notify_upgrade.sync_grantees',
       coalesce(string_agg(DISTINCT quote_ident(r.rolname), ','), ''), true)
  FROM pg_catalog.pg_proc p, aclexplode(p.proacl) a, pg_catalog.pg_roles r
 WHERE p.oid = 'wa_notify.sync_templates()'::regprocedure AND a.privilege_type = 'EXECUTE'
   AND r.oid = a.grantee AND a.grantee <> p.proowner;
DROP FUNCTION wa_notify.sync_templates();
CREATE FUNCTION wa_notify.sync_templates(sender text DEFAULT 'default', OUT templates integer,
                                         OUT events_updated integer, OUT events_missing integer)
-- SECURITY DEFINER: the admin role of doc/roles.md may run it (30_dispatch_security.sql)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, wa_notify AS $$
#variable_conflict use_column
DECLARE
    waba text := (SELECT e.business_account_id FROM wa_notify._sender_effective() e
                   WHERE e.sender = sync_templates.sender);
    deflang text := (SELECT value FROM wa_notify.setting WHERE name = 'default_language');
    g record;
    j jsonb;
    after text := NULL;
    pages integer := 0;
    found_tpl jsonb := '{}';
    t jsonb;
    st text;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM wa_notify.sender s WHERE s.sender = sync_templates.sender) THEN
        RAISE EXCEPTION 'there is no sender "%"', left(sender, 64)
            USING ERRCODE = 'undefined_object',
                  HINT = format('The senders are %s.', wa_notify._sender_names());
    END IF;
    IF coalesce(waba, '') = '' THEN
        RAISE EXCEPTION 'business_account_id is not configured'
              USING ERRCODE = 'object_not_in_prerequisite_state',
                    HINT = 'Set it with wa_notify.configure(business_account_id => ...).';
    END IF;
    templates := 0;
    LOOP
        SELECT * INTO g FROM wa_notify._graph_get(waba || '/message_templates?fields=id,name,language,status,category,quality_score,parameter_format&limit=100'
                                                  || coalesce('&after=' || after, ''), sender);
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
            CONTINUE WHEN t ->> 'name' IS NULL OR t ->> 'language' IS NULL;
            -- quality_score is {"score": "GREEN", "date": ...}
            INSERT INTO wa_notify.template AS x (sender, name, language, template_id, status, category,
                                                 quality, parameter_format)
            VALUES (sync_templates.sender, t ->> 'name', t ->> 'language', t ->> 'id', t ->> 'status', upper(t ->> 'category'),
                    upper(coalesce(t #>> '{quality_score,score}', t ->> 'quality_score')),
                    upper(t ->> 'parameter_format'))
            ON CONFLICT (sender, name, language) DO UPDATE
               SET template_id = coalesce(EXCLUDED.template_id, x.template_id),
                   status = coalesce(EXCLUDED.status, x.status),
                   -- a category that changed since we last looked is a move
                   previous_category = CASE WHEN EXCLUDED.category IS DISTINCT FROM x.category
                                             AND x.category IS NOT NULL AND EXCLUDED.category IS NOT NULL
                                            THEN x.category ELSE x.previous_category END,
                   category_changed_at = CASE WHEN EXCLUDED.category IS DISTINCT FROM x.category
                                               AND x.category IS NOT NULL AND EXCLUDED.category IS NOT NULL
                                              THEN now() ELSE x.category_changed_at END,
                   category = coalesce(EXCLUDED.category, x.category),
                   quality = coalesce(EXCLUDED.quality, x.quality),
                   parameter_format = coalesce(EXCLUDED.parameter_format, x.parameter_format),
                   updated_at = now();
        END LOOP;
        pages := pages + 1;
        EXIT WHEN j #>> '{paging,next}' IS NULL OR pages >= 100;
        after := j #>> '{paging,cursors,after}';
        EXIT WHEN after IS NULL;
    END LOOP;

    events_updated := 0;
    events_missing := 0;
    IF sender <> 'default' THEN
        RETURN;                 -- the events follow default's templates
    END IF;
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
               held_reason = CASE WHEN st = 'APPROVED' AND NOT e.category_hold THEN NULL ELSE held_reason END,
               held_code = CASE WHEN st = 'APPROVED' AND NOT e.category_hold THEN NULL ELSE held_code END,
               held_at = CASE WHEN st = 'APPROVED' AND NOT e.category_hold THEN NULL ELSE held_at END
         WHERE e.event = t ->> 'event'
           AND (e.template_status IS DISTINCT FROM st
                OR (st = 'APPROVED' AND e.held_reason IS NOT NULL AND NOT e.category_hold));
        IF FOUND THEN
            events_updated := events_updated + 1;
        END IF;
    END LOOP;
    PERFORM wa_notify._apply_category_holds();
END $$;
DO $$
DECLARE
    g text;
BEGIN
    FOREACH g IN ARRAY string_to_array(current_setting('wa_notify_upgrade.sync_grantees'), ',') LOOP
        EXECUTE format('GRANT EXECUTE ON FUNCTION wa_notify.sync_templates(text) TO %s', g);
    END LOOP;
END $$;
COMMENT ON FUNCTION wa_notify.sync_templates(text) IS
    'refresh a sender''s template approval statuses, categories, quality and parameter formats from its WhatsApp Business Account (default: the events'' statuses too)';

-------------------------------------------------------------------------------
-- privileges (as 1.0's 99_privileges): nothing new for PUBLIC but pure helpers
-- and the version table's public facts, which the status card shows
-------------------------------------------------------------------------------
REVOKE ALL ON FUNCTION
    wa_notify._apply_category_holds(), wa_notify._category_setting_changed(),
    wa_notify._template_category_update(text, text, text, text, text, text, timestamptz),
    wa_notify._template_quality_update(text, text, text, text),
    wa_notify._template_status_update(text, text, text, text, text, text, text, text, text),
    wa_notify._blacklist_user_id(text, text, text, integer), wa_notify._opt_out(text, text, text, text),
    wa_notify._user_id_changed(text, text), wa_notify._link_blocked_user_id(),
    wa_notify._status_cloud(text, text, boolean, text, text),
    wa_notify._check_api_version(text, date),
    wa_notify.configure_event(text, boolean, text, text, text[], text, text, text, text, text, text, text[])
  FROM PUBLIC;
GRANT EXECUTE ON FUNCTION wa_notify.is_bsuid(text), wa_notify._api_version_warning_days(),
                          wa_notify._api_version_status(text, date)
      TO PUBLIC;
