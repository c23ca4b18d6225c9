/*
 * httphead.c: the head lines of a handler's headers table, for http.server
 * (layer: bindings; core.headlines, called by bindings/httpserver.lua for
 * every reply that comes with headers). It was Lua code: a pattern match,
 * a lower() and three strings per field, a table, a sort and a concat
 * doubled the CPU a "hello" request costs once its handler named a
 * Content-Type.
 *
 * headlines(headers[, default]) -> lines, typed
 *   lines   "Name: value\r\n" for each field, sorted (byte order); a list
 *           value makes one line per element (several Set-Cookie fields).
 *           A field whose name is not a token, or whose value holds CR, LF
 *           or NUL, is dropped (it would split or cut the head), as are
 *           the framing fields the server writes itself (Content-Length,
 *           Transfer-Encoding, Connection, Date).
 *   typed   whether a field is named Content-Type (any case); when none
 *           is, `default` (a whole line) is sorted in with the others.
 * headers may be nil (no fields); a __pairs metamethod is honoured, as by
 * pairs(). The table is only read, never changed.
 */
#include <stdlib.h>
#include <string.h>

#include "httpserver.h"

static int is_framing(const char *name, size_t len) {
  return nl_http_token_is(name, len, "content-length") ||
         nl_http_token_is(name, len, "transfer-encoding") ||
         nl_http_token_is(name, len, "connection") || nl_http_token_is(name, len, "date");
}

/* tostring(value at idx), pushed: the string itself when it is one (a
 * string's metatable has no __tostring to look for). */
static const char *as_text(lua_State *L, int idx, size_t *len) {
  if (lua_type(L, idx) != LUA_TSTRING) return luaL_tolstring(L, idx, len);
  lua_pushvalue(L, idx);
  return lua_tolstring(L, -1, len);
}

/* Adds the line on top to the lines at `lines`, which hold nil (none yet),
 * a string (one line: most replies need no table) or a table of them. Pops
 * it. */
static void keep_line(lua_State *L, int lines) {
  int have = lua_type(L, lines);
  if (have == LUA_TNIL) {
    lua_replace(L, lines);
  } else if (have == LUA_TSTRING) {
    lua_createtable(L, 4, 0);
    lua_pushvalue(L, lines);
    lua_rawseti(L, -2, 1);
    lua_insert(L, -2);
    lua_rawseti(L, -2, 2);
    lua_replace(L, lines);
  } else {
    lua_rawseti(L, lines, (lua_Integer)lua_rawlen(L, lines) + 1);
  }
}

/* Adds "name: value\r\n" to the lines at index `lines` unless the value
 * (at the top, any type: tostring'd) could break the head. Pops it. */
static void add_line(lua_State *L, int lines, const char *name, size_t nlen) {
  size_t vlen;
  const char *v = as_text(L, -1, &vlen);
  if (memchr(v, '\r', vlen) == NULL && memchr(v, '\n', vlen) == NULL &&
      memchr(v, '\0', vlen) == NULL) {
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    luaL_addlstring(&b, name, nlen);
    luaL_addlstring(&b, ": ", 2);
    luaL_addlstring(&b, v, vlen);
    luaL_addlstring(&b, "\r\n", 2);
    luaL_pushresult(&b);
    keep_line(L, lines);
  }
  lua_pop(L, 2); /* the tostring'd value and the value */
}

/* The field whose name and value are on top: its lines. Returns whether
 * it is named Content-Type. Leaves the name (lua_next goes on from it). */
static int add_field(lua_State *L, int lines) {
  int value = lua_gettop(L), key = value - 1, typed;
  size_t nlen;
  const char *name = as_text(L, key, &nlen); /* anchored at value + 1 */
  typed = nl_http_token_is(name, nlen, "content-type");
  if (nl_http_is_token(name, nlen) && !is_framing(name, nlen)) {
    if (lua_type(L, value) == LUA_TTABLE) {
      for (lua_Integer i = 1; lua_rawgeti(L, value, i) != LUA_TNIL; i++)
        add_line(L, lines, name, nlen);
    } else {
      lua_pushvalue(L, value);
      add_line(L, lines, name, nlen);
    }
  }
  lua_settop(L, key);
  return typed;
}

typedef struct {
  const char *s;
  size_t len;
} Line;

static int line_cmp(const void *a, const void *b) {
  const Line *x = a, *y = b;
  int c = memcmp(x->s, y->s, x->len < y->len ? x->len : y->len);
  return c != 0 ? c : (x->len > y->len) - (x->len < y->len);
}

/* The lines table at `lines` (n >= 2 strings), sorted and joined: pushed. */
static void push_sorted(lua_State *L, int lines, size_t n) {
  Line *v = lua_newuserdatauv(L, n * sizeof *v, 0);
  luaL_Buffer b;
  for (size_t i = 0; i < n; i++) {
    lua_rawgeti(L, lines, (lua_Integer)i + 1);
    v[i].s = lua_tolstring(L, -1, &v[i].len); /* the table keeps it alive */
    lua_pop(L, 1);
  }
  qsort(v, n, sizeof *v, line_cmp);
  luaL_buffinit(L, &b);
  for (size_t i = 0; i < n; i++) luaL_addlstring(&b, v[i].s, v[i].len);
  luaL_pushresult(&b);
}

/* The fields of the table at 1 that a __pairs metamethod gives (a proxy
 * that keeps its fields' order, say), as pairs() would: their lines.
 * Returns whether one is named Content-Type. */
static int add_fields_by_pairs(lua_State *L, int lines) {
  int typed = 0, iter;
  lua_pushvalue(L, 1);
  lua_call(L, 1, 3); /* the iterator, its state, the control value */
  iter = lua_gettop(L) - 2;
  for (;;) {
    luaL_checkstack(L, 8, "header fields");
    lua_pushvalue(L, iter);
    lua_pushvalue(L, iter + 1);
    lua_pushvalue(L, iter + 2);
    lua_call(L, 2, 2); /* name, value */
    if (lua_isnil(L, -2)) break;
    lua_pushvalue(L, -2);
    lua_replace(L, iter + 2);
    if (add_field(L, lines)) typed = 1;
    lua_pop(L, 1);
  }
  lua_settop(L, iter - 1);
  return typed;
}

int httphead_lines(lua_State *L) {
  int typed = 0, lines;
  if (!lua_isnoneornil(L, 1)) luaL_checktype(L, 1, LUA_TTABLE);
  if (!lua_isnoneornil(L, 2)) luaL_checktype(L, 2, LUA_TSTRING);
  lua_settop(L, 3); /* 3: the lines */
  lines = 3;
  if (!lua_isnil(L, 1) && luaL_getmetafield(L, 1, "__pairs") != LUA_TNIL) {
    typed = add_fields_by_pairs(L, lines);
  } else if (!lua_isnil(L, 1)) {
    lua_pushnil(L);
    while (lua_next(L, 1)) {
      luaL_checkstack(L, 6, "header fields");
      if (add_field(L, lines)) typed = 1;
    }
  }
  if (!typed && lua_isstring(L, 2)) {
    lua_pushvalue(L, 2);
    keep_line(L, lines);
  }
  if (lua_isnil(L, lines)) lua_pushliteral(L, "");
  else if (lua_type(L, lines) == LUA_TSTRING) lua_pushvalue(L, lines);
  else push_sorted(L, lines, lua_rawlen(L, lines));
  lua_pushboolean(L, typed);
  return 2;
}
