/*
 * socket_explain.c: what a failure of the socket module means, in words
 * (layer: bindings). luasocket reports a failure in a word or two that
 * programs compare ("connection refused"); a learner needs to know what
 * happened and what to try. Every explanation is made here, and only after
 * a call failed, so no call that succeeds pays for it: the addresses a
 * connect tried and how each went, the process that holds a port (from
 * /proc/net/tcp and the /proc/PID/fd links, bounded work, skipping what
 * this user may not read), TIME_WAIT and the reuseaddr hint, ports below
 * the unprivileged start, a name that looks like "localhost" mistyped, the
 * phase a timeout hit, a peer that closed. The methods return it after
 * luasocket's own values, and the trace shows it (an "explain" event).
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "socket_int.h"

#define MAX_PROCS 4096  /* processes looked at for a port's holder */
#define MAX_LINKS 65536 /* descriptor links read in all */
#define MAX_INODES 16   /* sockets on one port that are looked for */

/* Explanations are on unless NETLUA_EXPLAIN is "0" (for a program that
 * prints every value a call returns and must match luasocket's output).
 * Read at each failure only. */
static int explaining(char *why) {
  const char *env = getenv("NETLUA_EXPLAIN");
  why[0] = '\0';
  return env == NULL || strcmp(env, "0") != 0;
}

/* Appends to the explanation (cut short at its size). */
static void add(char *why, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void add(char *why, const char *fmt, ...) {
  size_t n = strlen(why);
  va_list ap;
  if (n + 1 >= sizeof(WhyBuf)) return;
  va_start(ap, fmt);
  vsnprintf(why + n, sizeof(WhyBuf) - n, fmt, ap);
  va_end(ap);
}

/* The explanation is complete: the trace shows it. */
static void done(const char *why, int fd) {
  if (nl_trace_on && why[0] != '\0') nl_trace_explain(fd, why);
}

/* "127.0.0.1:9000", "[::1]:9000"; "" for other families. */
static void where(const struct sockaddr *sa, char *out, size_t size) {
  char ip[INET6_ADDRSTRLEN];
  int port;
  nl_addr_format(sa, ip, sizeof ip, &port);
  if (ip[0] == '\0') snprintf(out, size, "%s", "");
  else snprintf(out, size, sa->sa_family == AF_INET6 ? "[%s]:%d" : "%s:%d", ip, port);
}

static int port_of(const struct sockaddr *sa) {
  char ip[INET6_ADDRSTRLEN];
  int port;
  nl_addr_format(sa, ip, sizeof ip, &port);
  return port;
}

int why_pushfail(lua_State *L, const char *err, const char *why) {
  return nl_pushfail(L, err, why != NULL && why[0] != '\0' ? why : NULL);
}

/* ---- connect ------------------------------------------------------------------ */

/* How one address went, in a word or two. */
static const char *outcome(int err, char *eb) {
  switch (err) {
    case ECONNREFUSED: return "refused";
    case IO_TIMEOUT: case ETIMEDOUT: case ERRS_TIMEOUT: return "no answer in time";
    case 0: return "failed";
    default: return nl_strerror(err, eb, sizeof(ErrBuf));
  }
}

void why_connect(char *why, int fd, const char *host, const struct addrinfo *list,
                 int family, const Progress *p, int last, int err) {
  const struct addrinfo *ai, *first = NULL;
  char w[INET6_ADDRSTRLEN + 16];
  ErrBuf eb;
  int i, n = 0;
  if (!explaining(why)) return;
  if (err != ECONNREFUSED && err != IO_TIMEOUT) return;
  for (ai = list, i = 0; ai != NULL && i <= last; ai = ai->ai_next, i++)
    if (family == AF_UNSPEC || ai->ai_family == family) {
      if (first == NULL) first = ai;
      n++;
    }
  if (first == NULL) return;
  where(first->ai_addr, w, sizeof w);
  if (err == ECONNREFUSED) add(why, "nothing is listening on %s", n == 1 ? w : host);
  else add(why, "connecting to %s got no answer within the timeout (phase: connect)",
           n == 1 ? w : host);
  if (n > 1) {
    add(why, " port %d: tried", port_of(first->ai_addr));
    for (ai = list, i = 0; ai != NULL && i <= last; ai = ai->ai_next, i++) {
      if (family != AF_UNSPEC && ai->ai_family != family) continue;
      where(ai->ai_addr, w, sizeof w);
      add(why, "%s %s (%s)", ai == first ? "" : ", then", w,
          outcome(i == last ? err : i < 8 ? p->errs[i] : 0, eb));
    }
  }
  if (host != NULL && !nl_is_numeric_host(host)) {
    nl_addr_format(first->ai_addr, w, sizeof w, &i);
    add(why, "; '%s' %s %s%s", host, n > 1 ? "went to" : "is", w,
        n > 1 && first->ai_family == AF_INET6 ? " first (IPv6)" : "");
  }
  if (err == ECONNREFUSED) add(why, "; is the server running, and on this port?");
  else add(why, "; the server may be too busy to accept (its backlog full), or a "
                "firewall drops the packets");
  done(why, fd);
}

/* ---- names ---------------------------------------------------------------------- */

/* Edit distance (with swaps of neighbours) between a and b, both short;
 * 99 when either is too long to be a typo. */
static int distance(const char *a, const char *b) {
  int d[34][34];
  size_t la = strlen(a), lb = strlen(b);
  if (la > 32 || lb > 32) return 99;
  for (size_t i = 0; i <= la; i++) d[i][0] = (int)i;
  for (size_t j = 0; j <= lb; j++) d[0][j] = (int)j;
  for (size_t i = 1; i <= la; i++)
    for (size_t j = 1; j <= lb; j++) {
      int cost = tolower((unsigned char)a[i - 1]) != tolower((unsigned char)b[j - 1]);
      int v = d[i - 1][j] + 1;
      if (d[i][j - 1] + 1 < v) v = d[i][j - 1] + 1;
      if (d[i - 1][j - 1] + cost < v) v = d[i - 1][j - 1] + cost;
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
          d[i - 2][j - 2] + 1 < v)
        v = d[i - 2][j - 2] + 1;
      d[i][j] = v;
    }
  return d[la][lb];
}

void why_lookup(char *why, const char *host, int gai) {
  if (!explaining(why) || host == NULL) return;
  switch (gai) {
    case NL_EAI_TIMEOUT:
      add(why, "the name lookup of '%s' did not finish within the timeout (phase: "
               "lookup): the name server (/etc/resolv.conf) did not answer", host);
      break;
    case EAI_AGAIN:
      add(why, "the name server could not answer for '%s' now (a temporary failure): "
               "check the network and /etc/resolv.conf", host);
      break;
    case EAI_NONAME: case EAI_NODATA: case EAI_FAIL: case EAI_ADDRFAMILY: {
      int d = distance(host, "localhost");
      add(why, "no address was found for the name '%s'", host);
      if (d > 0 && d <= 2) add(why, ": did you mean 'localhost'?");
      else add(why, ": check its spelling, or use an address such as 127.0.0.1");
      break;
    }
    default: return;
  }
  done(why, -1);
}

/* ---- bind: who holds the port ------------------------------------------------ */

/* What uses a local port: the sockets bound to it (their inodes), how
 * many connections on it are in TIME_WAIT. */
typedef struct PortUse {
  unsigned long inodes[MAX_INODES];
  int ninodes, timewait, listening;
} PortUse;

#define TCP_LISTEN 0x0A
#define TCP_TIME_WAIT 0x06

/* Reads one /proc/net table (tcp, tcp6, udp, udp6) for `port`. */
static void scan_table(const char *path, int port, PortUse *u) {
  char line[512];
  FILE *f = fopen(path, "re");
  if (f == NULL) return;
  if (fgets(line, sizeof line, f) == NULL) { /* the header */ }
  while (fgets(line, sizeof line, f) != NULL) {
    unsigned lport, st;
    unsigned long inode;
    if (sscanf(line, " %*d: %*[0-9A-Fa-f]:%x %*[0-9A-Fa-f]:%*x %x %*x:%*x %*x:%*x %*x %*u %*u %lu",
               &lport, &st, &inode) != 3 || (int)lport != port)
      continue;
    if (st == TCP_TIME_WAIT) u->timewait++;
    if (inode == 0 || u->ninodes == MAX_INODES) continue;
    if (st == TCP_LISTEN && !u->listening) { /* the listener goes first */
      memmove(u->inodes + 1, u->inodes, (size_t)u->ninodes * sizeof *u->inodes);
      u->inodes[0] = inode;
      u->listening = 1;
    } else {
      u->inodes[u->ninodes] = inode;
    }
    u->ninodes++;
  }
  fclose(f);
}

/* The index in u->inodes of the socket the descriptor links to, or -1. */
static int socket_index(int dirfd, const char *name, const PortUse *u) {
  char link[64];
  unsigned long inode;
  ssize_t n = readlinkat(dirfd, name, link, sizeof link - 1);
  if (n <= 0) return -1;
  link[n] = '\0';
  if (sscanf(link, "socket:[%lu]", &inode) != 1) return -1;
  for (int i = 0; i < u->ninodes; i++)
    if (u->inodes[i] == inode) return i;
  return -1;
}

/* The process (pid, its name in comm) holding the first socket of u it can
 * find, the listener first; 0 when none can be seen. */
static int find_holder(const PortUse *u, char *comm, size_t size) {
  DIR *proc = opendir("/proc");
  struct dirent *pe;
  int procs = 0, links = 0, pid = 0, best = MAX_INODES;
  if (proc == NULL) return 0;
  while (best > 0 && procs < MAX_PROCS && links < MAX_LINKS && (pe = readdir(proc)) != NULL) {
    char path[300];
    DIR *fds;
    struct dirent *fe;
    if (!isdigit((unsigned char)pe->d_name[0])) continue;
    procs++;
    snprintf(path, sizeof path, "/proc/%s/fd", pe->d_name);
    if ((fds = opendir(path)) == NULL) continue; /* gone, or not ours to see */
    while (links++ < MAX_LINKS && (fe = readdir(fds)) != NULL) {
      int i = fe->d_name[0] == '.' ? -1 : socket_index(dirfd(fds), fe->d_name, u);
      if (i >= 0 && i < best) {
        best = i;
        pid = atoi(pe->d_name);
      }
    }
    closedir(fds);
  }
  closedir(proc);
  if (pid > 0) {
    char path[64];
    FILE *f;
    snprintf(path, sizeof path, "/proc/%d/comm", pid);
    comm[0] = '\0';
    if ((f = fopen(path, "re")) != NULL) {
      if (fgets(comm, (int)size, f) == NULL) comm[0] = '\0';
      comm[strcspn(comm, "\n")] = '\0';
      fclose(f);
    }
  }
  return pid;
}

static void why_in_use(char *why, int type, int port, const char *w) {
  PortUse u;
  char comm[64];
  int pid;
  memset(&u, 0, sizeof u);
  if (type == SOCK_DGRAM) {
    scan_table("/proc/net/udp", port, &u);
    scan_table("/proc/net/udp6", port, &u);
  } else {
    scan_table("/proc/net/tcp", port, &u);
    scan_table("/proc/net/tcp6", port, &u);
  }
  pid = u.ninodes > 0 ? find_holder(&u, comm, sizeof comm) : 0;
  if (pid == getpid())
    add(why, "this program itself already holds port %d (a socket it opened earlier)", port);
  else if (pid > 0)
    add(why, "port %d is held by process %d (%s)", port, pid, comm);
  else if (u.ninodes > 0)
    add(why, "another socket holds port %d (its process is not visible to this user)", port);
  if (why[0] != '\0') {
    add(why, ": stop it, or use another port (0 lets the system pick a free one)");
  } else if (u.timewait > 0) {
    add(why, "port %d is in TIME_WAIT: a connection on it closed moments ago and the "
             "kernel keeps the port for about a minute; set "
             "sock:setoption('reuseaddr', true) before bind (socket.bind does)", port);
  } else {
    add(why, "another socket holds %s", w);
  }
}

/* The first port an ordinary user may bind. */
static int unprivileged_start(void) {
  int start = 1024;
  FILE *f = fopen("/proc/sys/net/ipv4/ip_unprivileged_port_start", "re");
  if (f != NULL) {
    if (fscanf(f, "%d", &start) != 1) start = 1024;
    fclose(f);
  }
  return start;
}

void why_bind(char *why, int fd, int type, const struct sockaddr *sa, int err) {
  char w[INET6_ADDRSTRLEN + 16];
  int port = port_of(sa), start;
  if (!explaining(why)) return;
  where(sa, w, sizeof w);
  if (w[0] == '\0') return;
  if (err == EADDRINUSE) {
    why_in_use(why, type, port, w);
  } else if (err == EACCES && port > 0 && port < (start = unprivileged_start())) {
    add(why, "ports below %d are reserved for root (or a program with "
             "CAP_NET_BIND_SERVICE): use a port from %d up, such as 8080, or 0 to "
             "let the system pick one", start, start);
  }
  done(why, fd);
}

/* ---- timeouts and closed peers -------------------------------------------------- */

/* The peer of s as "127.0.0.1:9000" (or "" when unknown now). */
static void peer_of(const nl_Socket *s, char *out, size_t size) {
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  out[0] = '\0';
  if (s->peerlen > 0) where(&s->peer.sa, out, size);
  else if (s->fd >= 0 && getpeername(s->fd, (struct sockaddr *)&ss, &len) == 0)
    where((const struct sockaddr *)&ss, out, size);
}

static void local_of(const nl_Socket *s, char *out, size_t size) {
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  out[0] = '\0';
  if (s->fd >= 0 && getsockname(s->fd, (struct sockaddr *)&ss, &len) == 0)
    where((const struct sockaddr *)&ss, out, size);
}

/* A timeout after a real wait (not a poll with timeout 0, which is how a
 * program asks "anything now?"): which phase, which peer, how long. */
void why_timeout(char *why, const nl_Socket *s, const Call *c, int side) {
  char w[INET6_ADDRSTRLEN + 16];
  double limit = c->p.block >= 0 && (c->p.total < 0 || c->p.block < c->p.total)
                     ? c->p.block : c->p.total;
  if (!explaining(why) || c->p.block == 0 || c->p.total == 0 || limit < 0) return;
  if (sock_classes[s->kind].role == R_SERVER) {
    local_of(s, w, sizeof w);
    add(why, "no client connected to %s within the timeout of %g s (phase: accept)",
        w[0] ? w : "this server", limit);
  } else if (side == SIDE_READ) {
    peer_of(s, w, sizeof w);
    add(why, "nothing came from %s within the timeout of %g s (phase: read): it has "
             "not sent (more) yet; is it waiting for you to send first, or for a line "
             "end (\\n)?", w[0] ? w : "the other side", limit);
  } else {
    peer_of(s, w, sizeof w);
    add(why, "%s did not take the data within the timeout of %g s (phase: write): it "
             "is not reading, and the buffers between are full",
        w[0] ? w : "the other side", limit);
  }
  done(why, s->fd);
}

void why_closed(char *why, const nl_Socket *s, int err) {
  char w[INET6_ADDRSTRLEN + 16], at[INET6_ADDRSTRLEN + 20];
  if (!explaining(why)) return;
  peer_of(s, w, sizeof w);
  snprintf(at, sizeof at, w[0] ? " (%s)" : "%s", w);
  if (err == EPIPE)
    add(why, "the other side%s closed the connection: what is sent now cannot arrive "
             "(EPIPE); check for \"closed\" and stop sending", at);
  else if (err == ECONNRESET)
    add(why, "the other side%s closed the connection and reset it: it closed without "
             "reading everything, or its program ended (ECONNRESET)", at);
  done(why, s->fd);
}
