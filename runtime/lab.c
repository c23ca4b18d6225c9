/*
 * lab.c: the lab's tools, `netlua -m NAME [args]` (layer: runtime). Each
 * tool is a Lua program embedded from lab/NAME.lua; the modules the tools
 * share (lab/_NAME.lua, and scripts/cli.lua, chatroom.lua, imageapi.lua)
 * are embedded with them and found by require, but only once main has
 * enabled the lab: a script's own cli.lua is never shadowed by ours.
 */
#include <string.h>

#include "netlua.h"

static int lab_enabled; /* set by main before any state or thread is made */

static int is_tool(const nl_Embedded *e) {
  return e->summary[0] != '\0';
}

const nl_Embedded *nl_lab_tool(const char *name) {
  for (const nl_Embedded *e = nl_lab; e->name != NULL; e++)
    if (is_tool(e) && strcmp(e->name, name) == 0) return e;
  return NULL;
}

void nl_lab_list(FILE *out) {
  for (const nl_Embedded *e = nl_lab; e->name != NULL; e++)
    if (is_tool(e)) fprintf(out, "  %-12s %s\n", e->name, e->summary);
}

void nl_lab_enable(void) {
  lab_enabled = 1;
}

/* package.preload's loader for one lab module (upvalue: its entry). */
static int open_lab_module(lua_State *L) {
  const nl_Embedded *e = lua_touserdata(L, lua_upvalueindex(1));
  if (luaL_loadbuffer(L, e->source, e->size, e->chunkname) != LUA_OK) lua_error(L);
  lua_pushstring(L, e->name);
  lua_call(L, 1, 1);
  return 1;
}

void nl_lab_preload(lua_State *L) {
  if (!lab_enabled) return;
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  for (const nl_Embedded *e = nl_lab; e->name != NULL; e++) {
    if (is_tool(e)) continue;
    lua_pushlightuserdata(L, (void *)e);
    lua_pushcclosure(L, open_lab_module, 1);
    lua_setfield(L, -2, e->name);
  }
  lua_pop(L, 1);
}
