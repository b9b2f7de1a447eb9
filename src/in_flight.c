/*-------------------------------------------------------------------------
 * in_flight.c
 *	  How fast a sender may go: the rate Meta allows its number (the
 *	  throughput level the connection check reads), the pacing defaults
 *	  that follow that level, and the number of requests in flight, sized
 *	  by Little's law from the measured response time.
 *
 *	  Throughput levels (Meta, "Throughput",
 *	  https://developers.facebook.com/documentation/business-messaging/whatsapp/throughput):
 *	  a business number takes 80 messages per second by default (level
 *	  STANDARD) and 1,000 after Meta's automatic upgrade (level HIGH);
 *	  inbound messages count too.  An unknown or missing level is taken as
 *	  STANDARD.
 *
 *	  Pacing defaults follow the level.  On a STANDARD number the 1.0
 *	  defaults hold: random 3-10 s delays between sends, 50 messages per
 *	  polling interval, 20 msg/s -- the human-like pacing that keeps a new
 *	  number's quality rating safe.  Meta upgrades a number to HIGH only at
 *	  the unlimited messaging tier with a good quality rating, where that
 *	  pacing only wastes the number: there, a setting left at its default
 *	  (min_delay, max_delay, max_per_batch, max_rate) does not slow it;
 *	  a setting given another value applies as given.
 *
 *	  max_in_flight = 0 (the default) is auto: the rate the sender may reach
 *	  (its level's rate less a share kept for inbound traffic, or max_rate
 *	  when that is lower, times the throttle factor) times the response
 *	  time (EWMA of the answers) is how many requests Little's law says are
 *	  in flight at that rate.  Without a rate cap (max_rate 0, or at its
 *	  default on a HIGH number) that size is what keeps the sender at its
 *	  rate; with a cap the starts are spaced and the size gets some headroom
 *	  so that it never is the bottleneck.  Always within [1, WA_IN_FLIGHT_CAP].
 *
 *	  Occupancy.  The dispatcher does not keep its size in flight all the
 *	  time: it claims and records in transactions of its own between the
 *	  starts, and a batch ends when its answers are in.  Little's law, read
 *	  the other way on a batch that had work enough (answers per second
 *	  times the response time, over the size), gives the share of the size
 *	  really in flight; the size is divided by it (an EWMA, kept within
 *	  [WA_OCCUPANCY_MIN, 1]), so that the average in flight is what the
 *	  rate needs -- no more: the rate stays the level's.
 *
 *	  SQL entry point: wa_notify._in_flight_for() (tests).
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "fmgr.h"
#include "utils/builtins.h"

#include "wa_notify.h"
#include "in_flight.h"

#define WA_RATE_STANDARD	80.0	/* msg/s: Meta's default throughput */
#define WA_RATE_HIGH		1000.0	/* msg/s: after Meta's upgrade */
#define WA_LEVEL_SHARE		0.95	/* of the level's rate, for our sends */
#define WA_IN_FLIGHT_CAP	512		/* hard cap of auto max_in_flight */
#define WA_SPACING_HEADROOM 1.25	/* in flight above a spaced rate's need */
#define WA_RESPONSE_GUESS	0.1		/* s: before the first answer */
#define WA_RESPONSE_WEIGHT	0.05	/* EWMA weight of a new answer */
#define WA_UNCAPPED_BATCH	(PG_INT32_MAX / 2)
#define WA_OCCUPANCY_MIN	0.25	/* the size is at most 4x Little's figure */
#define WA_OCCUPANCY_WEIGHT 0.5		/* EWMA weight of a batch's occupancy */
#define WA_OCCUPANCY_SECS	0.5		/* a batch shorter than this says little */

double
wa_level_rate(const char *throughput_level)
{
	if (throughput_level != NULL && strcmp(throughput_level, "HIGH") == 0)
		return WA_RATE_HIGH;
	return WA_RATE_STANDARD;
}

void
wa_pacing_for_level(const WaSettings *set, const char *throughput_level, WaPacing *out)
{
	out->min_delay = set->min_delay;
	out->max_delay = Max(set->max_delay, set->min_delay);
	out->max_per_batch = set->max_per_batch;
	out->max_rate = set->max_rate;
	out->max_in_flight = Max(set->max_in_flight, 0);
	out->level_rate = wa_level_rate(throughput_level);
	if (out->level_rate <= WA_RATE_STANDARD)
		return;
	/* an upgraded number: the human-like defaults do not hold it back */
	if (wa_setting_is_default("min_delay"))
		out->min_delay = 0;
	if (wa_setting_is_default("max_delay"))
		out->max_delay = out->min_delay;
	if (wa_setting_is_default("max_per_batch"))
		out->max_per_batch = WA_UNCAPPED_BATCH;
	if (wa_setting_is_default("max_rate"))
		out->max_rate = 0;		/* the in-flight size keeps the level's rate */
}

void
wa_response_time_observe(WaResponseTime *rt, double secs)
{
	if (secs < 0)
		secs = 0;
	if (rt->samples == 0)
		rt->ewma = secs;
	else
		rt->ewma += WA_RESPONSE_WEIGHT * (secs - rt->ewma);
	if (rt->samples < PG_INT32_MAX)
		rt->samples++;
}

/*
 * After a batch: how much of the size was in flight on average.  Only a
 * batch that had work for its whole run (the queue was not exhausted) and
 * ran long enough tells.
 */
void
wa_in_flight_observe_batch(WaResponseTime *rt, int size, int answered, double secs,
						   bool queue_left)
{
	double		occupancy;

	if (!queue_left || size <= 1 || secs < WA_OCCUPANCY_SECS || rt->samples == 0)
		return;
	occupancy = (answered / secs) * rt->ewma / size;
	occupancy = Min(Max(occupancy, WA_OCCUPANCY_MIN), 1.0);
	if (rt->occupancy <= 0)
		rt->occupancy = occupancy;
	else
		rt->occupancy += WA_OCCUPANCY_WEIGHT * (occupancy - rt->occupancy);
}

/*
 * The most messages a second the dispatcher starts for a sender (0: no
 * cap): its max_rate when set; else, with an auto size, its level's rate,
 * which Meta enforces (the auto size aims at WA_LEVEL_SHARE of it).  The
 * auto size alone is no bound: sized for the worker's own pauses, it would
 * run past the level whenever the pauses are shorter.  A max_in_flight set
 * by hand with max_rate 0 is the admin's own bound, as in 1.0.
 */
double
wa_sender_rate_cap(const WaPacing *pacing)
{
	if (pacing->max_rate > 0)
		return pacing->max_rate;
	return pacing->max_in_flight > 0 ? 0 : pacing->level_rate;
}

/* The most requests in flight a sender's size may grow to (the client's pool). */
int
wa_in_flight_ceiling(const WaPacing *pacing)
{
	return pacing->max_in_flight > 0 ? pacing->max_in_flight : WA_IN_FLIGHT_CAP;
}

/* Requests in flight for one sender (the dispatcher asks before each batch). */
int
wa_sender_in_flight(const WaPacing *pacing, const WaResponseTime *rt, double rate_factor)
{
	double		rate = pacing->level_rate * WA_LEVEL_SHARE;
	double		headroom = 1.0;
	double		response = rt->samples > 0 ? rt->ewma : WA_RESPONSE_GUESS;
	double		n;

	if (rate_factor <= 0 || rate_factor > 1)
		rate_factor = 1;
	if (pacing->max_in_flight > 0)
	{
		/* as configured; a throttle without a rate cap lowers it */
		if (pacing->max_rate <= 0 && rate_factor < 1)
			return Max(1, (int) (pacing->max_in_flight * rate_factor));
		return pacing->max_in_flight;
	}
	if (pacing->max_rate > 0)
	{
		rate = Min(rate, pacing->max_rate);
		headroom = WA_SPACING_HEADROOM;
	}
	n = ceil(rate * rate_factor * response * headroom - 1e-9);	/* 95.000...01 is 95 */
	if (rt->occupancy > 0)
		n = ceil(n / rt->occupancy - 1e-9);
	return (int) Min(Max(n, 1), WA_IN_FLIGHT_CAP);
}

/*
 * wa_notify._in_flight_for(throughput_level, max_rate, max_in_flight,
 * rate_factor, response_time): the size the dispatcher would use.
 */
PG_FUNCTION_INFO_V1(wa_notify_in_flight_for);
Datum
wa_notify_in_flight_for(PG_FUNCTION_ARGS)
{
	WaPacing	p = {0};
	WaResponseTime rt = {0};

	if (PG_ARGISNULL(1) || PG_ARGISNULL(2) || PG_ARGISNULL(3))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("max_rate, max_in_flight and rate_factor must not be NULL")));
	p.level_rate = wa_level_rate(PG_ARGISNULL(0) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(0)));
	p.max_rate = PG_GETARG_FLOAT8(1);
	p.max_in_flight = PG_GETARG_INT32(2);
	if (!PG_ARGISNULL(4))
		wa_response_time_observe(&rt, PG_GETARG_FLOAT8(4));
	PG_RETURN_INT32(wa_sender_in_flight(&p, &rt, PG_GETARG_FLOAT8(3)));
}
