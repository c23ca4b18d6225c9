/*
 * socket_dns.c: addresses and names for the socket module (layer:
 * bindings), after luasocket's inet.c: address formatting, name lookups
 * (which suspend only the task inside a task), bind and connect over the
 * addresses a name resolves to, and the socket.dns functions.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "socket_int.h"

/* luasocket's socket_gaistrerror; raises "interrupted" on Ctrl-C. */
static const char *inet_gaierror(lua_State *L, int rc, char *eb) {
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

static const char *inet_family(int family) {
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
int inet_pushaddr(lua_State *L, const struct sockaddr_storage *ss, socklen_t len,
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
  lua_pushstring(L, inet_family(ss->ss_family));
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
 * inet_lookupsbegin, which drops what an earlier call left. A cancelled task
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
void inet_lookupsbegin(lua_State *L) {
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
static int inet_resolverc(lua_State *L, int nargs, const char *host, const char *serv,
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

/* inet_resolverc with luasocket's error string in *err, after check_port.
 * [-0, +1, e] */
struct addrinfo *inet_resolve(lua_State *L, int nargs, const char *host, const char *serv,
                                const struct addrinfo *hints, double deadline,
                                const char **err, char *eb) {
  struct addrinfo *ai;
  char num[8];
  int rc;
  if ((*err = check_port(L, &serv, num, eb)) != NULL) {
    lua_pushnil(L);
    return NULL;
  }
  rc = inet_resolverc(L, nargs, host, serv, hints, deadline, &ai);
  *err = inet_gaierror(L, rc, eb);
  return rc == 0 ? ai : NULL;
}

/* getnameinfo under the same rules as inet_resolverc (nothing on the stack). */
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

int inet_unixaddr(lua_State *L, const char *path, struct sockaddr_un *un, socklen_t *len) {
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
const char *inet_trybind(lua_State *L, int nargs, nl_Socket *s, const char *host,
                           const char *serv, char *eb) {
  struct addrinfo hints, *ai;
  const char *err = NULL;
  int top = lua_gettop(L);
  if (s->family == AF_UNIX) {
    struct sockaddr_un un;
    socklen_t len;
    int e = inet_unixaddr(L, host, &un, &len);
    if (e == IO_DONE && s->fd < 0) e = sock_openfd(s, AF_UNIX);
    if (e == IO_DONE && bind(s->fd, (struct sockaddr *)&un, len) != 0) e = errno;
    if (e == IO_DONE) s->bound = 1;
    return sock_ioerror(e, eb);
  }
  memset(&hints, 0, sizeof hints);
  hints.ai_family = s->family;
  hints.ai_socktype = s->type;
  hints.ai_protocol = sock_classes[s->kind].group == G_RAW ? 0 : s->protocol;
  hints.ai_flags = AI_PASSIVE;
  if (strcmp(host, "*") == 0) host = NULL;
  ai = inet_resolve(L, nargs, host, serv ? serv : "0", &hints, NL_NODEADLINE, &err, eb);
  for (; ai != NULL; ai = ai->ai_next) {
    int e = sock_openfd(s, ai->ai_family);
    if (e == IO_DONE && bind(s->fd, ai->ai_addr, ai->ai_addrlen) != 0) e = errno;
    err = sock_ioerror(e, eb);
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
const char *inet_tryconnect(lua_State *L, nl_Socket *s, const char *host,
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
  timeout_markstart(L, s);
  if (s->family == AF_UNIX) {
    struct sockaddr_un un;
    socklen_t len;
    int e = inet_unixaddr(L, host, &un, &len);
    if (e == IO_DONE && s->fd < 0) e = sock_openfd(s, AF_UNIX);
    if (e == IO_DONE) e = io_connect(L, s, (struct sockaddr *)&un, len);
    return sock_ioerror(e, eb);
  }
  memset(&hints, 0, sizeof hints);
  hints.ai_family = s->askfamily;
  hints.ai_socktype = s->type;
  ai = inet_resolve(L, s->nargs, host, serv, &hints, timeout_deadline(s), &err, eb);
  for (; ai != NULL; ai = ai->ai_next) {
    int e;
    if (i++ < skip) continue;
    s->tryidx = i - 1;
    if (tried++ && !s->bound) sock_destroy(s); /* a failed connect: fresh fd */
    e = sock_openfd(s, ai->ai_family);
    if (e == IO_DONE) e = io_connect(L, s, ai->ai_addr, ai->ai_addrlen);
    err = sock_ioerror(e, eb);
    if (err == NULL || s->block == 0 || s->total == 0) break;
  }
  lua_settop(L, top);
  return err;
}

int socket_gethostname(lua_State *L) {
  char name[256];
  if (gethostname(name, sizeof name) != 0) return nl_pusherrno(L, errno);
  name[sizeof name - 1] = '\0';
  lua_pushstring(L, name);
  return 1;
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
  return inet_gaierror(L, rc, eb);
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
  rc = inet_resolverc(L, 1, name, NULL, &hints, NL_NODEADLINE, &ai);
  *err = rc ? host_error(L, rc, eb) : NULL;
  return rc ? NULL : ai;
}

static int dns_toip(lua_State *L) {
  const char *name = luaL_checkstring(L, 1);
  const char *err;
  ErrBuf eb;
  struct addrinfo *ai;
  lua_settop(L, 1);
  inet_lookupsbegin(L);
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
  inet_lookupsbegin(L);
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
  inet_lookupsbegin(L);
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  if (strcmp(host, "*") == 0) {
    host = NULL;
    hints.ai_flags = AI_PASSIVE;
  }
  ai = inet_resolve(L, 1, host, NULL, &hints, NL_NODEADLINE, &err, eb);
  if (ai == NULL) return nl_pushfail(L, err, NULL);
  lua_newtable(L);
  for (; ai != NULL; ai = ai->ai_next) {
    char ip[INET6_ADDRSTRLEN];
    const void *a = ai->ai_family == AF_INET
        ? (const void *)&((struct sockaddr_in *)ai->ai_addr)->sin_addr
        : (const void *)&((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr;
    if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6) continue;
    lua_createtable(L, 0, 2);
    lua_pushstring(L, inet_family(ai->ai_family));
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
  inet_lookupsbegin(L);
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  ai = inet_resolve(L, 2, host, serv, &hints, NL_NODEADLINE, &err, eb);
  if (ai == NULL) return nl_pushfail(L, err, NULL);
  lua_newtable(L);
  service[0] = '\0';
  for (; ai != NULL; ai = ai->ai_next) {
    rc = reverse_rc(L, 2, ai->ai_addr, ai->ai_addrlen, name, sizeof name,
                    service, sizeof service, 0);
    if (rc != 0) return nl_pushfail(L, inet_gaierror(L, rc, eb), NULL);
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

const luaL_Reg dns_funcs[] = {
  {"toip", dns_toip}, {"tohostname", dns_tohostname},
  {"gethostname", dns_gethostname}, {"getaddrinfo", dns_getaddrinfo},
  {"getnameinfo", dns_getnameinfo}, {NULL, NULL}
};

/* The metatable of the boxes that free a lookup's addresses (inet_resolverc). */
void inet_open(lua_State *L) {
  luaL_newmetatable(L, NL_ADDRINFO_MT);
  lua_pushcfunction(L, addrinfo_gc);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);
}
