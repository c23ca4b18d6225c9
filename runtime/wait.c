/*
 * wait.c: clocks and the one place where netlua waits for a descriptor
 * (layer: runtime). Every blocking operation in every binding ends up in
 * nl_wait, so Ctrl-C, shutdown and the task scheduler plug in here: while
 * tasks live on this thread's loop, a wait runs the loop (loop.c), so the
 * tasks keep running; otherwise it is a plain ppoll.
 */
#include <errno.h>
#include <math.h>
#include <poll.h>
#include <stdlib.h>
#include <time.h>

#include "netlua.h"
#include "tasksched.h"

double nl_monotonic(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

double nl_walltime(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)ts.tv_sec + (double)(ts.tv_nsec / 1000) / 1e6;
}

/* math.huge, NaN and negative timeouts mean no limit; so does one too far
 * off to matter (a deadline is then never a huge number either). */
double nl_deadline(double timeout) {
  if (!(timeout >= 0) || timeout > NL_MAXTIMEOUT) return NL_NODEADLINE;
  return nl_monotonic() + timeout;
}

/* Time left until `deadline` as a timespec for ppoll; NULL means forever.
 * At most a day at a time (poll_until waits again): a deadline given as a
 * huge number must not overflow time_t. */
static struct timespec *time_left(double deadline, struct timespec *ts) {
  double left;
  if (deadline < 0) return NULL;
  left = deadline - nl_monotonic();
  if (!(left > 0)) left = 0;
  if (left > 86400.0) left = 86400.0;
  ts->tv_sec = (time_t)left;
  ts->tv_nsec = (long)((left - (double)ts->tv_sec) * 1e9);
  return ts;
}

static int poll_to_events(short revents, int wanted) {
  int ready = 0;
  if (revents & (POLLERR | POLLHUP | POLLNVAL)) return wanted;
  if (revents & POLLIN) ready |= NL_READ;
  if (revents & POLLOUT) ready |= NL_WRITE;
  return ready & wanted;
}

#define STACK_POLLFDS 16

static short to_poll_events(int events) {
  return (short)(((events & NL_READ) ? POLLIN : 0) |
                 ((events & NL_WRITE) ? POLLOUT : 0));
}

/* Polls the control descriptor (Ctrl-C in the main thread, shutdown in the
 * others) and the caller's descriptors, in `fds`, until one is ready. */
static int poll_until(struct pollfd *fds, nfds_t n, double deadline) {
  int is_main = nl_is_main_thread();
  fds[0].fd = is_main ? nl_interrupt_fd() : nl_shutdown_fd();
  fds[0].events = POLLIN;
  for (;;) {
    struct timespec ts;
    int r = ppoll(fds, n, time_left(deadline, &ts), NULL);
    if (r < 0) {
      if (errno != EINTR) return -errno;
      if (is_main && nl_take_interrupt()) return -EINTR;
      continue;
    }
    if (fds[0].fd >= 0 && (fds[0].revents & POLLIN)) {
      if (!is_main || nl_take_interrupt()) return -EINTR;
      r--;
    }
    if (r > 0) return r;
    if (deadline >= 0 && nl_monotonic() >= deadline) return 0;
  }
}

/* Readiness of fds right now, without the control descriptor: how many are
 * ready, or -errno. */
int nl_waitmany_now(nl_PollFd *fds, int n) {
  struct pollfd stack[STACK_POLLFDS];
  struct pollfd *pfds = stack;
  int r;
  if (n > STACK_POLLFDS) {
    pfds = malloc(sizeof *pfds * (size_t)n);
    if (pfds == NULL) return -ENOMEM;
  }
  for (int i = 0; i < n; i++) {
    pfds[i].fd = fds[i].fd;
    pfds[i].events = to_poll_events(fds[i].events);
    pfds[i].revents = 0;
    fds[i].ready = 0;
  }
  do r = poll(pfds, (nfds_t)n, 0); while (r < 0 && errno == EINTR);
  if (r > 0) {
    r = 0;
    for (int i = 0; i < n; i++) {
      fds[i].ready = poll_to_events(pfds[i].revents, fds[i].events);
      if (fds[i].ready) r++;
    }
  } else if (r < 0) {
    r = -errno;
  }
  if (pfds != stack) free(pfds);
  return r;
}

int nl_waitmany(nl_PollFd *fds, int n, double deadline) {
  struct pollfd stack[STACK_POLLFDS + 1];
  struct pollfd *pfds = stack;
  int r;
  nl_Loop *loop = nl_loop_active();
  if (loop != NULL) return nl_loop_wait(loop, fds, n, deadline);
  if (n + 1 > STACK_POLLFDS + 1) {
    pfds = malloc(sizeof *pfds * (size_t)(n + 1));
    if (pfds == NULL) return -ENOMEM;
  }
  for (int i = 0; i < n; i++) {
    pfds[i + 1].fd = fds[i].fd;
    pfds[i + 1].events = to_poll_events(fds[i].events);
    pfds[i + 1].revents = 0;
    fds[i].ready = 0;
  }
  r = poll_until(pfds, (nfds_t)n + 1, deadline);
  if (r > 0) {
    r = 0;
    for (int i = 0; i < n; i++) {
      fds[i].ready = poll_to_events(pfds[i + 1].revents, fds[i].events);
      if (fds[i].ready) r++;
    }
  }
  if (pfds != stack) free(pfds);
  return r;
}

int nl_wait(int fd, int events, double deadline) {
  struct pollfd fds[2];
  nfds_t n = 1;
  nl_Loop *loop = nl_loop_active();
  if (loop != NULL) {
    nl_PollFd one = {fd, events, 0};
    int r = nl_loop_wait(loop, &one, fd >= 0 ? 1 : 0, deadline);
    return r > 0 ? one.ready : r;
  }
  if (fd >= 0) {
    fds[1].fd = fd;
    fds[1].events = to_poll_events(events);
    fds[1].revents = 0;
    n = 2;
  }
  for (;;) {
    int r = poll_until(fds, n, deadline);
    if (r <= 0) return r;
    r = poll_to_events(fds[1].revents, events);
    if (r) return r;
  }
}

int nl_waitL(lua_State *L, int fd, int events, double deadline) {
  int r = nl_wait(fd, events, deadline);
  if (r == -EINTR) nl_raise_interrupted(L);
  return r < 0 ? events : r; /* a poll failure: let the syscall report it */
}

void nl_sleepL(lua_State *L, double seconds) {
  if (!(seconds > 0)) return;
  nl_waitL(L, -1, 0, nl_deadline(seconds));
}
