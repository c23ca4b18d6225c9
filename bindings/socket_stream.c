/*
 * socket_stream.c: the stream classes' methods (TCP and Unix stream) of the
 * socket module (layer: bindings), after luasocket's tcp.c over buffer.c:
 * the receive buffer and the receive patterns, recv, send, accept,
 * listen, bind, connect, shutdown, and socket.connect. Receiving calls
 * (receive, recv, accept) take turns on the socket's read side, sending
 * and connecting ones on its write side (socket_call.c).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "socket_int.h"

/* ---- raw I/O (luasocket's usocket.c) ------------------------------------- */

/* May the next read of a drained socket wait first? A read that came back
 * short emptied the socket's queue; the call that follows (an echo's next
 * receive) would see EAGAIN and then wait, so it waits first and saves that
 * recv per message (the loop's epoll keeps the descriptor, level-triggered:
 * data that came in meanwhile answers the wait at once). Only where the
 * wait really waits: not with timeout 0 or a deadline gone (they answer
 * "timeout" after one try), not on the replay of a suspended call (its
 * wait reports the one that ended), not where a task cannot suspend (the
 * read may succeed where the wait would raise). */
static int may_wait_first(Call *c) {
  nl_Socket *s = c->s;
  double d;
  if (!s->drained || c->p.block == 0 || nl_restarting(c->L)) return 0;
  if (nl_in_task(c->L) && !lua_isyieldable(c->L)) return 0;
  if (c->p.block < 0 && c->p.total < 0) return 1;
  d = call_deadline(c);
  return d < 0 || d > nl_monotonic();
}

/* Makes sure the receive buffer holds data, without waiting: IO_DONE,
 * IO_AGAIN or an error code. `lazy` (may_wait_first): a socket the last
 * read drained answers IO_AGAIN without a recv. */
static int io_fill(nl_Socket *s, int lazy) {
  if (s->first < s->last) return IO_DONE;
  s->first = s->last = 0;
  if (lazy && s->drained && s->fd >= 0) return IO_AGAIN;
  s->drained = 0;
  if (s->buf == NULL && s->fd >= 0 && (s->buf = malloc(SOCK_BUFSIZE)) == NULL) return ENOMEM;
  for (;;) {
    ssize_t n;
    if (s->fd < 0) return IO_CLOSED;
    n = recv(s->fd, s->buf, SOCK_BUFSIZE, 0);
    if (nl_trace_on) nl_trace_recv(s->fd, s->buf, n, errno);
    if (n > 0) {
      s->last = (size_t)n;
      s->received += (double)n;
      s->drained = n < SOCK_BUFSIZE;
      return IO_DONE;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return IO_AGAIN;
    s->peerlen = 0;
    if (n == 0) return IO_CLOSED;
    return (errno == ECONNRESET || errno == ECONNABORTED) ? IO_CLOSED : errno;
  }
}

/* Sends what the socket takes now: IO_DONE, IO_AGAIN (*sent so far) or an
 * error code. */
static int io_send(nl_Socket *s, const char *data, size_t len, size_t *sent) {
  *sent = 0;
  while (*sent < len) {
    ssize_t n;
    if (s->fd < 0) return IO_CLOSED;
    if (nl_trace_on) nl_trace_sending();
    n = send(s->fd, data + *sent, len - *sent, MSG_NOSIGNAL);
    if (nl_trace_on) nl_trace_send(s->fd, data + *sent, n, errno);
    if (n >= 0) {
      *sent += (size_t)n;
      s->sent += (double)n;
      continue;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return IO_AGAIN;
    return errno; /* EPIPE, ECONNRESET: "closed" (sock_ioerror) */
  }
  return IO_DONE;
}

/* nil, the message of io code `err` and, for a timeout after a real wait,
 * what it means (why_timeout). */
static int push_why(Call *c, int err, int side) {
  ErrBuf eb;
  WhyBuf why;
  why[0] = '\0';
  if (err == IO_TIMEOUT) why_timeout(why, c->s, c, side);
  return why_pushfail(c->L, sock_ioerror(err, eb), why);
}

/* ---- receive's data so far ------------------------------------------------ */

/* receive's stack: 1 socket, 2 pattern, 3 prefix, then the data it holds
 * while it waits and its record. */
#define RECV_DATA 4
#define RECV_SLOT 5

/* A fresh call starts with its prefix; a replay where it stopped. */
static void gather_start(nl_Gather *g, Call *c, const char *prefix, size_t plen) {
  nl_gather_begin(g, c->L, RECV_DATA, c->p.len, prefix, plen);
  if (c->p.len > 0) g->got = c->p.got;
}

/* Before a wait: the data goes where the replay looks for it. */
static void gather_keep(nl_Gather *g, Call *c) {
  nl_gather_keep(g);
  c->p.len = g->len;
  c->p.got = g->got;
}

/* ---- receive ---------------------------------------------------------------- */

/* Reads until the data holds `wanted` bytes (luasocket's recvraw). As
 * luasocket, a count the prefix does not already hold reads at least once,
 * so receive(0) on a closed socket (or one the peer closed) fails; it
 * never waits for data, though (luasocket's does). */
static int recv_count(nl_Socket *s, nl_Gather *g, size_t wanted, int lazy) {
  if (wanted == 0 && g->len == 0) {
    int err = io_fill(s, 0);
    return err == IO_AGAIN ? IO_DONE : err;
  }
  while (g->len < wanted) {
    size_t take;
    int err = io_fill(s, lazy);
    if (err != IO_DONE) return err;
    take = s->last - s->first;
    if (take > wanted - g->len) take = wanted - g->len;
    nl_gather_add(g, s->buf + s->first, take);
    s->first += take;
  }
  return IO_DONE;
}

/* Adds the bytes from s->first up to `end` without their '\r's, moving
 * s->first past them, while the line stays within `limit` bytes: IO_DONE,
 * or IO_TOOLONG with the byte that did not fit left unread. */
static int add_line_bytes(nl_Socket *s, nl_Gather *g, const char *end, size_t limit) {
  while (s->buf + s->first < end) {
    const char *p = s->buf + s->first, *cr = memchr(p, '\r', (size_t)(end - p));
    size_t n = (size_t)((cr ? cr : end) - p), room = g->len < limit ? limit - g->len : 0;
    if (n > room) {
      nl_gather_add(g, p, room);
      s->first += room;
      return IO_TOOLONG;
    }
    nl_gather_add(g, p, n);
    s->first += n + (cr != NULL);
  }
  return IO_DONE;
}

/* Reads up to '\n', dropping every '\r' (luasocket's recvline); a line
 * (its prefix included) may hold at most `limit` bytes. */
static int recv_line(nl_Socket *s, nl_Gather *g, size_t limit, int lazy) {
  if (g->len > limit) return IO_TOOLONG;
  for (;;) {
    const char *nl;
    int err = io_fill(s, lazy);
    if (err != IO_DONE) return err;
    nl = memchr(s->buf + s->first, '\n', s->last - s->first);
    err = add_line_bytes(s, g, nl ? nl : s->buf + s->last, limit);
    if (err != IO_DONE) return err;
    if (nl != NULL) {
      s->first++;
      return IO_DONE;
    }
  }
}

/* Reads until the peer closes (luasocket's recvall). */
static int recv_all(nl_Socket *s, nl_Gather *g, int lazy) {
  for (;;) {
    size_t n;
    int err = io_fill(s, lazy);
    if (err == IO_CLOSED) return g->got > 0 ? IO_DONE : IO_CLOSED;
    if (err != IO_DONE) return err;
    n = s->last - s->first;
    nl_gather_add(g, s->buf + s->first, n);
    g->got += n;
    s->first = s->last;
  }
}

enum { P_COUNT, P_LINE, P_ALL };

/* The pattern at 2: P_LINE, P_ALL, or P_COUNT with the count in *wanted. */
static int check_pattern(lua_State *L, size_t *wanted) {
  const char *p;
  if (lua_isnumber(L, 2)) {
    luaL_argcheck(L, lua_tonumber(L, 2) >= 0, 2, "invalid receive pattern");
    *wanted = TO_SIZE(lua_tonumber(L, 2));
    return P_COUNT;
  }
  p = luaL_optstring(L, 2, "*l");
  if (p[0] == '*') p++;
  if (p[0] != 'l' && p[0] != 'a') luaL_argerror(L, 2, "invalid receive pattern");
  return p[0] == 'l' ? P_LINE : P_ALL;
}

/* One round of receive: what is there now. IO_DONE, IO_AGAIN or an error. */
static int receive_round(Call *c, nl_Gather *g, int pattern, size_t wanted) {
  nl_Socket *s = c->s;
  int lazy = may_wait_first(c);
  switch (pattern) {
    case P_COUNT: return recv_count(s, g, wanted, lazy);
    case P_LINE: return recv_line(s, g, s->maxline ? s->maxline : (size_t)-1, lazy);
    default: return recv_all(s, g, lazy);
  }
}

/* receive([pattern[, prefix]]): data, or nil, err, partial. A round that
 * would block keeps the data so far, then waits: the replay of a call
 * suspended in a task goes on from there. */
static int stream_receive(lua_State *L) {
  nl_Socket *s = sock_checkrole(L, 1, R_CLIENT);
  size_t plen, wanted = 0;
  const char *prefix = luaL_optlstring(L, 3, "", &plen);
  int pattern = check_pattern(L, &wanted), err;
  Call c;
  nl_Gather g;
  call_begin(&c, L, 1, SIDE_READ, 3, RECV_SLOT);
  gather_start(&g, &c, prefix, plen);
  err = call_turn(&c);
  while (err == IO_DONE && (err = receive_round(&c, &g, pattern, wanted)) == IO_AGAIN) {
    gather_keep(&g, &c);
    err = call_wait(&c, s->fd, NL_READ);
  }
  if (err == IO_DONE) {
    lua_pushlstring(L, g.data, g.len);
    lua_pushnil(L);
    lua_pushnil(L);
  } else {
    ErrBuf eb;
    WhyBuf why;
    lua_pushnil(L);
    lua_pushstring(L, sock_ioerror(err, eb));
    lua_pushlstring(L, g.data, g.len);
    if (err == IO_TIMEOUT) why_timeout(why, s, &c, SIDE_READ);
    if (err == IO_TIMEOUT && why[0] != '\0') {
      lua_pushstring(L, why);
      return call_return(&c, 4);
    }
  }
  return call_return(&c, 3);
}

/* recv([n]): Python's meaning: whatever is there, up to n bytes. */
static int stream_recv(lua_State *L) {
  nl_Socket *s = sock_checkrole(L, 1, R_CLIENT);
  lua_Integer n = luaL_optinteger(L, 2, SOCK_BUFSIZE);
  size_t take;
  int err;
  Call c;
  luaL_argcheck(L, n > 0, 2, "size must be positive");
  call_begin(&c, L, 1, SIDE_READ, 2, 3);
  err = call_turn(&c);
  while (err == IO_DONE && (err = io_fill(s, may_wait_first(&c))) == IO_AGAIN)
    err = call_wait(&c, s->fd, NL_READ);
  if (err != IO_DONE) return call_return(&c, push_why(&c, err, SIDE_READ));
  take = s->last - s->first;
  if (take > (size_t)n) take = (size_t)n;
  lua_pushlstring(L, s->buf + s->first, take);
  s->first += take;
  return call_return(&c, 1);
}

/* send(data[, i[, j]]): index of the last byte sent, or nil, err, last.
 * The call holds the write side until it ends, so the bytes of one send
 * are never interleaved with another's. */
static int stream_send(lua_State *L) {
  nl_Socket *s = sock_checkrole(L, 1, R_CLIENT);
  size_t size, sent;
  const char *data = luaL_checklstring(L, 2, &size);
  long start = TO_LONG(luaL_optnumber(L, 3, 1)), end = TO_LONG(luaL_optnumber(L, 4, -1));
  long next;
  int err;
  Call c;
  if (start < 0) start = (long)size + start + 1;
  if (end < 0) end = (long)size + end + 1;
  if (start < 1) start = 1;
  if (end > (long)size) end = (long)size;
  call_begin(&c, L, 1, SIDE_WRITE, 4, 5);
  next = c.p.next > 0 ? (long)c.p.next : start;
  err = call_turn(&c);
  while (err == IO_DONE && next <= end) {
    err = io_send(s, data + next - 1, (size_t)(end - next + 1), &sent);
    next += (long)sent;
    if (err != IO_AGAIN) break;
    c.p.next = (size_t)next;
    err = call_wait(&c, s->fd, NL_WRITE);
  }
  if (err != IO_DONE) {
    WhyBuf why;
    sock_pusherror(L, err);
    lua_pushnumber(L, (double)next - 1);
    why[0] = '\0';
    if (err == IO_TIMEOUT) why_timeout(why, s, &c, SIDE_WRITE);
    else if (err == EPIPE || err == ECONNRESET) why_closed(why, s, err);
    if (err > 0) s->peerlen = 0;
    if (why[0] != '\0') {
      lua_pushstring(L, why);
      return call_return(&c, 4);
    }
  } else {
    lua_pushnumber(L, (double)next - 1);
    lua_pushnil(L);
    lua_pushnil(L);
  }
  return call_return(&c, 3);
}

/* ---- accept, listen, bind, connect, shutdown ------------------------------ */

static int stream_accept(lua_State *L) {
  nl_Socket *s = sock_checkrole(L, 1, R_SERVER);
  int err;
  Call c;
  call_begin(&c, L, 1, SIDE_READ, 1, 2);
  err = call_turn(&c);
  while (err == IO_DONE) {
    struct sockaddr_storage peer;
    socklen_t peerlen = sizeof peer;
    int fd;
    if (s->fd < 0) {
      err = IO_CLOSED;
      break;
    }
    fd = accept4(s->fd, (struct sockaddr *)&peer, &peerlen, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) {
      if (nl_trace_on) nl_trace_accept(s->fd, fd, (struct sockaddr *)&peer, peerlen);
      nl_Socket *client = sock_new(L, sock_kind(sock_classes[s->kind].group, R_CLIENT),
                                   s->family, s->type, s->protocol);
      client->fd = fd;
      client->maxline = s->maxline;
      if ((peer.ss_family == AF_INET || peer.ss_family == AF_INET6) && peerlen <= sizeof client->peer) {
        memcpy(&client->peer, &peer, peerlen);
        client->peerlen = peerlen;
      }
      return call_return(&c, 1);
    }
    err = errno;
    if (err == EINTR || err == ECONNABORTED) err = IO_DONE;
    else if (err == EAGAIN || err == EWOULDBLOCK) err = call_wait(&c, s->fd, NL_READ);
  }
  return call_return(&c, push_why(&c, err, SIDE_READ));
}

static int stream_listen(lua_State *L) {
  nl_Socket *s = sock_checkrole(L, 1, R_MASTER);
  int backlog = TO_INT(luaL_optnumber(L, 2, 32));
  int err = s->fd < 0 ? sock_openfd(s, s->family == AF_UNSPEC ? AF_INET : s->family) : IO_DONE;
  if (err == IO_DONE && listen(s->fd, backlog) != 0) err = errno;
  if (nl_trace_on) nl_trace_listen(s->fd, backlog, err);
  if (err != IO_DONE) return sock_pusherror(L, err);
  sock_setkind(L, 1, s, sock_kind(sock_classes[s->kind].group, R_SERVER));
  lua_pushnumber(L, 1);
  return 1;
}

static int stream_bind(lua_State *L) {
  const char *host, *port;
  int err;
  Call c;
  ErrBuf eb;
  WhyBuf why;
  sock_checkrole(L, 1, R_MASTER);
  host = luaL_checkstring(L, 2);
  port = sock_optport(L, 3);
  call_begin(&c, L, 1, SIDE_WRITE, 3, 4);
  err = call_turn(&c);
  if (err != IO_DONE) return call_return(&c, sock_pusherror(L, err));
  return call_return(&c, sock_pushresult(L, inet_trybind(&c, host, port, eb, why), why));
}

/* On a master or, as luasocket (tcp{any}), a client: connecting a connected
 * socket again answers "already connected". As luasocket's, a TCP socket
 * is a client after connect whatever it answered: a connect with timeout 0
 * answers "timeout" and the program sends once select finds it writable. */
static int stream_connect(lua_State *L) {
  nl_Socket *s = sock_check(L, 1);
  const char *host = luaL_checkstring(L, 2);
  const char *port = s->family == AF_UNIX ? NULL : luaL_checkstring(L, 3);
  const char *err;
  int e;
  Call c;
  ErrBuf eb;
  WhyBuf why;
  if (sock_classes[s->kind].role != R_CLIENT) sock_checkrole(L, 1, R_MASTER);
  call_begin(&c, L, 1, SIDE_WRITE, 3, 4);
  e = call_turn(&c);
  if (e != IO_DONE) return call_return(&c, sock_pusherror(L, e));
  err = inet_tryconnect(&c, host, port, eb, why);
  if (err == NULL || sock_classes[s->kind].group == G_TCP) {
    sock_setkind(L, 1, s, sock_kind(sock_classes[s->kind].group, R_CLIENT));
    sock_setname(L, 1, 2);
  }
  return call_return(&c, sock_pushresult(L, err, why));
}

static int stream_shutdown(lua_State *L) {
  static const char *const modes[] = {"receive", "send", "both", NULL};
  static const int how[] = {SHUT_RD, SHUT_WR, SHUT_RDWR};
  nl_Socket *s = sock_checkrole(L, 1, R_CLIENT);
  int m = luaL_checkoption(L, 2, "both", modes);
  s->peerlen = 0;
  shutdown(s->fd, how[m]);
  if (nl_trace_on) nl_trace_shutdown(s->fd, how[m]);
  lua_pushnumber(L, 1);
  return 1;
}

/* socket.connect(host, port[, lhost, lport, family]): a tcp{client}. Its
 * stack: the five arguments, the new socket, the call's record. */
int socket_connect(lua_State *L) {
  static const char *const families[] = {"unspec", "inet", "inet6", NULL};
  static const int fams[] = {AF_UNSPEC, AF_INET, AF_INET6};
  const char *host = luaL_checkstring(L, 1);
  const char *port = luaL_checkstring(L, 2);
  const char *lhost = luaL_optstring(L, 3, NULL);
  const char *lport = luaL_optstring(L, 4, "0");
  int family = fams[luaL_checkoption(L, 5, "unspec", families)];
  nl_Socket *s = nl_restarting(L) ? sock_test(L, 6) : NULL;
  const char *err = NULL;
  Call c;
  ErrBuf eb;
  WhyBuf why;
  if (s == NULL) {
    lua_settop(L, 5);
    s = sock_new(L, sock_kind(G_TCP, R_MASTER), family, SOCK_STREAM, 0);
  }
  call_begin(&c, L, 6, SIDE_WRITE, 6, 7);
  why[0] = '\0';
  if (lhost != NULL && !s->bound) err = inet_trybind(&c, lhost, lport, eb, why);
  if (err == NULL) err = inet_tryconnect(&c, host, port, eb, why);
  if (err != NULL) {
    sock_destroy(s);
    return call_return(&c, why_pushfail(L, err, why));
  }
  sock_setkind(L, 6, s, sock_kind(G_TCP, R_CLIENT));
  sock_setname(L, 6, 1);
  lua_pushvalue(L, 6);
  return call_return(&c, 1);
}

const luaL_Reg stream_methods[] = {
  {"accept", stream_accept}, {"bind", stream_bind}, {"connect", stream_connect},
  {"listen", stream_listen}, {"receive", stream_receive}, {"recv", stream_recv},
  {"send", stream_send}, {"setpeername", stream_connect}, {"setsockname", stream_bind},
  {"shutdown", stream_shutdown}, {NULL, NULL}
};
