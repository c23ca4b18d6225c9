/*
 * time.c: the time module (layer: bindings): wall and monotonic clocks,
 * an interruptible sleep, and Python-style date formatting.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "netlua.h"
#include "modules.h"

static int time_now(lua_State *L) {
  lua_pushnumber(L, nl_walltime());
  return 1;
}

static int time_monotonic(lua_State *L) {
  lua_pushnumber(L, nl_monotonic());
  return 1;
}

/* Splits the optional timestamp at `idx` (default: now) into local broken-
 * down time and microseconds, rounding as Python does to the microsecond. */
static void local_time_at(lua_State *L, int idx, struct tm *tm, long *usec) {
  double t = luaL_optnumber(L, idx, nl_walltime());
  double whole = floor(t);
  time_t secs;
  long micro;
  luaL_argcheck(L, isfinite(t), idx, "time must be a finite number");
  /* years within +-30 million: time_t holds it, localtime_r answers */
  luaL_argcheck(L, fabs(t) < 1e15, idx, "time out of range");
  micro = lround((t - whole) * 1e6);
  if (micro >= 1000000) {
    whole += 1;
    micro -= 1000000;
  }
  secs = (time_t)whole;
  if (localtime_r(&secs, tm) == NULL) luaL_argerror(L, idx, "time out of range");
  *usec = micro;
}

/* v (0 <= v < 10^width) as `width` digits, zeros in front, at p; returns
 * the end. */
static char *put_digits(char *p, long v, int width) {
  for (int i = width - 1; i >= 0; i--) {
    p[i] = (char)('0' + v % 10);
    v /= 10;
  }
  return p + width;
}

/* tm and usec as "YYYY-MM-DD HH:MM:SS[.ffffff]" at text (32 bytes at
 * least) for years 0 to 9999, by hand: snprintf took 5,000 instructions,
 * a quarter of what the time server does per client. Returns the length. */
static size_t format_datetime(char *text, const struct tm *tm, long usec) {
  char *p = put_digits(text, tm->tm_year + 1900L, 4);
  *p++ = '-';
  p = put_digits(p, tm->tm_mon + 1, 2);
  *p++ = '-';
  p = put_digits(p, tm->tm_mday, 2);
  *p++ = ' ';
  p = put_digits(p, tm->tm_hour, 2);
  *p++ = ':';
  p = put_digits(p, tm->tm_min, 2);
  *p++ = ':';
  p = put_digits(p, tm->tm_sec, 2);
  if (usec != 0) {
    *p++ = '.';
    p = put_digits(p, usec, 6);
  }
  return (size_t)(p - text);
}

/* time.datetime([t]): "YYYY-MM-DD HH:MM:SS.ffffff" as Python's
 * str(datetime) prints it, which leaves out a zero microsecond part. Years
 * outside 0-9999 (which Python refuses) print as C's %04d does. */
static int time_datetime(lua_State *L) {
  struct tm tm;
  long usec;
  char text[64];
  int len;
  local_time_at(L, 1, &tm, &usec);
  if (tm.tm_year + 1900L >= 0 && tm.tm_year + 1900L <= 9999) {
    lua_pushlstring(L, text, format_datetime(text, &tm, usec));
    return 1;
  }
  len = snprintf(text, sizeof text, "%04d-%02d-%02d %02d:%02d:%02d",
                 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                 tm.tm_min, tm.tm_sec);
  if (usec != 0)
    snprintf(text + len, sizeof text - (size_t)len, ".%06ld", usec);
  lua_pushstring(L, text);
  return 1;
}

/* Copies fmt into b with %f replaced by the six-digit microseconds. */
static void expand_microseconds(luaL_Buffer *b, const char *fmt, long usec) {
  char digits[8];
  snprintf(digits, sizeof digits, "%06ld", usec);
  for (const char *p = fmt; *p != '\0'; p++) {
    if (p[0] == '%' && p[1] == 'f') {
      luaL_addstring(b, digits);
      p++;
    } else if (p[0] == '%' && p[1] != '\0') {
      luaL_addchar(b, p[0]);
      luaL_addchar(b, p[1]);
      p++;
    } else {
      luaL_addchar(b, *p);
    }
  }
}

/* time.format(fmt[, t]): strftime in local time, plus %f (microseconds). */
static int time_format(lua_State *L) {
  const char *fmt = luaL_checkstring(L, 1);
  struct tm tm;
  long usec;
  luaL_Buffer b;
  local_time_at(L, 2, &tm, &usec);
  luaL_buffinit(L, &b);
  expand_microseconds(&b, fmt, usec);
  luaL_addchar(&b, '\1'); /* sentinel: tells an empty result from overflow */
  luaL_pushresult(&b);
  const char *expanded = lua_tostring(L, -1);
  for (size_t size = 256;; size *= 2) {
    char *out = lua_newuserdatauv(L, size, 0);
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
    size_t len = strftime(out, size, expanded, &tm); /* the user's format */
#pragma GCC diagnostic pop
    if (len > 0) {
      lua_pushlstring(L, out, len - 1); /* drop the sentinel */
      return 1;
    }
    lua_pop(L, 1);
    luaL_argcheck(L, size < 65536, 1, "format produces too long a string");
  }
}

static const luaL_Reg time_funcs[] = {
  {"now", time_now},
  {"monotonic", time_monotonic},
  {"sleep", nl_sleep_lua},
  {"datetime", time_datetime},
  {"format", time_format},
  {NULL, NULL}
};

int luaopen_time(lua_State *L) {
  luaL_newlib(L, time_funcs);
  return 1;
}
