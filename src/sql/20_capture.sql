-- 20_capture.sql: capture (watch/unwatch/watches), context resolution, rendering.
-- PLACEHOLDERS until the capture work lands: _render() and _resolve_pending().

-- The exact JSON body POSTed to {base}/{version}/{phone_number_id}/messages.
CREATE FUNCTION wa_notify._render(event text, phone text, params jsonb, message_id bigint)
RETURNS jsonb LANGUAGE plpgsql STABLE SET search_path = pg_catalog, wa_notify AS $$
DECLARE
    ev wa_notify.event;
    lang text;
    body jsonb;
    p text;
    plist jsonb := '[]';
BEGIN
    SELECT * INTO ev FROM wa_notify.event e WHERE e.event = _render.event;
    IF (SELECT value FROM wa_notify.setting WHERE name = 'use_templates') = 'true' THEN
        lang := coalesce(ev.template_language,
                         (SELECT value FROM wa_notify.setting WHERE name = 'default_language'));
        FOREACH p IN ARRAY ev.params LOOP
            plist := plist || jsonb_build_array(jsonb_build_object('type', 'text', 'text',
                                                  coalesce(params ->> p, '')));
        END LOOP;
        body := jsonb_build_object('messaging_product', 'whatsapp', 'recipient_type', 'individual',
                  'to', phone, 'type', 'template',
                  'template', jsonb_build_object('name', ev.template_name,
                                'language', jsonb_build_object('code', lang),
                                'components', jsonb_build_array(
                                   jsonb_build_object('type', 'body', 'parameters', plist))),
                  'biz_opaque_callback_data', message_id::text);
    ELSE
        body := jsonb_build_object('messaging_product', 'whatsapp', 'recipient_type', 'individual',
                  'to', phone, 'type', 'text',
                  'text', jsonb_build_object('preview_url', true, 'body', ev.text_body),
                  'biz_opaque_callback_data', message_id::text);
    END IF;
    RETURN body;
END $$;

-- Resolve captured messages (context query -> phone, params; skip / fail).
-- Called by the worker every cycle; returns how many it resolved.
CREATE FUNCTION wa_notify._resolve_pending(max_rows integer DEFAULT 1000)
RETURNS integer LANGUAGE sql AS $$ SELECT 0 $$;
