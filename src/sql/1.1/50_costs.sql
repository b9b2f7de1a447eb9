-- 50_costs.sql: what the notifications cost (doc/webhooks.md, "Pricing and cost").
-- Meta prices per delivered template message since July 2025 (Meta's
-- "Pricing updates on the WhatsApp Business Platform" page): each status
-- webhook's pricing object says whether the message is billable, why not
-- (pricing.type free_customer_service / free_entry_point) and its category.
-- The admin fills a rate table (Meta's rate cards, per category and market);
-- costs() estimates from both, over the live queue and the archive
-- (wa_notify.message_history: anonymized rows keep their pricing columns
-- and a masked phone with its calling code, which is all a rate needs).

CREATE TABLE wa_notify.rate (
    category   text NOT NULL CHECK (category = lower(category) AND category <> ''),
    market     text NOT NULL CHECK (market ~ '^([0-9]{1,4}|\*)$'),   -- calling code, or * for any other
    price      numeric NOT NULL CHECK (price >= 0),
    currency   text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    valid_from date NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (category, market, valid_from)
);
SELECT pg_catalog.pg_extension_config_dump('wa_notify.rate', '');
COMMENT ON TABLE wa_notify.rate IS
    'price of one billable message per pricing category and market (country calling code), from a day on';

CREATE FUNCTION wa_notify.set_rate(category text, market text, price numeric, currency text,
                                   valid_from date DEFAULT current_date)
RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, wa_notify AS $$
#variable_conflict use_column
DECLARE
    cat text := lower(btrim(category));
    mkt text := btrim(market);
BEGIN
    IF cat IS NULL OR cat !~ '^[a-z_]{1,40}$' THEN
        RAISE EXCEPTION 'invalid pricing category "%"', category
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Give the category as Meta''s status webhooks name it: utility, marketing, authentication, authentication_international, marketing_lite or service.';
    END IF;
    IF mkt IS NULL OR mkt !~ '^([0-9]{1,4}|\*)$' THEN
        RAISE EXCEPTION 'invalid market "%"', market
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'A market is the recipients'' country calling code, such as ''55'' for Brazil, or ''*'' for every other.';
    END IF;
    IF price IS NULL OR price < 0 THEN
        RAISE EXCEPTION 'invalid price %', coalesce(price::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value', HINT = 'A price is zero or more, per billable message.';
    END IF;
    IF currency IS NULL OR upper(btrim(currency)) !~ '^[A-Z]{3}$' THEN
        RAISE EXCEPTION 'invalid currency "%"', currency
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Give an ISO 4217 code, such as ''USD'' or ''BRL''.';
    END IF;
    INSERT INTO wa_notify.rate AS r (category, market, price, currency, valid_from)
    VALUES (cat, mkt, price, upper(btrim(currency)), coalesce(valid_from, current_date))
    ON CONFLICT (category, market, valid_from) DO UPDATE
       SET price = EXCLUDED.price, currency = EXCLUDED.currency, created_at = now();
END $$;
COMMENT ON FUNCTION wa_notify.set_rate(text, text, numeric, text, date) IS
    'price of a billable message of a category in a market (calling code or *), valid from a day';

-- The rate of one message: its category, the longest market prefix of its
-- phone (else *), the newest valid_from on or before its day.  (An
-- anonymized phone, "+55 11 9••••-••42 #...", keeps its leading digits: the
-- prefix is matched without the + and the spaces.)
CREATE FUNCTION wa_notify._rate_of(category text, phone text, day date,
                                   OUT price numeric, OUT currency text)
LANGUAGE sql STABLE SET search_path = pg_catalog, wa_notify AS $$
    SELECT r.price, r.currency FROM wa_notify.rate r
     WHERE r.category = _rate_of.category AND r.valid_from <= day
       AND (r.market = '*' OR replace(ltrim(_rate_of.phone, '+'), ' ', '') LIKE r.market || '%')
     ORDER BY (r.market = '*'), length(r.market) DESC, r.valid_from DESC
     LIMIT 1
$$;

-- costs over [from, to) (default: this month in the configured time zone),
-- by the day a message was sent, its event, sender and pricing category.
CREATE FUNCTION wa_notify.costs("from" timestamptz DEFAULT NULL, "to" timestamptz DEFAULT NULL)
RETURNS TABLE (day date, event text, sender text, category text, messages bigint,
               billable bigint, free bigint, estimated_cost numeric, currency text,
               free_customer_service bigint, free_entry_point bigint, unpriced bigint)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, wa_notify AS $$
    WITH z AS (SELECT wa_notify._setting_value('timezone') AS tz),
    bounds AS (
        SELECT coalesce($1, date_trunc('month', now() AT TIME ZONE z.tz) AT TIME ZONE z.tz) AS lo,
               coalesce($2, 'infinity'::timestamptz) AS hi, z.tz
          FROM z),
    sent AS (
        SELECT (m.sent_at AT TIME ZONE b.tz)::date AS day, m.event, 'default'::text AS sender,
               coalesce(m.pricing_category, 'unknown') AS category, m.billable, m.pricing_type,
               r.price, r.currency
          FROM wa_notify.message_history m CROSS JOIN bounds b
          LEFT JOIN LATERAL wa_notify._rate_of(m.pricing_category, m.phone,
                                               (m.sent_at AT TIME ZONE b.tz)::date) r ON true
         WHERE m.sent_at >= b.lo AND m.sent_at < b.hi)
    SELECT s.day, s.event, s.sender, s.category, count(*),
           count(*) FILTER (WHERE s.billable),
           count(*) FILTER (WHERE s.billable IS FALSE),
           coalesce(sum(s.price) FILTER (WHERE s.billable), 0),
           max(s.currency),
           count(*) FILTER (WHERE s.billable IS FALSE AND s.pricing_type = 'free_customer_service'),
           count(*) FILTER (WHERE s.billable IS FALSE AND s.pricing_type = 'free_entry_point'),
           count(*) FILTER (WHERE s.billable AND s.price IS NULL)
      FROM sent s
     GROUP BY s.day, s.event, s.sender, s.category, s.currency
     ORDER BY s.day, s.event, s.sender, s.category, s.currency
$$;
COMMENT ON FUNCTION wa_notify.costs(timestamptz, timestamptz) IS
    'messages sent in [from, to) by day, event, sender and pricing category: billable, free (and why), estimated cost from set_rate()';

REVOKE ALL ON FUNCTION wa_notify.set_rate(text, text, numeric, text, date),
                       wa_notify._rate_of(text, text, date),
                       wa_notify.costs(timestamptz, timestamptz)
  FROM PUBLIC;
