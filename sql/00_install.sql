-- CREATE EXTENSION in a fresh database: six events, SPEC defaults, a token.
CREATE EXTENSION wa_notify;
SELECT event, enabled, template_name, template_status FROM wa_notify.event ORDER BY event;
SELECT length(value) AS token_hex_length, value ~ '^[0-9a-f]+$' AS is_hex
  FROM wa_notify.setting WHERE name = 'webhook_verify_token';
