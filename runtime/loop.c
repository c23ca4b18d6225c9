/*
 * loop.c: the event loop each OS thread owns, and the one place where
 * netlua waits (layer: runtime). No Lua here: the loop knows descriptors
 * (epoll), timers (a binary heap of deadlines), a wake-up eventfd for other
 * threads, and the control descriptor (Ctrl-C in the main thread, shutdown
 * in the others), handled here only. Suspended callers are nl_Waiters: a
 * task of the scheduler (sched.c), or a C stack (nl_wait, nl_waitmany: any
 * blocking call, in any thread) that runs the loop until its own waiter
 * fires, so the thread's tasks go on running meanwhile. Only this file knows
 * epoll and poll, as redis's ae_epoll.c; another backend would replace it.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdio_ext.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "netlua.h"
#include "trace.h"

#define MAX_EVENTS 256

typedef struct FdInfo {
  nl_Watch *watches; /* every watch on this descriptor */
  int registered;    /* events epoll has for it (EPOLLIN|EPOLLOUT), 0: none */
} FdInfo;

struct nl_Loop {
  int epfd, wakefd;
  FdInfo *fds;
  int nfds;
  nl_Waiter **heap; /* timers, earliest first */
  size_t nheap, capheap;
  nl_LoopRunner runner;
  void *runner_ud;
  int users; /* live tasks */
  int running; /* inside the runner: a wait there must not run it again */
  nl_Loop *prev, *next; /* in the list of every thread's loop */
};

static _Thread_local nl_Loop *this_loop;

/* Every thread's loop, for nl_loop_wakeall (SIGQUIT's listing). */
static pthread_mutex_t loops_mu = PTHREAD_MUTEX_INITIALIZER;
static nl_Loop *loops;

/* Marks epoll_event.data for the control, wake-up and SIGQUIT descriptors. */
static char control_mark, wake_mark, quit_mark;

/* ---- set-up ---------------------------------------------------------------- */

static int add_internal(nl_Loop *loop, int fd, void *mark) {
  struct epoll_event ev;
  memset(&ev, 0, sizeof ev);
  ev.events = EPOLLIN;
  ev.data.ptr = mark;
  return epoll_ctl(loop->epfd, EPOLL_CTL_ADD, fd, &ev);
}

nl_Loop *nl_loop(void) {
  nl_Loop *loop = this_loop;
  int control;
  if (loop != NULL) return loop;
  loop = calloc(1, sizeof *loop);
  if (loop == NULL) return NULL;
  loop->epfd = epoll_create1(EPOLL_CLOEXEC);
  loop->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  control = nl_is_main_thread() ? nl_interrupt_fd() : nl_shutdown_fd();
  if (loop->epfd < 0 || loop->wakefd < 0 ||
      add_internal(loop, loop->wakefd, &wake_mark) != 0 ||
      (control >= 0 && add_internal(loop, control, &control_mark) != 0) ||
      (nl_is_main_thread() && nl_quit_fd() >= 0 &&
       add_internal(loop, nl_quit_fd(), &quit_mark) != 0)) {
    if (loop->epfd >= 0) close(loop->epfd);
    if (loop->wakefd >= 0) close(loop->wakefd);
    free(loop);
    return NULL;
  }
  this_loop = loop;
  pthread_mutex_lock(&loops_mu);
  loop->next = loops;
  if (loops != NULL) loops->prev = loop;
  loops = loop;
  pthread_mutex_unlock(&loops_mu);
  return loop;
}

void nl_loop_free(void) {
  nl_Loop *loop = this_loop;
  if (loop == NULL) return;
  this_loop = NULL;
  pthread_mutex_lock(&loops_mu);
  if (loop->prev != NULL) loop->prev->next = loop->next;
  else loops = loop->next;
  if (loop->next != NULL) loop->next->prev = loop->prev;
  pthread_mutex_unlock(&loops_mu);
  close(loop->epfd);
  close(loop->wakefd);
  free(loop->fds);
  free(loop->heap);
  free(loop);
}

void nl_loop_setrunner(nl_Loop *loop, nl_LoopRunner runner, void *ud) {
  loop->runner = runner;
  loop->runner_ud = ud;
}

void nl_loop_use(nl_Loop *loop, int delta) { loop->users += delta; }

/* The loop, when tasks live on it and a wait here may run them (not from
 * inside a task: that would nest without bound). */
nl_Loop *nl_loop_active(void) {
  nl_Loop *loop = this_loop;
  return loop != NULL && loop->users > 0 && loop->running == 0 ? loop : NULL;
}

void nl_loop_wakeup(nl_Loop *loop) {
  uint64_t one = 1;
  if (write(loop->wakefd, &one, sizeof one) < 0) { /* counter full: awake */ }
}

void nl_loop_wakeall(void) {
  pthread_mutex_lock(&loops_mu);
  for (nl_Loop *loop = loops; loop != NULL; loop = loop->next) nl_loop_wakeup(loop);
  pthread_mutex_unlock(&loops_mu);
}

size_t nl_loop_timers(double *soonest) {
  nl_Loop *loop = this_loop;
  if (loop == NULL || loop->nheap == 0) return 0;
  *soonest = loop->heap[0]->deadline;
  return loop->nheap;
}

/* ---- timers: a binary heap of waiters by deadline ------------------------- */

static void heap_swap(nl_Loop *loop, size_t a, size_t b) {
  nl_Waiter *t = loop->heap[a];
  loop->heap[a] = loop->heap[b];
  loop->heap[b] = t;
  loop->heap[a]->heap_index = a;
  loop->heap[b]->heap_index = b;
}

static void heap_up(nl_Loop *loop, size_t i) {
  while (i > 0) {
    size_t parent = (i - 1) / 2;
    if (loop->heap[parent]->deadline <= loop->heap[i]->deadline) break;
    heap_swap(loop, i, parent);
    i = parent;
  }
}

static void heap_down(nl_Loop *loop, size_t i) {
  for (;;) {
    size_t l = 2 * i + 1, r = l + 1, m = i;
    if (l < loop->nheap && loop->heap[l]->deadline < loop->heap[m]->deadline) m = l;
    if (r < loop->nheap && loop->heap[r]->deadline < loop->heap[m]->deadline) m = r;
    if (m == i) break;
    heap_swap(loop, i, m);
    i = m;
  }
}

static int heap_push(nl_Loop *loop, nl_Waiter *w) {
  if (loop->nheap == loop->capheap) {
    size_t cap = loop->capheap ? loop->capheap * 2 : 64;
    nl_Waiter **h = realloc(loop->heap, cap * sizeof *h);
    if (h == NULL) return -ENOMEM;
    loop->heap = h;
    loop->capheap = cap;
  }
  w->heap_index = loop->nheap;
  loop->heap[loop->nheap++] = w;
  heap_up(loop, w->heap_index);
  return 0;
}

static void heap_remove(nl_Loop *loop, nl_Waiter *w) {
  size_t i = w->heap_index;
  if (i == NL_NOTIMER) return;
  w->heap_index = NL_NOTIMER;
  loop->nheap--;
  if (i == loop->nheap) return;
  nl_Waiter *moved = loop->heap[loop->nheap];
  loop->heap[i] = moved;
  moved->heap_index = i;
  heap_down(loop, i);
  heap_up(loop, moved->heap_index);
}

/* ---- descriptors ------------------------------------------------------------ */

static FdInfo *fd_info(nl_Loop *loop, int fd) {
  if (fd >= loop->nfds) {
    int n = loop->nfds ? loop->nfds : 64;
    FdInfo *f;
    while (n <= fd) n *= 2;
    f = realloc(loop->fds, (size_t)n * sizeof *f);
    if (f == NULL) return NULL;
    memset(f + loop->nfds, 0, (size_t)(n - loop->nfds) * sizeof *f);
    loop->fds = f;
    loop->nfds = n;
  }
  return &loop->fds[fd];
}

static uint32_t to_epoll(int events) {
  return ((events & NL_READ) ? EPOLLIN : 0) | ((events & NL_WRITE) ? EPOLLOUT : 0);
}

/* Tells epoll the events `fd` needs now. A registration stays while nobody
 * waits (most descriptors are waited for again soon); a descriptor closed
 * in the meantime has left epoll by itself, so ENOENT/EEXIST switch verbs. */
static int fd_update(nl_Loop *loop, int fd, FdInfo *fi, int wanted) {
  struct epoll_event ev;
  int op;
  if (wanted == fi->registered) return 0;
  memset(&ev, 0, sizeof ev);
  ev.events = to_epoll(wanted);
  ev.data.fd = fd;
  op = wanted == 0 ? EPOLL_CTL_DEL : fi->registered ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
  if (epoll_ctl(loop->epfd, op, fd, &ev) != 0) {
    if (op == EPOLL_CTL_MOD && errno == ENOENT) op = EPOLL_CTL_ADD;
    else if (op == EPOLL_CTL_ADD && errno == EEXIST) op = EPOLL_CTL_MOD;
    else if (op == EPOLL_CTL_DEL) op = -1;
    else return -errno;
    if (op >= 0 && epoll_ctl(loop->epfd, op, fd, &ev) != 0) return -errno;
  }
  fi->registered = wanted;
  return 0;
}

static int fd_wanted(FdInfo *fi) {
  int wanted = 0;
  for (nl_Watch *w = fi->watches; w != NULL; w = w->next) wanted |= w->events;
  return wanted;
}

static void watch_unlink(nl_Loop *loop, nl_Watch *w) {
  FdInfo *fi = &loop->fds[w->fd];
  if (w->prev) w->prev->next = w->next;
  else fi->watches = w->next;
  if (w->next) w->next->prev = w->prev;
  w->prev = w->next = NULL;
}

static int watch_link(nl_Loop *loop, nl_Watch *w) {
  FdInfo *fi = fd_info(loop, w->fd);
  int r;
  if (fi == NULL) return -ENOMEM;
  w->prev = NULL;
  w->next = fi->watches;
  if (fi->watches) fi->watches->prev = w;
  fi->watches = w;
  r = fd_update(loop, w->fd, fi, fi->registered | w->events);
  if (r != 0) watch_unlink(loop, w);
  return r;
}

/* ---- waiters ---------------------------------------------------------------- */

/* The descriptor is about to be closed: out of epoll (a closed descriptor
 * leaves by itself, but its number comes back soon with no registration),
 * and whoever still waits on it wakes up to find it closed. */
void nl_loop_forget(int fd) {
  nl_Loop *loop = this_loop;
  FdInfo *fi;
  if (loop == NULL || fd < 0 || fd >= loop->nfds) return;
  fi = &loop->fds[fd];
  while (fi->watches != NULL) {
    fi->watches->ready = fi->watches->events;
    nl_waiter_fire(loop, fi->watches->owner, 1);
  }
  if (fi->registered) epoll_ctl(loop->epfd, EPOLL_CTL_DEL, fd, NULL);
  fi->registered = 0;
}

void nl_waiter_init(nl_Waiter *w, nl_WakeFn wake, void *data) {
  memset(w, 0, sizeof *w);
  w->wake = wake;
  w->data = data;
  w->heap_index = NL_NOTIMER;
  w->result = NL_IDLE;
}

int nl_waiter_arm(nl_Loop *loop, nl_Waiter *w, nl_Watch *watches, int n, double deadline) {
  int armed = 0, r = 0;
  w->result = NL_PENDING;
  w->watches = watches;
  w->nwatches = 0;
  w->deadline = deadline;
  for (int i = 0; i < n; i++) {
    watches[i].owner = w;
    watches[i].ready = 0;
    if (watches[i].fd < 0 || watches[i].events == 0) continue;
    if ((r = watch_link(loop, &watches[i])) != 0) break;
    armed = i + 1;
  }
  w->nwatches = armed;
  if (r == 0 && deadline >= 0) r = heap_push(loop, w);
  if (r != 0) nl_waiter_disarm(loop, w);
  return r;
}

void nl_waiter_disarm(nl_Loop *loop, nl_Waiter *w) {
  for (int i = 0; i < w->nwatches; i++) {
    if (w->watches[i].fd < 0 || w->watches[i].events == 0) continue;
    if (w->watches[i].owner == w) watch_unlink(loop, &w->watches[i]);
  }
  w->nwatches = 0;
  heap_remove(loop, w);
  if (w->unlink) {
    w->unlink(w);
    w->unlink = NULL;
  }
  if (w->result == NL_PENDING) w->result = NL_IDLE;
}

void nl_waiter_fire(nl_Loop *loop, nl_Waiter *w, int result) {
  if (w->result != NL_PENDING) return;
  nl_waiter_disarm(loop, w);
  w->result = result;
  if (w->wake) w->wake(w);
}

/* ---- one round ---------------------------------------------------------------- */

static int ms_until(nl_Loop *loop, double deadline) {
  double left;
  if (loop->nheap > 0 && (deadline < 0 || loop->heap[0]->deadline < deadline))
    deadline = loop->heap[0]->deadline;
  if (deadline < 0) return -1;
  left = deadline - nl_monotonic();
  if (left <= 0) return 0;
  if (left > 86400.0) return 86400 * 1000;
  return (int)(left * 1000.0) + 1; /* round up: never wake before it */
}

/* Ready events of one descriptor: each watch that asked for them fires. */
static void dispatch_fd(nl_Loop *loop, int fd, uint32_t ev) {
  FdInfo *fi = &loop->fds[fd];
  int got = ((ev & EPOLLIN) ? NL_READ : 0) | ((ev & EPOLLOUT) ? NL_WRITE : 0);
  nl_Watch *w, *next;
  int fired = 0;
  if (ev & (EPOLLERR | EPOLLHUP)) got = NL_READ | NL_WRITE;
  for (w = fi->watches; w != NULL; w = next) {
    next = w->next;
    if (!(w->events & got)) continue;
    w->ready = w->events & got;
    nl_waiter_fire(loop, w->owner, 1); /* unlinks w (and its siblings) */
    fired = 1;
    next = fi->watches; /* the list may have changed: start over */
  }
  /* Nobody wanted this: narrow the registration (else it would fire again).
   * After a wake-up it stays: the woken task most likely waits again. */
  if (!fired && fd_update(loop, fd, fi, fd_wanted(fi)) != 0) { /* retried next round */ }
}

static void fire_timers(nl_Loop *loop) {
  double now = nl_monotonic();
  while (loop->nheap > 0 && loop->heap[0]->deadline <= now)
    nl_waiter_fire(loop, loop->heap[0], 0);
}

static void drain_wakefd(nl_Loop *loop) {
  uint64_t n;
  if (read(loop->wakefd, &n, sizeof n) < 0) { /* nothing pending */ }
}

/* What the program wrote to stdout shows before it waits: into a file or
 * a pipe stdout is fully buffered, as C and Python make it, so what
 * io.write wrote is there as soon as the program is idle (print flushes
 * each line itself, as in Lua; a script may choose line buffering). The
 * trace's records go out then too. */
static void flush_before_sleep(void) {
  if (__fpending(stdout) > 0) fflush(stdout);
  if (nl_trace_on) nl_trace_flush();
}

/* One round for the C stack that owns `self`: runs ready tasks (unless it
 * is a task blocking the thread: then they wait their turn), waits for
 * descriptors and timers (not past `self`'s deadline), fires what is due.
 * Ctrl-C (or shutdown, in threads) ends `self` with -EINTR. */
void nl_loop_runonce(nl_Loop *loop, nl_Waiter *self) {
  struct epoll_event events[MAX_EVENTS];
  int more = 0, n, timeout;
  if (loop->runner && loop->running == 0) {
    loop->running++;
    more = loop->runner(loop->runner_ud);
    loop->running--;
  }
  if (self != NULL && self->result != NL_PENDING) return;
  timeout = more ? 0 : ms_until(loop, self ? self->deadline : NL_NODEADLINE);
  if (timeout != 0) flush_before_sleep();
  n = epoll_wait(loop->epfd, events, MAX_EVENTS, timeout);
  if (n < 0 && errno == EINTR && nl_is_main_thread() && nl_take_interrupt()) {
    if (self) nl_waiter_fire(loop, self, -EINTR);
    return;
  }
  for (int i = 0; i < n; i++) {
    void *mark = events[i].data.ptr;
    if (mark == &control_mark) {
      if (!nl_is_main_thread() || nl_take_interrupt()) {
        if (self) nl_waiter_fire(loop, self, -EINTR);
      }
    } else if (mark == &wake_mark) {
      drain_wakefd(loop);
    } else if (mark == &quit_mark) {
      nl_take_quit();
      nl_inspect_request();
    } else {
      dispatch_fd(loop, events[i].data.fd, events[i].events);
    }
  }
  fire_timers(loop);
  nl_inspect_poll();
}

/* The first ready watch woke the waiter and disarmed its siblings; others
 * may be ready too (select reports them all), so look at them all now. */
static int collect_ready(nl_PollFd *fds, const nl_Watch *watches, int n) {
  int r = n > 1 ? nl_waitmany_now(fds, n) : 0;
  if (r > 0) return r;
  r = 0;
  for (int i = 0; i < n; i++) {
    fds[i].ready = watches[i].ready;
    if (fds[i].ready) r++;
  }
  return r;
}

/* A C stack waits through the loop, so the tasks of this thread keep
 * running meanwhile (the main script joining a task, a thread receiving). */
int nl_loop_wait(nl_Loop *loop, nl_PollFd *fds, int n, double deadline) {
  nl_Watch stack[8], *watches = stack;
  nl_Waiter self;
  int r;
  if (n > 8) {
    watches = calloc((size_t)n, sizeof *watches);
    if (watches == NULL) return -ENOMEM;
  }
  for (int i = 0; i < n; i++) {
    watches[i].fd = fds[i].fd;
    watches[i].events = fds[i].events;
  }
  nl_waiter_init(&self, NULL, NULL);
  r = nl_waiter_arm(loop, &self, watches, n, deadline);
  while (r == 0 && self.result == NL_PENDING) nl_loop_runonce(loop, &self);
  nl_waiter_disarm(loop, &self);
  if (r == 0) r = self.result;
  if (r > 0) r = collect_ready(fds, watches, n);
  if (watches != stack) free(watches);
  return r;
}

/* ---- the blocking waits ------------------------------------------------------- */

int nl_waitmany(nl_PollFd *fds, int n, double deadline) {
  nl_Loop *loop = nl_loop();
  for (int i = 0; i < n; i++) fds[i].ready = 0;
  if (loop == NULL) return errno > 0 ? -errno : -ENOMEM; /* EMFILE: no descriptors */
  return nl_loop_wait(loop, fds, n, deadline);
}

int nl_wait(int fd, int events, double deadline) {
  nl_PollFd one = {fd, events, 0};
  int r = nl_waitmany(&one, fd >= 0 ? 1 : 0, deadline);
  return r > 0 ? one.ready : r;
}

/* ---- readiness now --------------------------------------------------------------- */

#define STACK_POLLFDS 16

static int from_poll(short revents, int wanted) {
  int ready = 0;
  if (revents & (POLLERR | POLLHUP | POLLNVAL)) return wanted;
  if (revents & POLLIN) ready |= NL_READ;
  if (revents & POLLOUT) ready |= NL_WRITE;
  return ready & wanted;
}

/* Readiness of fds right now, without waiting: how many are ready, or
 * -errno. */
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
    pfds[i].events = (short)(((fds[i].events & NL_READ) ? POLLIN : 0) |
                             ((fds[i].events & NL_WRITE) ? POLLOUT : 0));
    pfds[i].revents = 0;
    fds[i].ready = 0;
  }
  do r = poll(pfds, (nfds_t)n, 0); while (r < 0 && errno == EINTR);
  if (r > 0) {
    r = 0;
    for (int i = 0; i < n; i++) {
      fds[i].ready = from_poll(pfds[i].revents, fds[i].events);
      if (fds[i].ready) r++;
    }
  } else if (r < 0) {
    r = -errno;
  }
  if (pfds != stack) free(pfds);
  return r;
}
