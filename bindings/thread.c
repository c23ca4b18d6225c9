/*
 * thread.c: the `thread` module (layer: bindings). OS threads, each running
 * its own Lua state from nl_newstate; channels and mutexes shared between
 * them.
 *
 * Values cross by copy (nl_pack/nl_unpack). Shared objects (the record of a
 * running thread, channels, mutexes) are reference-counted C structures that
 * each state wraps in its own userdata; the nl_Transfer of channels and
 * mutexes takes a reference when one crosses.
 *
 * Waiting. Every blocking call (join, send, recv, lock, sleep) waits in
 * nl_wait, the runtime's one waiting point, so Ctrl-C (main thread) and
 * shutdown (other threads) interrupt it with no polling. Each state owns an
 * eventfd, its "waiter"; a blocked call puts its waiter on the shared
 * object's wait list, unlocks, and nl_waits on the eventfd; whoever changes
 * the object writes to every listed eventfd. An eventfd stays readable, so a
 * wake-up between unlock and wait is never lost; spurious wake-ups just loop.
 *
 * Process-wide state (one of a kind, hence a C global, guarded by a mutex):
 * the count of running non-daemon threads the main script waits for at exit,
 * as Python's threading._shutdown does, and the flag that stops busy threads
 * once the program is ending.
 */
#include <errno.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "netlua.h"
#include "modules.h"

#define NL_THREAD_MT "thread.handle"
#define NL_CHANNEL_MT "thread.channel"
#define NL_MUTEX_MT "thread.mutex"
#define NL_GUARD_MT "thread.mutexguard"
#define WAITER_KEY "thread.waiter"
#define SELF_KEY "thread.self"
#define STOP_HOOK_COUNT 1000

/* ---- waiting on shared objects ------------------------------------------- */

typedef struct Waiter {
  struct Waiter *next, *prev;
  int fd;
} Waiter;

typedef struct WaitList {
  Waiter *head;
} WaitList;

static void waitlist_add(WaitList *wl, Waiter *w) {
  w->prev = NULL;
  w->next = wl->head;
  if (wl->head != NULL) wl->head->prev = w;
  wl->head = w;
}

static void waitlist_remove(WaitList *wl, Waiter *w) {
  if (w->prev != NULL) w->prev->next = w->next;
  else wl->head = w->next;
  if (w->next != NULL) w->next->prev = w->prev;
}

/* Wakes every waiter; called with the object's mutex held. */
static void waitlist_wake(WaitList *wl) {
  for (Waiter *w = wl->head; w != NULL; w = w->next) {
    uint64_t one = 1;
    while (write(w->fd, &one, sizeof one) < 0 && errno == EINTR) {}
  }
}

static void drain(int fd) {
  uint64_t n;
  while (read(fd, &n, sizeof n) < 0 && errno == EINTR) {}
}

/* Who waits. In a task, the wait suspends only the task, and the method
 * then starts over with its stack values 1..nargs (runtime/sched.c); `obj`
 * (the shared object) stays referenced while the task's waiter is listed on
 * it. L == NULL: a plain C wait. */
typedef struct Caller {
  lua_State *L;
  int nargs;
  nl_Shared *obj;
} Caller;

/* A task's entry on a wait list: it outlives the C frames of the call that
 * waited (they are gone while the task is suspended), so it lives in the
 * task's extension slot; the call that starts over takes it off the list. */
typedef struct TaskNode {
  nl_TaskExt ext; /* first: the runtime frees it through ext.cleanup */
  Waiter w;
  pthread_mutex_t *mu; /* of the object whose list holds w, or NULL */
  WaitList *wl;
  nl_Shared *obj;
} TaskNode;

static void node_unlink(TaskNode *n) {
  if (n->wl == NULL) return;
  pthread_mutex_lock(n->mu);
  waitlist_remove(n->wl, &n->w);
  pthread_mutex_unlock(n->mu);
  n->wl = NULL;
  n->mu = NULL;
  nl_shared_release(n->obj);
}

static void node_cleanup(nl_TaskExt *ext) {
  TaskNode *n = (TaskNode *)ext;
  node_unlink(n);
  free(n);
}

/* At the start of a method that waits: when it starts over after a wait in
 * a task, its entry leaves the old list and the state's eventfd is drained
 * (every task waiting on it was woken when it became readable). */
static void task_rejoin(lua_State *L, int fd) {
  nl_TaskExt **slot;
  uint64_t n;
  if (!nl_restarting(L) || (slot = nl_task_ext(L)) == NULL) return;
  if (*slot != NULL && (*slot)->cleanup == node_cleanup) node_unlink((TaskNode *)*slot);
  while (read(fd, &n, sizeof n) < 0 && errno == EINTR) {}
}

/* wait_on for a task: lists the task's node, unlocks, suspends (does not
 * return then). Returns when the wait ends without suspending (a zero or
 * past deadline, or the outcome of the wait the call is starting over
 * from): 1 woken, 0 timeout, with *mu held again. -1: no memory, use the
 * plain wait. */
static int task_wait_on(Caller *c, nl_TaskExt **slot, pthread_mutex_t *mu, WaitList *wl,
                        int fd, double deadline) {
  TaskNode *n = (TaskNode *)*slot;
  int r;
  if (n != NULL && n->ext.cleanup != node_cleanup) { /* another binding's record */
    (*slot)->cleanup(*slot);
    *slot = NULL;
    n = NULL;
  }
  if (n == NULL) {
    n = (TaskNode *)calloc(1, sizeof *n);
    if (n == NULL) return -1;
    n->ext.cleanup = node_cleanup;
    *slot = &n->ext;
  }
  node_unlink(n);
  n->w.fd = fd;
  waitlist_add(wl, &n->w);
  n->mu = mu;
  n->wl = wl;
  n->obj = c->obj;
  nl_shared_retain(c->obj);
  pthread_mutex_unlock(mu);
  r = nl_waitk(c->L, c->nargs, fd, NL_READ, deadline);
  node_unlink(n);
  if (r > 0) drain(fd);
  pthread_mutex_lock(mu);
  return r > 0 ? 1 : 0;
}

/* Called with *mu held: releases it while waiting, holds it again on
 * return. Returns 1 when woken (the caller re-checks), 0 when the deadline
 * passed, -EINTR when interrupted. */
static int wait_on(Caller *c, pthread_mutex_t *mu, WaitList *wl, int fd, double deadline) {
  Waiter w;
  int r;
  nl_TaskExt **slot = c != NULL ? nl_task_ext(c->L) : NULL;
  if (slot != NULL && (r = task_wait_on(c, slot, mu, wl, fd, deadline)) >= 0) return r;
  w.fd = fd;
  waitlist_add(wl, &w);
  pthread_mutex_unlock(mu);
  r = nl_wait(fd, NL_READ, deadline);
  if (r > 0) drain(fd);
  pthread_mutex_lock(mu);
  waitlist_remove(wl, &w);
  if (r == -EINTR) return r;
  return r > 0 || r < 0 ? 1 : 0;
}

/* The waiter eventfd of this state (one per state, so one per thread). */
typedef struct WaiterBox {
  int fd;
} WaiterBox;

static int waiterbox_gc(lua_State *L) {
  WaiterBox *b = (WaiterBox *)lua_touserdata(L, 1);
  if (b->fd >= 0) close(b->fd);
  b->fd = -1;
  return 0;
}

static int waiter_fd(lua_State *L) {
  WaiterBox *b;
  if (lua_getfield(L, LUA_REGISTRYINDEX, WAITER_KEY) == LUA_TUSERDATA) {
    b = (WaiterBox *)lua_touserdata(L, -1);
    lua_pop(L, 1);
    return b->fd;
  }
  lua_pop(L, 1);
  b = (WaiterBox *)lua_newuserdatauv(L, sizeof *b, 0);
  b->fd = -1;
  lua_newtable(L);
  lua_pushcfunction(L, waiterbox_gc);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  b->fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (b->fd < 0) {
    int err = errno;
    char buf[128];
    luaL_error(L, "cannot create eventfd: %s", nl_strerror(err, buf, sizeof buf));
  }
  lua_setfield(L, LUA_REGISTRYINDEX, WAITER_KEY);
  return b->fd;
}

/* ---- process-wide: threads the program waits for at exit ------------------ */

static struct {
  pthread_mutex_t mu;
  int running;       /* non-daemon threads not finished yet */
  WaitList waiters;  /* woken when `running` drops */
  atomic_long nextid;
  atomic_int stopping; /* the program is ending: busy threads stop */
} procs = {PTHREAD_MUTEX_INITIALIZER, 0, {NULL}, 1, 0};

static void procs_add(int daemon) {
  if (daemon) return;
  pthread_mutex_lock(&procs.mu);
  procs.running++;
  pthread_mutex_unlock(&procs.mu);
}

static void procs_done(int daemon) {
  if (daemon) return;
  pthread_mutex_lock(&procs.mu);
  procs.running--;
  waitlist_wake(&procs.waiters);
  pthread_mutex_unlock(&procs.mu);
}

static void stop_everything(void) {
  nl_begin_shutdown();
  atomic_store(&procs.stopping, 1);
}

/* nl_atexit hook of the main state: waits for every non-daemon thread. A
 * Ctrl-C here (or one that ended the script) stops them: their waits return
 * "interrupted" and a count hook stops busy Lua code. */
static int thread_waitall(lua_State *L) {
  int fd = waiter_fd(L), interrupted = 0;
  if (nl_shutting_down()) stop_everything();
  pthread_mutex_lock(&procs.mu);
  while (procs.running > 0) {
    if (wait_on(NULL, &procs.mu, &procs.waiters, fd, NL_NODEADLINE) == -EINTR) {
      interrupted = 1;
      stop_everything();
    }
  }
  pthread_mutex_unlock(&procs.mu);
  if (interrupted) return nl_raise_interrupted(L);
  return 0;
}

/* ---- thread records ------------------------------------------------------ */

/* What a thread and its handle share. The running thread holds one
 * reference, the handle another. */
typedef struct Record {
  nl_Shared sh;     /* first: references, lock */
  WaitList waiters; /* joiners */
  pthread_t tid;
  long id;
  int daemon;
  char *name;
  nl_Packet *start; /* function and arguments, until the thread takes them */
  /* set by the thread before `done`: */
  int done, ok, interrupted;
  nl_Packet *results; /* ok: the function's results */
  char *error;        /* not ok: message and traceback */
  int joined;         /* a join delivered the outcome */
} Record;

/* The last reference went: an error nobody joined is printed now. */
static void record_destroy(nl_Shared *sh) {
  Record *r = (Record *)sh;
  if (r->error != NULL && !r->joined && !r->interrupted) {
    fprintf(stderr, "Exception in thread %s:\n%s\n", r->name, r->error);
    fflush(stderr);
  }
  nl_packet_free(r->start);
  nl_packet_free(r->results);
  free(r->error);
  free(r->name);
  free(r);
}

static Record *record_new(long id, const char *name, int daemon) {
  Record *r = (Record *)calloc(1, sizeof *r);
  if (r == NULL) return NULL;
  r->name = strdup(name);
  if (r->name == NULL) {
    free(r);
    return NULL;
  }
  nl_shared_init(&r->sh, NL_THREAD_MT, record_destroy);
  r->id = id;
  r->daemon = daemon;
  return r;
}

/* ---- inside the new thread ----------------------------------------------- */

static void stop_hook(lua_State *L, lua_Debug *ar) {
  (void)ar;
  if (atomic_load_explicit(&procs.stopping, memory_order_relaxed))
    nl_raise_interrupted(L);
}

/* Unpacks the function and arguments, runs it, packs the results. */
static int body(lua_State *L) {
  Record *r = (Record *)lua_touserdata(L, 1);
  nl_Packet *start = r->start;
  int n, base = lua_gettop(L);
  r->start = NULL;
  n = nl_unpack(L, start);
  if (lua_type(L, base + 1) == LUA_TSTRING) {
    const char *path = lua_tostring(L, base + 1);
    if (luaL_loadfile(L, path) != LUA_OK) lua_error(L);
    lua_replace(L, base + 1);
  }
  lua_call(L, n - 1, LUA_MULTRET);
  r->results = nl_pack(L, base + 1, lua_gettop(L) - base);
  /* the tasks this thread spawned finish before it does, as in main */
  if (nl_sched_drain(L) != 0) nl_raise_interrupted(L);
  return 0;
}

static void set_self(lua_State *L, Record *r) {
  lua_createtable(L, 0, 2);
  lua_pushstring(L, r->name);
  lua_setfield(L, -2, "name");
  lua_pushinteger(L, r->id);
  lua_setfield(L, -2, "id");
  lua_setfield(L, LUA_REGISTRYINDEX, SELF_KEY);
}

static int cancel_tasks(lua_State *L) {
  nl_sched_cancelall(L);
  return 0;
}

static void run_body(lua_State *L, Record *r) {
  lua_sethook(L, stop_hook, LUA_MASKCOUNT, STOP_HOOK_COUNT);
  set_self(L, r);
  lua_pushcfunction(L, nl_msghandler);
  lua_pushcfunction(L, body);
  lua_pushlightuserdata(L, r);
  if (lua_pcall(L, 1, 0, 1) == LUA_OK) {
    r->ok = 1;
    return;
  }
  r->ok = 0;
  r->error = strdup(lua_tostring(L, -1));
  /* threads never take Ctrl-C: "interrupted" here means shutdown */
  r->interrupted = nl_is_interrupted(L, -1);
  lua_settop(L, 0);
  lua_pushcfunction(L, cancel_tasks);
  lua_pcall(L, 0, 0, 0); /* tasks the failed thread leaves: their resources close */
  lua_settop(L, 0);
}

static void *thread_main(void *arg) {
  Record *r = (Record *)arg;
  int daemon = r->daemon;
  lua_State *L = nl_newstate();
  if (L != NULL) {
    run_body(L, r);
    lua_close(L);
    nl_loop_free();
  } else {
    r->error = strdup("cannot create state: not enough memory");
  }
  nl_shared_lock(&r->sh);
  r->done = 1;
  waitlist_wake(&r->waiters);
  nl_shared_unlock(&r->sh);
  nl_shared_release(&r->sh);
  procs_done(daemon);
  return NULL;
}

/* ---- thread handles -------------------------------------------------------- */

typedef struct Handle {
  Record *r;
  int reaped; /* pthread_join'ed or detached */
} Handle;

static Handle *check_handle(lua_State *L, int idx) {
  Handle *h = (Handle *)luaL_checkudata(L, idx, NL_THREAD_MT);
  if (h->r == NULL) luaL_error(L, "attempt to use a released thread handle");
  return h;
}

static int record_done(Record *r) {
  int done;
  nl_shared_lock(&r->sh);
  done = r->done;
  nl_shared_unlock(&r->sh);
  return done;
}

static void handle_reap(Handle *h, int done) {
  if (h->reaped) return;
  if (done) pthread_join(h->r->tid, NULL);
  else pthread_detach(h->r->tid);
  h->reaped = 1;
}

static int handle_gc(lua_State *L) {
  Handle *h = (Handle *)luaL_checkudata(L, 1, NL_THREAD_MT);
  if (h->r == NULL) return 0;
  handle_reap(h, record_done(h->r));
  nl_shared_release(&h->r->sh);
  h->r = NULL;
  return 0;
}

/* The outcome, pushed from the cache in the handle's user value (the first
 * join fills it): true, results... or false, error. */
static int push_outcome(lua_State *L, Handle *h) {
  Record *r = h->r;
  int n;
  if (lua_getiuservalue(L, 1, 1) == LUA_TTABLE) {
    lua_getfield(L, -1, "n");
    n = (int)lua_tointeger(L, -1);
    lua_pop(L, 1);
    luaL_checkstack(L, n, "too many results");
    for (int i = 1; i <= n; i++) lua_rawgeti(L, -i, i);
    lua_remove(L, -n - 1);
    return n;
  }
  lua_pop(L, 1);
  r->joined = 1;
  n = lua_gettop(L);
  lua_pushboolean(L, r->ok);
  if (r->ok) {
    nl_Packet *p = r->results;
    r->results = NULL;
    nl_unpack(L, p);
  } else {
    lua_pushstring(L, r->error ? r->error : "thread failed");
  }
  n = lua_gettop(L) - n;
  lua_createtable(L, n, 1);
  for (int i = 1; i <= n; i++) {
    lua_pushvalue(L, -n - 1 + i - 1);
    lua_rawseti(L, -2, i);
  }
  lua_pushinteger(L, n);
  lua_setfield(L, -2, "n");
  lua_setiuservalue(L, 1, 1);
  return n;
}

/* t:join([timeout]) -> true, results... | false, err | nil, "timeout" */
static int thr_join(lua_State *L) {
  Handle *h = check_handle(L, 1);
  Record *r = h->r;
  double timeout = luaL_optnumber(L, 2, -1);
  double deadline = nl_deadlinek(L, timeout);
  int fd = waiter_fd(L), w = 1, done;
  Caller c = {L, 2, &r->sh};
  lua_settop(L, 2);
  task_rejoin(L, fd);
  nl_shared_lock(&r->sh);
  while (!r->done && w > 0) w = wait_on(&c, &r->sh.mu, &r->waiters, fd, deadline);
  lua_settop(L, 1);
  done = r->done;
  nl_shared_unlock(&r->sh);
  if (w == -EINTR && !done) return nl_raise_interrupted(L);
  if (!done) return nl_pushfail(L, "timeout", NULL);
  handle_reap(h, 1);
  return push_outcome(L, h);
}

static int thr_alive(lua_State *L) {
  Handle *h = check_handle(L, 1);
  lua_pushboolean(L, !record_done(h->r));
  return 1;
}

static int thr_tostring(lua_State *L) {
  Handle *h = (Handle *)luaL_checkudata(L, 1, NL_THREAD_MT);
  if (h->r == NULL) lua_pushliteral(L, "thread (released)");
  else
    lua_pushfstring(L, "thread %s (%s%s)", h->r->name,
                    record_done(h->r) ? "finished" : "running",
                    h->r->daemon ? ", daemon" : "");
  return 1;
}

static const luaL_Reg thr_methods[] = {
  {"join", thr_join},
  {"alive", thr_alive},
  {NULL, NULL}
};

/* t.name, t.id, t.daemon, then the methods. */
static int thr_index(lua_State *L) {
  Handle *h = check_handle(L, 1);
  const char *key = luaL_checkstring(L, 2);
  if (strcmp(key, "name") == 0) lua_pushstring(L, h->r->name);
  else if (strcmp(key, "id") == 0) lua_pushinteger(L, h->r->id);
  else if (strcmp(key, "daemon") == 0) lua_pushboolean(L, h->r->daemon);
  else {
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_getfield(L, -1, key);
  }
  return 1;
}

static const luaL_Reg thr_meta[] = {
  {"__gc", handle_gc},
  {"__tostring", thr_tostring},
  {NULL, NULL}
};

/* ---- spawn ------------------------------------------------------------------ */

/* Spawn options from the table form: thread.spawn{fn, args..., name=, daemon=}.
 * Leaves fn and the args on the stack from index 2 on. */
static int spawn_options(lua_State *L, const char **name, int *daemon) {
  lua_Integer n;
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  if (lua_getfield(L, 1, "name") != LUA_TNIL) {
    if (lua_type(L, -1) != LUA_TSTRING) luaL_error(L, "option 'name' must be a string");
    *name = lua_tostring(L, -1);
  }
  *daemon = lua_getfield(L, 1, "daemon") != LUA_TNIL && lua_toboolean(L, -1);
  lua_pop(L, 1);
  n = (lua_Integer)lua_rawlen(L, 1);
  luaL_checkstack(L, (int)n + 4, "too many arguments");
  for (lua_Integer i = 1; i <= n; i++) lua_rawgeti(L, 1, i);
  return (int)n;
}

static int thread_spawn(lua_State *L) {
  const char *name = NULL;
  int daemon = 0, first = 1, n = lua_gettop(L), err;
  long id;
  char defname[32];
  Handle *h;
  Record *r;
  if (lua_type(L, 1) == LUA_TTABLE) {
    n = spawn_options(L, &name, &daemon);
    first = lua_gettop(L) - n + 1;
  }
  if (n < 1 || (lua_type(L, first) != LUA_TFUNCTION && lua_type(L, first) != LUA_TSTRING))
    return luaL_argerror(L, 1, "function or file name expected");
  id = atomic_fetch_add(&procs.nextid, 1);
  if (name == NULL) {
    snprintf(defname, sizeof defname, "Thread-%ld", id);
    name = defname;
  }
  h = (Handle *)lua_newuserdatauv(L, sizeof *h, 1);
  h->r = NULL;
  h->reaped = 1;
  luaL_setmetatable(L, NL_THREAD_MT);
  lua_insert(L, first);
  h->r = r = record_new(id, name, daemon);
  if (r == NULL) return luaL_error(L, "not enough memory");
  r->start = nl_pack(L, first + 1, n);
  nl_shared_retain(&r->sh); /* the thread's */
  procs_add(daemon);
  err = nl_thread_start(&r->tid, thread_main, r);
  if (err != 0) {
    nl_shared_release(&r->sh);
    procs_done(daemon);
    return nl_pusherrno(L, err);
  }
  h->reaped = 0;
  lua_settop(L, first);
  return 1;
}

/* ---- channels ------------------------------------------------------------- */

typedef struct Item {
  struct Item *next;
  nl_Packet *packet;
} Item;

typedef struct Channel {
  nl_Shared sh;     /* first: references, lock */
  WaitList waiters; /* senders and receivers */
  Item *head, *tail;
  size_t count, capacity; /* capacity 0: unbounded */
  size_t reserved;        /* room taken by sends still packing */
  size_t bytes, peak;     /* memory the queued values hold; most since last empty */
  int closed;
} Channel;

/* A channel that empties (or goes away) after holding this much gives the
 * memory back to the system (give_back_memory). */
#define TRIM_BYTES ((size_t)8 << 20)

/* Freed values stay in malloc's free lists, resident, however many there
 * were; malloc_trim returns their pages to the system. It walks every
 * arena, so it runs only after a channel held TRIM_BYTES. Without glibc,
 * nothing to do. */
static void give_back_memory(void) {
#ifdef __GLIBC__
  malloc_trim(0);
#endif
}

static size_t item_size(const Item *it) {
  return sizeof *it + nl_packet_size(it->packet);
}

/* The last reference went: the values still queued go with it. */
static void channel_destroy(nl_Shared *sh) {
  Channel *ch = (Channel *)sh;
  int trim = ch->bytes >= TRIM_BYTES;
  while (ch->head != NULL) {
    Item *it = ch->head;
    ch->head = it->next;
    nl_packet_free(it->packet);
    free(it);
  }
  free(ch);
  if (trim) give_back_memory();
}

static Channel *check_channel(lua_State *L, int idx) {
  return (Channel *)nl_checkshared(L, idx, NL_CHANNEL_MT);
}

static int thread_channel(lua_State *L) {
  lua_Integer cap = luaL_optinteger(L, 1, 0);
  Channel *ch;
  luaL_argcheck(L, lua_isnoneornil(L, 1) || cap > 0, 1, "capacity must be positive");
  nl_Shared **box = nl_pushshared(L, NL_CHANNEL_MT, NULL);
  ch = (Channel *)calloc(1, sizeof *ch);
  if (ch == NULL) return luaL_error(L, "not enough memory");
  nl_shared_init(&ch->sh, NL_CHANNEL_MT, channel_destroy);
  ch->capacity = (size_t)cap;
  *box = &ch->sh;
  return 1;
}

#define NEED_WAITER 3

/* Waits (mutex held) until `ready(ch)` or closed; returns 1, 0 on timeout,
 * or -EINTR. `fd` is the state's waiter, fetched before locking (nothing
 * here may raise); -1 when the caller has none yet: a call that must really
 * wait then returns NEED_WAITER, and the caller unlocks, fetches it and
 * tries again. So a send that finds room, or a recv that finds an item or
 * times out at once, needs no eventfd: a new thread started while the
 * process is out of descriptors can still pass values (chatserver's client
 * threads died creating one, and the hub never heard of them). */
static int chan_wait(Caller *c, Channel *ch, int fd, int (*ready)(const Channel *),
                     double deadline) {
  int w = 1;
  while (!ready(ch) && !ch->closed && w > 0) {
    if (deadline >= 0 && nl_monotonic() >= deadline) return 0;
    if (fd < 0) return NEED_WAITER;
    w = wait_on(c, &ch->sh.mu, &ch->waiters, fd, deadline);
  }
  if (ready(ch) || ch->closed) return 1;
  return w;
}

/* Locks ch and waits as chan_wait does, fetching the waiter only when
 * needed; returns with ch locked. May raise (no eventfd), never locked. */
static int chan_lock_wait(lua_State *L, Caller *c, Channel *ch,
                          int (*ready)(const Channel *), double deadline) {
  int fd = -1, w;
  if (nl_restarting(L)) { /* after a wait in a task: it has its waiter */
    fd = waiter_fd(L);
    task_rejoin(L, fd);
  }
  for (;;) {
    nl_shared_lock(&ch->sh);
    w = chan_wait(c, ch, fd, ready, deadline);
    if (w != NEED_WAITER) return w;
    nl_shared_unlock(&ch->sh);
    fd = waiter_fd(L);
  }
}

static int has_room(const Channel *ch) {
  return ch->capacity == 0 || ch->count + ch->reserved < ch->capacity;
}

static int has_items(const Channel *ch) { return ch->count > 0; }

/* nl_pack under lua_pcall, so that send can give back its reserved room. */
static int pack_one(lua_State *L) {
  lua_pushlightuserdata(L, nl_pack(L, 1, 1));
  return 1;
}

static void enqueue(Channel *ch, Item *it) {
  if (ch->tail != NULL) ch->tail->next = it;
  else ch->head = it;
  ch->tail = it;
  ch->count++;
  ch->bytes += item_size(it);
  if (ch->bytes > ch->peak) ch->peak = ch->bytes;
}

/* Takes the first item (there is one). Returns 1 when that emptied a
 * channel that held TRIM_BYTES: the caller gives the memory back once the
 * item is freed. */
static int dequeue(Channel *ch, Item **out) {
  Item *it = ch->head;
  int trim = 0;
  ch->head = it->next;
  if (ch->head == NULL) ch->tail = NULL;
  ch->count--;
  ch->bytes -= item_size(it);
  if (ch->count == 0) {
    trim = ch->peak >= TRIM_BYTES;
    ch->peak = ch->bytes = 0;
  }
  *out = it;
  return trim;
}

/* ch:send(v[, timeout]) -> true | nil, "timeout"|"closed"
 * Room is reserved before v is packed: packing moves sockets out of this
 * state, so a send that times out or finds the channel closed must fail
 * before that, leaving the socket with the sender. */
static int chan_send(lua_State *L) {
  Channel *ch = check_channel(L, 1);
  double deadline = nl_deadlinek(L, luaL_optnumber(L, 3, -1));
  int w, status;
  nl_Packet *p;
  Item *it;
  Caller c = {L, 3, &ch->sh};
  luaL_argcheck(L, !lua_isnoneornil(L, 2), 2, "cannot send nil");
  lua_settop(L, 3);
  w = chan_lock_wait(L, &c, ch, has_room, deadline);
  if (w == 1 && !ch->closed) ch->reserved++;
  else if (w == 1) w = 2; /* closed */
  nl_shared_unlock(&ch->sh);
  if (w == -EINTR) return nl_raise_interrupted(L);
  if (w != 1) return nl_pushfail(L, w == 0 ? "timeout" : "closed", NULL);
  lua_pushcfunction(L, pack_one);
  lua_pushvalue(L, 2);
  status = lua_pcall(L, 1, 1, 0);
  p = status == LUA_OK ? (nl_Packet *)lua_touserdata(L, -1) : NULL;
  it = p != NULL ? (Item *)malloc(sizeof *it) : NULL;
  nl_shared_lock(&ch->sh);
  ch->reserved--;
  if (it != NULL) {
    it->next = NULL;
    it->packet = p;
    enqueue(ch, it); /* even if closed meanwhile: it was sent before */
  }
  waitlist_wake(&ch->waiters);
  nl_shared_unlock(&ch->sh);
  if (status != LUA_OK) return lua_error(L);
  if (it == NULL) {
    nl_packet_free(p);
    return luaL_error(L, "not enough memory");
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* ch:recv([timeout]) -> value | nil, "timeout"|"closed" */
static int chan_recv(lua_State *L) {
  Channel *ch = check_channel(L, 1);
  double deadline = nl_deadlinek(L, luaL_optnumber(L, 2, -1));
  Item *it = NULL;
  nl_Packet *p;
  Caller c = {L, 2, &ch->sh};
  int w, trim = 0, n;
  lua_settop(L, 2);
  w = chan_lock_wait(L, &c, ch, has_items, deadline);
  if (w == 1 && ch->count > 0) {
    trim = dequeue(ch, &it);
    waitlist_wake(&ch->waiters);
  }
  nl_shared_unlock(&ch->sh);
  if (it == NULL) {
    if (w == -EINTR) return nl_raise_interrupted(L);
    return nl_pushfail(L, w == 0 ? "timeout" : "closed", NULL);
  }
  p = it->packet;
  free(it);
  n = nl_unpack(L, p); /* frees p */
  if (trim) give_back_memory();
  return n;
}

static int chan_close(lua_State *L) {
  Channel *ch = check_channel(L, 1);
  nl_shared_lock(&ch->sh);
  ch->closed = 1;
  waitlist_wake(&ch->waiters);
  nl_shared_unlock(&ch->sh);
  return 0;
}

static int chan_len(lua_State *L) {
  Channel *ch = check_channel(L, 1);
  size_t n;
  nl_shared_lock(&ch->sh);
  n = ch->count;
  nl_shared_unlock(&ch->sh);
  lua_pushinteger(L, (lua_Integer)n);
  return 1;
}

static int chan_closed(lua_State *L) {
  Channel *ch = check_channel(L, 1);
  int closed;
  nl_shared_lock(&ch->sh);
  closed = ch->closed;
  nl_shared_unlock(&ch->sh);
  lua_pushboolean(L, closed);
  return 1;
}

/* for v in ch:iter() do: recv until closed and drained. */
static int chan_next(lua_State *L) {
  int n;
  lua_settop(L, 0);
  lua_pushvalue(L, lua_upvalueindex(1));
  n = chan_recv(L);
  if (lua_isnil(L, -n)) return 0;
  return n;
}

static int chan_iter(lua_State *L) {
  check_channel(L, 1);
  lua_settop(L, 1);
  lua_pushcclosure(L, chan_next, 1);
  return 1;
}

static const nl_Transfer shared_transfer = {"thread", nl_shared_export, nl_shared_import,
                                            nl_shared_discard};

static const luaL_Reg chan_methods[] = {
  {"send", chan_send},
  {"recv", chan_recv},
  {"close", chan_close},
  {"closed", chan_closed},
  {"iter", chan_iter},
  {NULL, NULL}
};

static const luaL_Reg chan_meta[] = {
  {"__gc", nl_shared_gc},
  {"__close", chan_close},
  {"__len", chan_len},
  {"__eq", nl_shared_eq},
  {"__tostring", nl_shared_tostring},
  {NULL, NULL}
};

/* ---- mutexes ---------------------------------------------------------------- */

typedef struct Mutex {
  nl_Shared sh;     /* first: references, lock */
  WaitList waiters;
  int locked;
} Mutex;

static void mutex_destroy(nl_Shared *sh) { free(sh); }

static Mutex *check_mutex(lua_State *L, int idx) {
  return (Mutex *)nl_checkshared(L, idx, NL_MUTEX_MT);
}

static int thread_mutex(lua_State *L) {
  nl_Shared **box = nl_pushshared(L, NL_MUTEX_MT, NULL);
  Mutex *m = (Mutex *)calloc(1, sizeof *m);
  if (m == NULL) return luaL_error(L, "not enough memory");
  nl_shared_init(&m->sh, NL_MUTEX_MT, mutex_destroy);
  *box = &m->sh;
  return 1;
}

/* Takes the lock, waiting until `deadline`: 1 taken, 0 timeout, -EINTR. */
static int mutex_take(lua_State *L, int nargs, Mutex *m, double deadline) {
  int fd = waiter_fd(L), w = 1;
  Caller c = {L, nargs, &m->sh};
  task_rejoin(L, fd);
  nl_shared_lock(&m->sh);
  while (m->locked && w > 0) w = wait_on(&c, &m->sh.mu, &m->waiters, fd, deadline);
  if (!m->locked) {
    m->locked = 1;
    w = 1;
  } else if (w > 0) {
    w = 0;
  }
  nl_shared_unlock(&m->sh);
  return w;
}

/* m:lock([timeout]) -> true | nil, "timeout" */
static int mutex_lock(lua_State *L) {
  Mutex *m = check_mutex(L, 1);
  int w;
  double deadline = nl_deadlinek(L, luaL_optnumber(L, 2, -1));
  lua_settop(L, 2);
  w = mutex_take(L, 2, m, deadline);
  if (w == -EINTR) return nl_raise_interrupted(L);
  if (w == 0) return nl_pushfail(L, "timeout", NULL);
  lua_pushboolean(L, 1);
  return 1;
}

static int mutex_trylock(lua_State *L) {
  Mutex *m = check_mutex(L, 1);
  int taken = 0;
  nl_shared_lock(&m->sh);
  if (!m->locked) m->locked = taken = 1;
  nl_shared_unlock(&m->sh);
  lua_pushboolean(L, taken);
  return 1;
}

static int mutex_unlock(lua_State *L) {
  Mutex *m = check_mutex(L, 1);
  int was;
  nl_shared_lock(&m->sh);
  was = m->locked;
  m->locked = 0;
  waitlist_wake(&m->waiters);
  nl_shared_unlock(&m->sh);
  if (!was) return luaL_error(L, "unlock of an unlocked mutex");
  return 0;
}

static void mutex_give(Mutex *m) {
  nl_shared_lock(&m->sh);
  m->locked = 0;
  waitlist_wake(&m->waiters);
  nl_shared_unlock(&m->sh);
}

/* The lock m:with holds, as a to-be-closed value on the stack of the call:
 * Lua closes it however the call ends (return, error, a task cancelled
 * while it waits inside fn, the coroutine closed), so the lock is given
 * back exactly once. It keeps a reference to the mutex. */
typedef struct Guard {
  Mutex *m;
  int held;
} Guard;

static int guard_close(lua_State *L) {
  Guard *g = (Guard *)luaL_checkudata(L, 1, NL_GUARD_MT);
  if (g->held) {
    g->held = 0;
    mutex_give(g->m);
  }
  return 0;
}

static int guard_gc(lua_State *L) {
  Guard *g = (Guard *)luaL_checkudata(L, 1, NL_GUARD_MT);
  guard_close(L);
  if (g->m != NULL) nl_shared_release(&g->m->sh);
  g->m = NULL;
  return 0;
}

static void push_guard(lua_State *L, Mutex *m) {
  Guard *g = (Guard *)lua_newuserdatauv(L, sizeof *g, 0);
  g->m = NULL;
  g->held = 0;
  luaL_setmetatable(L, NL_GUARD_MT);
  nl_shared_retain(&m->sh);
  g->m = m;
}

static int with_results(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  (void)ctx;
  return lua_gettop(L) - 2; /* above the mutex and the guard */
}

/* m:with(fn, ...) -> fn's results; the lock is released even on error. In
 * a task, fn may wait (lua_callk): the task keeps the lock meanwhile, and
 * other tasks wanting it suspend in their own m:lock()/m:with(). The guard
 * is made before the lock is taken (on top: a wait for the lock calls this
 * again with it), so no failure can come between taking and guarding. */
static int mutex_with(lua_State *L) {
  Mutex *m = check_mutex(L, 1);
  Guard *g;
  int w, top;
  luaL_checktype(L, 2, LUA_TFUNCTION);
  if (!nl_restarting(L) || !luaL_testudata(L, -1, NL_GUARD_MT)) push_guard(L, m);
  top = lua_gettop(L);
  g = (Guard *)lua_touserdata(L, top);
  w = mutex_take(L, top, m, NL_NODEADLINE);
  if (w == -EINTR) return nl_raise_interrupted(L);
  nl_restart_clear(L); /* fn's waits are its own */
  g->held = 1;
  lua_rotate(L, 2, 1); /* mutex, guard, fn, args... */
  lua_toclose(L, 2);
  lua_callk(L, top - 3, LUA_MULTRET, 0, with_results);
  return with_results(L, LUA_OK, 0);
}

static const luaL_Reg mutex_methods[] = {
  {"lock", mutex_lock},
  {"unlock", mutex_unlock},
  {"trylock", mutex_trylock},
  {"with", mutex_with},
  {NULL, NULL}
};

static const luaL_Reg mutex_meta[] = {
  {"__gc", nl_shared_gc},
  {"__eq", nl_shared_eq},
  {"__tostring", nl_shared_tostring},
  {NULL, NULL}
};

static const luaL_Reg guard_meta[] = {
  {"__close", guard_close},
  {"__gc", guard_gc},
  {NULL, NULL}
};

/* ---- the rest of the module -------------------------------------------------- */

static int thread_sleep(lua_State *L) {
  double s = luaL_checknumber(L, 1);
  luaL_argcheck(L, s >= 0, 1, "non-negative number expected");
  nl_sleepk(L, 1, s);
  return 0;
}

/* thread.self() -> name, id ("MainThread", 0 in the main state) */
static int thread_self(lua_State *L) {
  if (lua_getfield(L, LUA_REGISTRYINDEX, SELF_KEY) != LUA_TTABLE) {
    lua_pushliteral(L, "MainThread");
    lua_pushinteger(L, 0);
    return 2;
  }
  lua_getfield(L, -1, "name");
  lua_getfield(L, -2, "id");
  return 2;
}

static int thread_cpus(lua_State *L) {
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  lua_pushinteger(L, n > 0 ? n : 1);
  return 1;
}

static const luaL_Reg thread_funcs[] = {
  {"spawn", thread_spawn},
  {"channel", thread_channel},
  {"mutex", thread_mutex},
  {"sleep", thread_sleep},
  {"self", thread_self},
  {"cpus", thread_cpus},
  {NULL, NULL}
};

static void new_thread_class(lua_State *L) {
  luaL_newmetatable(L, NL_THREAD_MT);
  luaL_setfuncs(L, thr_meta, 0);
  luaL_newlib(L, thr_methods);
  lua_pushcclosure(L, thr_index, 1);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
}

int luaopen_thread(lua_State *L) {
  new_thread_class(L);
  nl_newclass_transfer(L, NL_CHANNEL_MT, chan_methods, chan_meta, &shared_transfer);
  nl_newclass_transfer(L, NL_MUTEX_MT, mutex_methods, mutex_meta, &shared_transfer);
  nl_newclass(L, NL_GUARD_MT, NULL, guard_meta);
  if (nl_is_main_thread()) {
    waiter_fd(L); /* thread_waitall at exit must not fail for want of one */
    lua_pushcfunction(L, thread_waitall);
    nl_atexit(L, -1);
    lua_pop(L, 1);
  }
  luaL_newlib(L, thread_funcs);
  return 1;
}
