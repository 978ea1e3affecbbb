/*
 * clock.h - the node's wall clock in milliseconds, for what goes into the
 * log (entry times, lease and retry times). Never called by the state
 * machine, which takes its times from the entries.
 */
#ifndef SR_NODE_CLOCK_H
#define SR_NODE_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline uint64_t sr_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

#endif
