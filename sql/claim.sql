-- What a claim takes from the queue (wa_notify._claim(), 30_dispatch.sql):
-- the head of one sender's queue in order, less the messages a rule keeps
-- back (a disabled event and a blacklisted number are skipped, a recipient
-- claimed within recipient_gap waits, and so does a second message to the
-- same recipient in one batch, also when the numbers only match once
-- normalised), each claimed row marked 'sending' with its body.
-- Everything runs in one transaction rolled back at the end.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS wa_notify;
RESET client_min_messages;
\set ON_ERROR_ROLLBACK on
BEGIN;
\set VERBOSITY terse
SET timezone = 'UTC';

INSERT INTO wa_notify.message (id, event, order_key, phone, params) VALUES
 (1, 'order_placed', 'K1', '5511987650001', '{"customer_name": "Ana", "order_number": "K1", "total": "10"}'),
 (2, 'order_placed', 'K2', '5511987650001', '{"customer_name": "Ana", "order_number": "K2", "total": "11"}'),
 (3, 'order_placed', 'K3', '5511987650003', '{"customer_name": "Bia", "order_number": "K3", "total": "12"}'),
 (4, 'order_placed', 'K4', '5511987650004', '{"customer_name": "Caio", "order_number": "K4", "total": "13"}'),
 (5, 'order_cancelled', 'K5', '5511987650005', '{"customer_name": "Duda", "order_number": "K5"}'),
 (6, 'order_placed', 'K6', '(11) 98765-0006', '{"customer_name": "Eva", "order_number": "K6", "total": "14"}'),
 (7, 'order_placed', 'K7', '5511987650006', '{"customer_name": "Eva", "order_number": "K7", "total": "15"}'),
 (8, 'order_placed', 'K8', 'not a phone', '{"customer_name": "Fabi", "order_number": "K8", "total": "16"}'),
 (9, 'order_placed', 'K9', '5511987650009', '{"customer_name": "Gil", "order_number": "K9", "total": "17"}');
-- message 4's recipient opted out; event order_cancelled is disabled
SELECT wa_notify.block('+5511987650004', 'asked to stop') IS NOT NULL AS blocked;
UPDATE wa_notify.event SET enabled = false WHERE event = 'order_cancelled';
-- message 9's recipient got a message a second ago
INSERT INTO wa_notify.message (id, event, order_key, phone, params, status, claimed_at, sent_at, wamid) VALUES
 (10, 'order_processing', 'K10', '5511987650009', '{"customer_name": "Gil", "order_number": "K10"}', 'sent',
  now() - interval '1 second', now() - interval '1 second', 'wamid.K10');

-- recipient_gap 6 s: 1, 3 and 6 (normalised) go; 2 and 7 wait for their
-- recipient (an earlier message of the batch has it), 9 for its last claim
SELECT id, phone, event, body::jsonb ->> 'to' AS body_to
  FROM wa_notify._claim(10, 6) ORDER BY id;
SELECT id, status, phone, claimed_at IS NOT NULL AS claimed, attempts, error_message
  FROM wa_notify.message WHERE id <= 9 ORDER BY id;
-- the body is _render()'s, as text
SELECT m.id, c.body::jsonb = wa_notify._render(m.event, m.phone, m.params, m.id) AS same_body
  FROM wa_notify.message m, LATERAL (SELECT wa_notify._render_body(m.event, m.phone, m.params, m.id) AS body) c
 WHERE m.id IN (1, 3, 6) ORDER BY m.id;

-- within the gap, the next claim takes none of them: 1 and 6 have just
-- been claimed for the recipients of 2 and 7
SELECT id FROM wa_notify._claim(10, 6) ORDER BY id;
-- without a gap, nothing waits for its recipient
SELECT id FROM wa_notify._claim(10, 0) ORDER BY id;
-- a claim of n takes at most n, in queue order
UPDATE wa_notify.message SET status = 'queued', claimed_at = NULL WHERE id IN (1, 2, 3, 6, 7, 9);
SELECT id FROM wa_notify._claim(2, 0) ORDER BY id;
-- another sender's queue is not touched
SELECT count(*) AS claimed_for_other FROM wa_notify._claim(10, 0, 0, 'store_2');

-- a message that cannot be rendered fails alone: the batch's bodies are
-- rendered together, and again one by one when one of them fails
UPDATE wa_notify.message SET status = 'sent' WHERE status IN ('queued', 'sending');
SELECT wa_notify.configure_event('order_placed', header_document => 'invoice_url', header_filename => '');
INSERT INTO wa_notify.message (id, event, order_key, phone, params) VALUES
 (21, 'order_placed', 'R21', '5511987650021', '{"customer_name": "Hugo", "order_number": "R21", "total": "5", "invoice_url": "https://shop.example.com/nfe/21.pdf"}'),
 (22, 'order_placed', 'R22', '5511987650022', '{"customer_name": "Iara", "order_number": "R22", "total": "5", "invoice_url": "http://shop.example.com/nfe/22.pdf"}'),
 (23, 'order_placed', 'R23', '5511987650023', '{"customer_name": "Joel", "order_number": "R23", "total": "5", "invoice_url": "https://shop.example.com/nfe/23.pdf"}');
SELECT id, body::jsonb #>> '{template,components,0,parameters,0,document,link}' AS document
  FROM wa_notify._claim(10, 0) ORDER BY id;
SELECT id, status, error_message FROM wa_notify.message WHERE id BETWEEN 21 AND 23 ORDER BY id;
ROLLBACK;
