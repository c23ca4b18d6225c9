/*
 * socket_select.c: socket.select (layer: bindings), luasocket's select on
 * the runtime's multi-descriptor wait.
 */
#include <fcntl.h>
#include <limits.h>
#include <math.h>

#include "socket_int.h"

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

/* A socket whose connect waits for its name: its getfd is the lookup's
 * descriptor, and the socket is writable (connect goes on) once that one is
 * readable. */
static int resolving(lua_State *L, int idx) {
  nl_Socket *s = sock_test(L, idx);
  return s != NULL && inet_pendingfd(s) >= 0;
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
    if (events == NL_WRITE && fds[i].fd >= 0 && resolving(L, lua_gettop(L)))
      fds[i].events = NL_READ;
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

/* select's stack: recvt, sendt, timeout, the call's record, then the
 * descriptors of a large select and the two result lists. */
#define SELECT_SLOT 4
#define STACK_FDS 64

/* Waits until one of fds is ready or `deadline`: how many are ready
 * (every one ready then), 0, or -errno. In a task the call starts over
 * when it wakes and comes back here, where the wait hands over. */
static int wait_ready(Call *c, nl_PollFd *fds, int n, double deadline) {
  call_keep(c);
  return nl_waitmanyk(c->L, c->slot, fds, n, deadline);
}

/* select(recvt, sendt[, timeout]): a call that finds something ready (or
 * buffered) does not wait and allocates nothing beyond its result lists;
 * one that waits keeps its deadline in its record, so a task woken by a
 * readiness another task consumed first waits again only until then. */
int socket_select(lua_State *L) {
  int nr = table_len(L, 1), nw = table_len(L, 2), dirty, r, ready, n;
  double timeout = luaL_optnumber(L, 3, -1);
  nl_PollFd stack[STACK_FDS], *fds = stack;
  Call c;
  ErrBuf eb;
  call_begin(&c, L, 0, SIDE_NONE, 3, SELECT_SLOT);
  if (c.rec == NULL) c.p.deadline = nl_deadline(timeout);
  n = nr + nw;
  if (n > STACK_FDS) fds = lua_newuserdatauv(L, sizeof *fds * (size_t)n, 0);
  lua_newtable(L);
  lua_newtable(L);
  ready = lua_gettop(L) - 1; /* the readable list; the writable one above it */
  dirty = collect_fds(L, 1, nr, NL_READ, fds, ready);
  collect_fds(L, 2, nw, NL_WRITE, fds + nr, ready + 1);
  if (c.rec != NULL) { /* a replay: its wait hands over */
    r = wait_ready(&c, fds, n, dirty ? nl_monotonic() : c.p.deadline);
    if (r > 0) r = nl_waitmany_now(fds, n); /* all that are ready, if another task left them */
  } else {
    r = nl_waitmany_now(fds, n);
  }
  if (r == 0 && !dirty && !(c.p.deadline >= 0 && c.p.deadline <= nl_monotonic()))
    r = wait_ready(&c, fds, n, c.p.deadline);
  if (r < 0) {
    lua_pushstring(L, sock_ioerror(-r, eb));
    return 3;
  }
  return_ready(L, 1, nr, fds, ready);
  return_ready(L, 2, nw, fds + nr, ready + 1);
  if (r == 0 && dirty == 0) lua_pushliteral(L, "timeout");
  else lua_pushnil(L);
  return 3;
}
