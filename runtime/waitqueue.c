/*
 * waitqueue.c: waiting on objects shared between tasks and threads (layer:
 * runtime). The wait queue of netlua.h (FIFO, wake-one as a hand-over), the
 * record a call that waits on one keeps in its own stack slot while its task
 * is suspended, the inbox through which another thread wakes a task, and
 * the eventfd on which blocking code waits.
 *
 * Locks: a queue is guarded by its owner's lock (nl_Shared). A waker holds
 * it while it takes a waiter off the queue, sets its outcome and wakes it;
 * posting to another thread's inbox takes that inbox's lock inside it (owner
 * lock, then inbox lock, never the other way). A waiter's own thread takes
 * its outcome under the owner lock too, so every field a waker writes is
 * read after the lock that ordered the write.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "netlua.h"
#include "tasksched.h"

#define RECORD_MT "netlua.queuewait"
#define BLOCKFD_KEY "netlua.queuefd"
#define BLOCKFD_MT "netlua.queuefdbox"

enum { W_IDLE, W_LISTED, W_POSTED, W_DONE }; /* nl_QueueWait.state */

/* Tasks of one scheduler woken by other threads, made ready by the loop's
 * next round (nl_inbox_deliver, from the scheduler's runner). */
struct nl_Inbox {
  pthread_mutex_t mu;
  nl_QueueWait *head, *tail;
  atomic_int posted; /* head != NULL, read without the lock */
  nl_Loop *loop;
};

static void lock(nl_WaitQueue *q) {
  if (q->owner != NULL) nl_shared_lock(q->owner);
}

static void unlock(nl_WaitQueue *q) {
  if (q->owner != NULL) nl_shared_unlock(q->owner);
}

/* ---- lists (a queue's or an inbox's) ------------------------------------ */

static void append(nl_QueueWait **head, nl_QueueWait **tail, nl_QueueWait *w) {
  w->next = NULL;
  w->prev = *tail;
  if (*tail != NULL) (*tail)->next = w;
  else *head = w;
  *tail = w;
}

static void remove_from(nl_QueueWait **head, nl_QueueWait **tail, nl_QueueWait *w) {
  if (w->prev != NULL) w->prev->next = w->next;
  else *head = w->next;
  if (w->next != NULL) w->next->prev = w->prev;
  else *tail = w->prev;
  w->prev = w->next = NULL;
}

void nl_queue_init(nl_WaitQueue *q, nl_Shared *owner,
                   void (*pass_on)(nl_WaitQueue *q, nl_QueueWait *w)) {
  q->head = q->tail = NULL;
  q->owner = owner;
  q->pass_on = pass_on;
}

/* ---- waking ----------------------------------------------------------------- */

static void signal_fd(int fd) {
  uint64_t one = 1;
  while (write(fd, &one, sizeof one) < 0 && errno == EINTR) {}
}

static void drain_fd(int fd) {
  uint64_t n;
  while (read(fd, &n, sizeof n) < 0 && errno == EINTR) {}
}

/* The owner is locked and w has just left the queue with its outcome. */
static void deliver(nl_QueueWait *w) {
  nl_Inbox *in = w->inbox;
  if (w->waiter == NULL) { /* blocking: it waits on its eventfd */
    w->state = W_DONE;
    signal_fd(w->fd);
  } else if (pthread_equal(w->thread, pthread_self())) { /* a task of ours */
    w->state = W_DONE;
    nl_waiter_fire(in->loop, w->waiter, 1);
  } else { /* a task of another thread: only its loop may touch its waiter */
    pthread_mutex_lock(&in->mu);
    w->state = W_POSTED;
    append(&in->head, &in->tail, w);
    atomic_store_explicit(&in->posted, 1, memory_order_release);
    pthread_mutex_unlock(&in->mu);
    nl_loop_wakeup(in->loop);
  }
}

int nl_queue_wakeone(nl_WaitQueue *q, int status, void *value) {
  nl_QueueWait *w = q->head;
  if (w == NULL) return 0;
  remove_from(&q->head, &q->tail, w);
  w->status = status;
  w->value = value;
  deliver(w);
  return 1;
}

void nl_queue_wakeall(nl_WaitQueue *q, int status) {
  while (nl_queue_wakeone(q, status, NULL)) {}
}

nl_Inbox *nl_inbox_new(nl_Loop *loop) {
  nl_Inbox *in = calloc(1, sizeof *in);
  if (in == NULL) return NULL;
  pthread_mutex_init(&in->mu, NULL);
  atomic_init(&in->posted, 0);
  in->loop = loop;
  return in;
}

void nl_inbox_free(nl_Inbox *in) {
  if (in == NULL) return;
  pthread_mutex_destroy(&in->mu);
  free(in);
}

/* In the inbox's own thread: fires the waiters other threads woke. Nothing
 * here runs Lua, so no record can go away meanwhile. */
void nl_inbox_deliver(nl_Inbox *in) {
  nl_QueueWait *w, *next;
  if (!atomic_load_explicit(&in->posted, memory_order_acquire)) return;
  pthread_mutex_lock(&in->mu);
  w = in->head;
  in->head = in->tail = NULL;
  atomic_store_explicit(&in->posted, 0, memory_order_relaxed);
  for (nl_QueueWait *p = w; p != NULL; p = p->next) p->state = W_DONE;
  pthread_mutex_unlock(&in->mu);
  for (; w != NULL; w = next) {
    next = w->next;
    w->prev = w->next = NULL;
    nl_waiter_fire(in->loop, w->waiter, 1);
  }
}

/* ---- leaving ------------------------------------------------------------------ */

/* In w's own thread, the owner locked: w leaves the queue (still listed:
 * its outcome stays 0) or the inbox it was posted to. `give_back`: w goes
 * away without taking what it was handed, which is passed on. */
static void leave(nl_QueueWait *w, int give_back) {
  nl_WaitQueue *q = w->queue;
  if (w->state == W_LISTED) {
    remove_from(&q->head, &q->tail, w);
  } else {
    if (w->state == W_POSTED) {
      pthread_mutex_lock(&w->inbox->mu);
      remove_from(&w->inbox->head, &w->inbox->tail, w);
      pthread_mutex_unlock(&w->inbox->mu);
    }
    if (give_back && w->status > 0 && q->pass_on != NULL) q->pass_on(q, w);
  }
  w->state = W_DONE;
  w->pending = 0;
}

/* The record of a call that waits in a task: its waiter, and a reference
 * to the queue's owner while the call lives (the object must outlive the
 * waiter, also when the state closes and boxes go in any order). */
typedef struct CallRecord {
  nl_QueueWait w;
  nl_Shared *ref;
} CallRecord;

/* __close and __gc of a record: the call ended (returned, raised, its task
 * cancelled or its state closed). */
static int record_close(lua_State *L) {
  CallRecord *r = (CallRecord *)luaL_checkudata(L, 1, RECORD_MT);
  if (r->w.pending) {
    lock(r->w.queue);
    leave(&r->w, 1);
    unlock(r->w.queue);
  }
  if (r->ref != NULL) {
    nl_Shared *s = r->ref;
    r->ref = NULL;
    nl_shared_release(s);
  }
  return 0;
}

/* ---- blocking waits: this state's eventfd ------------------------------------ */

typedef struct BlockFd {
  int fd;
  int depth; /* blocking queue waits in progress, nested (a task's own
              * coroutine waiting inside the main script's wait) */
} BlockFd;

static int blockfd_gc(lua_State *L) {
  BlockFd *b = (BlockFd *)luaL_checkudata(L, 1, BLOCKFD_MT);
  if (b->fd >= 0) {
    nl_loop_forget(b->fd);
    close(b->fd);
  }
  b->fd = -1;
  return 0;
}

static BlockFd *blockfd(lua_State *L) {
  BlockFd *b;
  if (lua_getfield(L, LUA_REGISTRYINDEX, BLOCKFD_KEY) == LUA_TUSERDATA) {
    b = (BlockFd *)lua_touserdata(L, -1);
    lua_pop(L, 1);
    return b;
  }
  lua_pop(L, 1);
  b = (BlockFd *)lua_newuserdatauv(L, sizeof *b, 0);
  b->fd = -1;
  b->depth = 0;
  if (luaL_newmetatable(L, BLOCKFD_MT)) {
    lua_pushcfunction(L, blockfd_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_setmetatable(L, -2);
  b->fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (b->fd < 0) {
    int err = errno;
    char buf[128];
    luaL_error(L, "cannot create eventfd: %s", nl_strerror(err, buf, sizeof buf));
  }
  lua_setfield(L, LUA_REGISTRYINDEX, BLOCKFD_KEY);
  return b;
}

void nl_queue_setup(lua_State *L) { blockfd(L); }

/* Waits in nl_wait (the loop, with Ctrl-C and shutdown) on the
 * eventfd until w is woken, the deadline passes or Ctrl-C. The eventfd is
 * the state's: a wake-up for another waiter of this thread, or one left
 * from a waiter that is gone, only makes this one look again. */
static int block(lua_State *L, nl_QueueWait *w, double deadline) {
  nl_WaitQueue *q = w->queue;
  int r, status;
  (*w->depth)++;
  for (;;) {
    r = nl_wait(w->fd, NL_READ, deadline);
    if (r > 0) drain_fd(w->fd);
    lock(q);
    if (r == -EINTR) { /* Ctrl-C wins over a hand-over, which goes on */
      leave(w, 1);
      status = -EINTR;
      break;
    }
    if (w->state != W_LISTED || r <= 0) {
      leave(w, 0);
      status = r < 0 && w->status == 0 ? r : w->status;
      break;
    }
    unlock(q);
  }
  unlock(q);
  /* An outer wait of this thread (the main script's, around a task whose own
   * coroutine waited here) may have lost its wake-up to our drain. */
  if (--(*w->depth) > 0) signal_fd(w->fd);
  if (status < 0 && status != -EINTR) {
    char buf[128];
    return luaL_error(L, "cannot wait: %s", nl_strerror(-status, buf, sizeof buf));
  }
  return status;
}

/* ---- the calls that wait ----------------------------------------------------- */

/* Where the call's waiter lives: in a task that can suspend, a new record
 * at `slot`, a to-be-closed value (however the call ends, a waiter still
 * listed leaves the queue and an outcome not taken is passed on); else
 * `local` on the caller's C stack, with this state's eventfd. May raise: no
 * lock may be held. */
static nl_QueueWait *prepare(lua_State *L, int slot, nl_WaitQueue *q, nl_QueueWait *local) {
  nl_Task *t = slot > 0 ? nl_task_suspendable(L, slot) : NULL;
  nl_QueueWait *w;
  if (t != NULL) {
    CallRecord *r = (CallRecord *)nl_callrec_new(L, slot, sizeof *r);
    if (luaL_newmetatable(L, RECORD_MT)) {
      lua_pushcfunction(L, record_close);
      lua_setfield(L, -2, "__close");
      lua_pushcfunction(L, record_close);
      lua_setfield(L, -2, "__gc");
    }
    lua_setmetatable(L, slot);
    lua_toclose(L, slot);
    w = &r->w;
    w->waiter = &t->w;
    w->inbox = t->sched->inbox;
    if (q->owner != NULL) {
      nl_shared_retain(q->owner);
      r->ref = q->owner;
    }
  } else {
    BlockFd *b = blockfd(L);
    w = local;
    memset(w, 0, sizeof *w);
    w->fd = b->fd;
    w->depth = &b->depth;
  }
  w->queue = q;
  w->thread = pthread_self();
  return w;
}

/* With the owner locked: lists w at the tail of its queue, unlocks and
 * waits. In a task it suspends (the replay resumes); it returns only when
 * it could not. Returns the outcome (see nl_queue_until). */
static int wait_listed(lua_State *L, int slot, nl_QueueWait *w, double deadline) {
  nl_WaitQueue *q = w->queue;
  w->status = 0;
  w->value = NULL;
  append(&q->head, &q->tail, w);
  w->state = W_LISTED;
  w->pending = 1;
  unlock(q);
  if (w->waiter == NULL) return block(L, w, deadline);
  nl_waitk(L, slot, -1, 0, deadline); /* suspends: the replay resumes */
  /* not suspended: the deadline passed meanwhile, or no memory for a timer */
  lock(q);
  leave(w, 0);
  unlock(q);
  if (w->status == 0 && !(deadline >= 0 && deadline <= nl_monotonic()))
    return luaL_error(L, "not enough memory");
  return w->status;
}

/* In a call replayed after wait_listed() suspended it: its waiter, off the
 * queue, with its outcome. Else NULL. */
static nl_QueueWait *resume(lua_State *L, int slot) {
  CallRecord *r;
  if (slot <= 0 || nl_callrec_get(L, slot) == NULL ||
      (r = (CallRecord *)luaL_testudata(L, slot, RECORD_MT)) == NULL)
    return NULL;
  nl_waitk(L, slot, -1, 0, NL_NODEADLINE); /* takes the replayed wait's outcome */
  if (r->w.pending) {
    lock(r->w.queue);
    leave(&r->w, 0);
    unlock(r->w.queue);
  }
  return &r->w;
}

int nl_queue_until(lua_State *L, int slot, nl_WaitQueue *q, double deadline,
                   int (*ready)(nl_WaitQueue *q, void **value), void **value) {
  nl_QueueWait local, *w = resume(L, slot);
  int status;
  if (w == NULL) {
    for (;;) {
      lock(q);
      if ((status = ready(q, value)) > 0 || (deadline >= 0 && deadline <= nl_monotonic())) {
        unlock(q);
        return status;
      }
      if (w != NULL) break;
      unlock(q);
      w = prepare(L, slot, q, &local);
    }
    status = wait_listed(L, slot, w, deadline);
  } else {
    status = w->status;
  }
  if (status == -EINTR && slot >= 0) nl_raise_interrupted(L);
  if (value != NULL) *value = w->value;
  return status;
}

/* ---- queues of one thread, woken together (nl_waitqueue) ---------------------- */

/* The task's waiter leaves its wait (woken, timed out, cancelled): its
 * entry leaves the queue. */
static void task_entry_unlink(nl_Waiter *tw) {
  nl_QueueWait *w = (nl_QueueWait *)tw->queue;
  if (w->state == W_LISTED) remove_from(&w->queue->head, &w->queue->tail, w);
  w->state = W_DONE;
  w->pending = 0;
  tw->queue = NULL;
}

int nl_waitqueue(lua_State *L, int nargs, nl_WaitQueue *q, double deadline) {
  nl_Task *t = nl_task_suspendable(L, nargs);
  nl_QueueWait local, *w;
  int r;
  if (t != NULL && nl_restarting(L)) /* the replay: the suspended wait's outcome */
    return nl_waitk(L, nargs, -1, NL_READ, NL_NODEADLINE) != 0;
  if (deadline >= 0 && deadline <= nl_monotonic()) return 0;
  if (t != NULL) {
    w = &t->qwait;
    memset(w, 0, sizeof *w);
    w->waiter = &t->w;
    w->inbox = t->sched->inbox;
  } else {
    BlockFd *b = blockfd(L);
    w = &local;
    memset(w, 0, sizeof *w);
    w->fd = b->fd;
    w->depth = &b->depth;
  }
  w->queue = q;
  w->thread = pthread_self();
  append(&q->head, &q->tail, w);
  w->state = W_LISTED;
  w->pending = 1;
  if (t == NULL) {
    r = block(L, w, deadline);
    if (r == -EINTR) return nl_raise_interrupted(L);
    return r > 0;
  }
  t->w.queue = w;
  t->w.unlink = task_entry_unlink;
  nl_waitk(L, nargs, -1, 0, deadline); /* suspends: the replay returns above */
  if (t->w.unlink != NULL) { /* not suspended: the deadline passed meanwhile */
    t->w.unlink = NULL;
    task_entry_unlink(&t->w);
  }
  return w->status > 0;
}

