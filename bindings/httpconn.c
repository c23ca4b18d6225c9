/*
 * httpconn.c: one client connection of http.server (layer: bindings,
 * "http.server.conn"): reading requests through runtime/httpparse.c,
 * queueing and sending replies (a file streams with sendfile), deadlines,
 * and making room when every connection slot is taken. The request table
 * is made by httpreq.c, a reply's head by httpreply.c, its header lines by
 * httphead.c. conn:read() returns
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
  httpreply_error(c, status);
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
    httpreq_push(L, &c->req, c->peer);
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
    httpreply_full(c, arg_status(L, 2), lines, hlen, body, len, c->head);
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
    if (httphead_put(&c->lines, typed ? NULL : NL_TEXT_TYPE, sizeof NL_TEXT_TYPE - 1, &c->head_text) != 0)
      return luaL_error(L, "not enough memory for the reply's head");
    text = lua_tolstring(L, body, &len);
    httpreply_full(c, status, c->head_text.data, c->head_text.len, text, len, c->head);
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
    httpreply_ours(c, 404, c->head);
    return;
  }
  reply_part(L, 5, size, &offset, &length);
  status = httpreply_head(c, status, lines, hlen, length);
  if (c->head || !httpreply_has_body(status) || length == 0) {
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
    int status = httpreply_status(c, arg_status(L, 2), lines, hlen);
    if (!httpreply_has_body(status)) c->head = 1;
    if (c->http10) c->closing = 1;
    c->streaming = c->http10 ? STREAM_RAW : STREAM_CHUNKED;
    if (c->streaming == STREAM_CHUNKED && httpreply_has_body(status))
      httpreply_add_str(&c->out, "Transfer-Encoding: chunked\r\n");
    httpreply_connection(c);
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
        httpreply_add_str(&c->out, size);
      }
      nl_buf_add(&c->out, data, len);
      if (c->streaming == STREAM_CHUNKED) httpreply_add_str(&c->out, "\r\n");
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
    if (c->streaming == STREAM_CHUNKED && !c->head) httpreply_add_str(&c->out, "0\r\n\r\n");
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
