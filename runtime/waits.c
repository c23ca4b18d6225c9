/*
 * waits.c: what a state is still waiting on, in words (layer: runtime). When
 * Ctrl-C ends a script whose main chunk had returned but which waited for
 * tasks or threads that never finish, netlua lists each of them, what it
 * waits on and where in the script, instead of a bare "interrupted". The
 * frames are read here (lua_getstack/lua_getlocal on the waiting call); the
 * words come from runtime/waits.lua, which looks at the call's arguments
 * (a socket's addresses, a channel, a thread's name). Nothing here runs
 * until such a Ctrl-C: no wait pays for it.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "netlua.h"

#define DESCRIBER_KEY "netlua.waits"
#define EMBEDDED_PREFIX "=[netlua]"

static atomic_int reporting;

void nl_report_waits(void) { atomic_store(&reporting, 1); }
int nl_reporting_waits(void) { return atomic_load(&reporting); }

void nl_print_waits(const char *lines) {
  static int header_done;
  if (lines == NULL || lines[0] == '\0') return;
  fflush(stdout); /* what the script printed comes first */
  if (!header_done)
    fprintf(stderr, "%s: the script had ended and was still waiting for:\n", NL_PROGNAME);
  header_done = 1;
  fputs(lines, stderr);
  fflush(stderr);
}

/* waits.lua's function, loaded once per state and kept in the registry. */
static void push_describer(lua_State *L) {
  if (lua_getfield(L, LUA_REGISTRYINDEX, DESCRIBER_KEY) == LUA_TFUNCTION) return;
  lua_pop(L, 1);
  nl_runembedded(L, "waits", 0);
  lua_pushvalue(L, -1);
  lua_setfield(L, LUA_REGISTRYINDEX, DESCRIBER_KEY);
}

/* Pushes "file:line" of the innermost frame of the script's own code at or
 * above `level` (the Lua halves of modules are skipped: http.server's accept
 * is reported where the script called serve), or nil. */
static void push_where(lua_State *L, lua_State *co, int level) {
  lua_Debug ar;
  for (; lua_getstack(co, level, &ar); level++) {
    if (!lua_getinfo(co, "Sl", &ar) || ar.currentline <= 0) continue;
    if (strncmp(ar.source, EMBEDDED_PREFIX, sizeof EMBEDDED_PREFIX - 1) == 0) continue;
    lua_pushfstring(L, "%s:%d", ar.short_src, ar.currentline);
    return;
  }
  lua_pushnil(L);
}

/* Pushes the call's first three values (self and two arguments), nil where
 * there are fewer. */
static void push_arguments(lua_State *L, lua_State *co, lua_Debug *ar) {
  for (int i = 1; i <= 3; i++) {
    if (co != L && !lua_checkstack(co, 1)) {
      lua_pushnil(L);
      continue;
    }
    if (lua_getlocal(co, ar, i) == NULL) lua_pushnil(L);
    else if (co != L) lua_xmove(co, L, 1);
  }
}

void nl_describe_wait(lua_State *L, lua_State *co, int level) {
  lua_Debug ar;
  int top = lua_gettop(L);
  luaL_checkstack(L, 8, NULL);
  push_describer(L);
  if (lua_getstack(co, level, &ar) && lua_getinfo(co, "nS", &ar)) {
    if (ar.what[0] != 'C') lua_pushliteral(L, "running");
    else if (ar.name != NULL) lua_pushstring(L, ar.name);
    else lua_pushnil(L);
    push_where(L, co, level);
    if (ar.what[0] == 'C') push_arguments(L, co, &ar);
  } else {
    lua_pushliteral(L, "not started");
    lua_pushnil(L);
  }
  if (lua_pcall(L, lua_gettop(L) - top - 1, 1, 0) != LUA_OK || !lua_isstring(L, -1)) {
    lua_settop(L, top);
    lua_pushliteral(L, "waiting");
  }
}

/* The thread's stop hook stays off while the words are found: it would
 * stop the finding. */
void nl_note_stop(lua_State *L) {
  lua_Hook hook;
  int mask, count;
  if (nl_in_task(L) || !lua_checkstack(L, 10)) return;
  if (lua_getfield(L, LUA_REGISTRYINDEX, NL_STOPPED_KEY) != LUA_TNIL) {
    lua_pop(L, 1);
    return;
  }
  lua_pop(L, 1);
  hook = lua_gethook(L);
  mask = lua_gethookmask(L);
  count = lua_gethookcount(L);
  lua_sethook(L, NULL, 0, 0);
  nl_describe_wait(L, L, 0);
  lua_setfield(L, LUA_REGISTRYINDEX, NL_STOPPED_KEY);
  lua_sethook(L, hook, mask, count);
}
