/*
 * trace.c: the --trace recorder (layer: runtime, no Lua). The socket layer
 * calls one nl_trace_* function per event behind `if (nl_trace_on)`; each
 * builds its fields, then takes the one lock, stamps the time, formats the
 * whole line (text or JSON) and writes it with write(2): lines from any
 * thread come out whole and in the order of their times. What a line
 * names about a descriptor (its endpoint label, bytes so far, whether the
 * peer ended its stream) is kept in a table indexed by descriptor, under
 * the same lock, for the descriptors the socket layer made.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

#include "buf.h"
#include "netlua.h"
#include "sock.h"
#include "trace.h"

#define DATA_MAX 4096 /* bytes of data one event shows with --trace-data */
#define LABEL_MAX 160

enum { MODE_OFF, MODE_TEXT, MODE_JSONL };

int nl_trace_on;
_Thread_local long nl_trace_thread, nl_trace_task;

static struct {
  int mode, data, colour, fd;
  const char *path;
  double t0;
  pthread_mutex_t mu;
} cfg = {MODE_OFF, 0, 0, 2, NULL, 0, PTHREAD_MUTEX_INITIALIZER};

/* ---- options ------------------------------------------------------------- */

static int parse_mode(const char *s) {
  if (strcmp(s, "text") == 0) return MODE_TEXT;
  if (strcmp(s, "jsonl") == 0) return MODE_JSONL;
  return -1;
}

int nl_trace_option(char **argv) {
  const char *a = argv[0];
  if (strcmp(a, "--trace") == 0) return cfg.mode = MODE_TEXT, 1;
  if (strncmp(a, "--trace=", 8) == 0) return (cfg.mode = parse_mode(a + 8)) < 0 ? 0 : 1;
  if (strcmp(a, "--trace-data") == 0) return cfg.data = 1, 1;
  if (strncmp(a, "--trace-file=", 13) == 0 && a[13] != '\0') return cfg.path = a + 13, 1;
  if (strcmp(a, "--trace-file") == 0 && argv[1] != NULL) return cfg.path = argv[1], 2;
  return 0;
}

/* The environment's choice, for what the command line left open. */
static const char *from_environment(void) {
  const char *mode = getenv("NETLUA_TRACE"), *path = getenv("NETLUA_TRACE_FILE");
  const char *data = getenv("NETLUA_TRACE_DATA");
  if (cfg.mode == MODE_OFF && mode != NULL && *mode != '\0' &&
      (cfg.mode = parse_mode(mode)) < 0)
    return "NETLUA_TRACE must be 'text' or 'jsonl'";
  if (cfg.path == NULL && path != NULL && *path != '\0') cfg.path = path;
  if (data != NULL && strcmp(data, "1") == 0) cfg.data = 1;
  if (cfg.mode == MODE_OFF && (cfg.path != NULL || cfg.data)) cfg.mode = MODE_TEXT;
  return NULL;
}

const char *nl_trace_start(void) {
  static char why[512];
  const char *err = from_environment();
  const char *nc = getenv("NO_COLOR");
  if (err != NULL) return err;
  if (cfg.mode == MODE_OFF) return NULL;
  if (cfg.path != NULL) {
    cfg.fd = open(cfg.path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
    if (cfg.fd < 0) {
      snprintf(why, sizeof why, "cannot open trace file %s: %s", cfg.path, strerror(errno));
      return why;
    }
  }
  cfg.colour = cfg.mode == MODE_TEXT && isatty(cfg.fd) && (nc == NULL || *nc == '\0');
  cfg.t0 = nl_monotonic();
  nl_trace_on = 1;
  return NULL;
}

/* ---- what is known about each descriptor (under cfg.mu) -------------------- */

typedef struct FdInfo {
  int known;         /* made by the socket layer, not yet closed */
  int family, type;
  int first;         /* who ended the stream first: FIRST_* */
  int labelled;
  double in, out;    /* bytes received, sent */
  char label[LABEL_MAX];
} FdInfo;

enum { FIRST_UNKNOWN, FIRST_PEER, FIRST_LOCAL };

static FdInfo *fds;
static size_t nfds;

/* The entry of fd, made (zeroed) when growing the table; NULL when out of
 * memory or fd < 0. */
static FdInfo *fd_info(int fd) {
  if (fd < 0) return NULL;
  if ((size_t)fd >= nfds) {
    size_t n = nfds ? nfds : 64;
    FdInfo *more;
    while (n <= (size_t)fd) n *= 2;
    if ((more = realloc(fds, n * sizeof *fds)) == NULL) return NULL;
    memset(more + nfds, 0, (n - nfds) * sizeof *fds);
    fds = more;
    nfds = n;
  }
  return &fds[fd];
}

static void fd_reset(int fd, int family, int type) {
  FdInfo *fi = fd_info(fd);
  if (fi == NULL) return;
  memset(fi, 0, sizeof *fi);
  fi->known = 1;
  fi->family = family;
  fi->type = type;
}

static void fd_relabel(int fd) {
  FdInfo *fi = fd_info(fd);
  if (fi != NULL) fi->labelled = 0;
}

static const char *proto_name(int family, int type) {
  if (type == SOCK_RAW) return "raw";
  if (family == AF_UNIX) return type == SOCK_DGRAM ? "unixdgram" : "unix";
  return type == SOCK_DGRAM ? "udp" : "tcp";
}

/* "127.0.0.1:40512", "[::1]:6789", a Unix path, or "?" */
static void addr_text(const struct sockaddr *sa, socklen_t len, char *out, size_t size) {
  char host[INET6_ADDRSTRLEN];
  int port;
  if (sa == NULL || len == 0) {
    snprintf(out, size, "?");
  } else if (sa->sa_family == AF_INET || sa->sa_family == AF_INET6) {
    nl_addr_format(sa, host, sizeof host, &port);
    snprintf(out, size, sa->sa_family == AF_INET6 ? "[%s]:%d" : "%s:%d", host, port);
  } else if (sa->sa_family == AF_UNIX) {
    const struct sockaddr_un *un = (const void *)sa;
    size_t off = offsetof(struct sockaddr_un, sun_path);
    int n = len > off ? (int)strnlen(un->sun_path, len - off) : 0;
    snprintf(out, size, "%.*s", n, n > 0 ? un->sun_path : "(unnamed)");
  } else {
    snprintf(out, size, "?");
  }
}

static void local_text(int fd, char *out, size_t size) {
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0) len = 0;
  addr_text((struct sockaddr *)&ss, len, out, size);
}

/* "tcp LOCAL -> PEER" ("tcp LOCAL" without a peer), or with `peer` given
 * (a datagram's), that one. */
static const char *fd_label(int fd, const struct sockaddr *peer, socklen_t peerlen) {
  FdInfo *fi = fd_info(fd);
  char local[LABEL_MAX / 2 - 8], remote[LABEL_MAX / 2 - 8];
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  if (fi == NULL) return "?";
  if (fi->labelled && peer == NULL) return fi->label;
  if (!fi->known) { /* not made by the socket layer: ask, keep nothing */
    int type = 0;
    socklen_t tl = sizeof type;
    getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl);
    if (getsockname(fd, (struct sockaddr *)&ss, &len) == 0) fi->family = ss.ss_family;
    fi->type = type;
    len = sizeof ss;
  }
  local_text(fd, local, sizeof local);
  if (peer == NULL && getpeername(fd, (struct sockaddr *)&ss, &len) == 0)
    peer = (struct sockaddr *)&ss, peerlen = len;
  if (peer != NULL) addr_text(peer, peerlen, remote, sizeof remote);
  snprintf(fi->label, sizeof fi->label, peer ? "%s %s -> %s" : "%s %s",
           proto_name(fi->family, fi->type), local, remote);
  fi->labelled = fi->known && (peer == NULL || peer == (struct sockaddr *)&ss);
  return fi->label;
}

/* ---- events ---------------------------------------------------------------- */

typedef struct Ev {
  const char *name;
  int fd;
  int labelled;      /* the line names fd's endpoints: in `label` */
  char label[LABEL_MAX];
  const struct sockaddr *peer; /* a datagram's peer for the label */
  socklen_t peerlen;
  nl_Buf json, text; /* the fields in each form */
  const char *data;  /* --trace-data: the bytes */
  size_t dlen;
} Ev;

static void ev_init(Ev *ev, const char *name, int fd) {
  memset(ev, 0, sizeof *ev);
  ev->name = name;
  ev->fd = fd;
}

static void buf_printf(nl_Buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void buf_printf(nl_Buf *b, const char *fmt, ...) {
  va_list ap;
  int n;
  va_start(ap, fmt);
  n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (n < 0 || nl_buf_reserve(b, (size_t)n + 1) != 0) return;
  va_start(ap, fmt);
  vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
  va_end(ap);
  b->len += (size_t)n;
}

static void json_string(nl_Buf *b, const char *s) {
  nl_buf_add(b, "\"", 1);
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\') buf_printf(b, "\\%c", c);
    else if (c < 0x20 || c >= 0x7f) buf_printf(b, "\\u%04x", c);
    else nl_buf_add(b, s, 1);
  }
  nl_buf_add(b, "\"", 1);
}

static void ev_str(Ev *ev, const char *key, const char *val) {
  buf_printf(&ev->json, ",\"%s\":", key);
  json_string(&ev->json, val);
  buf_printf(&ev->text, " %s=%s", key, val);
}

static void ev_int(Ev *ev, const char *key, long long val) {
  buf_printf(&ev->json, ",\"%s\":%lld", key, val);
  buf_printf(&ev->text, " %s=%lld", key, val);
}

/* A duration in seconds (text: in milliseconds). */
static void ev_dur(Ev *ev, double started) {
  double d = nl_monotonic() - started;
  buf_printf(&ev->json, ",\"dur\":%.6f", d);
  buf_printf(&ev->text, " dur=%.3fms", d * 1e3);
}

static void ev_addr(Ev *ev, const char *key, const struct sockaddr *sa, socklen_t len) {
  char a[LABEL_MAX];
  addr_text(sa, len, a, sizeof a);
  ev_str(ev, key, a);
}

/* err as the events name it: "ECONNREFUSED", "timeout", "closed". */
static void ev_err(Ev *ev, int err) {
  if (err == 0) return;
  ev_str(ev, "error", err == NL_TRACE_TIMEOUT ? "timeout"
                      : err == NL_TRACE_CLOSED ? "closed"
                      : err > 0 ? nl_errname(err) : "failed");
}

static void ev_data(Ev *ev, const char *data, ssize_t n) {
  if (!cfg.data || n <= 0) return;
  ev->data = data;
  ev->dlen = (size_t)n;
}

static const char *who(char *out, size_t size) {
  char th[32];
  if (nl_trace_thread == 0) snprintf(th, sizeof th, "main");
  else snprintf(th, sizeof th, "thread %ld", nl_trace_thread);
  if (nl_trace_task > 0) snprintf(out, size, "%s/task %ld", th, nl_trace_task);
  else snprintf(out, size, "%s", th);
  return out;
}

static void hex_json(nl_Buf *b, const char *data, size_t n) {
  static const char hex[] = "0123456789abcdef";
  nl_buf_add(b, ",\"hex\":\"", 8);
  for (size_t i = 0; i < n; i++) {
    char h[2] = {hex[(unsigned char)data[i] >> 4], hex[(unsigned char)data[i] & 15]};
    nl_buf_add(b, h, 2);
  }
  nl_buf_add(b, "\"", 1);
}

/* curl --trace's layout: offset, 16 bytes in hex, the same as text. */
static void hex_text(nl_Buf *b, const char *data, size_t n) {
  for (size_t off = 0; off < n; off += 16) {
    size_t i, m = n - off < 16 ? n - off : 16;
    buf_printf(b, "%13s%04zx: ", "", off);
    for (i = 0; i < 16; i++) {
      if (i < m) buf_printf(b, "%02x ", (unsigned char)data[off + i]);
      else nl_buf_add(b, "   ", 3);
    }
    nl_buf_add(b, " ", 1);
    for (i = 0; i < m; i++) {
      unsigned char c = (unsigned char)data[off + i];
      char ch = c >= 0x20 && c < 0x7f ? (char)c : '.';
      nl_buf_add(b, &ch, 1);
    }
    nl_buf_add(b, "\n", 1);
  }
}

static void format_json(nl_Buf *out, Ev *ev, double t, size_t shown) {
  buf_printf(out, "{\"t\":%.6f,\"thread\":%ld,\"task\":%ld,\"ev\":\"%s\"", t,
             nl_trace_thread, nl_trace_task, ev->name);
  if (ev->fd >= 0) buf_printf(out, ",\"fd\":%d", ev->fd);
  if (ev->labelled) {
    nl_buf_add(out, ",\"ep\":", 6);
    json_string(out, ev->label);
  }
  if (ev->json.len) nl_buf_add(out, ev->json.data, ev->json.len);
  if (ev->data != NULL) {
    hex_json(out, ev->data, shown);
    if (shown < ev->dlen) buf_printf(out, ",\"cut\":%zu", ev->dlen - shown);
  }
  nl_buf_add(out, "}\n", 2);
}

static void format_text(nl_Buf *out, Ev *ev, double t, size_t shown) {
  char w[80];
  const char *on = cfg.colour ? "\033[1;36m" : "", *off = cfg.colour ? "\033[0m" : "";
  buf_printf(out, "%12.6f %-16s %s%-8s%s", t, who(w, sizeof w), on, ev->name, off);
  if (ev->labelled) buf_printf(out, " %s", ev->label);
  else if (ev->fd >= 0) buf_printf(out, " fd %d", ev->fd);
  if (ev->text.len) nl_buf_add(out, ev->text.data, ev->text.len);
  nl_buf_add(out, "\n", 1);
  if (ev->data != NULL) {
    hex_text(out, ev->data, shown);
    if (shown < ev->dlen)
      buf_printf(out, "%13s(%zu more bytes not shown)\n", "", ev->dlen - shown);
  }
}

static void write_all(const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(cfg.fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return;
    p += w;
    n -= (size_t)w;
  }
}

/* The line, under the lock: stamped, labelled (`labelled`: with fd's
 * endpoints, unless it has its label already), formatted and written. */
static void ev_emit(Ev *ev, int labelled) {
  nl_Buf out = {NULL, 0, 0};
  size_t shown = ev->dlen < DATA_MAX ? ev->dlen : DATA_MAX;
  double t;
  pthread_mutex_lock(&cfg.mu);
  t = nl_monotonic() - cfg.t0;
  if (labelled && !ev->labelled && ev->fd >= 0) {
    snprintf(ev->label, sizeof ev->label, "%s", fd_label(ev->fd, ev->peer, ev->peerlen));
    ev->labelled = 1;
  }
  if (cfg.mode == MODE_JSONL) format_json(&out, ev, t, shown);
  else format_text(&out, ev, t, shown);
  if (out.data != NULL) write_all(out.data, out.len);
  pthread_mutex_unlock(&cfg.mu);
  nl_buf_free(&out);
  nl_buf_free(&ev->json);
  nl_buf_free(&ev->text);
}

/* ---- the events the socket layer reports --------------------------------- */

void nl_trace_lookup(const char *host, const char *serv, int gai,
                     const struct addrinfo *res, double started) {
  int saved = errno;
  nl_Buf answers = {NULL, 0, 0}, words = {NULL, 0, 0};
  Ev ev;
  if (nl_is_numeric_host(host)) return; /* no lookup: the address itself */
  ev_init(&ev, "lookup", -1);
  ev_str(&ev, "host", host ? host : "*");
  if (serv != NULL) ev_str(&ev, "port", serv);
  for (const struct addrinfo *ai = res; gai == 0 && ai != NULL; ai = ai->ai_next) {
    char a[INET6_ADDRSTRLEN], q[INET6_ADDRSTRLEN + 4];
    int port;
    if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6) continue;
    nl_addr_format(ai->ai_addr, a, sizeof a, &port);
    snprintf(q, sizeof q, "\"%s\"", a);
    if (answers.data != NULL && strstr(answers.data, q) != NULL) continue; /* per socktype */
    buf_printf(&answers, "%s%s", answers.len ? "," : "", q);
    buf_printf(&words, "%s%s", words.len ? "," : "", a);
  }
  buf_printf(&ev.json, ",\"answers\":[%s]", answers.data ? answers.data : "");
  buf_printf(&ev.text, " answers=%s", words.data ? words.data : "(none)");
  nl_buf_free(&answers);
  nl_buf_free(&words);
  if (gai != 0)
    ev_str(&ev, "error", gai == NL_EAI_TIMEOUT ? "timeout"
                         : gai == NL_EAI_INTERRUPTED ? "interrupted" : gai_strerror(gai));
  ev_dur(&ev, started);
  ev_emit(&ev, 0);
  errno = saved;
}

void nl_trace_socket(int fd, int family, int type) {
  int saved = errno;
  Ev ev;
  pthread_mutex_lock(&cfg.mu);
  fd_reset(fd, family, type & ~(SOCK_NONBLOCK | SOCK_CLOEXEC));
  pthread_mutex_unlock(&cfg.mu);
  ev_init(&ev, "socket", fd);
  ev_str(&ev, "proto", proto_name(family, type & ~(SOCK_NONBLOCK | SOCK_CLOEXEC)));
  ev_str(&ev, "family", family == AF_INET6 ? "inet6" : family == AF_INET ? "inet"
                        : family == AF_UNIX ? "unix" : "other");
  ev_emit(&ev, 0);
  errno = saved;
}

/* An event on fd that changes what its label says. */
static void ev_relabel(int fd) {
  pthread_mutex_lock(&cfg.mu);
  fd_relabel(fd);
  pthread_mutex_unlock(&cfg.mu);
}

void nl_trace_bind(int fd, const struct sockaddr *sa, socklen_t len, int err) {
  int saved = errno;
  Ev ev;
  ev_relabel(fd);
  ev_init(&ev, "bind", fd);
  ev_addr(&ev, "addr", sa, len);
  ev_err(&ev, err);
  ev_emit(&ev, 1);
  errno = saved;
}

void nl_trace_listen(int fd, int backlog, int err) {
  int saved = errno;
  Ev ev;
  ev_relabel(fd);
  ev_init(&ev, "listen", fd);
  ev_int(&ev, "backlog", backlog);
  ev_err(&ev, err);
  ev_emit(&ev, 1);
  errno = saved;
}

void nl_trace_connect(int fd, const struct sockaddr *sa, socklen_t len, int err,
                      double started) {
  int saved = errno;
  Ev ev;
  ev_relabel(fd);
  ev_init(&ev, "connect", fd);
  if (err != 0) ev.peer = sa, ev.peerlen = len; /* the address it tried */
  ev_addr(&ev, "addr", sa, len);
  ev_str(&ev, "result", err == 0 ? "ok" : "failed");
  ev_err(&ev, err);
  ev_dur(&ev, started);
  ev_emit(&ev, 1);
  errno = saved;
}

void nl_trace_accept(int listen_fd, int fd, const struct sockaddr *peer, socklen_t len) {
  int saved = errno;
  Ev ev;
  FdInfo *li;
  pthread_mutex_lock(&cfg.mu);
  li = fd_info(listen_fd);
  if (li != NULL && li->known) fd_reset(fd, li->family, li->type);
  else fd_reset(fd, peer->sa_family, SOCK_STREAM);
  pthread_mutex_unlock(&cfg.mu);
  ev_init(&ev, "accept", fd);
  ev_int(&ev, "listen_fd", listen_fd);
  ev_addr(&ev, "peer", peer, len);
  ev_emit(&ev, 1);
  errno = saved;
}

/* Counts n bytes in or out of fd, notes an end of stream. */
static void fd_count(int fd, ssize_t n, int in) {
  FdInfo *fi;
  pthread_mutex_lock(&cfg.mu);
  fi = fd_info(fd);
  if (fi != NULL && n > 0) *(in ? &fi->in : &fi->out) += (double)n;
  if (fi != NULL && n == 0 && in && fi->first == FIRST_UNKNOWN) fi->first = FIRST_PEER;
  pthread_mutex_unlock(&cfg.mu);
}

static int not_an_event(ssize_t n, int err) {
  return n < 0 && (err == EAGAIN || err == EWOULDBLOCK || err == EINTR);
}

/* A send or receive: bytes, or its error. */
static void io_event(const char *name, int fd, const char *data, ssize_t n, int err,
                     const struct sockaddr *peer, socklen_t len) {
  Ev ev;
  int eof = n == 0 && strcmp(name, "recv") == 0;
  fd_count(fd, n, name[0] == 'r');
  ev_init(&ev, eof ? "eof" : name, fd);
  ev.peer = peer;
  ev.peerlen = len;
  if (n > 0 || (n == 0 && !eof)) ev_int(&ev, "bytes", n);
  if (n < 0) ev_err(&ev, err);
  ev_data(&ev, data, n);
  ev_emit(&ev, 1);
}

void nl_trace_send(int fd, const char *data, ssize_t n, int err) {
  if (not_an_event(n, err)) return;
  io_event("send", fd, data, n, err, NULL, 0);
  errno = err;
}

void nl_trace_recv(int fd, const char *data, ssize_t n, int err) {
  if (not_an_event(n, err)) return;
  io_event("recv", fd, data, n, err, NULL, 0);
  errno = err;
}

void nl_trace_sendto(int fd, const char *data, ssize_t n, int err,
                     const struct sockaddr *peer, socklen_t len) {
  if (not_an_event(n, err)) return;
  io_event("sendto", fd, data, n, err, len > 0 ? peer : NULL, len);
  errno = err;
}

void nl_trace_recvfrom(int fd, const char *data, ssize_t n, int err,
                       const struct sockaddr *peer, socklen_t len) {
  if (not_an_event(n, err)) return;
  io_event("recvfrom", fd, data, n, err, n >= 0 && len > 0 ? peer : NULL, len);
  errno = err;
}

void nl_trace_shutdown(int fd, int how) {
  int saved = errno;
  Ev ev;
  FdInfo *fi;
  pthread_mutex_lock(&cfg.mu);
  fi = fd_info(fd);
  if (fi != NULL && how != SHUT_RD && fi->first == FIRST_UNKNOWN) fi->first = FIRST_LOCAL;
  pthread_mutex_unlock(&cfg.mu);
  ev_init(&ev, "shutdown", fd);
  ev_str(&ev, "how", how == SHUT_RD ? "receive" : how == SHUT_WR ? "send" : "both");
  ev_emit(&ev, 1);
  errno = saved;
}

/* Who ended a connected stream first, when nobody's end was seen yet: a
 * peek finds the peer's end of stream queued (the peer), or nothing to
 * read (this side); with data still unread it cannot tell. */
static int first_at_close(int fd) {
  char c;
  ssize_t n = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
  if (n == 0) return FIRST_PEER;
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return FIRST_LOCAL;
  return FIRST_UNKNOWN;
}

void nl_trace_close(int fd) {
  int saved = errno, known, stream = 0, first = FIRST_UNKNOWN;
  double in = 0, out = 0;
  Ev ev;
  FdInfo *fi;
  ev_init(&ev, "close", fd);
  pthread_mutex_lock(&cfg.mu);
  fi = fd >= 0 && (size_t)fd < nfds ? &fds[fd] : NULL;
  known = fi != NULL && fi->known;
  if (known) {
    snprintf(ev.label, sizeof ev.label, "%s", fd_label(fd, NULL, 0));
    ev.labelled = 1;
    stream = fi->type == SOCK_STREAM && strstr(ev.label, " -> ") != NULL;
    first = fi->first, in = fi->in, out = fi->out;
    memset(fi, 0, sizeof *fi);
  }
  pthread_mutex_unlock(&cfg.mu);
  if (!known) return;
  ev_int(&ev, "sent", (long long)out);
  ev_int(&ev, "received", (long long)in);
  if (stream && first == FIRST_UNKNOWN) first = first_at_close(fd);
  if (stream && first != FIRST_UNKNOWN) ev_str(&ev, "first", first == FIRST_PEER ? "peer" : "local");
  ev_emit(&ev, 0);
  errno = saved;
}

void nl_trace_timeout(int fd, int events) {
  int saved = errno;
  Ev ev;
  ev_init(&ev, "timeout", fd);
  ev_str(&ev, "waiting", events & NL_WRITE ? (events & NL_READ ? "read/write" : "write")
                                           : "read");
  ev_emit(&ev, 1);
  errno = saved;
}
