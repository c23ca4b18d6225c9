/*
 * socket_options.c: setoption and getoption of the socket module (layer:
 * bindings), after luasocket's options.c, and the options tcp()/udp()
 * keep until they have a descriptor.
 */
#include <arpa/inet.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "socket_int.h"

enum { O_BOOL, O_INT, O_LINGER, O_MREQ, O_MREQ6, O_IFADDR, O_ERROR, O_MAXLINE };

struct Opt {
  const char *name;
  int level, optname, kind;
};

static const Opt options[] = {
  {"keepalive", SOL_SOCKET, SO_KEEPALIVE, O_BOOL},
  {"reuseaddr", SOL_SOCKET, SO_REUSEADDR, O_BOOL},
  {"reuseport", SOL_SOCKET, SO_REUSEPORT, O_BOOL},
  {"broadcast", SOL_SOCKET, SO_BROADCAST, O_BOOL},
  {"dontroute", SOL_SOCKET, SO_DONTROUTE, O_BOOL},
  {"linger", SOL_SOCKET, SO_LINGER, O_LINGER},
  {"so-sndbuf", SOL_SOCKET, SO_SNDBUF, O_INT},
  {"so-rcvbuf", SOL_SOCKET, SO_RCVBUF, O_INT},
  {"send-buffer-size", SOL_SOCKET, SO_SNDBUF, O_INT},
  {"recv-buffer-size", SOL_SOCKET, SO_RCVBUF, O_INT},
  {"error", SOL_SOCKET, SO_ERROR, O_ERROR},
  {"tcp-nodelay", IPPROTO_TCP, TCP_NODELAY, O_BOOL},
  {"tcp-keepidle", IPPROTO_TCP, TCP_KEEPIDLE, O_INT},
  {"tcp-keepcnt", IPPROTO_TCP, TCP_KEEPCNT, O_INT},
  {"tcp-keepintvl", IPPROTO_TCP, TCP_KEEPINTVL, O_INT},
  {"tcp-defer-accept", IPPROTO_TCP, TCP_DEFER_ACCEPT, O_INT},
  {"ipv6-v6only", IPPROTO_IPV6, IPV6_V6ONLY, O_BOOL},
  {"ip-multicast-ttl", IPPROTO_IP, IP_MULTICAST_TTL, O_INT},
  {"ip-multicast-loop", IPPROTO_IP, IP_MULTICAST_LOOP, O_BOOL},
  {"ip-multicast-if", IPPROTO_IP, IP_MULTICAST_IF, O_IFADDR},
  {"ip-add-membership", IPPROTO_IP, IP_ADD_MEMBERSHIP, O_MREQ},
  {"ip-drop-membership", IPPROTO_IP, IP_DROP_MEMBERSHIP, O_MREQ},
  {"ipv6-unicast-hops", IPPROTO_IPV6, IPV6_UNICAST_HOPS, O_INT},
  {"ipv6-multicast-hops", IPPROTO_IPV6, IPV6_MULTICAST_HOPS, O_INT},
  {"ipv6-multicast-loop", IPPROTO_IPV6, IPV6_MULTICAST_LOOP, O_BOOL},
  {"ipv6-add-membership", IPPROTO_IPV6, IPV6_JOIN_GROUP, O_MREQ6},
  {"ipv6-drop-membership", IPPROTO_IPV6, IPV6_LEAVE_GROUP, O_MREQ6},
  {"max-line", 0, 0, O_MAXLINE}, /* ours: kept on the object, not the descriptor */
  {NULL, 0, 0, 0}
};

static const Opt *check_opt(lua_State *L, int idx) {
  const char *name = luaL_checkstring(L, idx);
  for (const Opt *o = options; o->name != NULL; o++)
    if (strcmp(o->name, name) == 0) return o;
  luaL_argerror(L, idx, lua_pushfstring(L, "unsupported option `%s'", name));
  return NULL;
}

static int set_intopt(int fd, const Opt *o, int value, int extra) {
  if (o->kind == O_LINGER) {
    struct linger li;
    li.l_onoff = value;
    li.l_linger = extra;
    return setsockopt(fd, o->level, o->optname, &li, sizeof li);
  }
  return setsockopt(fd, o->level, o->optname, &value, sizeof value);
}

/* Options given before tcp()/udp() has a descriptor are kept and applied
 * when it is created (luasocket 3.0 fails them with "setsockopt failed"). */
void opt_applypending(nl_Socket *s) {
  for (int i = 0; i < s->npending; i++)
    set_intopt(s->fd, s->pending[i].opt, s->pending[i].value, s->pending[i].extra);
  opt_freepending(s);
}

void opt_freepending(nl_Socket *s) {
  free(s->pending);
  s->pending = NULL;
  s->npending = 0;
}

/* Most sockets never keep an option, so the list is made by the first. */
static int keep_pending(nl_Socket *s, const Opt *o, int value, int extra) {
  int i;
  if (s->pending == NULL && (s->pending = malloc(MAX_PENDING * sizeof *s->pending)) == NULL)
    return -1;
  for (i = 0; i < s->npending && s->pending[i].opt != o; i++) {}
  if (i == MAX_PENDING) return -1;
  s->pending[i].opt = o;
  s->pending[i].value = value;
  s->pending[i].extra = extra;
  if (i == s->npending) s->npending++;
  return 0;
}

static int get_boolean_arg(lua_State *L, int idx) {
  luaL_checktype(L, idx, LUA_TBOOLEAN);
  return lua_toboolean(L, idx);
}

/* Reads the integer value(s) of an option of kind bool/int/linger. */
static void opt_values(lua_State *L, const Opt *o, int *value, int *extra) {
  *extra = 0;
  if (o->kind == O_BOOL) {
    *value = get_boolean_arg(L, 3);
  } else if (o->kind == O_INT) {
    *value = TO_INT(luaL_checknumber(L, 3));
  } else {
    luaL_checktype(L, 3, LUA_TTABLE);
    lua_getfield(L, 3, "on");
    lua_getfield(L, 3, "timeout");
    *value = lua_toboolean(L, -2);
    *extra = TO_INT(lua_tonumber(L, -1));
    lua_pop(L, 2);
  }
}

static int set_addropt(lua_State *L, nl_Socket *s, const Opt *o) {
  int r;
  if (o->kind == O_IFADDR) {
    struct in_addr a;
    if (inet_pton(AF_INET, luaL_checkstring(L, 3), &a) != 1)
      luaL_argerror(L, 3, "ip expected");
    r = setsockopt(s->fd, o->level, o->optname, &a, sizeof a);
  } else if (o->kind == O_MREQ) {
    struct ip_mreq m;
    luaL_checktype(L, 3, LUA_TTABLE);
    lua_getfield(L, 3, "multiaddr");
    lua_getfield(L, 3, "interface");
    if (inet_pton(AF_INET, luaL_checkstring(L, -2), &m.imr_multiaddr) != 1)
      luaL_argerror(L, 3, "invalid 'multiaddr' ip address");
    if (strcmp(luaL_optstring(L, -1, "*"), "*") == 0)
      m.imr_interface.s_addr = htonl(INADDR_ANY);
    else if (inet_pton(AF_INET, lua_tostring(L, -1), &m.imr_interface) != 1)
      luaL_argerror(L, 3, "invalid 'interface' ip address");
    r = setsockopt(s->fd, o->level, o->optname, &m, sizeof m);
  } else {
    struct ipv6_mreq m;
    luaL_checktype(L, 3, LUA_TTABLE);
    lua_getfield(L, 3, "multiaddr");
    lua_getfield(L, 3, "interface");
    if (inet_pton(AF_INET6, luaL_checkstring(L, -2), &m.ipv6mr_multiaddr) != 1)
      luaL_argerror(L, 3, "invalid 'multiaddr' ip address");
    m.ipv6mr_interface = (unsigned)lua_tointeger(L, -1);
    r = setsockopt(s->fd, o->level, o->optname, &m, sizeof m);
  }
  return r;
}

/* Options of stream sockets only (max-line). */
static void check_stream_opt(lua_State *L, nl_Socket *s, const Opt *o) {
  if (!sock_isstream(sock_classes[s->kind].group))
    luaL_argerror(L, 2, lua_pushfstring(L, "unsupported option `%s'", o->name));
}

/* setoption("max-line", n): a positive integer; math.huge (or any n no
 * line reaches, from 1e15 on) for none. */
static int set_maxline(lua_State *L, nl_Socket *s, const Opt *o) {
  lua_Number n = luaL_checknumber(L, 3);
  check_stream_opt(L, s, o);
  luaL_argcheck(L, n >= 1 && n == floor(n), 3,
                "max-line must be a positive integer or math.huge");
  s->maxline = n >= 1e15 ? 0 : (size_t)n;
  lua_pushnumber(L, 1);
  return 1;
}

int opt_setoption(lua_State *L) {
  nl_Socket *s = sock_check(L, 1);
  const Opt *o = check_opt(L, 2);
  int value = 0, extra = 0, r;
  if (o->kind == O_ERROR) luaL_argerror(L, 2, "unsupported option `error'");
  if (o->kind == O_MAXLINE) return set_maxline(L, s, o);
  if (o->kind == O_BOOL || o->kind == O_INT || o->kind == O_LINGER) {
    opt_values(L, o, &value, &extra);
    if (s->fd < 0 && s->family == AF_UNSPEC)
      r = keep_pending(s, o, value, extra);
    else
      r = set_intopt(s->fd, o, value, extra);
  } else {
    r = set_addropt(L, s, o);
  }
  if (r != 0) return nl_pushfail(L, "setsockopt failed", NULL);
  lua_pushnumber(L, 1);
  return 1;
}

static int pending_value(nl_Socket *s, const Opt *o, int *value, int *extra) {
  for (int i = 0; i < s->npending; i++) {
    if (s->pending[i].opt->optname != o->optname || s->pending[i].opt->level != o->level)
      continue;
    *value = s->pending[i].value;
    *extra = s->pending[i].extra;
    return 0;
  }
  return -1;
}

int opt_getoption(lua_State *L) {
  nl_Socket *s = sock_check(L, 1);
  const Opt *o = check_opt(L, 2);
  int value = 0, extra = 0, r = -1;
  ErrBuf eb;
  if (o->kind == O_MAXLINE) {
    check_stream_opt(L, s, o);
    lua_pushnumber(L, s->maxline ? (lua_Number)s->maxline : HUGE_VAL);
    return 1;
  }
  if (o->kind != O_BOOL && o->kind != O_INT && o->kind != O_ERROR && o->kind != O_LINGER)
    luaL_argerror(L, 2, lua_pushfstring(L, "unsupported option `%s'", o->name));
  if (s->fd < 0) { /* no descriptor yet: what setoption kept, if anything */
    r = pending_value(s, o, &value, &extra);
  } else if (o->kind == O_LINGER) {
    struct linger li = {0, 0};
    socklen_t len = sizeof li;
    r = getsockopt(s->fd, o->level, o->optname, &li, &len);
    value = li.l_onoff;
    extra = li.l_linger;
  } else {
    socklen_t len = sizeof value;
    r = getsockopt(s->fd, o->level, o->optname, &value, &len);
  }
  if (r != 0) return nl_pushfail(L, "getsockopt failed", NULL);
  switch (o->kind) {
    case O_BOOL: lua_pushboolean(L, value != 0); break;
    case O_INT: lua_pushnumber(L, value); break;
    case O_ERROR: lua_pushstring(L, sock_ioerror(value, eb)); break; /* nil: none */
    default:
      lua_createtable(L, 0, 2);
      lua_pushboolean(L, value != 0);
      lua_setfield(L, -2, "on");
      lua_pushinteger(L, extra);
      lua_setfield(L, -2, "timeout");
  }
  return 1;
}

