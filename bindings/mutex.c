/*
 * mutex.c: thread.mutex and thread.semaphore (also task.semaphore), locks
 * shared between threads and tasks (layer: bindings, part of the `thread`
 * module).
 *
 * Both are one counting lock: an nl_Shared structure holding `max` permits
 * (1 for a mutex, n for a semaphore); each state holds a box of it. Callers
 * that find no permit free wait on its runtime wait queue, in order.
 * Giving a permit back with waiters hands it to the first one, so nobody
 * arriving later takes it first (FIFO); a waiter that goes away before it
 * runs (its task cancelled, Ctrl-C) passes it on (pass_on). Permits are not
 * owned: any code may give one back, as with Python's Lock and
 * BoundedSemaphore; giving back more than were taken raises.
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>

#include "thread.h"

typedef struct Mutex {
  nl_Shared sh;         /* first: references, lock */
  nl_WaitQueue waiters; /* while no permit is free */
  int free;             /* permits nobody holds */
  int max;              /* permits in all */
} Mutex;

enum { GOT_LOCK = 1 }; /* what giving a permit back hands over */

/* What the two classes call their operations, for error messages. */
typedef struct Kind {
  const char *tname;
  const char *overfree; /* giving back a permit nobody took */
} Kind;

static const Kind MUTEX = {NL_MUTEX_MT, "unlock of an unlocked mutex"};
static const Kind SEMAPHORE = {NL_SEMAPHORE_MT,
                               "release of a semaphore that was not acquired (every permit is free)"};

static void mutex_destroy(nl_Shared *sh) { free(sh); }

static Mutex *check_lock(lua_State *L, int idx, const Kind *k) {
  return (Mutex *)nl_checkshared(L, idx, k->tname);
}

/* With m locked: the permit goes to the first waiter, else it is free. */
static void hand_on(Mutex *m) {
  if (!nl_queue_wakeone(&m->waiters, GOT_LOCK, NULL)) m->free++;
}

static void pass_on(nl_WaitQueue *q, nl_QueueWait *w) {
  if (w->status == GOT_LOCK) hand_on((Mutex *)q->owner);
}

static void give(Mutex *m) {
  nl_shared_lock(&m->sh);
  hand_on(m);
  nl_shared_unlock(&m->sh);
}

static void push_lock(lua_State *L, const Kind *k, int permits) {
  nl_Shared **box = nl_pushshared(L, k->tname, NULL);
  Mutex *m = (Mutex *)calloc(1, sizeof *m);
  if (m == NULL) luaL_error(L, "not enough memory");
  nl_shared_init(&m->sh, k->tname, mutex_destroy);
  nl_queue_init(&m->waiters, &m->sh, pass_on);
  m->free = m->max = permits;
  *box = &m->sh;
}

int thread_mutex(lua_State *L) {
  push_lock(L, &MUTEX, 1);
  return 1;
}

/* thread.semaphore(n) / task.semaphore(n): n permits, n >= 1. */
int thread_semaphore(lua_State *L) {
  lua_Integer n = luaL_checkinteger(L, 1);
  luaL_argcheck(L, n >= 1 && n <= INT_MAX, 1, "at least one permit expected");
  push_lock(L, &SEMAPHORE, (int)n);
  return 1;
}

static int can_lock(nl_WaitQueue *q, void **value) {
  Mutex *m = (Mutex *)q->owner;
  (void)value;
  if (m->free == 0) return 0;
  m->free--;
  return GOT_LOCK;
}

/* lock([timeout]) / acquire([timeout]) -> true | nil, "timeout". A waiting
 * call keeps its record in slot 3. */
static int take(lua_State *L, const Kind *k) {
  Mutex *m = check_lock(L, 1, k);
  double deadline = nl_deadline(luaL_optnumber(L, 2, -1));
  int status = nl_queue_until(L, 3, &m->waiters, deadline, can_lock, NULL);
  if (status == 0) return nl_pushfail(L, "timeout", NULL);
  lua_pushboolean(L, 1);
  return 1;
}

static int try_take(lua_State *L, const Kind *k) {
  Mutex *m = check_lock(L, 1, k);
  int taken;
  nl_shared_lock(&m->sh);
  taken = can_lock(&m->waiters, NULL);
  nl_shared_unlock(&m->sh);
  lua_pushboolean(L, taken);
  return 1;
}

static int give_back(lua_State *L, const Kind *k) {
  Mutex *m = check_lock(L, 1, k);
  int held;
  nl_shared_lock(&m->sh);
  held = m->free < m->max;
  if (held) hand_on(m);
  nl_shared_unlock(&m->sh);
  if (!held) return luaL_error(L, "%s", k->overfree);
  return 0;
}

/* Permits free now (a semaphore's; it may change at once). */
static int sem_available(lua_State *L) {
  Mutex *m = check_lock(L, 1, &SEMAPHORE);
  int n;
  nl_shared_lock(&m->sh);
  n = m->free;
  nl_shared_unlock(&m->sh);
  lua_pushinteger(L, n);
  return 1;
}

/* ---- m:with ------------------------------------------------------------------- */

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
    give(g->m);
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

static Guard *push_guard(lua_State *L, Mutex *m) {
  Guard *g = (Guard *)lua_newuserdatauv(L, sizeof *g, 0);
  g->m = NULL;
  g->held = 0;
  luaL_setmetatable(L, NL_GUARD_MT);
  nl_shared_retain(&m->sh);
  g->m = m;
  return g;
}

/* fn's results: everything above the guard and the lock's record. */
static int with_results(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  return lua_gettop(L) - (int)ctx;
}

/* m:with(fn, ...) -> fn's results; the lock is released however fn ends.
 * Stack: the mutex, fn and its n arguments (up to `base`), the guard
 * (to-be-closed, made before the lock is taken so that nothing can fail
 * between taking and guarding), then the slot of the lock's record. A replay
 * after waiting for the lock finds both. In a task fn may wait (lua_callk):
 * the task keeps the lock meanwhile. */
static int with(lua_State *L, const Kind *k) {
  Mutex *m = check_lock(L, 1, k);
  int base = lua_gettop(L);
  Guard *g = NULL;
  if (nl_restarting(L) && base > 3 && (g = luaL_testudata(L, base - 1, NL_GUARD_MT)) != NULL)
    base -= 2;
  if (g == NULL) {
    luaL_checktype(L, 2, LUA_TFUNCTION);
    g = push_guard(L, m);
    lua_toclose(L, base + 1);
  }
  nl_queue_until(L, base + 2, &m->waiters, NL_NODEADLINE, can_lock, NULL); /* no deadline: it came */
  g->held = 1;
  lua_settop(L, base + 2); /* the record's slot, empty when the lock came at once */
  luaL_checkstack(L, base, "too many arguments");
  for (int i = 2; i <= base; i++) lua_pushvalue(L, i);
  lua_callk(L, base - 2, LUA_MULTRET, base + 2, with_results);
  return with_results(L, LUA_OK, base + 2);
}

static int mutex_lock(lua_State *L) { return take(L, &MUTEX); }
static int mutex_trylock(lua_State *L) { return try_take(L, &MUTEX); }
static int mutex_unlock(lua_State *L) { return give_back(L, &MUTEX); }
static int mutex_with(lua_State *L) { return with(L, &MUTEX); }
static int sem_acquire(lua_State *L) { return take(L, &SEMAPHORE); }
static int sem_tryacquire(lua_State *L) { return try_take(L, &SEMAPHORE); }
static int sem_release(lua_State *L) { return give_back(L, &SEMAPHORE); }
static int sem_with(lua_State *L) { return with(L, &SEMAPHORE); }

static const luaL_Reg mutex_methods[] = {
  {"lock", mutex_lock},
  {"unlock", mutex_unlock},
  {"trylock", mutex_trylock},
  {"with", mutex_with},
  {NULL, NULL}
};

static const luaL_Reg sem_methods[] = {
  {"acquire", sem_acquire},
  {"release", sem_release},
  {"tryacquire", sem_tryacquire},
  {"available", sem_available},
  {"with", sem_with},
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

void thread_open_mutex(lua_State *L) {
  nl_newclass_transfer(L, NL_MUTEX_MT, mutex_methods, mutex_meta, &thread_shared_transfer);
  nl_newclass_transfer(L, NL_SEMAPHORE_MT, sem_methods, mutex_meta, &thread_shared_transfer);
  nl_newclass(L, NL_GUARD_MT, NULL, guard_meta);
}
