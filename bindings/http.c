/*
 * http.c: the C half of the http client (layer: bindings), on libcurl's
 * multi interface. One call, perform(specs, concurrency), runs a batch of
 * transfers at once in the calling thread: curl tells us its sockets and
 * timer through callbacks, and we wait for them through the runtime's
 * nl_waitmany, so Ctrl-C interrupts a transfer and nothing blocks elsewhere.
 * Bodies and headers collect in malloc'd buffers (never Lua memory inside a
 * curl callback, so no longjmp can cross curl's frames). A body is bounded
 * by its spec's max_body, counted after curl's content decoding, so neither
 * an endless reply nor a compression bomb can fill memory or disk: the write
 * callback stops the transfer as it passes the limit. Everything a batch
 * owns hangs off one userdata whose __gc cleans up, whatever raised.
 * The Lua half (bindings/http.lua) builds the user-facing API: options,
 * retries, responses and downloads, and re-exports http.server.
 * libcurl is loaded, and curl_global_init run once, by runtime/curlload.c
 * on the first transfer (need_curl), in any thread.
 */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>

#include "netlua.h"
#include "modules.h"
#include "sock.h"
#include "buf.h"
#include "curlnames.h"
#include "trace.h"

#define NL_BATCH_MT "http.batch"
#define DEFAULT_USER_AGENT "netlua/" NL_VERSION


/* One transfer of a batch. */
typedef struct Transfer {
  CURL *easy;
  struct curl_slist *headers;
  nl_Buf body, head;
  nl_Buf sent;     /* spec.request_head: the head of the last request sent */
  int keep_sent;   /* spec.request_head was true */
  int sent_done;   /* a reply's head came after the head in `sent` */
  int fd;          /* output file, or -1 */
  int to_file;     /* the body goes to a file: count bytes, keep none */
  int write_errno; /* why writing the output file failed */
  curl_off_t max_body; /* most body bytes (decoded) accepted; -1 no limit */
  int too_large;   /* stopped for passing max_body */
  int started, done;
  int reported;    /* passed to the on_done callback */
  CURLcode result;
  char errbuf[CURL_ERROR_SIZE];
} Transfer;

/* A socket curl asked us to watch. */
typedef struct Watch {
  curl_socket_t fd;
  int events;
} Watch;

typedef struct Batch {
  CURLM *multi;
  Transfer *transfers;
  int n;
  Watch *watches;
  int nwatch, capwatch;
  long timer_ms; /* curl's timer: -1 none */
  double timer_at;
  int next;      /* transfers started so far */
} Batch;

/* ---- buffers ------------------------------------------------------------ */

/* ---- curl callbacks (no Lua in here) ------------------------------------ */

/* True (and noted) when len more bytes would pass the body limit. */
static int over_limit(Transfer *t, size_t len) {
  if (t->max_body < 0 || (curl_off_t)len <= t->max_body - (curl_off_t)t->body.len)
    return 0;
  t->too_large = 1;
  return 1;
}

/* Gets the body after content decoding; returning less than len stops the
 * transfer. */
static size_t on_body(char *data, size_t size, size_t nmemb, void *ud) {
  Transfer *t = ud;
  size_t len = size * nmemb, off = 0;
  if (over_limit(t, len)) return 0;
  if (!t->to_file) return nl_buf_add(&t->body, data, len) == 0 ? len : 0;
  while (off < len) {
    ssize_t w = write(t->fd, data + off, len - off);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) {
      t->write_errno = errno;
      return 0;
    }
    off += (size_t)w;
  }
  t->body.len += len; /* counts bytes written */
  return len;
}

/* Keeps the header block of the last response only: a status line starts a
 * new block (after a redirect or a 100 Continue). */
static size_t on_header(char *data, size_t size, size_t nmemb, void *ud) {
  Transfer *t = ud;
  size_t len = size * nmemb;
  if (len >= 5 && memcmp(data, "HTTP/", 5) == 0) t->head.len = 0;
  return nl_buf_add(&t->head, data, len) == 0 ? len : 0;
}

static int on_socket(CURL *easy, curl_socket_t fd, int what, void *ud,
                     void *sockp) {
  Batch *b = ud;
  int i;
  (void)easy;
  (void)sockp;
  for (i = 0; i < b->nwatch; i++)
    if (b->watches[i].fd == fd) break;
  if (what == CURL_POLL_REMOVE) {
    if (i < b->nwatch) b->watches[i] = b->watches[--b->nwatch];
    nl_loop_forget(fd); /* curl may close it next: the loop must not keep it */
    return 0;
  }
  if (i == b->nwatch) {
    if (b->nwatch == b->capwatch) {
      int cap = b->capwatch ? b->capwatch * 2 : 8;
      Watch *w = realloc(b->watches, sizeof *w * (size_t)cap);
      if (w == NULL) return -1;
      b->watches = w;
      b->capwatch = cap;
    }
    b->watches[b->nwatch++].fd = fd;
  }
  b->watches[i].events = ((what & CURL_POLL_IN) ? NL_READ : 0) |
                         ((what & CURL_POLL_OUT) ? NL_WRITE : 0);
  return 0;
}

/* Every socket curl closes goes through the runtime, so no loop keeps a
 * registration for its number (a new socket could get it and never be
 * reported ready). */
static int on_close_socket(void *ud, curl_socket_t fd) {
  (void)ud;
  nl_closefd(fd);
  return 0;
}

static int on_timer(CURLM *multi, long timeout_ms, void *ud) {
  Batch *b = ud;
  (void)multi;
  b->timer_ms = timeout_ms;
  b->timer_at = timeout_ms < 0 ? -1 : nl_monotonic() + (double)timeout_ms / 1000;
  return 0;
}

/* ---- the batch userdata ------------------------------------------------- */

static void transfer_free(Batch *b, Transfer *t) {
  if (t->easy != NULL) {
    if (t->started && !t->done) curl_multi_remove_handle(b->multi, t->easy);
    curl_easy_cleanup(t->easy);
    t->easy = NULL;
  }
  curl_slist_free_all(t->headers);
  t->headers = NULL;
  if (t->fd >= 0) close(t->fd);
  t->fd = -1;
  nl_buf_free(&t->body);
  nl_buf_free(&t->head);
  nl_buf_free(&t->sent);
}

/* One idempotent cleanup for __gc, __close and the end of perform(). */
static void batch_release(Batch *b) {
  if (b->transfers != NULL) {
    for (int i = 0; i < b->n; i++) transfer_free(b, &b->transfers[i]);
    free(b->transfers);
    b->transfers = NULL;
  }
  if (b->multi != NULL) curl_multi_cleanup(b->multi);
  b->multi = NULL;
  free(b->watches);
  b->watches = NULL;
  b->nwatch = b->capwatch = 0;
}

static int batch_close(lua_State *L) {
  batch_release(luaL_checkudata(L, 1, NL_BATCH_MT));
  return 0;
}

/* Pushes a closed batch, then gives it its multi handle and n transfers. */
static Batch *batch_new(lua_State *L, int n) {
  Batch *b = lua_newuserdatauv(L, sizeof *b, 0);
  memset(b, 0, sizeof *b);
  b->timer_ms = -1;
  b->timer_at = -1;
  luaL_setmetatable(L, NL_BATCH_MT);
  b->transfers = calloc((size_t)(n > 0 ? n : 1), sizeof *b->transfers);
  b->multi = curl_multi_init();
  if (b->transfers == NULL || b->multi == NULL) luaL_error(L, "not enough memory");
  b->n = n;
  for (int i = 0; i < n; i++) b->transfers[i].fd = -1;
  curl_multi_setopt(b->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
  curl_multi_setopt(b->multi, CURLMOPT_SOCKETDATA, b);
  curl_multi_setopt(b->multi, CURLMOPT_TIMERFUNCTION, on_timer);
  curl_multi_setopt(b->multi, CURLMOPT_TIMERDATA, b);
  return b;
}

/* ---- reading a spec table into an easy handle --------------------------- */

static const char *opt_string(lua_State *L, int spec, const char *key) {
  const char *s;
  lua_getfield(L, spec, key);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    return NULL;
  }
  if (lua_type(L, -1) != LUA_TSTRING)
    luaL_error(L, "http: option '%s' must be a string", key);
  s = lua_tostring(L, -1);
  lua_pop(L, 1); /* the spec table keeps it alive */
  return s;
}

static double opt_number(lua_State *L, int spec, const char *key, double dflt) {
  double v;
  lua_getfield(L, spec, key);
  v = luaL_optnumber(L, -1, dflt);
  lua_pop(L, 1);
  return v;
}

static int opt_bool(lua_State *L, int spec, const char *key, int dflt) {
  int v;
  lua_getfield(L, spec, key);
  v = lua_isnil(L, -1) ? dflt : lua_toboolean(L, -1);
  lua_pop(L, 1);
  return v;
}

static void set_method_and_body(lua_State *L, int spec, CURL *easy) {
  const char *method = opt_string(L, spec, "method");
  size_t len = 0;
  const char *body;
  lua_getfield(L, spec, "body");
  body = lua_isnil(L, -1) ? NULL : lua_tolstring(L, -1, &len);
  if (body != NULL) {
    curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    curl_easy_setopt(easy, CURLOPT_COPYPOSTFIELDS, body);
  }
  lua_pop(L, 1);
  if (method == NULL || strcmp(method, "GET") == 0) {
    if (body != NULL) curl_easy_setopt(easy, CURLOPT_CUSTOMREQUEST, "GET");
  } else if (strcmp(method, "HEAD") == 0) {
    curl_easy_setopt(easy, CURLOPT_NOBODY, 1L);
  } else if (strcmp(method, "POST") == 0) {
    if (body == NULL) {
      curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE, 0L);
      curl_easy_setopt(easy, CURLOPT_COPYPOSTFIELDS, "");
    }
  } else {
    curl_easy_setopt(easy, CURLOPT_CUSTOMREQUEST, method);
  }
}

static void set_headers(lua_State *L, int spec, Transfer *t) {
  lua_getfield(L, spec, "headers");
  if (lua_istable(L, -1)) {
    lua_Integer n = luaL_len(L, -1);
    for (lua_Integer i = 1; i <= n; i++) {
      struct curl_slist *l;
      lua_rawgeti(L, -1, i);
      l = curl_slist_append(t->headers, luaL_checkstring(L, -1));
      lua_pop(L, 1);
      if (l == NULL) luaL_error(L, "not enough memory");
      t->headers = l;
    }
  }
  lua_pop(L, 1);
  if (t->headers != NULL) curl_easy_setopt(t->easy, CURLOPT_HTTPHEADER, t->headers);
}

/* Seconds as curl's milliseconds; 0 (curl's "no limit") for zero, negative,
 * NaN and math.huge: a plain cast of those would be undefined. */
static long to_ms(double seconds) {
  if (!(seconds > 0) || seconds > NL_MAXTIMEOUT) return 0;
  return (long)(seconds * 1000 + 0.5);
}

/* max_body: -1 (no limit) when absent, for math.huge and past curl_off_t. */
static curl_off_t to_limit(double n) {
  if (!(n >= 0) || n >= 9e18) return -1;
  return (curl_off_t)n;
}

/* max_redirects: -1 (no limit) for math.huge or negative; 30 for NaN. */
static long to_redirects(double n) {
  if (isnan(n)) return 30;
  if (n < 0 || n > 1e9) return -1;
  return (long)n;
}

static void set_timeouts(lua_State *L, int spec, CURL *easy) {
  long timeout = to_ms(opt_number(L, spec, "timeout", 0));
  long connect = to_ms(opt_number(L, spec, "connect_timeout", 0));
  if (timeout > 0) curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, timeout);
  if (connect > 0) curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, connect);
}

/* Opens spec.output (a fresh temporary file the Lua half named) for the
 * body. Returns 0 or an errno value. */
static int open_output(lua_State *L, int spec, Transfer *t) {
  const char *path = opt_string(L, spec, "output");
  if (path == NULL) return 0;
  do t->fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  while (t->fd < 0 && errno == EINTR);
  t->to_file = 1;
  return t->fd < 0 ? errno : 0;
}

/* spec.request_head: keeps the request head exactly as libcurl sent it. A
 * head may come in pieces; the first piece after a reply's head starts the
 * next request's head, so after redirects it is the last request's. */
static void keep_sent_head(Transfer *t, curl_infotype type, const char *data, size_t size) {
  if (type != CURLINFO_HEADER_OUT) {
    if (type == CURLINFO_HEADER_IN) t->sent_done = 1;
    return;
  }
  if (t->sent_done) t->sent.len = 0;
  t->sent_done = 0;
  nl_buf_add(&t->sent, data, size); /* out of memory: the head is cut short */
}

/* What libcurl says it does: the request head for spec.request_head, and
 * under --trace the timeline's lines. */
static int on_debug(CURL *easy, curl_infotype type, char *data, size_t size, void *ud) {
  static const int kinds[] = {NL_TRACE_CURL_TEXT, NL_TRACE_CURL_HEAD_IN, NL_TRACE_CURL_HEAD_OUT,
                              NL_TRACE_CURL_BODY_IN, NL_TRACE_CURL_BODY_OUT};
  Transfer *t = ud;
  char *lip = NULL, *pip = NULL;
  long lport = 0, pport = 0;
  if (t->keep_sent) keep_sent_head(t, type, data, size);
  if (!nl_trace_on) return 0;
  if ((int)type < 0 || (size_t)type >= sizeof kinds / sizeof kinds[0]) return 0; /* TLS records */
  curl_easy_getinfo(easy, CURLINFO_LOCAL_IP, &lip);
  curl_easy_getinfo(easy, CURLINFO_LOCAL_PORT, &lport);
  curl_easy_getinfo(easy, CURLINFO_PRIMARY_IP, &pip);
  curl_easy_getinfo(easy, CURLINFO_PRIMARY_PORT, &pport);
  nl_trace_curl(kinds[type], lip, lport, pip, pport, data, size);
  return 0;
}

static int setup_transfer(lua_State *L, int spec, Transfer *t) {
  CURL *easy = t->easy = curl_easy_init();
  const char *url = opt_string(L, spec, "url");
  const char *agent = opt_string(L, spec, "user_agent");
  int verify = opt_bool(L, spec, "verify", 1);
  if (easy == NULL) luaL_error(L, "not enough memory");
  if (url == NULL) luaL_error(L, "http: option 'url' missing");
  curl_easy_setopt(easy, CURLOPT_PRIVATE, t);
  curl_easy_setopt(easy, CURLOPT_URL, url);
  curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(easy, CURLOPT_CLOSESOCKETFUNCTION, on_close_socket);
  curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, t->errbuf);
  curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(easy, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(easy, CURLOPT_WRITEDATA, t);
  curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(easy, CURLOPT_HEADERDATA, t);
  curl_easy_setopt(easy, CURLOPT_ACCEPT_ENCODING, "");
  curl_easy_setopt(easy, CURLOPT_USERAGENT, agent ? agent : DEFAULT_USER_AGENT);
  curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, (long)opt_bool(L, spec, "follow_redirects", 1));
  curl_easy_setopt(easy, CURLOPT_MAXREDIRS, to_redirects(opt_number(L, spec, "max_redirects", 30)));
  curl_easy_setopt(easy, CURLOPT_SSL_VERIFYPEER, (long)verify);
  curl_easy_setopt(easy, CURLOPT_SSL_VERIFYHOST, verify ? 2L : 0L);
  t->keep_sent = opt_bool(L, spec, "request_head", 0);
  if (nl_trace_on || t->keep_sent) {
    curl_easy_setopt(easy, CURLOPT_DEBUGFUNCTION, on_debug);
    curl_easy_setopt(easy, CURLOPT_DEBUGDATA, t);
    curl_easy_setopt(easy, CURLOPT_VERBOSE, 1L);
  }
  t->max_body = to_limit(opt_number(L, spec, "max_body", -1));
  set_timeouts(L, spec, easy);
  set_method_and_body(L, spec, easy);
  set_headers(L, spec, t);
  return open_output(L, spec, t);
}

/* ---- running the batch -------------------------------------------------- */

static void kick(Batch *b, curl_socket_t fd, int ev) {
  int running;
  curl_multi_socket_action(b->multi, fd, ev, &running);
}

/* Closes a finished transfer's output file; a failing close (NFS, quota)
 * fails the transfer. */
static void close_output(Transfer *t) {
  if (t->fd < 0) return;
  if (close(t->fd) != 0 && t->result == CURLE_OK) {
    t->write_errno = errno;
    t->result = CURLE_WRITE_ERROR;
  }
  t->fd = -1;
}

static void push_result(lua_State *L, Transfer *t);

/* Calls on_done(i, result) for each transfer finished since last time. No
 * curl frame is on the C stack here, so the callback may raise: the batch's
 * __gc frees what is left. */
static void report_done(lua_State *L, Batch *b, int cb) {
  if (cb == 0) return;
  for (int i = 0; i < b->n; i++) {
    Transfer *t = &b->transfers[i];
    if (!t->done || t->reported) continue;
    t->reported = 1;
    lua_pushvalue(L, cb);
    lua_pushinteger(L, i + 1);
    push_result(L, t);
    lua_call(L, 2, 0);
  }
}

static void collect_done(Batch *b) {
  CURLMsg *msg;
  int left;
  while ((msg = curl_multi_info_read(b->multi, &left)) != NULL) {
    Transfer *t;
    if (msg->msg != CURLMSG_DONE) continue;
    curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&t);
    t->result = t->too_large ? CURLE_FILESIZE_EXCEEDED : msg->data.result;
    t->done = 1;
    curl_multi_remove_handle(b->multi, t->easy);
    close_output(t);
  }
}

/* Starts transfers until `concurrency` run at once. */
static int start_more(Batch *b, int *next, int concurrency) {
  int active = 0;
  for (int i = 0; i < *next; i++)
    if (b->transfers[i].started && !b->transfers[i].done) active++;
  while (*next < b->n && active < concurrency) {
    Transfer *t = &b->transfers[(*next)++];
    if (t->done) continue; /* failed in set-up */
    t->started = 1;
    curl_multi_add_handle(b->multi, t->easy);
    active++;
  }
  return active;
}

/* One wait on curl's sockets and timer, then lets curl act on what is
 * ready. Returns -EINTR when Ctrl-C came, else 0. Inside a task the wait
 * suspends only the task, and perform() starts over with its batch (stack
 * value 4), which holds all the progress (runtime/sched.c). */
static int step(lua_State *L, Batch *b) {
  nl_PollFd stack[16], *fds = stack;
  int n = b->nwatch, r;
  double deadline = b->timer_at;
  if (n > 16 && (fds = malloc(sizeof *fds * (size_t)n)) == NULL) {
    nl_wait(-1, 0, nl_deadline(0.01)); /* out of memory: let it pass */
    return 0;
  }
  for (int i = 0; i < n; i++) {
    fds[i].fd = b->watches[i].fd;
    fds[i].events = b->watches[i].events;
  }
  if (n == 0 && deadline < 0) deadline = nl_deadline(0.05); /* not expected */
  if (nl_in_task(L)) r = nl_waitmanyk(L, 4, fds, n, deadline);
  else r = nl_waitmany(fds, n, deadline);
  if (r > 0) {
    for (int i = 0; i < n; i++) {
      int ev = ((fds[i].ready & NL_READ) ? CURL_CSELECT_IN : 0) |
               ((fds[i].ready & NL_WRITE) ? CURL_CSELECT_OUT : 0);
      if (ev) kick(b, fds[i].fd, ev);
    }
  }
  if (fds != stack) free(fds);
  if (r == -EINTR) return r;
  if (b->timer_at >= 0 && nl_monotonic() >= b->timer_at) {
    b->timer_at = -1;
    kick(b, CURL_SOCKET_TIMEOUT, 0);
  }
  return 0;
}

static int run_batch(lua_State *L, Batch *b, int concurrency, int cb) {
  for (;;) {
    collect_done(b);
    report_done(L, b, cb);
    if (start_more(b, &b->next, concurrency) == 0) return 0;
    if (step(L, b) == -EINTR) return -EINTR;
  }
}

/* ---- results ------------------------------------------------------------ */

static const char *curl_name(CURLcode code) {
  for (int i = 0; nl_curlnames[i].name != NULL; i++)
    if (nl_curlnames[i].code == (int)code) return nl_curlnames[i].name;
  return "CURLE_UNKNOWN";
}

/* The lowercase reason for a failed transfer: "timeout", "connection
 * refused", "could not resolve host: x", "body too large", else curl's own
 * words. */
static void push_reason(lua_State *L, Transfer *t) {
  char text[CURL_ERROR_SIZE + 64];
  long oserr = 0;
  curl_easy_getinfo(t->easy, CURLINFO_OS_ERRNO, &oserr);
  if (t->write_errno != 0) {
    nl_strerror(t->write_errno, text, sizeof text);
  } else if (t->result == CURLE_OPERATION_TIMEDOUT) {
    strcpy(text, "timeout");
  } else if (t->result == CURLE_FILESIZE_EXCEEDED) {
    strcpy(text, "body too large");
  } else if (t->result == CURLE_COULDNT_CONNECT && oserr != 0) {
    nl_strerror((int)oserr, text, sizeof text);
  } else {
    const char *src = t->errbuf[0] ? t->errbuf : curl_easy_strerror(t->result);
    size_t len = strlen(src);
    memcpy(text, src, len + 1);
    while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '.')) text[--len] = '\0';
    text[0] = (char)tolower((unsigned char)text[0]);
  }
  lua_pushstring(L, text);
}

static void push_failure(lua_State *L, Transfer *t) {
  lua_createtable(L, 0, 2);
  push_reason(L, t);
  lua_setfield(L, -2, "error");
  lua_pushstring(L, t->write_errno ? nl_errname(t->write_errno) : curl_name(t->result));
  lua_setfield(L, -2, "code");
}

static void push_result(lua_State *L, Transfer *t) {
  long status = 0;
  double elapsed = 0;
  char *url = NULL;
  if (t->result != CURLE_OK || !t->done) {
    push_failure(L, t);
    return;
  }
  curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &status);
  curl_easy_getinfo(t->easy, CURLINFO_TOTAL_TIME, &elapsed);
  curl_easy_getinfo(t->easy, CURLINFO_EFFECTIVE_URL, &url);
  lua_createtable(L, 0, 6);
  lua_pushinteger(L, status);
  lua_setfield(L, -2, "status");
  lua_pushnumber(L, elapsed);
  lua_setfield(L, -2, "elapsed");
  lua_pushstring(L, url ? url : "");
  lua_setfield(L, -2, "url");
  lua_pushlstring(L, t->head.data ? t->head.data : "", t->head.len);
  lua_setfield(L, -2, "head");
  if (t->keep_sent) {
    lua_pushlstring(L, t->sent.data ? t->sent.data : "", t->sent.len);
    lua_setfield(L, -2, "request_head");
  }
  if (!t->to_file) lua_pushlstring(L, t->body.data ? t->body.data : "", t->body.len);
  else lua_pushinteger(L, (lua_Integer)t->body.len);
  lua_setfield(L, -2, t->to_file ? "written" : "body");
}

/* The results table of a finished batch, which is then released. */
static int push_results(lua_State *L, Batch *b) {
  lua_createtable(L, b->n, 0);
  for (int i = 0; i < b->n; i++) {
    Transfer *t = &b->transfers[i];
    close_output(t);
    push_result(L, t);
    lua_rawseti(L, -2, i + 1);
  }
  batch_release(b);
  return 1;
}

/* perform(specs, concurrency[, on_done]) -> results: runs every spec at
 * once (at most `concurrency` in flight); results[i] is {status, head,
 * body|written, url, elapsed} or {error, code}, in input order; on_done(i,
 * result) is called as each one finishes. Raises "interrupted" on Ctrl-C
 * after every transfer has been stopped and freed. */
/* Loads libcurl on first use; no usable libcurl is a clear error. */
static void need_curl(lua_State *L) {
  const char *err = nl_curl_load();
  if (err != NULL) luaL_error(L, "http needs libcurl (libcurl4): %s", err);
}

static int http_perform(lua_State *L) {
  int n, concurrency, cb;
  Batch *b;
  luaL_checktype(L, 1, LUA_TTABLE);
  need_curl(L);
  n = (int)luaL_len(L, 1);
  concurrency = (int)luaL_optinteger(L, 2, 8);
  luaL_argcheck(L, concurrency >= 1, 2, "concurrency must be at least 1");
  if (!lua_isnoneornil(L, 3)) luaL_checktype(L, 3, LUA_TFUNCTION);
  cb = lua_isnoneornil(L, 3) ? 0 : 3;
  b = nl_restarting(L) ? luaL_testudata(L, 4, NL_BATCH_MT) : NULL;
  if (b != NULL && b->multi != NULL) { /* after a wait in a task */
    lua_settop(L, 4);
    if (run_batch(L, b, concurrency, cb) == -EINTR) {
      batch_release(b);
      return nl_raise_interrupted(L);
    }
    return push_results(L, b);
  }
  lua_settop(L, 3);
  b = batch_new(L, n); /* 4 */
  for (int i = 0; i < n; i++) {
    Transfer *t = &b->transfers[i];
    lua_rawgeti(L, 1, i + 1);
    luaL_checktype(L, -1, LUA_TTABLE);
    t->write_errno = setup_transfer(L, lua_gettop(L), t);
    if (t->write_errno != 0) {
      t->done = 1;
      t->result = CURLE_WRITE_ERROR;
    }
    lua_pop(L, 1);
  }
  if (run_batch(L, b, concurrency, cb) == -EINTR) {
    batch_release(b);
    return nl_raise_interrupted(L);
  }
  return push_results(L, b);
}

/* escape(s): percent-encodes everything but RFC 3986's unreserved set. */
static int http_escape(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  static const char hex[] = "0123456789ABCDEF";
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)s[i];
    if (isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
      luaL_addchar(&b, (char)c);
    } else {
      luaL_addchar(&b, '%');
      luaL_addchar(&b, hex[c >> 4]);
      luaL_addchar(&b, hex[c & 15]);
    }
  }
  luaL_pushresult(&b);
  return 1;
}

/* curl_version() -> the version of the libcurl that http loads. */
static int http_curl_version(lua_State *L) {
  need_curl(L);
  lua_pushstring(L, curl_version_info(CURLVERSION_NOW)->version);
  return 1;
}

static const luaL_Reg batch_meta[] = {
  {"__gc", batch_close},
  {"__close", batch_close},
  {NULL, NULL}
};

static const luaL_Reg http_funcs[] = {
  {"perform", http_perform},
  {"escape", http_escape},
  {"curl_version", http_curl_version},
  {NULL, NULL}
};

/* Requiring http maps no libcurl (a server-only script never needs it):
 * the first transfer, or curl_version, loads it. */
int luaopen_http(lua_State *L) {
  nl_newclass(L, NL_BATCH_MT, NULL, batch_meta);
  luaL_newlib(L, http_funcs);
  lua_pushliteral(L, DEFAULT_USER_AGENT);
  lua_setfield(L, -2, "user_agent");
  nl_runembedded(L, "http", 1);
  return 1;
}
