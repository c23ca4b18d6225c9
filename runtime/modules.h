/*
 * modules.h: the luaopen_* function of every built-in module (layer:
 * runtime). state.c preloads each into every state; each binding defines
 * exactly one of these (json.c two: json and cjson.safe) and nothing else
 * that is not static. lfs is LuaFileSystem's own (Debian's, linked
 * statically as lua-cjson is).
 */
#ifndef NETLUA_MODULES_H
#define NETLUA_MODULES_H

#include "lua.h"

int luaopen_json(lua_State *L);
int luaopen_json_safe(lua_State *L);
int luaopen_time(lua_State *L);
int luaopen_http(lua_State *L);
int luaopen_http_server(lua_State *L);
int luaopen_thread(lua_State *L);
int luaopen_socket(lua_State *L);
int luaopen_task(lua_State *L);
int luaopen_crypto(lua_State *L);
int luaopen_ssl(lua_State *L);
int luaopen_ssl_https(lua_State *L);
int luaopen_websocket(lua_State *L);
int luaopen_lfs(lua_State *L);

#endif
