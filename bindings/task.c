/*
 * task.c: the task module (layer: bindings): coroutines on this OS thread's
 * event loop. task.spawn(fn, ...) gives a handle with join([timeout]) and
 * cancel(); task.sleep, task.yield, task.self; task.all is in task.lua. The
 * scheduling itself is the runtime's (runtime/sched.c); this file only
 * translates between Lua and it.
 */
#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>

#include "netlua.h"
#include "modules.h"
#include "tasksched.h"

static nl_Task *check_task(lua_State *L, int idx) {
  return luaL_checkudata(L, idx, NL_TASK_MT);
}

/* The table form, task.spawn{fn, args..., quiet=}: leaves fn and the args
 * in its place and returns the quiet flag. */
static int spawn_options(lua_State *L) {
  lua_Integer n = (lua_Integer)lua_rawlen(L, 1);
  int quiet = lua_getfield(L, 1, "quiet") != LUA_TNIL && lua_toboolean(L, -1);
  lua_settop(L, 1);
  luaL_checkstack(L, (int)n + 4, "too many arguments to task");
  for (lua_Integer i = 1; i <= n; i++) lua_rawgeti(L, 1, i);
  lua_remove(L, 1);
  return quiet;
}

/* task.spawn(fn, ...) or task.spawn{fn, args..., quiet=}: a new task, ready
 * to run when this one waits. */
static int task_spawn(lua_State *L) {
  int nargs, quiet = 0;
  nl_Sched *s;
  nl_Task *t;
  lua_State *co;
  if (lua_type(L, 1) == LUA_TTABLE) quiet = spawn_options(L);
  luaL_argexpected(L, lua_type(L, 1) == LUA_TFUNCTION, 1, "function");
  nargs = lua_gettop(L) - 1;
  s = nl_sched(L);
  t = lua_newuserdatauv(L, sizeof *t, 2);
  nl_task_init(s, t);
  t->quiet = quiet;
  t->state = NL_TASK_DONE; /* closed first: nothing to undo if we fail */
  luaL_setmetatable(L, NL_TASK_MT);
  co = lua_newthread(L);
  lua_setiuservalue(L, -2, NL_TASK_THREAD);
  lua_rotate(L, 1, 1); /* handle, fn, args... */
  luaL_checkstack(co, nargs + 1, "too many arguments to task");
  lua_xmove(L, co, nargs + 1);
  nl_task_start(L, 1, t, co, nargs);
  return 1;
}

/* Pushes the outcome as join returns it: true, values... or false, err. */
static int push_outcome(lua_State *L, int idx) {
  lua_Integer n;
  lua_getiuservalue(L, idx, NL_TASK_RESULTS);
  lua_getfield(L, -1, "n");
  n = lua_tointeger(L, -1);
  lua_pop(L, 1);
  luaL_checkstack(L, (int)n, "too many results to join");
  for (lua_Integer i = 1; i <= n; i++) lua_rawgeti(L, -(int)i, i);
  return (int)n;
}

/* A joiner may go on once the task is done. */
static int task_done(nl_WaitQueue *q, void **value) {
  nl_Task *t = (nl_Task *)(void *)((char *)q - offsetof(nl_Task, joiners));
  (void)value;
  return t->state == NL_TASK_DONE;
}

/* h:join([timeout]): true, results... | false, err | nil, "timeout". A
 * join that waits in a task keeps its record in slot 3. */
static int task_join(lua_State *L) {
  nl_Task *t = check_task(L, 1);
  int status;
  if (t->co == L) return luaL_error(L, "a task cannot join itself");
  t->joined = 1;
  status = nl_queue_until(L, 3, &t->joiners, nl_deadline(luaL_optnumber(L, 2, -1)),
                          task_done, NULL);
  if (status == 0) return nl_pushfail(L, "timeout", NULL);
  return push_outcome(L, 1);
}

/* h:cancel(): ends the task where it waits; true, or false when it had
 * already finished. A task cancelling itself stops with "cancelled". */
static int task_cancel(lua_State *L) {
  nl_Task *t = check_task(L, 1);
  if (t->state == NL_TASK_DONE) {
    lua_pushboolean(L, 0);
    return 1;
  }
  if (t->co == L) {
    t->cancelled = 1;
    return luaL_error(L, "cancelled");
  }
  if (t->state == NL_TASK_RUNNING)
    return luaL_error(L, "cannot cancel a task that is blocked inside a C "
                         "call that cannot yield");
  nl_task_cancel(t->sched, t);
  lua_pushboolean(L, 1);
  return 1;
}

static int task_status(lua_State *L) {
  static const char *const names[] = {"ready", "ready", "running", "waiting", "done"};
  nl_Task *t = check_task(L, 1);
  if (t->state == NL_TASK_DONE) lua_pushstring(L, t->cancelled ? "cancelled"
                                                   : t->ok ? "done" : "failed");
  else lua_pushstring(L, t->co == L ? "running" : names[t->state]);
  return 1;
}

static int task_tostring(lua_State *L) {
  lua_pushfstring(L, "task: %p", lua_touserdata(L, 1));
  return 1;
}

/* The handle goes only once the task has finished (live tasks are
 * anchored), or when the state closes. An error nobody waited for was
 * printed when the task ended (runtime/sched.c), so nothing is said here. */
static int task_gc(lua_State *L) {
  nl_Task *t = check_task(L, 1);
  /* only at the end of the state: a task still waiting leaves the loop */
  if (t->state == NL_TASK_WAITING && t->sched->loop != NULL)
    nl_waiter_disarm(t->sched->loop, &t->w);
  else if (t->state == NL_TASK_READY)
    nl_sched_unready(t);
  free(t->watches);
  t->watches = NULL;
  return 0;
}

/* task.yield(): lets the other ready tasks run. Outside a task: runs the
 * ready tasks once. */
static int task_yield(lua_State *L) {
  nl_Task *t = nl_current_task(L);
  if (t != NULL && t->state == NL_TASK_RUNNING && lua_isyieldable(L))
    return nl_task_yield(L, t);
  if (nl_loop_active() != NULL) nl_sleepk(L, -1, 0.0001);
  return 0;
}

/* task.self(): the running task's handle, or nil outside tasks. */
static int task_self(lua_State *L) {
  nl_Task *t = nl_current_task(L);
  if (t == NULL) return 0;
  lua_rawgetp(t->sched->H, 1, t);
  lua_xmove(t->sched->H, L, 1);
  return 1;
}

/* task.count(): tasks of this thread that have not finished. */
static int task_count(lua_State *L) {
  lua_pushinteger(L, nl_sched(L)->live);
  return 1;
}

static const luaL_Reg task_methods[] = {
  {"join", task_join},
  {"cancel", task_cancel},
  {"status", task_status},
  {NULL, NULL}
};

static const luaL_Reg task_meta[] = {
  {"__gc", task_gc},
  {"__tostring", task_tostring},
  {NULL, NULL}
};

static const luaL_Reg task_funcs[] = {
  {"spawn", task_spawn},
  {"sleep", nl_sleep_lua},
  {"yield", task_yield},
  {"self", task_self},
  {"count", task_count},
  {NULL, NULL}
};

int luaopen_task(lua_State *L) {
  nl_newclass(L, NL_TASK_MT, task_methods, task_meta);
  luaL_newlib(L, task_funcs);
  nl_runembedded(L, "task", 1);
  return 1;
}
