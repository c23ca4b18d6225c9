/*
 * httpserver.c: the C core of http.server (layer: bindings), preloaded as
 * "http.server_core". It parses HTTP/1.1 with nodejs's http_parser
 * (Debian's libhttp-parser) and does the socket work; bindings/http.lua
 * runs each connection as a task (runtime/sched.c) and routes requests.
 *
 * Three objects:
 *   Group  the listening socket and what every worker thread of one server
 *          shares: limits, the count of requests served, the stop flag and
 *          an eventfd that wakes every waiting accept and idle connection
 *          when serving stops. Reference-counted; it crosses to worker
 *          threads through nl_Transfer (each state wraps it in its own
 *          "http.server" userdata).
 *   Server ("http.server") one state's handle on a Group: accept(), the
 *          count of its open connections.
 *   Conn  ("http.server.conn") one client connection: buffers, parser,
 *          deadlines. read() returns the next request, write() sends a
 *          reply; both wait through nl_waitk, so in a task they suspend only
 *          that task and restart from the progress kept in the Conn.
 *
 * Limits answer with clear statuses: 414 (URI too long), 431 (headers too
 * large), 413 (body too large), 400 (malformed), 408 (request not complete
 * in time). A slow or stuck client costs only its own task and buffers.
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
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <http_parser.h>

#include "netlua.h"
#include "modules.h"

#define NL_SERVER_MT "http.server"
#define NL_CONN_MT "http.server.conn"
#define READ_CHUNK 16384
#define FULL_RECHECK 0.1 /* seconds between looks for a free connection slot */

typedef struct Buf {
  char *data;
  size_t len, cap;
} Buf;

typedef struct Limits {
  size_t max_uri, max_header, max_body;
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

/* One state's handle on a Group. Its connections keep it alive (user
 * value), so their limits stay readable after the group is released. */
typedef struct Server {
  Group *g;             /* NULL once closed */
  int nconn;            /* open connections made by this handle */
  Limits limits;
  time_t date_second;   /* when date_line was formatted */
  char date_line[64];   /* "Date: ...\r\n" */
} Server;

/* One client connection (user value 1: its Server userdata). */
typedef struct Conn {
  int fd;
  http_parser parser;
  Buf in;          /* bytes read, not yet parsed from `in_pos` on */
  size_t in_pos;
  Buf url, hdrs;   /* hdrs: name\0value\0 ... */
  Buf body;
  Buf out;         /* response bytes not yet written, from out_pos on */
  size_t out_pos;
  size_t header_bytes;
  int last_was_value;
  int complete;    /* a whole request is parsed */
  int error_status; /* a limit hit while parsing: 413, 414, 431 */
  int closing;     /* close once `out` is written */
  int in_request;  /* bytes of a request have arrived */
  int head;        /* the request being answered is a HEAD */
  const char *failure; /* why read() is sending an error reply */
  double deadline;
  char peer[64];
  Server *srv;
  const Limits *limits;
} Conn;

/* ---- buffers ------------------------------------------------------------ */

static int buf_add(Buf *b, const char *data, size_t len) {
  if (b->len + len + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 1024;
    char *p;
    while (cap < b->len + len + 1) cap *= 2;
    p = realloc(b->data, cap);
    if (p == NULL) return -1;
    b->data = p;
    b->cap = cap;
  }
  if (len > 0) memcpy(b->data + b->len, data, len);
  b->len += len;
  b->data[b->len] = '\0';
  return 0;
}

static void buf_free(Buf *b) {
  free(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
}

/* ---- parser callbacks (no Lua in here) ---------------------------------- */

static Conn *conn_of(http_parser *p) { return p->data; }

/* Fails the parse with a limit's status (-1: for on_headers_complete, 1
 * would mean "no body", not an error). */
static int limit_hit(Conn *c, int status) {
  c->error_status = status;
  return -1;
}

static int on_message_begin(http_parser *p) {
  Conn *c = conn_of(p);
  c->url.len = c->hdrs.len = c->body.len = 0;
  c->header_bytes = 0;
  c->last_was_value = 0;
  return 0;
}

static int on_url(http_parser *p, const char *at, size_t len) {
  Conn *c = conn_of(p);
  if (c->url.len + len > c->limits->max_uri) return limit_hit(c, 414);
  return buf_add(&c->url, at, len) ? limit_hit(c, 500) : 0;
}

static int count_header(Conn *c, size_t len) {
  c->header_bytes += len;
  return c->header_bytes > c->limits->max_header;
}

static int on_header_field(http_parser *p, const char *at, size_t len) {
  Conn *c = conn_of(p);
  if (count_header(c, len)) return limit_hit(c, 431);
  if (c->last_was_value && buf_add(&c->hdrs, "", 1)) return limit_hit(c, 500);
  c->last_was_value = 0;
  return buf_add(&c->hdrs, at, len) ? limit_hit(c, 500) : 0;
}

static int on_header_value(http_parser *p, const char *at, size_t len) {
  Conn *c = conn_of(p);
  if (count_header(c, len)) return limit_hit(c, 431);
  if (!c->last_was_value && buf_add(&c->hdrs, "", 1)) return limit_hit(c, 500);
  c->last_was_value = 1;
  return buf_add(&c->hdrs, at, len) ? limit_hit(c, 500) : 0;
}

/* True when the request holds "Expect: 100-continue". */
static int expects_continue(const Conn *c) {
  for (size_t off = 0; off < c->hdrs.len;) {
    const char *name = c->hdrs.data + off, *value = name + strlen(name) + 1;
    if (strcasecmp(name, "expect") == 0 && strcasecmp(value, "100-continue") == 0)
      return 1;
    off += strlen(name) + strlen(value) + 2;
  }
  return 0;
}

static int on_headers_complete(http_parser *p) {
  Conn *c = conn_of(p);
  if (c->last_was_value && buf_add(&c->hdrs, "", 1)) return limit_hit(c, 500);
  if ((p->flags & F_CONTENTLENGTH) &&
      p->content_length > (uint64_t)c->limits->max_body)
    return limit_hit(c, 413);
  if (p->http_minor >= 1 && expects_continue(c) &&
      buf_add(&c->out, "HTTP/1.1 100 Continue\r\n\r\n", 25))
    return limit_hit(c, 500);
  return 0;
}

static int on_body(http_parser *p, const char *at, size_t len) {
  Conn *c = conn_of(p);
  if (c->body.len + len > c->limits->max_body) return limit_hit(c, 413);
  return buf_add(&c->body, at, len) ? limit_hit(c, 500) : 0;
}

/* Pauses the parser after each request, so requests pipelined in one read
 * are dispatched one by one, in order. */
static int on_message_complete(http_parser *p) {
  Conn *c = conn_of(p);
  c->complete = 1;
  http_parser_pause(p, 1);
  return 0;
}

static const http_parser_settings parser_settings = {
  .on_message_begin = on_message_begin,
  .on_url = on_url,
  .on_header_field = on_header_field,
  .on_header_value = on_header_value,
  .on_headers_complete = on_headers_complete,
  .on_body = on_body,
  .on_message_complete = on_message_complete,
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
  c->deadline = nl_deadline(c->limits->keepalive_timeout);
}

/* Closes the descriptor and frees the buffers. Idempotent. */
static void conn_close(Conn *c) {
  if (c->fd >= 0) {
    nl_loop_forget(c->fd); /* wakes a task waiting on it; out of the loop */
    close(c->fd);
    c->fd = -1;
    c->srv->nconn--;
  }
  buf_free(&c->in);
  buf_free(&c->url);
  buf_free(&c->hdrs);
  buf_free(&c->body);
  buf_free(&c->out);
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
  http_parser_init(&c->parser, HTTP_REQUEST);
  c->parser.data = c;
  format_peer(c, ss);
  c->fd = fd;
  c->srv->nconn++;
  conn_wait_request(c);
}

/* Reads what one recv gives: 1 bytes arrived, 0 none yet, -1 the peer
 * closed or failed. */
static int conn_recv(Conn *c) {
  char chunk[READ_CHUNK];
  for (;;) {
    ssize_t r = recv(c->fd, chunk, sizeof chunk, 0);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 0;
    if (r <= 0) return -1;
    return buf_add(&c->in, chunk, (size_t)r) == 0 ? 1 : -1;
  }
}

/* Writes what it can of the pending output. Returns -1 when the peer is
 * gone. */
static int conn_flush(Conn *c) {
  while (c->out_pos < c->out.len) {
    ssize_t w = send(c->fd, c->out.data + c->out_pos, c->out.len - c->out_pos,
                     MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 0;
    if (w < 0) return -1;
    c->out_pos += (size_t)w;
  }
  c->out.len = c->out_pos = 0;
  return 0;
}

static int has_output(const Conn *c) { return c->out_pos < c->out.len; }

/* Sends the pending output, waiting (nl_waitk, restartable) until it is all
 * out or the deadline passes. Returns 0, or -1 when the peer is gone or too
 * slow. */
static int conn_drain(lua_State *L, int nargs, Conn *c) {
  for (;;) {
    if (conn_flush(c) < 0) return -1;
    if (!has_output(c)) return 0;
    if (nl_waitk(L, nargs, c->fd, NL_WRITE, c->deadline) == 0) return -1;
  }
}

/* ---- responses ---------------------------------------------------------- */

static const char *reason_for(int status) {
  const char *r = http_status_str((enum http_status)status);
  return (r == NULL || strcmp(r, "<unknown>") == 0) ? "Unknown" : r;
}

static void add_str(Buf *b, const char *s) { buf_add(b, s, strlen(s)); }

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

/* Queues a complete response. `headers` are "Name: value\r\n" lines from
 * the handler (may be NULL); Date, Content-Length and Connection are ours.
 * HEAD, 204 and 304 get no body. */
static void queue_response(Conn *c, int status, const char *headers,
                           const char *body, size_t len, int head) {
  char line[128];
  Buf *b = &c->out;
  snprintf(line, sizeof line, "HTTP/1.1 %d %s\r\n", status, reason_for(status));
  add_str(b, line);
  add_date(c);
  if (headers != NULL) add_str(b, headers);
  if (status != 204 && status != 304) {
    snprintf(line, sizeof line, "Content-Length: %zu\r\n", len);
    add_str(b, line);
  }
  add_str(b, c->closing ? "Connection: close\r\n\r\n" : "Connection: keep-alive\r\n\r\n");
  if (!head && status != 204 && status != 304 && status >= 200) buf_add(b, body, len);
}

/* An error reply of ours, then the connection closes. */
static void queue_error(Conn *c, int status, const char *text) {
  c->closing = 1;
  queue_response(c, status, "Content-Type: text/plain; charset=utf-8\r\n", text,
                 strlen(text), 0);
}

static const char *error_text(int status) {
  switch (status) {
  case 400: return "bad request\n";
  case 408: return "request timeout\n";
  case 413: return "request body too large\n";
  case 414: return "uri too long\n";
  case 431: return "request header fields too large\n";
  default: return "internal server error\n";
  }
}

/* ---- dispatching into Lua ----------------------------------------------- */

/* Pushes the request table: method, target, path, query (raw string),
 * headers (lower-case names; repeats joined with ", "), body, version,
 * peer. [-0, +1, m] */
static void push_request(lua_State *L, Conn *c) {
  struct http_parser_url u;
  const char *url = c->url.data ? c->url.data : "";
  size_t len = c->url.len;
  lua_createtable(L, 0, 9);
  lua_pushstring(L, http_method_str((enum http_method)c->parser.method));
  lua_setfield(L, -2, "method");
  lua_pushlstring(L, url, len);
  lua_setfield(L, -2, "target");
  http_parser_url_init(&u);
  if (http_parser_parse_url(url, len, 0, &u) == 0 && (u.field_set & (1 << UF_PATH)))
    lua_pushlstring(L, url + u.field_data[UF_PATH].off, u.field_data[UF_PATH].len);
  else
    lua_pushliteral(L, "/");
  lua_setfield(L, -2, "path");
  if (u.field_set & (1 << UF_QUERY))
    lua_pushlstring(L, url + u.field_data[UF_QUERY].off, u.field_data[UF_QUERY].len);
  else
    lua_pushliteral(L, "");
  lua_setfield(L, -2, "rawquery");
  lua_newtable(L);
  for (size_t off = 0; off < c->hdrs.len;) {
    const char *name = c->hdrs.data + off, *value = name + strlen(name) + 1;
    luaL_Buffer lower;
    off += strlen(name) + strlen(value) + 2;
    luaL_buffinit(L, &lower);
    for (const char *p = name; *p; p++) luaL_addchar(&lower, (char)(*p >= 'A' && *p <= 'Z' ? *p + 32 : *p));
    luaL_pushresult(&lower);
    lua_pushvalue(L, -1);
    if (lua_rawget(L, -3) == LUA_TSTRING) {
      lua_pushliteral(L, ", ");
      lua_pushstring(L, value);
      lua_concat(L, 3);
    } else {
      lua_pop(L, 1);
      lua_pushstring(L, value);
    }
    lua_rawset(L, -3);
  }
  lua_setfield(L, -2, "headers");
  lua_pushlstring(L, c->body.data ? c->body.data : "", c->body.len);
  lua_setfield(L, -2, "body");
  lua_pushfstring(L, "%d.%d", (int)c->parser.http_major, (int)c->parser.http_minor);
  lua_setfield(L, -2, "version");
  lua_pushstring(L, c->peer);
  lua_setfield(L, -2, "peer");
}

/* ---- reading requests ------------------------------------------------------ */

enum { READ_OK, READ_STOPPED, READ_CLOSED, READ_IDLE, READ_FAILED };

/* Feeds buffered input to the parser: 1 a request is complete, 0 more
 * input is needed, or minus the status of the error to answer. */
static int conn_parse(Conn *c) {
  while (c->in_pos < c->in.len) {
    size_t n = http_parser_execute(&c->parser, &parser_settings,
                                   c->in.data + c->in_pos, c->in.len - c->in_pos);
    enum http_errno err = HTTP_PARSER_ERRNO(&c->parser);
    c->in_pos += n;
    if (n > 0 && !c->in_request) {
      c->in_request = 1;
      c->deadline = nl_deadline(c->limits->request_timeout);
    }
    if (c->complete) {
      c->complete = 0;
      http_parser_pause(&c->parser, 0);
      return 1;
    }
    if (err != HPE_OK && err != HPE_PAUSED)
      return -(c->error_status ? c->error_status : err == HPE_HEADER_OVERFLOW ? 431 : 400);
    if (n == 0) break;
  }
  if (c->in_pos == c->in.len) c->in.len = c->in_pos = 0;
  return 0;
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
  r = c->failure != NULL ? READ_FAILED : conn_await_request(L, c);
  switch (r) {
  case READ_OK:
    c->closing = !http_should_keep_alive(&c->parser);
    c->head = c->parser.method == HTTP_HEAD;
    push_request(L, c);
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

/* conn:write(status, header_lines, body) -> true (ready for the next
 * request) | false (the connection closed: it asked to, failed, or did not
 * read its reply within send_timeout). Restartable: after a wait it goes on
 * sending what it queued. */
static int conn_write(lua_State *L) {
  Conn *c = check_conn(L, 1);
  if (!nl_restarting(L)) {
    int isnum = 0;
    lua_Integer code = lua_tointegerx(L, 2, &isnum);
    int status = isnum && code >= 100 && code <= 999 ? (int)code : 500;
    const char *lines = luaL_optstring(L, 3, NULL);
    size_t len = 0;
    const char *body = luaL_optlstring(L, 4, "", &len);
    if (c->fd < 0) {
      lua_pushboolean(L, 0);
      return 1;
    }
    queue_response(c, status, lines, body, len, c->head);
    c->deadline = nl_deadline(c->limits->send_timeout);
    if (c->srv->g != NULL) group_count(c->srv->g);
  }
  lua_settop(L, 4);
  if (c->fd < 0 || conn_drain(L, 4, c) < 0 || c->closing) {
    conn_close(c);
    lua_pushboolean(L, 0);
    return 1;
  }
  conn_wait_request(c);
  lua_pushboolean(L, 1);
  return 1;
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
    if (!wait_to_accept(L, g, deadline, full)) return nl_pushfail(L, "timeout", NULL);
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
  "http.server_core", srv_export, srv_import, srv_discard
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
  l->max_uri = (size_t)field_limit(L, t, "max_uri", 8192, 1e15);
  l->max_header = (size_t)field_limit(L, t, "max_header", 16384, 1e15);
  l->max_body = (size_t)field_limit(L, t, "max_body", 1048576, 1e15);
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
  {"httpdate", core_httpdate},
  {NULL, NULL}
};

int luaopen_http_server_core(lua_State *L) {
  nl_newclass(L, NL_SERVER_MT, srv_methods, srv_meta);
  luaL_getmetatable(L, NL_SERVER_MT);
  lua_pushlightuserdata(L, (void *)&srv_transfer);
  lua_setfield(L, -2, NL_TRANSFER_FIELD);
  lua_pop(L, 1);
  nl_newclass(L, NL_CONN_MT, conn_methods, conn_meta);
  luaL_newlib(L, core_funcs);
  return 1;
}
