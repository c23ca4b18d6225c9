/*
 * websocket.c: the websocket module's C half (layer: bindings): the frame
 * codec of runtime/wsframe.c as four functions for the Lua half
 * (bindings/websocket.lua), which runs the protocol (handshakes,
 * reassembly, control frames, the closing handshake) for http.server's
 * srv:websocket and the http.websocket client.
 *
 *   parse(s)                 -> fin (0|1), rsv, opcode, masked, length, key, size
 *                             | nil, size (s is too short: the header has size bytes)
 *                             | false, why
 *   frame(opcode, fin, payload[, key]) -> the whole frame as one string
 *   unmask(data, key)        -> data XOR the key
 *   utf8(state, data)        -> the state after data (0: between
 *                               characters) | nil (not UTF-8)
 *   tracing, trace(...)      --trace (runtime/tracelua.c)
 */
#include <string.h>

#include "modules.h"
#include "netlua.h"
#include "wsframe.h"

static int ws_parse(lua_State *L) {
  size_t len;
  const unsigned char *s = (const unsigned char *)luaL_checklstring(L, 1, &len);
  nl_WsHeader h;
  const char *why = NULL;
  int n = nl_ws_parse(s, len, &h, &why);
  if (n < 0) {
    lua_pushboolean(L, 0);
    lua_pushstring(L, why);
    return 2;
  }
  if (n == 0) {
    luaL_pushfail(L);
    lua_pushinteger(L, (lua_Integer)h.size);
    return 2;
  }
  lua_pushinteger(L, h.fin);
  lua_pushinteger(L, h.rsv);
  lua_pushinteger(L, h.opcode);
  lua_pushboolean(L, h.masked);
  lua_pushinteger(L, (lua_Integer)h.length); /* below 2^63: parse checked */
  if (h.masked) lua_pushlstring(L, (const char *)h.key, 4);
  else lua_pushnil(L);
  lua_pushinteger(L, (lua_Integer)h.size);
  return 7;
}

/* An optional 4-byte mask key at arg; NULL when absent. */
static const unsigned char *optkey(lua_State *L, int arg) {
  size_t len;
  const char *key = luaL_optlstring(L, arg, NULL, &len);
  if (key != NULL && len != 4) luaL_argerror(L, arg, "a mask key is 4 bytes");
  return (const unsigned char *)key;
}

/* One string per frame, so that one socket send writes it whole: frames
 * sent by two tasks never interleave. */
static int ws_frame(lua_State *L) {
  lua_Integer opcode = luaL_checkinteger(L, 1);
  int fin = lua_toboolean(L, 2);
  size_t len, hsize;
  const char *payload = luaL_checklstring(L, 3, &len);
  const unsigned char *key = optkey(L, 4);
  unsigned char head[NL_WS_MAXHEADER];
  luaL_Buffer b;
  char *out;
  luaL_argcheck(L, opcode >= 0 && opcode <= 15, 1, "an opcode is 0..15");
  hsize = nl_ws_header(head, fin, (int)opcode, len, key);
  out = luaL_buffinitsize(L, &b, hsize + len);
  memcpy(out, head, hsize);
  memcpy(out + hsize, payload, len);
  if (key != NULL) nl_ws_mask((unsigned char *)out + hsize, len, key, 0);
  luaL_pushresultsize(&b, hsize + len);
  return 1;
}

static int ws_unmask(lua_State *L) {
  size_t len;
  const char *data = luaL_checklstring(L, 1, &len);
  const unsigned char *key = optkey(L, 2);
  luaL_Buffer b;
  char *out;
  luaL_argcheck(L, key != NULL, 2, "a mask key is 4 bytes");
  out = luaL_buffinitsize(L, &b, len);
  memcpy(out, data, len);
  nl_ws_mask((unsigned char *)out, len, key, 0);
  luaL_pushresultsize(&b, len);
  return 1;
}

static int ws_utf8(lua_State *L) {
  lua_Integer state = luaL_checkinteger(L, 1);
  size_t len;
  const unsigned char *s = (const unsigned char *)luaL_checklstring(L, 2, &len);
  int next;
  luaL_argcheck(L, state >= 0 && state < 32, 1, "not a UTF-8 state");
  next = nl_utf8_feed((int)state, s, len);
  if (next == NL_UTF8_BAD) luaL_pushfail(L);
  else lua_pushinteger(L, next);
  return 1;
}

static const luaL_Reg codec_funcs[] = {
  {"parse", ws_parse},
  {"frame", ws_frame},
  {"unmask", ws_unmask},
  {"utf8", ws_utf8},
  {NULL, NULL}
};

int luaopen_websocket(lua_State *L) {
  luaL_newlib(L, codec_funcs);
  nl_trace_export(L);
  nl_runembedded(L, "websocket", 1);
  return 1;
}
