-- configure_sender() / remove_sender(): valid calls, and the SQLSTATE and
-- message of every refusal (SPEC 8, doc/configuration.md "Senders").  A
-- refused call changes nothing.
\set SHOW_CONTEXT never
CREATE FUNCTION pg_temp.try(q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    st text;
    msg text;
    hint text;
BEGIN
    EXECUTE q;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, hint = PG_EXCEPTION_HINT;
    RETURN st || ': ' || msg || coalesce(' HINT: ' || nullif(hint, ''), '');
END $$;

-- 'default' always exists, holding no configuration of its own
SELECT sender, phone_number_id, enabled, portfolio FROM wa_notify.sender;
SELECT wa_notify.configure(phone_number_id => '106540352242922') IS NOT NULL AS configured;
SELECT wa_notify._sender_for_phone_number_id('106540352242922') AS by_settings,
       wa_notify._sender_for_phone_number_id('999') AS unknown;

-- a new sender; the same values again change nothing
SELECT wa_notify.configure_sender('store_2', phone_number_id => '209876543210987',
                                  access_token => 'EAAstore2-other-token-9876543210',
                                  business_account_id => '302290129340398', max_rate => 20,
                                  max_in_flight => 8, daily_recipient_limit => 1000, portfolio => 'bp_1');
SELECT wa_notify.configure_sender('store_2', max_rate => 20, portfolio => 'bp_1');
SELECT sender, phone_number_id, business_account_id, api_version, enabled, max_rate, max_in_flight,
       daily_recipient_limit, portfolio, api_status, rate_factor
  FROM wa_notify.sender ORDER BY sender;
SELECT wa_notify._sender_for_phone_number_id('209876543210987');
-- the token is a row pg_dump never writes; views show only whether it is set
SELECT sender, name, length(value) FROM wa_notify.sender_secret;
SELECT sender, phone_number_id, enabled, queued, access_token_set, app_secret_set, max_rate, portfolio
  FROM wa_notify.senders WHERE sender = 'store_2';
-- NULL leaves a column as it is; '' unsets a text column (the setting applies again)
SELECT wa_notify.configure_sender('store_2', max_rate => NULL, daily_recipient_limit => NULL,
                                  portfolio => '');
SELECT wa_notify.configure_sender('store_2', business_account_id => '');
SELECT business_account_id, portfolio FROM wa_notify.sender WHERE sender = 'store_2';
-- 'default' through configure_sender(): its settings, and its row's portfolio
SELECT wa_notify.configure_sender('default', max_rate => 40, portfolio => 'bp_1') > 0 AS changed;
SELECT value FROM wa_notify.setting WHERE name = 'max_rate';
SELECT sender, max_rate, portfolio FROM wa_notify.sender WHERE sender = 'default';
SELECT wa_notify._portfolio_members('default'), wa_notify._portfolio_members('store_2');
SELECT wa_notify.configure_sender('store_2', portfolio => 'bp_1');
SELECT wa_notify._portfolio_members('default'), wa_notify._portfolio_members('store_2');

-- a quality update for store_2's number: its rating, and the tier of its whole portfolio
CREATE TEMP TABLE state_before AS SELECT quality_rating, messaging_limit, quality_updated_at FROM wa_notify.state;
SELECT wa_notify._sender_quality('store_2', 'YELLOW', 'TIER_10K');
SELECT sender, quality_rating, messaging_limit FROM wa_notify.senders WHERE sender = 'store_2';
SELECT messaging_limit FROM wa_notify.state;
UPDATE wa_notify.state SET (quality_rating, messaging_limit, quality_updated_at) = (SELECT * FROM state_before);
UPDATE wa_notify.sender SET quality_rating = NULL, messaging_limit = NULL, quality_updated_at = NULL;

CREATE TEMP TABLE before_errors AS SELECT * FROM wa_notify.sender;

-- refusals: SQLSTATE, message, hint
SELECT pg_temp.try(q) FROM (VALUES
  ($$SELECT wa_notify.configure_sender('Store 2', phone_number_id => '1')$$),
  ($$SELECT wa_notify.configure_sender(NULL, phone_number_id => '1')$$),
  ($$SELECT wa_notify.configure_sender('store_3', max_rate => 5)$$),
  ($$SELECT wa_notify.configure_sender('store_3', phone_number_id => '106540352242922')$$),
  ($$SELECT wa_notify.configure_sender('store_3', phone_number_id => '209876543210987')$$),
  ($$SELECT wa_notify.configure_sender('store_3', phone_number_id => '12-34')$$),
  ($$SELECT wa_notify.configure_sender('store_2', phone_number_id => '')$$),
  ($$SELECT wa_notify.configure_sender('store_2', max_rate => 5000)$$),
  ($$SELECT wa_notify.configure_sender('store_2', max_rate => -1)$$),
  ($$SELECT wa_notify.configure_sender('store_2', max_in_flight => -1)$$),
  ($$SELECT wa_notify.configure_sender('store_2', daily_recipient_limit => -5)$$),
  ($$SELECT wa_notify.configure_sender('store_2', api_version => '23')$$),
  ($$SELECT wa_notify.configure_sender('store_2', access_token => 'short')$$),
  ($$SELECT wa_notify.configure_sender('store_2', app_secret => 'not a secret!')$$),
  ($$SELECT wa_notify.configure_sender('store_2', portfolio => 'bp 1')$$),
  ($$SELECT wa_notify.remove_sender('default')$$),
  ($$SELECT wa_notify.remove_sender('store_9')$$),
  ($$SELECT wa_notify.check_connection('store_9')$$)) AS t(q);
SELECT count(*) AS changed FROM (SELECT * FROM wa_notify.sender EXCEPT SELECT * FROM before_errors) d;

-- remove_sender(): refused while messages are queued for it, unless force
INSERT INTO wa_notify.message (event, order_key, phone, params, sender)
VALUES ('order_placed', 'R1', '5511987650001', '{}', 'store_2'),
       ('order_placed', 'R2', '5511987650002', '{}', 'default');
SELECT pg_temp.try($$SELECT wa_notify.remove_sender('store_2')$$);
SELECT wa_notify.remove_sender('store_2', force => true);
SELECT order_key, sender, status, error_message FROM wa_notify.message WHERE order_key IN ('R1', 'R2') ORDER BY order_key;
SELECT sender FROM wa_notify.sender;
SELECT count(*) AS secrets_left FROM wa_notify.sender_secret;
-- a sender without queued messages goes at once
SELECT wa_notify.configure_sender('store_4', phone_number_id => '409876543210987');
SELECT wa_notify.remove_sender('store_4');

-- a context's "sender" column: NULL or absent is default, an unknown name an error
SELECT * FROM wa_notify._context_sender('{"phone": "1"}');
SELECT * FROM wa_notify._context_sender('{"sender": null}');
SELECT * FROM wa_notify._context_sender('{"sender": "store_x"}');

-- clean up for the files after this one
DELETE FROM wa_notify.message WHERE order_key IN ('R1', 'R2');
SELECT wa_notify.configure_sender('default', portfolio => '') AS changed;
SELECT wa_notify.configure(phone_number_id => '', max_rate => 0) IS NOT NULL AS configured;
