-- The three roles of doc/roles.md, granted exactly as documented there:
-- a reporting role reads the log and the status card but no secret and
-- cannot change settings; an admin role configures; the webhook role can
-- only call the two webhook functions (tested with the webhook work).
\set SHOW_CONTEXT never
CREATE ROLE regress_wa_admin;
CREATE ROLE regress_wa_reporting;

-- doc/roles.md: admin
GRANT USAGE ON SCHEMA wa_notify TO regress_wa_admin;
GRANT SELECT ON ALL TABLES IN SCHEMA wa_notify TO regress_wa_admin;
GRANT INSERT, UPDATE ON wa_notify.message TO regress_wa_admin;
GRANT USAGE ON SEQUENCE wa_notify.message_id_seq TO regress_wa_admin;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA wa_notify TO regress_wa_admin;
-- doc/roles.md: reporting
GRANT USAGE ON SCHEMA wa_notify TO regress_wa_reporting;
GRANT SELECT ON wa_notify.message_log, wa_notify.status, wa_notify.settings, wa_notify.events,
                wa_notify.blacklist, wa_notify.graph_errors, wa_notify.senders TO regress_wa_reporting;
GRANT EXECUTE ON FUNCTION wa_notify.counts(timestamptz, timestamptz) TO regress_wa_reporting;

SELECT wa_notify.configure(access_token => 'EAAGsecrettokenvalue0123456789', app_secret => 'abcdef0123456789abcdef0123456789');
INSERT INTO wa_notify.message (event, order_key, phone, params, status) VALUES ('order_placed', '42', '5511987654321', '{}', 'queued');

SET ROLE regress_wa_reporting;
SELECT order_key, phone, type, status FROM wa_notify.message_log;
SELECT api_status, access_token_set, app_secret_set, queue_pending FROM wa_notify.status;
SELECT secrets_source, secrets_to_set FROM wa_notify.status;
SELECT sender, enabled, queued, access_token_set, app_secret_set FROM wa_notify.senders;
SELECT pending, total FROM wa_notify.counts('-infinity', 'infinity');
SELECT name, value FROM wa_notify.settings WHERE is_secret ORDER BY name;
-- the raw secrets and the raw tables are out of reach
SELECT value FROM wa_notify.setting WHERE name = 'access_token';
SELECT count(*) FROM wa_notify.message;
SELECT count(*) FROM wa_notify.state;
-- and so is every change
SELECT wa_notify.configure(polling_interval => 600);
SELECT wa_notify.configure_event('order_placed', enabled => false);
SELECT wa_notify.configure_sender('store_2', phone_number_id => '209876543210987');
SELECT wa_notify.block('11987654321', 'x');
SELECT wa_notify.set_carrier('x', 'https://x.example/{tracking}');
SELECT wa_notify.rotate_verify_token();
UPDATE wa_notify.setting SET value = '60' WHERE name = 'polling_interval';
SELECT wa_notify.wake();
RESET ROLE;

-- PUBLIC (any other role) sees nothing at all
CREATE ROLE regress_wa_nobody;
SET ROLE regress_wa_nobody;
SELECT count(*) FROM wa_notify.message_log;
SELECT wa_notify.configure(polling_interval => 600);
RESET ROLE;

SET ROLE regress_wa_admin;
SELECT wa_notify.configure(polling_interval => 600);
SELECT wa_notify.configure_event('order_placed', enabled => false);
SELECT wa_notify.configure_event('order_placed', enabled => true);
SELECT length(value) AS admin_reads_token FROM wa_notify.setting WHERE name = 'access_token';
SELECT wa_notify.block('11987654321', 'admin test');
SELECT wa_notify.unblock('11987654321');
-- check_connection() runs as the extension's owner (1.0: permission denied for table state)
SELECT api_status, error FROM wa_notify.check_connection();
INSERT INTO wa_notify.message (event, order_key, phone, params) VALUES ('order_placed', '43', '5511987654321', '{}');
RESET ROLE;

SELECT value FROM wa_notify.setting WHERE name = 'polling_interval';

DELETE FROM wa_notify.message;
UPDATE wa_notify.setting SET value = default_value WHERE name NOT IN ('webhook_verify_token', 'callback_key');
DROP OWNED BY regress_wa_admin, regress_wa_reporting, regress_wa_nobody;
DROP ROLE regress_wa_admin, regress_wa_reporting, regress_wa_nobody;
