-- Phone normalisation to E.164 digits: table-driven, valid and invalid inputs.
CREATE FUNCTION pg_temp.try_phone(p text, cc text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE d text;
BEGIN
    RETURN wa_notify.normalize_phone(p, cc);
EXCEPTION WHEN invalid_parameter_value THEN
    GET STACKED DIAGNOSTICS d = PG_EXCEPTION_DETAIL;
    RETURN 'ERROR: ' || d;
END $$;

-- Brazil (default country code 55)
SELECT input, pg_temp.try_phone(input, '55') AS e164 FROM (VALUES
    ('(11) 98765-4321'), ('011 98765-4321'), ('(0xx11) 98765-4321'), ('0 21 11 98765-4321'),
    ('+55 11 98765-4321'), ('+55 (11) 98765-4321'), ('5511987654321'), ('55 11 98765 4321'),
    ('11987654321'), ('11.98765.4321'), ('  (21) 2345-6789  '), ('(11) 3456-7890'),
    ('551134567890'), ('55 9 8765-4321'), ('(55) 3456-7890'), ('0055 11 98765-4321'),
    ('5511 8765-4321'),
    -- invalid
    (''), ('   '), ('abc'), ('(11) 98765-4321 ramal 2'), ('98765-4321'), ('3456-7890'),
    ('12345'), ('(20) 98765-4321'), ('(10) 98765-4321'), ('(11) 88765-4321'), ('(11) 8765-43210'),
    ('(11) 1234-5678'), ('+55 11 98765-43210'), ('+0 11 98765 4321'),
    ('+12345678901234567'), ('+1234567')
) t(input);
SELECT wa_notify.normalize_phone(NULL) IS NULL AS null_in_null_out;
-- no country code given: 55
SELECT wa_notify.normalize_phone('(11) 98765-4321') AS default_55;

-- other countries with "+" or "00", whatever the default country
SELECT input, pg_temp.try_phone(input, '55') AS e164 FROM (VALUES
    ('+1 (415) 555-2671'), ('+44 20 7946 0958'), ('0044 20 7946 0958'), ('+351 912 345 678'),
    ('+54 9 11 2345-6789'), ('+49 30 123456')
) t(input);

-- national numbers of other default countries
SELECT input, cc, pg_temp.try_phone(input, cc) AS e164 FROM (VALUES
    ('(415) 555-2671', '1'), ('1 415 555 2671', '1'), ('912 345 678', '351'),
    ('020 7946 0958', '44'), ('351 912 345 678', '351'), ('12', '351')
) t(input, cc);

-- the error a caller sees
SELECT wa_notify.normalize_phone('(11) 8765-43210');

-- blacklist key: a Brazilian mobile with and without its ninth digit is one number
SELECT e164, wa_notify.phone_key(e164) FROM (VALUES
    ('5511987654321'), ('551187654321'), ('551134567890'), ('14155552671'), ('5511887654321')
) t(e164);
