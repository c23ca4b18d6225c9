/*
 * ssl.c: the C half of the ssl module, LuaSec's API on OpenSSL (layer:
 * bindings). It translates between Lua and runtime/tls.c: connections
 * (the object ssl.wrap makes: dohandshake, receive with luasocket's
 * patterns, send, close, settimeout, sni, alpn, info ...), made from
 * contexts (ssl.newcontext, ssl_context.c), and certificates (ssl_cert.c). The Lua half (ssl.lua) adds
 * ssl.wrap, ssl.connect and starttls; ssl_https.lua is `ssl.https`.
 *
 * Every wait goes through nl_waitk: in a task a handshake, read or write
 * that would block suspends only the task and the method is called again
 * from the start; what the call has done so far (its data, its next byte,
 * its start time) is in its own stack slots, never on the connection.
 * Tasks sharing a connection: receive calls take turns on its read side,
 * send calls on its write side (a call that has to wait holds its side
 * until it ends; others wait for it), so a line longer than a TLS record
 * goes whole to one receiver, a message to the wire unbroken, and OpenSSL
 * retries a blocked write with the same bytes.
 * A timeout reads "timeout"; LuaSec's "wantread"/"wantwrite" only come
 * back with settimeout(0), the non-blocking style LuaSec scripts use.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "netlua.h"
#include "modules.h"
#include "sock.h"
#include "ssl_int.h"

/* ---- connections: the object ---------------------------------------------- */

Conn *ssl_checkconn(lua_State *L, int idx) {
  return luaL_checkudata(L, idx, NL_SSLCONN_MT);
}

/* A connection that is still open (closed ones raise). receive, send and
 * dohandshake answer nil, "closed" instead, as LuaSec and luasocket do. */
Conn *ssl_checkopen(lua_State *L, int idx) {
  Conn *c = ssl_checkconn(L, idx);
  if (c->ssl == NULL) luaL_error(L, "attempt to use a closed ssl connection");
  return c;
}

/* The calls waiting for a turn go on (and find the connection closed). */
static void wake_turns(Conn *c) {
  for (int side = 0; side < NSIDES; side++) nl_queue_wakeall(&c->turn[side], 1);
}

static void conn_free(Conn *c) {
  if (c->ssl != NULL) {
    nl_tls_shutdown(c->ssl);
    SSL_free(c->ssl);
    c->ssl = NULL;
  }
  if (c->fd >= 0) nl_closefd(c->fd);
  c->fd = -1;
  free(c->host);
  c->host = NULL;
  wake_turns(c);
}

static int conn_gc(lua_State *L) {
  conn_free(ssl_checkconn(L, 1));
  return 0;
}

static int conn_close(lua_State *L) {
  conn_free(ssl_checkconn(L, 1));
  lua_pushnumber(L, 1);
  return 1;
}

static int conn_tostring(lua_State *L) {
  Conn *c = ssl_checkconn(L, 1);
  if (c->ssl == NULL) lua_pushliteral(L, "SSL connection: closed");
  else lua_pushfstring(L, "SSL connection: %p", (void *)c);
  return 1;
}

/* A new, closed connection object. [-0, +1, m] */
static Conn *ssl_pushconn(lua_State *L) {
  Conn *c = lua_newuserdatauv(L, sizeof *c, 0);
  memset(c, 0, sizeof *c);
  c->fd = -1;
  c->block = c->total = -1;
  luaL_setmetatable(L, NL_SSLCONN_MT);
  return c;
}

/* core.create(ctx, fd[, host[, maxline]]): a connection on fd (which it
 * now owns) that has not shaken hands yet. `host`: the name the client
 * meant to reach (SNI, and checked unless the context says verify "none");
 * `maxline`: the socket's max-line. */
static int ssl_create(lua_State *L) {
  Context *x = ssl_checkcontext(L, 1);
  int fd = (int)luaL_checkinteger(L, 2);
  const char *host = luaL_optstring(L, 3, NULL);
  lua_Number maxline = luaL_optnumber(L, 4, HUGE_VAL);
  nl_TlsErr err;
  Conn *c;
  luaL_argcheck(L, fd >= 0, 2, "invalid descriptor (a closed socket?)");
  c = ssl_pushconn(L);
  c->ssl = nl_tls_new(x->ctx, fd, err);
  if (c->ssl == NULL) return nl_pushfail(L, err, NULL);
  c->fd = fd;
  c->maxline = maxline >= 1 && maxline < 1e15 ? (size_t)maxline : 0;
  c->server = x->server;
  c->verify = x->verify;
  if (host != NULL && *host != '\0' && ssl_sethost(c, host, err) != 0)
    return nl_pushfail(L, err, NULL);
  if (x->server) SSL_set_accept_state(c->ssl);
  else SSL_set_connect_state(c->ssl);
  return 1;
}

/* core.adopt(tls, fd, pending): a server connection past its handshake,
 * taking over the TLS of http.server's req:socket() (a NL_TLS_HANDLE_MT
 * handle) on fd, which it now owns; `pending`: plaintext already read,
 * first in its buffer. nil, msg (everything freed) when that does not fit. */
static int ssl_adopt(lua_State *L) {
  nl_TlsHandle *h = luaL_checkudata(L, 1, NL_TLS_HANDLE_MT);
  int fd = (int)luaL_checkinteger(L, 2);
  size_t len;
  const char *pending = luaL_optlstring(L, 3, "", &len);
  Conn *c;
  luaL_argcheck(L, h->ssl != NULL && fd >= 0, 1, "a connection already taken");
  if (len > SSL_BUFSIZE) {
    nl_closefd(fd);
    return nl_pushfail(L, "too much data after the request head", NULL);
  }
  c = ssl_pushconn(L);
  c->ssl = h->ssl;
  h->ssl = NULL;
  c->fd = fd;
  c->server = 1;
  memcpy(c->buf, pending, len);
  c->last = len;
  return 1;
}

/* The name the client means to reach: sent as SNI; verified (with the
 * chain) unless its context said verify "none" explicitly. */
int ssl_sethost(Conn *c, const char *host, nl_TlsErr err) {
  char *copy = strdup(host);
  if (copy == NULL) {
    snprintf(err, NL_TLS_ERRSIZE, "out of memory");
    return -1;
  }
  free(c->host);
  c->host = copy;
  return nl_tls_sethost(c->ssl, host, c->verify != SSL_VERIFY_NONE, err);
}

/* ---- waiting ---------------------------------------------------------------- */

/* Per-call record of a method that waits: when its 't' timeout started. */
/* A call's timeouts: its connection's when it began (another task's
 * settimeout meanwhile is for later calls), and when its 't' began. */
typedef struct CallTimes {
  double block, total, start;
} CallTimes;

typedef struct CallRec {
  CallTimes times;
  size_t len, next; /* receive: bytes it holds; send: its next byte (0: none yet) */
  Conn *conn;       /* the connection whose side it holds, or NULL */
  int side;
} CallRec;

#define NL_SSLCALL_MT "ssl.call"

/* The record in stack slot `slot`: a replay's, else a fresh one (made
 * only when the call is about to wait). */
static CallRec *rec_get(lua_State *L, int slot) {
  CallRec *r = nl_callrec_get(L, slot);
  if (r != NULL && lua_rawlen(L, slot) != sizeof *r) r = NULL;
  return r;
}

/* The record lets go of the side it holds, and the calls waiting for it
 * go on. Idempotent. */
static void rec_release(CallRec *r) {
  Conn *c = r->conn;
  if (c == NULL) return;
  r->conn = NULL;
  if (c->holder[r->side] != r) return;
  c->holder[r->side] = NULL;
  nl_queue_wakeall(&c->turn[r->side], 1);
}

/* __close of the record's slot (the call ended however it ended: returned,
 * raised, its task cancelled) and __gc. */
static int rec_close(lua_State *L) {
  rec_release(lua_touserdata(L, 1));
  return 0;
}

/* A fresh record in `slot`, to-be-closed. [-0, +0, m] */
static CallRec *rec_make(lua_State *L, int slot, const CallTimes *tm) {
  CallRec *r = nl_callrec_new(L, slot, sizeof *r);
  r->times = *tm;
  luaL_getmetatable(L, NL_SSLCALL_MT);
  lua_setmetatable(L, slot);
  lua_toclose(L, slot);
  return r;
}

/* Before the call waits for TLS, its record holds its side. */
static void rec_hold(CallRec *r, Conn *c, int side) {
  r->conn = c;
  r->side = side;
  c->holder[side] = r;
}

/* The deadline of the next wait: 'b' per wait, 't' for the whole call. */
static double call_deadline(const CallTimes *tm) {
  double d = tm->block >= 0 ? nl_monotonic() + tm->block : NL_NODEADLINE;
  if (tm->total >= 0) {
    double t = tm->start + tm->total;
    if (d < 0 || t < d) d = t;
  }
  return d;
}

/* Waits for what TLS wants (NL_READ or NL_WRITE): 0 when ready, else the
 * error: "timeout", LuaSec's "wantread"/"wantwrite" with settimeout(0),
 * "closed" when the connection was closed meanwhile. Ctrl-C raises. */
static const char *conn_wait(lua_State *L, Conn *c, int want, int slot, const CallTimes *tm) {
  int fd = c->fd;
  if (tm->block == 0) return want == NL_READ ? "wantread" : "wantwrite";
  if (nl_waitk(L, slot, fd, want, call_deadline(tm)) <= 0) return "timeout";
  return c->ssl == NULL ? "closed" : NULL;
}

/* Waits until no other call holds `side`: NULL, or why not ("timeout",
 * LuaSec's "wantread"/"wantwrite" with settimeout(0), "closed"). Calls
 * waiting for a side are woken together when it is let go; the first to
 * run takes it. The record is made when the call has to wait. */
static const char *wait_turn(lua_State *L, Conn *c, int side, CallRec **rp, int slot,
                             const CallTimes *tm) {
  while (c->holder[side] != NULL && c->holder[side] != *rp) {
    if (tm->block == 0) return side == SIDE_READ ? "wantread" : "wantwrite";
    if (*rp == NULL) *rp = rec_make(L, slot, tm);
    if (!nl_waitqueue(L, slot, &c->turn[side], call_deadline(tm))) return "timeout";
    if (c->ssl == NULL) return "closed";
  }
  return NULL;
}

/* wait_turn as a step result: 0, or NL_TLS_FAIL with err set. */
static int take_turn(lua_State *L, Conn *c, int side, CallRec **rp, int slot,
                     const CallTimes *tm, nl_TlsErr err) {
  const char *why = wait_turn(L, c, side, rp, slot, tm);
  if (why == NULL) return 0;
  snprintf(err, NL_TLS_ERRSIZE, "%s", why);
  return NL_TLS_FAIL;
}

/* A call's timeouts: a replay's, else its connection's now. */
static CallTimes call_times(const Conn *c, const CallRec *r) {
  CallTimes tm;
  if (r != NULL) return r->times;
  tm.block = c->block;
  tm.total = c->total;
  tm.start = c->total >= 0 ? nl_monotonic() : 0;
  return tm;
}

/* ---- handshake ---------------------------------------------------------------- */

/* conn:dohandshake(): true, or nil, err. Stack: 1 conn, 2 the record. */
static int conn_dohandshake(lua_State *L) {
  Conn *c = ssl_checkconn(L, 1);
  CallRec *r = rec_get(L, 2);
  CallTimes tm = call_times(c, r);
  nl_TlsErr err;
  int step;
  if (c->ssl == NULL) return nl_pushfail(L, "closed", NULL);
  if (r == NULL) lua_settop(L, 1);
  while ((step = nl_tls_handshake(c->ssl, err)) > 0) {
    const char *why;
    if (r == NULL) r = rec_make(L, 2, &tm);
    if ((why = conn_wait(L, c, step, 2, &tm)) != NULL) return nl_pushfail(L, why, NULL);
  }
  if (step < 0) return nl_pushfail(L, err, NULL);
  lua_pushboolean(L, 1);
  return 1;
}

/* ---- receive ------------------------------------------------------------------- */

/* Makes sure the plaintext buffer holds data: 0, a want, NL_TLS_CLOSED or
 * NL_TLS_FAIL (err set). */
static int conn_fill(Conn *c, nl_TlsErr err) {
  size_t n;
  int step;
  if (c->first < c->last) return 0;
  c->first = c->last = 0;
  if (c->ssl == NULL) {
    snprintf(err, NL_TLS_ERRSIZE, "closed");
    return NL_TLS_CLOSED;
  }
  step = nl_tls_read(c->ssl, c->buf, sizeof c->buf, &n, err);
  if (step == 0) {
    c->last = n;
    c->received += (double)n;
  }
  return step;
}

/* receive's stack: 1 conn, 2 pattern, 3 prefix, 4 its data while it
 * waits, 5 its record. */
#define RECV_DATA 4
#define RECV_SLOT 5

/* Takes up to `max` bytes of the buffer, stopping after `stop` when it is
 * not -1 (the stop byte is consumed, not added); '\r' dropped when
 * `nocr`. Returns 1 when it met the stop byte. */
static int take(Conn *c, nl_Gather *g, size_t max, int stop, int nocr) {
  const char *p = c->buf + c->first;
  size_t n = c->last - c->first;
  const char *nl = stop >= 0 ? memchr(p, stop, n) : NULL;
  if (nl != NULL) n = (size_t)(nl - p);
  if (n > max) n = max, nl = NULL;
  for (size_t i = 0; i < n;) {
    const char *cr = nocr ? memchr(p + i, '\r', n - i) : NULL;
    size_t k = cr ? (size_t)(cr - (p + i)) : n - i;
    nl_gather_add(g, p + i, k);
    i += k + (cr != NULL);
  }
  c->first += n + (nl != NULL);
  return nl != NULL;
}

enum { P_COUNT, P_LINE, P_ALL };

/* The room left for a line under the connection's max-line. */
static size_t line_room(const Conn *c, const nl_Gather *g) {
  if (c->maxline == 0) return (size_t)-1;
  return g->len < c->maxline ? c->maxline - g->len : 0;
}

/* One round: reads until the pattern is met or TLS must wait. 0 done, a
 * want, NL_TLS_CLOSED, NL_TLS_FAIL ("line too long": the rest of the line
 * stays unread). */
static int receive_round(Conn *c, nl_Gather *g, int pattern, size_t wanted, size_t got0,
                         nl_TlsErr err) {
  for (;;) {
    int step;
    if (pattern == P_COUNT && g->len >= wanted) return 0;
    step = conn_fill(c, err);
    if (step == NL_TLS_CLOSED && pattern == P_ALL) return g->len > got0 ? 0 : step;
    if (step != 0) return step;
    if (pattern == P_LINE && take(c, g, line_room(c, g), '\n', 1)) return 0;
    if (pattern == P_LINE && c->first < c->last) {
      snprintf(err, NL_TLS_ERRSIZE, "line too long");
      return NL_TLS_FAIL;
    }
    if (pattern == P_COUNT) take(c, g, wanted - g->len, -1, 0);
    if (pattern == P_ALL) take(c, g, (size_t)-1, -1, 0);
  }
}

static int check_pattern(lua_State *L, size_t *wanted) {
  const char *p;
  if (lua_isnumber(L, 2)) {
    lua_Number n = lua_tonumber(L, 2);
    luaL_argcheck(L, n >= 0, 2, "invalid receive pattern");
    *wanted = n > 1e15 ? (size_t)1e15 : (size_t)n;
    return P_COUNT;
  }
  p = luaL_optstring(L, 2, "*l");
  if (p[0] == '*') p++;
  if (p[0] != 'l' && p[0] != 'a') luaL_argerror(L, 2, "invalid receive pattern");
  return p[0] == 'l' ? P_LINE : P_ALL;
}

/* conn:receive([pattern[, prefix]]): data, or nil, err, partial (luasocket's
 * returns). The count includes the prefix, as luasocket's does. */
static int conn_receive(lua_State *L) {
  Conn *c = ssl_checkconn(L, 1);
  size_t plen, wanted = 0;
  const char *prefix = luaL_optlstring(L, 3, "", &plen);
  int pattern = check_pattern(L, &wanted), step;
  CallRec *r = rec_get(L, RECV_SLOT);
  CallTimes tm = call_times(c, r);
  nl_TlsErr err;
  nl_Gather g;
  if (r == NULL) lua_settop(L, RECV_DATA);
  step = take_turn(L, c, SIDE_READ, &r, RECV_SLOT, &tm, err);
  nl_gather_begin(&g, L, RECV_DATA, r != NULL ? r->len : 0, prefix, plen);
  while (step == 0 && (step = receive_round(c, &g, pattern, wanted, plen, err)) > 0) {
    const char *why;
    nl_gather_keep(&g);
    if (r == NULL) r = rec_make(L, RECV_SLOT, &tm);
    r->len = g.len;
    rec_hold(r, c, SIDE_READ);
    if ((why = conn_wait(L, c, step, RECV_SLOT, &tm)) != NULL) {
      snprintf(err, NL_TLS_ERRSIZE, "%s", why);
      step = NL_TLS_FAIL;
      break;
    }
    step = 0;
  }
  if (step == 0) {
    lua_pushlstring(L, g.data, g.len);
    return 1;
  }
  lua_pushnil(L);
  lua_pushstring(L, err);
  lua_pushlstring(L, g.data, g.len);
  return 3;
}

/* ---- send ------------------------------------------------------------------------- */

/* conn:send(data[, i[, j]]): index of the last byte sent, or nil, err,
 * last (luasocket's). Stack: 1 conn, 2 data, 3 i, 4 j, 5 its record. */
static int conn_send(lua_State *L) {
  Conn *c = ssl_checkconn(L, 1);
  size_t size, n;
  const char *data = luaL_checklstring(L, 2, &size);
  lua_Integer i = luaL_optinteger(L, 3, 1), j = luaL_optinteger(L, 4, -1);
  CallRec *r = rec_get(L, 5);
  CallTimes tm = call_times(c, r);
  size_t next, end;
  nl_TlsErr err;
  int step = 0;
  if (i < 0) i = (lua_Integer)size + i + 1;
  if (j < 0) j = (lua_Integer)size + j + 1;
  if (i < 1) i = 1;
  if (j > (lua_Integer)size) j = (lua_Integer)size;
  end = j < i ? (size_t)i - 1 : (size_t)j;
  if (r == NULL) lua_settop(L, 4);
  step = take_turn(L, c, SIDE_WRITE, &r, 5, &tm, err);
  next = r != NULL && r->next > 0 ? r->next : (size_t)i;
  while (step == 0 && next <= end) {
    const char *why;
    if (c->ssl == NULL) {
      snprintf(err, NL_TLS_ERRSIZE, "closed");
      step = NL_TLS_CLOSED;
      break;
    }
    step = nl_tls_write(c->ssl, data + next - 1, end - next + 1, &n, err);
    next += n;
    c->sent += (double)n;
    if (step <= 0) {
      if (step < 0) break;
      continue;
    }
    if (r == NULL) r = rec_make(L, 5, &tm);
    r->next = next;
    rec_hold(r, c, SIDE_WRITE);
    if ((why = conn_wait(L, c, step, 5, &tm)) != NULL) {
      snprintf(err, NL_TLS_ERRSIZE, "%s", why);
      step = NL_TLS_FAIL;
      break;
    }
    step = 0;
  }
  if (step < 0) {
    lua_pushnil(L);
    lua_pushstring(L, err);
    lua_pushinteger(L, (lua_Integer)next - 1);
    return 3;
  }
  lua_pushinteger(L, (lua_Integer)next - 1);
  return 1;
}

/* ---- small methods --------------------------------------------------------------- */

static int conn_settimeout(lua_State *L) {
  Conn *c = ssl_checkconn(L, 1);
  double t = luaL_optnumber(L, 2, -1);
  const char *mode = luaL_optstring(L, 3, "b");
  if (isnan(t) || t > NL_MAXTIMEOUT) t = -1;
  if (*mode == 'b') c->block = t;
  else if (*mode == 't' || *mode == 'r') c->total = t;
  else luaL_argerror(L, 3, "invalid timeout mode");
  lua_pushnumber(L, 1);
  return 1;
}

static int conn_gettimeout(lua_State *L) {
  Conn *c = ssl_checkconn(L, 1);
  lua_pushnumber(L, c->block);
  lua_pushnumber(L, c->total);
  return 2;
}

/* conn:setoption("max-line", n) / getoption("max-line"): as the socket's
 * (the only option a TLS connection has; wrap takes the socket's). */
static void check_maxline_option(lua_State *L) {
  const char *name = luaL_checkstring(L, 2);
  if (strcmp(name, "max-line") != 0)
    luaL_argerror(L, 2, "unsupported option (a TLS connection has only max-line)");
}

static int conn_setoption(lua_State *L) {
  Conn *c = ssl_checkconn(L, 1);
  lua_Number n;
  check_maxline_option(L);
  n = luaL_checknumber(L, 3);
  luaL_argcheck(L, n >= 1, 3, "max-line must be at least 1");
  c->maxline = n >= 1e15 ? 0 : (size_t)n;
  lua_pushnumber(L, 1);
  return 1;
}

static int conn_getoption(lua_State *L) {
  Conn *c = ssl_checkconn(L, 1);
  check_maxline_option(L);
  lua_pushnumber(L, c->maxline ? (lua_Number)c->maxline : HUGE_VAL);
  return 1;
}

static int conn_getfd(lua_State *L) {
  lua_pushinteger(L, ssl_checkconn(L, 1)->fd);
  return 1;
}

/* Plaintext is waiting: in our buffer or decrypted inside OpenSSL. */
static int conn_dirty(lua_State *L) {
  Conn *c = ssl_checkconn(L, 1);
  /* SSL_has_pending also counts records read ahead and not yet decrypted
   * (an https server's connection, taken over by req:socket(), reads ahead). */
  lua_pushboolean(L, c->first < c->last || (c->ssl != NULL && (SSL_pending(c->ssl) > 0 ||
                                                               SSL_has_pending(c->ssl))));
  return 1;
}

static int conn_want(lua_State *L) {
  Conn *c = ssl_checkopen(L, 1);
  switch (SSL_want(c->ssl)) {
    case SSL_READING: lua_pushliteral(L, "read"); break;
    case SSL_WRITING: lua_pushliteral(L, "write"); break;
    case SSL_X509_LOOKUP: lua_pushliteral(L, "x509lookup"); break;
    default: lua_pushliteral(L, "nothing");
  }
  return 1;
}

static int conn_getalpn(lua_State *L) {
  Conn *c = ssl_checkopen(L, 1);
  const unsigned char *p;
  unsigned len;
  SSL_get0_alpn_selected(c->ssl, &p, &len);
  if (len == 0) return nl_pushfail(L, "no alpn protocol was agreed", NULL);
  lua_pushlstring(L, (const char *)p, len);
  return 1;
}

static int conn_getsniname(lua_State *L) {
  Conn *c = ssl_checkopen(L, 1);
  const char *name = SSL_get_servername(c->ssl, TLSEXT_NAMETYPE_host_name);
  if (name == NULL) lua_pushnil(L);
  else lua_pushstring(L, name);
  return 1;
}

static void set_int(lua_State *L, const char *k, lua_Integer v) {
  lua_pushinteger(L, v);
  lua_setfield(L, -2, k);
}

static void set_str(lua_State *L, const char *k, const char *v) {
  if (v == NULL) return;
  lua_pushstring(L, v);
  lua_setfield(L, -2, k);
}

/* conn:info([field]): LuaSec's table (protocol, cipher, bits, algbits,
 * key, authentication, encryption, mac, compression), or one of its fields. */
static int conn_info(lua_State *L) {
  Conn *c = ssl_checkopen(L, 1);
  const char *field = luaL_optstring(L, 2, NULL);
  const SSL_CIPHER *ci = SSL_get_current_cipher(c->ssl);
  int alg = 0;
  if (ci == NULL) return nl_pushfail(L, "no tls session yet", NULL);
  lua_newtable(L);
  set_str(L, "protocol", SSL_get_version(c->ssl));
  set_str(L, "cipher", SSL_CIPHER_get_name(ci));
  set_int(L, "bits", SSL_CIPHER_get_bits(ci, &alg));
  set_int(L, "algbits", alg);
  set_str(L, "key", OBJ_nid2sn(SSL_CIPHER_get_kx_nid(ci)));
  set_str(L, "authentication", OBJ_nid2sn(SSL_CIPHER_get_auth_nid(ci)));
  set_str(L, "encryption", OBJ_nid2sn(SSL_CIPHER_get_cipher_nid(ci)));
  set_str(L, "mac", OBJ_nid2sn(SSL_CIPHER_get_digest_nid(ci)));
  set_str(L, "compression", "none");
  set_str(L, "export", NULL);
  if (field != NULL) lua_getfield(L, -1, field);
  return 1;
}

static int conn_getstats(lua_State *L) {
  Conn *c = ssl_checkconn(L, 1);
  lua_pushnumber(L, c->received);
  lua_pushnumber(L, c->sent);
  return 2;
}

/* ---- moving a connection to another thread (nl_Transfer) ------------------- */

typedef struct Payload {
  Conn conn;
} Payload;

static void *conn_export(lua_State *L, int idx) {
  Conn *c = luaL_testudata(L, idx, NL_SSLCONN_MT);
  Payload *p;
  if (c == NULL || c->ssl == NULL) {
    lua_pushstring(L, "a closed ssl connection cannot be passed to a thread");
    return NULL;
  }
  p = malloc(sizeof *p);
  if (p == NULL) {
    lua_pushstring(L, "not enough memory");
    return NULL;
  }
  p->conn = *c;
  /* the calls waiting on it stay here (and end "closed") */
  memset(p->conn.holder, 0, sizeof p->conn.holder);
  memset(p->conn.turn, 0, sizeof p->conn.turn);
  /* the sender's object now reads as closed; its loop forgets the fd */
  nl_loop_forget(c->fd);
  c->ssl = NULL;
  c->fd = -1;
  c->host = NULL;
  wake_turns(c);
  return p;
}

static void conn_import(lua_State *L, void *payload) {
  Payload *p = payload;
  Conn *c = ssl_pushconn(L);
  *c = p->conn;
  free(p);
}

static void conn_discard(void *payload) {
  Payload *p = payload;
  conn_free(&p->conn);
  free(p);
}

static const nl_Transfer conn_transfer = {"ssl", conn_export, conn_import, conn_discard};

/* ---- registration ------------------------------------------------------------ */

static const luaL_Reg callrec_meta[] = {{"__close", rec_close}, {"__gc", rec_close}, {NULL, NULL}};

static const luaL_Reg conn_methods[] = {
  {"dohandshake", conn_dohandshake}, {"receive", conn_receive}, {"send", conn_send},
  {"close", conn_close}, {"settimeout", conn_settimeout}, {"gettimeout", conn_gettimeout},
  {"getfd", conn_getfd}, {"dirty", conn_dirty}, {"want", conn_want},
  {"getalpn", conn_getalpn}, {"getsniname", conn_getsniname}, {"info", conn_info},
  {"getstats", conn_getstats}, {"sni", ssl_sni},
  {"setoption", conn_setoption}, {"getoption", conn_getoption},
  {"getpeercertificate", ssl_getpeercertificate}, {"getpeerchain", ssl_getpeerchain},
  {"getpeerverification", ssl_getpeerverification},
  {"getlocalcertificate", ssl_getlocalcertificate},
  {NULL, NULL}
};

static const luaL_Reg conn_meta[] = {
  {"__gc", conn_gc}, {"__close", conn_gc}, {"__tostring", conn_tostring}, {NULL, NULL}
};

static const luaL_Reg context_meta[] = {{"__gc", ssl_context_gc}, {NULL, NULL}};

static const luaL_Reg ssl_funcs[] = {
  {"newcontext", ssl_newcontext}, {"create", ssl_create}, {"adopt", ssl_adopt},
  {"loadcertificate", ssl_loadcertificate}, {NULL, NULL}
};

int luaopen_ssl(lua_State *L) {
  const char *why = nl_libssl_load();
  if (why != NULL) return luaL_error(L, "ssl: %s", why);
  nl_newclass(L, NL_SSLCALL_MT, NULL, callrec_meta);
  nl_newclass(L, NL_SSLCTX_MT, NULL, context_meta);
  nl_newclass_transfer(L, NL_SSLCONN_MT, conn_methods, conn_meta, &conn_transfer);
  ssl_cert_open(L);
  luaL_newlib(L, ssl_funcs);
  nl_runembedded(L, "ssl", 1);
  return 1;
}

/* require "ssl.https": LuaSec's https module (ssl_https.lua) */
int luaopen_ssl_https(lua_State *L) {
  lua_getglobal(L, "require");
  lua_pushliteral(L, "ssl");
  lua_call(L, 1, 1);
  nl_runembedded(L, "ssl_https", 1);
  return 1;
}
