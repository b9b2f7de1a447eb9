-- 40_webhook.sql: the status path (src/webhook.c) plans right without
-- statistics.
--
-- 1.0 looked a status up with "WHERE wamid = $1 ORDER BY id LIMIT 1" over a
-- non-unique index: until ANALYZE had seen a freshly filled table, the
-- generic plan walked message_pkey in id order, and a repeated status cost
-- about 30 times a first one.  A wamid names one message (Graph API gives each
-- send its own), so the index is now unique: the planner knows that one row
-- matches whatever the statistics say, and webhook.c's statements no longer
-- order or limit.
--
-- A 1.0 install can only hold one wamid twice if rows were written by hand
-- (the worker stores the id Graph API returned, a webhook stores a wamid only
-- on a message that had none and that no other message carries).  Such
-- duplicates are kept on the oldest message, the one 1.0's webhook matched,
-- and cleared on the others, with a warning (an extension script shows no
-- notice).
DO $$
DECLARE
    cleared bigint;
BEGIN
    UPDATE wa_notify.message m SET wamid = NULL
     WHERE m.wamid IS NOT NULL
       AND EXISTS (SELECT 1 FROM wa_notify.message o WHERE o.wamid = m.wamid AND o.id < m.id);
    GET DIAGNOSTICS cleared = ROW_COUNT;
    IF cleared > 0 THEN
        RAISE WARNING 'wa_notify: % messages shared a wamid with an older message; their wamid was cleared', cleared
            USING HINT = 'Status webhooks for those wamids apply to the oldest message, as in 1.0.';
    END IF;
END $$;

DROP INDEX wa_notify.message_wamid;
CREATE UNIQUE INDEX message_wamid ON wa_notify.message (wamid) WHERE wamid IS NOT NULL;

-- Webhooks per sender (issue 12, src/webhook.c): statuses and messages for a
-- phone_number_id that is no sender's are ignored and counted here (shown on
-- the status card as webhook_unknown_numbers).
ALTER TABLE wa_notify.state ADD COLUMN webhook_unknown_numbers bigint NOT NULL DEFAULT 0;
COMMENT ON COLUMN wa_notify.state.webhook_unknown_numbers IS
    'webhook statuses and messages ignored because their metadata.phone_number_id is no sender''s';
