/*
 * cserver.c: the benchmark's C baseline (bench/ only, not part of netlua):
 * a single-threaded epoll server, the practical limit for one core.
 *
 *   cserver time PORT      send the local time as Python's str(datetime.now()), close
 *   cserver timelog PORT   the same, and first print "connection from IP:PORT"
 *                          on stdout, a write(2) per line: the work the
 *                          tutorial's script does (scripts/timeserver.lua)
 *   cserver echo PORT      echo whatever arrives, connections kept open
 *
 * Listens on 127.0.0.1:PORT (0 = the OS picks) and prints
 * "listening on 127.0.0.1:<port>". Runs until killed.
 */
#include <errno.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define MAXFD 65536
#define BUFSZ 16384

typedef struct {            /* echo: bytes read but not yet written back */
  char *buf;
  size_t off, len;
  int out;                  /* registered for EPOLLOUT (a write would block) */
} Pending;

static Pending pending[MAXFD];

static void die(const char *what) {
  fprintf(stderr, "cserver: %s: %s\n", what, strerror(errno));
  exit(1);
}

static int listen_on(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int one = 1;
  struct sockaddr_in a;
  socklen_t len = sizeof a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_port = htons((uint16_t)port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd < 0) die("socket");
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0) die("bind");
  if (listen(fd, 512) < 0) die("listen");
  if (getsockname(fd, (struct sockaddr *)&a, &len) < 0) die("getsockname");
  printf("listening on 127.0.0.1:%d\n", ntohs(a.sin_port));
  fflush(stdout);
  return fd;
}

/* "2026-11-25 14:03:07.123456", as Python's str(datetime.now()). */
static size_t format_now(char *out, size_t cap) {
  struct timeval tv;
  struct tm tm;
  gettimeofday(&tv, NULL);
  localtime_r(&tv.tv_sec, &tm);
  size_t n = strftime(out, cap, "%Y-%m-%d %H:%M:%S", &tm);
  return n + (size_t)snprintf(out + n, cap - n, ".%06ld", (long)tv.tv_usec);
}

enum { TIME, TIMELOG, ECHO };

/* "connection from 127.0.0.1:52596", the address as accept4 gave it. */
static void log_client(const struct sockaddr_in *peer) {
  char ip[INET_ADDRSTRLEN];
  inet_ntop(AF_INET, &peer->sin_addr, ip, sizeof ip);
  printf("connection from %s:%d\n", ip, ntohs(peer->sin_port));
}

static void serve_time(int cfd) {
  char msg[64];
  size_t n = format_now(msg, sizeof msg);
  while (write(cfd, msg, n) < 0 && errno == EINTR) {}
  close(cfd);
}

static void close_echo(int ep, int fd) {
  epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
  free(pending[fd].buf);
  pending[fd] = (Pending){0};
  close(fd);
}

/* Writes what is pending; returns 0 when all is out, 1 to wait, -1 on error. */
static int flush_echo(int fd) {
  Pending *p = &pending[fd];
  while (p->off < p->len) {
    ssize_t n = write(fd, p->buf + p->off, p->len - p->off);
    if (n > 0) { p->off += (size_t)n; continue; }
    if (n < 0 && errno == EINTR) continue;
    return (n < 0 && errno == EAGAIN) ? 1 : -1;
  }
  p->off = p->len = 0;
  return 0;
}

/* Registers for EPOLLOUT while a write is blocked, EPOLLIN otherwise: the
 * only epoll_ctl calls after ADD, made when the interest really changes. */
static void want_out(int ep, int fd, int out) {
  Pending *p = &pending[fd];
  if (p->out == out) return;
  struct epoll_event ev = { .events = out ? EPOLLOUT : EPOLLIN, .data.fd = fd };
  epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev);
  p->out = out;
}

/* Level-triggered, as redis's ae: one read per readable event, written
 * straight back. A full buffer reads again (more may be queued); a short
 * read has drained the socket, and were more to arrive epoll reports it
 * again, so no read just to see EAGAIN. A write that would block switches
 * the descriptor to EPOLLOUT until the rest is out. */
static void serve_echo(int ep, int fd) {
  Pending *p = &pending[fd];
  if (!p->buf && !(p->buf = malloc(BUFSZ))) die("malloc");
  for (;;) {
    int r = flush_echo(fd);
    if (r < 0) { close_echo(ep, fd); return; }
    want_out(ep, fd, r);
    if (r) return;
    ssize_t n = read(fd, p->buf, BUFSZ);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) return;
    if (n <= 0) { close_echo(ep, fd); return; }
    p->len = (size_t)n;
    r = flush_echo(fd);
    if (r < 0) { close_echo(ep, fd); return; }
    want_out(ep, fd, r);
    if (r || n < BUFSZ) return;
  }
}

static void accept_all(int ep, int lfd, int mode) {
  for (;;) {
    struct sockaddr_in peer;
    socklen_t len = sizeof peer;
    int cfd = accept4(lfd, (struct sockaddr *)&peer, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (cfd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      return;                               /* EAGAIN, or EMFILE: retry later */
    }
    if (mode == TIMELOG) log_client(&peer);
    if (mode != ECHO) { serve_time(cfd); continue; }
    if (cfd >= MAXFD) { close(cfd); continue; }
    struct epoll_event ev = { .events = EPOLLIN, .data.fd = cfd };
    if (epoll_ctl(ep, EPOLL_CTL_ADD, cfd, &ev) < 0) close(cfd);
  }
}

int main(int argc, char **argv) {
  static const char *const modes[] = {"time", "timelog", "echo"};
  int mode = -1;
  for (int i = 0; argc == 3 && i < 3; i++)
    if (!strcmp(argv[1], modes[i])) mode = i;
  if (mode < 0) {
    fprintf(stderr, "usage: cserver time|timelog|echo PORT\n");
    return 2;
  }
  if (mode == TIMELOG) setvbuf(stdout, NULL, _IOLBF, 0);
  int lfd = listen_on(atoi(argv[2]));
  int ep = epoll_create1(EPOLL_CLOEXEC);
  struct epoll_event ev = { .events = EPOLLIN, .data.fd = lfd }, evs[256];
  if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev) < 0) die("epoll");
  for (;;) {
    int n = epoll_wait(ep, evs, 256, -1);
    if (n < 0 && errno != EINTR) die("epoll_wait");
    for (int i = 0; i < n; i++) {
      if (evs[i].data.fd == lfd) accept_all(ep, lfd, mode);
      else serve_echo(ep, evs[i].data.fd);
    }
  }
}
