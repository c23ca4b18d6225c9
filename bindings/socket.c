/*
 * socket.c: the socket module, a drop-in for luasocket's core (layer:
 * bindings): the module table, the classes (luasocket's names) with their
 * set-up and the transfer hook that moves a socket to another thread, the
 * constructors, and the methods every class shares. The other files of the
 * module, over the private header socket_int.h: socket_stream.c (TCP and
 * Unix stream I/O), socket_udp.c (datagrams), socket_options.c,
 * socket_select.c, socket_dns.c (addresses, name lookups, bind and
 * connect, dns.*) and socket_call.c (a call that waits: its timeouts, its
 * record, its turn on the socket). The Lua half (socket.lua) adds
 * try/newtry/protect/skip, bind, connect4/6 and socket.unix.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "socket_int.h"
#include "modules.h"

/* ---- classes ------------------------------------------------------------ */

const ClassInfo sock_classes[NCLASSES] = {
  {"tcp{master}", G_TCP, R_MASTER},
  {"tcp{client}", G_TCP, R_CLIENT},
  {"tcp{server}", G_TCP, R_SERVER},
  {"udp{unconnected}", G_UDP, R_UNCONN},
  {"udp{connected}", G_UDP, R_CONN},
  {"unixstream{master}", G_UNIX, R_MASTER},
  {"unixstream{client}", G_UNIX, R_CLIENT},
  {"unixstream{server}", G_UNIX, R_SERVER},
  {"unixdgram{unconnected}", G_UDGRAM, R_UNCONN},
  {"unixdgram{connected}", G_UDGRAM, R_CONN},
  {"raw{unconnected}", G_RAW, R_UNCONN},
  {"raw{connected}", G_RAW, R_CONN},
};

int sock_kind(int group, int role) {
  for (int k = 0; k < NCLASSES; k++)
    if (sock_classes[k].group == group && sock_classes[k].role == role) return k;
  return -1;
}

int sock_isstream(int group) { return group == G_TCP || group == G_UNIX; }

/* strerror(err) as the C library words it ("Operation already in
 * progress"), as luasocket passes it on: scripts compare these strings. */
const char *sock_strerror(int err, char *eb) {
  const char *text = strerror_r(err, eb, sizeof(ErrBuf));
  if (text != eb) snprintf(eb, sizeof(ErrBuf), "%s", text);
  return eb;
}

/* luasocket's socket_strerror/io_strerror. */
const char *sock_ioerror(int err, char *eb) {
  switch (err) {
    case IO_DONE: return NULL;
    case IO_CLOSED: return "closed";
    case IO_TIMEOUT: return "timeout";
    case IO_TOOLONG: return "line too long";
    case EADDRINUSE: return "address already in use";
    case EISCONN: return "already connected";
    case EACCES: return "permission denied";
    case ECONNREFUSED: return "connection refused";
    case ECONNABORTED: case ECONNRESET: case EPIPE: return "closed";
    case ETIMEDOUT: return "timeout";
    default: return sock_strerror(err, eb);
  }
}

/* nil and the message of io code or errno `err`. */
int sock_pusherror(lua_State *L, int err) {
  ErrBuf eb;
  return nl_pushfail(L, sock_ioerror(err, eb), NULL);
}

/* Each class's metatable holds its index in sock_classes[] at this integer key
 * (register_classes): the cheapest lookup Lua has. */
#define KIND_KEY 1

/* The socket at idx, or NULL. Every method call checks its object, so this
 * is on every message's path: a method carries its class's metatable as
 * upvalue 1 (register_classes), and called on its own class the check is
 * one comparison. Otherwise (another class, a module function) one lookup
 * in the object's metatable; a metatable edited by hand is caught by the
 * kind the object records. */
nl_Socket *sock_test(lua_State *L, int idx) {
  nl_Socket *s;
  lua_Integer k;
  if (lua_type(L, idx) != LUA_TUSERDATA || !lua_getmetatable(L, idx)) return NULL;
  if (lua_rawequal(L, -1, lua_upvalueindex(1))) {
    lua_pop(L, 1);
    return lua_touserdata(L, idx);
  }
  k = lua_rawgeti(L, -1, KIND_KEY) == LUA_TNUMBER ? lua_tointeger(L, -1) : -1;
  lua_pop(L, 2);
  if (k < 0 || k >= NCLASSES) return NULL;
  s = lua_touserdata(L, idx);
  return s->kind == (int)k ? s : NULL;
}

nl_Socket *sock_check(lua_State *L, int idx) {
  nl_Socket *s = sock_test(L, idx);
  if (s == NULL) luaL_typeerror(L, idx, "socket");
  return s;
}

/* The object at idx in role `role` of its own group, else luasocket's
 * "bad argument #1 to 'accept' (tcp{server} expected)". */
nl_Socket *sock_checkrole(lua_State *L, int idx, int role) {
  nl_Socket *s = sock_check(L, idx);
  if (sock_classes[s->kind].role != role) {
    int want = sock_kind(sock_classes[s->kind].group, role);
    luaL_argerror(L, idx, lua_pushfstring(L, "%s expected",
                  want >= 0 ? sock_classes[want].name : "socket"));
  }
  return s;
}

void sock_setkind(lua_State *L, int idx, nl_Socket *s, int kind) {
  idx = lua_absindex(L, idx);
  s->kind = kind;
  luaL_getmetatable(L, sock_classes[kind].name);
  lua_setmetatable(L, idx);
}

/* Pushes a closed socket of class `kind`; its descriptor comes later. */
nl_Socket *sock_new(lua_State *L, int kind, int family, int type, int protocol) {
  nl_Socket *s = lua_newuserdatauv(L, sizeof *s, 2);
  memset(s, 0, sizeof *s);
  s->fd = -1;
  s->family = family;
  s->type = type;
  s->protocol = protocol;
  s->kind = kind;
  s->block = s->total = -1;
  s->birthday = nl_walltime();
  s->owner_thread = nl_trace_thread;
  s->owner_task = nl_trace_task;
  luaL_setmetatable(L, sock_classes[kind].name);
  nl_inspect_list(&s->listed, sock_describe);
  return s;
}

/* Creates the descriptor for `family` (replacing one of another family),
 * with luasocket's IPV6_V6ONLY on for inet6. Returns IO_DONE or errno. */
int sock_openfd(nl_Socket *s, int family) {
  int fd, one = 1;
  if (s->fd >= 0 && s->family == family) return IO_DONE;
  nl_closefd(s->fd);
  s->fd = -1;
  fd = nl_socket(family, s->type, s->protocol);
  if (fd < 0) return -fd;
  if (family == AF_INET6 && s->type != SOCK_RAW)
    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
  s->fd = fd;
  s->family = family;
  opt_applypending(s);
  return IO_DONE;
}

/* Closes the descriptor and empties the buffer (connect tries the next
 * address on a fresh descriptor). */
void sock_closefd(nl_Socket *s) {
  nl_closefd(s->fd);
  s->fd = -1;
  s->drained = 0;
  s->first = s->last = 0;
}

/* close, __close, __gc: the calls waiting on the socket end with "closed"
 * (nl_closefd wakes those waiting on the descriptor). Idempotent. */
void sock_destroy(nl_Socket *s) {
  call_detach(s);
  inet_pendingfree(s);
  sock_closefd(s);
  opt_freepending(s);
  free(s->buf);
  s->buf = NULL;
}

/* ---- methods shared by every class ------------------------------------------ */

static int sock_close(lua_State *L) {
  nl_Socket *s = sock_check(L, 1);
  sock_destroy(s);
  lua_pushnumber(L, 1);
  return 1;
}

static int sock_gc(lua_State *L) {
  nl_Socket *s = sock_test(L, 1);
  if (s != NULL) sock_destroy(s);
  if (s != NULL) nl_inspect_unlist(&s->listed);
  return 0;
}

/* ---- the SIGQUIT listing ------------------------------------------------------ */

/* The kernel's state of a TCP socket ("ESTABLISHED"), or NULL. */
static const char *tcp_state(int fd) {
  static const char *const names[] = {
    "?", "ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT1", "FIN_WAIT2", "TIME_WAIT",
    "CLOSE", "CLOSE_WAIT", "LAST_ACK", "LISTEN", "CLOSING"};
  struct tcp_info ti;
  socklen_t len = sizeof ti;
  if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) != 0) return NULL;
  return ti.tcpi_state < sizeof names / sizeof *names ? names[ti.tcpi_state] : "?";
}

/* One end's address as "127.0.0.1:9000" (peer: the other end), or "". */
static void end_text(int fd, int peer, char *out, size_t size) {
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  char ip[INET6_ADDRSTRLEN];
  int port;
  int r = peer ? getpeername(fd, (struct sockaddr *)&ss, &len)
               : getsockname(fd, (struct sockaddr *)&ss, &len);
  out[0] = '\0';
  if (r != 0) return;
  if (ss.ss_family == AF_UNIX) {
    struct sockaddr_un *un = (struct sockaddr_un *)&ss;
    snprintf(out, size, "%s", un->sun_path[0] ? un->sun_path : "(unnamed)");
    return;
  }
  nl_addr_format((struct sockaddr *)&ss, ip, sizeof ip, &port);
  snprintf(out, size, ss.ss_family == AF_INET6 ? "[%s]:%d" : "%s:%d", ip, port);
}

/* "tcp{client} fd 7 127.0.0.1:40000 -> 127.0.0.1:51234 ESTABLISHED in=12
 * out=12 age=1.0s by main/task 2"; "" once closed. */
void sock_describe(nl_Listed *item, char *out, size_t size) {
  nl_Socket *s = (nl_Socket *)((char *)item - offsetof(nl_Socket, listed));
  char local[128], peer[128], owner[48];
  const char *state = NULL;
  if (s->fd < 0) return;
  end_text(s->fd, 0, local, sizeof local);
  end_text(s->fd, 1, peer, sizeof peer);
  if (s->type == SOCK_STREAM && (s->family == AF_INET || s->family == AF_INET6))
    state = tcp_state(s->fd);
  if (s->owner_thread == 0) snprintf(owner, sizeof owner, "main");
  else snprintf(owner, sizeof owner, "thread %ld", s->owner_thread);
  if (s->owner_task > 0)
    snprintf(owner + strlen(owner), sizeof owner - strlen(owner), "/task %ld", s->owner_task);
  snprintf(out, size, "%s fd %d %s%s%s%s%s in=%.0f out=%.0f age=%.1fs by %s",
           sock_classes[s->kind].name, s->fd, local[0] ? local : "(unbound)",
           peer[0] ? " -> " : "", peer, state ? " " : "", state ? state : "",
           s->received, s->sent, nl_walltime() - s->birthday, owner);
}

static int sock_tostring(lua_State *L) {
  nl_Socket *s = sock_check(L, 1);
  lua_pushfstring(L, "%s: %p", sock_classes[s->kind].name, (void *)s);
  return 1;
}

static int sock_dirty(lua_State *L) {
  nl_Socket *s = sock_check(L, 1);
  lua_pushboolean(L, s->first < s->last);
  return 1;
}

/* The descriptor; while a connect's lookup runs (socket_dns.c), the
 * lookup's, which turns readable when it is done. */
static int sock_getfd(lua_State *L) {
  nl_Socket *s = sock_check(L, 1);
  int fd = inet_pendingfd(s);
  lua_pushnumber(L, fd >= 0 ? fd : s->fd);
  return 1;
}

static int sock_setfd(lua_State *L) {
  nl_Socket *s = sock_check(L, 1);
  s->fd = TO_INT(luaL_checknumber(L, 2));
  s->drained = 0;
  return 0;
}

/* Remembers the host name (or address) at hostidx as the one the socket
 * at sidx was connected to: starttls and ssl.wrap check the certificate
 * against it. */
void sock_setname(lua_State *L, int sidx, int hostidx) {
  lua_pushvalue(L, hostidx);
  lua_setiuservalue(L, sidx, NAME_UV);
}

/* socket._connectedname(sock): that name, or nil (for the ssl module). */
static int socket_connectedname(lua_State *L) {
  sock_check(L, 1);
  lua_getiuservalue(L, 1, NAME_UV);
  return 1;
}

/* socket._adopt(fd, pending): a tcp{client} on the connected stream
 * descriptor fd (which it now owns), with `pending` (bytes already read
 * from it by someone else) first in its receive buffer; or nil, msg (fd
 * closed) when they do not fit. For http.server's req:socket(). */
static int socket_adopt(lua_State *L) {
  int fd = TO_INT(luaL_checknumber(L, 1));
  size_t len;
  const char *pending = luaL_optlstring(L, 2, "", &len);
  struct sockaddr_storage ss;
  socklen_t sslen = sizeof ss;
  nl_Socket *s;
  if (fd < 0) return nl_pusherrno(L, EBADF);
  if (len > SOCK_BUFSIZE) {
    nl_closefd(fd);
    return nl_pushfail(L, "too much data after the request head", NULL);
  }
  if (getsockname(fd, (struct sockaddr *)&ss, &sslen) != 0) {
    int err = errno;
    nl_closefd(fd);
    return nl_pusherrno(L, err);
  }
  s = sock_new(L, sock_kind(ss.ss_family == AF_UNIX ? G_UNIX : G_TCP, R_CLIENT), ss.ss_family,
               SOCK_STREAM, 0);
  s->fd = fd;
  if (len > 0) {
    if ((s->buf = malloc(SOCK_BUFSIZE)) == NULL) return luaL_error(L, "not enough memory");
    memcpy(s->buf, pending, len);
    s->last = len;
  }
  return 1;
}

static int sock_getfamily(lua_State *L) {
  nl_Socket *s = sock_check(L, 1);
  if (s->family == AF_INET6) lua_pushliteral(L, "inet6");
  else if (s->family == AF_UNIX) lua_pushliteral(L, "unix");
  else lua_pushliteral(L, "inet4");
  return 1;
}

static int sock_settimeout(lua_State *L) {
  nl_Socket *s = sock_check(L, 1);
  double t = luaL_optnumber(L, 2, -1);
  const char *mode = luaL_optstring(L, 3, "b");
  if (isnan(t) || t > NL_MAXTIMEOUT) t = -1; /* math.huge: no limit */
  switch (*mode) {
    case 'b': s->block = t; break;
    case 'r': case 't': s->total = t; break;
    default: luaL_argerror(L, 3, "invalid timeout mode");
  }
  lua_pushnumber(L, 1);
  return 1;
}

static int sock_gettimeout(lua_State *L) {
  nl_Socket *s = sock_check(L, 1);
  lua_pushnumber(L, s->block);
  lua_pushnumber(L, s->total);
  return 2;
}

static int sock_getstats(lua_State *L) {
  nl_Socket *s = sock_check(L, 1);
  lua_pushnumber(L, s->received);
  lua_pushnumber(L, s->sent);
  lua_pushnumber(L, nl_walltime() - s->birthday);
  return 3;
}

static int sock_setstats(lua_State *L) {
  nl_Socket *s = sock_check(L, 1);
  s->received = luaL_optnumber(L, 2, s->received);
  s->sent = luaL_optnumber(L, 3, s->sent);
  if (lua_isnumber(L, 4)) s->birthday = nl_walltime() - lua_tonumber(L, 4);
  lua_pushnumber(L, 1);
  return 1;
}

static int push_name(lua_State *L, nl_Socket *s, int peer) {
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  int r;
  if (peer && s->peerlen > 0 && s->fd >= 0)
    return inet_pushaddr(L, &s->peer.sa, s->peerlen, 0);
  r = peer ? getpeername(s->fd, (struct sockaddr *)&ss, &len)
           : getsockname(s->fd, (struct sockaddr *)&ss, &len);
  if (r != 0) return sock_pusherror(L, errno);
  return inet_pushaddr(L, (const struct sockaddr *)&ss, len, !peer);
}

static int sock_getsockname(lua_State *L) {
  return push_name(L, sock_check(L, 1), 0);
}

static int sock_getpeername(lua_State *L) {
  nl_Socket *s = sock_check(L, 1);
  int role = sock_classes[s->kind].role;
  if (role != R_CLIENT && role != R_CONN)
    sock_checkrole(L, 1, sock_isstream(sock_classes[s->kind].group) ? R_CLIENT : R_CONN);
  return push_name(L, s, 1);
}

const char *sock_optport(lua_State *L, int idx) {
  if (lua_isnoneornil(L, idx)) return "0";
  return luaL_checkstring(L, idx);
}

int sock_pushresult(lua_State *L, const char *err, const char *why) {
  if (err != NULL) return why_pushfail(L, err, why);
  lua_pushnumber(L, 1);
  return 1;
}

/* ---- moving a socket to another thread (nl_Transfer) ------------------------ */

/* What crosses: the descriptor, the settings, the bytes read ahead
 * (buf[0, nbuf)) and the name connect reached it by (buf[nbuf, nbuf +
 * namelen), when there is one), so that starttls in the new thread checks
 * the certificate against it as it would have here. */
typedef struct Payload {
  int fd, family, type, protocol, kind, bound, hasname;
  double block, total, birthday, received, sent;
  size_t maxline, nbuf, namelen;
  char buf[];
} Payload;

static void *sock_export(lua_State *L, int idx) {
  nl_Socket *s = sock_test(L, idx);
  Payload *p;
  const char *name = NULL;
  size_t n, namelen = 0;
  if (s == NULL || s->fd < 0) {
    lua_pushstring(L, "a closed socket cannot be passed to a thread");
    return NULL;
  }
  n = s->last - s->first;
  if (lua_getiuservalue(L, idx, NAME_UV) == LUA_TSTRING) name = lua_tolstring(L, -1, &namelen);
  p = malloc(sizeof *p + n + namelen);
  if (p == NULL) {
    lua_pop(L, 1);
    lua_pushstring(L, "not enough memory");
    return NULL;
  }
  p->hasname = name != NULL;
  p->namelen = namelen;
  if (name != NULL) memcpy(p->buf + n, name, namelen);
  lua_pop(L, 1);
  p->fd = s->fd; p->family = s->family; p->type = s->type;
  p->protocol = s->protocol; p->kind = s->kind; p->bound = s->bound;
  p->block = s->block; p->total = s->total; p->birthday = s->birthday;
  p->received = s->received; p->sent = s->sent;
  p->maxline = s->maxline;
  p->nbuf = n;
  if (n > 0) memcpy(p->buf, s->buf + s->first, n); /* no buffer before a read */
  /* The sender's object now reads as closed: the calls that wait on it
   * end with "closed", its loop forgets the descriptor. */
  call_detach(s);
  inet_pendingfree(s);
  nl_loop_forget(s->fd);
  s->fd = -1;
  sock_closefd(s);
  return p;
}

static void sock_import(lua_State *L, void *payload) {
  Payload *p = payload;
  nl_Socket *s = sock_new(L, p->kind, p->family, p->type, p->protocol);
  s->fd = p->fd; s->bound = p->bound;
  s->block = p->block; s->total = p->total; s->birthday = p->birthday;
  s->received = p->received; s->sent = p->sent;
  s->maxline = p->maxline;
  if (p->hasname) {
    lua_pushlstring(L, p->buf + p->nbuf, p->namelen);
    lua_setiuservalue(L, -2, NAME_UV);
  }
  if (p->nbuf > 0 && (s->buf = malloc(SOCK_BUFSIZE)) != NULL) {
    memcpy(s->buf, p->buf, p->nbuf);
    s->first = 0;
    s->last = p->nbuf;
  }
  free(p);
}

static void sock_discard(void *payload) {
  Payload *p = payload;
  nl_closefd(p->fd);
  free(p);
}

static const nl_Transfer sock_transfer = {"socket", sock_export, sock_import, sock_discard};

/* ---- module functions ------------------------------------------------------ */

static int make_sock(lua_State *L, int kind, int family, int type, int protocol) {
  nl_Socket *s = sock_new(L, kind, family, type, protocol);
  int e = family != AF_UNSPEC ? sock_openfd(s, family) : IO_DONE;
  return e == IO_DONE ? 1 : sock_pusherror(L, e);
}

static int socket_tcp(lua_State *L) {
  return make_sock(L, sock_kind(G_TCP, R_MASTER), AF_UNSPEC, SOCK_STREAM, 0);
}
static int socket_tcp4(lua_State *L) {
  return make_sock(L, sock_kind(G_TCP, R_MASTER), AF_INET, SOCK_STREAM, 0);
}
static int socket_tcp6(lua_State *L) {
  return make_sock(L, sock_kind(G_TCP, R_MASTER), AF_INET6, SOCK_STREAM, 0);
}
static int socket_udp(lua_State *L) {
  return make_sock(L, sock_kind(G_UDP, R_UNCONN), AF_UNSPEC, SOCK_DGRAM, 0);
}
static int socket_udp4(lua_State *L) {
  return make_sock(L, sock_kind(G_UDP, R_UNCONN), AF_INET, SOCK_DGRAM, 0);
}
static int socket_udp6(lua_State *L) {
  return make_sock(L, sock_kind(G_UDP, R_UNCONN), AF_INET6, SOCK_DGRAM, 0);
}
static int socket_unix_stream(lua_State *L) {
  return make_sock(L, sock_kind(G_UNIX, R_MASTER), AF_UNIX, SOCK_STREAM, 0);
}
static int socket_unix_dgram(lua_State *L) {
  return make_sock(L, sock_kind(G_UDGRAM, R_UNCONN), AF_UNIX, SOCK_DGRAM, 0);
}

/* socket.raw(family, protocol[, "raw"|"dgram"]): ICMP and friends. */
static int socket_raw(lua_State *L) {
  static const char *const families[] = {"inet", "inet6", NULL};
  static const char *const types[] = {"raw", "dgram", NULL};
  int family = luaL_checkoption(L, 1, "inet", families) ? AF_INET6 : AF_INET;
  int proto, type = luaL_checkoption(L, 3, "raw", types) ? SOCK_DGRAM : SOCK_RAW;
  nl_Socket *s;
  int e;
  if (lua_type(L, 2) == LUA_TNUMBER) proto = (int)lua_tointeger(L, 2);
  else {
    const char *name = luaL_optstring(L, 2, family == AF_INET ? "icmp" : "icmpv6");
    if (strcmp(name, "icmp") == 0) proto = IPPROTO_ICMP;
    else if (strcmp(name, "icmpv6") == 0) proto = IPPROTO_ICMPV6;
    else if (strcmp(name, "udp") == 0) proto = IPPROTO_UDP;
    else if (strcmp(name, "tcp") == 0) proto = IPPROTO_TCP;
    else return luaL_argerror(L, 2, "unknown protocol");
  }
  s = sock_new(L, sock_kind(G_RAW, R_UNCONN), family, type, proto);
  e = sock_openfd(s, family);
  if (e == EPERM || e == EACCES)
    return nl_pushfail(L, type == SOCK_RAW
        ? "raw sockets need root or CAP_NET_RAW (operation not permitted)"
        : "icmp datagram sockets are not permitted (see net.ipv4.ping_group_range)", "EPERM");
  if (e != IO_DONE) return nl_pusherrno(L, e);
  return 1;
}

static int socket_gettime(lua_State *L) {
  lua_pushnumber(L, nl_walltime());
  return 1;
}

/* luasocket's sleep: a negative time sleeps none (time.sleep raises). */
static int socket_sleep(lua_State *L) {
  nl_sleepk(L, 1, luaL_checknumber(L, 1));
  return 0;
}

/* ---- registration ----------------------------------------------------------- */

static const luaL_Reg common_methods[] = {
  {"close", sock_close}, {"dirty", sock_dirty}, {"getfamily", sock_getfamily},
  {"getfd", sock_getfd}, {"getoption", opt_getoption},
  {"getpeername", sock_getpeername}, {"getsockname", sock_getsockname},
  {"getstats", sock_getstats}, {"setstats", sock_setstats},
  {"setfd", sock_setfd}, {"setoption", opt_setoption},
  {"settimeout", sock_settimeout}, {"gettimeout", sock_gettimeout},
  {NULL, NULL}
};

static const luaL_Reg sock_meta[] = {
  {"__gc", sock_gc}, {"__close", sock_gc}, {"__tostring", sock_tostring},
  {NULL, NULL}
};

static const luaL_Reg socket_funcs[] = {
  {"tcp", socket_tcp}, {"tcp4", socket_tcp4}, {"tcp6", socket_tcp6},
  {"udp", socket_udp}, {"udp4", socket_udp4}, {"udp6", socket_udp6},
  {"connect", socket_connect}, {"select", socket_select},
  {"gettime", socket_gettime}, {"sleep", socket_sleep},
  {"gethostname", socket_gethostname}, {"raw", socket_raw},
  {"_connectedname", socket_connectedname}, {"_adopt", socket_adopt},
  {"_unix_stream", socket_unix_stream}, {"_unix_dgram", socket_unix_dgram},
  {NULL, NULL}
};

/* One metatable per class: the methods of its kind (closures over the
 * metatable, for sock_test), `class`, the transfer, its index in
 * sock_classes[]. */
static void register_classes(lua_State *L) {
  for (int k = 0; k < NCLASSES; k++) {
    nl_newclass(L, sock_classes[k].name, NULL, sock_meta);
    luaL_getmetatable(L, sock_classes[k].name); /* mt */
    lua_newtable(L);                       /* mt, methods */
    lua_pushvalue(L, -2);
    luaL_setfuncs(L, common_methods, 1);
    lua_pushvalue(L, -2);
    luaL_setfuncs(L, sock_isstream(sock_classes[k].group) ? stream_methods : dgram_methods, 1);
    lua_pushstring(L, sock_classes[k].name);
    lua_setfield(L, -2, "class");
    lua_setfield(L, -2, "__index");        /* mt */
    lua_pushlightuserdata(L, (void *)&sock_transfer);
    lua_setfield(L, -2, NL_TRANSFER_FIELD);
    lua_pushinteger(L, k);
    lua_rawseti(L, -2, KIND_KEY); /* for sock_test */
    lua_pop(L, 1);
  }
  inet_open(L);
}

/* {class name = its methods}, for socket.lua's additions (starttls).
 * [-0, +1, m] */
static void push_class_methods(lua_State *L) {
  lua_createtable(L, 0, NCLASSES);
  for (int k = 0; k < NCLASSES; k++) {
    luaL_getmetatable(L, sock_classes[k].name);
    lua_getfield(L, -1, "__index");
    lua_setfield(L, -3, sock_classes[k].name);
    lua_pop(L, 1);
  }
}

/* socket._SETSIZE: how many descriptors socket.select can watch. It has
 * no FD_SETSIZE cap (it waits through the loop's epoll or poll), so the
 * limit is the process's own: its RLIMIT_NOFILE when the module loads. */
static lua_Integer select_limit(void) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY ||
      rl.rlim_cur > INT_MAX)
    return INT_MAX;
  return (lua_Integer)rl.rlim_cur;
}

int luaopen_socket(lua_State *L) {
  register_classes(L);
  call_open(L);
  luaL_newlib(L, socket_funcs);
  lua_pushinteger(L, select_limit());
  lua_setfield(L, -2, "_SETSIZE");
  lua_newtable(L);
  luaL_setfuncs(L, dns_funcs, 0);
  lua_setfield(L, -2, "dns");
  push_class_methods(L);
  lua_setfield(L, -2, "_classes"); /* socket.lua takes it away */
  nl_runembedded(L, "socket", 1);
  return 1;
}
