/*-------------------------------------------------------------------------
 * in_flight.h
 *	  How fast a sender may go (in_flight.c): the rate of its throughput
 *	  level, the pacing defaults that follow the level, and the requests
 *	  in flight sized by Little's law from the measured response time.
 *-------------------------------------------------------------------------
 */
#ifndef WA_IN_FLIGHT_H
#define WA_IN_FLIGHT_H

#include "postgres.h"

#include "settings.h"

/* The response time of one sender's requests, as an EWMA. */
typedef struct WaResponseTime
{
	double		ewma;			/* seconds */
	int			samples;
	double		occupancy;		/* measured in flight / size (0: not yet) */
} WaResponseTime;

/* A sender's pacing, once its level's defaults are applied. */
typedef struct WaPacing
{
	double		min_delay;		/* s */
	double		max_delay;		/* s */
	int			max_per_batch;	/* per polling interval */
	double		max_rate;		/* msg/s, 0: no spacing */
	int			max_in_flight;	/* 0: auto */
	double		level_rate;		/* msg/s Meta allows this number */
} WaPacing;

extern double wa_level_rate(const char *throughput_level);
extern void wa_pacing_for_level(const WaSettings *set, const char *throughput_level,
								WaPacing *out);
extern void wa_response_time_observe(WaResponseTime *rt, double secs);
extern void wa_in_flight_observe_batch(WaResponseTime *rt, int size, int answered,
									   double secs, bool queue_left);
extern int	wa_in_flight_ceiling(const WaPacing *pacing);
extern double wa_sender_rate_cap(const WaPacing *pacing);
extern int	wa_sender_in_flight(const WaPacing *pacing, const WaResponseTime *rt,
								double rate_factor);

#endif
