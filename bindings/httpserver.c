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
 *   Conn  ("http.server.conn") one client connection: buffers, parser,
 *          deadlines. read() returns the next request, write() and
 *          write_file() send a reply; they wait through nl_waitk, so in a
 *          task they suspend only that task and restart from the progress
 *          kept in the Conn (one task serves a connection).
 *
 * Limits answer with clear statuses: 414 (URI too long), 431 (headers too
 * large), 413 (body too large), 400 (malformed), 501 (a transfer coding we
 * do not decode), 505 (not HTTP/1.x), 408 (request not complete in time).
 * A slow or stuck client costs only its own task and bounded buffers; when
 * every connection slot is taken, the one that has been waiting longest for
 * a request to finish arriving makes room for a new client.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include "netlua.h"
#include "modules.h"
#include "buf.h"
#include "httpparse.h"

#define NL_SERVER_MT "http.server"
#define NL_CONN_MT "http.server.conn"
#define READ_CHUNK 16384
#define FILE_CHUNK (1 << 20) /* bytes one sendfile call may move */
#define FULL_RECHECK 0.1 /* seconds between looks for a free connection slot */

typedef struct Limits {
  nl_HttpLimits http;
  double request_timeout, keepalive_timeout, send_timeout;
  int max_connections;
} Limits;

/* What the workers of one server share. */
typedef struct Group {
  atomic_int refs;
  int fd;               /* the listening socket */
  int stop_fd;          /* eventfd: readable while serving stops */
  atomic_int spare_fd;  /* held open so an EMFILE accept can shed the client */
  Limits limits;
  atomic_llong served;  /* requests answered, by every worker */
  atomic_llong max_served; /* stop when served reaches it (0: never) */
  atomic_int stopping;
  atomic_int close_asked; /* close once serving has stopped */
} Group;

typedef struct Conn Conn;

/* One state's handle on a Group. Its connections keep it alive (user
 * value), so their limits stay readable after the group is released. */
typedef struct Server {
  Group *g;             /* NULL once closed */
  int nconn;            /* open connections made by this handle */
  Conn *conns;          /* ... in a list, for making room when all are taken */
  Limits limits;
  time_t date_second;   /* when date_line was formatted */
  char date_line[64];   /* "Date: ...\r\n" */
} Server;

/* One client connection (user value 1: its Server userdata). */
struct Conn {
  int fd;
  nl_HttpRequest req;
  nl_Buf in;       /* bytes read, not yet parsed from `in_pos` on */
  size_t in_pos;
  nl_Buf out;      /* response bytes not yet written, from out_pos on */
  size_t out_pos;
  int file_fd;     /* a file being sent after `out` (-1: none) */
  off_t file_pos;
  uint64_t file_left;
  int closing;     /* close once the reply is written */
  int in_request;  /* bytes of a request have arrived */
  int awaiting;    /* read() is waiting for a request: the connection may be shed */
  int head;        /* the request being answered is a HEAD */
  const char *failure; /* why read() is sending an error reply */
  double deadline;
  double since;    /* when the wait for the current request began */
  char peer[64];
  Server *srv;
  const Limits *limits;
  Conn *prev, *next; /* in srv->conns while open */
};

/* ---- the group: what workers share -------------------------------------- */

static int open_spare(void) {
  return open("/dev/null", O_RDONLY | O_CLOEXEC);
}

static void group_unref(Group *g) {
  int spare;
  if (atomic_fetch_sub(&g->refs, 1) != 1) return;
  if (g->fd >= 0) close(g->fd);
  if (g->stop_fd >= 0) close(g->stop_fd);
  spare = atomic_load(&g->spare_fd);
  if (spare >= 0) close(spare);
  free(g);
}

/* A group around listening socket `fd` (taken over); NULL, errno set. */
static Group *group_new(int fd, const Limits *limits) {
  Group *g = calloc(1, sizeof *g);
  int err;
  if (g == NULL) {
    close(fd);
    errno = ENOMEM;
    return NULL;
  }
  atomic_init(&g->refs, 1);
  g->fd = fd;
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
static void group_count(Group *g) {
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

/* ---- connections ---------------------------------------------------------- */

static Conn *check_conn(lua_State *L, int idx) {
  return luaL_checkudata(L, idx, NL_CONN_MT);
}

static void conn_wait_request(Conn *c) {
  c->in_request = 0;
  c->since = nl_monotonic();
  c->deadline = nl_deadline(c->limits->keepalive_timeout);
}

static void conn_link(Conn *c) {
  Server *s = c->srv;
  c->prev = NULL;
  c->next = s->conns;
  if (s->conns != NULL) s->conns->prev = c;
  s->conns = c;
  s->nconn++;
}

static void conn_unlink(Conn *c) {
  Server *s = c->srv;
  if (c->prev != NULL) c->prev->next = c->next;
  else s->conns = c->next;
  if (c->next != NULL) c->next->prev = c->prev;
  c->prev = c->next = NULL;
  s->nconn--;
}

static void conn_close_file(Conn *c) {
  if (c->file_fd >= 0) close(c->file_fd);
  c->file_fd = -1;
  c->file_left = 0;
}

/* Closes the descriptor and frees the buffers. Idempotent. */
static void conn_close(Conn *c) {
  if (c->fd >= 0) {
    nl_loop_forget(c->fd); /* wakes a task waiting on it; out of the loop */
    close(c->fd);
    c->fd = -1;
    conn_unlink(c);
  }
  conn_close_file(c);
  nl_http_free(&c->req);
  nl_buf_free(&c->in);
  nl_buf_free(&c->out);
  c->in_pos = c->out_pos = 0;
}

static void format_peer(Conn *c, const struct sockaddr_storage *ss) {
  if (ss->ss_family == AF_INET6) {
    const struct sockaddr_in6 *a = (const void *)ss;
    inet_ntop(AF_INET6, &a->sin6_addr, c->peer, sizeof c->peer);
  } else {
    const struct sockaddr_in *a = (const void *)ss;
    inet_ntop(AF_INET, &a->sin_addr, c->peer, sizeof c->peer);
  }
}

/* Pushes a closed Conn of the server at index 1. [-0, +1, m] */
static void new_conn(lua_State *L, Server *s) {
  Conn *c = lua_newuserdatauv(L, sizeof *c, 1);
  memset(c, 0, sizeof *c);
  c->fd = -1;
  c->file_fd = -1;
  luaL_setmetatable(L, NL_CONN_MT);
  lua_pushvalue(L, 1);
  lua_setiuservalue(L, -2, 1); /* the server outlives its connections */
  c->srv = s;
  c->limits = &s->limits;
}

/* The closed Conn c takes accepted descriptor fd. Replies go out at once
 * (TCP_NODELAY): with Nagle's algorithm a reply to a pipelined request
 * waited for the peer's delayed ACK of the one before (40 ms). */
static void conn_open(Conn *c, int fd, const struct sockaddr_storage *ss) {
  int one = 1;
  if (ss->ss_family == AF_INET || ss->ss_family == AF_INET6)
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  nl_http_reset(&c->req);
  format_peer(c, ss);
  c->fd = fd;
  conn_link(c);
  conn_wait_request(c);
}

/* Reads what one recv gives into `in`, after moving the unparsed rest to
 * its front (so a client that always pipelines cannot grow it): 1 bytes
 * arrived, 0 none yet, -1 the peer closed or failed. */
static int conn_recv(Conn *c) {
  if (c->in_pos > 0) {
    nl_buf_consume(&c->in, c->in_pos);
    c->in_pos = 0;
  }
  if (nl_buf_reserve(&c->in, READ_CHUNK) != 0) return -1;
  for (;;) {
    ssize_t r = recv(c->fd, c->in.data + c->in.len, READ_CHUNK, 0);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 0;
    if (r <= 0) return -1;
    c->in.len += (size_t)r;
    c->in.data[c->in.len] = '\0';
    return 1;
  }
}

/* Writes what it can of the pending output. Returns -1 when the peer is
 * gone. Any progress restarts the send timeout: it bounds a stall, not the
 * whole reply. */
static int conn_flush(Conn *c) {
  size_t start = c->out_pos;
  while (c->out_pos < c->out.len) {
    ssize_t w = send(c->fd, c->out.data + c->out_pos, c->out.len - c->out_pos,
                     MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    if (w < 0) return -1;
    c->out_pos += (size_t)w;
  }
  if (c->out_pos > start) c->deadline = nl_deadline(c->limits->send_timeout);
  if (c->out_pos == c->out.len) c->out.len = c->out_pos = 0;
  return 0;
}

/* Sends what it can of the file being served after the head: 0 (all sent or
 * the socket is full), -1 when the peer is gone or the file came up short
 * (it shrank: the Content-Length sent can no longer be kept). */
static int conn_send_file(Conn *c) {
  while (c->file_left > 0) {
    size_t n = c->file_left < FILE_CHUNK ? (size_t)c->file_left : FILE_CHUNK;
    ssize_t w = sendfile(c->fd, c->file_fd, &c->file_pos, n);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 0;
    if (w <= 0) return -1;
    c->file_left -= (uint64_t)w;
    c->deadline = nl_deadline(c->limits->send_timeout);
  }
  conn_close_file(c);
  return 0;
}

static int has_output(const Conn *c) { return c->out_pos < c->out.len; }

static int has_reply_pending(const Conn *c) { return has_output(c) || c->file_fd >= 0; }

/* All connection slots are taken: closes the connection that has waited
 * longest for a request, idle ones (between requests) before those with a
 * request half-arrived, so a client that trickles its request in (slowloris)
 * cannot keep others out. Its task wakes and finds it closed. Returns 1 when
 * one was closed. */
static int server_shed_one(Server *s) {
  Conn *victim = NULL;
  for (Conn *c = s->conns; c != NULL; c = c->next) {
    if (!c->awaiting || has_reply_pending(c)) continue;
    if (victim == NULL || (victim->in_request && !c->in_request) ||
        (victim->in_request == c->in_request && c->since < victim->since))
      victim = c;
  }
  if (victim == NULL) return 0;
  conn_close(victim);
  return 1;
}

/* Sends the pending output and file, waiting (nl_waitk, restartable) until
 * all is out or no progress was made for send_timeout. Returns 0, or -1 when
 * the peer is gone or too slow. */
static int conn_drain(lua_State *L, int nargs, Conn *c) {
  for (;;) {
    if (conn_flush(c) < 0) return -1;
    if (!has_output(c) && c->file_fd >= 0 && conn_send_file(c) < 0) return -1;
    if (!has_reply_pending(c)) return 0;
    if (nl_waitk(L, nargs, c->fd, NL_WRITE, c->deadline) == 0) return -1;
  }
}

/* ---- responses ---------------------------------------------------------- */

static void add_str(nl_Buf *b, const char *s) { nl_buf_add(b, s, strlen(s)); }

/* The Date line, formatted once a second per server handle. */
static void add_date(Conn *c) {
  Server *s = c->srv;
  time_t now = time(NULL);
  if (now != s->date_second || s->date_line[0] == '\0') {
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(s->date_line, sizeof s->date_line, "Date: %a, %d %b %Y %H:%M:%S GMT\r\n", &tm);
    s->date_second = now;
  }
  add_str(&c->out, s->date_line);
}

static int has_body(int status) { return status != 204 && status != 304; }

/* Queues a response head. `headers` (hlen bytes) are "Name: value\r\n"
 * lines from the handler; Date, Content-Length and Connection are ours. A
 * status that is not a final one (200-599) becomes 500. Returns the status
 * sent. */
static int queue_head(Conn *c, int status, const char *headers, size_t hlen,
                      uint64_t length) {
  char line[128];
  nl_Buf *b = &c->out;
  if (status < 200 || status > 599) status = 500;
  snprintf(line, sizeof line, "HTTP/1.1 %d %s\r\n", status, nl_http_reason(status));
  add_str(b, line);
  add_date(c);
  nl_buf_add(b, headers, hlen);
  if (has_body(status)) {
    snprintf(line, sizeof line, "Content-Length: %llu\r\n", (unsigned long long)length);
    add_str(b, line);
  }
  add_str(b, c->closing ? "Connection: close\r\n\r\n" : "Connection: keep-alive\r\n\r\n");
  return status;
}

/* Queues a complete response; HEAD, 204 and 304 get no body. */
static void queue_response(Conn *c, int status, const char *headers, size_t hlen,
                           const char *body, size_t len, int head) {
  status = queue_head(c, status, headers, hlen, len);
  if (!head && has_body(status)) nl_buf_add(&c->out, body, len);
}

static const char TEXT_TYPE[] = "Content-Type: text/plain; charset=utf-8\r\n";

/* An error reply of ours, then the connection closes. */
static void queue_error(Conn *c, int status, const char *text) {
  c->closing = 1;
  queue_response(c, status, TEXT_TYPE, sizeof TEXT_TYPE - 1, text, strlen(text), 0);
}

static const char *error_text(int status) {
  switch (status) {
  case 400: return "bad request\n";
  case 404: return "not found\n";
  case 408: return "request timeout\n";
  case 413: return "request body too large\n";
  case 414: return "uri too long\n";
  case 431: return "request header fields too large\n";
  case 501: return "not implemented\n";
  case 505: return "http version not supported\n";
  default: return "internal server error\n";
  }
}

/* ---- dispatching into Lua ----------------------------------------------- */

/* Pushes a table of fields (names are lower case; repeats joined with
 * ", "). [-0, +1, m] */
static void push_fields(lua_State *L, const nl_Buf *fields) {
  size_t off = 0, nlen, vlen;
  const char *name, *value;
  lua_newtable(L);
  while (nl_http_next_field(fields, &off, &name, &nlen, &value, &vlen)) {
    lua_pushlstring(L, name, nlen);
    lua_pushvalue(L, -1);
    if (lua_rawget(L, -3) == LUA_TSTRING) {
      lua_pushliteral(L, ", ");
      lua_pushlstring(L, value, vlen);
      lua_concat(L, 3);
    } else {
      lua_pop(L, 1);
      lua_pushlstring(L, value, vlen);
    }
    lua_rawset(L, -3);
  }
}

/* Pushes the request table: method, target, path, rawquery, headers,
 * trailers (a chunked body's trailer fields, when it had any), body,
 * version, peer. [-0, +1, m] */
static void push_request(lua_State *L, Conn *c) {
  const nl_HttpRequest *r = &c->req;
  const char *target = r->target.data ? r->target.data : "", *path, *query;
  size_t pathlen, querylen;
  nl_http_split_target(target, r->target.len, &path, &pathlen, &query, &querylen);
  lua_createtable(L, 0, 10);
  lua_pushstring(L, r->method);
  lua_setfield(L, -2, "method");
  lua_pushlstring(L, target, r->target.len);
  lua_setfield(L, -2, "target");
  lua_pushlstring(L, path, pathlen);
  lua_setfield(L, -2, "path");
  lua_pushlstring(L, query, querylen);
  lua_setfield(L, -2, "rawquery");
  push_fields(L, &r->headers);
  lua_setfield(L, -2, "headers");
  if (r->trailers.len > 0) {
    push_fields(L, &r->trailers);
    lua_setfield(L, -2, "trailers");
  }
  lua_pushlstring(L, r->body.data ? r->body.data : "", r->body.len);
  lua_setfield(L, -2, "body");
  lua_pushfstring(L, "%d.%d", r->major, r->minor);
  lua_setfield(L, -2, "version");
  lua_pushstring(L, c->peer);
  lua_setfield(L, -2, "peer");
}

/* ---- reading requests ------------------------------------------------------ */

enum { READ_OK, READ_STOPPED, READ_CLOSED, READ_IDLE, READ_FAILED };

static const char CONTINUE[] = "HTTP/1.1 100 Continue\r\n\r\n";

/* Feeds buffered input to the parser: 1 a request is complete, 0 more
 * input is needed, or minus the status of the error to answer. */
static int conn_parse(Conn *c) {
  size_t used;
  int r;
  if (c->in_pos == c->in.len) return 0;
  if (!c->in_request) {
    c->in_request = 1;
    c->since = nl_monotonic();
    c->deadline = nl_deadline(c->limits->request_timeout);
  }
  r = nl_http_parse(&c->req, c->in.data + c->in_pos, c->in.len - c->in_pos, &used,
                    &c->limits->http);
  c->in_pos += used;
  if (c->in_pos == c->in.len) c->in.len = c->in_pos = 0;
  if (r >= 0 && c->req.expect_continue == 1) {
    c->req.expect_continue = 2; /* sent */
    if (nl_buf_add(&c->out, CONTINUE, sizeof CONTINUE - 1) != 0) return -500;
  }
  return r;
}

static int serving_stopped(const Conn *c) {
  return c->srv->g == NULL || atomic_load(&c->srv->g->stopping);
}

/* Waits for input (and for an interim "100 Continue" to go out). An idle
 * connection also wakes when serving stops. 0 when the deadline passed. */
static int conn_wait_input(lua_State *L, Conn *c) {
  nl_PollFd fds[2];
  if (has_output(c)) return nl_waitk(L, 1, c->fd, NL_WRITE, c->deadline);
  if (c->in_request) return nl_waitk(L, 1, c->fd, NL_READ, c->deadline);
  fds[0].fd = c->fd;
  fds[0].events = NL_READ;
  fds[1].fd = c->srv->g->stop_fd;
  fds[1].events = NL_READ;
  return nl_waitmanyk(L, 1, fds, 2, c->deadline);
}

/* An error reply of ours; read() sends it, then closes. */
static int conn_fail(Conn *c, int status, const char *why) {
  queue_error(c, status, error_text(status));
  c->failure = why;
  c->deadline = nl_deadline(c->limits->send_timeout);
  return READ_FAILED;
}

/* Reads until a whole request is parsed (READ_OK), the peer leaves
 * (READ_CLOSED), serving stops or the keep-alive time ends between requests
 * (READ_STOPPED, READ_IDLE), or an error reply is due (READ_FAILED). */
static int conn_await_request(lua_State *L, Conn *c) {
  for (;;) {
    int r = conn_parse(c);
    if (r > 0) return READ_OK;
    if (r < 0) return conn_fail(c, -r, "bad request");
    if (has_output(c) && conn_flush(c) < 0) return READ_CLOSED;
    if (!has_output(c)) {
      r = conn_recv(c);
      if (r > 0) continue;
      if (r < 0) return READ_CLOSED;
      if (!c->in_request && serving_stopped(c)) return READ_STOPPED;
    }
    if (conn_wait_input(L, c) == 0) {
      if (!c->in_request) return READ_IDLE;
      return conn_fail(c, 408, "timeout");
    }
  }
}

/* conn:read() -> request | nil, "stopped" (the connection stays open for the
 * next serve) | nil, "closed" | "timeout" | "bad request" (closed, after an
 * error reply when one is due). Restartable: its progress is in the Conn. */
static int conn_read(lua_State *L) {
  Conn *c = check_conn(L, 1);
  int r;
  lua_settop(L, 1);
  if (c->fd < 0) return nl_pushfail(L, "closed", NULL);
  c->awaiting = c->failure == NULL;
  r = c->failure != NULL ? READ_FAILED : conn_await_request(L, c);
  c->awaiting = 0;
  switch (r) {
  case READ_OK:
    c->closing = !c->req.keep_alive;
    c->head = c->req.is_head;
    push_request(L, c);
    nl_http_reset(&c->req);
    return 1;
  case READ_STOPPED:
    return nl_pushfail(L, "stopped", NULL);
  case READ_FAILED: {
    const char *why = c->failure;
    (void)conn_drain(L, 1, c);
    conn_close(c);
    return nl_pushfail(L, why, NULL);
  }
  default:
    conn_close(c);
    return nl_pushfail(L, r == READ_IDLE ? "timeout" : "closed", NULL);
  }
}

/* After a reply is queued: counts it, then sends it (restartable, see
 * conn_drain) and readies the connection for the next request. Pushes true,
 * or false when the connection closed (it asked to, failed, or made no
 * progress for send_timeout). [-0, +1] */
static int conn_finish_reply(lua_State *L, int nargs, Conn *c) {
  lua_settop(L, nargs);
  if (c->fd < 0 || conn_drain(L, nargs, c) < 0 || c->closing) {
    conn_close(c);
    lua_pushboolean(L, 0);
    return 1;
  }
  conn_wait_request(c);
  lua_pushboolean(L, 1);
  return 1;
}

static int arg_status(lua_State *L, int idx) {
  int isnum = 0;
  lua_Integer code = lua_tointegerx(L, idx, &isnum);
  return isnum && code >= 200 && code <= 599 ? (int)code : 500;
}

static void reply_queued(Conn *c) {
  c->deadline = nl_deadline(c->limits->send_timeout);
  if (c->srv->g != NULL) group_count(c->srv->g);
}

/* conn:write(status, header_lines, body) -> true (ready for the next
 * request) | false (the connection closed). Restartable: after a wait it
 * goes on sending what it queued. */
static int conn_write(lua_State *L) {
  Conn *c = check_conn(L, 1);
  if (!nl_restarting(L) && c->fd >= 0) {
    size_t hlen = 0, len = 0;
    const char *lines = luaL_optlstring(L, 3, "", &hlen);
    const char *body = luaL_optlstring(L, 4, "", &len);
    queue_response(c, arg_status(L, 2), lines, hlen, body, len, c->head);
    reply_queued(c);
  }
  return conn_finish_reply(L, 4, c);
}

/* Opens the file of a reply: its descriptor (-1, errno set) and size. */
static int open_reply_file(const char *path, uint64_t *size) {
  struct stat st;
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) return -1;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    close(fd);
    errno = EISDIR;
    return -1;
  }
  *size = (uint64_t)st.st_size;
  return fd;
}

/* conn:write_file(status, header_lines, path) -> as write(), with the body
 * streamed from the file (sendfile) in bounded pieces, never held in
 * memory; HEAD sends the head only. A file that cannot be opened is a 404. */
static int conn_write_file(lua_State *L) {
  Conn *c = check_conn(L, 1);
  if (!nl_restarting(L) && c->fd >= 0) {
    size_t hlen = 0;
    const char *lines = luaL_optlstring(L, 3, "", &hlen);
    const char *path = luaL_checkstring(L, 4);
    uint64_t size = 0;
    int fd = open_reply_file(path, &size), status = arg_status(L, 2);
    if (fd < 0) {
      queue_response(c, 404, TEXT_TYPE, sizeof TEXT_TYPE - 1, error_text(404),
                     strlen(error_text(404)), c->head);
    } else {
      status = queue_head(c, status, lines, hlen, size);
      if (c->head || !has_body(status)) {
        close(fd);
      } else {
        c->file_fd = fd;
        c->file_pos = 0;
        c->file_left = size;
        if (size == 0) conn_close_file(c);
      }
    }
    reply_queued(c);
  }
  return conn_finish_reply(L, 4, c);
}

static int conn_close_m(lua_State *L) {
  conn_close(check_conn(L, 1));
  return 0;
}

static int conn_tostring(lua_State *L) {
  Conn *c = check_conn(L, 1);
  if (c->fd < 0) lua_pushliteral(L, "http.server.conn (closed)");
  else lua_pushfstring(L, "http.server.conn (%s)", c->peer);
  return 1;
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
  new_conn(L, s); /* closed first: nothing leaks if memory runs out */
  for (;;) {
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    int fd, full = s->nconn >= s->limits.max_connections;
    if (full && client_waiting(g) && server_shed_one(s)) full = 0;
    if (atomic_load(&g->stopping)) return nl_pushfail(L, "stopped", NULL);
    if (!full) {
      fd = accept4(g->fd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd >= 0) {
        conn_open(check_conn(L, 3), fd, &ss);
        return 1;
      }
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
  if (ss.ss_family == AF_INET6) {
    struct sockaddr_in6 *a = (void *)&ss;
    inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
    port = ntohs(a->sin6_port);
  } else {
    struct sockaddr_in *a = (void *)&ss;
    inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
    port = ntohs(a->sin_port);
  }
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

/* Binds and listens on host:port; returns a descriptor or -errno, and for
 * resolution failures -EAI with *gai set. */
static int open_listener(const char *host, const char *port, int *gai) {
  struct addrinfo hints, *res, *ai;
  int fd = -EADDRNOTAVAIL;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  if ((*gai = getaddrinfo(host, port, &hints, &res)) != 0) return -1;
  for (ai = res; ai != NULL; ai = ai->ai_next) {
    int one = 1;
    fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      fd = -errno;
      continue;
    }
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, SOMAXCONN) == 0) break;
    int err = errno;
    nl_loop_forget(fd);
    close(fd);
    fd = -err;
  }
  freeaddrinfo(res);
  return fd;
}

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

/* Timeouts go through nl_deadline, which reads math.huge, NaN and negative
 * ones as "no limit". */
static void read_limits(lua_State *L, int t, Limits *l) {
  l->http.max_uri = (size_t)field_limit(L, t, "max_uri", 8192, 1e15);
  l->http.max_header = (size_t)field_limit(L, t, "max_header", 16384, 1e15);
  l->http.max_body = (size_t)field_limit(L, t, "max_body", 1048576, 1e15);
  l->request_timeout = field_number(L, t, "request_timeout", 10);
  l->keepalive_timeout = field_number(L, t, "keepalive_timeout", 5);
  l->send_timeout = field_number(L, t, "send_timeout", 10);
  l->max_connections = (int)field_limit(L, t, "max_connections", 512, 1e6);
  if (l->max_connections < 1) l->max_connections = 1;
}

/* listen(host, port, limits) -> server | nil, msg, code */
static int core_listen(lua_State *L) {
  const char *host = luaL_checkstring(L, 1);
  lua_Integer port = luaL_checkinteger(L, 2);
  char portstr[16];
  int gai = 0, fd;
  Limits limits;
  Server *s;
  Group *g;
  luaL_argcheck(L, port >= 0 && port <= 65535, 2, "port out of range");
  luaL_checktype(L, 3, LUA_TTABLE);
  read_limits(L, 3, &limits);
  s = push_server(L, NULL); /* closed first */
  snprintf(portstr, sizeof portstr, "%d", (int)port);
  fd = open_listener(host, portstr, &gai);
  if (fd == -1 && gai != 0) {
    lua_pushfstring(L, "could not resolve host: %s", host);
    return nl_pushfail(L, lua_tostring(L, -1), "EAI_NONAME");
  }
  if (fd < 0) return nl_pusherrno(L, -fd);
  if ((g = group_new(fd, &limits)) == NULL) return nl_pusherrno(L, errno);
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

/* filetype(path) -> "file", size | "directory" | "other" | nil, msg, code
 * (for static files: a directory is served by its index.html). */
static int core_filetype(lua_State *L) {
  struct stat st;
  if (stat(luaL_checkstring(L, 1), &st) != 0) return nl_pusherrno(L, errno);
  if (S_ISREG(st.st_mode)) {
    lua_pushliteral(L, "file");
    lua_pushinteger(L, (lua_Integer)st.st_size);
    return 2;
  }
  lua_pushstring(L, S_ISDIR(st.st_mode) ? "directory" : "other");
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

static const luaL_Reg conn_methods[] = {
  {"read", conn_read},
  {"write", conn_write},
  {"write_file", conn_write_file},
  {"close", conn_close_m},
  {NULL, NULL}
};

static const luaL_Reg conn_meta[] = {
  {"__gc", conn_close_m},
  {"__close", conn_close_m},
  {"__tostring", conn_tostring},
  {NULL, NULL}
};

static const luaL_Reg core_funcs[] = {
  {"listen", core_listen},
  {"realpath", core_realpath},
  {"filetype", core_filetype},
  {"httpdate", core_httpdate},
  {NULL, NULL}
};

/* http.server: the core's functions handed to the Lua half
 * (bindings/httpserver.lua), which returns the module. */
int luaopen_http_server(lua_State *L) {
  nl_newclass(L, NL_SERVER_MT, srv_methods, srv_meta);
  luaL_getmetatable(L, NL_SERVER_MT);
  lua_pushlightuserdata(L, (void *)&srv_transfer);
  lua_setfield(L, -2, NL_TRANSFER_FIELD);
  lua_pop(L, 1);
  nl_newclass(L, NL_CONN_MT, conn_methods, conn_meta);
  luaL_newlib(L, core_funcs);
  nl_runembedded(L, "httpserver", 1);
  return 1;
}
