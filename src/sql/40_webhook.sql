-- 40_webhook.sql: Meta's webhooks (SPEC section 4): the GET handshake and
-- the signed POST, both in C (src/webhook.c), both SECURITY DEFINER with a
-- fixed search_path so that a least-privileged relay role may call them and
-- nothing else (doc/webhooks.md, doc/relay.md).

CREATE FUNCTION wa_notify.webhook_verify(mode text, token text, challenge text)
RETURNS text
AS 'MODULE_PATHNAME', 'wa_notify_webhook_verify'
LANGUAGE C VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, wa_notify;
COMMENT ON FUNCTION wa_notify.webhook_verify(text, text, text) IS
    'Meta''s webhook handshake: the challenge for mode subscribe with the right verify token, else NULL';

CREATE FUNCTION wa_notify.webhook_receive(body bytea, signature text)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'wa_notify_webhook_receive'
LANGUAGE C VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, wa_notify;
COMMENT ON FUNCTION wa_notify.webhook_receive(bytea, text) IS
    'Apply a signed Meta webhook POST: body = the raw bytes, signature = the X-Hub-Signature-256 header';

REVOKE ALL ON FUNCTION wa_notify.webhook_verify(text, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION wa_notify.webhook_receive(bytea, text) FROM PUBLIC;
