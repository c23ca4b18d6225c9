/*
 * sock.c: plain-C socket helpers (layer: runtime): descriptor creation and
 * name resolution that honours deadlines and Ctrl-C. getaddrinfo blocks, so
 * for names (not numeric addresses) it runs in a detached helper thread that
 * signals a pipe; the caller waits on the pipe through nl_wait, the one
 * waiting point. A caller that gives up (timeout, Ctrl-C) drops its reference
 * and the thread frees the job when it finishes.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "netlua.h"
#include "sock.h"

int nl_socket(int family, int type, int protocol) {
  int fd = socket(family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, protocol);
  return fd < 0 ? -errno : fd;
}

void nl_closefd(int fd) {
  if (fd < 0) return;
  nl_loop_forget(fd);
  close(fd);
}

/* One lookup handed to a helper thread; two owners (caller and thread). */
typedef struct Job {
  atomic_int refs;
  atomic_int done; /* set (release) once rc/res/name are final */
  int pipe[2];
  int reverse; /* 0: getaddrinfo, 1: getnameinfo */
  int rc, err; /* err: errno of an EAI_SYSTEM failure */
  char *host, *serv;
  struct addrinfo hints;
  struct addrinfo *res;
  struct sockaddr_storage sa;
  socklen_t salen;
  int flags;
  char name[NI_MAXHOST], service[NI_MAXSERV];
} Job;

static void job_release(Job *job) {
  if (atomic_fetch_sub(&job->refs, 1) != 1) return;
  if (job->res != NULL) freeaddrinfo(job->res);
  nl_closefd(job->pipe[0]);
  nl_closefd(job->pipe[1]);
  free(job->host);
  free(job->serv);
  free(job);
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
  do n = write(job->pipe[1], "x", 1); while (n < 0 && errno == EINTR);
  job_release(job);
  return NULL;
}

static Job *job_new(void) {
  Job *job = calloc(1, sizeof *job);
  if (job == NULL) return NULL;
  atomic_init(&job->refs, 2);
  atomic_init(&job->done, 0);
  if (pipe2(job->pipe, O_CLOEXEC | O_NONBLOCK) != 0) {
    free(job);
    return NULL;
  }
  return job;
}

static int job_start(Job *job) {
  pthread_t thread;
  int rc = nl_thread_start(&thread, job_run, job);
  if (rc != 0) return rc;
  pthread_detach(thread);
  return 0;
}

/* Waits for the job; returns 0 when it finished, else an NL_EAI_* code.
 * Drops the caller's reference only when it did not finish. */
static int job_wait(Job *job, double deadline) {
  for (;;) {
    int r = nl_wait(job->pipe[0], NL_READ, deadline);
    if (r <= 0) {
      job_release(job);
      return r == 0 ? NL_EAI_TIMEOUT : NL_EAI_INTERRUPTED;
    }
    /* the acquire pairs with job_run's release: its results are visible */
    if (atomic_load_explicit(&job->done, memory_order_acquire)) return 0;
  }
}

static int is_numeric_host(const char *host) {
  unsigned char buf[sizeof(struct in6_addr)];
  if (host == NULL) return 1;
  return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

int nl_getaddrinfo(const char *host, const char *serv,
                   const struct addrinfo *hints, struct addrinfo **res,
                   double deadline) {
  Job *job;
  int rc;
  *res = NULL;
  if (is_numeric_host(host)) return getaddrinfo(host, serv, hints, res);
  if ((job = job_new()) == NULL) return EAI_MEMORY;
  job->host = strdup(host);
  job->serv = serv ? strdup(serv) : NULL;
  if (hints != NULL) job->hints = *hints;
  job->hints.ai_next = NULL;
  job->hints.ai_addr = NULL;
  job->hints.ai_canonname = NULL;
  if (job->host == NULL || job_start(job) != 0) {
    atomic_store(&job->refs, 1);
    job_release(job);
    return EAI_MEMORY;
  }
  if ((rc = job_wait(job, deadline)) != 0) return rc;
  rc = job->rc;
  if (rc == EAI_SYSTEM) errno = job->err; /* the caller reads errno */
  *res = job->res;
  job->res = NULL;
  job_release(job);
  return rc;
}

int nl_getnameinfo(const struct sockaddr *sa, socklen_t salen, char *host,
                   size_t hostlen, char *serv, size_t servlen, int flags,
                   double deadline) {
  Job *job;
  int rc;
  if ((job = job_new()) == NULL) return EAI_MEMORY;
  job->reverse = 1;
  if (salen > sizeof job->sa) salen = sizeof job->sa;
  memcpy(&job->sa, sa, salen);
  job->salen = salen;
  job->flags = flags;
  if (job_start(job) != 0) {
    atomic_store(&job->refs, 1);
    job_release(job);
    return EAI_MEMORY;
  }
  if ((rc = job_wait(job, deadline)) != 0) return rc;
  rc = job->rc;
  if (rc == EAI_SYSTEM) errno = job->err;
  if (rc == 0 && host != NULL && hostlen > 0) {
    strncpy(host, job->name, hostlen - 1);
    host[hostlen - 1] = '\0';
  }
  if (rc == 0 && serv != NULL && servlen > 0) {
    strncpy(serv, job->service, servlen - 1);
    serv[servlen - 1] = '\0';
  }
  job_release(job);
  return rc;
}
