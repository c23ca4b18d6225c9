/*
 * socket.c: the socket module, a drop-in for luasocket's core (layer:
 * bindings). TCP, UDP, Unix-domain and raw sockets with luasocket's class
 * names, methods, return values and error strings; the receive buffer and
 * the 'b'/'t' timeouts follow luasocket's buffer.c and timeout.c. Every
 * descriptor is non-blocking; every wait goes through sock_wait, the single
 * place that calls the runtime's nl_waitk (where Ctrl-C and the task
 * scheduler plug in), or, for name lookups, lookup_finish (inside a task
 * only the task waits for a lookup). The Lua half (socket.lua) adds
 * try/newtry/protect/skip, bind, connect4/6 and socket.unix.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "netlua.h"
#include "modules.h"
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

static const ClassInfo classes[] = {
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
#define NCLASSES ((int)(sizeof classes / sizeof classes[0]))

static int kind_of(int group, int role) {
  for (int k = 0; k < NCLASSES; k++)
    if (classes[k].group == group && classes[k].role == role) return k;
  return -1;
}

static int is_stream_group(int group) { return group == G_TCP || group == G_UNIX; }

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
  int kind;     /* index in classes[] */
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

static void apply_pending(nl_Socket *s);

/* luasocket's socket_strerror/io_strerror, lowercase for the others. */
static const char *io_error(int err, char *eb) {
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
    default: return nl_strerror(err, eb, sizeof(ErrBuf));
  }
}

/* luasocket's socket_gaistrerror; raises "interrupted" on Ctrl-C. */
static const char *gai_errstr(lua_State *L, int rc, char *eb) {
  switch (rc) {
    case 0: return NULL;
    case NL_EAI_TIMEOUT: return "timeout";
    case NL_EAI_INTERRUPTED: nl_raise_interrupted(L); return NULL;
    case EAI_AGAIN: return "temporary failure in name resolution";
    case EAI_BADFLAGS: return "invalid value for ai_flags";
    case EAI_FAIL: return "non-recoverable failure in name resolution";
    case EAI_FAMILY: return "ai_family not supported";
    case EAI_MEMORY: return "memory allocation failure";
    case EAI_NONAME: return "host or service not provided, or not known";
    case EAI_OVERFLOW: return "argument buffer overflow";
    case EAI_SERVICE: return "service not supported for socket type";
    case EAI_SOCKTYPE: return "ai_socktype not supported";
    case EAI_SYSTEM: return nl_strerror(errno, eb, sizeof(ErrBuf));
    default: return gai_strerror(rc);
  }
}

/* Each class's metatable holds its index in classes[] at this integer key
 * (register_classes): the cheapest lookup Lua has. */
#define KIND_KEY 1

/* The socket at idx, or NULL. Every method call checks its object, so this
 * is on every message's path, where luaL_testudata class by class took two
 * registry lookups by name per class tried (40 % of the task echo server's
 * user time). A method carries its class's metatable as upvalue 1
 * (register_classes): called on its own class, one comparison. Otherwise
 * (another class, a module function) one lookup in the object's metatable;
 * a metatable edited by hand is caught by the kind the object records. */
static nl_Socket *test_sock(lua_State *L, int idx) {
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

static nl_Socket *check_sock(lua_State *L, int idx) {
  nl_Socket *s = test_sock(L, idx);
  if (s == NULL) luaL_typeerror(L, idx, "socket");
  return s;
}

/* The object at idx in role `role` of its own group, else luasocket's
 * "bad argument #1 to 'accept' (tcp{server} expected)". */
static nl_Socket *check_role(lua_State *L, int idx, int role) {
  nl_Socket *s = check_sock(L, idx);
  if (classes[s->kind].role != role) {
    int want = kind_of(classes[s->kind].group, role);
    luaL_argerror(L, idx, lua_pushfstring(L, "%s expected",
                  want >= 0 ? classes[want].name : "socket"));
  }
  return s;
}

static void set_kind(lua_State *L, int idx, nl_Socket *s, int kind) {
  idx = lua_absindex(L, idx);
  s->kind = kind;
  luaL_getmetatable(L, classes[kind].name);
  lua_setmetatable(L, idx);
}

/* Pushes a closed socket of class `kind`; its descriptor comes later. */
static nl_Socket *new_sock(lua_State *L, int kind, int family, int type, int protocol) {
  nl_Socket *s = lua_newuserdatauv(L, sizeof *s, 0);
  memset(s, 0, offsetof(nl_Socket, buf));
  s->fd = -1;
  s->family = family;
  s->type = type;
  s->protocol = protocol;
  s->kind = kind;
  s->block = s->total = -1;
  s->birthday = nl_walltime();
  luaL_setmetatable(L, classes[kind].name);
  return s;
}

/* Creates the descriptor for `family` (replacing one of another family),
 * with luasocket's IPV6_V6ONLY on for inet6. Returns IO_DONE or errno. */
static int open_fd(nl_Socket *s, int family) {
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
  apply_pending(s);
  return IO_DONE;
}

static void close_sock(nl_Socket *s) {
  nl_closefd(s->fd);
  s->fd = -1;
  s->drained = 0;
  s->first = s->last = 0;
  s->npending = 0;
}

/* A Lua number as an int/long/size, clamped into range (a plain C cast of
 * an out-of-range double is undefined). */
static double clamp(double d, double lo, double hi) {
  if (isnan(d) || d < lo) return lo;
  return d > hi ? hi : d;
}
#define TO_INT(d) ((int)clamp((d), INT_MIN, INT_MAX))
#define TO_LONG(d) ((long)clamp((d), -1e15, 1e15))
#define TO_SIZE(d) ((size_t)clamp((d), 0, 1e15))

/* ---- timeouts and the single waiting point ---------------------------------- */

/* The start of a call; a call restarted after a wait in a task (see
 * sock_wait) keeps its start, so 't' timeouts span the whole call. */
static void tm_markstart(lua_State *L, nl_Socket *s) {
  if (nl_restarting(L)) return;
  s->start = s->total >= 0 ? nl_monotonic() : -1; /* no clock read per call */
}

/* The deadline of the next wait: 'b' per wait, 't' for the whole call. */
static double tm_deadline(nl_Socket *s) {
  double d = NL_NODEADLINE;
  if (s->block >= 0) d = nl_monotonic() + s->block;
  if (s->total >= 0) {
    double t;
    if (s->start < 0) s->start = nl_monotonic(); /* 't' set during the call */
    t = s->start + s->total;
    if (d < 0 || t < d) d = t;
  }
  return d;
}

/* Every wait of this module: 1 when ready, 0 on timeout; Ctrl-C raises.
 * Inside a task it suspends only the task, and the method then runs again
 * from the start with its stack values 1..s->nargs (each method that waits
 * sets nargs first and keeps its progress there: receive's data so far, send's
 * start index); the syscalls below are all safe to repeat. nargs < 0: the
 * method cannot be repeated, the wait blocks the thread's loop instead. */
static int sock_wait(lua_State *L, nl_Socket *s, int events) {
  /* settimeout(0): answer "timeout" at once, as luasocket does, without a
   * poll that cannot wait (it cost one ppoll per would-block call). */
  if (s->block == 0) return 0;
  if (nl_waitk(L, s->nargs, s->fd, events, tm_deadline(s)) <= 0) return 0;
  if (events & NL_READ) s->drained = 0; /* readable now: read it */
  return 1;
}

/* ---- raw I/O (luasocket's usocket.c) ------------------------------------- */

#define IO_AGAIN (-3) /* would block: wait, then call again */

/* May the next read of a drained socket wait first? A read that came back
 * short emptied the socket's queue; the call that follows (an echo's next
 * receive) would see EAGAIN and then wait, so it waits first and saves that
 * recv per message (the loop's epoll keeps the descriptor, level-triggered:
 * data that came in meanwhile answers the wait at once). Only where the
 * wait really waits: not with timeout 0 or a deadline gone (they answer
 * "timeout" after one try), not on the replay of a suspended call (its
 * wait reports the one that ended), not where a task cannot suspend (the
 * read may succeed where the wait would raise). */
static int may_wait_first(lua_State *L, nl_Socket *s) {
  double d;
  if (!s->drained || s->block == 0 || nl_restarting(L)) return 0;
  if (nl_task_ext(L) != NULL && !lua_isyieldable(L)) return 0;
  if (s->block < 0 && s->total < 0) return 1;
  d = tm_deadline(s);
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
  for (;;) {
    ssize_t n;
    if (s->fd < 0) return IO_CLOSED;
    n = recv(s->fd, s->buf, NL_BUFSIZE, 0);
    if (n > 0) {
      s->last = (size_t)n;
      s->received += (double)n;
      s->drained = n < NL_BUFSIZE;
      return IO_DONE;
    }
    if (n == 0) return IO_CLOSED;
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK)
      return (errno == ECONNRESET || errno == ECONNABORTED) ? IO_CLOSED : errno;
    return IO_AGAIN;
  }
}

/* io_fill, waiting while there is nothing to read. */
static int io_fill_wait(lua_State *L, nl_Socket *s) {
  for (;;) {
    int err = io_fill(s, may_wait_first(L, s));
    if (err != IO_AGAIN) return err;
    if (!sock_wait(L, s, NL_READ)) return IO_TIMEOUT;
  }
}

/* Sends what the socket takes now: IO_DONE, IO_AGAIN (*sent so far) or an
 * error code. */
static int io_send(nl_Socket *s, const char *data, size_t len, size_t *sent) {
  *sent = 0;
  while (*sent < len) {
    ssize_t n;
    if (s->fd < 0) return IO_CLOSED;
    n = send(s->fd, data + *sent, len - *sent, MSG_NOSIGNAL);
    if (n >= 0) {
      *sent += (size_t)n;
      s->sent += (double)n;
      continue;
    }
    if (errno == EINTR) continue;
    if (errno == EPIPE || errno == ECONNRESET) return IO_CLOSED;
    if (errno != EAGAIN && errno != EWOULDBLOCK) return errno;
    return IO_AGAIN;
  }
  return IO_DONE;
}

static int io_connect(lua_State *L, nl_Socket *s, const struct sockaddr *sa, socklen_t len) {
  int err = 0;
  socklen_t elen = sizeof err;
  if (s->fd < 0) return IO_CLOSED;
  if (connect(s->fd, sa, len) == 0) return IO_DONE;
  /* Called again after a wait in a task: a second connect reports how the
   * first one went (0 or its error), EALREADY while still in progress. */
  if (errno == EISCONN && nl_restarting(L)) return IO_DONE;
  /* EINTR: the connection goes on in the background, as EINPROGRESS */
  if (errno != EINPROGRESS && errno != EAGAIN && errno != EINTR && errno != EALREADY)
    return errno;
  if (!sock_wait(L, s, NL_WRITE)) return IO_TIMEOUT;
  if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &elen) != 0) return errno;
  return err;
}

/* ---- addresses ------------------------------------------------------------ */

static const char *family_name(int family) {
  switch (family) {
    case AF_INET: return "inet";
    case AF_INET6: return "inet6";
    case AF_UNIX: return "unix";
    default: return "unspec";
  }
}

static void push_port(lua_State *L, int port, int as_string) {
  if (as_string) lua_pushfstring(L, "%d", port);
  else lua_pushinteger(L, port);
}

/* Pushes ip, port, family (or a Unix path); returns how many. luasocket
 * gives the port as a string from getsockname/getpeername, as an integer
 * from receivefrom. */
static int push_addr(lua_State *L, const struct sockaddr_storage *ss, socklen_t len,
                     int port_string) {
  char ip[INET6_ADDRSTRLEN];
  if (ss->ss_family == AF_INET) {
    const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
    lua_pushstring(L, inet_ntop(AF_INET, &a->sin_addr, ip, sizeof ip));
    push_port(L, ntohs(a->sin_port), port_string);
  } else if (ss->ss_family == AF_INET6) {
    const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
    lua_pushstring(L, inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof ip));
    push_port(L, ntohs(a->sin6_port), port_string);
  } else if (ss->ss_family == AF_UNIX) {
    const struct sockaddr_un *a = (const struct sockaddr_un *)ss;
    size_t off = offsetof(struct sockaddr_un, sun_path);
    size_t n = len > off ? strnlen(a->sun_path, len - off) : 0;
    lua_pushlstring(L, a->sun_path, n);
    return 1;
  } else {
    lua_pushnil(L);
    lua_pushliteral(L, "unknown family");
    return 2;
  }
  lua_pushstring(L, family_name(ss->ss_family));
  return 3;
}

static int addrinfo_gc(lua_State *L) {
  struct addrinfo **box = luaL_checkudata(L, 1, NL_ADDRINFO_MT);
  if (*box != NULL) freeaddrinfo(*box);
  *box = NULL;
  return 0;
}

/* ---- name resolution that suspends only the task --------------------------- */

/* Outside tasks a lookup waits in nl_getaddrinfo (runtime/sock.c), which
 * blocks the thread but honours deadlines and Ctrl-C. In a task it must not
 * hold up the others: the job runs in sock.c's helper thread and the task
 * waits on the job's descriptor with nl_waitk. The method then starts over
 * from the top, so each lookup of the running call is recorded, with its
 * outcome, in the task's ext slot: the call, replayed, finds the lookups it
 * already made (their results, or the one it was waiting for) instead of
 * asking again, and its first wait takes the outcome of the suspended one.
 * The record belongs to one call: every method that resolves opens with
 * lookups_begin, which drops what an earlier call left. A cancelled task
 * drops its record through the slot's cleanup; an unfinished job is then
 * freed by its thread. */

typedef struct Lookup {
  struct Lookup *next;
  nl_Lookup *job;        /* running; NULL once its outcome is kept here */
  int rc, err;           /* the outcome: a getaddrinfo code (errno: EAI_SYSTEM) */
  struct addrinfo *res;  /* forward: the addresses, owned here */
  char name[NI_MAXHOST], service[NI_MAXSERV]; /* reverse: the names */
  /* what was asked: the key */
  int reverse, family, socktype, protocol, flags;
  char *host, *serv;
  struct sockaddr_storage sa;
  socklen_t salen;
} Lookup;

typedef struct Lookups {
  nl_TaskExt ext; /* first: the scheduler frees it through ext.cleanup */
  Lookup *head, *tail;
} Lookups;

static void lookup_free(Lookup *lk) {
  nl_lookup_release(lk->job);
  if (lk->res != NULL) freeaddrinfo(lk->res);
  free(lk->host);
  free(lk->serv);
  free(lk);
}

static void lookups_cleanup(nl_TaskExt *ext) {
  Lookups *ls = (Lookups *)ext;
  while (ls->head != NULL) {
    Lookup *next = ls->head->next;
    lookup_free(ls->head);
    ls->head = next;
  }
  free(ls);
}

/* At the top of every method that resolves: a fresh call (not one starting
 * over after a wait) must not find the lookups of an earlier call. */
static void lookups_begin(lua_State *L) {
  nl_TaskExt **slot = nl_task_ext(L);
  if (slot == NULL || nl_restarting(L) || *slot == NULL) return;
  if ((*slot)->cleanup != lookups_cleanup) return;
  lookups_cleanup(*slot);
  *slot = NULL;
}

/* The running call's record, made on first use; NULL when the lookup has
 * to block the thread as before: not a task, a method that cannot start
 * over (nargs < 0), a task that cannot yield here, no memory. Another
 * binding's record left in the slot by an earlier call is dropped. */
static Lookups *lookups_of(lua_State *L, int nargs) {
  nl_TaskExt **slot = nargs >= 0 && lua_isyieldable(L) ? nl_task_ext(L) : NULL;
  Lookups *ls;
  if (slot == NULL) return NULL;
  if (*slot != NULL && (*slot)->cleanup == lookups_cleanup) return (Lookups *)*slot;
  if ((ls = calloc(1, sizeof *ls)) == NULL) return NULL;
  if (*slot != NULL) (*slot)->cleanup(*slot);
  ls->ext.cleanup = lookups_cleanup;
  *slot = &ls->ext;
  return ls;
}

static int same_str(const char *a, const char *b) {
  return a == NULL ? b == NULL : b != NULL && strcmp(a, b) == 0;
}

static int lookup_same(const Lookup *a, const Lookup *b) {
  return a->reverse == b->reverse && a->family == b->family &&
         a->socktype == b->socktype && a->protocol == b->protocol &&
         a->flags == b->flags && same_str(a->host, b->host) &&
         same_str(a->serv, b->serv) && a->salen == b->salen &&
         memcmp(&a->sa, &b->sa, a->salen) == 0;
}

static void addr_key(Lookup *key, const char *host, const char *serv,
                     const struct addrinfo *hints) {
  memset(key, 0, sizeof *key);
  key->family = hints->ai_family;
  key->socktype = hints->ai_socktype;
  key->protocol = hints->ai_protocol;
  key->flags = hints->ai_flags;
  key->host = (char *)host; /* borrowed: lookup_add copies */
  key->serv = (char *)serv;
}

static void name_key(Lookup *key, const struct sockaddr *sa, socklen_t salen, int flags) {
  memset(key, 0, sizeof *key);
  key->reverse = 1;
  key->flags = flags;
  key->salen = salen > sizeof key->sa ? (socklen_t)sizeof key->sa : salen;
  memcpy(&key->sa, sa, key->salen);
}

/* A new entry for `key`, its job started (a job that cannot start is an
 * EAI_MEMORY outcome). NULL when out of memory. */
static Lookup *lookup_add(Lookups *ls, const Lookup *key) {
  Lookup *lk = malloc(sizeof *lk);
  if (lk == NULL) return NULL;
  *lk = *key;
  lk->host = key->host ? strdup(key->host) : NULL;
  lk->serv = key->serv ? strdup(key->serv) : NULL;
  if ((key->host && !lk->host) || (key->serv && !lk->serv)) {
    lookup_free(lk);
    return NULL;
  }
  if (lk->reverse) {
    lk->job = nl_lookup_name((struct sockaddr *)&lk->sa, lk->salen, lk->flags);
  } else {
    struct addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = lk->family;
    hints.ai_socktype = lk->socktype;
    hints.ai_protocol = lk->protocol;
    hints.ai_flags = lk->flags;
    lk->job = nl_lookup_addr(lk->host, lk->serv, &hints);
  }
  if (lk->job == NULL) lk->rc = EAI_MEMORY;
  if (ls->tail) ls->tail->next = lk;
  else ls->head = lk;
  ls->tail = lk;
  return lk;
}

/* Waits for the entry's job (suspends the task: the call starts over and
 * comes back here, where nl_waitk hands over the outcome), then keeps its
 * outcome in the entry and lets the job go. A call replayed after this wait
 * always passes through nl_waitk, so a later wait of the call does not take
 * its outcome. */
static void lookup_finish(lua_State *L, int nargs, Lookup *lk, double deadline) {
  nl_Lookup *job = lk->job;
  int fd = nl_lookup_fd(job), r = 1;
  if (!nl_lookup_done(job) || nl_restarting(L)) r = nl_waitk(L, nargs, fd, NL_READ, deadline);
  /* not suspended (the loop could not watch the descriptor): block */
  while (r > 0 && !nl_lookup_done(job)) r = nl_waitL(L, fd, NL_READ, deadline);
  if (r > 0 || nl_lookup_done(job)) {
    lk->rc = lk->reverse ? nl_lookup_nameinfo(job, lk->name, sizeof lk->name, lk->service,
                                              sizeof lk->service)
                         : nl_lookup_addrinfo(job, &lk->res);
    lk->err = errno;
  } else {
    lk->rc = NL_EAI_TIMEOUT;
  }
  lk->job = NULL;
  nl_lookup_release(job);
}

/* The finished lookup `key` of the running call in a task (errno set for
 * EAI_SYSTEM); NULL: do it the blocking way (see lookups_of; also a call
 * replayed after a later wait that finds no record of this lookup). */
static Lookup *lookup_k(lua_State *L, int nargs, const Lookup *key, double deadline) {
  Lookups *ls = lookups_of(L, nargs);
  Lookup *lk;
  if (ls == NULL) return NULL;
  for (lk = ls->head; lk != NULL && !lookup_same(lk, key); lk = lk->next) {}
  if (lk == NULL && (nl_restarting(L) || (lk = lookup_add(ls, key)) == NULL)) return NULL;
  if (lk->job != NULL) lookup_finish(L, nargs, lk, deadline);
  errno = lk->err;
  return lk;
}

/* Resolves into a box on the stack that __gc frees even when a later wait
 * raises (in a task the call's record owns the list and the box stays
 * empty); returns 0 and the list in *ai, or a getaddrinfo/NL_EAI_* code.
 * nargs: as for nl_waitk. [-0, +1, e] */
static int resolve_rc(lua_State *L, int nargs, const char *host, const char *serv,
                      const struct addrinfo *hints, double deadline, struct addrinfo **ai) {
  struct addrinfo **box = lua_newuserdatauv(L, sizeof *box, 0);
  Lookup key, *lk;
  int rc;
  *box = NULL;
  *ai = NULL;
  luaL_setmetatable(L, NL_ADDRINFO_MT);
  if (!nl_resolves_at_once(host, hints)) { /* numeric ones never wait */
    addr_key(&key, host, serv, hints);
    if ((lk = lookup_k(L, nargs, &key, deadline)) != NULL) {
      *ai = lk->res;
      return lk->rc;
    }
  }
  rc = nl_getaddrinfo(host, serv, hints, box, deadline);
  *ai = *box;
  return rc;
}

/* A port given as a number (or a string that reads as one) must be an
 * integer from 0 to 65535: getaddrinfo wraps "70000" to port 4464. It goes
 * on in its plain form, written into `num` ("8080" for 8080.0). Returns
 * NULL, or the error message (in eb). Service names ("http") pass as they
 * are. */
static const char *check_port(lua_State *L, const char **serv, char *num, char *eb) {
  lua_Number n;
  if (*serv == NULL || lua_stringtonumber(L, *serv) == 0) return NULL;
  n = lua_tonumber(L, -1);
  lua_pop(L, 1);
  if (n != floor(n) || n < 0 || n > 65535) {
    snprintf(eb, sizeof(ErrBuf), "%s: %s", n == floor(n) ? "port out of range"
             : "invalid port", *serv);
    return eb;
  }
  snprintf(num, 8, "%d", (int)n);
  *serv = num;
  return NULL;
}

/* resolve_rc with luasocket's error string in *err, after check_port.
 * [-0, +1, e] */
static struct addrinfo *resolve(lua_State *L, int nargs, const char *host, const char *serv,
                                const struct addrinfo *hints, double deadline,
                                const char **err, char *eb) {
  struct addrinfo *ai;
  char num[8];
  int rc;
  if ((*err = check_port(L, &serv, num, eb)) != NULL) {
    lua_pushnil(L);
    return NULL;
  }
  rc = resolve_rc(L, nargs, host, serv, hints, deadline, &ai);
  *err = gai_errstr(L, rc, eb);
  return rc == 0 ? ai : NULL;
}

/* getnameinfo under the same rules as resolve_rc (nothing on the stack). */
static int reverse_rc(lua_State *L, int nargs, const struct sockaddr *sa, socklen_t salen,
                      char *host, size_t hostlen, char *serv, size_t servlen, int flags) {
  Lookup key, *lk;
  name_key(&key, sa, salen, flags);
  if ((lk = lookup_k(L, nargs, &key, NL_NODEADLINE)) == NULL)
    return nl_getnameinfo(sa, salen, host, hostlen, serv, servlen, flags, NL_NODEADLINE);
  if (lk->rc == 0 && host != NULL && hostlen > 0) snprintf(host, hostlen, "%s", lk->name);
  if (lk->rc == 0 && serv != NULL && servlen > 0) snprintf(serv, servlen, "%s", lk->service);
  return lk->rc;
}

static int unix_addr(lua_State *L, const char *path, struct sockaddr_un *un, socklen_t *len) {
  size_t n = strlen(path);
  if (n >= sizeof un->sun_path) return ENAMETOOLONG;
  memset(un, 0, sizeof *un);
  un->sun_family = AF_UNIX;
  memcpy(un->sun_path, path, n);
  *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
  return IO_DONE;
}

/* Binds to the first address `host` resolves to that works (luasocket's
 * inet_trybind); "*" is the wildcard. */
static const char *do_bind(lua_State *L, int nargs, nl_Socket *s, const char *host,
                           const char *serv, char *eb) {
  struct addrinfo hints, *ai;
  const char *err = NULL;
  int top = lua_gettop(L);
  if (s->family == AF_UNIX) {
    struct sockaddr_un un;
    socklen_t len;
    int e = unix_addr(L, host, &un, &len);
    if (e == IO_DONE && s->fd < 0) e = open_fd(s, AF_UNIX);
    if (e == IO_DONE && bind(s->fd, (struct sockaddr *)&un, len) != 0) e = errno;
    if (e == IO_DONE) s->bound = 1;
    return io_error(e, eb);
  }
  memset(&hints, 0, sizeof hints);
  hints.ai_family = s->family;
  hints.ai_socktype = s->type;
  hints.ai_protocol = classes[s->kind].group == G_RAW ? 0 : s->protocol;
  hints.ai_flags = AI_PASSIVE;
  if (strcmp(host, "*") == 0) host = NULL;
  ai = resolve(L, nargs, host, serv ? serv : "0", &hints, NL_NODEADLINE, &err, eb);
  for (; ai != NULL; ai = ai->ai_next) {
    int e = open_fd(s, ai->ai_family);
    if (e == IO_DONE && bind(s->fd, ai->ai_addr, ai->ai_addrlen) != 0) e = errno;
    err = io_error(e, eb);
    if (err == NULL) {
      s->bound = 1;
      break;
    }
  }
  lua_settop(L, top);
  return err;
}

/* Connects to each address `host` resolves to, in order, until one
 * answers (luasocket's inet_tryconnect); name resolution counts against the
 * same timeout. A zero timeout leaves the connection in progress. A call
 * that starts over after a wait in a task sees the same list (same lookup)
 * and goes on with the address it was trying. */
static const char *do_connect(lua_State *L, nl_Socket *s, const char *host,
                              const char *serv, char *eb) {
  struct addrinfo hints, *ai;
  const char *err = NULL;
  int top = lua_gettop(L), tried = 0, i = 0, skip = 0;
  if (nl_restarting(L)) {
    skip = s->tryidx;
  } else {
    s->askfamily = s->family;
    s->tryidx = 0;
  }
  tm_markstart(L, s);
  if (s->family == AF_UNIX) {
    struct sockaddr_un un;
    socklen_t len;
    int e = unix_addr(L, host, &un, &len);
    if (e == IO_DONE && s->fd < 0) e = open_fd(s, AF_UNIX);
    if (e == IO_DONE) e = io_connect(L, s, (struct sockaddr *)&un, len);
    return io_error(e, eb);
  }
  memset(&hints, 0, sizeof hints);
  hints.ai_family = s->askfamily;
  hints.ai_socktype = s->type;
  ai = resolve(L, s->nargs, host, serv, &hints, tm_deadline(s), &err, eb);
  for (; ai != NULL; ai = ai->ai_next) {
    int e;
    if (i++ < skip) continue;
    s->tryidx = i - 1;
    if (tried++ && !s->bound) close_sock(s); /* a failed connect: fresh fd */
    e = open_fd(s, ai->ai_family);
    if (e == IO_DONE) e = io_connect(L, s, ai->ai_addr, ai->ai_addrlen);
    err = io_error(e, eb);
    if (err == NULL || s->block == 0 || s->total == 0) break;
  }
  lua_settop(L, top);
  return err;
}

/* ---- socket options (luasocket's options.c) ------------------------------ */

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
static void apply_pending(nl_Socket *s) {
  for (int i = 0; i < s->npending; i++)
    set_intopt(s->fd, s->pending[i].opt, s->pending[i].value, s->pending[i].extra);
  s->npending = 0;
}

static int keep_pending(nl_Socket *s, const Opt *o, int value, int extra) {
  int i;
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
  if (!is_stream_group(classes[s->kind].group))
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

static int sock_setoption(lua_State *L) {
  nl_Socket *s = check_sock(L, 1);
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

static int sock_getoption(lua_State *L) {
  nl_Socket *s = check_sock(L, 1);
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
    case O_ERROR: lua_pushstring(L, io_error(value, eb)); break; /* nil: none */
    default:
      lua_createtable(L, 0, 2);
      lua_pushboolean(L, value != 0);
      lua_setfield(L, -2, "on");
      lua_pushinteger(L, extra);
      lua_setfield(L, -2, "timeout");
  }
  return 1;
}

/* ---- methods shared by every class ------------------------------------------ */

static int sock_close(lua_State *L) {
  nl_Socket *s = check_sock(L, 1);
  close_sock(s);
  lua_pushnumber(L, 1);
  return 1;
}

static int sock_gc(lua_State *L) {
  nl_Socket *s = test_sock(L, 1);
  if (s != NULL) close_sock(s);
  return 0;
}

static int sock_tostring(lua_State *L) {
  nl_Socket *s = check_sock(L, 1);
  lua_pushfstring(L, "%s: %p", classes[s->kind].name, (void *)s);
  return 1;
}

static int sock_dirty(lua_State *L) {
  nl_Socket *s = check_sock(L, 1);
  lua_pushboolean(L, s->first < s->last);
  return 1;
}

static int sock_getfd(lua_State *L) {
  lua_pushnumber(L, check_sock(L, 1)->fd);
  return 1;
}

static int sock_setfd(lua_State *L) {
  nl_Socket *s = check_sock(L, 1);
  s->fd = TO_INT(luaL_checknumber(L, 2));
  s->drained = 0;
  return 0;
}

static int sock_getfamily(lua_State *L) {
  nl_Socket *s = check_sock(L, 1);
  if (s->family == AF_INET6) lua_pushliteral(L, "inet6");
  else if (s->family == AF_UNIX) lua_pushliteral(L, "unix");
  else lua_pushliteral(L, "inet4");
  return 1;
}

static int sock_settimeout(lua_State *L) {
  nl_Socket *s = check_sock(L, 1);
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
  nl_Socket *s = check_sock(L, 1);
  lua_pushnumber(L, s->block);
  lua_pushnumber(L, s->total);
  return 2;
}

static int sock_getstats(lua_State *L) {
  nl_Socket *s = check_sock(L, 1);
  lua_pushnumber(L, s->received);
  lua_pushnumber(L, s->sent);
  lua_pushnumber(L, nl_walltime() - s->birthday);
  return 3;
}

static int sock_setstats(lua_State *L) {
  nl_Socket *s = check_sock(L, 1);
  s->received = luaL_optnumber(L, 2, s->received);
  s->sent = luaL_optnumber(L, 3, s->sent);
  if (lua_isnumber(L, 4)) s->birthday = nl_walltime() - lua_tonumber(L, 4);
  lua_pushnumber(L, 1);
  return 1;
}

static int push_name(lua_State *L, nl_Socket *s, int peer) {
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  ErrBuf eb;
  int r = peer ? getpeername(s->fd, (struct sockaddr *)&ss, &len)
               : getsockname(s->fd, (struct sockaddr *)&ss, &len);
  if (r != 0) return nl_pushfail(L, io_error(errno, eb), NULL);
  return push_addr(L, &ss, len, 1);
}

static int sock_getsockname(lua_State *L) {
  return push_name(L, check_sock(L, 1), 0);
}

static int sock_getpeername(lua_State *L) {
  nl_Socket *s = check_sock(L, 1);
  int role = classes[s->kind].role;
  if (role != R_CLIENT && role != R_CONN)
    check_role(L, 1, is_stream_group(classes[s->kind].group) ? R_CLIENT : R_CONN);
  return push_name(L, s, 1);
}

/* ---- stream methods (tcp, unix) ------------------------------------------ */

static const char *opt_port(lua_State *L, int idx) {
  if (lua_isnoneornil(L, idx)) return "0";
  return luaL_checkstring(L, idx);
}

static int push_result(lua_State *L, const char *err) {
  if (err != NULL) return nl_pushfail(L, err, NULL);
  lua_pushnumber(L, 1);
  return 1;
}

static int stream_bind(lua_State *L) {
  nl_Socket *s = check_role(L, 1, R_MASTER);
  const char *host = luaL_checkstring(L, 2);
  const char *port = opt_port(L, 3);
  ErrBuf eb;
  lua_settop(L, 3);
  lookups_begin(L);
  return push_result(L, do_bind(L, 3, s, host, port, eb));
}

/* On a master or, as luasocket (tcp{any}), a client: connecting a connected
 * socket again answers "already connected". */
static int stream_connect(lua_State *L) {
  nl_Socket *s = check_sock(L, 1);
  const char *host = luaL_checkstring(L, 2);
  const char *port = s->family == AF_UNIX ? NULL : luaL_checkstring(L, 3);
  ErrBuf eb;
  const char *err;
  lua_settop(L, 3);
  s->nargs = 3;
  if (classes[s->kind].role != R_CLIENT) check_role(L, 1, R_MASTER);
  lookups_begin(L);
  err = do_connect(L, s, host, port, eb);
  if (err == NULL) set_kind(L, 1, s, kind_of(classes[s->kind].group, R_CLIENT));
  return push_result(L, err);
}

static int stream_listen(lua_State *L) {
  nl_Socket *s = check_role(L, 1, R_MASTER);
  int backlog = TO_INT(luaL_optnumber(L, 2, 32));
  ErrBuf eb;
  if (s->fd < 0) {
    int e = open_fd(s, s->family == AF_UNSPEC ? AF_INET : s->family);
    if (e != IO_DONE) return nl_pushfail(L, io_error(e, eb), NULL);
  }
  if (listen(s->fd, backlog) != 0) return nl_pushfail(L, io_error(errno, eb), NULL);
  set_kind(L, 1, s, kind_of(classes[s->kind].group, R_SERVER));
  lua_pushnumber(L, 1);
  return 1;
}

static int stream_accept(lua_State *L) {
  nl_Socket *s = check_role(L, 1, R_SERVER);
  ErrBuf eb;
  int err;
  lua_settop(L, 1);
  s->nargs = 1;
  tm_markstart(L, s);
  for (;;) {
    int fd;
    if (s->fd < 0) { err = IO_CLOSED; break; }
    fd = accept4(s->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) {
      nl_Socket *c = new_sock(L, kind_of(classes[s->kind].group, R_CLIENT),
                              s->family, s->type, s->protocol);
      c->fd = fd;
      c->maxline = s->maxline;
      return 1;
    }
    err = errno;
    if (err == EINTR || err == ECONNABORTED) continue;
    if (err != EAGAIN && err != EWOULDBLOCK) break;
    if (!sock_wait(L, s, NL_READ)) { err = IO_TIMEOUT; break; }
  }
  return nl_pushfail(L, io_error(err, eb), NULL);
}

/* ---- receive's data so far ------------------------------------------------ */

/* The stack slot where a receive call keeps its data while it waits. */
#define HELD_SLOT 4

/* Header of that slot's userdata; the data follows it. */
typedef struct Held {
  size_t len, got;
} Held;

/* A receive call's data: its prefix, then what it read. A call that needs
 * no wait keeps it on the C stack. Before its first wait it moves into a
 * userdata at HELD_SLOT, where a call restarted after a wait in a task finds
 * it again; later rounds append there, and the storage grows by doubling, so
 * a line that arrives in many pieces costs time linear in its length. */
typedef struct Gather {
  lua_State *L;
  char *data;
  size_t len, cap;
  size_t got;  /* bytes this call read (its prefix not counted) */
  Held *held;  /* the userdata at HELD_SLOT; NULL while data is `local` */
  char local[LUAL_BUFFERSIZE];
} Gather;

/* Moves the data into a new userdata at HELD_SLOT with room for cap bytes. */
static void gather_move(Gather *g, size_t cap) {
  Held *h = lua_newuserdatauv(g->L, sizeof *h + cap, 0);
  memcpy(h + 1, g->data, g->len);
  lua_replace(g->L, HELD_SLOT);
  g->held = h;
  g->data = (char *)(h + 1);
  g->cap = cap;
}

static void gather_add(Gather *g, const char *p, size_t n) {
  if (g->cap - g->len < n) gather_move(g, g->len + n > 2 * g->cap ? g->len + n : 2 * g->cap);
  memcpy(g->data + g->len, p, n);
  g->len += n;
}

/* A fresh call starts with its prefix; a restarted one where it stopped. */
static void gather_start(lua_State *L, Gather *g, const char *prefix, size_t plen) {
  Held *h = lua_touserdata(L, HELD_SLOT);
  g->L = L;
  g->held = h;
  if (h != NULL) {
    g->data = (char *)(h + 1);
    g->cap = lua_rawlen(L, HELD_SLOT) - sizeof *h;
    g->len = h->len;
    g->got = h->got;
    return;
  }
  g->data = g->local;
  g->cap = sizeof g->local;
  g->len = g->got = 0;
  gather_add(g, prefix, plen);
}

/* Before a wait: the data goes where a restarted call looks for it. */
static void gather_keep(Gather *g) {
  if (g->held == NULL) gather_move(g, g->cap);
  g->held->len = g->len;
  g->held->got = g->got;
}

/* ---- receive ---------------------------------------------------------------- */

/* Reads until the data holds `wanted` bytes (luasocket's recvraw). */
static int recv_count(nl_Socket *s, Gather *g, size_t wanted, int lazy) {
  while (g->len < wanted) {
    size_t take;
    int err = io_fill(s, lazy);
    if (err != IO_DONE) return err;
    take = s->last - s->first;
    if (take > wanted - g->len) take = wanted - g->len;
    gather_add(g, s->buf + s->first, take);
    s->first += take;
  }
  return IO_DONE;
}

/* Adds the bytes from s->first up to `end` without their '\r's, moving
 * s->first past them, while the line stays within `limit` bytes: IO_DONE,
 * or IO_TOOLONG with the byte that did not fit left unread. */
static int add_line_bytes(nl_Socket *s, Gather *g, const char *end, size_t limit) {
  while (s->buf + s->first < end) {
    const char *p = s->buf + s->first, *cr = memchr(p, '\r', (size_t)(end - p));
    size_t n = (size_t)((cr ? cr : end) - p), room = g->len < limit ? limit - g->len : 0;
    if (n > room) {
      gather_add(g, p, room);
      s->first += room;
      return IO_TOOLONG;
    }
    gather_add(g, p, n);
    s->first += n + (cr != NULL);
  }
  return IO_DONE;
}

/* Reads up to '\n', dropping every '\r' (luasocket's recvline); a line
 * (its prefix included) may hold at most `limit` bytes. */
static int recv_line(nl_Socket *s, Gather *g, size_t limit, int lazy) {
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
static int recv_all(nl_Socket *s, Gather *g, int lazy) {
  for (;;) {
    size_t n;
    int err = io_fill(s, lazy);
    if (err == IO_CLOSED) return g->got > 0 ? IO_DONE : IO_CLOSED;
    if (err != IO_DONE) return err;
    n = s->last - s->first;
    gather_add(g, s->buf + s->first, n);
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
static int receive_round(lua_State *L, nl_Socket *s, Gather *g, int pattern, size_t wanted) {
  int lazy = may_wait_first(L, s);
  switch (pattern) {
    case P_COUNT: return recv_count(s, g, wanted, lazy);
    case P_LINE: return recv_line(s, g, s->maxline ? s->maxline : (size_t)-1, lazy);
    default: return recv_all(s, g, lazy);
  }
}

/* receive([pattern[, prefix]]): data, or nil, err, partial. A round that
 * would block keeps the data so far at HELD_SLOT, then waits: a call that
 * starts over after a wait (in a task) goes on from there. */
static int stream_receive(lua_State *L) {
  nl_Socket *s = check_role(L, 1, R_CLIENT);
  size_t plen, wanted = 0;
  const char *prefix = luaL_optlstring(L, 3, "", &plen);
  int pattern = check_pattern(L, &wanted), err;
  Gather g;
  ErrBuf eb;
  if (!nl_restarting(L)) lua_settop(L, 3); /* a fresh call holds nothing yet */
  lua_settop(L, HELD_SLOT);
  s->nargs = HELD_SLOT;
  tm_markstart(L, s);
  gather_start(L, &g, prefix, plen);
  while ((err = receive_round(L, s, &g, pattern, wanted)) == IO_AGAIN) {
    gather_keep(&g);
    if (!sock_wait(L, s, NL_READ)) {
      err = IO_TIMEOUT;
      break;
    }
  }
  if (err == IO_DONE) {
    lua_pushlstring(L, g.data, g.len);
    lua_pushnil(L);
    lua_pushnil(L);
    return 3;
  }
  lua_pushnil(L);
  lua_pushstring(L, io_error(err, eb));
  lua_pushlstring(L, g.data, g.len);
  return 3;
}

/* recv([n]): Python's meaning: whatever is there, up to n bytes. */
static int stream_recv(lua_State *L) {
  nl_Socket *s = check_role(L, 1, R_CLIENT);
  lua_Integer n = luaL_optinteger(L, 2, NL_BUFSIZE);
  size_t take;
  int err;
  ErrBuf eb;
  luaL_argcheck(L, n > 0, 2, "size must be positive");
  lua_settop(L, 2);
  s->nargs = 2;
  tm_markstart(L, s);
  err = io_fill_wait(L, s);
  if (err != IO_DONE) return nl_pushfail(L, io_error(err, eb), NULL);
  take = s->last - s->first;
  if (take > (size_t)n) take = (size_t)n;
  lua_pushlstring(L, s->buf + s->first, take);
  s->first += take;
  return 1;
}

/* send(data[, i[, j]]): index of the last byte sent, or nil, err, last.
 * Before a wait, i moves past what was sent (the call can start over). */
static int stream_send(lua_State *L) {
  nl_Socket *s = check_role(L, 1, R_CLIENT);
  size_t size, sent = 0;
  const char *data = luaL_checklstring(L, 2, &size);
  long start, end;
  int err = IO_DONE;
  ErrBuf eb;
  luaL_optnumber(L, 3, 1);
  luaL_optnumber(L, 4, -1);
  lua_settop(L, 4);
  s->nargs = 4;
  tm_markstart(L, s);
  for (;;) {
    start = TO_LONG(luaL_optnumber(L, 3, 1));
    end = TO_LONG(luaL_optnumber(L, 4, -1));
    if (start < 0) start = (long)size + start + 1;
    if (end < 0) end = (long)size + end + 1;
    if (start < 1) start = 1;
    if (end > (long)size) end = (long)size;
    sent = 0;
    if (start > end) break;
    err = io_send(s, data + start - 1, (size_t)(end - start + 1), &sent);
    if (err != IO_AGAIN) break;
    lua_pushinteger(L, (lua_Integer)(start + (long)sent));
    lua_replace(L, 3);
    if (!sock_wait(L, s, NL_WRITE)) {
      err = IO_TIMEOUT;
      sent = 0;
      start = TO_LONG(lua_tonumber(L, 3));
      break;
    }
  }
  if (err != IO_DONE) {
    lua_pushnil(L);
    lua_pushstring(L, io_error(err, eb));
    lua_pushnumber(L, (double)sent + (double)start - 1);
    return 3;
  }
  lua_pushnumber(L, (double)sent + (double)start - 1);
  lua_pushnil(L);
  lua_pushnil(L);
  return 3;
}

static int stream_shutdown(lua_State *L) {
  static const char *const modes[] = {"receive", "send", "both", NULL};
  static const int how[] = {SHUT_RD, SHUT_WR, SHUT_RDWR};
  nl_Socket *s = check_role(L, 1, R_CLIENT);
  int m = luaL_checkoption(L, 2, "both", modes);
  shutdown(s->fd, how[m]);
  lua_pushnumber(L, 1);
  return 1;
}

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
  tm_markstart(L, s);
  data = luaL_buffinitsize(L, &b, wanted);
  err = dgram_read(L, s, data, wanted, &got, with_from ? &from : NULL,
                   with_from ? &fromlen : NULL);
  if (err != IO_DONE) {
    luaL_pushresultsize(&b, 0);
    return nl_pushfail(L, io_error(err, eb), NULL);
  }
  luaL_pushresultsize(&b, got);
  if (!with_from) return 1;
  top = lua_gettop(L) - 1;
  if (s->family == AF_UNIX && fromlen <= offsetof(struct sockaddr_un, sun_path)) {
    lua_pushliteral(L, "");
    return 2;
  }
  if (push_addr(L, &from, fromlen, 0) == 3) lua_pop(L, 1); /* ip, port */
  return lua_gettop(L) - top;
}

static int dgram_receive(lua_State *L) {
  nl_Socket *s = check_sock(L, 1);
  lua_settop(L, 2);
  s->nargs = 2;
  return dgram_recv_common(L, s, 0);
}

static int dgram_receivefrom(lua_State *L) {
  nl_Socket *s = check_role(L, 1, R_UNCONN);
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
  if (err != IO_DONE) return nl_pushfail(L, io_error(err, eb), NULL);
  lua_pushnumber(L, (double)sent);
  return 1;
}

static int dgram_send(lua_State *L) {
  nl_Socket *s = check_role(L, 1, R_CONN);
  size_t len, sent = 0;
  const char *data = luaL_checklstring(L, 2, &len);
  int err;
  lua_settop(L, 2);
  s->nargs = 2;
  tm_markstart(L, s);
  err = dgram_write(L, s, data, len, NULL, 0, &sent);
  return push_sent(L, err, sent);
}

/* sendto(data, ip, port): numeric addresses only, as luasocket. */
static int dgram_sendto(lua_State *L) {
  nl_Socket *s = check_role(L, 1, R_UNCONN);
  size_t len, sent = 0;
  const char *data = luaL_checklstring(L, 2, &len);
  const char *ip = luaL_checkstring(L, 3);
  struct addrinfo hints, *ai;
  const char *err;
  ErrBuf eb;
  int e;
  lua_settop(L, 4);
  s->nargs = 4;
  tm_markstart(L, s);
  lookups_begin(L);
  if (s->family == AF_UNIX) {
    struct sockaddr_un un;
    socklen_t ulen;
    e = unix_addr(L, ip, &un, &ulen);
    if (e == IO_DONE && s->fd < 0) e = open_fd(s, AF_UNIX);
    if (e == IO_DONE) e = dgram_write(L, s, data, len, (struct sockaddr *)&un, ulen, &sent);
    return push_sent(L, e, sent);
  }
  memset(&hints, 0, sizeof hints);
  hints.ai_family = s->family;
  hints.ai_socktype = classes[s->kind].group == G_RAW ? 0 : s->type;
  hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
  ai = resolve(L, 4, ip, classes[s->kind].group == G_RAW ? NULL : luaL_checkstring(L, 4),
               &hints, NL_NODEADLINE, &err, eb);
  if (ai == NULL) return nl_pushfail(L, err, NULL);
  e = open_fd(s, s->fd < 0 ? ai->ai_family : s->family);
  if (e == IO_DONE) e = dgram_write(L, s, data, len, ai->ai_addr, ai->ai_addrlen, &sent);
  return push_sent(L, e, sent);
}

/* setpeername(host, port) connects; setpeername("*") disconnects. */
static int dgram_setpeername(lua_State *L) {
  nl_Socket *s = check_sock(L, 1);
  const char *host = luaL_checkstring(L, 2);
  int group = classes[s->kind].group;
  ErrBuf eb;
  const char *err;
  if (strcmp(host, "*") == 0) {
    struct sockaddr sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_family = AF_UNSPEC;
    if (s->fd >= 0) connect(s->fd, &sa, sizeof sa);
    set_kind(L, 1, s, kind_of(group, R_UNCONN));
    lua_pushnumber(L, 1);
    return 1;
  }
  lua_settop(L, 3);
  s->nargs = 3; /* a name's lookup waits; datagram connects do not */
  lookups_begin(L);
  err = do_connect(L, s, host, s->family == AF_UNIX ? NULL : opt_port(L, 3), eb);
  if (err == NULL) set_kind(L, 1, s, kind_of(group, R_CONN));
  return push_result(L, err);
}

static int dgram_setsockname(lua_State *L) {
  nl_Socket *s = check_role(L, 1, R_UNCONN);
  const char *host = luaL_checkstring(L, 2);
  ErrBuf eb;
  lua_settop(L, 3);
  lookups_begin(L);
  return push_result(L, do_bind(L, 3, s, host, opt_port(L, 3), eb));
}

/* ---- moving a socket to another thread (nl_Transfer) ------------------------ */

typedef struct Payload {
  int fd, family, type, protocol, kind, bound;
  double block, total, birthday, received, sent;
  size_t maxline, nbuf;
  char buf[];
} Payload;

static void *sock_export(lua_State *L, int idx) {
  nl_Socket *s = test_sock(L, idx);
  Payload *p;
  size_t n;
  if (s == NULL || s->fd < 0) {
    lua_pushstring(L, "a closed socket cannot be passed to a thread");
    return NULL;
  }
  n = s->last - s->first;
  p = malloc(sizeof *p + n);
  if (p == NULL) {
    lua_pushstring(L, "not enough memory");
    return NULL;
  }
  p->fd = s->fd; p->family = s->family; p->type = s->type;
  p->protocol = s->protocol; p->kind = s->kind; p->bound = s->bound;
  p->block = s->block; p->total = s->total; p->birthday = s->birthday;
  p->received = s->received; p->sent = s->sent;
  p->maxline = s->maxline;
  p->nbuf = n;
  memcpy(p->buf, s->buf + s->first, n);
  s->fd = -1; /* the sender's object now reads as closed */
  s->first = s->last = 0;
  return p;
}

static void sock_import(lua_State *L, void *payload) {
  Payload *p = payload;
  nl_Socket *s = new_sock(L, p->kind, p->family, p->type, p->protocol);
  s->fd = p->fd; s->bound = p->bound;
  s->block = p->block; s->total = p->total; s->birthday = p->birthday;
  s->received = p->received; s->sent = p->sent;
  s->maxline = p->maxline;
  memcpy(s->buf, p->buf, p->nbuf);
  s->first = 0;
  s->last = p->nbuf;
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
  nl_Socket *s = new_sock(L, kind, family, type, protocol);
  ErrBuf eb;
  if (family != AF_UNSPEC) {
    int e = open_fd(s, family);
    if (e != IO_DONE) return nl_pushfail(L, io_error(e, eb), NULL);
  }
  return 1;
}

static int socket_tcp(lua_State *L) {
  return make_sock(L, kind_of(G_TCP, R_MASTER), AF_UNSPEC, SOCK_STREAM, 0);
}
static int socket_tcp4(lua_State *L) {
  return make_sock(L, kind_of(G_TCP, R_MASTER), AF_INET, SOCK_STREAM, 0);
}
static int socket_tcp6(lua_State *L) {
  return make_sock(L, kind_of(G_TCP, R_MASTER), AF_INET6, SOCK_STREAM, 0);
}
static int socket_udp(lua_State *L) {
  return make_sock(L, kind_of(G_UDP, R_UNCONN), AF_UNSPEC, SOCK_DGRAM, 0);
}
static int socket_udp4(lua_State *L) {
  return make_sock(L, kind_of(G_UDP, R_UNCONN), AF_INET, SOCK_DGRAM, 0);
}
static int socket_udp6(lua_State *L) {
  return make_sock(L, kind_of(G_UDP, R_UNCONN), AF_INET6, SOCK_DGRAM, 0);
}
static int socket_unix_stream(lua_State *L) {
  return make_sock(L, kind_of(G_UNIX, R_MASTER), AF_UNIX, SOCK_STREAM, 0);
}
static int socket_unix_dgram(lua_State *L) {
  return make_sock(L, kind_of(G_UDGRAM, R_UNCONN), AF_UNIX, SOCK_DGRAM, 0);
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
  s = new_sock(L, kind_of(G_RAW, R_UNCONN), family, type, proto);
  e = open_fd(s, family);
  if (e == EPERM || e == EACCES)
    return nl_pushfail(L, type == SOCK_RAW
        ? "raw sockets need root or CAP_NET_RAW (operation not permitted)"
        : "icmp datagram sockets are not permitted (see net.ipv4.ping_group_range)", "EPERM");
  if (e != IO_DONE) return nl_pusherrno(L, e);
  return 1;
}

/* socket.connect(host, port[, lhost, lport, family]): a tcp{client}. */
static int socket_connect(lua_State *L) {
  static const char *const families[] = {"unspec", "inet", "inet6", NULL};
  static const int fams[] = {AF_UNSPEC, AF_INET, AF_INET6};
  const char *host = luaL_checkstring(L, 1);
  const char *port = luaL_checkstring(L, 2);
  const char *lhost = luaL_optstring(L, 3, NULL);
  const char *lport = luaL_optstring(L, 4, "0");
  int family = fams[luaL_checkoption(L, 5, "unspec", families)];
  nl_Socket *s = NULL;
  const char *err = NULL;
  ErrBuf eb;
  /* After a wait in a task the call starts over with its socket at 6. */
  if (nl_restarting(L)) s = test_sock(L, 6);
  lookups_begin(L);
  if (s == NULL) {
    lua_settop(L, 5);
    s = new_sock(L, kind_of(G_TCP, R_MASTER), family, SOCK_STREAM, 0);
  }
  lua_settop(L, 6);
  s->nargs = 6;
  if (lhost != NULL && !s->bound) err = do_bind(L, 6, s, lhost, lport, eb);
  if (err == NULL) err = do_connect(L, s, host, port, eb);
  if (err != NULL) {
    close_sock(s);
    return nl_pushfail(L, err, NULL);
  }
  set_kind(L, -1, s, kind_of(G_TCP, R_CLIENT));
  return 1;
}

static int socket_gettime(lua_State *L) {
  lua_pushnumber(L, nl_walltime());
  return 1;
}

static int socket_sleep(lua_State *L) {
  nl_sleepk(L, 1, luaL_checknumber(L, 1));
  return 0;
}

static int socket_gethostname(lua_State *L) {
  char name[256];
  if (gethostname(name, sizeof name) != 0) return nl_pusherrno(L, errno);
  name[sizeof name - 1] = '\0';
  lua_pushstring(L, name);
  return 1;
}

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

static int socket_select(lua_State *L) {
  int nr = table_len(L, 1), nw = table_len(L, 2), dirty, r;
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

/* ---- dns --------------------------------------------------------------------- */

static void push_resolved(lua_State *L, const char *name, struct addrinfo *ai) {
  char ip[INET6_ADDRSTRLEN];
  int n = 0;
  lua_createtable(L, 0, 3);
  lua_pushstring(L, name);
  lua_setfield(L, -2, "name");
  lua_newtable(L);
  lua_setfield(L, -2, "alias");
  lua_newtable(L);
  for (; ai != NULL; ai = ai->ai_next) {
    const struct sockaddr_in *a = (const struct sockaddr_in *)ai->ai_addr;
    if (ai->ai_family != AF_INET) continue;
    inet_ntop(AF_INET, &a->sin_addr, ip, sizeof ip);
    lua_pushstring(L, ip);
    lua_rawseti(L, -2, ++n);
  }
  lua_setfield(L, -2, "ip");
}

static const char *host_error(lua_State *L, int rc, char *eb) {
  if (rc == EAI_NONAME || rc == EAI_NODATA || rc == EAI_FAIL || rc == EAI_ADDRFAMILY)
    return "host not found";
  return gai_errstr(L, rc, eb);
}

/* Forward lookup of IPv4 addresses (luasocket's gethostbyname), for a
 * dns.* function whose only argument is at 1. [-0, +1, e] */
static struct addrinfo *lookup4(lua_State *L, const char *name, const char **err, char *eb) {
  struct addrinfo hints, *ai;
  int rc;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_CANONNAME;
  rc = resolve_rc(L, 1, name, NULL, &hints, NL_NODEADLINE, &ai);
  *err = rc ? host_error(L, rc, eb) : NULL;
  return rc ? NULL : ai;
}

static int dns_toip(lua_State *L) {
  const char *name = luaL_checkstring(L, 1);
  const char *err;
  ErrBuf eb;
  struct addrinfo *ai;
  lua_settop(L, 1);
  lookups_begin(L);
  ai = lookup4(L, name, &err, eb);
  if (ai == NULL) return nl_pushfail(L, err, NULL);
  push_resolved(L, ai->ai_canonname ? ai->ai_canonname : name, ai);
  lua_getfield(L, -1, "ip");
  lua_rawgeti(L, -1, 1);
  lua_replace(L, -2);
  lua_insert(L, -2); /* ip, resolved */
  return 2;
}

static int dns_tohostname(lua_State *L) {
  const char *addr = luaL_checkstring(L, 1);
  struct sockaddr_in sa;
  char host[NI_MAXHOST];
  const char *err;
  ErrBuf eb;
  int rc;
  lua_settop(L, 1);
  lookups_begin(L);
  memset(&sa, 0, sizeof sa);
  sa.sin_family = AF_INET;
  if (inet_pton(AF_INET, addr, &sa.sin_addr) != 1) {
    struct addrinfo *ai = lookup4(L, addr, &err, eb);
    if (ai == NULL) return nl_pushfail(L, err, NULL);
    lua_pushstring(L, ai->ai_canonname ? ai->ai_canonname : addr);
    push_resolved(L, lua_tostring(L, -1), ai);
    return 2;
  }
  rc = reverse_rc(L, 1, (struct sockaddr *)&sa, sizeof sa, host, sizeof host, NULL, 0,
                  NI_NAMEREQD);
  if (rc != 0) return nl_pushfail(L, host_error(L, rc, eb), NULL);
  lua_pushstring(L, host);
  push_resolved(L, host, NULL);
  lua_createtable(L, 1, 0);
  lua_pushstring(L, addr);
  lua_rawseti(L, -2, 1);
  lua_setfield(L, -2, "ip");
  return 2;
}

static int dns_getaddrinfo(lua_State *L) {
  const char *host = luaL_checkstring(L, 1);
  struct addrinfo hints, *ai;
  const char *err;
  ErrBuf eb;
  int i = 0;
  lua_settop(L, 1);
  lookups_begin(L);
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  if (strcmp(host, "*") == 0) {
    host = NULL;
    hints.ai_flags = AI_PASSIVE;
  }
  ai = resolve(L, 1, host, NULL, &hints, NL_NODEADLINE, &err, eb);
  if (ai == NULL) return nl_pushfail(L, err, NULL);
  lua_newtable(L);
  for (; ai != NULL; ai = ai->ai_next) {
    char ip[INET6_ADDRSTRLEN];
    const void *a = ai->ai_family == AF_INET
        ? (const void *)&((struct sockaddr_in *)ai->ai_addr)->sin_addr
        : (const void *)&((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr;
    if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6) continue;
    lua_createtable(L, 0, 2);
    lua_pushstring(L, family_name(ai->ai_family));
    lua_setfield(L, -2, "family");
    lua_pushstring(L, inet_ntop(ai->ai_family, a, ip, sizeof ip));
    lua_setfield(L, -2, "addr");
    lua_rawseti(L, -2, ++i);
  }
  return 1;
}

static int dns_getnameinfo(lua_State *L) {
  const char *host = luaL_optstring(L, 1, NULL);
  const char *serv = luaL_optstring(L, 2, NULL);
  struct addrinfo hints, *ai;
  char name[NI_MAXHOST], service[NI_MAXSERV];
  const char *err;
  ErrBuf eb;
  int i = 0, rc;
  if (host == NULL && serv == NULL) return luaL_error(L, "invalid arguments");
  lua_settop(L, 2);
  lookups_begin(L);
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  ai = resolve(L, 2, host, serv, &hints, NL_NODEADLINE, &err, eb);
  if (ai == NULL) return nl_pushfail(L, err, NULL);
  lua_newtable(L);
  service[0] = '\0';
  for (; ai != NULL; ai = ai->ai_next) {
    rc = reverse_rc(L, 2, ai->ai_addr, ai->ai_addrlen, name, sizeof name,
                    service, sizeof service, 0);
    if (rc != 0) return nl_pushfail(L, gai_errstr(L, rc, eb), NULL);
    if (host == NULL) continue;
    lua_pushstring(L, name);
    lua_rawseti(L, -2, ++i);
  }
  if (host == NULL) lua_pushnil(L);
  else lua_pushvalue(L, -1);
  if (serv != NULL) lua_pushstring(L, service);
  else lua_pushnil(L);
  return 2;
}

static int dns_gethostname(lua_State *L) { return socket_gethostname(L); }

/* ---- registration ----------------------------------------------------------- */

static const luaL_Reg stream_methods[] = {
  {"accept", stream_accept}, {"bind", stream_bind}, {"close", sock_close},
  {"connect", stream_connect}, {"dirty", sock_dirty}, {"getfamily", sock_getfamily},
  {"getfd", sock_getfd}, {"getoption", sock_getoption},
  {"getpeername", sock_getpeername}, {"getsockname", sock_getsockname},
  {"getstats", sock_getstats}, {"setstats", sock_setstats},
  {"listen", stream_listen}, {"receive", stream_receive}, {"recv", stream_recv},
  {"send", stream_send}, {"setfd", sock_setfd}, {"setoption", sock_setoption},
  {"setpeername", stream_connect}, {"setsockname", stream_bind},
  {"settimeout", sock_settimeout}, {"gettimeout", sock_gettimeout},
  {"shutdown", stream_shutdown}, {NULL, NULL}
};

static const luaL_Reg dgram_methods[] = {
  {"close", sock_close}, {"dirty", sock_dirty}, {"getfamily", sock_getfamily},
  {"getfd", sock_getfd}, {"getoption", sock_getoption},
  {"getpeername", sock_getpeername}, {"getsockname", sock_getsockname},
  {"getstats", sock_getstats}, {"setstats", sock_setstats},
  {"receive", dgram_receive}, {"receivefrom", dgram_receivefrom},
  {"recv", dgram_receive}, {"send", dgram_send}, {"sendto", dgram_sendto},
  {"setfd", sock_setfd}, {"setoption", sock_setoption},
  {"setpeername", dgram_setpeername}, {"setsockname", dgram_setsockname},
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
  {"_unix_stream", socket_unix_stream}, {"_unix_dgram", socket_unix_dgram},
  {NULL, NULL}
};

static const luaL_Reg dns_funcs[] = {
  {"toip", dns_toip}, {"tohostname", dns_tohostname},
  {"gethostname", dns_gethostname}, {"getaddrinfo", dns_getaddrinfo},
  {"getnameinfo", dns_getnameinfo}, {NULL, NULL}
};

/* One metatable per class: the methods of its kind (closures over the
 * metatable, for test_sock), `class`, the transfer, its index in classes[]. */
static void register_classes(lua_State *L) {
  for (int k = 0; k < NCLASSES; k++) {
    nl_newclass(L, classes[k].name, NULL, sock_meta);
    luaL_getmetatable(L, classes[k].name); /* mt */
    lua_newtable(L);                       /* mt, methods */
    lua_pushvalue(L, -2);
    luaL_setfuncs(L, is_stream_group(classes[k].group) ? stream_methods : dgram_methods, 1);
    lua_pushstring(L, classes[k].name);
    lua_setfield(L, -2, "class");
    lua_setfield(L, -2, "__index");        /* mt */
    lua_pushlightuserdata(L, (void *)&sock_transfer);
    lua_setfield(L, -2, NL_TRANSFER_FIELD);
    lua_pushinteger(L, k);
    lua_rawseti(L, -2, KIND_KEY); /* for test_sock */
    lua_pop(L, 1);
  }
  luaL_newmetatable(L, NL_ADDRINFO_MT);
  lua_pushcfunction(L, addrinfo_gc);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);
}

int luaopen_socket(lua_State *L) {
  register_classes(L);
  luaL_newlib(L, socket_funcs);
  luaL_newlib(L, dns_funcs);
  lua_setfield(L, -2, "dns");
  nl_runembedded(L, "socket", 1);
  return 1;
}
