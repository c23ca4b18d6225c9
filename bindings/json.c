/*
 * json.c: the json module, lua-cjson with netlua's additions (layer:
 * bindings). Upstream cjson does the work; json.lua adds line/column decode
 * errors and an encoder for pretty printing and explicit arrays. encode()
 * here decides which encoder a value needs: cjson's fast one unless options
 * are given or a table in the value is marked as an array.
 */
#include "netlua.h"
#include "modules.h"

int luaopen_cjson(lua_State *L); /* lua-cjson's; json.c alone calls it */

#define JSON_ARRAY_MT "json.array"
#define JSON_EMPTY_ARRAY_MT "json.empty_array"
#define MAX_SCAN_DEPTH 1000

/* upvalues of encode: 1 cjson.encode, 2 json._encode_ext, 3 array_mt,
 * 4 empty_array's metatable */

static int is_marked_array(lua_State *L, int idx) {
  int marked;
  if (!lua_getmetatable(L, idx)) return 0;
  marked = lua_rawequal(L, -1, lua_upvalueindex(3)) ||
           lua_rawequal(L, -1, lua_upvalueindex(4));
  lua_pop(L, 1);
  return marked;
}

/* True when a table reachable from the value at idx is marked as an array.
 * Stops at cjson's nesting limit and lets cjson report that. */
static int has_marked_array(lua_State *L, int idx, int depth) {
  int found = 0;
  if (lua_type(L, idx) != LUA_TTABLE || depth > MAX_SCAN_DEPTH) return 0;
  if (is_marked_array(L, idx)) return 1;
  luaL_checkstack(L, 3, "json: nesting too deep");
  idx = lua_absindex(L, idx);
  lua_pushnil(L);
  while (!found && lua_next(L, idx) != 0) {
    found = has_marked_array(L, -1, depth + 1);
    lua_pop(L, 1);
  }
  if (found) lua_pop(L, 1); /* the key lua_next left */
  return found;
}

static int json_encode(lua_State *L) {
  int with_options = !lua_isnoneornil(L, 2);
  luaL_checkany(L, 1);
  if (with_options) luaL_checktype(L, 2, LUA_TTABLE);
  lua_settop(L, 2);
  if (with_options || has_marked_array(L, 1, 0)) {
    lua_pushvalue(L, lua_upvalueindex(2)); /* json._encode_ext(v, opts) */
    lua_insert(L, 1);
    lua_call(L, 2, 1);
  } else {
    lua_settop(L, 1);
    lua_pushvalue(L, lua_upvalueindex(1)); /* cjson.encode(v) */
    lua_insert(L, 1);
    lua_call(L, 1, 1);
  }
  return 1;
}

/* json.array(t): marks t as an array (so {} encodes as []) and returns it. */
static int json_array(lua_State *L) {
  if (lua_isnoneornil(L, 1)) {
    lua_settop(L, 0);
    lua_newtable(L);
  }
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_setmetatable(L, 1);
  return 1;
}

static int refuse_write(lua_State *L) {
  return luaL_error(L, "json.empty_array is read-only");
}

int luaopen_json(lua_State *L) {
  lua_settop(L, 0);
  luaopen_cjson(L);                        /* 1: cjson */
  luaL_newmetatable(L, JSON_ARRAY_MT);     /* 2: array_mt */
  luaL_newmetatable(L, JSON_EMPTY_ARRAY_MT); /* 3: empty array's mt */
  lua_pushcfunction(L, refuse_write);
  lua_setfield(L, 3, "__newindex");
  lua_pushvalue(L, 1);
  lua_pushvalue(L, 2);
  lua_pushvalue(L, 3);
  nl_runembedded(L, "json", 3);            /* 4: module */
  lua_getfield(L, 1, "encode");
  lua_getfield(L, 4, "_encode_ext");
  lua_pushvalue(L, 2);
  lua_pushvalue(L, 3);
  lua_pushcclosure(L, json_encode, 4);
  lua_setfield(L, 4, "encode");
  lua_pushvalue(L, 2);
  lua_pushcclosure(L, json_array, 1);
  lua_setfield(L, 4, "array");
  return 1;
}
