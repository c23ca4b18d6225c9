/*
 * httpconn.c: one client connection of http.server (layer: bindings,
 * "http.server.conn"): reading requests through runtime/httpparse.c,
 * queueing and sending replies (a file streams with sendfile), deadlines,
 * and making room when every connection slot is taken. conn:read() returns
 * the next request, conn:reply() sends a handler's common reply as it
 * returned it, conn:write() and conn:write_file() a normalized one, and
 * conn:stream_begin/stream_write/stream_end one whose body comes in pieces
 * (chunked, or close-delimited for HTTP/1.0); they
 * wait through nl_waitk, so in a task they suspend only that task and
 * restart from the progress kept in the Conn (one task reads a connection;
 * a stream's pieces may come from several tasks, each piece queued whole).
 * HTTPS lives under conn_recv, conn_flush and conn_send_file (runtime/tls.c):
 * the handshake happens in the first read, bounded by request_timeout, and
 * each wait is for what TLS needs next (c->want).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <unistd.h>

#include <netinet/in.h>
#include <netinet/tcp.h>

#include "httpserver.h"
#include "sock.h"
#include "trace.h"

#define READ_CHUNK 16384
#define FILE_CHUNK (1 << 20) /* bytes one sendfile call may move */
#define LINGER_BYTES (1 << 20) /* the most a lingering close reads and drops */
#define READ_NARGS 3 /* conn:read(request_mt, server): what a restart keeps */

/* ---- connections ---------------------------------------------------------- */

Conn *httpconn_check(lua_State *L, int idx) {
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
  if (c->ssl != NULL) {
    nl_tls_shutdown(c->ssl);
    SSL_free(c->ssl);
    c->ssl = NULL;
  }
  if (c->fd >= 0) {
    nl_closefd(c->fd); /* wakes a task waiting on it; out of the loop */
    c->fd = -1;
    conn_unlink(c);
  }
  conn_close_file(c);
  nl_http_free(&c->req);
  nl_buf_free(&c->in);
  nl_buf_free(&c->out);
  httphead_free(&c->lines);
  nl_buf_free(&c->head_text);
  c->in_pos = c->out_pos = 0;
  c->lingering = 0;
}

static void format_peer(Conn *c, const struct sockaddr_storage *ss) {
  int port;
  nl_addr_format((const struct sockaddr *)ss, c->peer, sizeof c->peer, &port);
}

/* Pushes a closed Conn of the server at index 1. [-0, +1, m] */
void httpconn_new(lua_State *L, Server *s) {
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

/* The closed Conn c takes accepted descriptor fd, with TLS over it when
 * `tls` is a context; its handshake must be done within request_timeout.
 * Replies go out at once (TCP_NODELAY): with Nagle's algorithm a reply to a
 * pipelined request waited for the peer's delayed ACK of the one before
 * (40 ms). Returns 0, or -1 (fd closed) when TLS cannot be set up. */
int httpconn_open(Conn *c, int fd, const struct sockaddr_storage *ss, SSL_CTX *tls) {
  int one = 1;
  nl_TlsErr err;
  c->handshaken = tls == NULL;
  c->want = 0;
  if (tls != NULL && (c->ssl = nl_tls_new(tls, fd, err)) == NULL) {
    close(fd);
    return -1;
  }
  if (c->ssl != NULL) SSL_set_accept_state(c->ssl);
  if (ss->ss_family == AF_INET || ss->ss_family == AF_INET6)
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  nl_http_reset(&c->req);
  format_peer(c, ss);
  c->fd = fd;
  conn_link(c);
  conn_wait_request(c);
  if (!c->handshaken) c->deadline = nl_deadline(c->limits->request_timeout);
  return 0;
}

/* ---- TLS under the reads and writes ---------------------------------------- */

/* The outcome of a TLS step for the callers below: 1 done, 0 wait (for
 * c->want), -1 the peer closed or failed. */
static int tls_outcome(Conn *c, int step) {
  if (step > 0) c->want = step;
  return step == 0 ? 1 : step > 0 ? 0 : -1;
}

/* Reads what one TLS read gives, shaking hands first: as conn_recv. */
static int tls_recv(Conn *c, char *buf, size_t len, size_t *n) {
  nl_TlsErr err;
  int r;
  *n = 0;
  if (!c->handshaken) {
    r = tls_outcome(c, nl_tls_handshake(c->ssl, err));
    if (r <= 0) return r;
    c->handshaken = 1;
    conn_wait_request(c); /* the request's own time starts now */
  }
  return tls_outcome(c, nl_tls_read(c->ssl, buf, len, n, err));
}

/* Writes through TLS: 1 all or part written (*n), 0 wait, -1 gone. */
static int tls_send(Conn *c, const char *buf, size_t len, size_t *n) {
  nl_TlsErr err;
  if (!c->handshaken) return -1; /* nothing is sent before the handshake */
  return tls_outcome(c, nl_tls_write(c->ssl, buf, len, n, err));
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
  c->want = 0;
  if (c->ssl != NULL) {
    size_t n;
    int r = tls_recv(c, c->in.data + c->in.len, READ_CHUNK, &n);
    if (r <= 0) return r;
    c->in.len += n;
    c->in.data[c->in.len] = '\0';
    return 1;
  }
  for (;;) {
    ssize_t r = recv(c->fd, c->in.data + c->in.len, READ_CHUNK, 0);
    if (nl_trace_on) nl_trace_recv(c->fd, c->in.data + c->in.len, r, errno);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 0;
    if (r <= 0) return -1;
    c->in.len += (size_t)r;
    c->in.data[c->in.len] = '\0';
    return 1;
  }
}

static int has_output(const Conn *c) { return c->out_pos < c->out.len; }

/* Writes what it can of the pending output. Returns -1 when the peer is
 * gone. Any progress restarts the send timeout: it bounds a stall, not the
 * whole reply. */
static int conn_flush(Conn *c) {
  size_t start = c->out_pos;
  c->want = 0;
  while (c->ssl != NULL && c->out_pos < c->out.len) {
    size_t n;
    int r = tls_send(c, c->out.data + c->out_pos, c->out.len - c->out_pos, &n);
    if (r < 0) return -1;
    c->out_pos += n;
    if (r == 0) break;
  }
  while (c->ssl == NULL && c->out_pos < c->out.len) {
    ssize_t w;
    if (nl_trace_on) nl_trace_sending();
    w = send(c->fd, c->out.data + c->out_pos, c->out.len - c->out_pos, MSG_NOSIGNAL);
    if (nl_trace_on) nl_trace_send(c->fd, c->out.data + c->out_pos, w, errno);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    if (w < 0) return -1;
    c->out_pos += (size_t)w;
  }
  if (c->out_pos > start) c->deadline = nl_deadline(c->limits->send_timeout);
  if (c->out_pos == c->out.len) c->out.len = c->out_pos = 0;
  return 0;
}

/* Over TLS a file goes through the output buffer, a piece at a time
 * (sendfile cannot encrypt): 0, or -1 as conn_send_file. */
static int tls_send_file(Conn *c) {
  while (c->file_left > 0 && !has_output(c)) {
    size_t n = c->file_left < READ_CHUNK ? (size_t)c->file_left : READ_CHUNK;
    ssize_t r;
    if (nl_buf_reserve(&c->out, n) != 0) return -1;
    r = pread(c->file_fd, c->out.data + c->out.len, n, c->file_pos);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return -1;
    c->out.len += (size_t)r;
    c->file_pos += r;
    c->file_left -= (uint64_t)r;
    if (conn_flush(c) < 0) return -1;
  }
  if (c->file_left == 0 && !has_output(c)) conn_close_file(c);
  return 0;
}

/* Sends what it can of the file being served after the head: 0 (all sent or
 * the socket is full), -1 when the peer is gone or the file came up short
 * (it shrank: the Content-Length sent can no longer be kept). */
static int conn_send_file(Conn *c) {
  if (c->ssl != NULL) return tls_send_file(c);
  while (c->file_left > 0) {
    size_t n = c->file_left < FILE_CHUNK ? (size_t)c->file_left : FILE_CHUNK;
    ssize_t w;
    if (nl_trace_on) nl_trace_sending();
    w = sendfile(c->fd, c->file_fd, &c->file_pos, n);
    if (nl_trace_on) nl_trace_send(c->fd, NULL, w, errno); /* the bytes are not at hand */
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 0;
    if (w <= 0) return -1;
    c->file_left -= (uint64_t)w;
    c->deadline = nl_deadline(c->limits->send_timeout);
  }
  conn_close_file(c);
  return 0;
}

static int has_reply_pending(const Conn *c) { return has_output(c) || c->file_fd >= 0; }

/* All connection slots are taken: closes a lingering connection (its
 * reply is out), else the connection that has waited
 * longest for a request, idle ones (between requests) before those with a
 * request half-arrived, so a client that trickles its request in (slowloris)
 * cannot keep others out. Its task wakes and finds it closed. Returns 1 when
 * one was closed. */
int httpconn_shed_one(Server *s) {
  Conn *victim = NULL;
  for (Conn *c = s->conns; c != NULL; c = c->next) {
    if (c->lingering) { /* answered already: the first to go */
      victim = c;
      break;
    }
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
    if (nl_waitk(L, nargs, c->fd, c->want ? c->want : NL_WRITE, c->deadline) == 0) return -1;
  }
}

/* ---- lingering close ----------------------------------------------------- */

static int serving_stopped(const Conn *c) {
  return c->srv->g == NULL || atomic_load(&c->srv->g->stopping);
}

/* Waits (restartable: nargs) until c->fd is ready for `events` or
 * serving stops; 0 when c->deadline passed first. */
static int wait_unless_stopped(lua_State *L, int nargs, Conn *c, int events) {
  nl_PollFd fds[2] = {{c->fd, events, 0}, {c->srv->g->stop_fd, NL_READ, 0}};
  return nl_waitmanyk(L, nargs, fds, 2, c->deadline);
}

/* Starts a lingering close once the last reply is out: TLS says
 * close_notify and is done with, and the write side shuts down, so the
 * client reads the reply and then EOF while it may still be sending. */
static void linger_begin(Conn *c) {
  c->lingering = 1;
  c->linger_left = LINGER_BYTES;
  c->deadline = nl_deadline(c->limits->linger);
  if (c->ssl != NULL) {
    nl_tls_shutdown(c->ssl);
    SSL_free(c->ssl);
    c->ssl = NULL;
  }
  shutdown(c->fd, SHUT_WR);
}

/* Reads and drops what arrives: 1 the peer may send more, 0 it closed or
 * failed, or the byte bound is reached. */
static int linger_discard(Conn *c) {
  char scratch[READ_CHUNK];
  for (;;) {
    ssize_t r = recv(c->fd, scratch, sizeof scratch, 0);
    if (nl_trace_on) nl_trace_recv(c->fd, scratch, r, errno);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 1;
    if (r <= 0 || (size_t)r >= c->linger_left) return 0;
    c->linger_left -= (size_t)r;
  }
}

/* A lingering close (nginx's lingering_close, Apache's lingering close):
 * closing at once while the request's bytes are still arriving makes the
 * kernel answer them with a reset, and the client may lose the reply it
 * was sent. So the request's rest is read and dropped until the client
 * closes, for at most `linger` seconds in all and LINGER_BYTES; the wait
 * is the connection's task's own (nl_waitmanyk, restartable: the progress
 * is in the Conn) and ends early when serving stops. The caller closes. */
static void conn_linger(lua_State *L, int nargs, Conn *c) {
  if (!c->lingering) {
    if (!(c->limits->linger > 0)) return;
    linger_begin(c);
  }
  while (linger_discard(c) && !serving_stopped(c))
    if (wait_unless_stopped(L, nargs, c, NL_READ) == 0) return;
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

/* v in decimal at out (at least 20 bytes; no NUL); returns its length.
 * snprintf cost more than the rest of a reply's head. */
static size_t format_decimal(char *out, uint64_t v) {
  char rev[20];
  size_t n = 0, i;
  do {
    rev[n++] = (char)('0' + v % 10);
    v /= 10;
  } while (v != 0);
  for (i = 0; i < n; i++) out[i] = rev[n - 1 - i];
  return n;
}

static int has_body(int status) { return status != 204 && status != 304; }

/* Queues the status line, the Date and the handler's `headers` (hlen bytes
 * of "Name: value\r\n" lines). A status that is not a final one (200-599)
 * becomes 500. Returns the status sent. */
static int queue_status(Conn *c, int status, const char *headers, size_t hlen) {
  char digits[24];
  nl_Buf *b = &c->out;
  if (status < 200 || status > 599) status = 500;
  add_str(b, "HTTP/1.1 ");
  nl_buf_add(b, digits, format_decimal(digits, (uint64_t)status));
  add_str(b, " ");
  add_str(b, nl_http_reason(status));
  add_str(b, "\r\n");
  add_date(c);
  nl_buf_add(&c->out, headers, hlen);
  return status;
}

static void queue_connection(Conn *c) {
  add_str(&c->out, c->closing ? "Connection: close\r\n\r\n" : "Connection: keep-alive\r\n\r\n");
}

/* Queues a response head for a body of `length` bytes; Date,
 * Content-Length and Connection are ours. Returns the status sent. */
static int queue_head(Conn *c, int status, const char *headers, size_t hlen,
                      uint64_t length) {
  char digits[24];
  status = queue_status(c, status, headers, hlen);
  if (nl_trace_on) nl_trace_http_reply(c->fd, status, has_body(status) ? length : 0);
  if (has_body(status)) {
    add_str(&c->out, "Content-Length: ");
    nl_buf_add(&c->out, digits, format_decimal(digits, length));
    add_str(&c->out, "\r\n");
  }
  queue_connection(c);
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
  case 507: return "not enough disk space for the request body\n";
  default: return "internal server error\n";
  }
}

/* ---- dispatching into Lua ----------------------------------------------- */

/* The request table's field names, interned once per Lua state and kept
 * in a registry table: setting a field by a key already on the stack skips
 * lua_setfield's lookup of the C string (luaS_new and a strcmp for every
 * field of every request: about 600 instructions a request, by callgrind). */
enum {
  KEY_METHOD = 1, KEY_TARGET, KEY_PATH, KEY_RAW_PATH, KEY_RAWQUERY, KEY_HEADERS, KEY_TRAILERS,
  KEY_BODY, KEY_BODY_FILE, KEY_UPLOADS, KEY_SPECIAL, KEY_VERSION, KEY_PEER, KEY_CONN,
  KEY_SERVER, KEY_COUNT = KEY_SERVER
};
static const char *const request_keys[KEY_COUNT] = {
  "method", "target", "path", "raw_path", "rawquery", "headers", "trailers",
  "body", "body_file", "uploads", "_special", "version", "peer", "_conn",
  "server",
};
static const char request_keys_slot = 0; /* its address: the registry key */

/* Pushes the table of field names, making it on first use. [-0, +1, m] */
static void push_request_keys(lua_State *L) {
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &request_keys_slot) == LUA_TTABLE) return;
  lua_pop(L, 1);
  lua_createtable(L, KEY_COUNT, 0);
  for (int k = 0; k < KEY_COUNT; k++) {
    lua_pushstring(L, request_keys[k]);
    lua_rawseti(L, -2, k + 1);
  }
  lua_pushvalue(L, -1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &request_keys_slot);
}

/* Pushes field name `key` of the table at absolute index keys; its value
 * goes on top, then lua_rawset(L, t) sets both (no lua_insert: a rotation
 * of the stack per field costs more than the lookup it saves). [-0, +1, -] */
static void push_key(lua_State *L, int keys, int key) {
  lua_rawgeti(L, keys, key);
}

/* Slots a field table starts with: most requests carry a few fields, and
 * a table grown from empty is rebuilt at 1, 2 and 4 (counting them first
 * would walk the block twice). */
#define FIELD_SLOTS 4

/* Pushes a table of fields (names are lower case; repeats joined with
 * ", "). [-0, +1, m] */
static void push_fields(lua_State *L, const nl_Buf *fields) {
  size_t off = 0, nlen, vlen;
  const char *name, *value;
  lua_createtable(L, 0, FIELD_SLOTS);
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

/* The request's body: the string, or the path of the file it went to
 * (an upload's), which the Lua half reads and removes: it is then the
 * first of req.uploads, and req._special says the request needs more than
 * a reply. [-0, +0, m] */
static void set_body(lua_State *L, nl_HttpRequest *r, int t, int keys) {
  char *path = nl_http_take_spool(r);
  if (path == NULL) {
    push_key(L, keys, KEY_BODY);
    lua_pushlstring(L, r->body.data ? r->body.data : "", r->body.len);
    lua_rawset(L, t);
    return;
  }
  push_key(L, keys, KEY_BODY_FILE);
  lua_pushstring(L, path);
  free(path);
  push_key(L, keys, KEY_UPLOADS);
  lua_createtable(L, 1, 0);
  lua_pushvalue(L, -3);
  lua_rawseti(L, -2, 1);
  lua_rawset(L, t);
  lua_rawset(L, t);
  push_key(L, keys, KEY_SPECIAL);
  lua_pushboolean(L, 1);
  lua_rawset(L, t);
}

static int hex_value(char ch) {
  if (ch >= '0' && ch <= '9') return ch - '0';
  if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
  if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
  return -1;
}

/* Pushes the path with each %XX (two hex digits) decoded; any other '%'
 * stays as it is. [-0, +1, m] */
static void push_decoded(lua_State *L, const char *s, size_t len) {
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  for (size_t i = 0; i < len; i++) {
    int hi, lo;
    if (s[i] == '%' && i + 2 < len && (hi = hex_value(s[i + 1])) >= 0 &&
        (lo = hex_value(s[i + 2])) >= 0) {
      luaL_addchar(&b, (char)(hi * 16 + lo));
      i += 2;
    } else {
      luaL_addchar(&b, s[i]);
    }
  }
  luaL_pushresult(&b);
}

/* Sets raw_path, the path as it came, and path, decoded. [-0, +0, m] */
static void set_path(lua_State *L, int t, int keys, const char *path, size_t len) {
  lua_pushlstring(L, path, len);
  push_key(L, keys, KEY_RAW_PATH);
  lua_pushvalue(L, -2);
  lua_rawset(L, t);
  push_key(L, keys, KEY_PATH);
  if (memchr(path, '%', len) != NULL) push_decoded(L, path, len);
  else lua_pushvalue(L, -2);
  lua_rawset(L, t);
  lua_pop(L, 1);
}

/* Pushes the request table: method, target, path (decoded), raw_path,
 * rawquery, headers, trailers (a chunked body's trailer fields, when it had
 * any), body (or body_file), version, peer; and for the Lua half, its
 * metatable (argument 2 of read), _conn (the connection) and server
 * (argument 3). [-0, +1, m] */
static void push_request(lua_State *L, Conn *c) {
  nl_HttpRequest *r = &c->req;
  const char *target = r->target.data ? r->target.data : "", *path, *query;
  size_t pathlen, querylen;
  int keys, t;
  nl_http_split_target(target, r->target.len, &path, &pathlen, &query, &querylen);
  lua_createtable(L, 0, 16); /* its fields and the ones the Lua half adds (params, lazy ones) */
  t = lua_gettop(L);
  if (lua_istable(L, 2)) {
    lua_pushvalue(L, 2);
    lua_setmetatable(L, t);
  }
  push_request_keys(L);
  keys = lua_gettop(L);
  push_key(L, keys, KEY_METHOD);
  lua_pushstring(L, r->method);
  lua_rawset(L, t);
  push_key(L, keys, KEY_TARGET);
  lua_pushlstring(L, target, r->target.len);
  lua_rawset(L, t);
  set_path(L, t, keys, path, pathlen);
  push_key(L, keys, KEY_RAWQUERY);
  lua_pushlstring(L, query, querylen);
  lua_rawset(L, t);
  push_key(L, keys, KEY_HEADERS);
  push_fields(L, &r->headers);
  lua_rawset(L, t);
  if (r->trailers.len > 0) {
    push_key(L, keys, KEY_TRAILERS);
    push_fields(L, &r->trailers);
    lua_rawset(L, t);
  }
  set_body(L, r, t, keys);
  push_key(L, keys, KEY_VERSION);
  { /* "1.1": the parser takes one digit each (lua_pushfstring cost ~2,000 instructions) */
    char version[3] = {(char)('0' + r->major), '.', (char)('0' + r->minor)};
    lua_pushlstring(L, version, sizeof version);
  }
  lua_rawset(L, t);
  push_key(L, keys, KEY_PEER);
  lua_pushstring(L, c->peer);
  lua_rawset(L, t);
  push_key(L, keys, KEY_CONN);
  lua_pushvalue(L, 1);
  lua_rawset(L, t);
  if (!lua_isnil(L, 3)) {
    push_key(L, keys, KEY_SERVER);
    lua_pushvalue(L, 3);
    lua_rawset(L, t);
  }
  lua_pop(L, 1); /* the keys */
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

/* Waits for input (and for an interim "100 Continue" to go out). An idle
 * connection also wakes when serving stops. 0 when the deadline passed. */
static int conn_wait_input(lua_State *L, Conn *c) {
  if (has_output(c)) return nl_waitk(L, READ_NARGS, c->fd, c->want ? c->want : NL_WRITE, c->deadline);
  if (c->in_request) return nl_waitk(L, READ_NARGS, c->fd, c->want ? c->want : NL_READ, c->deadline);
  return wait_unless_stopped(L, READ_NARGS, c, c->want ? c->want : NL_READ);
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
      if (!c->handshaken) return READ_CLOSED; /* a handshake that never ended */
      if (!c->in_request) return READ_IDLE;
      return conn_fail(c, 408, "timeout");
    }
  }
}

/* conn:read([request_mt, server]) -> request | nil, "stopped" (the connection stays open for the
 * next serve) | nil, "closed" | "timeout" | "bad request" (closed, after an
 * error reply when one is due). Restartable: its progress is in the Conn. */
static int conn_read(lua_State *L) {
  Conn *c = httpconn_check(L, 1);
  int r;
  lua_settop(L, READ_NARGS);
  if (c->fd < 0) return nl_pushfail(L, "closed", NULL);
  c->awaiting = c->failure == NULL;
  r = c->failure != NULL ? READ_FAILED : conn_await_request(L, c);
  c->awaiting = 0;
  switch (r) {
  case READ_OK:
    if (nl_trace_on) nl_trace_http_request(c->fd, c->req.method, c->req.target.data);
    c->closing = !c->req.keep_alive;
    c->head = c->req.is_head;
    c->http10 = c->req.major == 1 && c->req.minor == 0;
    c->streaming = STREAM_NONE;
    push_request(L, c);
    nl_http_reset(&c->req);
    return 1;
  case READ_STOPPED:
    return nl_pushfail(L, "stopped", NULL);
  case READ_FAILED: {
    const char *why = c->failure;
    if (conn_drain(L, READ_NARGS, c) == 0) conn_linger(L, READ_NARGS, c);
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
  int sent;
  lua_settop(L, nargs);
  sent = c->fd >= 0 && conn_drain(L, nargs, c) == 0;
  if (!sent || c->closing) {
    /* bytes the client sent after the request are unread: they linger */
    if (sent && (c->lingering || c->in_pos < c->in.len)) conn_linger(L, nargs, c);
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
  if (c->srv->g != NULL) http_group_count(c->srv->g);
}

/* conn:write(status, header_lines, body) -> true (ready for the next
 * request) | false (the connection closed). Restartable: after a wait it
 * goes on sending what it queued. */
static int conn_write(lua_State *L) {
  Conn *c = httpconn_check(L, 1);
  if (!nl_restarting(L) && c->fd >= 0) {
    size_t hlen = 0, len = 0;
    const char *lines = luaL_optlstring(L, 3, "", &hlen);
    const char *body = luaL_optlstring(L, 4, "", &len);
    queue_response(c, arg_status(L, 2), lines, hlen, body, len, c->head);
    reply_queued(c);
  }
  return conn_finish_reply(L, 4, c);
}

/* Where a handler's reply (at 2, as it returned it) has its status, body
 * and headers, when it is a common one: an integer status from 200 to 599
 * and a string body, or a string alone (200); either with a headers table
 * or none. 0 for any other reply. */
static int common_reply(lua_State *L, int *status, int *body, int *headers) {
  int isint = 0, ht;
  lua_Integer code;
  if (lua_type(L, 2) == LUA_TSTRING) {
    if (!lua_isnoneornil(L, 4)) return 0;
    *status = 200, *body = 2, *headers = 3;
  } else {
    code = lua_tointegerx(L, 2, &isint);
    if (lua_type(L, 2) != LUA_TNUMBER || !isint || code < 200 || code > 599 ||
        lua_type(L, 3) != LUA_TSTRING)
      return 0;
    *status = (int)code, *body = 3, *headers = 4;
  }
  ht = lua_type(L, *headers);
  return ht == LUA_TNONE || ht == LUA_TNIL || ht == LUA_TTABLE;
}

/* conn:reply(status, body[, headers]) -> true | false, as write(), for a
 * handler's reply as it returned it when it is a common one (above). Its
 * head lines go into the output with no Lua string made for them
 * (httphead.c's rules; text/plain unless they name a Content-Type). Any
 * other reply -> nothing returned, nothing sent: the Lua half normalizes it
 * and calls write(). Restartable, as write(). */
static int conn_reply(lua_State *L) {
  Conn *c = httpconn_check(L, 1);
  if (!nl_restarting(L) && c->fd >= 0) {
    int status, body, headers, typed;
    size_t len;
    const char *text;
    if (!common_reply(L, &status, &body, &headers)) return 0;
    typed = httphead_collect(L, headers, &c->lines);
    c->head_text.len = 0;
    if (httphead_put(&c->lines, typed ? NULL : TEXT_TYPE, sizeof TEXT_TYPE - 1, &c->head_text) != 0)
      return luaL_error(L, "not enough memory for the reply's head");
    text = lua_tolstring(L, body, &len);
    queue_response(c, status, c->head_text.data, c->head_text.len, text, len, c->head);
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

/* The part of a file of `size` bytes a reply sends: arguments `idx` and
 * idx + 1 (offset, length: a Range), or all of it. A part past the end is
 * cut to it. */
static void reply_part(lua_State *L, int idx, uint64_t size, uint64_t *offset, uint64_t *length) {
  lua_Integer off = luaL_optinteger(L, idx, 0);
  lua_Integer len = luaL_optinteger(L, idx + 1, -1);
  *offset = off < 0 || (uint64_t)off > size ? size : (uint64_t)off;
  *length = len < 0 || (uint64_t)len > size - *offset ? size - *offset : (uint64_t)len;
}

/* Queues the head of a file reply and readies the file to follow it. */
static void queue_file(lua_State *L, Conn *c, int status, const char *lines, size_t hlen,
                       const char *path) {
  uint64_t size = 0, offset, length;
  int fd = open_reply_file(path, &size);
  if (fd < 0) {
    queue_response(c, 404, TEXT_TYPE, sizeof TEXT_TYPE - 1, error_text(404),
                   strlen(error_text(404)), c->head);
    return;
  }
  reply_part(L, 5, size, &offset, &length);
  status = queue_head(c, status, lines, hlen, length);
  if (c->head || !has_body(status) || length == 0) {
    close(fd);
    return;
  }
  c->file_fd = fd;
  c->file_pos = (off_t)offset;
  c->file_left = length;
}

/* conn:write_file(status, header_lines, path[, offset, length]) -> as
 * write(), with the body streamed from the file (sendfile) in bounded
 * pieces, never held in memory: all of it, or `length` bytes from `offset`
 * (a Range reply); HEAD sends the head only. A file that cannot be opened
 * is a 404. */
static int conn_write_file(lua_State *L) {
  Conn *c = httpconn_check(L, 1);
  if (!nl_restarting(L) && c->fd >= 0) {
    size_t hlen = 0;
    const char *lines = luaL_optlstring(L, 3, "", &hlen);
    queue_file(L, c, arg_status(L, 2), lines, hlen, luaL_checkstring(L, 4));
    reply_queued(c);
  }
  return conn_finish_reply(L, 6, c);
}

/* ---- streamed replies ------------------------------------------------------ */

/* Sends what a stream queued (restartable, see conn_drain). Pushes true, or
 * nil, "closed" when the peer is gone or too slow (the connection closes). */
static int stream_drain(lua_State *L, int nargs, Conn *c) {
  lua_settop(L, nargs);
  if (c->fd < 0 || conn_drain(L, nargs, c) < 0) {
    conn_close(c);
    return nl_pushfail(L, "closed", NULL);
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* conn:stream_begin(status, header_lines) -> true | nil, "closed": sends a
 * head whose body follows in pieces: chunked for HTTP/1.1, up to the
 * connection's close for HTTP/1.0. A HEAD, 204 or 304 gets no body: the
 * reply is over once its head is out. */
static int conn_stream_begin(lua_State *L) {
  Conn *c = httpconn_check(L, 1);
  if (!nl_restarting(L) && c->fd >= 0) {
    size_t hlen = 0;
    const char *lines = luaL_optlstring(L, 3, "", &hlen);
    int status = queue_status(c, arg_status(L, 2), lines, hlen);
    if (!has_body(status)) c->head = 1;
    if (c->http10) c->closing = 1;
    c->streaming = c->http10 ? STREAM_RAW : STREAM_CHUNKED;
    if (c->streaming == STREAM_CHUNKED && has_body(status))
      add_str(&c->out, "Transfer-Encoding: chunked\r\n");
    queue_connection(c);
    reply_queued(c);
  }
  return stream_drain(L, 3, c);
}

/* conn:stream_write(data) -> true (sent) | nil, "closed" (the client is
 * gone, or the reply has no body: HEAD, 204, 304; a handler's loop then
 * ends as for a client that left, the connection stays). Each call is one
 * chunk, queued whole before any wait, so pieces written by two tasks never
 * mix. It returns once the piece is out: the handler's pace follows the
 * client's, and the buffer holds at most what is being written. */
static int conn_stream_write(lua_State *L) {
  Conn *c = httpconn_check(L, 1);
  size_t len;
  const char *data = luaL_checklstring(L, 2, &len);
  if (!nl_restarting(L)) {
    char size[32];
    if (c->fd < 0 || c->streaming == STREAM_NONE || c->head) return nl_pushfail(L, "closed", NULL);
    if (len > 0) {
      if (c->streaming == STREAM_CHUNKED) {
        snprintf(size, sizeof size, "%zx\r\n", len);
        add_str(&c->out, size);
      }
      nl_buf_add(&c->out, data, len);
      if (c->streaming == STREAM_CHUNKED) add_str(&c->out, "\r\n");
    }
    c->deadline = nl_deadline(c->limits->send_timeout);
  }
  return stream_drain(L, 2, c);
}

/* conn:stream_end() -> true (ready for the next request) | false (the
 * connection closed: HTTP/1.0, asked to, or gone). Sends the last chunk. */
static int conn_stream_end(lua_State *L) {
  Conn *c = httpconn_check(L, 1);
  if (!nl_restarting(L) && c->fd >= 0 && c->streaming != STREAM_NONE) {
    if (c->streaming == STREAM_CHUNKED && !c->head) add_str(&c->out, "0\r\n\r\n");
    c->streaming = STREAM_NONE;
    c->deadline = nl_deadline(c->limits->send_timeout);
  }
  return conn_finish_reply(L, 1, c);
}

/* The handle that carries a connection's TLS to the ssl module (tls.h):
 * frees it when nobody took it. */
static int tls_handle_gc(lua_State *L) {
  nl_TlsHandle *h = luaL_checkudata(L, 1, NL_TLS_HANDLE_MT);
  if (h->ssl != NULL) SSL_free(h->ssl);
  h->ssl = NULL;
  return 0;
}

/* Pushes an empty handle. [-0, +1, m] */
static nl_TlsHandle *push_tls_handle(lua_State *L) {
  nl_TlsHandle *h = lua_newuserdatauv(L, sizeof *h, 0);
  h->ssl = NULL;
  if (luaL_newmetatable(L, NL_TLS_HANDLE_MT)) {
    lua_pushcfunction(L, tls_handle_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_setmetatable(L, -2);
  return h;
}

/* conn:detach() -> fd, pending[, tls]: gives the connection away (for
 * req:socket()) once the request in hand is read and no reply is on its
 * way: its descriptor, the bytes that came after the request (plaintext,
 * under TLS), and for HTTPS the TLS in a handle. The Conn is closed
 * without closing them, and no longer counts among the server's
 * connections; the request counts as answered. */
static int conn_detach(lua_State *L) {
  Conn *c = httpconn_check(L, 1);
  if (c->fd < 0) return nl_pushfail(L, "closed", NULL);
  if (has_reply_pending(c)) return luaL_error(L, "the connection is sending a reply");
  lua_pushinteger(L, c->fd);
  lua_pushlstring(L, c->in.data + c->in_pos, c->in.len - c->in_pos);
  if (c->ssl != NULL) {
    push_tls_handle(L)->ssl = c->ssl;
    c->ssl = NULL;
  } else {
    lua_pushnil(L);
  }
  nl_loop_forget(c->fd);
  conn_unlink(c);
  c->fd = -1;
  if (c->srv->g != NULL) http_group_count(c->srv->g);
  conn_close(c);
  return 3;
}

static int conn_close_m(lua_State *L) {
  conn_close(httpconn_check(L, 1));
  return 0;
}

/* conn:fd() -> the descriptor (-1: closed), for --trace's lines. */
static int conn_fd(lua_State *L) {
  lua_pushinteger(L, httpconn_check(L, 1)->fd);
  return 1;
}

static int conn_tostring(lua_State *L) {
  Conn *c = httpconn_check(L, 1);
  if (c->fd < 0) lua_pushliteral(L, "http.server.conn (closed)");
  else lua_pushfstring(L, "http.server.conn (%s)", c->peer);
  return 1;
}

const luaL_Reg httpconn_methods[] = {
  {"read", conn_read},
  {"write", conn_write},
  {"reply", conn_reply},
  {"write_file", conn_write_file},
  {"stream_begin", conn_stream_begin},
  {"stream_write", conn_stream_write},
  {"stream_end", conn_stream_end},
  {"detach", conn_detach},
  {"close", conn_close_m},
  {"fd", conn_fd},
  {NULL, NULL}
};

const luaL_Reg httpconn_meta[] = {
  {"__gc", conn_close_m},
  {"__close", conn_close_m},
  {"__tostring", conn_tostring},
  {NULL, NULL}
};
