-- block()/unblock()/blacklist: normalised numbers, ninth-digit aware.
\set SHOW_CONTEXT never
SELECT wa_notify.block('(11) 98765-4321', 'asked by phone');
SELECT wa_notify.block('+1 (415) 555-0100');
SELECT wa_notify.block('not a phone', 'x');
SELECT wa_notify.block('', 'x');
SELECT number, reason, source, error_code FROM wa_notify.blacklist ORDER BY number;

-- WhatsApp's id for the same mobile lacks the ninth digit: still blocked
SELECT wa_notify.is_blocked('551187654321') AS wa_id_form, wa_notify.is_blocked('+55 11 98765-4321') AS formatted,
       wa_notify.is_blocked('5511987654321') AS e164_form,
       wa_notify.is_blocked('5511987654322') AS other_number;

-- blocking again updates the entry (one row per number)
SELECT wa_notify.block('011 98765-4321', 'second reason');
SELECT count(*), min(reason) FROM wa_notify.blocked WHERE phone_key = wa_notify.phone_key('5511987654321');

-- internal upsert used by the dispatcher and webhooks
SELECT wa_notify._blacklist('551187654321', 'message undeliverable (131026)', 'auto', 131026);
SELECT number, reason, source, error_code FROM wa_notify.blacklist WHERE number LIKE '5511%';

SELECT wa_notify.unblock('+55 11 98765-4321'), wa_notify.unblock('+55 11 98765-4321');
SELECT wa_notify.unblock('14155550100');
SELECT count(*) AS left_in_blacklist FROM wa_notify.blacklist;

-- the status card masks the sender's number as the seed shows
SELECT wa_notify.mask_phone('+55 11 98765-4342'), wa_notify.mask_phone('551134567890'),
       wa_notify.mask_phone('14155550142'), wa_notify.mask_phone(NULL);
