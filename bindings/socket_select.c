/*
 * socket_select.c: socket.select (layer: bindings), luasocket's select on
 * the runtime's multi-descriptor wait.
 */
#include <fcntl.h>
#include <limits.h>
#include <math.h>

#include "socket_int.h"

/* ---- select ---------------------------------------------------------------- */

/* The descriptor the number at idx names, or -1 when it names none: not
 * an integer, negative, or not open (poll would report it ready, POLLNVAL;
 * epoll would refuse it). select skips those as luasocket skips a closed
 * socket's -1 (SOCKET_INVALID). */
static int valid_fd(lua_State *L, int idx) {
  lua_Number n;
  if (!lua_isnumber(L, idx)) return -1;
  n = lua_tonumber(L, idx);
  if (!(n >= 0 && n <= INT_MAX && n == floor(n))) return -1;
  return fcntl((int)n, F_GETFD) == -1 ? -1 : (int)n;
}

/* Calls obj:getfd() (and obj:dirty() when asked) for the object at idx. */
static int object_fd(lua_State *L, int idx, int *dirty) {
  int fd = -1;
  if (lua_getfield(L, idx, "getfd") == LUA_TFUNCTION) {
    lua_pushvalue(L, idx);
    lua_call(L, 1, 1);
    fd = valid_fd(L, -1);
  }
  lua_pop(L, 1);
  if (dirty != NULL) {
    *dirty = 0;
    if (lua_getfield(L, idx, "dirty") == LUA_TFUNCTION) {
      lua_pushvalue(L, idx);
      lua_call(L, 1, 1);
      *dirty = lua_toboolean(L, -1);
    }
    lua_pop(L, 1);
  }
  return fd;
}

/* t[#t+1] = obj; t[obj] = #t (luasocket's result tables). */
static void add_ready(lua_State *L, int tab, int obj) {
  lua_Integer n = (lua_Integer)lua_rawlen(L, tab) + 1;
  lua_pushvalue(L, obj);
  lua_rawseti(L, tab, n);
  lua_pushvalue(L, obj);
  lua_pushnumber(L, (lua_Number)n);
  lua_rawset(L, tab);
}

static int table_len(lua_State *L, int idx) {
  if (lua_isnoneornil(L, idx)) return 0;
  luaL_checktype(L, idx, LUA_TTABLE);
  return (int)luaL_len(L, idx);
}

/* Fills fds from the objects of table `tab`; read ones that are dirty go
 * straight into `ready`. Returns how many were dirty. */
static int collect_fds(lua_State *L, int tab, int n, int events, nl_PollFd *fds, int ready) {
  int dirty_count = 0;
  for (int i = 0; i < n; i++) {
    int dirty = 0;
    lua_geti(L, tab, i + 1);
    fds[i].events = events;
    fds[i].fd = lua_isnil(L, -1) ? -1
              : object_fd(L, lua_gettop(L), events == NL_READ ? &dirty : NULL);
    if (dirty) {
      add_ready(L, ready, lua_gettop(L));
      fds[i].fd = -1;
      dirty_count++;
    }
    lua_pop(L, 1);
  }
  return dirty_count;
}

static void return_ready(lua_State *L, int tab, int n, nl_PollFd *fds, int ready) {
  for (int i = 0; i < n; i++) {
    if (fds[i].fd < 0 || !fds[i].ready) continue;
    lua_geti(L, tab, i + 1);
    add_ready(L, ready, lua_gettop(L));
    lua_pop(L, 1);
  }
}

int socket_select(lua_State *L) {
  int nr = table_len(L, 1), nw = table_len(L, 2), dirty, r, now;
  double timeout = luaL_optnumber(L, 3, -1);
  nl_PollFd *fds;
  ErrBuf eb;
  lua_settop(L, 3);
  fds = lua_newuserdatauv(L, sizeof *fds * (size_t)(nr + nw + 1), 0); /* 4 */
  lua_newtable(L);                                                   /* 5 */
  lua_newtable(L);                                                   /* 6 */
  dirty = collect_fds(L, 1, nr, NL_READ, fds, 5);
  collect_fds(L, 2, nw, NL_WRITE, fds + nr, 6);
  r = nl_waitmanyk(L, 3, fds, nr + nw, dirty ? nl_monotonic() : nl_deadline(timeout));
  /* A wait ends at the first descriptor that is ready: the others ready at
   * that moment are asked again, so every one of them is returned. */
  if (r > 0 && (now = nl_waitmany_now(fds, nr + nw)) > 0) r = now;
  if (r < 0) {
    lua_pushstring(L, nl_strerror(-r, eb, sizeof eb));
    return 3;
  }
  return_ready(L, 1, nr, fds, 5);
  return_ready(L, 2, nw, fds + nr, 6);
  if (r == 0 && dirty == 0) lua_pushliteral(L, "timeout");
  else lua_pushnil(L);
  return 3;
}

