/*
 * httphead.c: the head lines of a handler's headers table, for http.server
 * (layer: bindings). One collector serves both users: core.headlines,
 * which bindings/httpserver.lua calls for a stream's head and the replies
 * its general path builds, and conn:reply (httpconn.c), which writes a
 * common reply's head straight into the connection's output, with no Lua
 * string made for its lines.
 *
 * The rules, for both:
 *   - "Name: value\r\n" for each field, sorted (byte order); a list value
 *     makes one line per element (several Set-Cookie fields). Values are
 *     tostring'd; a __pairs metamethod is honoured, as by pairs().
 *   - A field whose name is not a token, or whose value holds CR, LF or
 *     NUL, is dropped (it would split or cut the head), as are the framing
 *     fields the server writes itself (Content-Length, Transfer-Encoding,
 *     Connection, Date).
 *   - When no field is named Content-Type (any case), a default line (a
 *     whole line) is sorted in with the others.
 *   - The table is only read, never changed.
 *
 * core.headlines(headers[, default]) -> lines, typed
 *   lines   the lines, one string ("" for none)
 *   typed   whether a field is named Content-Type
 */
#include <stdlib.h>
#include <string.h>

#include "httpserver.h"

typedef struct {
  size_t off, len; /* a line in the collector's text */
} Line;

static int is_framing(const char *name, size_t len) {
  return nl_http_token_is(name, len, "content-length") ||
         nl_http_token_is(name, len, "transfer-encoding") ||
         nl_http_token_is(name, len, "connection") || nl_http_token_is(name, len, "date");
}

/* Adds one line to hl: its bytes to the text, then where they are to the
 * refs (so a ref always points at whole bytes). */
static void add_line(lua_State *L, HeadLines *hl, const char *name, size_t nlen,
                     const char *value, size_t vlen) {
  Line line = {hl->text.len, nlen + vlen + 4};
  if (nl_buf_add(&hl->text, name, nlen) != 0 || nl_buf_add(&hl->text, ": ", 2) != 0 ||
      nl_buf_add(&hl->text, value, vlen) != 0 || nl_buf_add(&hl->text, "\r\n", 2) != 0 ||
      nl_buf_add(&hl->refs, &line, sizeof line) != 0)
    luaL_error(L, "not enough memory for the reply's head");
}

/* tostring(value at idx), pushed: the string itself when it is one (a
 * string's metatable has no __tostring to look for). */
static const char *as_text(lua_State *L, int idx, size_t *len) {
  if (lua_type(L, idx) != LUA_TSTRING) return luaL_tolstring(L, idx, len);
  lua_pushvalue(L, idx);
  return lua_tolstring(L, -1, len);
}

/* The line of the value on top (any type: tostring'd), unless it could
 * break the head. Pops it. */
static void add_value(lua_State *L, HeadLines *hl, const char *name, size_t nlen) {
  size_t vlen;
  const char *v = as_text(L, -1, &vlen);
  if (memchr(v, '\r', vlen) == NULL && memchr(v, '\n', vlen) == NULL &&
      memchr(v, '\0', vlen) == NULL)
    add_line(L, hl, name, nlen, v, vlen);
  lua_pop(L, 2); /* the tostring'd value and the value */
}

/* The field whose name and value are on top: its lines. Returns whether
 * it is named Content-Type. Leaves the name (lua_next goes on from it). */
static int add_field(lua_State *L, HeadLines *hl) {
  int value = lua_gettop(L), key = value - 1, typed;
  size_t nlen;
  const char *name;
  luaL_checkstack(L, 6, "header fields");
  name = as_text(L, key, &nlen); /* anchored at value + 1 */
  typed = nl_http_token_is(name, nlen, "content-type");
  if (nl_http_is_token(name, nlen) && !is_framing(name, nlen)) {
    if (lua_type(L, value) == LUA_TTABLE) {
      for (lua_Integer i = 1; lua_rawgeti(L, value, i) != LUA_TNIL; i++)
        add_value(L, hl, name, nlen);
      lua_pop(L, 1); /* the nil */
    } else {
      lua_pushvalue(L, value);
      add_value(L, hl, name, nlen);
    }
  }
  lua_settop(L, key);
  return typed;
}

/* The fields of the table at idx that its __pairs metamethod (on top)
 * gives, as pairs() would (a proxy that keeps its fields' order, say): their
 * lines. Returns whether one is named Content-Type. */
static int add_fields_by_pairs(lua_State *L, int idx, HeadLines *hl) {
  int typed = 0, iter;
  lua_pushvalue(L, idx);
  lua_call(L, 1, 3); /* the iterator, its state, the control value */
  iter = lua_gettop(L) - 2;
  for (;;) {
    luaL_checkstack(L, 4, "header fields");
    lua_pushvalue(L, iter);
    lua_pushvalue(L, iter + 1);
    lua_pushvalue(L, iter + 2);
    lua_call(L, 2, 2); /* name, value */
    if (lua_isnil(L, -2)) break;
    lua_pushvalue(L, -2);
    lua_replace(L, iter + 2);
    if (add_field(L, hl)) typed = 1;
    lua_pop(L, 1);
  }
  lua_settop(L, iter - 1);
  return typed;
}

int httphead_collect(lua_State *L, int idx, HeadLines *hl) {
  int typed = 0, top = lua_gettop(L);
  hl->text.len = hl->refs.len = 0;
  if (lua_isnoneornil(L, idx)) return 0;
  idx = lua_absindex(L, idx);
  if (luaL_getmetafield(L, idx, "__pairs") != LUA_TNIL) {
    typed = add_fields_by_pairs(L, idx, hl);
  } else {
    lua_pushnil(L);
    while (lua_next(L, idx))
      if (add_field(L, hl)) typed = 1;
  }
  lua_settop(L, top);
  return typed;
}

static int line_cmp(const void *a, const void *b, void *text) {
  const Line *x = a, *y = b;
  const char *t = text;
  int c = memcmp(t + x->off, t + y->off, x->len < y->len ? x->len : y->len);
  return c != 0 ? c : (x->len > y->len) - (x->len < y->len);
}

int httphead_put(HeadLines *hl, const char *dflt, size_t dlen, nl_Buf *out) {
  size_t n = hl->refs.len / sizeof(Line);
  Line *lines;
  if (dflt != NULL) {
    Line line = {hl->text.len, dlen};
    if (nl_buf_add(&hl->text, dflt, dlen) != 0 || nl_buf_add(&hl->refs, &line, sizeof line) != 0)
      return -1;
    n++;
  }
  if (nl_buf_reserve(out, hl->text.len) != 0) return -1;
  if (n == 0) return 0;
  lines = (Line *)(void *)hl->refs.data;
  if (n > 1) qsort_r(lines, n, sizeof *lines, line_cmp, hl->text.data);
  for (size_t i = 0; i < n; i++) nl_buf_add(out, hl->text.data + lines[i].off, lines[i].len);
  return 0;
}

void httphead_free(HeadLines *hl) {
  nl_buf_free(&hl->text);
  nl_buf_free(&hl->refs);
}

/* ---- core.headlines ------------------------------------------------------- */

#define HEADLINES_MT "http.server.headlines"

/* A collector and the joined lines, in a userdata the GC frees (so an
 * error half-way, a __tostring that fails, say, leaks nothing). */
typedef struct {
  HeadLines hl;
  nl_Buf joined;
} Box;

static int box_gc(lua_State *L) {
  Box *box = luaL_checkudata(L, 1, HEADLINES_MT);
  httphead_free(&box->hl);
  nl_buf_free(&box->joined);
  return 0;
}

/* Pushes an empty box. [-0, +1, m] */
static Box *push_box(lua_State *L) {
  Box *box = lua_newuserdatauv(L, sizeof *box, 0);
  memset(box, 0, sizeof *box);
  if (luaL_newmetatable(L, HEADLINES_MT)) {
    lua_pushcfunction(L, box_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_setmetatable(L, -2);
  return box;
}

int httphead_lines(lua_State *L) {
  size_t dlen = 0;
  const char *dflt;
  Box *box;
  int typed;
  if (!lua_isnoneornil(L, 1)) luaL_checktype(L, 1, LUA_TTABLE);
  dflt = luaL_optlstring(L, 2, NULL, &dlen);
  box = push_box(L);
  typed = httphead_collect(L, 1, &box->hl);
  if (httphead_put(&box->hl, typed ? NULL : dflt, dlen, &box->joined) != 0)
    return luaL_error(L, "not enough memory for the reply's head");
  lua_pushlstring(L, box->joined.data != NULL ? box->joined.data : "", box->joined.len);
  lua_pushboolean(L, typed);
  return 2;
}
