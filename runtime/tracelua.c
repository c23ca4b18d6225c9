/*
 * tracelua.c: --trace for the modules' Lua halves (layer: runtime). The
 * WebSocket protocol and server-sent events are written in Lua
 * (bindings/websocket.lua, httpstream.lua); their C halves hand them
 * `tracing` (whether --trace is on, fixed for the process) and
 * `trace(name, fd, key, value, ...)`, which records one event through
 * trace.c. The Lua side tests `tracing` first, so off it costs a field
 * lookup and nothing is built.
 */
#include "netlua.h"
#include "trace.h"

#define FIELDS 8 /* fields one event may have */

/* trace(name, fd|nil, key, value, ...): values are integers or strings. */
static int trace_note(lua_State *L) {
  const char *keys[FIELDS], *strs[FIELDS];
  long long ints[FIELDS];
  const char *name = luaL_checkstring(L, 1);
  int fd = (int)luaL_optinteger(L, 2, -1), n = 0;
  for (int i = 3; i < lua_gettop(L) && n < FIELDS; i += 2, n++) {
    keys[n] = luaL_checkstring(L, i);
    ints[n] = lua_isinteger(L, i + 1) ? (long long)lua_tointeger(L, i + 1) : 0;
    strs[n] = lua_isinteger(L, i + 1) ? NULL : luaL_checkstring(L, i + 1);
  }
  if (nl_trace_on) nl_trace_note(name, fd, n, keys, strs, ints);
  return 0;
}

void nl_trace_export(lua_State *L) {
  lua_pushboolean(L, nl_trace_on);
  lua_setfield(L, -2, "tracing");
  lua_pushcfunction(L, trace_note);
  lua_setfield(L, -2, "trace");
}
