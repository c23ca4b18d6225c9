/*
 * clock.c: the clocks and deadlines every wait is measured by (layer:
 * runtime, no Lua).
 */
#include <time.h>

#include "netlua.h"

double nl_monotonic(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

double nl_walltime(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)ts.tv_sec + (double)(ts.tv_nsec / 1000) / 1e6;
}

/* math.huge, NaN and negative timeouts mean no limit; so does one too far
 * off to matter (a deadline is then never a huge number either). */
double nl_deadline(double timeout) {
  if (!(timeout >= 0) || timeout > NL_MAXTIMEOUT) return NL_NODEADLINE;
  return nl_monotonic() + timeout;
}
