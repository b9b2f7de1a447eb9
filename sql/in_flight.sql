-- Auto max_in_flight (src/in_flight.c): Little's law, the rate the number
-- may reach (its throughput level's, 95% of it, or max_rate when lower,
-- times the throttle factor) times the response time, within [1, 512].
-- Levels: Meta's "Throughput" page
-- (https://developers.facebook.com/documentation/business-messaging/whatsapp/throughput):
-- 80 msg/s by default (STANDARD), 1,000 after the upgrade (HIGH).
SELECT level, max_rate, max_in_flight, rate_factor, response_time,
       wa_notify._in_flight_for(level, max_rate, max_in_flight, rate_factor, response_time) AS in_flight
  FROM (VALUES
    ('HIGH',           0::float8, 0, 1.0::float8, 0.1::float8),  -- 950 msg/s x 0.1 s
    ('HIGH',           0,         0, 0.5,         0.1),          -- throttled: half
    ('HIGH',           0,         0, 1.0,         0.25),         -- slower answers: more
    ('HIGH',           0,         0, 1.0,         2.0),          -- the hard cap
    ('HIGH',           0,         0, 1.0,         0.0001),       -- at least one
    ('HIGH',           100,       0, 1.0,         0.1),          -- a rate cap: 100 x 0.1 s + 25%
    ('STANDARD',       0,         0, 1.0,         0.1),          -- 76 msg/s x 0.1 s
    ('STANDARD',       20,        0, 1.0,         0.1),          -- the 1.0 default rate: 3
    ('NOT_APPLICABLE', 0,         0, 1.0,         0.1),          -- unknown: as STANDARD
    (NULL,             0,         0, 1.0,         NULL),         -- nothing known: 0.1 s guessed
    ('HIGH',           0,         32, 0.5,        0.1),          -- configured, throttled: half
    ('HIGH',           20,        32, 0.5,        0.1)           -- configured with a rate cap: as set
  ) AS t(level, max_rate, max_in_flight, rate_factor, response_time);
SELECT wa_notify._in_flight_for('HIGH', NULL, 0, 1, 0.1);
