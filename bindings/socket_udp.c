/*
 * socket_udp.c: the datagram classes' methods (UDP, Unix datagram, raw) of
 * the socket module (layer: bindings).
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "socket_int.h"

/* ---- datagram methods (udp, unix dgram, raw) -------------------------- */

/* Waits for and reads one datagram; IO_DONE or an error code. */
static int dgram_read(lua_State *L, nl_Socket *s, char *data, size_t size, size_t *got,
                      struct sockaddr_storage *from, socklen_t *fromlen) {
  for (;;) {
    ssize_t n;
    if (s->fd < 0) return IO_CLOSED;
    if (fromlen) *fromlen = sizeof *from;
    n = recvfrom(s->fd, data, size, 0, (struct sockaddr *)from, fromlen);
    if (n >= 0) {
      *got = (size_t)n;
      s->received += (double)n;
      return IO_DONE;
    }
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) return errno;
    if (!sock_wait(L, s, NL_READ)) return IO_TIMEOUT;
  }
}

/* receive([size]), receivefrom([size]): size 0 takes the next datagram and
 * gives "" (as recv(2) of 0 bytes does, and luasocket). */
static int dgram_recv_common(lua_State *L, nl_Socket *s, int with_from) {
  lua_Number n = luaL_optnumber(L, 2, NL_DGRAMSIZE);
  size_t wanted = TO_SIZE(n), got = 0;
  struct sockaddr_storage from;
  socklen_t fromlen = sizeof from;
  luaL_Buffer b;
  char *data;
  int err;
  ErrBuf eb;
  int top = lua_gettop(L);
  luaL_argcheck(L, n >= 0, 2, "invalid receive size"); /* also NaN */
  if (wanted > NL_MAXDGRAM) wanted = NL_MAXDGRAM; /* no datagram is larger */
  timeout_markstart(L, s);
  data = luaL_buffinitsize(L, &b, wanted);
  err = dgram_read(L, s, data, wanted, &got, with_from ? &from : NULL,
                   with_from ? &fromlen : NULL);
  if (err != IO_DONE) {
    luaL_pushresultsize(&b, 0);
    return nl_pushfail(L, sock_ioerror(err, eb), NULL);
  }
  luaL_pushresultsize(&b, got);
  if (!with_from) return 1;
  top = lua_gettop(L) - 1;
  if (s->family == AF_UNIX && fromlen <= offsetof(struct sockaddr_un, sun_path)) {
    lua_pushliteral(L, "");
    return 2;
  }
  if (inet_pushaddr(L, &from, fromlen, 0) == 3) lua_pop(L, 1); /* ip, port */
  return lua_gettop(L) - top;
}

static int dgram_receive(lua_State *L) {
  nl_Socket *s = sock_check(L, 1);
  lua_settop(L, 2);
  s->nargs = 2;
  return dgram_recv_common(L, s, 0);
}

static int dgram_receivefrom(lua_State *L) {
  nl_Socket *s = sock_checkrole(L, 1, R_UNCONN);
  lua_settop(L, 2);
  s->nargs = 2;
  return dgram_recv_common(L, s, 1);
}

static int dgram_write(lua_State *L, nl_Socket *s, const char *data, size_t len,
                       const struct sockaddr *to, socklen_t tolen, size_t *sent) {
  for (;;) {
    ssize_t n;
    if (s->fd < 0) return IO_CLOSED;
    n = sendto(s->fd, data, len, MSG_NOSIGNAL, to, tolen);
    if (n >= 0) {
      *sent = (size_t)n;
      s->sent += (double)n;
      return IO_DONE;
    }
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) return errno;
    if (!sock_wait(L, s, NL_WRITE)) return IO_TIMEOUT;
  }
}

static int push_sent(lua_State *L, int err, size_t sent) {
  ErrBuf eb;
  if (err != IO_DONE) return nl_pushfail(L, sock_ioerror(err, eb), NULL);
  lua_pushnumber(L, (double)sent);
  return 1;
}

static int dgram_send(lua_State *L) {
  nl_Socket *s = sock_checkrole(L, 1, R_CONN);
  size_t len, sent = 0;
  const char *data = luaL_checklstring(L, 2, &len);
  int err;
  lua_settop(L, 2);
  s->nargs = 2;
  timeout_markstart(L, s);
  err = dgram_write(L, s, data, len, NULL, 0, &sent);
  return push_sent(L, err, sent);
}

/* sendto(data, ip, port): numeric addresses only, as luasocket. */
static int dgram_sendto(lua_State *L) {
  nl_Socket *s = sock_checkrole(L, 1, R_UNCONN);
  size_t len, sent = 0;
  const char *data = luaL_checklstring(L, 2, &len);
  const char *ip = luaL_checkstring(L, 3);
  struct addrinfo hints, *ai;
  const char *err;
  ErrBuf eb;
  int e;
  lua_settop(L, 4);
  s->nargs = 4;
  timeout_markstart(L, s);
  inet_lookupsbegin(L);
  if (s->family == AF_UNIX) {
    struct sockaddr_un un;
    socklen_t ulen;
    e = inet_unixaddr(L, ip, &un, &ulen);
    if (e == IO_DONE && s->fd < 0) e = sock_openfd(s, AF_UNIX);
    if (e == IO_DONE) e = dgram_write(L, s, data, len, (struct sockaddr *)&un, ulen, &sent);
    return push_sent(L, e, sent);
  }
  memset(&hints, 0, sizeof hints);
  hints.ai_family = s->family;
  hints.ai_socktype = sock_classes[s->kind].group == G_RAW ? 0 : s->type;
  hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
  ai = inet_resolve(L, 4, ip, sock_classes[s->kind].group == G_RAW ? NULL : luaL_checkstring(L, 4),
               &hints, NL_NODEADLINE, &err, eb);
  if (ai == NULL) return nl_pushfail(L, err, NULL);
  e = sock_openfd(s, s->fd < 0 ? ai->ai_family : s->family);
  if (e == IO_DONE) e = dgram_write(L, s, data, len, ai->ai_addr, ai->ai_addrlen, &sent);
  return push_sent(L, e, sent);
}

/* setpeername(host, port) connects; setpeername("*") disconnects. */
static int dgram_setpeername(lua_State *L) {
  nl_Socket *s = sock_check(L, 1);
  const char *host = luaL_checkstring(L, 2);
  int group = sock_classes[s->kind].group;
  ErrBuf eb;
  const char *err;
  if (strcmp(host, "*") == 0) {
    struct sockaddr sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_family = AF_UNSPEC;
    if (s->fd >= 0) connect(s->fd, &sa, sizeof sa);
    sock_setkind(L, 1, s, sock_kind(group, R_UNCONN));
    lua_pushnumber(L, 1);
    return 1;
  }
  lua_settop(L, 3);
  s->nargs = 3; /* a name's lookup waits; datagram connects do not */
  inet_lookupsbegin(L);
  err = inet_tryconnect(L, s, host, s->family == AF_UNIX ? NULL : sock_optport(L, 3), eb);
  if (err == NULL) sock_setkind(L, 1, s, sock_kind(group, R_CONN));
  return sock_pushresult(L, err);
}

static int dgram_setsockname(lua_State *L) {
  nl_Socket *s = sock_checkrole(L, 1, R_UNCONN);
  const char *host = luaL_checkstring(L, 2);
  ErrBuf eb;
  lua_settop(L, 3);
  inet_lookupsbegin(L);
  return sock_pushresult(L, inet_trybind(L, 3, s, host, sock_optport(L, 3), eb));
}

const luaL_Reg dgram_methods[] = {
  {"receive", dgram_receive}, {"receivefrom", dgram_receivefrom},
  {"recv", dgram_receive}, {"send", dgram_send}, {"sendto", dgram_sendto},
  {"setpeername", dgram_setpeername}, {"setsockname", dgram_setsockname},
  {NULL, NULL}
};
