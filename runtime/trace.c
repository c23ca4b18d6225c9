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
#include <stdatomic.h>
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
  atexit(nl_trace_flush);
  return NULL;
}

/* ---- what is known about each descriptor (under cfg.mu) -------------------- */

typedef struct FdInfo {
  int known;         /* made by the socket layer, not yet closed */
  int family, type;
  int first;         /* who ended the stream first: FIRST_* */
  double request_at; /* http.server: when its current request was read */
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

/* An event's fields, in both forms, in fixed buffers (a field that does
 * not fit is cut short): an event allocates nothing. */
#define FIELDS_MAX 2560 /* an explanation: up to ~400 bytes */

typedef struct Ev {
  const char *name;
  int fd;
  int labelled;      /* the line names fd's endpoints: in `label` */
  char label[LABEL_MAX];
  const struct sockaddr *peer; /* a datagram's peer for the label */
  socklen_t peerlen;
  int count;         /* bytes to count on fd: 1 in, 2 out */
  ssize_t n;
  char json[FIELDS_MAX], text[FIELDS_MAX];
  size_t jlen, tlen;
  const char *data;  /* --trace-data: the bytes */
  size_t dlen;
  int hidden;        /* the bytes are not at hand: none shown */
} Ev;

static void ev_init(Ev *ev, const char *name, int fd) {
  ev->name = name;
  ev->fd = fd;
  ev->labelled = 0;
  ev->peer = NULL;
  ev->peerlen = 0;
  ev->count = 0;
  ev->jlen = ev->tlen = 0;
  ev->data = NULL;
  ev->dlen = 0;
  ev->hidden = 0;
}

/* Writers into memory known to be large enough: each returns the end. */
static char *put(char *w, const char *s, size_t n) {
  memcpy(w, s, n);
  return w + n;
}

static char *puts0(char *w, const char *s) { return put(w, s, strlen(s)); }

static char *put_uint(char *w, unsigned long long v) {
  char digits[24];
  int i = 0;
  do digits[i++] = (char)('0' + v % 10); while ((v /= 10) != 0);
  while (i > 0) *w++ = digits[--i];
  return w;
}

static char *put_int(char *w, long long v) {
  if (v < 0) *w++ = '-';
  return put_uint(w, v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v);
}

/* Seconds with `decimals` places (3 or 6), no printf (it is most of the
 * cost of an event). */
static char *put_fixed(char *w, double x, int decimals) {
  double scale = decimals == 6 ? 1e6 : 1e3;
  unsigned long long units = x > 0 ? (unsigned long long)(x * scale + 0.5) : 0;
  unsigned long long whole = units / (unsigned long long)scale;
  unsigned long long frac = units % (unsigned long long)scale;
  char f[8];
  w = put_uint(w, whole);
  *w++ = '.';
  for (int i = decimals - 1; i >= 0; i--, frac /= 10) f[i] = (char)('0' + frac % 10);
  return put(w, f, (size_t)decimals);
}

/* s as a JSON string: at most 6 bytes per byte of s, plus 2. */
static char *put_json(char *w, const char *s) {
  static const char hex[] = "0123456789abcdef";
  const char *p = s;
  *w++ = '"';
  while (*p >= 0x20 && *p < 0x7f && *p != '"' && *p != '\\') p++;
  w = put(w, s, (size_t)(p - s)); /* the plain part at once */
  s = p;
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\') *w++ = '\\', *w++ = (char)c;
    else if (c < 0x20 || c >= 0x7f)
      w = put(w, "\\u00", 4), *w++ = hex[c >> 4], *w++ = hex[c & 15];
    else *w++ = (char)c;
  }
  *w++ = '"';
  return w;
}

/* Room for one more field of at most `n` bytes in both forms? */
static int ev_room(Ev *ev, size_t n) {
  return ev->jlen + 6 * n + 40 < FIELDS_MAX && ev->tlen + n + 40 < FIELDS_MAX;
}

/* ,"key": and  key= */
static void ev_key(Ev *ev, const char *key) {
  char *j = ev->json + ev->jlen, *t = ev->text + ev->tlen;
  j = put(j, ",\"", 2), j = puts0(j, key), j = put(j, "\":", 2);
  t = put(t, " ", 1), t = puts0(t, key), t = put(t, "=", 1);
  ev->jlen = (size_t)(j - ev->json);
  ev->tlen = (size_t)(t - ev->text);
}

static void ev_str(Ev *ev, const char *key, const char *val) {
  size_t n = strlen(val);
  if (!ev_room(ev, n + strlen(key))) return;
  ev_key(ev, key);
  ev->jlen = (size_t)(put_json(ev->json + ev->jlen, val) - ev->json);
  ev->tlen = (size_t)(put(ev->text + ev->tlen, val, n) - ev->text);
}

static void ev_int(Ev *ev, const char *key, long long val) {
  if (!ev_room(ev, 24 + strlen(key))) return;
  ev_key(ev, key);
  ev->jlen = (size_t)(put_int(ev->json + ev->jlen, val) - ev->json);
  ev->tlen = (size_t)(put_int(ev->text + ev->tlen, val) - ev->text);
}

/* A duration in seconds (text: in milliseconds). */
static void ev_dur(Ev *ev, double started) {
  double d = nl_monotonic() - started;
  if (!ev_room(ev, 32)) return;
  ev_key(ev, "dur");
  ev->jlen = (size_t)(put_fixed(ev->json + ev->jlen, d, 6) - ev->json);
  ev->tlen = (size_t)(put(put_fixed(ev->text + ev->tlen, d * 1e3, 3), "ms", 2) - ev->text);
}

/* A list of strings (text: joined by commas). */
static void ev_list(Ev *ev, const char *key, char items[][INET6_ADDRSTRLEN], int n) {
  char *j, *t;
  if (!ev_room(ev, (size_t)n * INET6_ADDRSTRLEN + 8)) return;
  ev_key(ev, key);
  j = ev->json + ev->jlen, t = ev->text + ev->tlen;
  *j++ = '[';
  for (int i = 0; i < n; i++) {
    if (i > 0) *j++ = ',', *t++ = ',';
    j = put_json(j, items[i]);
    t = puts0(t, items[i]);
  }
  *j++ = ']';
  if (n == 0) t = puts0(t, "(none)");
  ev->jlen = (size_t)(j - ev->json);
  ev->tlen = (size_t)(t - ev->text);
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

/* --trace-data: the bytes, or (data NULL: a sendfile's, never in memory)
 * only how many there were. */
static void ev_data(Ev *ev, const char *data, ssize_t n) {
  if (!cfg.data || n <= 0) return;
  ev->data = data != NULL ? data : "";
  ev->dlen = (size_t)n;
  ev->hidden = data == NULL;
}

/* "main", "thread 2", "main/task 3", padded to 16 columns. */
static char *put_who(char *w) {
  char *start = w;
  if (nl_trace_thread == 0) w = put(w, "main", 4);
  else w = put_int(put(w, "thread ", 7), nl_trace_thread);
  if (nl_trace_task > 0) w = put_int(put(w, "/task ", 6), nl_trace_task);
  while (w - start < 16) *w++ = ' ';
  return w;
}

static const char hexdigits[] = "0123456789abcdef";

static char *put_hex(char *w, const char *data, size_t n) {
  for (size_t i = 0; i < n; i++) {
    *w++ = hexdigits[(unsigned char)data[i] >> 4];
    *w++ = hexdigits[(unsigned char)data[i] & 15];
  }
  return w;
}

/* curl --trace's layout: offset, 16 bytes in hex, the same as text;
 * 82 bytes per line at most. */
static char *put_dump(char *w, const char *data, size_t n) {
  for (size_t off = 0; off < n; off += 16) {
    size_t i, m = n - off < 16 ? n - off : 16;
    memset(w, ' ', 13), w += 13;
    for (i = 0; i < 4; i++) *w++ = hexdigits[(off >> (12 - 4 * i)) & 15];
    w = put(w, ": ", 2);
    for (i = 0; i < 16; i++) {
      if (i < m) w = put_hex(w, data + off + i, 1), *w++ = ' ';
      else w = put(w, "   ", 3);
    }
    *w++ = ' ';
    for (i = 0; i < m; i++) {
      unsigned char c = (unsigned char)data[off + i];
      *w++ = c >= 0x20 && c < 0x7f ? (char)c : '.';
    }
    *w++ = '\n';
  }
  return w;
}

/* An upper bound of the bytes an event's line takes. */
static size_t ev_size(const Ev *ev, size_t shown) {
  return 256 + 6 * LABEL_MAX + ev->jlen + ev->tlen + 82 * (shown / 16 + 1) + 2 * shown;
}

static char *format_json(char *w, Ev *ev, double t, size_t shown) {
  w = put_fixed(put(w, "{\"t\":", 5), t, 6);
  w = put_int(put(w, ",\"thread\":", 10), nl_trace_thread);
  w = put_int(put(w, ",\"task\":", 8), nl_trace_task);
  w = put(puts0(put(w, ",\"ev\":\"", 7), ev->name), "\"", 1);
  if (ev->fd >= 0) w = put_int(put(w, ",\"fd\":", 6), ev->fd);
  if (ev->labelled) w = put_json(put(w, ",\"ep\":", 6), ev->label);
  w = put(w, ev->json, ev->jlen);
  if (ev->data != NULL) {
    w = put(put_hex(put(w, ",\"hex\":\"", 8), ev->data, shown), "\"", 1);
    if (shown < ev->dlen) w = put_uint(put(w, ",\"cut\":", 7), ev->dlen - shown);
  }
  return put(w, "}\n", 2);
}

static char *format_text(char *w, Ev *ev, double t, size_t shown) {
  char *start = w;
  size_t n = strlen(ev->name);
  w = put_fixed(w, t, 6);
  if (w - start < 12) { /* right-aligned in 12 columns */
    size_t len = (size_t)(w - start), pad = 12 - len;
    memmove(start + pad, start, len);
    memset(start, ' ', pad);
    w = start + 12;
  }
  w = put_who(put(w, " ", 1));
  *w++ = ' ';
  if (cfg.colour) w = puts0(w, "\033[1;36m");
  w = put(w, ev->name, n);
  if (cfg.colour) w = puts0(w, "\033[0m");
  for (; n < 8; n++) *w++ = ' ';
  if (ev->labelled) w = puts0(put(w, " ", 1), ev->label);
  else if (ev->fd >= 0) w = put_int(put(w, " fd ", 4), ev->fd);
  w = put(w, ev->text, ev->tlen);
  *w++ = '\n';
  if (ev->data != NULL) {
    w = put_dump(w, ev->data, shown);
    if (shown < ev->dlen) {
      memset(w, ' ', 13), w += 13;
      w = puts0(put_uint(put(w, "(", 1), ev->dlen - shown), " more bytes not shown)\n");
    }
  }
  return w;
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

/* Lines not yet written (to a file only: they go out before the thread
 * waits, at exit, when FLUSH_BYTES pile up or the oldest is FLUSH_AGE
 * seconds old). Under cfg.mu. */
#define FLUSH_BYTES 65536
#define FLUSH_AGE 0.1
static nl_Buf pending;
static double pending_since;

static void flush_locked(void) {
  if (pending.len > 0) write_all(pending.data, pending.len);
  pending.len = 0;
}

void nl_trace_flush(void) {
  pthread_mutex_lock(&cfg.mu);
  flush_locked();
  pthread_mutex_unlock(&cfg.mu);
}

static void count_locked(Ev *ev) {
  FdInfo *fi = fd_info(ev->fd);
  if (fi == NULL) return;
  if (ev->n > 0) *(ev->count == 1 ? &fi->in : &fi->out) += (double)ev->n;
  if (ev->n == 0 && ev->count == 1 && fi->first == FIRST_UNKNOWN) fi->first = FIRST_PEER;
}

/* The line, under the lock: counted, stamped, labelled (`labelled`: with
 * fd's endpoints, unless it has its label already), formatted and written
 * or kept for the next flush. */
static void ev_emit(Ev *ev, int labelled) {
  size_t shown = ev->hidden ? 0 : ev->dlen < DATA_MAX ? ev->dlen : DATA_MAX;
  double t;
  char *w;
  pthread_mutex_lock(&cfg.mu);
  t = nl_monotonic() - cfg.t0;
  if (ev->count) count_locked(ev);
  if (labelled && !ev->labelled && ev->fd >= 0) {
    const char *label = fd_label(ev->fd, ev->peer, ev->peerlen);
    memcpy(ev->label, label, strlen(label) + 1); /* both LABEL_MAX */
    ev->labelled = 1;
  }
  if (nl_buf_reserve(&pending, ev_size(ev, shown)) == 0) {
    if (pending.len == 0) pending_since = t;
    w = pending.data + pending.len;
    w = cfg.mode == MODE_JSONL ? format_json(w, ev, t, shown) : format_text(w, ev, t, shown);
    pending.len = (size_t)(w - pending.data);
  }
  if (cfg.path == NULL || pending.len >= FLUSH_BYTES || t - pending_since >= FLUSH_AGE)
    flush_locked();
  pthread_mutex_unlock(&cfg.mu);
}

/* ---- the events the socket layer reports --------------------------------- */

#define ANSWERS_MAX 8 /* addresses a lookup event lists */

void nl_trace_lookup(const char *host, const char *serv, int gai,
                     const struct addrinfo *res, double started) {
  int saved = errno, n = 0;
  char answers[ANSWERS_MAX][INET6_ADDRSTRLEN];
  Ev ev;
  if (nl_is_numeric_host(host)) return; /* no lookup: the address itself */
  ev_init(&ev, "lookup", -1);
  ev_str(&ev, "host", host);
  if (serv != NULL) ev_str(&ev, "port", serv);
  for (const struct addrinfo *ai = res; gai == 0 && ai != NULL && n < ANSWERS_MAX;
       ai = ai->ai_next) {
    int port, seen = 0;
    if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6) continue;
    nl_addr_format(ai->ai_addr, answers[n], sizeof answers[n], &port);
    for (int k = 0; k < n && !seen; k++) seen = strcmp(answers[k], answers[n]) == 0;
    n += !seen; /* one per address, not per socket type */
  }
  ev_list(&ev, "answers", answers, n);
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

/* Held from right before a send's system call until its line is written
 * (nl_trace_sending ... nl_trace_send): a receive's line waits for it, so a
 * recv never comes before the send whose bytes it got. */
static pthread_mutex_t sending_mu = PTHREAD_MUTEX_INITIALIZER;

void nl_trace_sending(void) {
  int saved = errno;
  pthread_mutex_lock(&sending_mu);
  errno = saved;
}

static void sent(void) {
  pthread_mutex_unlock(&sending_mu);
}

/* A receive waits for the sends under way to be listed first. */
static void after_sends(void) {
  pthread_mutex_lock(&sending_mu);
  pthread_mutex_unlock(&sending_mu);
}

static int not_an_event(ssize_t n, int err) {
  return n < 0 && (err == EAGAIN || err == EWOULDBLOCK || err == EINTR);
}

/* A send or receive: bytes, or its error. */
static void io_event(const char *name, int fd, const char *data, ssize_t n, int err,
                     const struct sockaddr *peer, socklen_t len) {
  Ev ev;
  int eof = n == 0 && strcmp(name, "recv") == 0;
  ev_init(&ev, eof ? "eof" : name, fd);
  ev.count = name[0] == 'r' ? 1 : 2;
  ev.n = n;
  ev.peer = peer;
  ev.peerlen = len;
  if (n > 0 || (n == 0 && !eof)) ev_int(&ev, "bytes", n);
  if (n < 0) ev_err(&ev, err);
  ev_data(&ev, data, n);
  ev_emit(&ev, 1);
}

void nl_trace_send(int fd, const char *data, ssize_t n, int err) {
  if (!not_an_event(n, err)) io_event("send", fd, data, n, err, NULL, 0);
  sent();
  errno = err;
}

void nl_trace_recv(int fd, const char *data, ssize_t n, int err) {
  if (not_an_event(n, err)) return;
  after_sends();
  io_event("recv", fd, data, n, err, NULL, 0);
  errno = err;
}

void nl_trace_sendto(int fd, const char *data, ssize_t n, int err,
                     const struct sockaddr *peer, socklen_t len) {
  if (!not_an_event(n, err)) io_event("sendto", fd, data, n, err, len > 0 ? peer : NULL, len);
  sent();
  errno = err;
}

void nl_trace_recvfrom(int fd, const char *data, ssize_t n, int err,
                       const struct sockaddr *peer, socklen_t len) {
  if (not_an_event(n, err)) return;
  after_sends();
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

void nl_trace_explain(int fd, const char *why) {
  int saved = errno;
  Ev ev;
  ev_init(&ev, "explain", fd);
  ev_str(&ev, "why", why);
  ev_emit(&ev, fd >= 0);
  errno = saved;
}

/* ---- tasks and threads ------------------------------------------------------ */

void nl_trace_spawn(long task) {
  int saved = errno;
  Ev ev;
  ev_init(&ev, "spawn", -1);
  ev_int(&ev, "child", task);
  ev_emit(&ev, 0);
  errno = saved;
}

void nl_trace_wait(int fd, int events, int count, double deadline) {
  int saved = errno;
  Ev ev;
  ev_init(&ev, "wait", count > 0 ? fd : -1);
  if (count > 0)
    ev_str(&ev, "waiting", events & NL_WRITE ? (events & NL_READ ? "read/write" : "write")
                                             : "read");
  else
    ev_str(&ev, "waiting", deadline >= 0 ? "timer" : "wake-up");
  if (count > 1) ev_int(&ev, "fds", count);
  if (deadline >= 0) {
    double left = deadline - nl_monotonic();
    ev_key(&ev, "limit");
    ev.jlen = (size_t)(put_fixed(ev.json + ev.jlen, left, 6) - ev.json);
    ev.tlen = (size_t)(put(put_fixed(ev.text + ev.tlen, left, 3), "s", 1) - ev.text);
  }
  ev_emit(&ev, count > 0);
  errno = saved;
}

void nl_trace_wake(long task, int result) {
  int saved = errno;
  Ev ev;
  ev_init(&ev, "wake", -1);
  ev_int(&ev, "woken", task);
  ev_str(&ev, "result", result > 0 ? "ready" : result == 0 ? "timeout" : "interrupted");
  ev_emit(&ev, 0);
  errno = saved;
}

void nl_trace_thread_event(const char *what, const char *name) {
  int saved = errno;
  Ev ev;
  ev_init(&ev, "thread", -1);
  ev_str(&ev, "state", what);
  ev_str(&ev, "name", name);
  ev_emit(&ev, 0);
  errno = saved;
}

/* ---- the HTTP client (libcurl's debug callback) ----------------------------- */

/* The first line of data (without its line end), at most LABEL_MAX bytes. */
static void first_line(const char *data, size_t size, char *out) {
  size_t n = 0;
  while (n < size && n + 1 < LABEL_MAX && data[n] != '\r' && data[n] != '\n') n++;
  memcpy(out, data, n);
  out[n] = '\0';
}

/* "tcp LOCAL -> PEER" from libcurl's numbers; 0 when it has none yet. */
static int curl_label(char *out, const char *lip, long lport, const char *pip, long pport) {
  const char *lb = strchr(lip ? lip : "", ':') ? "[" : "", *le = *lb ? "]" : "";
  const char *pb = strchr(pip ? pip : "", ':') ? "[" : "", *pe = *pb ? "]" : "";
  if (lip == NULL || pip == NULL || *pip == '\0' || pport <= 0) return 0;
  snprintf(out, LABEL_MAX, "tcp %s%.*s%s:%ld -> %s%.*s%s:%ld", lb, INET6_ADDRSTRLEN, lip, le,
           lport, pb, INET6_ADDRSTRLEN, pip, pe, pport);
  return 1;
}

void nl_trace_curl(int kind, const char *local_ip, long local_port, const char *peer_ip,
                   long peer_port, const char *data, size_t size) {
  static const char *const names[] = {"curl", "http_out", "http_in", "body_out", "body_in"};
  int saved = errno;
  char line[LABEL_MAX];
  Ev ev;
  if (kind == NL_TRACE_CURL_HEAD_IN && (size < 5 || memcmp(data, "HTTP/", 5) != 0)) return;
  ev_init(&ev, names[kind], -1);
  ev.labelled = curl_label(ev.label, local_ip, local_port, peer_ip, peer_port);
  if (kind <= NL_TRACE_CURL_HEAD_IN) {
    first_line(data, size, line);
    ev_str(&ev, kind == NL_TRACE_CURL_TEXT ? "text" : "line", line);
  }
  if (kind != NL_TRACE_CURL_TEXT) ev_int(&ev, "bytes", (long long)size);
  if (kind == NL_TRACE_CURL_HEAD_OUT || kind >= NL_TRACE_CURL_BODY_OUT)
    ev_data(&ev, data, (ssize_t)size);
  ev_emit(&ev, 0);
  errno = saved;
}

/* ---- TLS ---------------------------------------------------------------------- */

void nl_trace_tls(int fd, const char *version, const char *cipher, const char *peer,
                  const char *verify, const char *error) {
  int saved = errno;
  Ev ev;
  ev_init(&ev, "tls", fd);
  if (version != NULL) ev_str(&ev, "version", version);
  if (cipher != NULL) ev_str(&ev, "cipher", cipher);
  if (peer != NULL && *peer != '\0') ev_str(&ev, "peer_cert", peer);
  if (verify != NULL) ev_str(&ev, "verify", verify);
  if (error != NULL) ev_str(&ev, "error", error);
  ev_emit(&ev, 1);
  errno = saved;
}

/* ---- http.server ------------------------------------------------------------ */

void nl_trace_http_request(int fd, const char *method, const char *target) {
  int saved = errno;
  FdInfo *fi;
  Ev ev;
  pthread_mutex_lock(&cfg.mu);
  if ((fi = fd_info(fd)) != NULL) fi->request_at = nl_monotonic();
  pthread_mutex_unlock(&cfg.mu);
  ev_init(&ev, "request", fd);
  ev_str(&ev, "method", method);
  ev_str(&ev, "target", target != NULL ? target : "");
  ev_emit(&ev, 1);
  errno = saved;
}

void nl_trace_http_reply(int fd, int status, unsigned long long length) {
  int saved = errno;
  FdInfo *fi;
  double at = 0;
  Ev ev;
  pthread_mutex_lock(&cfg.mu);
  if ((fi = fd_info(fd)) != NULL) at = fi->request_at, fi->request_at = 0; /* one reply */
  pthread_mutex_unlock(&cfg.mu);
  ev_init(&ev, "reply", fd);
  ev_int(&ev, "status", status);
  ev_int(&ev, "bytes", (long long)length);
  if (at > 0) ev_dur(&ev, at);
  ev_emit(&ev, 1);
  errno = saved;
}

/* ---- TLS reads and writes, channels, the Lua halves' events ------------------ */

void nl_trace_tls_io(int fd, int out, const char *data, size_t n) {
  int saved = errno;
  Ev ev;
  ev_init(&ev, out ? "tls_send" : "tls_recv", fd);
  ev_int(&ev, "bytes", (long long)n);
  ev_data(&ev, data, (ssize_t)n);
  ev_emit(&ev, 1);
  errno = saved;
}

long nl_trace_next_channel(void) {
  static atomic_long made;
  return atomic_fetch_add(&made, 1) + 1;
}

void nl_trace_channel(int out, long channel, long depth, const char *value,
                      const char *error) {
  int saved = errno;
  Ev ev;
  ev_init(&ev, out ? "chan_send" : "chan_recv", -1);
  ev_int(&ev, "channel", channel);
  if (value != NULL) ev_str(&ev, "value", value);
  if (error != NULL) ev_str(&ev, "error", error);
  else ev_int(&ev, "depth", depth);
  ev_emit(&ev, 0);
  errno = saved;
}

void nl_trace_note(const char *name, int fd, int n, const char *const keys[],
                   const char *const strs[], const long long ints[]) {
  int saved = errno;
  Ev ev;
  ev_init(&ev, name, fd);
  for (int i = 0; i < n; i++) {
    if (strs[i] != NULL) ev_str(&ev, keys[i], strs[i]);
    else ev_int(&ev, keys[i], ints[i]);
  }
  ev_emit(&ev, fd >= 0);
  errno = saved;
}
