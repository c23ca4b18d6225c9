/*
 * httpserver.c: the C core of http.server (layer: bindings), preloaded as
 * "http.server_core". A single-threaded, event-driven HTTP/1.1 server:
 * non-blocking sockets, every connection waited on together through the
 * runtime's nl_waitmany, requests parsed incrementally by nodejs's
 * http_parser (Debian's libhttp-parser), per-connection buffers and
 * deadlines. A slow or stuck client costs only its own buffers: it never
 * holds up the others. A slow *handler* does hold up the loop (as in
 * Node.js): handlers run in the serving state, one at a time.
 *
 * For each complete request the loop calls the Lua dispatch function given
 * to run() (bindings/http.lua: routing, static files, JSON) under pcall and
 * writes what it returns. Limits answer with clear statuses: 414 (URI too
 * long), 431 (headers too large), 413 (body too large), 400 (malformed),
 * 408 (request not complete in time), 500 (handler error, logged).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
#define READ_CHUNK 16384
#define MAX_PENDING_OUT (256 * 1024) /* stop reading while this much waits */

typedef struct Buf {
  char *data;
  size_t len, cap;
} Buf;

typedef struct Limits {
  size_t max_uri, max_header, max_body;
  double request_timeout, keepalive_timeout, send_timeout;
  int max_connections;
} Limits;

/* One client connection. */
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
  int complete;    /* a whole request is parsed and waits for dispatch */
  int error_status; /* a limit hit while parsing: 413, 414, 431 */
  int closing;     /* close once `out` is written */
  int in_request;  /* bytes of a request have arrived */
  double deadline;
  char peer[64];
  struct Server *srv;
} Conn;

typedef struct Server {
  int fd;
  int stopping;
  int running;      /* inside run(): close() only asks to stop */
  int close_asked;
  int spare_fd;     /* held open so an EMFILE accept can shed the client */
  Conn **conns;
  int nconn, capconn;
  Limits limits;
  lua_Integer served;
} Server;

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
  if (c->url.len + len > c->srv->limits.max_uri) return limit_hit(c, 414);
  return buf_add(&c->url, at, len) ? limit_hit(c, 500) : 0;
}

static int count_header(Conn *c, size_t len) {
  c->header_bytes += len;
  return c->header_bytes > c->srv->limits.max_header;
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
      p->content_length > (uint64_t)c->srv->limits.max_body)
    return limit_hit(c, 413);
  if (p->http_minor >= 1 && expects_continue(c) &&
      buf_add(&c->out, "HTTP/1.1 100 Continue\r\n\r\n", 25))
    return limit_hit(c, 500);
  return 0;
}

static int on_body(http_parser *p, const char *at, size_t len) {
  Conn *c = conn_of(p);
  if (c->body.len + len > c->srv->limits.max_body) return limit_hit(c, 413);
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

/* ---- connections -------------------------------------------------------- */

static void conn_free(Conn *c) {
  if (c->fd >= 0) {
    nl_loop_forget(c->fd); /* out of this thread's event loop */
    close(c->fd);
  }
  buf_free(&c->in);
  buf_free(&c->url);
  buf_free(&c->hdrs);
  buf_free(&c->body);
  buf_free(&c->out);
  free(c);
}

static void conn_wait_request(Conn *c) {
  c->in_request = 0;
  c->deadline = nl_deadline(c->srv->limits.keepalive_timeout);
}

static Conn *conn_new(Server *s, int fd, const struct sockaddr_storage *ss) {
  Conn *c = calloc(1, sizeof *c);
  if (c == NULL) return NULL;
  c->fd = fd;
  c->srv = s;
  http_parser_init(&c->parser, HTTP_REQUEST);
  c->parser.data = c;
  if (ss->ss_family == AF_INET6) {
    const struct sockaddr_in6 *a = (const void *)ss;
    inet_ntop(AF_INET6, &a->sin6_addr, c->peer, sizeof c->peer);
  } else {
    const struct sockaddr_in *a = (const void *)ss;
    inet_ntop(AF_INET, &a->sin_addr, c->peer, sizeof c->peer);
  }
  conn_wait_request(c);
  return c;
}

static void server_drop(Server *s, int i) {
  conn_free(s->conns[i]);
  s->conns[i] = s->conns[--s->nconn];
}

static int server_add(Server *s, Conn *c) {
  if (s->nconn == s->capconn) {
    int cap = s->capconn ? s->capconn * 2 : 16;
    Conn **p = realloc(s->conns, sizeof *p * (size_t)cap);
    if (p == NULL) return -1;
    s->conns = p;
    s->capconn = cap;
  }
  s->conns[s->nconn++] = c;
  return 0;
}

static int open_spare(void) {
  return open("/dev/null", O_RDONLY | O_CLOEXEC);
}

/* Out of descriptors: the pending client stays queued, the listening
 * socket stays readable, and the loop spun at full CPU while the client
 * waited forever. Give up the spare descriptor, accept the client and close
 * it at once (it sees the connection closed), take the spare back. Returns
 * 1 when a client was shed. */
static int shed_one(Server *s) {
  int fd;
  if (s->spare_fd < 0) return 0;
  close(s->spare_fd);
  fd = accept4(s->fd, NULL, NULL, SOCK_CLOEXEC);
  if (fd >= 0) close(fd);
  s->spare_fd = open_spare();
  return fd >= 0;
}

/* Accepts every pending connection (the listening socket is non-blocking). */
static void accept_all(Server *s) {
  while (s->nconn < s->limits.max_connections) {
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    int fd = accept4(s->fd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    Conn *c;
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if ((errno == EMFILE || errno == ENFILE) && shed_one(s)) continue;
      return; /* EAGAIN, or out of memory: try again later */
    }
    c = conn_new(s, fd, &ss);
    if (c == NULL || server_add(s, c) != 0) {
      if (c != NULL) conn_free(c);
      else close(fd); /* never waited on */
      return;
    }
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

/* ---- responses ---------------------------------------------------------- */

static const char *reason_for(int status) {
  const char *r = http_status_str((enum http_status)status);
  return (r == NULL || strcmp(r, "<unknown>") == 0) ? "Unknown" : r;
}

static void add_str(Buf *b, const char *s) { buf_add(b, s, strlen(s)); }

static void add_date(Buf *b) {
  char date[64];
  time_t now = time(NULL);
  struct tm tm;
  gmtime_r(&now, &tm);
  strftime(date, sizeof date, "Date: %a, %d %b %Y %H:%M:%S GMT\r\n", &tm);
  add_str(b, date);
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
  add_date(b);
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

/* Calls dispatch(req) under pcall. On success it returned status, header
 * lines (a string), body; queues the response. A raised error is logged and
 * answered with 500, except "interrupted", which stops the server: returns
 * -1 then, with the error on the stack. */
static int dispatch(lua_State *L, int fn, Conn *c) {
  int head = c->parser.method == HTTP_HEAD;
  int top = lua_gettop(L);
  c->closing = !http_should_keep_alive(&c->parser);
  lua_pushvalue(L, fn);
  push_request(L, c);
  if (lua_pcall(L, 1, 3, 0) != LUA_OK) {
    const char *msg = lua_tostring(L, -1);
    if (msg != NULL && strcmp(msg, "interrupted") == 0) return -1;
    fprintf(stderr, "netlua http.server: %s\n", msg ? msg : "(error object)");
    lua_settop(L, top);
    queue_error(c, 500, error_text(500));
    return 0;
  }
  {
    int status = (int)lua_tointeger(L, top + 1);
    const char *lines = lua_tostring(L, top + 2);
    size_t len = 0;
    const char *body = lua_tolstring(L, top + 3, &len);
    if (status < 100 || status > 999) status = 500;
    queue_response(c, status, lines, body ? body : "", body ? len : 0, head);
  }
  lua_settop(L, top);
  return 0;
}

/* ---- reading and parsing ------------------------------------------------ */

/* Feeds buffered input to the parser and dispatches each complete request,
 * while nothing waits to be written. Returns -1 when dispatch was
 * interrupted (error on the stack). */
static int conn_process(lua_State *L, int fn, Conn *c) {
  while (!c->closing && !has_output(c) && c->in_pos < c->in.len) {
    size_t n = http_parser_execute(&c->parser, &parser_settings,
                                   c->in.data + c->in_pos, c->in.len - c->in_pos);
    enum http_errno err = HTTP_PARSER_ERRNO(&c->parser);
    c->in_pos += n;
    if (n > 0 && !c->in_request) {
      c->in_request = 1;
      c->deadline = nl_deadline(c->srv->limits.request_timeout);
    }
    if (c->complete) {
      c->complete = 0;
      http_parser_pause(&c->parser, 0);
      c->srv->served++;
      if (dispatch(L, fn, c) < 0) return -1;
      conn_wait_request(c);
      continue;
    }
    if (err != HPE_OK && err != HPE_PAUSED) {
      int status = c->error_status ? c->error_status
                 : err == HPE_HEADER_OVERFLOW ? 431 : 400;
      queue_error(c, status, error_text(status));
      break;
    }
    if (n == 0) break;
  }
  if (c->in_pos == c->in.len) c->in.len = c->in_pos = 0;
  return 0;
}

/* Reads what is available. Returns -1 when the peer closed or failed. */
static int conn_read(Conn *c) {
  char chunk[READ_CHUNK];
  for (;;) {
    ssize_t r = recv(c->fd, chunk, sizeof chunk, 0);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 0;
    if (r <= 0) return -1;
    if (buf_add(&c->in, chunk, (size_t)r) != 0) return -1;
    if ((size_t)r < sizeof chunk || c->in.len > c->srv->limits.max_header + c->srv->limits.max_body + READ_CHUNK)
      return 0;
  }
}

/* ---- the loop ----------------------------------------------------------- */

static double earliest(Server *s, double deadline) {
  for (int i = 0; i < s->nconn; i++) {
    double d = s->conns[i]->deadline;
    if (d >= 0 && (deadline < 0 || d < deadline)) deadline = d;
  }
  return deadline;
}

/* Closes or answers connections whose deadline passed: 408 for a request
 * that did not arrive in time, silence for an idle keep-alive connection or
 * a peer that does not read. */
static void expire(Server *s) {
  double now = nl_monotonic();
  for (int i = s->nconn - 1; i >= 0; i--) {
    Conn *c = s->conns[i];
    if (c->deadline < 0 || now < c->deadline) continue;
    if (c->in_request && !has_output(c) && !c->closing) {
      queue_error(c, 408, error_text(408));
      c->deadline = nl_deadline(s->limits.send_timeout);
      conn_flush(c);
      if (has_output(c)) continue;
    }
    server_drop(s, i);
  }
}

/* Handles readiness of connection i. Returns -1 when interrupted. */
static int conn_ready(lua_State *L, int fn, Server *s, int i, int ready) {
  Conn *c = s->conns[i];
  if (ready & NL_WRITE) {
    if (conn_flush(c) < 0) {
      server_drop(s, i);
      return 0;
    }
  }
  if ((ready & NL_READ) && !has_output(c) && !c->closing) {
    int gone = conn_read(c) < 0;
    if (conn_process(L, fn, c) < 0) return -1;
    if (gone && !has_output(c)) {
      server_drop(s, i);
      return 0;
    }
    if (gone) c->closing = 1;
  }
  if (conn_flush(c) < 0 || (c->closing && !has_output(c))) {
    server_drop(s, i);
    return 0;
  }
  if (has_output(c)) c->deadline = nl_deadline(s->limits.send_timeout);
  else if (c->in_pos < c->in.len && conn_process(L, fn, c) < 0) return -1;
  return 0;
}

/* Gives pending responses a last chance (up to 1 s) before closing. */
static void flush_all(Server *s) {
  double deadline = nl_deadline(1.0);
  for (int i = 0; i < s->nconn; i++) {
    Conn *c = s->conns[i];
    while (has_output(c) && conn_flush(c) == 0 && has_output(c))
      if (nl_wait(c->fd, NL_WRITE, deadline) <= 0) break;
  }
}

static Server *check_server(lua_State *L, int idx) {
  return luaL_checkudata(L, idx, NL_SERVER_MT);
}

static Server *check_open(lua_State *L, int idx) {
  Server *s = check_server(L, idx);
  if (s->fd < 0) luaL_error(L, "attempt to use a closed server");
  return s;
}

static void server_release(Server *s) {
  while (s->nconn > 0) server_drop(s, s->nconn - 1);
  free(s->conns);
  s->conns = NULL;
  s->capconn = 0;
  if (s->fd >= 0) {
    nl_loop_forget(s->fd);
    close(s->fd);
  }
  s->fd = -1;
  if (s->spare_fd >= 0) close(s->spare_fd);
  s->spare_fd = -1;
}

/* srv:run(dispatch[, max_requests[, timeout]]) -> requests served by this
 * call. Serves until srv:close() (from a handler), max_requests requests,
 * or timeout seconds; raises "interrupted" on Ctrl-C. */
static int srv_run(lua_State *L) {
  Server *s = check_open(L, 1);
  lua_Integer max = luaL_optinteger(L, 3, 0);
  double timeout = luaL_optnumber(L, 4, -1);
  double until = nl_deadline(timeout);
  lua_Integer start = s->served;
  nl_PollFd *fds = NULL;
  int cap = 0;
  luaL_checktype(L, 2, LUA_TFUNCTION);
  lua_settop(L, 2);
  if (s->running) luaL_error(L, "server is already running");
  s->stopping = 0;
  s->running = 1;
  while (!s->stopping && s->fd >= 0 && (max <= 0 || s->served - start < max)) {
    int n = s->nconn + 1, r, listening = s->nconn < s->limits.max_connections;
    if (n > cap) {
      nl_PollFd *p = realloc(fds, sizeof *p * (size_t)(n + 16));
      if (p == NULL) break;
      fds = p;
      cap = n + 16;
    }
    fds[0].fd = listening ? s->fd : -1;
    fds[0].events = NL_READ;
    for (int i = 0; i < s->nconn; i++) {
      Conn *c = s->conns[i];
      fds[i + 1].fd = c->fd;
      fds[i + 1].events = has_output(c) ? NL_WRITE : NL_READ;
    }
    r = nl_waitmany(fds, n, earliest(s, until));
    if (r == -EINTR) {
      free(fds);
      s->running = 0;
      return nl_raise_interrupted(L);
    }
    for (int i = n - 1; i >= 1 && !s->close_asked; i--) {
      if (fds[i].ready == 0) continue;
      if (conn_ready(L, 2, s, i - 1, fds[i].ready) < 0) {
        free(fds);
        s->running = 0;
        return lua_error(L);
      }
    }
    if (!s->close_asked && fds[0].ready) accept_all(s);
    if (!s->close_asked) expire(s);
    if (until >= 0 && nl_monotonic() >= until) break;
  }
  free(fds);
  s->running = 0;
  if (s->fd >= 0) flush_all(s);
  if (s->close_asked) server_release(s);
  lua_pushinteger(L, s->served - start);
  return 1;
}

/* srv:stop(): run() returns after the current request. */
static int srv_stop(lua_State *L) {
  check_server(L, 1)->stopping = 1;
  return 0;
}

/* srv:close(): from a handler, run() finishes the current replies, then
 * closes; elsewhere it closes now, giving pending replies a last chance. */
static int srv_close(lua_State *L) {
  Server *s = check_server(L, 1);
  if (s->running) {
    s->stopping = s->close_asked = 1;
    return 0;
  }
  if (s->fd >= 0) flush_all(s);
  server_release(s);
  return 0;
}

/* __gc: never waits. */
static int srv_gc(lua_State *L) {
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
  if (getsockname(s->fd, (struct sockaddr *)&ss, &len) != 0) return nl_pusherrno(L, errno);
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
  if (s->fd < 0) lua_pushliteral(L, "http.server (closed)");
  else lua_pushfstring(L, "http.server (%p)", (void *)s);
  return 1;
}

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
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, 128) == 0) break;
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
  Server *s;
  luaL_argcheck(L, port >= 0 && port <= 65535, 2, "port out of range");
  luaL_checktype(L, 3, LUA_TTABLE);
  s = lua_newuserdatauv(L, sizeof *s, 0);
  memset(s, 0, sizeof *s);
  s->fd = s->spare_fd = -1;
  luaL_setmetatable(L, NL_SERVER_MT);
  read_limits(L, 3, &s->limits);
  if ((s->spare_fd = open_spare()) < 0) return nl_pusherrno(L, errno);
  snprintf(portstr, sizeof portstr, "%d", (int)port);
  fd = open_listener(host, portstr, &gai);
  if (fd == -1 && gai != 0) {
    lua_pushfstring(L, "could not resolve host: %s", host);
    return nl_pushfail(L, lua_tostring(L, -1), "EAI_NONAME");
  }
  if (fd < 0) return nl_pusherrno(L, -fd);
  s->fd = fd;
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
  {"run", srv_run},
  {"stop", srv_stop},
  {"close", srv_close},
  {"getsockname", srv_getsockname},
  {"connections", srv_connections},
  {NULL, NULL}
};

static const luaL_Reg srv_meta[] = {
  {"__gc", srv_gc},
  {"__close", srv_close},
  {"__tostring", srv_tostring},
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
  luaL_newlib(L, core_funcs);
  return 1;
}
