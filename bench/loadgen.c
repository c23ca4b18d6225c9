/*
 * loadgen.c: the benchmark's load generator and process timer (bench/ only,
 * not part of netlua). One epoll loop, non-blocking sockets, one machine-
 * readable "RESULT key=value ..." line on stdout per invocation.
 *
 *   loadgen time PORT CONC SECS        CONC clients: connect, read to EOF, close, repeat
 *   loadgen echo PORT CONNS SECS SIZE  CONNS persistent clients: send SIZE bytes, read them back
 *   loadgen freeport                   print a port the OS considers free on 127.0.0.1
 *   loadgen wait PORT SECS             exit 0 once 127.0.0.1:PORT accepts a connection
 *   loadgen run N CMD [ARGS...]        run CMD N times (stdout to /dev/null), wall time of each
 *
 * Every target is 127.0.0.1. Time-mode clients bind 127.0.0.x source
 * addresses (IP_BIND_ADDRESS_NO_PORT) so a fast server does not exhaust the
 * ephemeral ports with its TIME_WAIT sockets during a run.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
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

/* ---- echo mode: persistent connections, fixed-size round trips ---------- */

static int blocking_connect(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) die("socket");
  struct sockaddr_in dst = loopback(port, 1);
  if (connect(fd, (struct sockaddr *)&dst, sizeof dst) < 0) die("connect");
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  return fd;
}

/* Sends one message; the reply is counted by echo_read. */
static int echo_send(Conn *c, const char *msg, size_t size) {
  c->t0 = now_ns();
  c->got = 0;
  ssize_t n;
  do n = write(c->fd, msg, size); while (n < 0 && errno == EINTR);
  return n == (ssize_t)size ? 0 : -1;   /* 64 bytes always fit an idle socket */
}

/* Reads what arrived; returns 1 once the whole reply is in, -1 on EOF/error. */
static int echo_read(Conn *c, size_t size) {
  char buf[65536];
  for (;;) {
    ssize_t n = read(c->fd, buf, sizeof buf);
    if (n > 0) { c->got += (size_t)n; continue; }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) return c->got >= size ? 1 : 0;
    return -1;
  }
}

static int mode_echo(int port, int conns_n, double secs, size_t size) {
  static Conn conns[MAXCONN];
  Samples s = {0};
  size_t ops = 0;
  long errors = 0;
  char *msg = malloc(size);
  if (!msg) die("malloc");
  memset(msg, 'x', size);
  msg[size - 1] = '\n';
  int ep = epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) die("epoll_create1");
  for (int i = 0; i < conns_n; i++) {
    conns[i].fd = blocking_connect(port);
    ep_add(ep, conns[i].fd, EPOLLIN, i);
  }
  uint64_t start = now_ns(), end = start + (uint64_t)(secs * 1e9);
  for (int i = 0; i < conns_n; i++)
    if (echo_send(&conns[i], msg, size) < 0) die("write");
  struct epoll_event evs[256];
  uint64_t t;
  int live = conns_n;
  while (live > 0 && (t = now_ns()) < end) {
    int n = epoll_wait(ep, evs, 256, (int)((end - t) / 1000000) + 1);
    if (n < 0 && errno != EINTR) die("epoll_wait");
    for (int i = 0; i < n; i++) {
      Conn *c = &conns[evs[i].data.u32];
      int r = echo_read(c, size);
      if (r == 1) {
        add_sample(&s, now_ns() - c->t0);
        ops++;
        if (echo_send(c, msg, size) == 0) continue;
      }
      if (r != 0) { errors++; close(c->fd); live--; }
    }
  }
  double el = (double)(now_ns() - start) / 1e9;
  print_result("echo", conns_n, el, ops, errors, &s);
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

static int usage(void) {
  fprintf(stderr, "usage: loadgen time PORT CONC SECS | echo PORT CONNS SECS SIZE |"
                  " freeport | wait PORT SECS | run N CMD [ARGS...]\n");
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
  if (!strcmp(m, "echo") && argc == 6) {
    int conns = atoi(argv[3]);
    long size = atol(argv[5]);
    if (conns < 1 || conns > MAXCONN || size < 1 || size > 65536) return usage();
    return mode_echo(atoi(argv[2]), conns, atof(argv[4]), (size_t)size);
  }
  if (!strcmp(m, "freeport") && argc == 2) return mode_freeport();
  if (!strcmp(m, "wait") && argc == 4) return mode_wait(atoi(argv[2]), atof(argv[3]));
  if (!strcmp(m, "run") && argc >= 4) return mode_run(atoi(argv[2]), argv + 3);
  return usage();
}
