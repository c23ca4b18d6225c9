/*
 * sock.c: plain-C socket helpers (layer: runtime): descriptor creation and
 * name resolution that honours deadlines and Ctrl-C. getaddrinfo blocks, so
 * for names (not numeric addresses) it runs in a detached helper thread, a
 * lookup job, that signals a socketpair when it is done; the caller waits on
 * its end through nl_wait (or, in a task, through nl_waitk: see socket.c). A
 * caller that gives up (timeout, Ctrl-C, a cancelled task) closes its end in
 * its own thread (so its loop forgets the descriptor) and drops its
 * reference; the thread frees the job when it finishes.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "netlua.h"
#include "sock.h"
#include "trace.h"

int nl_socket(int family, int type, int protocol) {
  int fd = socket(family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, protocol);
  if (nl_trace_on && fd >= 0) nl_trace_socket(fd, family, type);
  return fd < 0 ? -errno : fd;
}

void nl_closefd(int fd) {
  if (fd < 0) return;
  if (nl_trace_on) nl_trace_close(fd);
  nl_loop_forget(fd);
  close(fd);
}

/* One lookup handed to a helper thread; two owners (caller and thread).
 * fds[0] is the caller's end (closed by the caller, in its thread), fds[1]
 * the thread's (closed with the job). */
struct nl_Lookup {
  atomic_int refs;
  atomic_int done; /* set (release) once rc/res/name are final */
  int fds[2];
  int reverse; /* 0: getaddrinfo, 1: getnameinfo */
  int rc, err; /* err: errno of an EAI_SYSTEM failure */
  char *host, *serv;
  struct addrinfo hints;
  struct addrinfo *res;
  struct sockaddr_storage sa;
  socklen_t salen;
  int flags;
  char name[NI_MAXHOST], service[NI_MAXSERV];
};

typedef struct nl_Lookup Job;

static void job_unref(Job *job) {
  if (atomic_fetch_sub(&job->refs, 1) != 1) return;
  if (job->res != NULL) freeaddrinfo(job->res);
  if (job->fds[1] >= 0) close(job->fds[1]); /* never in a loop */
  free(job->host);
  free(job->serv);
  free(job);
}

void nl_lookup_release(nl_Lookup *job) {
  int saved = errno; /* an EAI_SYSTEM caller reads it afterwards */
  if (job == NULL) return;
  nl_closefd(job->fds[0]); /* this thread's loop forgets it */
  job->fds[0] = -1;
  job_unref(job);
  errno = saved;
}

static void *job_run(void *arg) {
  Job *job = arg;
  ssize_t n;
  if (job->reverse)
    job->rc = getnameinfo((struct sockaddr *)&job->sa, job->salen, job->name,
                          sizeof job->name, job->service, sizeof job->service,
                          job->flags);
  else
    job->rc = getaddrinfo(job->host, job->serv, &job->hints, &job->res);
  job->err = errno;
  atomic_store_explicit(&job->done, 1, memory_order_release);
  /* the caller may have closed its end already: EPIPE, no signal */
  do n = send(job->fds[1], "x", 1, MSG_NOSIGNAL); while (n < 0 && errno == EINTR);
  job_unref(job);
  return NULL;
}

static Job *job_new(int with_thread) {
  Job *job = calloc(1, sizeof *job);
  if (job == NULL) return NULL;
  atomic_init(&job->refs, with_thread ? 2 : 1);
  atomic_init(&job->done, 0);
  job->fds[0] = job->fds[1] = -1;
  if (with_thread &&
      socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, job->fds) != 0) {
    free(job);
    return NULL;
  }
  return job;
}

/* Starts the job's thread; on failure the job is freed. */
static Job *job_start(Job *job) {
  pthread_t thread;
  if (nl_thread_start(&thread, job_run, job) != 0) {
    atomic_store(&job->refs, 1);
    nl_lookup_release(job);
    return NULL;
  }
  pthread_detach(thread);
  return job;
}

int nl_is_numeric_host(const char *host) {
  unsigned char buf[sizeof(struct in6_addr)];
  if (host == NULL) return 1;
  return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

/* The first word of a line of a configuration file (its comment cut
 * off), for strtok_r to go on from; NULL for a blank line. */
#define WS " \t\r\n"
static char *first_word(char *line, char **save) {
  line[strcspn(line, "#")] = '\0';
  return strtok_r(line, WS, save);
}

/* nsswitch.conf's "hosts:" line names "files" first. */
static int hosts_file_first(void) {
  FILE *f = fopen("/etc/nsswitch.conf", "re");
  char line[512];
  int first = 0;
  if (f == NULL) return 0;
  while (fgets(line, sizeof line, f) != NULL) {
    char *save, *w = first_word(line, &save);
    if (w == NULL || strcmp(w, "hosts:") != 0) continue;
    w = strtok_r(NULL, WS, &save);
    first = w != NULL && strcmp(w, "files") == 0;
  }
  fclose(f);
  return first;
}

/* /etc/hosts gives `host` an address of `family` (AF_UNSPEC: any). */
static int hosts_file_lists(const char *host, int family) {
  FILE *f = fopen("/etc/hosts", "re");
  char line[512];
  int found = 0;
  if (f == NULL) return 0;
  while (!found && fgets(line, sizeof line, f) != NULL) {
    unsigned char buf[sizeof(struct in6_addr)];
    char *save, *addr = first_word(line, &save), *name;
    int fam;
    if (addr == NULL) continue;
    fam = inet_pton(AF_INET, addr, buf) == 1 ? AF_INET
        : inet_pton(AF_INET6, addr, buf) == 1 ? AF_INET6 : AF_UNSPEC;
    if (fam == AF_UNSPEC || (family != AF_UNSPEC && family != fam)) continue;
    while (!found && (name = strtok_r(NULL, WS, &save)) != NULL)
      found = strcasecmp(name, host) == 0;
  }
  fclose(f);
  return found;
}

int nl_resolves_at_once(const char *host, const struct addrinfo *hints) {
  int family = hints != NULL ? hints->ai_family : AF_UNSPEC;
  if (nl_is_numeric_host(host) || (hints != NULL && (hints->ai_flags & AI_NUMERICHOST)))
    return 1;
  return hosts_file_first() && hosts_file_lists(host, family);
}

nl_Lookup *nl_lookup_addr(const char *host, const char *serv,
                          const struct addrinfo *hints) {
  int at_once = nl_resolves_at_once(host, hints);
  Job *job = job_new(!at_once);
  if (job == NULL) return NULL;
  if (hints != NULL) job->hints = *hints;
  job->hints.ai_next = NULL;
  job->hints.ai_addr = NULL;
  job->hints.ai_canonname = NULL;
  if (at_once) {
    job->rc = getaddrinfo(host, serv, &job->hints, &job->res);
    job->err = errno;
    atomic_store(&job->done, 1);
    return job;
  }
  job->host = strdup(host);
  job->serv = serv ? strdup(serv) : NULL;
  if (job->host == NULL || (serv != NULL && job->serv == NULL)) {
    atomic_store(&job->refs, 1);
    nl_lookup_release(job);
    return NULL;
  }
  return job_start(job);
}

nl_Lookup *nl_lookup_name(const struct sockaddr *sa, socklen_t salen, int flags) {
  Job *job = job_new(1);
  if (job == NULL) return NULL;
  job->reverse = 1;
  if (salen > sizeof job->sa) salen = sizeof job->sa;
  memcpy(&job->sa, sa, salen);
  job->salen = salen;
  job->flags = flags;
  return job_start(job);
}

int nl_lookup_fd(const nl_Lookup *job) { return job->fds[0]; }

int nl_lookup_done(nl_Lookup *job) {
  /* the acquire pairs with job_run's release: its results are visible */
  return atomic_load_explicit(&job->done, memory_order_acquire);
}

int nl_lookup_addrinfo(nl_Lookup *job, struct addrinfo **res) {
  *res = job->res;
  job->res = NULL;
  if (job->rc == EAI_SYSTEM) errno = job->err; /* the caller reads errno */
  return job->rc;
}

int nl_lookup_nameinfo(nl_Lookup *job, char *host, size_t hostlen, char *serv,
                       size_t servlen) {
  if (job->rc == 0 && host != NULL && hostlen > 0) {
    strncpy(host, job->name, hostlen - 1);
    host[hostlen - 1] = '\0';
  }
  if (job->rc == 0 && serv != NULL && servlen > 0) {
    strncpy(serv, job->service, servlen - 1);
    serv[servlen - 1] = '\0';
  }
  if (job->rc == EAI_SYSTEM) errno = job->err;
  return job->rc;
}

/* Waits for the job, blocking the thread (nl_wait); returns 0 when it
 * finished, else an NL_EAI_* code, the job then released. */
static int job_wait(Job *job, double deadline) {
  while (!nl_lookup_done(job)) {
    int r = nl_wait(job->fds[0], NL_READ, deadline);
    if (r <= 0) {
      nl_lookup_release(job);
      return r == 0 ? NL_EAI_TIMEOUT : NL_EAI_INTERRUPTED;
    }
  }
  return 0;
}

int nl_getaddrinfo(const char *host, const char *serv,
                   const struct addrinfo *hints, struct addrinfo **res,
                   double deadline) {
  Job *job;
  int rc;
  *res = NULL;
  if (nl_resolves_at_once(host, hints)) return getaddrinfo(host, serv, hints, res);
  if ((job = nl_lookup_addr(host, serv, hints)) == NULL) return EAI_MEMORY;
  if ((rc = job_wait(job, deadline)) != 0) return rc;
  rc = nl_lookup_addrinfo(job, res);
  nl_lookup_release(job);
  return rc;
}

int nl_getnameinfo(const struct sockaddr *sa, socklen_t salen, char *host,
                   size_t hostlen, char *serv, size_t servlen, int flags,
                   double deadline) {
  Job *job;
  int rc;
  if ((job = nl_lookup_name(sa, salen, flags)) == NULL) return EAI_MEMORY;
  if ((rc = job_wait(job, deadline)) != 0) return rc;
  rc = nl_lookup_nameinfo(job, host, hostlen, serv, servlen);
  nl_lookup_release(job);
  return rc;
}

/* bind and listen, each traced: 0, or -1 with errno set. */
static int bind_listen(int fd, const struct addrinfo *ai, int backlog) {
  int r = bind(fd, ai->ai_addr, ai->ai_addrlen), err = r == 0 ? 0 : errno;
  if (nl_trace_on) nl_trace_bind(fd, ai->ai_addr, ai->ai_addrlen, err);
  if (r == 0) {
    r = listen(fd, backlog);
    err = r == 0 ? 0 : errno;
    if (nl_trace_on) nl_trace_listen(fd, backlog, err);
  }
  errno = err;
  return r;
}

int nl_listen_tcp(const char *host, int port, int backlog, int *gai) {
  struct addrinfo hints, *res, *ai;
  char serv[16];
  int fd = -EADDRNOTAVAIL;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  snprintf(serv, sizeof serv, "%d", port);
  *gai = nl_getaddrinfo(host, serv, &hints, &res, NL_NODEADLINE);
  if (*gai != 0) return -1;
  for (ai = res; ai != NULL; ai = ai->ai_next) {
    int one = 1;
    fd = nl_socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
    if (fd < 0) continue;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind_listen(fd, ai, backlog) == 0) break;
    int err = errno;
    nl_closefd(fd);
    fd = -err;
  }
  freeaddrinfo(res);
  return fd;
}

/* a as a dotted quad at host (INET_ADDRSTRLEN bytes at least). inet_ntop
 * formats it with sprintf: ~1,700 instructions, a tenth of what the time
 * server does per client. */
static void format_ipv4(const struct in_addr *a, char *host) {
  const unsigned char *octet = (const unsigned char *)&a->s_addr;
  char *p = host;
  for (int i = 0; i < 4; i++) {
    unsigned v = octet[i];
    if (v >= 100) *p++ = (char)('0' + v / 100);
    if (v >= 10) *p++ = (char)('0' + v / 10 % 10);
    *p++ = (char)('0' + v % 10);
    *p++ = i < 3 ? '.' : '\0';
  }
}

void nl_addr_format(const struct sockaddr *sa, char *host, size_t hostlen, int *port) {
  host[0] = '\0';
  *port = 0;
  if (sa->sa_family == AF_INET6) {
    const struct sockaddr_in6 *a = (const void *)sa;
    inet_ntop(AF_INET6, &a->sin6_addr, host, (socklen_t)hostlen);
    *port = ntohs(a->sin6_port);
  } else if (sa->sa_family == AF_INET) {
    const struct sockaddr_in *a = (const void *)sa;
    if (hostlen >= INET_ADDRSTRLEN) format_ipv4(&a->sin_addr, host);
    else inet_ntop(AF_INET, &a->sin_addr, host, (socklen_t)hostlen);
    *port = ntohs(a->sin_port);
  }
}
