/*
 * tlsload.c: the benchmark's TLS handshake load generator (bench/ only, not
 * part of netlua; built by bench/run.sh with -lssl -lcrypto). CONNS threads,
 * each in a loop for SECS seconds: connect to 127.0.0.1:PORT, a full TLS
 * handshake on a new SSL object (no session is ever offered, so nothing is
 * resumed), one "GET / HTTP/1.1" with "Connection: close", read the reply to
 * end of stream, close. One "RESULT key=value ..." line on stdout, in
 * loadgen's format, so bench/run.sh records it like loadgen's.
 *
 *   tlsload PORT CONNS SECS
 *
 * An exchange counts when the reply starts "HTTP/1.x 200"; anything else
 * (refused connection, failed handshake, other status) is an error.
 * Latency: from connect() to end of stream. The RESULT line also names the
 * protocol, cipher suite and key-exchange group of the last handshake.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static const char REQUEST[] =
  "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";

typedef struct {
  pthread_t tid;
  SSL_CTX *ctx;
  int port;
  uint64_t deadline;         /* ns */
  uint64_t *lat;             /* ns, one per completed exchange */
  size_t n, cap, errors, resumed;
  char proto[32], cipher[64], group[32], firsterr[160];
} Worker;

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void fail(Worker *w, const char *what) {
  w->errors++;
  if (w->firsterr[0] == '\0') {
    unsigned long e = ERR_peek_error();
    snprintf(w->firsterr, sizeof w->firsterr, "%s: %s", what,
             e ? ERR_reason_error_string(e) : strerror(errno));
  }
  ERR_clear_error();
}

/* One exchange; 0 when it completed with a 200. */
static int exchange(Worker *w) {
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)w->port)};
  char buf[16384], head[16] = "";
  size_t got = 0;
  int fd, one = 1, r, ok = -1;
  SSL *ssl = NULL;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if ((fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0) { fail(w, "socket"); return -1; }
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) { fail(w, "connect"); goto out; }
  if ((ssl = SSL_new(w->ctx)) == NULL || SSL_set_fd(ssl, fd) != 1) { fail(w, "SSL_new"); goto out; }
  if (SSL_connect(ssl) != 1) { fail(w, "handshake"); goto out; }
  if (SSL_session_reused(ssl)) w->resumed++;
  if (SSL_write(ssl, REQUEST, sizeof REQUEST - 1) != (int)(sizeof REQUEST - 1)) { fail(w, "write"); goto out; }
  while ((r = SSL_read(ssl, buf, sizeof buf)) > 0) {
    if (got < sizeof head - 1) {
      size_t k = sizeof head - 1 - got < (size_t)r ? sizeof head - 1 - got : (size_t)r;
      memcpy(head + got, buf, k);
      head[got + k] = '\0';
    }
    got += (size_t)r;
  }
  /* end of stream: close_notify, or the server's plain close (ignored EOF) */
  if (SSL_get_error(ssl, r) != SSL_ERROR_ZERO_RETURN) { fail(w, "read"); goto out; }
  if (strncmp(head, "HTTP/1.", 7) != 0 || strncmp(head + 8, " 200", 4) != 0) {
    errno = EPROTO;
    fail(w, "reply not 200");
    goto out;
  }
  snprintf(w->proto, sizeof w->proto, "%s", SSL_get_version(ssl));
  snprintf(w->cipher, sizeof w->cipher, "%s", SSL_get_cipher_name(ssl));
  const char *g = SSL_group_to_name(ssl, SSL_get_negotiated_group(ssl));
  snprintf(w->group, sizeof w->group, "%s", g ? g : "?");
  ok = 0;
out:
  if (ssl != NULL) SSL_free(ssl);   /* no SSL_shutdown: the server closed first */
  close(fd);
  return ok;
}

static void *run(void *arg) {
  Worker *w = arg;
  uint64_t t0;
  while ((t0 = now_ns()) < w->deadline) {
    if (exchange(w) != 0) continue;
    if (w->n == w->cap) {
      w->cap = w->cap ? w->cap * 2 : 4096;
      if ((w->lat = realloc(w->lat, w->cap * sizeof *w->lat)) == NULL) abort();
    }
    w->lat[w->n++] = now_ns() - t0;
  }
  return NULL;
}

static int cmp_u64(const void *x, const void *y) {
  uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;
  return (a > b) - (a < b);
}

/* Nearest-rank percentile of the sorted samples in microseconds, as loadgen's. */
static double pct_us(const uint64_t *v, size_t n, double p) {
  if (n == 0) return 0;
  size_t i = (size_t)(p / 100.0 * (double)n);
  if (i >= n) i = n - 1;
  return (double)v[i] / 1000.0;
}

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: tlsload PORT CONNS SECS\n");
    return 2;
  }
  int port = atoi(argv[1]), conns = atoi(argv[2]);
  double secs = atof(argv[3]);
  if (port <= 0 || conns <= 0 || secs <= 0) {
    fprintf(stderr, "tlsload: bad arguments\n");
    return 2;
  }
  SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
  if (ctx == NULL) return 1;
  SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);   /* the bench's own certificate */
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET | SSL_OP_IGNORE_UNEXPECTED_EOF);

  Worker *ws = calloc((size_t)conns, sizeof *ws);
  if (ws == NULL) return 1;
  uint64_t start = now_ns(), deadline = start + (uint64_t)(secs * 1e9);
  for (int i = 0; i < conns; i++) {
    ws[i].ctx = ctx;
    ws[i].port = port;
    ws[i].deadline = deadline;
    if (pthread_create(&ws[i].tid, NULL, run, &ws[i]) != 0) {
      fprintf(stderr, "tlsload: pthread_create failed\n");
      return 1;
    }
  }
  size_t n = 0, errors = 0, resumed = 0, k = 0;
  for (int i = 0; i < conns; i++) {
    pthread_join(ws[i].tid, NULL);
    n += ws[i].n;
    errors += ws[i].errors;
    resumed += ws[i].resumed;
  }
  double elapsed = (double)(now_ns() - start) / 1e9;
  uint64_t *all = malloc((n ? n : 1) * sizeof *all);
  if (all == NULL) return 1;
  for (int i = 0; i < conns; i++) {
    memcpy(all + k, ws[i].lat, ws[i].n * sizeof *all);
    k += ws[i].n;
  }
  qsort(all, n, sizeof *all, cmp_u64);
  const Worker *last = &ws[0];
  for (int i = 0; i < conns; i++) if (ws[i].proto[0]) last = &ws[i];
  for (int i = 0; i < conns; i++)
    if (ws[i].firsterr[0]) {
      fprintf(stderr, "tlsload: %zu errors, first: %s\n", errors, ws[i].firsterr);
      break;
    }
  printf("RESULT mode=tls conc=%d secs=%.3f ops=%zu rate=%.1f p50_us=%.1f p99_us=%.1f "
         "errors=%zu resumed=%zu proto=%s cipher=%s group=%s\n",
         conns, elapsed, n, (double)n / elapsed,
         pct_us(all, n, 50), pct_us(all, n, 99),
         errors, resumed, last->proto[0] ? last->proto : "-",
         last->cipher[0] ? last->cipher : "-", last->group[0] ? last->group : "-");
  return 0;
}
