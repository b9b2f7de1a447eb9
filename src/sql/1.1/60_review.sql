-- 60_review.sql: a message in 'review' resolves itself (settings
-- review_window and review_resend, declared in 10_config.sql).
--
-- Why the rule is safe under at_most_once: a message goes to 'review' when
-- the worker died while its request was in flight, so nobody knows whether
-- Meta accepted it.  Meta sends a 'sent' status within seconds for every
-- message it accepts and echoes biz_opaque_callback_data, which matches the
-- message by id even without a wamid (webhook.c find_message()), so a status
-- moves a 'review' message forward by itself.  When none came within
-- review_window of the claim, although webhooks are known to flow (the last
-- callback was received after the message was claimed: Meta was reaching the
-- relay while the status would have been sent), Meta never accepted it as
-- far as any status says, and it is queued again: the same row, back to
-- 'queued', review_requeues counting how often, error_message saying why.
-- Without that proof (no callback since the claim: the relay may be down,
-- and Meta retries webhooks for days) it stays in 'review'; so it does under
-- review_resend = 'never'.  held_reason then says why, and the status card
-- shows it (review_reasons).
--
-- The worker calls _review_requeue() in each cycle (worker.c
-- requeue_unanswered_reviews(), at most once a second).  It reads only the
-- messages claimed and not answered ('sending' and 'review': the view
-- _message_unconfirmed over the partial index message_unconfirmed, both in
-- 60_metrics.sql, which sorts first), a handful of rows whatever the size
-- of the log.

ALTER TABLE wa_notify.message
    ADD COLUMN review_requeues integer NOT NULL DEFAULT 0;  -- times queued again from review
CREATE FUNCTION wa_notify._review_requeue(OUT requeued integer, OUT next_due timestamptz,
                                          OUT remaining integer)
LANGUAGE plpgsql SET search_path = pg_catalog, wa_notify AS $$
#variable_conflict use_column
DECLARE
    window_secs integer := wa_notify._setting_int('review_window');
    resend text := wa_notify._setting_value('review_resend');
    last_callback timestamptz := (SELECT s.webhook_last_callback FROM wa_notify.state s);
    due_before timestamptz := now() - make_interval(secs => window_secs);
BEGIN
    requeued := 0;
    remaining := 0;
    IF NOT EXISTS (SELECT 1 FROM wa_notify._message_unconfirmed u WHERE u.status = 'review') THEN
        RETURN;
    END IF;
    IF resend = 'auto' THEN
        UPDATE wa_notify.message m
           SET status = 'queued', claimed_at = NULL, next_attempt_at = NULL, held_reason = NULL,
               review_requeues = m.review_requeues + 1, updated_at = now(),
               error_message = format('queued again: no status webhook within review_window (%s s) of its claim at %s, '
                                      'while webhooks arrived (last callback %s); Meta never accepted it as far as any status says',
                                      window_secs, m.claimed_at, last_callback)
         WHERE m.id IN (SELECT u.id FROM wa_notify._message_unconfirmed u
                         WHERE u.status = 'review' AND u.claimed_at <= due_before AND u.claimed_at < last_callback)
           AND m.status = 'review';
        GET DIAGNOSTICS requeued = ROW_COUNT;
        SELECT min(u.claimed_at) + make_interval(secs => window_secs) INTO next_due
          FROM wa_notify._message_unconfirmed u
         WHERE u.status = 'review' AND u.claimed_at > due_before AND u.claimed_at < last_callback;
    END IF;
    -- the ones past their window that stay, and why (written once)
    UPDATE wa_notify.message m
       SET held_reason = r.reason, updated_at = now()
      FROM (SELECT u.id, u.held_reason,
                   CASE WHEN resend = 'never'
                        THEN 'review_resend is never: it waits for a person (resend() it if it was not delivered)'
                        ELSE 'no webhook has arrived since it was claimed, so a missing status proves nothing: '
                             'it stays in review until a status or another callback arrives (check the webhook relay), or resend() it'
                   END AS reason
              FROM wa_notify._message_unconfirmed u
             WHERE u.status = 'review' AND u.claimed_at <= due_before) r
     WHERE m.id = r.id AND m.status = 'review' AND r.held_reason IS DISTINCT FROM r.reason;
    SELECT count(*) INTO remaining FROM wa_notify._message_unconfirmed u WHERE u.status = 'review';
END $$;
COMMENT ON FUNCTION wa_notify._review_requeue() IS
    'internal: queue again the review messages that got no status within review_window while webhooks flowed (review_resend = auto); say why the others stay';
REVOKE ALL ON FUNCTION wa_notify._review_requeue() FROM PUBLIC;
