/*
 * httpreq.c: the request table http.server hands its Lua half (layer:
 * bindings): a parsed request (runtime/httpparse.c) as method, target,
 * path (decoded) and raw_path, rawquery, headers, trailers, body or
 * body_file, version and peer, with the fields the Lua half needs; made by
 * conn:read (bindings/httpconn.c).
 */
#include <stdlib.h>
#include <string.h>

#include "httpserver.h"
#include "codec.h"

/* The request table's field names, interned once per Lua state and kept
 * in a registry table: setting a field by a key already on the stack skips
 * lua_setfield's lookup of the C string (luaS_new and a strcmp for every
 * field of every request: about 600 instructions a request, by callgrind). */
enum {
  KEY_METHOD = 1, KEY_TARGET, KEY_PATH, KEY_RAW_PATH, KEY_RAWQUERY, KEY_HEADERS, KEY_TRAILERS,
  KEY_BODY, KEY_BODY_FILE, KEY_UPLOADS, KEY_SPECIAL, KEY_VERSION, KEY_PEER, KEY_CONN,
  KEY_SERVER, KEY_COUNT = KEY_SERVER
};
static const char *const request_keys[KEY_COUNT] = {
  "method", "target", "path", "raw_path", "rawquery", "headers", "trailers",
  "body", "body_file", "uploads", "_special", "version", "peer", "_conn",
  "server",
};
static const char request_keys_slot = 0; /* its address: the registry key */

/* Pushes the table of field names, making it on first use. [-0, +1, m] */
static void push_request_keys(lua_State *L) {
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &request_keys_slot) == LUA_TTABLE) return;
  lua_pop(L, 1);
  lua_createtable(L, KEY_COUNT, 0);
  for (int k = 0; k < KEY_COUNT; k++) {
    lua_pushstring(L, request_keys[k]);
    lua_rawseti(L, -2, k + 1);
  }
  lua_pushvalue(L, -1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &request_keys_slot);
}

/* Pushes field name `key` of the table at absolute index keys; its value
 * goes on top, then lua_rawset(L, t) sets both (no lua_insert: a rotation
 * of the stack per field costs more than the lookup it saves). [-0, +1, -] */
static void push_key(lua_State *L, int keys, int key) {
  lua_rawgeti(L, keys, key);
}

/* Slots a field table starts with: most requests carry a few fields, and
 * a table grown from empty is rebuilt at 1, 2 and 4 (counting them first
 * would walk the block twice). */
#define FIELD_SLOTS 4

/* Pushes a table of fields (names are lower case; repeats joined with
 * ", "). [-0, +1, m] */
static void push_fields(lua_State *L, const nl_Buf *fields) {
  size_t off = 0, nlen, vlen;
  const char *name, *value;
  lua_createtable(L, 0, FIELD_SLOTS);
  while (nl_http_next_field(fields, &off, &name, &nlen, &value, &vlen)) {
    lua_pushlstring(L, name, nlen);
    lua_pushvalue(L, -1);
    if (lua_rawget(L, -3) == LUA_TSTRING) {
      lua_pushliteral(L, ", ");
      lua_pushlstring(L, value, vlen);
      lua_concat(L, 3);
    } else {
      lua_pop(L, 1);
      lua_pushlstring(L, value, vlen);
    }
    lua_rawset(L, -3);
  }
}

/* The request's body: the string, or the path of the file it went to
 * (an upload's), which the Lua half reads and removes: it is then the
 * first of req.uploads, and req._special says the request needs more than
 * a reply. [-0, +0, m] */
static void set_body(lua_State *L, nl_HttpRequest *r, int t, int keys) {
  char *path = nl_http_take_spool(r);
  if (path == NULL) {
    push_key(L, keys, KEY_BODY);
    lua_pushlstring(L, r->body.data ? r->body.data : "", r->body.len);
    lua_rawset(L, t);
    return;
  }
  push_key(L, keys, KEY_BODY_FILE);
  lua_pushstring(L, path);
  free(path);
  push_key(L, keys, KEY_UPLOADS);
  lua_createtable(L, 1, 0);
  lua_pushvalue(L, -3);
  lua_rawseti(L, -2, 1);
  lua_rawset(L, t);
  lua_rawset(L, t);
  push_key(L, keys, KEY_SPECIAL);
  lua_pushboolean(L, 1);
  lua_rawset(L, t);
}

/* Pushes the path with each %XX (two hex digits) decoded; any other '%'
 * stays as it is. [-0, +1, m] */
static void push_decoded(lua_State *L, const char *s, size_t len) {
  luaL_Buffer b;
  nl_CodecError err;
  luaL_buffinit(L, &b);
  for (size_t i = 0; i < len; i++) {
    unsigned char byte;
    if (s[i] == '%' && i + 2 < len && nl_hex_decode(&byte, s + i + 1, 2, &err) == 1) {
      luaL_addchar(&b, (char)byte);
      i += 2;
    } else {
      luaL_addchar(&b, s[i]);
    }
  }
  luaL_pushresult(&b);
}

/* Sets raw_path, the path as it came, and path, decoded. [-0, +0, m] */
static void set_path(lua_State *L, int t, int keys, const char *path, size_t len) {
  lua_pushlstring(L, path, len);
  push_key(L, keys, KEY_RAW_PATH);
  lua_pushvalue(L, -2);
  lua_rawset(L, t);
  push_key(L, keys, KEY_PATH);
  if (memchr(path, '%', len) != NULL) push_decoded(L, path, len);
  else lua_pushvalue(L, -2);
  lua_rawset(L, t);
  lua_pop(L, 1);
}

/* Pushes the request table: method, target, path (decoded), raw_path,
 * rawquery, headers, trailers (a chunked body's trailer fields, when it had
 * any), body (or body_file), version, peer; and for the Lua half, its
 * metatable (argument 2 of read), _conn (the connection) and server
 * (argument 3). [-0, +1, m] */
void httpreq_push(lua_State *L, nl_HttpRequest *r, const char *peer) {
  const char *target = r->target.data ? r->target.data : "", *path, *query;
  size_t pathlen, querylen;
  int keys, t;
  nl_http_split_target(target, r->target.len, &path, &pathlen, &query, &querylen);
  lua_createtable(L, 0, 16); /* its fields and the ones the Lua half adds (params, lazy ones) */
  t = lua_gettop(L);
  if (lua_istable(L, 2)) {
    lua_pushvalue(L, 2);
    lua_setmetatable(L, t);
  }
  push_request_keys(L);
  keys = lua_gettop(L);
  push_key(L, keys, KEY_METHOD);
  lua_pushstring(L, r->method);
  lua_rawset(L, t);
  push_key(L, keys, KEY_TARGET);
  lua_pushlstring(L, target, r->target.len);
  lua_rawset(L, t);
  set_path(L, t, keys, path, pathlen);
  push_key(L, keys, KEY_RAWQUERY);
  lua_pushlstring(L, query, querylen);
  lua_rawset(L, t);
  push_key(L, keys, KEY_HEADERS);
  push_fields(L, &r->headers);
  lua_rawset(L, t);
  if (r->trailers.len > 0) {
    push_key(L, keys, KEY_TRAILERS);
    push_fields(L, &r->trailers);
    lua_rawset(L, t);
  }
  set_body(L, r, t, keys);
  push_key(L, keys, KEY_VERSION);
  { /* "1.1": the parser takes one digit each (lua_pushfstring cost ~2,000 instructions) */
    char version[3] = {(char)('0' + r->major), '.', (char)('0' + r->minor)};
    lua_pushlstring(L, version, sizeof version);
  }
  lua_rawset(L, t);
  push_key(L, keys, KEY_PEER);
  lua_pushstring(L, peer);
  lua_rawset(L, t);
  push_key(L, keys, KEY_CONN);
  lua_pushvalue(L, 1);
  lua_rawset(L, t);
  if (!lua_isnil(L, 3)) {
    push_key(L, keys, KEY_SERVER);
    lua_pushvalue(L, 3);
    lua_rawset(L, t);
  }
  lua_pop(L, 1); /* the keys */
}

