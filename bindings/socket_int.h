/*
 * socket_int.h: what the files of the socket module share (layer:
 * bindings), private to them: the socket object and its classes, a call
 * that waits (its record and its turn on the socket), the I/O result codes
 * and the functions one file offers the others. Only luaopen_socket
 * (modules.h) leaves the module.
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
#include "trace.h"

#define SOCK_BUFSIZE 8192   /* a stream socket's receive buffer */
#define DGRAM_SIZE 8192     /* a datagram receive's default size */
#define DGRAM_MAX 65536     /* no datagram is larger */
#define MAX_PENDING 8       /* options kept before the descriptor exists */
#define NL_ADDRINFO_MT "socket.addrinfo"
#define NL_CALL_MT "socket.call"
#define SPARE_UV 1          /* a socket's user value: its spare call record */
#define NAME_UV 2           /* ... and the host connect reached it by (ssl) */

/* luasocket's io codes: IO_DONE, or a positive errno */
#define IO_DONE 0
#define IO_TIMEOUT (-1)
#define IO_CLOSED (-2)
#define IO_AGAIN (-3)   /* would block: wait, then call again */
#define IO_TOOLONG (-4) /* ours: a line over the socket's max-line */

typedef char ErrBuf[128];
typedef char WhyBuf[512]; /* an explanation (socket_explain.c); "": none */
#define ERRS_TIMEOUT 255          /* Progress.errs: that address timed out */

/* A Lua number as an int/long/size, clamped into range (a plain C cast of
 * an out-of-range double is undefined). */
static inline double sock_clamp(double d, double lo, double hi) {
  if (isnan(d) || d < lo) return lo;
  return d > hi ? hi : d;
}
#define TO_INT(d) ((int)sock_clamp((d), INT_MIN, INT_MAX))
#define TO_LONG(d) ((long)sock_clamp((d), -1e15, 1e15))
#define TO_SIZE(d) ((size_t)sock_clamp((d), 0, 1e15))

/* ---- classes ------------------------------------------------------------ */

enum { G_TCP, G_UDP, G_UNIX, G_UDGRAM, G_RAW };
enum { R_MASTER, R_CLIENT, R_SERVER, R_UNCONN, R_CONN };

typedef struct ClassInfo {
  const char *name; /* luasocket's class name, also the metatable name */
  int group, role;
} ClassInfo;

#define NCLASSES 12
extern const ClassInfo sock_classes[NCLASSES];

/* ---- the socket object ---------------------------------------------------- */

typedef struct Opt Opt;
typedef struct CallRec CallRec;

typedef struct Pending { /* an option set before the descriptor exists */
  const Opt *opt;
  int value, extra;
} Pending;

/* The two sides of a socket: receiving (receive, recv, accept, datagram
 * reads) and sending (send, datagram writes, and the calls that set the
 * socket up: connect, bind, setpeername, setsockname). */
enum { SIDE_READ, SIDE_WRITE, NSIDES };
#define SIDE_NONE (-1)

/* One side: the call that holds it across its waits, and the calls that
 * wait for their turn, first come first served (call_turn). */
typedef struct Side {
  CallRec *holder;
  CallRec *head, *tail;
} Side;

typedef struct nl_Socket {
  int fd;
  int family;   /* AF_UNSPEC until the first bind/connect of tcp()/udp() */
  int type, protocol;
  int kind;     /* index in sock_classes[] */
  int bound;    /* bound explicitly: connect must keep this descriptor */
  double block, total; /* luasocket's timeouts: each wait, the whole call */
  size_t maxline; /* receive("*l") fails on longer lines; 0: no limit */
  int drained;    /* the last read emptied the socket (see io_fill) */
  double birthday, received, sent;
  long owner_thread, owner_task; /* who made it (--trace's numbers) */
  nl_Listed listed;              /* in its state's list (SIGQUIT) */
  Side sides[NSIDES];
  struct Lookup *lookup; /* a name lookup a connect left running (socket_dns.c) */
  int npending;
  Pending *pending; /* MAX_PENDING, made by the first option kept */
  size_t first, last;
  /* The peer's address as accept4 gave it, kept while the connection is
   * known alive (no error or end of stream seen, no shutdown), so
   * getpeername on an accepted socket needs no system call (IPv4 and
   * IPv6 only); peerlen 0: ask the kernel. */
  socklen_t peerlen;
  union { struct sockaddr sa; struct sockaddr_in in; struct sockaddr_in6 in6; } peer;
  /* The receive buffer, SOCK_BUFSIZE bytes, made by the first read (a
   * socket that only sends, accepts or listens never has one). */
  char *buf;
} nl_Socket;

/* ---- a call that waits (socket_call.c) ----------------------------------- */

/* A method that may wait suspends, in a task, and is called again from
 * the start when it wakes (runtime/sched.c). What it has done so far
 * belongs to the call: the Call on the C stack while it runs; before it
 * first waits, its record, a userdata in its own stack slot
 * (nl_callrec_new), where the replay finds it. The slot is to-be-closed:
 * however the call ends (it returns, raises, its task is cancelled) the
 * side it holds goes to the next call in line and its lookups are freed. */

/* What a call has done so far: copied into its record before each wait,
 * back from it when the call is replayed. */
typedef struct Progress {
  double block, total; /* its timeouts, the socket's when it began: another
                          task's settimeout meanwhile is for later calls */
  double start;    /* its 't' timeout's start (-1: none yet) */
  double deadline; /* a call on no socket (select): its deadline */
  size_t len, got; /* receive: bytes it holds (below its slot), bytes read */
  size_t next;     /* send: index of its next byte (0: not started) */
  int trying;      /* connect: it has tried an address, */
  int tryidx;      /* which one (its index in the lookup's list), */
  int family;      /* and the family its lookup asked for */
  double tried_at; /* --trace: when it began trying that address */
  unsigned char errs[8]; /* connect: errno of each address that failed
                            (ERRS_TIMEOUT: it timed out) */
} Progress;

struct CallRec {
  nl_Socket *s;          /* the socket whose side it holds or waits for */
  CallRec *prev, *next;  /* its place in that side's queue */
  nl_WaitQueue q;        /* where it waits for its turn */
  int side, state;       /* SIDE_*; REC_FREE, REC_QUEUED or REC_HOLDS */
  int closed;            /* its socket was closed or moved away meanwhile */
  struct Lookup *lookups; /* the names it resolved (socket_dns.c) */
  Progress p;
};

typedef struct Call {
  lua_State *L;
  nl_Socket *s;  /* NULL: a call on no socket (select, dns.*) */
  int sidx;      /* the socket's stack index (0: none) */
  int side;      /* SIDE_* */
  int slot;      /* its record's stack slot: the nargs of its waits */
  CallRec *rec;  /* its record: a replay's, or made at its first wait */
  int gai;       /* the last name lookup's getaddrinfo code (inet_resolve) */
  Progress p;
} Call;

void call_begin(Call *c, lua_State *L, int sidx, int side, int nargs, int slot);
int call_return(Call *c, int n);
int call_turn(Call *c);
CallRec *call_keep(Call *c);
int call_wait(Call *c, int fd, int events);
int call_waitfor(Call *c, int fd, int events, double deadline);
double call_deadline(Call *c);
void call_detach(nl_Socket *s);
void call_open(lua_State *L);

/* ---- socket.c: the object ----------------------------------------------- */

int sock_kind(int group, int role);
int sock_isstream(int group);
nl_Socket *sock_test(lua_State *L, int idx);
nl_Socket *sock_check(lua_State *L, int idx);
nl_Socket *sock_checkrole(lua_State *L, int idx, int role);
void sock_setkind(lua_State *L, int idx, nl_Socket *s, int kind);
nl_Socket *sock_new(lua_State *L, int kind, int family, int type, int protocol);
int sock_openfd(nl_Socket *s, int family);
void sock_closefd(nl_Socket *s);
void sock_destroy(nl_Socket *s);
void sock_describe(nl_Listed *item, char *out, size_t size);
const char *sock_strerror(int err, char *eb);
const char *sock_ioerror(int err, char *eb);
const char *sock_optport(lua_State *L, int idx);
int sock_pushresult(lua_State *L, const char *err, const char *why);
int sock_pusherror(lua_State *L, int err);

/* ---- socket_stream.c, socket_udp.c: the classes' own methods ----------- */

extern const luaL_Reg stream_methods[];
extern const luaL_Reg dgram_methods[];
int socket_connect(lua_State *L);
void sock_setname(lua_State *L, int sidx, int hostidx);

/* ---- socket_options.c ----------------------------------------------------- */

void opt_applypending(nl_Socket *s);
void opt_freepending(nl_Socket *s);
int opt_setoption(lua_State *L);
int opt_getoption(lua_State *L);

/* ---- socket_select.c ------------------------------------------------------ */

int socket_select(lua_State *L);

/* ---- socket_dns.c: addresses, names, bind and connect --------------------- */

int inet_pushaddr(lua_State *L, const struct sockaddr *sa, socklen_t len, int port_string);
struct addrinfo *inet_resolve(Call *c, const char *host, const char *serv,
                              const struct addrinfo *hints, double deadline,
                              const char **err, char *eb);
int inet_unixaddr(const char *path, struct sockaddr_un *un, socklen_t *len);
const char *inet_trybind(Call *c, const char *host, const char *serv, char *eb,
                         char *why);
const char *inet_tryconnect(Call *c, const char *host, const char *serv, char *eb,
                            char *why);
void inet_lookupsfree(struct Lookup *lookups);
void inet_lookupswake(struct Lookup *lookups);
void inet_pendingfree(nl_Socket *s);
int inet_pendingfd(const nl_Socket *s);
void inet_open(lua_State *L);
int socket_gethostname(lua_State *L);
extern const luaL_Reg dns_funcs[];

/* ---- socket_explain.c: what a failure means, in words --------------------- */

/* Each fills `why` (a WhyBuf) with the explanation of a failure luasocket
 * reports in a word ("connection refused"), or leaves it "" when there is
 * nothing to add; a filled one also goes into the trace. The methods return
 * it after luasocket's own values (README: "Errors that explain
 * themselves"). */
void why_connect(char *why, int fd, const char *host, const struct addrinfo *list,
                 int family, const Progress *p, int last, int err);
void why_lookup(char *why, const char *host, int gai);
void why_bind(char *why, int fd, int type, const struct sockaddr *sa, int err);
void why_timeout(char *why, const nl_Socket *s, const Call *c, int side);
void why_closed(char *why, const nl_Socket *s, int err);
/* nil, err and, when `why` is not "", why: how many it pushed. */
int why_pushfail(lua_State *L, const char *err, const char *why);

#endif
