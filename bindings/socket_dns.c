/*
 * socket_dns.c: addresses and names for the socket module (layer:
 * bindings), after luasocket's inet.c: address formatting, name lookups
 * (inside a task only the task waits for one), bind and connect over the
 * addresses a name resolves to, and the socket.dns functions.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "socket_int.h"

/* A lookup's outcome when its socket was closed meanwhile (beside the
 * getaddrinfo codes and sock.h's NL_EAI_*). */
#define EAI_CLOSED (-10100)

/* luasocket's socket_gaistrerror; raises "interrupted" on Ctrl-C. */
static const char *gai_message(lua_State *L, int rc, char *eb) {
  switch (rc) {
    case 0: return NULL;
    case EAI_CLOSED: return "closed";
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
    case EAI_SYSTEM: return sock_strerror(errno, eb);
    default: return gai_strerror(rc);
  }
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
  lua_pushinteger(L, port);
  if (as_string) lua_tolstring(L, -1, NULL); /* converts in place */
}

/* Pushes ip, port, family (or a Unix path); returns how many. luasocket
 * gives the port as a string from getsockname, as an integer from
 * getpeername and receivefrom. */
int inet_pushaddr(lua_State *L, const struct sockaddr *sa, socklen_t len, int port_string) {
  if (sa->sa_family == AF_INET || sa->sa_family == AF_INET6) {
    char ip[INET6_ADDRSTRLEN];
    int port;
    nl_addr_format(sa, ip, sizeof ip, &port);
    lua_pushstring(L, ip);
    push_port(L, port, port_string);
    lua_pushstring(L, family_name(sa->sa_family));
    return 3;
  }
  if (sa->sa_family == AF_UNIX) {
    const struct sockaddr_un *a = (const struct sockaddr_un *)sa;
    size_t off = offsetof(struct sockaddr_un, sun_path);
    size_t n = len > off ? strnlen(a->sun_path, len - off) : 0;
    lua_pushlstring(L, a->sun_path, n);
    return 1;
  }
  lua_pushnil(L);
  lua_pushliteral(L, "unknown family");
  return 2;
}

/* Pushes the numeric address of an IPv4 or IPv6 socket address. */
static void push_ip(lua_State *L, const struct sockaddr *sa) {
  char ip[INET6_ADDRSTRLEN];
  int port;
  nl_addr_format(sa, ip, sizeof ip, &port);
  lua_pushstring(L, ip);
}

int inet_unixaddr(const char *path, struct sockaddr_un *un, socklen_t *len) {
  size_t n = strlen(path);
  if (n >= sizeof un->sun_path) return ENAMETOOLONG;
  memset(un, 0, sizeof *un);
  un->sun_family = AF_UNIX;
  memcpy(un->sun_path, path, n);
  *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
  return IO_DONE;
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

/* ---- name lookups that suspend only the task ------------------------------- */

/* A lookup of a name (not a numeric address) runs in sock.c's helper
 * thread, a job whose descriptor is readable once it is done, and the call
 * waits on that descriptor like on a socket (call_waitfor): inside a task
 * only the task waits; outside, the wait runs the thread's other tasks.
 * The call then starts over from the top, so each lookup it makes is kept,
 * with its outcome, in the call's record: replayed, the call finds the
 * lookups it made (their results, or the one it was waiting for) instead
 * of asking again. The record frees them when the call ends; a job that is
 * still running is then freed by its thread. With no task on the thread
 * (or in a task that cannot yield) a lookup blocks the thread in
 * nl_getaddrinfo, which honours deadlines and Ctrl-C. */

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
  double started; /* --trace: when it was asked, */
  int traced;     /* and whether its outcome is in the trace */
} Lookup;

static void lookup_free(Lookup *lk) {
  nl_lookup_release(lk->job);
  if (lk->res != NULL) freeaddrinfo(lk->res);
  free(lk->host);
  free(lk->serv);
  free(lk);
}

void inet_lookupsfree(Lookup *lookups) {
  while (lookups != NULL) {
    Lookup *next = lookups->next;
    lookup_free(lookups);
    lookups = next;
  }
}

/* The call's socket is closed: a lookup it waits for wakes it now. */
void inet_lookupswake(Lookup *lookups) {
  for (; lookups != NULL; lookups = lookups->next)
    if (lookups->job != NULL) nl_loop_forget(nl_lookup_fd(lookups->job));
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
static Lookup *lookup_new(const Lookup *key) {
  Lookup *lk = malloc(sizeof *lk);
  if (lk == NULL) return NULL;
  *lk = *key;
  lk->started = nl_trace_on ? nl_monotonic() : 0;
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
  lk->next = NULL;
  return lk;
}

/* lookup_new, kept in the call's record. */
static Lookup *lookup_add(CallRec *rec, const Lookup *key) {
  Lookup *lk = lookup_new(key);
  if (lk == NULL) return NULL;
  lk->next = rec->lookups;
  rec->lookups = lk;
  return lk;
}

/* Keeps the finished job's outcome in the entry and lets the job go. */
static void lookup_take(Lookup *lk) {
  nl_Lookup *job = lk->job;
  lk->rc = lk->reverse ? nl_lookup_nameinfo(job, lk->name, sizeof lk->name, lk->service,
                                            sizeof lk->service)
                       : nl_lookup_addrinfo(job, &lk->res);
  lk->err = errno;
  lk->job = NULL;
  nl_lookup_release(job);
}

/* Waits for the entry's job (in a task the call starts over and comes
 * back here, where the wait hands over the outcome), then keeps its
 * outcome in the entry and lets the job go. A replayed call always passes
 * through the wait, so a later wait of the call does not take its outcome.
 * A socket closed meanwhile leaves the job to the record. */
static void lookup_finish(Call *c, Lookup *lk, double deadline) {
  nl_Lookup *job = lk->job;
  int fd = nl_lookup_fd(job), err = IO_DONE;
  if (!nl_lookup_done(job) || nl_restarting(c->L)) err = call_waitfor(c, fd, NL_READ, deadline);
  if (err == IO_CLOSED) {
    lk->rc = EAI_CLOSED;
    return;
  }
  /* not suspended (the loop could not watch the descriptor): block */
  while (err == IO_DONE && !nl_lookup_done(job))
    err = nl_waitL(c->L, fd, NL_READ, deadline) > 0 ? IO_DONE : IO_TIMEOUT;
  if (err == IO_DONE || nl_lookup_done(job)) {
    lookup_take(lk);
    return;
  }
  lk->rc = NL_EAI_TIMEOUT;
  lk->job = NULL;
  nl_lookup_release(job);
}

/* The finished lookup `key` of the call (errno set for EAI_SYSTEM); NULL:
 * do it the blocking way (see above; also when out of memory). */
static Lookup *lookup_k(Call *c, const Lookup *key, double deadline) {
  lua_State *L = c->L;
  Lookup *lk = NULL;
  if (nl_in_task(L) ? !lua_isyieldable(L) : nl_loop_active() == NULL) return NULL;
  if (c->rec != NULL)
    for (lk = c->rec->lookups; lk != NULL && !lookup_same(lk, key); lk = lk->next) {}
  if (lk == NULL && (lk = lookup_add(call_keep(c), key)) == NULL) return NULL;
  if (lk->job != NULL) lookup_finish(c, lk, deadline);
  errno = lk->err;
  return lk;
}

static int addrinfo_gc(lua_State *L) {
  struct addrinfo **box = luaL_checkudata(L, 1, NL_ADDRINFO_MT);
  if (*box != NULL) freeaddrinfo(*box);
  *box = NULL;
  return 0;
}

/* Resolves into a box on the stack that __gc frees even when a later wait
 * raises (with a job, the call's record owns the list and the box stays
 * empty); returns 0 and the list in *ai, or a getaddrinfo/NL_EAI_* code.
 * [-0, +1, e] */
static int resolve_rc(Call *c, const char *host, const char *serv,
                      const struct addrinfo *hints, double deadline, struct addrinfo **ai) {
  struct addrinfo **box = lua_newuserdatauv(c->L, sizeof *box, 0);
  Lookup key, *lk;
  int rc;
  double started = nl_trace_on ? nl_monotonic() : 0;
  *box = NULL;
  *ai = NULL;
  luaL_setmetatable(c->L, NL_ADDRINFO_MT);
  if (nl_resolves_at_once(host, hints)) { /* numbers, /etc/hosts: never wait */
    rc = getaddrinfo(host, serv, hints, box);
    *ai = *box;
    if (nl_trace_on && !nl_restarting(c->L)) nl_trace_lookup(host, serv, rc, *ai, started);
    return rc;
  }
  addr_key(&key, host, serv, hints);
  if ((lk = lookup_k(c, &key, deadline)) != NULL) {
    *ai = lk->res;
    if (nl_trace_on && !lk->traced++) nl_trace_lookup(host, serv, lk->rc, *ai, lk->started);
    return lk->rc;
  }
  rc = nl_getaddrinfo(host, serv, hints, box, deadline);
  *ai = *box;
  if (nl_trace_on) nl_trace_lookup(host, serv, rc, *ai, started);
  return rc;
}

/* resolve_rc with luasocket's error string in *err, after check_port.
 * [-0, +1, e] */
struct addrinfo *inet_resolve(Call *c, const char *host, const char *serv,
                              const struct addrinfo *hints, double deadline,
                              const char **err, char *eb) {
  struct addrinfo *ai;
  char num[8];
  int rc;
  if ((*err = check_port(c->L, &serv, num, eb)) != NULL) {
    lua_pushnil(c->L);
    return NULL;
  }
  rc = resolve_rc(c, host, serv, hints, deadline, &ai);
  c->gai = rc;
  *err = gai_message(c->L, rc, eb);
  return rc == 0 ? ai : NULL;
}

/* getnameinfo under the same rules as resolve_rc (nothing on the stack). */
static int reverse_rc(Call *c, const struct sockaddr *sa, socklen_t salen,
                      char *host, size_t hostlen, char *serv, size_t servlen, int flags) {
  Lookup key, *lk;
  name_key(&key, sa, salen, flags);
  if ((lk = lookup_k(c, &key, NL_NODEADLINE)) == NULL)
    return nl_getnameinfo(sa, salen, host, hostlen, serv, servlen, flags, NL_NODEADLINE);
  if (lk->rc == 0 && host != NULL && hostlen > 0) snprintf(host, hostlen, "%s", lk->name);
  if (lk->rc == 0 && serv != NULL && servlen > 0) snprintf(serv, servlen, "%s", lk->service);
  return lk->rc;
}

/* ---- a connect that cannot wait for its name ----------------------------- */

/* A connect with timeout 0 to a name that does not resolve at once cannot
 * wait for the lookup, and starting over at each call would never finish
 * it. So it leaves the lookup running on the socket, as luasocket leaves a
 * connect in progress: the call that starts it answers "timeout", later
 * ones "Operation already in progress" while it runs (getfd gives its
 * descriptor, readable once it is done, and select watches that for a
 * socket in its write list); then a call connects to what it found, or
 * reports its failure (once: the call after starts a new lookup). The
 * outcome stays on the socket for the calls that follow, which learn the
 * connect's own progress from the kernel, as luasocket's do. The socket
 * owns at most one such lookup (a connect to another name replaces it);
 * closing the socket or moving it to another thread frees it. */

/* The socket's lookup is for this name and service (of any family: once
 * the socket has one, its calls filter the list). */
static int pending_for(const Lookup *lk, const char *host, const char *serv, int socktype) {
  return lk != NULL && lk->socktype == socktype && same_str(lk->host, host) &&
         same_str(lk->serv, serv);
}

void inet_pendingfree(nl_Socket *s) {
  inet_lookupsfree(s->lookup);
  s->lookup = NULL;
}

/* The descriptor of the socket's running lookup, or -1. */
int inet_pendingfd(const nl_Socket *s) {
  return s->lookup != NULL && s->lookup->job != NULL ? nl_lookup_fd(s->lookup->job) : -1;
}

/* The addresses of the socket's lookup for `host`, or NULL and the answer
 * for now in *err (above). Nothing on the stack. */
static struct addrinfo *resolve_pending(Call *c, const char *host, const char *serv,
                                        const struct addrinfo *hints, const char **err,
                                        char *eb) {
  nl_Socket *s = c->s;
  char num[8];
  Lookup key;
  if ((*err = check_port(c->L, &serv, num, eb)) != NULL) return NULL;
  if (!pending_for(s->lookup, host, serv, hints->ai_socktype)) {
    inet_pendingfree(s);
    addr_key(&key, host, serv, hints);
    if ((s->lookup = lookup_new(&key)) == NULL) {
      *err = gai_message(c->L, EAI_MEMORY, eb);
      return NULL;
    }
    *err = sock_ioerror(IO_TIMEOUT, eb);
    return NULL;
  }
  if (s->lookup->job != NULL) {
    if (!nl_lookup_done(s->lookup->job)) {
      *err = sock_ioerror(EALREADY, eb);
      return NULL;
    }
    lookup_take(s->lookup);
  }
  if (s->lookup->rc != 0) {
    c->gai = s->lookup->rc;
    errno = s->lookup->err;
    *err = gai_message(c->L, s->lookup->rc, eb);
    inet_pendingfree(s);
    return NULL;
  }
  return s->lookup->res;
}

/* ---- bind and connect (luasocket's inet_trybind, inet_tryconnect) -------- */

/* Connects to one address: IO_DONE or an io code. `again`: the replay of
 * the call that waited for this very connect, where a second connect
 * reports how the first one went (0 or its error; EALREADY while still in
 * progress). */
static int io_connect(Call *c, const struct sockaddr *sa, socklen_t len, int again) {
  nl_Socket *s = c->s;
  int err = 0;
  socklen_t elen = sizeof err;
  if (s->fd < 0) return IO_CLOSED;
  if (connect(s->fd, sa, len) == 0) return IO_DONE;
  if (errno == EISCONN && again) return IO_DONE;
  /* EINTR: the connection goes on in the background, as EINPROGRESS. A
   * connect an earlier call left in progress: EALREADY, as luasocket. */
  if (errno != EINPROGRESS && errno != EAGAIN && errno != EINTR &&
      !(errno == EALREADY && again))
    return errno;
  if ((err = call_wait(c, s->fd, NL_WRITE)) != IO_DONE) return err;
  if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &elen) != 0) return errno;
  return err;
}

/* Binds to the first address `host` resolves to that works; "*" is the
 * wildcard. A name's lookup has no deadline, as luasocket's. A failure's
 * explanation goes into `why`. */
const char *inet_trybind(Call *c, const char *host, const char *serv, char *eb,
                         char *why) {
  nl_Socket *s = c->s;
  struct addrinfo hints, *ai;
  const char *err = NULL;
  int top = lua_gettop(c->L);
  why[0] = '\0';
  c->gai = 0;
  if (s->family == AF_UNIX) {
    struct sockaddr_un un;
    socklen_t len;
    int e = inet_unixaddr(host, &un, &len);
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
  ai = inet_resolve(c, host, serv ? serv : "0", &hints, NL_NODEADLINE, &err, eb);
  if (ai == NULL && c->gai != 0) why_lookup(why, host, c->gai);
  for (; ai != NULL; ai = ai->ai_next) {
    int e = sock_openfd(s, ai->ai_family);
    if (e == IO_DONE && bind(s->fd, ai->ai_addr, ai->ai_addrlen) != 0) e = errno;
    if (nl_trace_on) nl_trace_bind(s->fd, ai->ai_addr, ai->ai_addrlen, e);
    if (e > 0) why_bind(why, s->fd, s->type, ai->ai_addr, e);
    err = sock_ioerror(e, eb);
    if (err == NULL) {
      s->bound = 1;
      break;
    }
  }
  lua_settop(c->L, top);
  return err;
}

/* Connects to each address `host` resolves to, in order, until one
 * answers; the lookup counts against the same timeout. A zero timeout
 * leaves the connection, or the lookup (above), in progress. The replay of a call that waited
 * finds the same list (its lookup) and goes on with the address it was
 * trying, in the family its lookup asked for (the socket's own family
 * changes with the address it tries). A socket closed meanwhile ends the
 * call with "closed": it does not go on to the next address. A failure's
 * explanation goes into `why`. */
const char *inet_tryconnect(Call *c, const char *host, const char *serv, char *eb,
                            char *why) {
  nl_Socket *s = c->s;
  struct addrinfo hints, *ai, *list;
  const char *err = NULL;
  int top = lua_gettop(c->L), family = c->p.trying ? c->p.family : s->family;
  int tried = 0, pending, i, last = -1, last_err = 0;
  why[0] = '\0';
  c->gai = 0;
  if (s->family == AF_UNIX) {
    struct sockaddr_un un;
    socklen_t len;
    int e = inet_unixaddr(host, &un, &len);
    if (e == IO_DONE && s->fd < 0) e = sock_openfd(s, AF_UNIX);
    if (e == IO_DONE) {
      int again = c->p.trying;
      c->p.trying = 1;
      e = io_connect(c, (struct sockaddr *)&un, len, again);
    }
    return sock_ioerror(e, eb);
  }
  memset(&hints, 0, sizeof hints);
  hints.ai_family = family;
  hints.ai_socktype = s->type;
  pending = (c->p.block == 0 || c->p.total == 0) && !nl_resolves_at_once(host, &hints);
  if (pending) ai = resolve_pending(c, host, serv, &hints, &err, eb);
  else ai = inet_resolve(c, host, serv, &hints, call_deadline(c), &err, eb);
  for (i = 0, list = ai; ai != NULL; ai = ai->ai_next, i++) {
    int e, again = c->p.trying && c->p.tryidx == i;
    if (c->p.trying && i < c->p.tryidx) continue;
    if (family != AF_UNSPEC && ai->ai_family != family) continue; /* a pending list */
    if (tried++ && !s->bound) sock_closefd(s); /* a failed connect: fresh fd */
    e = sock_openfd(s, ai->ai_family);
    if (e == IO_DONE) {
      c->p.trying = 1;
      c->p.tryidx = i;
      c->p.family = family;
      if (nl_trace_on && !again) c->p.tried_at = nl_monotonic();
      e = io_connect(c, ai->ai_addr, ai->ai_addrlen, again);
      if (nl_trace_on) nl_trace_connect(s->fd, ai->ai_addr, ai->ai_addrlen, e, c->p.tried_at);
    }
    if (c->rec != NULL && c->rec->closed) e = IO_CLOSED;
    if (e == IO_TIMEOUT && pending) e = EALREADY; /* since its lookup */
    if (i < 8) c->p.errs[i] = (unsigned char)(e == IO_TIMEOUT ? ERRS_TIMEOUT : e > 0 && e < 255 ? e : 0);
    last = i;
    last_err = e;
    err = sock_ioerror(e, eb);
    if (err == NULL && s->type == SOCK_STREAM && ai->ai_addrlen <= sizeof s->peer) {
      memcpy(&s->peer, ai->ai_addr, ai->ai_addrlen); /* getpeername needs no call */
      s->peerlen = (socklen_t)ai->ai_addrlen;
    }
    if (err == NULL || e == IO_CLOSED || c->p.block == 0 || c->p.total == 0) break;
  }
  if (pending && tried == 0 && err == NULL) err = gai_message(c->L, EAI_NODATA, eb);
  if (err != NULL && tried == 0 && c->gai != 0) why_lookup(why, host, c->gai);
  else if (err != NULL && last >= 0 && (last_err > 0 || (c->p.block != 0 && c->p.total != 0)))
    why_connect(why, s->fd, host, list, family, &c->p, last, last_err);
  lua_settop(c->L, top);
  return err;
}

/* ---- dns ----------------------------------------------------------------------- */

int socket_gethostname(lua_State *L) {
  char name[256];
  if (gethostname(name, sizeof name) != 0) return sock_pusherror(L, errno);
  name[sizeof name - 1] = '\0';
  lua_pushstring(L, name);
  return 1;
}

static void push_resolved(lua_State *L, const char *name, struct addrinfo *ai) {
  int n = 0;
  lua_createtable(L, 0, 3);
  lua_pushstring(L, name);
  lua_setfield(L, -2, "name");
  lua_newtable(L);
  lua_setfield(L, -2, "alias");
  lua_newtable(L);
  for (; ai != NULL; ai = ai->ai_next) {
    if (ai->ai_family != AF_INET) continue;
    push_ip(L, ai->ai_addr);
    lua_rawseti(L, -2, ++n);
  }
  lua_setfield(L, -2, "ip");
}

static const char *host_error(lua_State *L, int rc, char *eb) {
  if (rc == EAI_NONAME || rc == EAI_NODATA || rc == EAI_FAIL || rc == EAI_ADDRFAMILY)
    return "host not found";
  return gai_message(L, rc, eb);
}

/* nil, luasocket's message and what it means (why_lookup). */
static int push_notfound(Call *c, const char *host, const char *err) {
  WhyBuf why;
  why_lookup(why, host, c->gai);
  return why_pushfail(c->L, err, why);
}

/* Forward lookup of IPv4 addresses (luasocket's gethostbyname). [-0, +1, e] */
static struct addrinfo *lookup4(Call *c, const char *name, const char **err, char *eb) {
  struct addrinfo hints, *ai;
  int rc;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_CANONNAME;
  rc = resolve_rc(c, name, NULL, &hints, NL_NODEADLINE, &ai);
  c->gai = rc;
  *err = rc ? host_error(c->L, rc, eb) : NULL;
  return rc ? NULL : ai;
}

static int dns_toip(lua_State *L) {
  const char *name = luaL_checkstring(L, 1);
  const char *err;
  struct addrinfo *ai;
  Call c;
  ErrBuf eb;
  call_begin(&c, L, 0, SIDE_NONE, 1, 2);
  if ((ai = lookup4(&c, name, &err, eb)) == NULL) return push_notfound(&c, name, err);
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
  int rc;
  Call c;
  ErrBuf eb;
  call_begin(&c, L, 0, SIDE_NONE, 1, 2);
  memset(&sa, 0, sizeof sa);
  sa.sin_family = AF_INET;
  if (inet_pton(AF_INET, addr, &sa.sin_addr) != 1) {
    struct addrinfo *ai = lookup4(&c, addr, &err, eb);
    if (ai == NULL) return push_notfound(&c, addr, err);
    lua_pushstring(L, ai->ai_canonname ? ai->ai_canonname : addr);
    push_resolved(L, lua_tostring(L, -1), ai);
    return 2;
  }
  rc = reverse_rc(&c, (struct sockaddr *)&sa, sizeof sa, host, sizeof host, NULL, 0,
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
  int i = 0;
  Call c;
  ErrBuf eb;
  call_begin(&c, L, 0, SIDE_NONE, 1, 2);
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  if (strcmp(host, "*") == 0) {
    host = NULL;
    hints.ai_flags = AI_PASSIVE;
  }
  ai = inet_resolve(&c, host, NULL, &hints, NL_NODEADLINE, &err, eb);
  if (ai == NULL) return push_notfound(&c, host, err);
  lua_newtable(L);
  for (; ai != NULL; ai = ai->ai_next) {
    if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6) continue;
    lua_createtable(L, 0, 2);
    lua_pushstring(L, family_name(ai->ai_family));
    lua_setfield(L, -2, "family");
    push_ip(L, ai->ai_addr);
    lua_setfield(L, -2, "addr");
    lua_rawseti(L, -2, ++i);
  }
  return 1;
}

/* getnameinfo(host, serv): the names of every address `host` resolves to
 * (nil without a host), and the name of the service (nil without one). */
static int dns_getnameinfo(lua_State *L) {
  const char *host = luaL_optstring(L, 1, NULL);
  const char *serv = luaL_optstring(L, 2, NULL);
  struct addrinfo hints, *ai;
  char name[NI_MAXHOST], service[NI_MAXSERV];
  const char *err;
  int i = 0, rc;
  Call c;
  ErrBuf eb;
  if (host == NULL && serv == NULL) return luaL_error(L, "invalid arguments");
  call_begin(&c, L, 0, SIDE_NONE, 2, 3);
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  ai = inet_resolve(&c, host, serv, &hints, NL_NODEADLINE, &err, eb);
  if (ai == NULL) return nl_pushfail(L, err, NULL);
  if (host != NULL) lua_newtable(L);
  else lua_pushnil(L);
  service[0] = '\0';
  for (; ai != NULL; ai = ai->ai_next) {
    rc = reverse_rc(&c, ai->ai_addr, ai->ai_addrlen, name, sizeof name,
                    service, sizeof service, 0);
    if (rc != 0) return nl_pushfail(L, gai_message(L, rc, eb), NULL);
    if (host == NULL) continue;
    lua_pushstring(L, name);
    lua_rawseti(L, -2, ++i);
  }
  if (serv != NULL) lua_pushstring(L, service);
  else lua_pushnil(L);
  return 2;
}

const luaL_Reg dns_funcs[] = {
  {"toip", dns_toip}, {"tohostname", dns_tohostname},
  {"gethostname", socket_gethostname}, {"getaddrinfo", dns_getaddrinfo},
  {"getnameinfo", dns_getnameinfo}, {NULL, NULL}
};

/* The metatable of the boxes that free a lookup's addresses (resolve_rc). */
void inet_open(lua_State *L) {
  luaL_newmetatable(L, NL_ADDRINFO_MT);
  lua_pushcfunction(L, addrinfo_gc);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);
}
