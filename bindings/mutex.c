/*
 * mutex.c: thread.mutex, a lock shared between threads and tasks (layer:
 * bindings, part of the `thread` module).
 *
 * A mutex is one nl_Shared structure; each state holds a box of it. Callers
 * that find it locked wait on its runtime wait queue, in order. Unlocking
 * with waiters hands the lock to the first one (the mutex stays locked, now
 * the waiter's), so nobody locking later takes it first; a waiter that goes
 * away before it runs (its task cancelled, Ctrl-C) passes it on (pass_on).
 * The mutex is not reentrant and not owned by a thread: any code may
 * unlock it, as Python's Lock.
 */
#include <errno.h>
#include <stdlib.h>

#include "thread.h"

typedef struct Mutex {
  nl_Shared sh;         /* first: references, lock */
  nl_WaitQueue waiters; /* while locked */
  int locked;
} Mutex;

enum { GOT_LOCK = 1 }; /* what an unlock hands over */

static void mutex_destroy(nl_Shared *sh) { free(sh); }

static Mutex *check_mutex(lua_State *L, int idx) {
  return (Mutex *)nl_checkshared(L, idx, NL_MUTEX_MT);
}

/* With m locked: the lock goes to the first waiter, else it is free. */
static void hand_on(Mutex *m) {
  if (!nl_queue_wakeone(&m->waiters, GOT_LOCK, NULL)) m->locked = 0;
}

static void pass_on(nl_WaitQueue *q, nl_QueueWait *w) {
  if (w->status == GOT_LOCK) hand_on((Mutex *)q->owner);
}

static void give(Mutex *m) {
  nl_shared_lock(&m->sh);
  hand_on(m);
  nl_shared_unlock(&m->sh);
}

int thread_mutex(lua_State *L) {
  nl_Shared **box = nl_pushshared(L, NL_MUTEX_MT, NULL);
  Mutex *m = (Mutex *)calloc(1, sizeof *m);
  if (m == NULL) return luaL_error(L, "not enough memory");
  nl_shared_init(&m->sh, NL_MUTEX_MT, mutex_destroy);
  nl_queue_init(&m->waiters, &m->sh, pass_on);
  *box = &m->sh;
  return 1;
}

static int can_lock(nl_WaitQueue *q, void **value) {
  Mutex *m = (Mutex *)q->owner;
  (void)value;
  if (m->locked) return 0;
  m->locked = 1;
  return GOT_LOCK;
}

/* m:lock([timeout]) -> true | nil, "timeout". A waiting lock keeps its
 * record in slot 3. */
static int mutex_lock(lua_State *L) {
  Mutex *m = check_mutex(L, 1);
  double deadline = nl_deadline(luaL_optnumber(L, 2, -1));
  int status = nl_queue_until(L, 3, &m->waiters, deadline, can_lock, NULL);
  if (status == -EINTR) return nl_raise_interrupted(L);
  if (status == 0) return nl_pushfail(L, "timeout", NULL);
  lua_pushboolean(L, 1);
  return 1;
}

static int mutex_trylock(lua_State *L) {
  Mutex *m = check_mutex(L, 1);
  int taken;
  nl_shared_lock(&m->sh);
  taken = can_lock(&m->waiters, NULL);
  nl_shared_unlock(&m->sh);
  lua_pushboolean(L, taken);
  return 1;
}

static int mutex_unlock(lua_State *L) {
  Mutex *m = check_mutex(L, 1);
  int was;
  nl_shared_lock(&m->sh);
  was = m->locked;
  if (was) hand_on(m);
  nl_shared_unlock(&m->sh);
  if (!was) return luaL_error(L, "unlock of an unlocked mutex");
  return 0;
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
static int mutex_with(lua_State *L) {
  Mutex *m = check_mutex(L, 1);
  int base = lua_gettop(L), status;
  Guard *g = NULL;
  if (nl_restarting(L) && base > 3 && (g = luaL_testudata(L, base - 1, NL_GUARD_MT)) != NULL)
    base -= 2;
  if (g == NULL) {
    luaL_checktype(L, 2, LUA_TFUNCTION);
    g = push_guard(L, m);
    lua_toclose(L, base + 1);
  }
  status = nl_queue_until(L, base + 2, &m->waiters, NL_NODEADLINE, can_lock, NULL);
  if (status == -EINTR) return nl_raise_interrupted(L);
  g->held = 1;
  lua_settop(L, base + 2); /* the record's slot, empty when the lock came at once */
  luaL_checkstack(L, base, "too many arguments");
  for (int i = 2; i <= base; i++) lua_pushvalue(L, i);
  lua_callk(L, base - 2, LUA_MULTRET, base + 2, with_results);
  return with_results(L, LUA_OK, base + 2);
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

void thread_open_mutex(lua_State *L) {
  nl_newclass_transfer(L, NL_MUTEX_MT, mutex_methods, mutex_meta, &thread_shared_transfer);
  nl_newclass(L, NL_GUARD_MT, NULL, guard_meta);
}
