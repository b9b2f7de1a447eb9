-- 32_in_flight.sql: how many requests a sender keeps in flight
-- (src/in_flight.c owns the rule: max_in_flight = 0 is auto, sized by
-- Little's law from the measured response time and the rate the number may
-- reach).  This function shows the size the dispatcher would use, for the
-- tests and for an admin who wonders.

CREATE FUNCTION wa_notify._in_flight_for(throughput_level text, max_rate float8,
                                         max_in_flight integer, rate_factor float8,
                                         response_time float8)
    RETURNS integer
    AS 'MODULE_PATHNAME', 'wa_notify_in_flight_for' LANGUAGE C IMMUTABLE;
COMMENT ON FUNCTION wa_notify._in_flight_for(text, float8, integer, float8, float8) IS
    'internal: the requests in flight the dispatcher uses for a number at this throughput level, max_rate (0: none), max_in_flight (0: auto), throttle factor and response time (s; NULL: none measured yet)';
