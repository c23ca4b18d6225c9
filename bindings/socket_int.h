/*
 * socket_int.h: what the files of the socket module share (layer:
 * bindings), private to them: the socket object, its sock_classes, the I/O
 * result codes and the functions one file offers the others. Only
 * luaopen_socket (modules.h) leaves the module.
 */
#ifndef NETLUA_SOCKET_INT_H
#define NETLUA_SOCKET_INT_H

#include <limits.h>
#include <math.h>
#include <netdb.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "netlua.h"
#include "sock.h"

#define NL_BUFSIZE 8192
#define NL_DGRAMSIZE 8192
#define NL_MAXDGRAM 65536
#define NL_ADDRINFO_MT "socket.addrinfo"
#define MAX_PENDING 8

/* ---- classes ------------------------------------------------------------ */

enum { G_TCP, G_UDP, G_UNIX, G_UDGRAM, G_RAW };
enum { R_MASTER, R_CLIENT, R_SERVER, R_UNCONN, R_CONN };

typedef struct ClassInfo {
  const char *name; /* luasocket's class name, also the metatable name */
  int group, role;
} ClassInfo;

#define NCLASSES 12
extern const ClassInfo sock_classes[NCLASSES];

int sock_kind(int group, int role);
int sock_isstream(int group);

/* ---- the socket object ---------------------------------------------------- */

typedef struct Opt Opt;

typedef struct Pending { /* an option set before the descriptor exists */
  const Opt *opt;
  int value, extra;
} Pending;

typedef struct nl_Socket {
  int fd;
  int family;   /* AF_UNSPEC until the first bind/connect of tcp()/udp() */
  int type, protocol;
  int kind;     /* index in sock_classes[] */
  int bound;    /* bound explicitly: connect must keep this descriptor */
  double block, total, start; /* luasocket's timeout.c */
  int nargs;      /* a wait in a task restarts the method with args 1..nargs */
  int askfamily;  /* connect: the family its lookup asked for (a restart asks the same) */
  int tryidx;     /* connect: the address being tried (a restart resumes there) */
  size_t maxline; /* receive("*l") fails on longer lines; 0: no limit */
  int drained;    /* the last read emptied the socket (see io_fill) */
  double birthday, received, sent;
  int npending;
  Pending pending[MAX_PENDING];
  size_t first, last;
  char buf[NL_BUFSIZE];
} nl_Socket;

/* luasocket's io codes: IO_DONE, or a positive errno */
#define IO_DONE 0
#define IO_TIMEOUT (-1)
#define IO_CLOSED (-2)
#define IO_TOOLONG (-4) /* ours: a line over the socket's max-line */

typedef char ErrBuf[128];

/* A Lua number as an int/long/size, clamped into range (a plain C cast of
 * an out-of-range double is undefined). */
static inline double sock_clamp(double d, double lo, double hi) {
  if (isnan(d) || d < lo) return lo;
  return d > hi ? hi : d;
}
#define TO_INT(d) ((int)sock_clamp((d), INT_MIN, INT_MAX))
#define TO_LONG(d) ((long)sock_clamp((d), -1e15, 1e15))
#define TO_SIZE(d) ((size_t)sock_clamp((d), 0, 1e15))

/* ---- socket.c: the object ----------------------------------------------- */

nl_Socket *sock_test(lua_State *L, int idx);
nl_Socket *sock_check(lua_State *L, int idx);
nl_Socket *sock_checkrole(lua_State *L, int idx, int role);
void sock_setkind(lua_State *L, int idx, nl_Socket *s, int kind);
nl_Socket *sock_new(lua_State *L, int kind, int family, int type, int protocol);
int sock_openfd(nl_Socket *s, int family);
void sock_destroy(nl_Socket *s);
const char *sock_ioerror(int err, char *eb);
const char *sock_optport(lua_State *L, int idx);
int sock_pushresult(lua_State *L, const char *err);

/* ---- socket_call.c: timeouts and the single waiting point ----------------- */

void timeout_markstart(lua_State *L, nl_Socket *s);
double timeout_deadline(nl_Socket *s);
int sock_wait(lua_State *L, nl_Socket *s, int events);

/* ---- socket_stream.c, socket_udp.c: the classes' own methods ----------- */

extern const luaL_Reg stream_methods[];
extern const luaL_Reg dgram_methods[];
int socket_connect(lua_State *L);

/* ---- socket_options.c ----------------------------------------------------- */

void opt_applypending(nl_Socket *s);
int opt_setoption(lua_State *L);
int opt_getoption(lua_State *L);

/* ---- socket_select.c ------------------------------------------------------ */

int socket_select(lua_State *L);

/* ---- socket_dns.c: addresses, names, bind and connect --------------------- */

int inet_pushaddr(lua_State *L, const struct sockaddr_storage *ss, socklen_t len, int port_string);
void inet_lookupsbegin(lua_State *L);
struct addrinfo *inet_resolve(lua_State *L, int nargs, const char *host, const char *serv,
                         const struct addrinfo *hints, double deadline,
                         const char **err, char *eb);
int inet_unixaddr(lua_State *L, const char *path, struct sockaddr_un *un, socklen_t *len);
const char *inet_trybind(lua_State *L, int nargs, nl_Socket *s, const char *host,
                    const char *serv, char *eb);
const char *inet_tryconnect(lua_State *L, nl_Socket *s, const char *host,
                       const char *serv, char *eb);
void inet_open(lua_State *L);
int socket_gethostname(lua_State *L);
extern const luaL_Reg dns_funcs[];

#endif
