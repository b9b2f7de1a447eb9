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

-- The messages claimed for sending and not answered (in flight, or in
-- review): a partial index and the view that is its predicate's one home
-- (the status card, 60_review.sql and the metrics read it).  The index
-- names claimed_at, wamid, sent_at and failed_at, never status: a webhook
-- moving a message sent -> delivered -> read changes none of them, so that
-- update stays HOT (as 1.0's "queued" column keeps it).  It holds 'sending' and 'review' rows only: a
-- retry or a requeue clears claimed_at, a send sets wamid and sent_at, a
-- failure failed_at.
CREATE INDEX message_unconfirmed ON wa_notify.message (claimed_at)
    WHERE claimed_at IS NOT NULL AND wamid IS NULL AND sent_at IS NULL AND failed_at IS NULL;

-- (claimed_at >= '-infinity' is the index's claimed_at IS NOT NULL as an
-- index condition: without one, the planner may walk the whole of another
-- index whose predicate the view implies, message_phone_claimed, 66,000
-- pages for no row, when statistics say the unconfirmed are few)
CREATE VIEW wa_notify._message_unconfirmed AS
SELECT m.id, m.sender, m.status, m.claimed_at, m.held_reason FROM wa_notify.message m
 WHERE m.claimed_at >= '-infinity' AND m.wamid IS NULL AND m.sent_at IS NULL AND m.failed_at IS NULL;
COMMENT ON VIEW wa_notify._message_unconfirmed IS
    'internal: messages claimed and not answered (sending, review), read through the index message_unconfirmed';
REVOKE ALL ON wa_notify._message_unconfirmed FROM PUBLIC;
