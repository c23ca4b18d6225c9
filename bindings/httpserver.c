/*
 * httpserver.c: the C core of http.server (layer: bindings), preloaded as
 * the core of "http.server". Requests are read by runtime/httpparse.c
 * (strict HTTP/1.1); this file does the socket work, and
 * bindings/httpserver.lua runs each connection as a task (runtime/sched.c)
 * and routes requests.
 *
 * Three objects:
 *   Group  the listening socket and what every worker thread of one server
 *          shares: limits, the count of requests served, the stop flag and
 *          an eventfd that wakes every waiting accept and idle connection
 *          when serving stops. Reference-counted; it crosses to worker
 *          threads through nl_Transfer (each state wraps it in its own
 *          "http.server" userdata).
 *   Server ("http.server") one state's handle on a Group: accept(), its
 *          open connections.
 *   Conn  ("http.server.conn") one client connection: bindings/httpconn.c.
 *
 * Limits answer with clear statuses: 414 (URI too long), 431 (headers too
 * large), 413 (body too large), 400 (malformed), 501 (a transfer coding we
 * do not decode), 505 (not HTTP/1.x), 408 (request not complete in time).
 * A slow or stuck client costs only its own task and bounded buffers; when
 * every connection slot is taken, the one that has been waiting longest for
 * a request to finish arriving makes room for a new client.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "httpserver.h"
#include "modules.h"
#include "sock.h"
#include "trace.h"

#define FULL_RECHECK 0.1 /* seconds between looks for a free connection slot */

/* ---- the group: what workers share -------------------------------------- */

static int open_spare(void) {
  return open("/dev/null", O_RDONLY | O_CLOEXEC);
}

static void group_unref(Group *g) {
  int spare;
  if (atomic_fetch_sub(&g->refs, 1) != 1) return;
  if (g->fd >= 0 && nl_trace_on) nl_trace_close(g->fd);
  if (g->fd >= 0) close(g->fd);
  if (g->stop_fd >= 0) close(g->stop_fd);
  spare = atomic_load(&g->spare_fd);
  if (spare >= 0) close(spare);
  if (g->tls != NULL) SSL_CTX_free(g->tls); /* no libssl loaded for plain HTTP */
  free(g);
}

/* A group around listening socket `fd` and TLS context `tls` (both taken
 * over); NULL, errno set. */
static Group *group_new(int fd, const Limits *limits, SSL_CTX *tls) {
  Group *g = calloc(1, sizeof *g);
  int err;
  if (g == NULL) {
    close(fd);
    if (tls != NULL) SSL_CTX_free(tls);
    errno = ENOMEM;
    return NULL;
  }
  atomic_init(&g->refs, 1);
  g->fd = fd;
  g->tls = tls;
  g->limits = *limits;
  g->stop_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  atomic_init(&g->spare_fd, open_spare());
  if (g->stop_fd < 0 || atomic_load(&g->spare_fd) < 0) {
    err = errno;
    group_unref(g);
    errno = err;
    return NULL;
  }
  return g;
}

/* Wakes every accept and idle connection waiting on the group, in every
 * thread: the eventfd stays readable until the next serve begins. */
static void group_stop(Group *g) {
  uint64_t one = 1;
  atomic_store(&g->stopping, 1);
  while (write(g->stop_fd, &one, sizeof one) < 0 && errno == EINTR) {}
}

/* Serving begins: clears the stop flag and its eventfd. */
static void group_begin(Group *g, long long max_requests) {
  uint64_t count;
  while (read(g->stop_fd, &count, sizeof count) < 0 && errno == EINTR) {}
  atomic_store(&g->close_asked, 0);
  atomic_store(&g->max_served, max_requests > 0 ? atomic_load(&g->served) + max_requests : 0);
  atomic_store(&g->stopping, 0);
}

/* One more request answered; the last one max_requests allows stops the
 * group. */
void http_group_count(Group *g) {
  long long served = atomic_fetch_add(&g->served, 1) + 1;
  long long max = atomic_load(&g->max_served);
  if (max > 0 && served >= max) group_stop(g);
}

/* Out of descriptors: the pending client stays queued, the listening
 * socket stays readable, and the loop spun at full CPU while the client
 * waited forever. Give up the spare descriptor, accept the client and close
 * it at once (it sees the connection closed), take the spare back. Returns
 * 1 when a client was shed. */
static int group_shed_one(Group *g) {
  int fd, spare = atomic_exchange(&g->spare_fd, -1);
  if (spare < 0) return 0;
  close(spare);
  fd = accept4(g->fd, NULL, NULL, SOCK_CLOEXEC);
  if (fd >= 0) close(fd);
  atomic_store(&g->spare_fd, open_spare());
  return fd >= 0;
}

/* ---- the server handle ---------------------------------------------------- */

static Server *check_server(lua_State *L, int idx) {
  return luaL_checkudata(L, idx, NL_SERVER_MT);
}

static Server *check_open(lua_State *L, int idx) {
  Server *s = check_server(L, idx);
  if (s->g == NULL) luaL_error(L, "attempt to use a closed server");
  return s;
}

static void server_attach(Server *s, Group *g) {
  s->g = g;
  s->limits = g->limits;
}

/* A new handle on g (whose reference it takes over; NULL: a closed one).
 * [-0, +1, m] */
static Server *push_server(lua_State *L, Group *g) {
  Server *s = lua_newuserdatauv(L, sizeof *s, 0);
  memset(s, 0, sizeof *s);
  luaL_setmetatable(L, NL_SERVER_MT);
  if (g != NULL) server_attach(s, g);
  return s;
}

/* Drops this state's handle: the descriptors leave this thread's loop; the
 * last handle closes them. Idempotent. */
static void server_release(Server *s) {
  Group *g = s->g;
  if (g == NULL) return;
  s->g = NULL;
  nl_loop_forget(g->fd);
  nl_loop_forget(g->stop_fd);
  group_unref(g);
}

/* ---- accepting ------------------------------------------------------------- */

static int past(double deadline) {
  return deadline >= 0 && nl_monotonic() >= deadline;
}

static double sooner(double deadline, double seconds) {
  double d = nl_deadline(seconds);
  return deadline >= 0 && deadline < d ? deadline : d;
}

/* Waits for whatever comes first: the listening socket readable, serving
 * stopping, the deadline; or only for a little while (`pause`: all
 * connections taken, or accept failed for want of memory). 0 on timeout. */
static int wait_to_accept(lua_State *L, Group *g, double deadline, int pause) {
  nl_PollFd fds[2];
  fds[0].fd = g->stop_fd;
  fds[0].events = NL_READ;
  fds[1].fd = pause ? -1 : g->fd;
  fds[1].events = NL_READ;
  if (!pause) return nl_waitmanyk(L, 2, fds, 2, deadline);
  nl_waitmanyk(L, 2, fds, 1, sooner(deadline, FULL_RECHECK));
  return !past(deadline);
}

/* True when a client waits in the listening socket's queue. */
static int client_waiting(const Group *g) {
  nl_PollFd listener = {g->fd, NL_READ, 0};
  return nl_waitmany_now(&listener, 1) == 1;
}

/* srv:accept([deadline]) -> conn | nil, "stopped" | "timeout". deadline is
 * on time.monotonic()'s clock. Restartable. */
static int srv_accept(lua_State *L) {
  Server *s = check_open(L, 1);
  Group *g = s->g;
  double deadline = luaL_optnumber(L, 2, -1);
  lua_settop(L, 2);
  httpconn_new(L, s); /* closed first: nothing leaks if memory runs out */
  for (;;) {
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    int fd, full = s->nconn >= s->limits.max_connections;
    if (full && client_waiting(g) && httpconn_shed_one(s)) full = 0;
    if (atomic_load(&g->stopping)) return nl_pushfail(L, "stopped", NULL);
    if (!full) {
      fd = accept4(g->fd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd >= 0 && nl_trace_on) nl_trace_accept(g->fd, fd, (struct sockaddr *)&ss, len);
      if (fd >= 0 && httpconn_open(httpconn_check(L, 3), fd, &ss, g->tls) == 0) return 1;
      if (fd >= 0) continue; /* no memory for its TLS: that client is dropped */
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if ((errno == EMFILE || errno == ENFILE) && group_shed_one(g)) continue;
      full = errno != EAGAIN && errno != EWOULDBLOCK;
    }
    int waited = wait_to_accept(L, g, deadline, full);
    if (waited == 0) return nl_pushfail(L, "timeout", NULL);
    if (waited < 0) return nl_pusherrno(L, -waited);
  }
}

/* ---- server methods ---------------------------------------------------------- */

/* srv:begin([max_requests]) -> requests served so far. Serving (re)starts:
 * the stop flag clears; with max_requests, serving stops after that many
 * more replies (counted over every worker). */
static int srv_begin(lua_State *L) {
  Server *s = check_open(L, 1);
  lua_Integer max = luaL_optinteger(L, 2, 0);
  group_begin(s->g, max > 0 ? (long long)max : 0);
  lua_pushinteger(L, (lua_Integer)atomic_load(&s->g->served));
  return 1;
}

/* srv:stop([close]): every worker's accept returns "stopped" and idle
 * connections stop waiting; with close, the server is to close after. */
static int srv_stop(lua_State *L) {
  Server *s = check_server(L, 1);
  if (s->g == NULL) return 0;
  if (lua_toboolean(L, 2)) atomic_store(&s->g->close_asked, 1);
  group_stop(s->g);
  return 0;
}

/* srv:close_asked() -> whether stop(true) was called (by any worker). */
static int srv_close_asked(lua_State *L) {
  Server *s = check_server(L, 1);
  lua_pushboolean(L, s->g == NULL || atomic_load(&s->g->close_asked));
  return 1;
}

static int srv_served(lua_State *L) {
  Server *s = check_open(L, 1);
  lua_pushinteger(L, (lua_Integer)atomic_load(&s->g->served));
  return 1;
}

/* srv:close(): this state's handle; the socket closes with the last one. */
static int srv_close(lua_State *L) {
  server_release(check_server(L, 1));
  return 0;
}

/* srv:getsockname() -> host, port */
static int srv_getsockname(lua_State *L) {
  Server *s = check_open(L, 1);
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  char host[INET6_ADDRSTRLEN];
  int port;
  if (getsockname(s->g->fd, (struct sockaddr *)&ss, &len) != 0) return nl_pusherrno(L, errno);
  nl_addr_format((const struct sockaddr *)&ss, host, sizeof host, &port);
  lua_pushstring(L, host);
  lua_pushinteger(L, port);
  return 2;
}

static int srv_connections(lua_State *L) {
  lua_pushinteger(L, check_server(L, 1)->nconn);
  return 1;
}

static int srv_tostring(lua_State *L) {
  Server *s = check_server(L, 1);
  if (s->g == NULL) lua_pushliteral(L, "http.server (closed)");
  else lua_pushfstring(L, "http.server (%p)", (void *)s->g);
  return 1;
}

/* ---- crossing to worker threads ---------------------------------------------- */

static void *srv_export(lua_State *L, int idx) {
  Server *s = check_server(L, idx);
  if (s->g == NULL) {
    lua_pushliteral(L, "a closed http.server cannot be passed to a thread");
    return NULL;
  }
  atomic_fetch_add(&s->g->refs, 1);
  return s->g;
}

static void srv_import(lua_State *L, void *payload) {
  push_server(L, payload);
}

static void srv_discard(void *payload) {
  group_unref(payload);
}

static const nl_Transfer srv_transfer = {
  "http.server", srv_export, srv_import, srv_discard
};

/* ---- listen ------------------------------------------------------------- */


static double field_number(lua_State *L, int t, const char *k, double dflt) {
  double v;
  lua_getfield(L, t, k);
  v = luaL_optnumber(L, -1, dflt);
  lua_pop(L, 1);
  return v;
}

/* A size or count limit: a non-negative number, math.huge for none (`max`);
 * a plain cast of a huge, negative or NaN double would be undefined. */
static double field_limit(lua_State *L, int t, const char *k, double dflt, double max) {
  double v = field_number(L, t, k, dflt);
  if (!(v >= 0)) luaL_error(L, "option '%s' must be a non-negative number", k);
  return v > max ? max : v;
}

/* Where uploads' bodies go as they arrive: opts.upload_dir, else $TMPDIR,
 * else /tmp (a name too long for a path: refused). */
static void read_spool_dir(lua_State *L, int t, char *dir, size_t size) {
  const char *v;
  lua_getfield(L, t, "upload_dir");
  v = lua_tostring(L, -1);
  if (v == NULL) v = getenv("TMPDIR");
  if (v == NULL || *v == '\0') v = "/tmp";
  if (strlen(v) + sizeof "/netlua-body-XXXXXX" > size)
    luaL_error(L, "option 'upload_dir' is too long for a path");
  strcpy(dir, v);
  lua_pop(L, 1);
}

/* Timeouts go through nl_deadline, which reads math.huge, NaN and negative
 * ones as "no limit". */
static void read_limits(lua_State *L, int t, Limits *l) {
  l->http.max_uri = (size_t)field_limit(L, t, "max_uri", 8192, 1e15);
  l->http.max_header = (size_t)field_limit(L, t, "max_header", 16384, 1e15);
  l->http.max_body = (size_t)field_limit(L, t, "max_body", 1048576, 1e15);
  l->request_timeout = field_number(L, t, "request_timeout", 10);
  l->keepalive_timeout = field_number(L, t, "keepalive_timeout", 5);
  l->send_timeout = field_number(L, t, "send_timeout", 10);
  l->linger = field_limit(L, t, "linger", 2, 3600);
  l->max_connections = (int)field_limit(L, t, "max_connections", 512, 1e6);
  if (l->max_connections < 1) l->max_connections = 1;
  read_spool_dir(L, t, l->http.spool_dir, sizeof l->http.spool_dir);
}

static const char *field_string(lua_State *L, int t, const char *k) {
  const char *v;
  lua_getfield(L, t, k);
  v = lua_tostring(L, -1);
  lua_pop(L, 1); /* the table keeps it */
  return v;
}

/* The server's TLS context from opts.tls {certificate, key[, password]}
 * (httpserver.lua checked their types), offering ALPN http/1.1. NULL and
 * err set when it cannot be made. */
static SSL_CTX *read_tls(lua_State *L, int t, nl_TlsErr err) {
  static const unsigned char alpn[] = "\x08http/1.1";
  SSL_CTX *ctx = nl_tls_ctx_new(1, err);
  lua_getfield(L, t, "tls");
  if (ctx != NULL &&
      (nl_tls_ctx_keypair(ctx, field_string(L, -1, "certificate"), field_string(L, -1, "key"),
                          field_string(L, -1, "password"), err) != 0 ||
       nl_tls_ctx_alpn(ctx, alpn, sizeof alpn - 1, err) != 0)) {
    SSL_CTX_free(ctx);
    ctx = NULL;
  }
  /* A read takes whatever the socket holds, not a record's 5-byte header
   * and then its body: one recv per request instead of two. The loop in
   * httpconn.c reads again before it waits, so nothing buffered is missed. */
  if (ctx != NULL) SSL_CTX_set_read_ahead(ctx, 1);
  lua_pop(L, 1);
  return ctx;
}

/* listen(host, port, limits) -> server | nil, msg, code */
static int core_listen(lua_State *L) {
  const char *host = luaL_checkstring(L, 1);
  lua_Integer port = luaL_checkinteger(L, 2);
  int gai = 0, fd;
  Limits limits;
  Server *s;
  Group *g;
  SSL_CTX *tls = NULL;
  nl_TlsErr err;
  luaL_argcheck(L, port >= 0 && port <= 65535, 2, "port out of range");
  luaL_checktype(L, 3, LUA_TTABLE);
  read_limits(L, 3, &limits);
  s = push_server(L, NULL); /* closed first */
  if (lua_getfield(L, 3, "tls") != LUA_TNIL && (tls = read_tls(L, 3, err)) == NULL)
    return nl_pushfail(L, err, NULL);
  lua_pop(L, 1);
  fd = nl_listen_tcp(host, (int)port, SOMAXCONN, &gai);
  if (fd < 0 && tls != NULL) SSL_CTX_free(tls);
  if (gai == NL_EAI_INTERRUPTED) return nl_raise_interrupted(L);
  if (fd == -1 && gai != 0) {
    lua_pushfstring(L, "could not resolve host: %s", host);
    return nl_pushfail(L, lua_tostring(L, -1), "EAI_NONAME");
  }
  if (fd < 0) return nl_pusherrno(L, -fd);
  if ((g = group_new(fd, &limits, tls)) == NULL) return nl_pusherrno(L, errno);
  server_attach(s, g);
  return 1;
}

/* realpath(path) -> resolved | nil, msg, code (for static files). */
static int core_realpath(lua_State *L) {
  char *r = realpath(luaL_checkstring(L, 1), NULL);
  if (r == NULL) return nl_pusherrno(L, errno);
  lua_pushstring(L, r);
  free(r);
  return 1;
}

/* filetype(path) -> "file", size, mtime | "directory" | "other" | nil, msg,
 * code (for static files: a directory is served by its index.html; size
 * and modification time make the validators ETag and Last-Modified). */
static int core_filetype(lua_State *L) {
  struct stat st;
  if (stat(luaL_checkstring(L, 1), &st) != 0) return nl_pusherrno(L, errno);
  if (S_ISREG(st.st_mode)) {
    lua_pushliteral(L, "file");
    lua_pushinteger(L, (lua_Integer)st.st_size);
    lua_pushinteger(L, (lua_Integer)st.st_mtime);
    return 3;
  }
  lua_pushstring(L, S_ISDIR(st.st_mode) ? "directory" : "other");
  return 1;
}

/* The directory stream listdir reads, in a box whose __gc closes it: a
 * name that cannot be pushed (out of memory) raises, and the box still
 * closes the stream. */
#define NL_DIRBOX_MT "http.server.dir"

static int dirbox_gc(lua_State *L) {
  DIR **box = luaL_checkudata(L, 1, NL_DIRBOX_MT);
  if (*box != NULL) closedir(*box);
  *box = NULL;
  return 0;
}

/* listdir(path) -> {names} (unsorted, without "." and "..") | nil, msg,
 * code (for a static directory's listing). */
static int core_listdir(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  DIR **box = lua_newuserdatauv(L, sizeof *box, 0);
  struct dirent *d;
  lua_Integer n = 0;
  *box = NULL;
  if (luaL_newmetatable(L, NL_DIRBOX_MT)) {
    lua_pushcfunction(L, dirbox_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_setmetatable(L, -2);
  if ((*box = opendir(path)) == NULL) return nl_pusherrno(L, errno);
  lua_newtable(L);
  errno = 0;
  while ((d = readdir(*box)) != NULL) {
    if (strcmp(d->d_name, ".") != 0 && strcmp(d->d_name, "..") != 0) {
      lua_pushstring(L, d->d_name);
      lua_rawseti(L, -2, ++n);
    }
    errno = 0;
  }
  if (errno != 0) return nl_pusherrno(L, errno);
  closedir(*box);
  *box = NULL;
  return 1;
}

/* httpdate([t]) -> "Wed, 25 Nov 2026 16:40:00 GMT" */
static int core_httpdate(lua_State *L) {
  time_t t = (time_t)luaL_optinteger(L, 1, (lua_Integer)time(NULL));
  struct tm tm;
  char date[64];
  gmtime_r(&t, &tm);
  strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S GMT", &tm);
  lua_pushstring(L, date);
  return 1;
}

/* parsedate(s) -> seconds since the epoch | nil: an HTTP date in the
 * preferred format (RFC 9110's IMF-fixdate), as If-Modified-Since sends it. */
static int core_parsedate(lua_State *L) {
  const char *s = luaL_checkstring(L, 1), *end;
  struct tm tm;
  memset(&tm, 0, sizeof tm);
  end = strptime(s, "%a, %d %b %Y %H:%M:%S GMT", &tm);
  if (end == NULL || *end != '\0') {
    luaL_pushfail(L);
    return 1;
  }
  lua_pushinteger(L, (lua_Integer)timegm(&tm));
  return 1;
}

/* tempfile(dir) -> path | nil, msg, code: a new empty file of ours (mode
 * 0600, a random name) in dir, for an uploaded file; the name a client
 * gave never becomes a path. */
static int core_tempfile(lua_State *L) {
  const char *dir = luaL_checkstring(L, 1);
  char path[PATH_MAX];
  int fd;
  if ((size_t)snprintf(path, sizeof path, "%s/netlua-upload-XXXXXX", dir) >= sizeof path)
    return nl_pusherrno(L, ENAMETOOLONG);
  fd = mkostemp(path, O_CLOEXEC);
  if (fd < 0) return nl_pusherrno(L, errno);
  close(fd);
  lua_pushstring(L, path);
  return 1;
}

static const luaL_Reg srv_methods[] = {
  {"accept", srv_accept},
  {"begin", srv_begin},
  {"stop", srv_stop},
  {"close_asked", srv_close_asked},
  {"served", srv_served},
  {"close", srv_close},
  {"getsockname", srv_getsockname},
  {"connections", srv_connections},
  {NULL, NULL}
};

static const luaL_Reg srv_meta[] = {
  {"__gc", srv_close},
  {"__close", srv_close},
  {"__tostring", srv_tostring},
  {NULL, NULL}
};

static const luaL_Reg core_funcs[] = {
  {"listen", core_listen},
  {"realpath", core_realpath},
  {"filetype", core_filetype},
  {"listdir", core_listdir},
  {"httpdate", core_httpdate},
  {"parsedate", core_parsedate},
  {"tempfile", core_tempfile},
  {"headlines", httphead_lines},
  {NULL, NULL}
};

/* http.server: the core's functions handed to the Lua half
 * (bindings/httpserver.lua), which returns the module. */
int luaopen_http_server(lua_State *L) {
  nl_newclass_transfer(L, NL_SERVER_MT, srv_methods, srv_meta, &srv_transfer);
  nl_newclass(L, NL_CONN_MT, httpconn_methods, httpconn_meta);
  luaL_newlib(L, core_funcs);
  nl_trace_export(L);
  lua_pushvalue(L, -1);
  nl_runembedded(L, "httpform", 1);
  lua_setfield(L, -2, "form");
  lua_pushvalue(L, -1);
  nl_runembedded(L, "httpstream", 1);
  lua_setfield(L, -2, "stream");
  nl_runembedded(L, "httpserver", 1);
  return 1;
}
