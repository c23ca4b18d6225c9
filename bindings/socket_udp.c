/*
 * socket_udp.c: the datagram classes' methods (UDP, Unix datagram, raw) of
 * the socket module (layer: bindings), after luasocket's udp.c. A datagram
 * is read or written whole by one call; calls that wait take turns on the
 * socket's read or write side, as on stream sockets (socket_call.c).
 */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "socket_int.h"

/* Reads one datagram, waiting for it: IO_DONE or an error code. */
static int dgram_read(Call *c, char *data, size_t size, size_t *got,
                      struct sockaddr_storage *from, socklen_t *fromlen) {
  nl_Socket *s = c->s;
  int err = call_turn(c);
  while (err == IO_DONE) {
    ssize_t n;
    if (s->fd < 0) return IO_CLOSED;
    *fromlen = sizeof *from;
    n = recvfrom(s->fd, data, size, 0, (struct sockaddr *)from, fromlen);
    if (nl_trace_on) nl_trace_recvfrom(s->fd, data, n, errno, (struct sockaddr *)from, *fromlen);
    if (n >= 0) {
      *got = (size_t)n;
      s->received += (double)n;
      return IO_DONE;
    }
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) return errno;
    err = call_wait(c, s->fd, NL_READ);
  }
  return err;
}

/* receive([size]), receivefrom([size]): size 0 takes the next datagram and
 * gives "" (as recv(2) of 0 bytes does, and luasocket). */
static int dgram_recv_common(lua_State *L, nl_Socket *s, int with_from) {
  lua_Number n = luaL_optnumber(L, 2, DGRAM_SIZE);
  size_t wanted = TO_SIZE(n), got = 0;
  struct sockaddr_storage from;
  socklen_t fromlen;
  char data[DGRAM_MAX];
  int err, pushed;
  Call c;
  luaL_argcheck(L, n >= 0, 2, "invalid receive size"); /* also NaN */
  if (wanted > DGRAM_MAX) wanted = DGRAM_MAX;
  call_begin(&c, L, 1, SIDE_READ, 2, 3);
  err = dgram_read(&c, data, wanted, &got, &from, &fromlen);
  if (err != IO_DONE) return call_return(&c, sock_pusherror(L, err));
  lua_pushlstring(L, data, got);
  if (!with_from) return call_return(&c, 1);
  if (s->family == AF_UNIX && fromlen <= offsetof(struct sockaddr_un, sun_path)) {
    lua_pushliteral(L, ""); /* an unbound sender */
    return call_return(&c, 2);
  }
  pushed = inet_pushaddr(L, (const struct sockaddr *)&from, fromlen, 0);
  if (pushed == 3) lua_pop(L, 1); /* ip, port: no family */
  return call_return(&c, pushed == 3 ? 3 : 1 + pushed);
}

static int dgram_receive(lua_State *L) {
  return dgram_recv_common(L, sock_check(L, 1), 0);
}

static int dgram_receivefrom(lua_State *L) {
  return dgram_recv_common(L, sock_checkrole(L, 1, R_UNCONN), 1);
}

/* Writes one datagram, waiting while the socket takes none: the bytes sent,
 * or nil and the error. */
static int dgram_write(Call *c, const char *data, size_t len,
                       const struct sockaddr *to, socklen_t tolen) {
  nl_Socket *s = c->s;
  int err = call_turn(c);
  while (err == IO_DONE) {
    ssize_t n;
    if (s->fd < 0) {
      err = IO_CLOSED;
      break;
    }
    if (nl_trace_on) nl_trace_sending();
    n = sendto(s->fd, data, len, MSG_NOSIGNAL, to, tolen);
    if (nl_trace_on) nl_trace_sendto(s->fd, data, n, errno, to, tolen);
    if (n >= 0) {
      s->sent += (double)n;
      lua_pushnumber(c->L, (double)n);
      return call_return(c, 1);
    }
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) err = errno;
    else err = call_wait(c, s->fd, NL_WRITE);
  }
  return call_return(c, sock_pusherror(c->L, err));
}

static int dgram_send(lua_State *L) {
  size_t len;
  const char *data;
  Call c;
  sock_checkrole(L, 1, R_CONN);
  data = luaL_checklstring(L, 2, &len);
  call_begin(&c, L, 1, SIDE_WRITE, 2, 3);
  return dgram_write(&c, data, len, NULL, 0);
}

/* sendto(data, ip, port): numeric addresses only, as luasocket, so it
 * never waits for a name. */
static int dgram_sendto(lua_State *L) {
  nl_Socket *s = sock_checkrole(L, 1, R_UNCONN);
  size_t len;
  const char *data = luaL_checklstring(L, 2, &len);
  const char *ip = luaL_checkstring(L, 3);
  int raw = sock_classes[s->kind].group == G_RAW;
  const char *port = raw || s->family == AF_UNIX ? NULL : luaL_checkstring(L, 4);
  struct addrinfo hints, *ai;
  const char *err;
  int e;
  Call c;
  ErrBuf eb;
  call_begin(&c, L, 1, SIDE_WRITE, 4, 5);
  if (s->family == AF_UNIX) {
    struct sockaddr_un un;
    socklen_t ulen;
    e = inet_unixaddr(ip, &un, &ulen);
    if (e == IO_DONE && s->fd < 0) e = sock_openfd(s, AF_UNIX);
    if (e != IO_DONE) return call_return(&c, sock_pusherror(L, e));
    return dgram_write(&c, data, len, (struct sockaddr *)&un, ulen);
  }
  memset(&hints, 0, sizeof hints);
  hints.ai_family = s->family;
  hints.ai_socktype = raw ? 0 : s->type;
  hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
  ai = inet_resolve(&c, ip, port, &hints, NL_NODEADLINE, &err, eb);
  if (ai == NULL) return call_return(&c, nl_pushfail(L, err, NULL));
  e = sock_openfd(s, s->fd < 0 ? ai->ai_family : s->family);
  if (e != IO_DONE) return call_return(&c, sock_pusherror(L, e));
  return dgram_write(&c, data, len, ai->ai_addr, ai->ai_addrlen);
}

/* setpeername(host, port) connects; setpeername("*") disconnects. */
static int dgram_setpeername(lua_State *L) {
  nl_Socket *s = sock_check(L, 1);
  const char *host = luaL_checkstring(L, 2);
  int group = sock_classes[s->kind].group, e;
  const char *err;
  Call c;
  ErrBuf eb;
  WhyBuf why;
  if (strcmp(host, "*") == 0) {
    struct sockaddr sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_family = AF_UNSPEC;
    if (s->fd >= 0) connect(s->fd, &sa, sizeof sa);
    sock_setkind(L, 1, s, sock_kind(group, R_UNCONN));
    lua_pushnumber(L, 1);
    return 1;
  }
  call_begin(&c, L, 1, SIDE_WRITE, 3, 4); /* a name's lookup waits */
  if ((e = call_turn(&c)) != IO_DONE) return call_return(&c, sock_pusherror(L, e));
  err = inet_tryconnect(&c, host, s->family == AF_UNIX ? NULL : sock_optport(L, 3), eb, why);
  if (err == NULL) sock_setkind(L, 1, s, sock_kind(group, R_CONN));
  return call_return(&c, sock_pushresult(L, err, why));
}

static int dgram_setsockname(lua_State *L) {
  const char *host;
  int e;
  Call c;
  ErrBuf eb;
  WhyBuf why;
  sock_checkrole(L, 1, R_UNCONN);
  host = luaL_checkstring(L, 2);
  call_begin(&c, L, 1, SIDE_WRITE, 3, 4);
  if ((e = call_turn(&c)) != IO_DONE) return call_return(&c, sock_pusherror(L, e));
  return call_return(&c, sock_pushresult(L, inet_trybind(&c, host, sock_optport(L, 3), eb, why), why));
}

const luaL_Reg dgram_methods[] = {
  {"receive", dgram_receive}, {"receivefrom", dgram_receivefrom},
  {"recv", dgram_receive}, {"send", dgram_send}, {"sendto", dgram_sendto},
  {"setpeername", dgram_setpeername}, {"setsockname", dgram_setsockname},
  {NULL, NULL}
};
