-- configure(): defaults, valid changes, and every validation error.
-- A rejected call changes nothing.
\set SHOW_CONTEXT never
SELECT name, value, default_value, unit, is_secret FROM wa_notify.settings;

-- valid changes, several at once; the count of changed settings is returned
SELECT wa_notify.configure(phone_number_id => '106540352242922', business_account_id => '102290129340398',
                           app_id => '1234567890', polling_interval => 120, min_delay => 0.5, max_delay => 2,
                           max_per_batch => 25, lookback_days => 2, max_rate => 5, max_in_flight => 8,
                           recipient_gap => 10, daily_recipient_limit => 1000,
                           quiet_hours_start => '21:30', quiet_hours_end => '08:00',
                           api_base_url => 'http://127.0.0.1:9/', default_tracking_url => 'https://t.example/{tracking}',
                           webhook_public_url => 'https://shop.example.com/whatsapp/',
                           opt_out_keywords => ARRAY['parar', ' Sair '], delivery_semantics => 'at_least_once',
                           webhook_max_body => 1048576);
-- the same values again change nothing
SELECT wa_notify.configure(polling_interval => 120, min_delay => 0.5);
SELECT name, value FROM wa_notify.settings
 WHERE name IN ('phone_number_id', 'polling_interval', 'min_delay', 'max_delay', 'api_base_url',
                'webhook_public_url', 'opt_out_keywords', 'quiet_hours_start', 'delivery_semantics');

-- secrets are stored, never shown by the view
SELECT wa_notify.configure(access_token => 'EAAGm0PX4ZCpsBAKZAexampletokenvalue', app_secret => 'abcdef0123456789abcdef0123456789');
SELECT name, value FROM wa_notify.settings WHERE is_secret;
SELECT name, length(value) FROM wa_notify.setting WHERE is_secret ORDER BY name;

-- a snapshot to prove that rejected calls change nothing
CREATE TEMP TABLE before_errors AS SELECT name, value FROM wa_notify.setting;

SELECT wa_notify.configure(polling_interval => 30);
SELECT wa_notify.configure(polling_interval => 3601);
SELECT wa_notify.configure(min_delay => 5, max_delay => 3);
SELECT wa_notify.configure(min_delay => 10);            -- above the current max_delay (2)
SELECT wa_notify.configure(min_delay => -1);
SELECT wa_notify.configure(max_per_batch => 0);
SELECT wa_notify.configure(max_per_batch => -5);
SELECT wa_notify.configure(lookback_days => 0);
SELECT wa_notify.configure(max_rate => -1);
SELECT wa_notify.configure(max_in_flight => -1);
SELECT wa_notify.configure(recipient_gap => -1);
SELECT wa_notify.configure(daily_recipient_limit => -1);
SELECT wa_notify.configure(phone_number_id => '10654-0352');
SELECT wa_notify.configure(app_id => 'abc');
SELECT wa_notify.configure(business_account_id => '12 34');
SELECT wa_notify.configure(api_version => '23.0');
SELECT wa_notify.configure(api_version => '');
SELECT wa_notify.configure(api_base_url => 'ftp://graph.facebook.com');
SELECT wa_notify.configure(api_base_url => 'https://graph.facebook.com/?x=1');
SELECT wa_notify.configure(default_language => 'portuguese');
SELECT wa_notify.configure(default_language => 'pt-BR');
SELECT wa_notify.configure(default_language => '');
SELECT wa_notify.configure(quiet_hours_start => '25:00', quiet_hours_end => '08:00');
SELECT wa_notify.configure(quiet_hours_start => '', quiet_hours_end => '08:00');
SELECT wa_notify.configure(quiet_hours_start => '08:00', quiet_hours_end => '08:00');
SELECT wa_notify.configure(timezone => 'Mars/Olympus_Mons');
SELECT wa_notify.configure(timezone => '');
SELECT wa_notify.configure(default_country_code => '+55');
SELECT wa_notify.configure(default_country_code => '055');
SELECT wa_notify.configure(default_country_code => '');
SELECT wa_notify.configure(webhook_public_url => 'http://shop.example.com/whatsapp');
SELECT wa_notify.configure(webhook_verify_token => 'short');
SELECT wa_notify.configure(webhook_verify_token => '');
SELECT wa_notify.configure(default_tracking_url => 'https://t.example/track');
SELECT wa_notify.configure(default_tracking_url => 'not a url {tracking}');
SELECT wa_notify.configure(opt_out_keywords => ARRAY[]::text[]);
SELECT wa_notify.configure(opt_out_keywords => ARRAY['PARAR', '']);
SELECT wa_notify.configure(delivery_semantics => 'exactly_once');
SELECT wa_notify.configure(webhook_max_body => 1000);
SELECT wa_notify.configure(context_timeout => 0);
SELECT wa_notify.configure(context_timeout => 301);
SELECT wa_notify.configure(log_retention_days => -1);
SELECT wa_notify.configure(anonymize_after_days => 36501);
SELECT wa_notify.configure(review_window => 59);
SELECT wa_notify.configure(review_resend => 'sometimes');
-- a bad secret is refused without echoing it
SELECT wa_notify.configure(access_token => 'has spaces in the token value');
SELECT wa_notify.configure(app_secret => 'short');
-- one bad value in a call with good ones: nothing of the call is applied
SELECT wa_notify.configure(max_per_batch => 99, polling_interval => 30);

SELECT count(*) AS settings_changed_by_rejected_calls
  FROM before_errors b JOIN wa_notify.setting s USING (name)
 WHERE s.value IS DISTINCT FROM b.value;

-- the 1.1 settings, valid values
SELECT wa_notify.configure(context_timeout => 30, allow_marketing_category => true, log_retention_days => 0,
                           anonymize_after_days => 0, review_window => 60, review_resend => 'never');
SELECT name, value FROM wa_notify.settings
 WHERE name IN ('context_timeout', 'allow_marketing_category', 'log_retention_days',
                'anonymize_after_days', 'review_window', 'review_resend');

-- every rule is a column of the setting's row, shown by the view
SELECT name, type, min_value, max_value, allowed_values, may_be_unset FROM wa_notify.settings
 WHERE name IN ('access_token', 'api_version', 'api_base_url', 'enabled', 'polling_interval', 'min_delay',
                'quiet_hours_start', 'timezone', 'opt_out_keywords', 'default_tracking_url',
                'delivery_semantics', 'review_resend');
SELECT name, hint FROM wa_notify.settings WHERE name IN ('api_version', 'timezone', 'default_language');
-- the one validator, as configure() calls it: booleans parsed as SQL does
SELECT wa_notify._check_setting('enabled', 'on'), wa_notify._check_setting('use_templates', 'no');
SELECT wa_notify._check_setting('enabled', 'maybe');
SELECT wa_notify._check_setting('polling_interval', '90.5');
SELECT wa_notify._check_setting('no_such_setting', '1');

-- the C snapshot (settings.c) is per transaction, yet a change made in the
-- transaction is seen at once, and one rolled back is forgotten
BEGIN;
SELECT wa_notify.preview('order_placed', '{"phone": "5511987654321"}'::jsonb) #>> '{template,language,code}' AS lang;
SELECT wa_notify.configure(default_language => 'es_AR');
SELECT wa_notify.preview('order_placed', '{"phone": "5511987654321"}'::jsonb) #>> '{template,language,code}' AS lang;
SAVEPOINT s;
SELECT wa_notify.configure(use_templates => false);
SELECT wa_notify.preview('order_placed', '{"phone": "5511987654321"}'::jsonb) ->> 'type' AS type;
ROLLBACK TO SAVEPOINT s;
SELECT wa_notify.preview('order_placed', '{"phone": "5511987654321"}'::jsonb) ->> 'type' AS type;
UPDATE wa_notify.event SET template_language = 'en' WHERE event = 'order_placed';
SELECT wa_notify.preview('order_placed', '{"phone": "5511987654321"}'::jsonb) #>> '{template,language,code}' AS lang;
ROLLBACK;
SELECT wa_notify.preview('order_placed', '{"phone": "5511987654321"}'::jsonb) #>> '{template,language,code}' AS lang;

-- a value written by hand that does not parse for its type is named, not guessed
BEGIN;
UPDATE wa_notify.setting SET value = 'many' WHERE name = 'max_in_flight';
SELECT wa_notify.preview('order_placed', '{"phone": "5511987654321"}'::jsonb);
ROLLBACK;

-- '' unsets what may be unset
SELECT wa_notify.configure(quiet_hours_start => '', quiet_hours_end => '', default_tracking_url => '');
SELECT name, value IS NULL AS unset FROM wa_notify.setting
 WHERE name IN ('quiet_hours_start', 'quiet_hours_end', 'default_tracking_url') ORDER BY name;

-- a settings change lifts an account pause (SPEC 3) and is recorded
UPDATE wa_notify.state SET paused_reason = 'access token rejected (190)', paused_code = 190, paused_at = now();
SELECT wa_notify.configure(access_token => 'EAAGm0PX4ZCpsBAKZAnewtokenvalue42');
SELECT paused_reason, paused_code, settings_changed_at IS NOT NULL AS changed_recorded FROM wa_notify.state;

-- the verify token: generated at install, rotatable, settable
SELECT value AS old_token FROM wa_notify.setting WHERE name = 'webhook_verify_token' \gset
SELECT length(wa_notify.rotate_verify_token()) AS new_token_length;
SELECT value <> :'old_token' AS rotated FROM wa_notify.setting WHERE name = 'webhook_verify_token';
SELECT wa_notify.configure(webhook_verify_token => 'my-own-verify-token-2026');
SELECT value FROM wa_notify.setting WHERE name = 'webhook_verify_token';
SELECT value FROM wa_notify.settings WHERE name = 'webhook_verify_token';

-- back to the defaults used by later tests
UPDATE wa_notify.setting SET value = default_value
 WHERE name NOT IN ('webhook_verify_token', 'callback_key');
