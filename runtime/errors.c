/*
 * errors.c: the `nil, message[, code]` convention, the message handler that
 * adds a traceback to an uncaught error, and small userdata helpers shared by
 * every binding (layer: runtime). Error names come from a table generated
 * from the C library's headers (tools/errnames.sh).
 */
#include <ctype.h>
#include <string.h>

#include "netlua.h"
#include "errnames.h"

int nl_pushfail(lua_State *L, const char *msg, const char *code) {
  lua_pushnil(L);
  lua_pushstring(L, msg);
  if (code == NULL) return 2;
  lua_pushstring(L, code);
  return 3;
}

const char *nl_errname(int err) {
  for (int i = 0; nl_errnames[i].name != NULL; i++)
    if (nl_errnames[i].code == err) return nl_errnames[i].name;
  return "E?";
}

const char *nl_strerror(int err, char *buf, size_t size) {
  char tmp[128];
  const char *text = strerror_r(err, tmp, sizeof tmp);
  size_t i;
  if (size == 0) return buf;
  for (i = 0; i + 1 < size && text[i] != '\0'; i++)
    buf[i] = (char)tolower((unsigned char)text[i]);
  buf[i] = '\0';
  return buf;
}

int nl_pusherrno(lua_State *L, int err) {
  char msg[128];
  return nl_pushfail(L, nl_strerror(err, msg, sizeof msg), nl_errname(err));
}

/* lua.c's msghandler, except that an error object whose __tostring gives a
 * string gets the traceback too: main and every thread print or return the
 * same text for the same error. */
int nl_msghandler(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  if (msg == NULL) {
    if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING)
      msg = lua_tostring(L, -1);
    else
      msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
  }
  luaL_traceback(L, L, msg, 1);
  return 1;
}

/* nl_raise_interrupted's error: the string "interrupted", alone or as the
 * first line of a message handler's text. */
int nl_is_interrupted(lua_State *L, int idx) {
  static const char word[] = "interrupted";
  const size_t n = sizeof word - 1;
  size_t len;
  const char *msg;
  if (lua_type(L, idx) != LUA_TSTRING) return 0;
  msg = lua_tolstring(L, idx, &len);
  return len >= n && memcmp(msg, word, n) == 0 && (len == n || msg[n] == '\n');
}

void nl_newclass(lua_State *L, const char *tname, const luaL_Reg *methods,
                 const luaL_Reg *meta) {
  luaL_newmetatable(L, tname);     /* mt */
  if (meta != NULL) luaL_setfuncs(L, meta, 0);
  if (methods != NULL) {
    lua_newtable(L);               /* mt, methods */
    luaL_setfuncs(L, methods, 0);
    lua_setfield(L, -2, "__index");
  }
  lua_pop(L, 1);
}

void nl_newclass_transfer(lua_State *L, const char *tname, const luaL_Reg *methods,
                          const luaL_Reg *meta, const nl_Transfer *transfer) {
  nl_newclass(L, tname, methods, meta);
  luaL_getmetatable(L, tname);
  lua_pushlightuserdata(L, (void *)transfer);
  lua_setfield(L, -2, NL_TRANSFER_FIELD);
  lua_pop(L, 1);
}
