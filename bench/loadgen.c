/*
 * loadgen.c: the benchmark's load generator and process timer (bench/ only,
 * not part of netlua). One epoll loop, non-blocking sockets, one machine-
 * readable "RESULT key=value ..." line on stdout per invocation.
 *
 *   loadgen time PORT CONC SECS        CONC clients: connect, read to EOF, close, repeat
 *   loadgen echo PORT CONNS SECS SIZE  CONNS persistent clients: send SIZE bytes, read them back
 *   loadgen ws PORT CONNS SECS SIZE    the same over WebSocket (GET /echo upgraded): a masked
 *                                      text frame of SIZE bytes out, the server's frame back
 *   loadgen wsidle PORT CONNS PID      RSS of server PID with CONNS idle WebSockets on /echo
 *                                      minus its RSS before they connected, per connection
 *   loadgen sse PORT SUBS              SUBS clients hold GET /events open; then one
 *                                      POST /publish: time until the last has the event
 *   loadgen freeport                   print a port the OS considers free on 127.0.0.1
 *   loadgen wait PORT SECS             exit 0 once 127.0.0.1:PORT accepts a connection
 *   loadgen run N CMD [ARGS...]        run CMD N times (stdout to /dev/null), wall time of each
 *   loadgen copy FILE OUT              FILE over one TCP connection on 127.0.0.1 into OUT
 *                                      (a forked sender, this process the receiver): the time
 *                                      from the fork until OUT is written and closed, and
 *                                      the CPU time of both
 *
 * Every target is 127.0.0.1. Time-mode clients bind 127.0.0.x source
 * addresses (IP_BIND_ADDRESS_NO_PORT) so a fast server does not exhaust the
 * ephemeral ports with its TIME_WAIT sockets during a run.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAXCONN 4096
#define NSRC 200            /* 127.0.0.2 .. 127.0.0.201 */

extern char **environ;

typedef struct {
  int fd;
  uint64_t t0;              /* ns, start of the current exchange */
  size_t got, bytes;        /* echo: bytes of the reply so far; time: bytes read */
  char *buf;                /* echo, ws: the reply so far; sse: what arrived */
  int state;                /* sse: SSE_* */
} Conn;

typedef struct {            /* growable sample array, nanoseconds */
  uint64_t *v;
  size_t n, cap;
} Samples;

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void die(const char *what) {
  fprintf(stderr, "loadgen: %s: %s\n", what, strerror(errno));
  exit(1);
}

static void add_sample(Samples *s, uint64_t ns) {
  if (s->n == s->cap) {
    s->cap = s->cap ? s->cap * 2 : 65536;
    s->v = realloc(s->v, s->cap * sizeof *s->v);
    if (!s->v) die("realloc");
  }
  s->v[s->n++] = ns;
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return (x > y) - (x < y);
}

/* Nearest-rank percentile of the sorted samples, in microseconds. */
static double pct_us(const Samples *s, double p) {
  if (s->n == 0) return 0;
  size_t i = (size_t)(p / 100.0 * (double)s->n);
  if (i >= s->n) i = s->n - 1;
  return (double)s->v[i] / 1000.0;
}

static void print_result(const char *mode, int conc, double secs, size_t ops,
                         long errors, Samples *s) {
  qsort(s->v, s->n, sizeof *s->v, cmp_u64);
  printf("RESULT mode=%s conc=%d secs=%.3f ops=%zu rate=%.1f p50_us=%.1f "
         "p99_us=%.1f errors=%ld\n", mode, conc, secs, ops,
         secs > 0 ? (double)ops / secs : 0.0, pct_us(s, 50), pct_us(s, 99), errors);
}

static struct sockaddr_in loopback(int port, int host_octet) {
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_port = htons((uint16_t)port);
  a.sin_addr.s_addr = htonl(0x7f000000u | (uint32_t)host_octet);
  return a;
}

/* Starts a non-blocking connect; returns the fd or -1 (errno set). */
static int start_connect(int port, int src_octet) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  if (src_octet > 0) {
    int one = 1;
    struct sockaddr_in src = loopback(0, src_octet);
    setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&src, sizeof src) < 0) { close(fd); return -1; }
  }
  struct sockaddr_in dst = loopback(port, 1);
  if (connect(fd, (struct sockaddr *)&dst, sizeof dst) < 0 && errno != EINPROGRESS) {
    int e = errno; close(fd); errno = e; return -1;
  }
  return fd;
}

static void ep_add(int ep, int fd, uint32_t events, int slot) {
  struct epoll_event ev = { .events = events, .data.u32 = (uint32_t)slot };
  if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) die("epoll_ctl");
}

/* ---- time mode: connect, read to EOF, close ------------------------------ */

static unsigned next_src;

static void time_open(int ep, Conn *c, int port, int slot, long *errors) {
  for (;;) {
    c->t0 = now_ns();
    c->bytes = 0;
    c->fd = start_connect(port, 2 + (int)(next_src++ % NSRC));
    if (c->fd >= 0) break;
    (*errors)++;
    if (errno == EMFILE || errno == ENFILE) die("socket");
  }
  ep_add(ep, c->fd, EPOLLIN, slot);
}

/* Drains one client; returns 1 when the exchange ended (EOF or error). */
static int time_drain(Conn *c, Samples *s, size_t *ops, long *errors) {
  char buf[4096];
  for (;;) {
    ssize_t n = read(c->fd, buf, sizeof buf);
    if (n > 0) { c->bytes += (size_t)n; continue; }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) return 0;
    if (n == 0 && c->bytes > 0) { add_sample(s, now_ns() - c->t0); (*ops)++; }
    else (*errors)++;
    close(c->fd);
    return 1;
  }
}

static int mode_time(int port, int conc, double secs) {
  static Conn conns[MAXCONN];
  Samples s = {0};
  size_t ops = 0;
  long errors = 0;
  int ep = epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) die("epoll_create1");
  uint64_t start = now_ns(), end = start + (uint64_t)(secs * 1e9);
  for (int i = 0; i < conc; i++) time_open(ep, &conns[i], port, i, &errors);
  struct epoll_event evs[256];
  uint64_t t;
  while ((t = now_ns()) < end) {
    int n = epoll_wait(ep, evs, 256, (int)((end - t) / 1000000) + 1);
    if (n < 0 && errno != EINTR) die("epoll_wait");
    for (int i = 0; i < n; i++) {
      int slot = (int)evs[i].data.u32;
      if (time_drain(&conns[slot], &s, &ops, &errors))
        time_open(ep, &conns[slot], port, slot, &errors);
    }
  }
  double el = (double)(now_ns() - start) / 1e9;
  print_result("time", conc, el, ops, errors, &s);
  return 0;
}

/* ---- echo and ws modes: persistent connections, fixed-size round trips --- */

/* What one round trip sends and what must come back, byte for byte. */
typedef struct {
  const char *mode;         /* "echo" or "ws" */
  int port;
  int ws;                   /* 1: each connection does the WebSocket handshake first */
  char *msg, *reply;
  size_t msg_len, reply_len;
} Exchange;

static int blocking_connect(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) die("socket");
  struct sockaddr_in dst = loopback(port, 1);
  if (connect(fd, (struct sockaddr *)&dst, sizeof dst) < 0) die("connect");
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

static void set_nonblock(int fd) {
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

/* Writes all of data to a blocking fd. */
static void write_all(int fd, const char *data, size_t len) {
  while (len > 0) {
    ssize_t n = write(fd, data, len);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) die("write");
    data += n;
    len -= (size_t)n;
  }
}

/* Reads a reply's head (through the blank line) from a blocking fd a byte
 * at a time, so nothing after it is taken; exits on EOF or a head that
 * does not fit. */
static size_t read_head(int fd, char *head, size_t cap) {
  size_t got = 0;
  head[0] = 0;
  while (got < 4 || memcmp(head + got - 4, "\r\n\r\n", 4) != 0) {
    if (got == cap - 1) { fprintf(stderr, "loadgen: reply head over %zu bytes\n", cap); exit(1); }
    ssize_t r = read(fd, head + got, 1);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) die("reading a reply head");
    head[++got] = 0;
  }
  return got;
}

/* The RFC 6455 example key, so the accept value is fixed (its section 1.3). */
#define WS_KEY "dGhlIHNhbXBsZSBub25jZQ=="
#define WS_ACCEPT "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

/* The opening handshake on a blocking fd: GET /echo, then a 101 with the
 * right Sec-WebSocket-Accept; exits on any other answer. */
static void ws_handshake(int fd, int port) {
  char req[256], head[4096];
  int n = snprintf(req, sizeof req, "GET /echo HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                   "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                   "Sec-WebSocket-Key: " WS_KEY "\r\nSec-WebSocket-Version: 13\r\n\r\n", port);
  write_all(fd, req, (size_t)n);
  read_head(fd, head, sizeof head);
  if (strncmp(head, "HTTP/1.1 101 ", 13) != 0 ||
      !strcasestr(head, "\r\nSec-WebSocket-Accept: " WS_ACCEPT "\r\n")) {
    fprintf(stderr, "loadgen: not a WebSocket handshake reply:\n%s", head);
    exit(1);
  }
}

/* A text frame (FIN, opcode 1) of len bytes of payload, masked with a fixed
 * key when mask (client to server) as RFC 6455 requires; *out_len its size. */
static char *ws_frame(const char *payload, size_t len, int mask, size_t *out_len) {
  static const unsigned char key[4] = {0x37, 0xfa, 0x21, 0x3d};
  unsigned char *f = malloc(len + 8);
  if (!f) die("malloc");
  size_t h = 2;
  f[0] = 0x81;
  if (len < 126) f[1] = (unsigned char)len;
  else { f[1] = 126; f[2] = (unsigned char)(len >> 8); f[3] = (unsigned char)len; h = 4; }
  if (mask) { f[1] |= 0x80; memcpy(f + h, key, 4); h += 4; }
  for (size_t i = 0; i < len; i++)
    f[h + i] = (unsigned char)payload[i] ^ (mask ? key[i % 4] : 0);
  *out_len = h + len;
  return (char *)f;
}

/* The exchange of a mode: SIZE bytes of 'x' ending in a newline, as they
 * are (echo) or as a text frame that comes back unmasked (ws). */
static Exchange make_exchange(const char *mode, int port, size_t size) {
  Exchange x = { .mode = mode, .port = port, .ws = !strcmp(mode, "ws") };
  char *payload = malloc(size);
  if (!payload) die("malloc");
  memset(payload, 'x', size);
  payload[size - 1] = '\n';
  if (x.ws) {
    x.msg = ws_frame(payload, size, 1, &x.msg_len);
    x.reply = ws_frame(payload, size, 0, &x.reply_len);
    free(payload);
  } else {
    x.msg = x.reply = payload;
    x.msg_len = x.reply_len = size;
  }
  return x;
}

/* A connected client, handshaken when the exchange is ws, non-blocking. */
static int exchange_connect(const Exchange *x) {
  int fd = blocking_connect(x->port);
  if (x->ws) ws_handshake(fd, x->port);
  set_nonblock(fd);
  return fd;
}

/* Sends one message; the reply is counted by echo_read. */
static int echo_send(Conn *c, const Exchange *x) {
  c->t0 = now_ns();
  c->got = 0;
  ssize_t n;
  do n = write(c->fd, x->msg, x->msg_len); while (n < 0 && errno == EINTR);
  return n == (ssize_t)x->msg_len ? 0 : -1;   /* a small message always fits an idle socket */
}

/* Reads what arrived into c->buf (room for the reply and one byte more);
 * returns 1 once the whole reply is in and is the expected one, 0 while
 * it is not complete, -1 on EOF, error, a wrong or an overlong reply. */
static int echo_read(Conn *c, const Exchange *x) {
  for (;;) {
    ssize_t n = read(c->fd, c->buf + c->got, x->reply_len + 1 - c->got);
    if (n > 0) {
      c->got += (size_t)n;
      if (c->got > x->reply_len) return -1;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) {
      if (c->got < x->reply_len) return 0;
      return memcmp(c->buf, x->reply, x->reply_len) == 0 ? 1 : -1;
    }
    return -1;
  }
}

static int mode_echo(const Exchange *x, int conns_n, double secs) {
  static Conn conns[MAXCONN];
  Samples s = {0};
  size_t ops = 0;
  long errors = 0;
  int ep = epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) die("epoll_create1");
  for (int i = 0; i < conns_n; i++) {
    conns[i].fd = exchange_connect(x);
    conns[i].buf = malloc(x->reply_len + 1);
    if (!conns[i].buf) die("malloc");
    ep_add(ep, conns[i].fd, EPOLLIN, i);
  }
  uint64_t start = now_ns(), end = start + (uint64_t)(secs * 1e9);
  for (int i = 0; i < conns_n; i++)
    if (echo_send(&conns[i], x) < 0) die("write");
  struct epoll_event evs[256];
  uint64_t t;
  int live = conns_n;
  while (live > 0 && (t = now_ns()) < end) {
    int n = epoll_wait(ep, evs, 256, (int)((end - t) / 1000000) + 1);
    if (n < 0 && errno != EINTR) die("epoll_wait");
    for (int i = 0; i < n; i++) {
      Conn *c = &conns[evs[i].data.u32];
      int r = echo_read(c, x);
      if (r == 1) {
        add_sample(&s, now_ns() - c->t0);
        ops++;
        if (echo_send(c, x) == 0) continue;
      }
      if (r != 0) { errors++; close(c->fd); live--; }
    }
  }
  double el = (double)(now_ns() - start) / 1e9;
  print_result(x->mode, conns_n, el, ops, errors, &s);
  return 0;
}

/* ---- wsidle mode: memory per idle WebSocket ------------------------------ */

/* Raises the soft limit on descriptors to the hard one. */
static void raise_nofile(void) {
  struct rlimit r;
  if (getrlimit(RLIMIT_NOFILE, &r) == 0 && r.rlim_cur < r.rlim_max) {
    r.rlim_cur = r.rlim_max;
    setrlimit(RLIMIT_NOFILE, &r);
  }
}

/* VmRSS of pid in KiB, -1 when it cannot be read. */
static long rss_kib(int pid) {
  char path[64], line[256];
  long kib = -1;
  snprintf(path, sizeof path, "/proc/%d/status", pid);
  FILE *f = fopen(path, "r");
  if (!f) return -1;
  while (fgets(line, sizeof line, f))
    if (sscanf(line, "VmRSS: %ld", &kib) == 1) break;
  fclose(f);
  return kib;
}

/* One round trip on a connection of the exchange, blocking: afterwards the
 * server's side of it is idle, waiting for the next message. */
static void round_trip(int fd, const Exchange *x, char *buf) {
  struct pollfd pf = { .fd = fd, .events = POLLIN };
  Conn c = { .fd = fd, .buf = buf };
  if (echo_send(&c, x) < 0) die("write");
  int r;
  while ((r = echo_read(&c, x)) == 0)
    if (poll(&pf, 1, 10000) <= 0) { fprintf(stderr, "loadgen: no echo in 10 s\n"); exit(1); }
  if (r < 0) { fprintf(stderr, "loadgen: wrong echo\n"); exit(1); }
}

/* One warm-up WebSocket (the server's one-time costs), the server's RSS,
 * then CONNS more, each handshaken and through one round trip, and the
 * RSS again. */
static int mode_wsidle(int port, int conns_n, int pid) {
  raise_nofile();
  Exchange x = make_exchange("ws", port, 64);
  char *buf = malloc(x.reply_len + 1);
  int *fds = calloc((size_t)conns_n + 1, sizeof *fds);
  if (!buf || !fds) die("malloc");
  fds[conns_n] = exchange_connect(&x);
  round_trip(fds[conns_n], &x, buf);
  long before = rss_kib(pid);
  for (int i = 0; i < conns_n; i++) {
    fds[i] = exchange_connect(&x);
    round_trip(fds[i], &x, buf);
  }
  long after = rss_kib(pid);
  if (before < 0 || after < 0) { fprintf(stderr, "loadgen: no VmRSS for pid %d\n", pid); return 1; }
  printf("RESULT mode=wsidle conns=%d rss_before_kib=%ld rss_after_kib=%ld "
         "kib_per_conn=%.2f errors=0\n", conns_n, before, after,
         (double)(after - before) / conns_n);
  return 0;
}

/* ---- sse mode: one event fanned out to SUBS subscribers ----------------- */

enum { SSE_CONNECTING, SSE_HEAD, SSE_WAIT, SSE_DONE };
#define SSE_BUF 4096
#define SSE_WINDOW 128      /* subscribers connecting at once (the listen backlog) */
#define SSE_EVENT "data: fanout-1\n"
#define SSE_IDLE_MS 30000   /* no progress for this long fails the run */

typedef struct {
  int port, subs, opened, subscribed, done;
  long errors;
  Conn *conns;
} Fanout;

static void ep_mod(int ep, int fd, uint32_t events, int slot) {
  struct epoll_event ev = { .events = events, .data.u32 = (uint32_t)slot };
  if (epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev) < 0) die("epoll_ctl");
}

static void sse_fail(const Fanout *f, const char *what, const Conn *c) {
  fprintf(stderr, "loadgen: sse: %s (%d of %d subscribed, %d have the event)%s%.*s\n",
          what, f->subscribed, f->subs, f->done, c ? "; received:\n" : "",
          c ? (int)c->got : 0, c ? c->buf : "");
  exit(1);
}

/* Starts the next subscriber's connect from one of the 127.0.0.x sources. */
static void sse_open(int ep, Fanout *f) {
  int slot = f->opened++;
  Conn *c = &f->conns[slot];
  c->fd = start_connect(f->port, 2 + slot % NSRC);
  if (c->fd < 0) die("connect");
  c->buf = malloc(SSE_BUF);
  if (!c->buf) die("malloc");
  c->state = SSE_CONNECTING;
  ep_add(ep, c->fd, EPOLLOUT, slot);
}

/* Connected: sends GET /events (it fits an idle socket), then reads. */
static void sse_request(int ep, Fanout *f, int slot) {
  Conn *c = &f->conns[slot];
  int err = 0;
  socklen_t len = sizeof err;
  getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
  if (err) { errno = err; die("connect"); }
  static const char req[] = "GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                            "Accept: text/event-stream\r\n\r\n";
  if (write(c->fd, req, sizeof req - 1) != (ssize_t)(sizeof req - 1)) die("write");
  c->state = SSE_HEAD;
  ep_mod(ep, c->fd, EPOLLIN, slot);
}

/* The reply's head is in: a 200 text/event-stream, or the run fails. What
 * followed it stays in the buffer. */
static void sse_head(Fanout *f, Conn *c) {
  char *end = memmem(c->buf, c->got, "\r\n\r\n", 4);
  if (!end) return;
  if (strncmp(c->buf, "HTTP/1.1 200 ", 13) != 0 ||
      !memmem(c->buf, (size_t)(end - c->buf), "text/event-stream", 17))
    sse_fail(f, "not an event stream", c);
  size_t head = (size_t)(end - c->buf) + 4;
  memmove(c->buf, c->buf + head, c->got - head);
  c->got -= head;
  c->state = SSE_WAIT;
  f->subscribed++;
}

/* Reads what arrived for one subscriber; moves it on when its head or the
 * event is in. Returns 1 when the subscriber is finished with. */
static int sse_read(Fanout *f, Conn *c, uint64_t t_pub, Samples *s) {
  for (;;) {
    if (c->got == SSE_BUF) {        /* heartbeats only: keep the tail */
      memmove(c->buf, c->buf + SSE_BUF - 64, 64);
      c->got = 64;
    }
    ssize_t n = read(c->fd, c->buf + c->got, SSE_BUF - c->got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) return 0;
    if (n <= 0) {                    /* EOF: only after the event */
      if (c->state != SSE_DONE) sse_fail(f, "a subscriber's stream ended early", c);
      close(c->fd);
      return 1;
    }
    c->got += (size_t)n;
    if (c->state == SSE_HEAD) sse_head(f, c);
    if (c->state == SSE_WAIT && t_pub && memmem(c->buf, c->got, SSE_EVENT, sizeof SSE_EVENT - 1)) {
      add_sample(s, now_ns() - t_pub);
      c->state = SSE_DONE;
      f->done++;
    }
    if (c->state == SSE_WAIT && !t_pub && c->got > 0 &&
        memmem(c->buf, c->got, "data:", 5))
      sse_fail(f, "an event before the publish", c);
  }
}

/* POST /publish on a new connection; returns the time it was sent. */
static uint64_t sse_publish(int port, int *fd) {
  static const char req[] = "POST /publish HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                            "Content-Length: 0\r\n\r\n";
  *fd = blocking_connect(port);
  uint64_t t = now_ns();
  write_all(*fd, req, sizeof req - 1);
  return t;
}

/* The publish reply must say how many subscribers it sent the event to. */
static long sse_publish_reply(int fd) {
  char head[4096], body[64];
  read_head(fd, head, sizeof head);
  char *cl = strcasestr(head, "\r\nContent-Length:");
  long len = cl ? strtol(cl + 17, NULL, 10) : -1;
  if (strncmp(head, "HTTP/1.1 200 ", 13) != 0 || len < 1 || len >= (long)sizeof body) {
    fprintf(stderr, "loadgen: sse: publish reply:\n%s", head);
    exit(1);
  }
  size_t got = 0;
  while (got < (size_t)len) {
    ssize_t n = read(fd, body + got, (size_t)len - got);
    if (n <= 0) die("reading the publish reply");
    got += (size_t)n;
  }
  body[got] = 0;
  close(fd);
  return strtol(body, NULL, 10);
}

/* Runs the epoll loop until the subscribers reach `until` (subscribed or
 * done, by `field`); keeps SSE_WINDOW connects in flight. */
static void sse_loop(int ep, Fanout *f, const int *field, uint64_t t_pub, Samples *s) {
  struct epoll_event evs[256];
  while (*field < f->subs) {
    while (f->opened < f->subs && f->opened - f->subscribed < SSE_WINDOW) sse_open(ep, f);
    int n = epoll_wait(ep, evs, 256, SSE_IDLE_MS);
    if (n < 0 && errno != EINTR) die("epoll_wait");
    if (n == 0) sse_fail(f, "no progress for 30 s", NULL);
    for (int i = 0; i < n; i++) {
      int slot = (int)evs[i].data.u32;
      Conn *c = &f->conns[slot];
      if (c->state == SSE_CONNECTING) sse_request(ep, f, slot);
      else sse_read(f, c, t_pub, s);   /* a closed fd leaves the epoll set */
    }
  }
}

static int mode_sse(int port, int subs) {
  Fanout f = { .port = port, .subs = subs, .conns = calloc((size_t)subs, sizeof(Conn)) };
  Samples s = {0};
  if (!f.conns) die("calloc");
  raise_nofile();
  int ep = epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) die("epoll_create1");
  uint64_t t0 = now_ns();
  sse_loop(ep, &f, &f.subscribed, 0, &s);
  double connect_s = (double)(now_ns() - t0) / 1e9;
  int pub;
  uint64_t t_pub = sse_publish(port, &pub);
  sse_loop(ep, &f, &f.done, t_pub, &s);
  double el = (double)(now_ns() - t_pub) / 1e9;
  long sent = sse_publish_reply(pub);
  if (sent != subs) {
    fprintf(stderr, "loadgen: sse: the server says it sent %ld events, to %d subscribers\n", sent, subs);
    f.errors++;
  }
  qsort(s.v, s.n, sizeof *s.v, cmp_u64);
  printf("RESULT mode=sse conc=%d secs=%.3f ops=%zu rate=%.1f p50_us=%.1f p99_us=%.1f "
         "last_ms=%.3f connect_s=%.2f errors=%ld\n", subs, el, s.n, (double)s.n / el,
         pct_us(&s, 50), pct_us(&s, 99), (double)s.v[s.n - 1] / 1e6, connect_s, f.errors);
  return 0;
}

/* ---- helpers for the runner ---------------------------------------------- */

static int mode_freeport(void) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in a = loopback(0, 1);
  socklen_t len = sizeof a;
  if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) < 0 ||
      getsockname(fd, (struct sockaddr *)&a, &len) < 0) die("freeport");
  printf("%d\n", ntohs(a.sin_port));
  close(fd);
  return 0;
}

static int mode_wait(int port, double secs) {
  uint64_t end = now_ns() + (uint64_t)(secs * 1e9);
  while (now_ns() < end) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = loopback(port, 1);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) == 0) {
      close(fd);
      return 0;
    }
    if (fd >= 0) close(fd);
    struct timespec ts = {0, 20 * 1000000};
    nanosleep(&ts, NULL);
  }
  fprintf(stderr, "loadgen: nothing accepts on 127.0.0.1:%d\n", port);
  return 1;
}

/* Runs argv n times, stdout to /dev/null; fails if any run fails. */
static int mode_run(int n, char **argv) {
  Samples s = {0};
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
  for (int i = 0; i < n; i++) {
    pid_t pid;
    int st;
    uint64_t t0 = now_ns();
    if (posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ) != 0) die(argv[0]);
    while (waitpid(pid, &st, 0) < 0)
      if (errno != EINTR) die("waitpid");
    add_sample(&s, now_ns() - t0);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
      fprintf(stderr, "loadgen: %s failed (status %d)\n", argv[0], st);
      return 1;
    }
  }
  qsort(s.v, s.n, sizeof *s.v, cmp_u64);
  printf("RESULT mode=run runs=%d median_ms=%.3f min_ms=%.3f max_ms=%.3f\n", n,
         pct_us(&s, 50) / 1000, (double)s.v[0] / 1e6, (double)s.v[s.n - 1] / 1e6);
  return 0;
}

/* ---- copy: the plain C reference of the p2p row -------------------------- */

/* Copies from fd `in` to fd `out` (blocking) in 64 KiB pieces until end of
   file; the number of bytes, or -1 on a read error (write_all exits on a
   write error). */
static long long pump(int in, int out) {
  static char buf[65536];
  long long total = 0;
  for (;;) {
    ssize_t r = read(in, buf, sizeof buf);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return -1;
    if (r == 0) return total;
    write_all(out, buf, (size_t)r);
    total += r;
  }
}

/* User and system CPU seconds of `who` (RUSAGE_SELF, RUSAGE_CHILDREN). */
static double cpu_secs(int who) {
  struct rusage ru;
  getrusage(who, &ru);
  return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

/* The sender (a child process): connects to 127.0.0.1:port, sends the file. */
static void copy_sender(const char *path, int port) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in a = loopback(port, 1);
  if (fd < 0 || s < 0 || connect(s, (struct sockaddr *)&a, sizeof a) < 0) die("copy: sender");
  if (pump(fd, s) < 0) die("copy: send");
  _exit(0);
}

/* FILE from a forked sender to this process over one loopback TCP
   connection, written to OUT: the time from the fork until OUT is closed. */
static int mode_copy(const char *path, const char *out) {
  int ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in a = loopback(0, 1);
  socklen_t len = sizeof a;
  if (ls < 0 || bind(ls, (struct sockaddr *)&a, sizeof a) < 0 || listen(ls, 1) < 0 ||
      getsockname(ls, (struct sockaddr *)&a, &len) < 0) die("copy: listen");
  uint64_t t0 = now_ns();
  pid_t pid = fork();
  if (pid < 0) die("fork");
  if (pid == 0) copy_sender(path, ntohs(a.sin_port));
  int c = accept(ls, NULL, NULL);
  int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (c < 0 || fd < 0) die("copy: receiver");
  long long bytes = pump(c, fd);
  if (bytes < 0 || close(fd) < 0) die("copy: receive");
  double secs = (double)(now_ns() - t0) / 1e9;
  int st;
  while (waitpid(pid, &st, 0) < 0)
    if (errno != EINTR) die("waitpid");
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) return 1;
  printf("RESULT mode=copy bytes=%lld secs=%.3f cpu_s=%.3f\n", bytes, secs,
         cpu_secs(RUSAGE_SELF) + cpu_secs(RUSAGE_CHILDREN));
  return 0;
}

static int usage(void) {
  fprintf(stderr, "usage: loadgen time PORT CONC SECS | echo|ws PORT CONNS SECS SIZE |"
                  " wsidle PORT CONNS PID | sse PORT SUBS |"
                  " freeport | wait PORT SECS | run N CMD [ARGS...] | copy FILE OUT\n");
  return 2;
}

int main(int argc, char **argv) {
  if (argc < 2) return usage();
  const char *m = argv[1];
  if (!strcmp(m, "time") && argc == 5) {
    int conc = atoi(argv[3]);
    if (conc < 1 || conc > MAXCONN) return usage();
    return mode_time(atoi(argv[2]), conc, atof(argv[4]));
  }
  if ((!strcmp(m, "echo") || !strcmp(m, "ws")) && argc == 6) {
    int conns = atoi(argv[3]);
    long size = atol(argv[5]);
    if (conns < 1 || conns > MAXCONN || size < 1 || size > (*m == 'w' ? 65535 : 65536))
      return usage();
    Exchange x = make_exchange(m, atoi(argv[2]), (size_t)size);
    return mode_echo(&x, conns, atof(argv[4]));
  }
  if (!strcmp(m, "wsidle") && argc == 5) {
    int conns = atoi(argv[3]);
    if (conns < 1 || conns > 100000 || atoi(argv[4]) < 1) return usage();
    return mode_wsidle(atoi(argv[2]), conns, atoi(argv[4]));
  }
  if (!strcmp(m, "sse") && argc == 4) {
    int subs = atoi(argv[3]);
    if (subs < 1 || subs > 100000) return usage();
    return mode_sse(atoi(argv[2]), subs);
  }
  if (!strcmp(m, "freeport") && argc == 2) return mode_freeport();
  if (!strcmp(m, "wait") && argc == 4) return mode_wait(atoi(argv[2]), atof(argv[3]));
  if (!strcmp(m, "run") && argc >= 4) return mode_run(atoi(argv[2]), argv + 3);
  if (!strcmp(m, "copy") && argc == 4) return mode_copy(argv[2], argv[3]);
  return usage();
}
