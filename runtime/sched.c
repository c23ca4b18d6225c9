/*
 * sched.c: tasks, the coroutines that share one OS thread's loop (layer:
 * runtime). Each state has one scheduler (a userdata in its registry): a
 * queue of ready tasks that the loop runs between its epoll rounds.
 *
 * A wait inside a task (nl_waitk and friends) arms the task's waiter and
 * yields with a continuation that calls the running C function again from
 * the start (Lua 5.4's lua_yieldk): C frames never survive a suspension, so
 * a cancelled task leaves nothing behind, and a binding keeps its progress
 * in its stack slots: its arguments and a per-call record (nl_callrec_new).
 * The restarted call's wait on the same descriptors returns what the
 * suspended wait ended with, so timeouts read exactly as in blocking code
 * (take_restart). Tasks that
 * other threads wake (a channel, a mutex) come through the scheduler's
 * inbox (waitqueue.c), delivered at the start of each run.
 *
 * The Lua face of all this (task.spawn, join, cancel ...) is bindings/task.c,
 * built on the functions at the end of this file.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "netlua.h"
#include "tasksched.h"
#include "trace.h"

#define SCHED_KEY "netlua.sched"

/* ---- the scheduler of a state ------------------------------------------- */

static int sched_gc(lua_State *L) {
  nl_Sched *s = lua_touserdata(L, 1);
  s->head = s->tail = NULL;
  nl_inbox_free(s->inbox);
  s->inbox = NULL;
  if (s->loop != NULL) {
    nl_loop_setrunner(s->loop, NULL, NULL);
    nl_loop_use(s->loop, -s->live);
    s->loop = NULL;
  }
  s->live = 0;
  return 0;
}

/* The scheduler of L's state, made on first use. [-0, +0, m] */
nl_Sched *nl_sched(lua_State *L) {
  nl_Sched *s;
  if (lua_getfield(L, LUA_REGISTRYINDEX, SCHED_KEY) == LUA_TUSERDATA) {
    s = lua_touserdata(L, -1);
    lua_pop(L, 1);
    return s;
  }
  lua_pop(L, 1);
  s = lua_newuserdatauv(L, sizeof *s, 1);
  memset(s, 0, sizeof *s);
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, sched_gc);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  s->loop = nl_loop();
  if (s->loop == NULL) luaL_error(L, "cannot create the event loop");
  s->inbox = nl_inbox_new(s->loop);
  if (s->inbox == NULL) luaL_error(L, "not enough memory");
  lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
  s->L = lua_tothread(L, -1);
  lua_pop(L, 1);
  s->H = lua_newthread(L); /* bookkeeping stack: anchors table at 1 */
  lua_newtable(s->H);
  lua_setiuservalue(L, -2, 1);
  nl_loop_setrunner(s->loop, nl_sched_run, s);
  lua_setfield(L, LUA_REGISTRYINDEX, SCHED_KEY);
  return s;
}

nl_Task *nl_current_task(lua_State *L) {
  return *(nl_Task **)lua_getextraspace(L);
}

void nl_sched_ready(nl_Task *t) {
  nl_Sched *s = t->sched;
  t->state = NL_TASK_READY;
  t->next_ready = NULL;
  if (s->tail) s->tail->next_ready = t;
  else s->head = t;
  s->tail = t;
}

void nl_sched_unready(nl_Task *t) {
  nl_Sched *s = t->sched;
  nl_Task *prev = NULL;
  for (nl_Task *p = s->head; p != NULL; prev = p, p = p->next_ready) {
    if (p != t) continue;
    if (prev) prev->next_ready = p->next_ready;
    else s->head = p->next_ready;
    if (s->tail == p) s->tail = prev;
    p->next_ready = NULL;
    return;
  }
}

static void task_wake(nl_Waiter *w) {
  if (nl_trace_on) nl_trace_wake(((nl_Task *)w->data)->id, w->result);
  nl_sched_ready(w->data);
}

/* Runs the tasks ready now (not those they make ready: I/O gets its turn
 * in between). Returns nonzero when some are ready again. */
int nl_sched_run(void *ud) {
  nl_Sched *s = ud;
  nl_Task *last;
  nl_inbox_deliver(s->inbox); /* tasks other threads woke */
  last = s->tail;
  while (s->head != NULL) {
    nl_Task *t = s->head;
    s->head = t->next_ready;
    if (s->head == NULL) s->tail = NULL;
    t->next_ready = NULL;
    nl_task_resume(s, t);
    if (t == last) break;
  }
  return s->head != NULL;
}

/* ---- waits that suspend a task ---------------------------------------------- */

/* The task of L when it can be suspended here; NULL when the wait should
 * block the thread as before (not a task: the main script, a thread's
 * function, a coroutine of the user's own). */
nl_Task *nl_task_suspendable(lua_State *L, int nargs) {
  nl_Task *t = nl_current_task(L);
  if (t == NULL || nargs < 0 || t->state != NL_TASK_RUNNING) return NULL;
  if (!lua_isyieldable(L))
    luaL_error(L, "a task cannot wait here: this wait was called through a "
                  "C function that cannot yield (a table.sort comparator, a "
                  "string.gsub callback, __tostring, __gc ...); call it "
                  "outside that function (fetch the data first, then sort or "
                  "format it)");
  return t;
}

int nl_in_task(lua_State *L) {
  nl_Task *t = nl_current_task(L);
  return t != NULL && t->state == NL_TASK_RUNNING;
}

int nl_restarting(lua_State *L) {
  nl_Task *t = nl_current_task(L);
  return t != NULL && t->restart_pending;
}

void *nl_callrec_new(lua_State *L, int slot, size_t size) {
  void *rec;
  if (lua_gettop(L) < slot) lua_settop(L, slot);
  rec = lua_newuserdatauv(L, size, 0);
  memset(rec, 0, size);
  lua_replace(L, slot);
  return rec;
}

/* Only a replay looks at the slot: in a fresh call it holds whatever the
 * caller passed. */
void *nl_callrec_get(lua_State *L, int slot) {
  if (!nl_restarting(L) || lua_type(L, slot) != LUA_TUSERDATA) return NULL;
  return lua_touserdata(L, slot);
}

/* Takes the outcome of the suspended wait the restarted call is replaying:
 * 1 and *result set, or 0 when this is a fresh wait. The outcome is the
 * suspended wait's, so it is taken only by a wait on the same descriptors
 * and events (`fds`, n of them; n 0: a timer alone). A replay can take
 * another path: what blocked it before is ready now (a reply flushed), and
 * the call goes on to another wait (a lingering close on two descriptors).
 * That wait is fresh: it waits, and never reads the other's readiness. */
static int take_restart(nl_Task *t, const nl_PollFd *fds, int n, int *result) {
  const nl_Watch *w = n <= 1 ? &t->one : t->watches;
  if (!t->restart_pending) return 0;
  t->restart_pending = 0;
  if (n != t->nwatched) return 0;
  for (int i = 0; i < n; i++)
    if (w[i].fd != fds[i].fd || w[i].events != fds[i].events) return 0;
  *result = t->w.result;
  return 1;
}

/* Continuation of a suspended wait: the C function again, from the start. */
static int restart_k(lua_State *L, int status, lua_KContext ctx) {
  nl_Task *t = nl_current_task(L);
  lua_Debug ar;
  lua_CFunction f;
  int n;
  (void)status;
  lua_settop(L, (int)ctx);
  if (!lua_getstack(L, 0, &ar) || !lua_getinfo(L, "f", &ar))
    return luaL_error(L, "netlua: cannot restart a suspended call");
  f = lua_tocfunction(L, -1);
  lua_pop(L, 1);
  t->restart_pending = 1;
  n = f(L);
  t->restart_pending = 0;
  return n;
}

static int suspend(lua_State *L, nl_Task *t, int nargs, nl_Watch *watches, int n,
                   double deadline) {
  int r = nl_waiter_arm(t->sched->loop, &t->w, watches, n, deadline);
  if (r != 0) return r;
  if (nl_trace_on) nl_trace_wait(n > 0 ? watches[0].fd : -1, n > 0 ? watches[0].events : 0, n, deadline);
  t->state = NL_TASK_WAITING;
  return lua_yieldk(L, 0, nargs, restart_k);
}

static nl_Watch *task_watches(lua_State *L, nl_Task *t, int n) {
  if (n <= 1) return &t->one;
  if (n > t->capwatches) {
    nl_Watch *w = realloc(t->watches, (size_t)n * sizeof *w);
    if (w == NULL) luaL_error(L, "not enough memory");
    t->watches = w;
    t->capwatches = n;
  }
  return t->watches;
}

/* A wait that cannot be made (no loop: out of descriptors or memory) raises:
 * retrying the call would spin. One the loop refused (a regular file, which
 * epoll does not take) lets the call go on: its syscall reports. */
int nl_waitL(lua_State *L, int fd, int events, double deadline) {
  int r = nl_wait(fd, events, deadline);
  if (r == -EINTR) nl_raise_interrupted(L);
  if (r == -EMFILE || r == -ENFILE || r == -ENOMEM)
    luaL_error(L, "cannot wait: %s", strerror(-r));
  return r < 0 ? events : r;
}

void nl_sleepL(lua_State *L, double seconds) {
  if (!(seconds > 0)) return;
  nl_waitL(L, -1, 0, nl_deadline(seconds));
}

int nl_waitk(lua_State *L, int nargs, int fd, int events, double deadline) {
  nl_Task *t = nl_task_suspendable(L, nargs);
  nl_Watch *w;
  int r;
  if (t == NULL) return nl_waitL(L, fd, events, deadline);
  nl_PollFd asked = {fd, events, 0};
  if (take_restart(t, &asked, fd >= 0 ? 1 : 0, &r)) return r > 0 ? events : 0;
  if (deadline >= 0 && deadline <= nl_monotonic()) return 0;
  w = task_watches(L, t, 1);
  w->fd = fd;
  w->events = events;
  t->nwatched = fd >= 0 ? 1 : 0;
  (void)suspend(L, t, nargs, w, t->nwatched, deadline);
  return events; /* could not arm (a file, no memory): let the call retry */
}

/* After a restart: the readiness the loop saw on the watches (the one
 * that woke the task; its siblings were disarmed then). */
static int ready_from_watches(nl_Task *t, nl_PollFd *fds, int n) {
  const nl_Watch *w = n <= 1 ? &t->one : t->watches;
  int r = 0;
  for (int i = 0; i < n; i++) {
    fds[i].ready = w[i].ready;
    if (fds[i].ready) r++;
  }
  return r;
}

/* The caller has found nothing ready (its syscall said EAGAIN, or it polled
 * itself), so a task suspends at once: the loop's epoll reports a
 * descriptor that is ready already. After waking, the result says which
 * one woke it; a caller that reports every ready one (select) polls them. */
int nl_waitmanyk(lua_State *L, int nargs, nl_PollFd *fds, int n, double deadline) {
  nl_Task *t = nl_task_suspendable(L, nargs);
  nl_Watch *w;
  int r;
  for (int i = 0; i < n; i++) fds[i].ready = 0;
  if (t == NULL) {
    r = nl_waitmany(fds, n, deadline);
    if (r == -EINTR) nl_raise_interrupted(L);
    return r;
  }
  if (take_restart(t, fds, n, &r)) return r > 0 ? ready_from_watches(t, fds, n) : 0;
  if (deadline >= 0 && deadline <= nl_monotonic()) return 0;
  w = task_watches(L, t, n);
  for (int i = 0; i < n; i++) {
    w[i].fd = fds[i].fd;
    w[i].events = fds[i].events;
  }
  t->nwatched = n;
  r = suspend(L, t, nargs, w, n, deadline);
  return r;
}

void nl_sleepk(lua_State *L, int nargs, double seconds) {
  if (!(seconds > 0)) {
    nl_Task *t = nl_current_task(L);
    if (t != NULL && t->state == NL_TASK_RUNNING && lua_isyieldable(L)) nl_task_yield(L, t);
    return;
  }
  nl_waitk(L, nargs, -1, 0, nl_deadline(seconds));
}

int nl_sleep_lua(lua_State *L) {
  double seconds = luaL_checknumber(L, 1);
  luaL_argcheck(L, seconds >= 0, 1, "sleep length must be a non-negative number");
  nl_sleepk(L, 1, seconds);
  return 0;
}

/* ---- draining the loop at the end ------------------------------------------- */

int nl_sched_drain(lua_State *L) {
  nl_Sched *s;
  nl_Waiter self;
  if (lua_getfield(L, LUA_REGISTRYINDEX, SCHED_KEY) != LUA_TUSERDATA) {
    lua_pop(L, 1);
    return 0;
  }
  s = lua_touserdata(L, -1);
  lua_pop(L, 1);
  if (s->loop == NULL) return 0;
  nl_waiter_init(&self, NULL, NULL);
  if (nl_waiter_arm(s->loop, &self, NULL, 0, NL_NODEADLINE) != 0) return 0;
  while (s->live > 0 && self.result == NL_PENDING) nl_loop_runonce(s->loop, &self);
  nl_waiter_disarm(s->loop, &self);
  return self.result == -EINTR ? -EINTR : 0;
}

/* Cancels every task still live (main, when the script failed or Ctrl-C
 * stopped it): their to-be-closed variables run, as asyncio.run cancels
 * what is left. The handles are listed first (kept alive meanwhile): a
 * __close handler may cancel or spawn tasks. */
void nl_sched_cancelall(lua_State *L) {
  nl_Sched *s;
  lua_State *H;
  if (lua_getfield(L, LUA_REGISTRYINDEX, SCHED_KEY) != LUA_TUSERDATA) {
    lua_pop(L, 1);
    return;
  }
  s = lua_touserdata(L, -1);
  lua_pop(L, 1);
  H = s->H;
  for (int round = 0; round < 8 && s->live > 0 && s->loop != NULL; round++) {
    lua_Integer n = 0;
    luaL_checkstack(H, 4, NULL);
    lua_newtable(H);
    lua_pushnil(H);
    while (lua_next(H, 1)) lua_rawseti(H, -3, ++n); /* handles */
    for (lua_Integer i = 1; i <= n; i++) {
      nl_Task *t;
      lua_rawgeti(H, -1, i);
      t = lua_touserdata(H, -1);
      lua_pop(H, 1);
      if (t->state != NL_TASK_DONE && t->state != NL_TASK_RUNNING) nl_task_cancel(s, t);
    }
    lua_pop(H, 1);
  }
}

/* ---- what the live tasks wait on -------------------------------------------- */

static int by_id(const void *a, const void *b) {
  long x = (*(nl_Task *const *)a)->id, y = (*(nl_Task *const *)b)->id;
  return (x > y) - (x < y);
}

/* One line for task t: "PREFIXtask N: what (where)\n". [-0, +0, m] */
static void describe_task(lua_State *L, luaL_Buffer *b, nl_Task *t, const char *prefix) {
  lua_pushfstring(L, "%stask %d: ", prefix, (int)t->id);
  luaL_addvalue(b);
  nl_describe_wait(L, t->co, 0);
  luaL_addvalue(b);
  luaL_addchar(b, '\n');
}

void nl_sched_describe(lua_State *L, const char *prefix) {
  nl_Sched *s;
  nl_Task **list;
  luaL_Buffer b;
  int n = 0;
  lua_getfield(L, LUA_REGISTRYINDEX, SCHED_KEY);
  s = lua_touserdata(L, -1); /* NULL: no task was ever spawned here */
  lua_pop(L, 1);
  if (s == NULL || s->live == 0) {
    lua_pushliteral(L, "");
    return;
  }
  list = lua_newuserdatauv(L, (size_t)s->live * sizeof *list, 0); /* freed with the stack */
  lua_pushnil(s->H);
  while (lua_next(s->H, 1) && n < s->live) {
    list[n++] = lua_touserdata(s->H, -1);
    lua_pop(s->H, 1);
  }
  lua_settop(s->H, 1);
  qsort(list, (size_t)n, sizeof *list, by_id);
  luaL_buffinit(L, &b);
  for (int i = 0; i < n; i++) describe_task(L, &b, list[i], prefix);
  luaL_pushresult(&b);
  lua_remove(L, -2); /* the list */
}

/* ---- task lifecycle (used by bindings/task.c) ----------------------------- */

void nl_task_init(nl_Sched *s, nl_Task *t) {
  memset(t, 0, sizeof *t);
  t->sched = s;
  nl_queue_init(&t->joiners, NULL, NULL);
  nl_waiter_init(&t->w, task_wake, t);
  t->state = NL_TASK_NEW;
}

int nl_task_yield(lua_State *L, nl_Task *t) {
  nl_sched_ready(t);
  return lua_yield(L, 0);
}

/* A task ended with an error (its outcome table on top of H).
 * Ctrl-C that it did not catch goes on to the code waiting for the tasks
 * (the main script), as Python's KeyboardInterrupt leaves asyncio.run. Any
 * other error is printed now, with its traceback, as Python's threading
 * prints the exception that ends a thread, whether or not a join() will
 * look at it (a join that ignores what it returns must not hide it), unless
 * the task was spawned quiet; a join still returns it. */
static void report_failure(lua_State *H, nl_Task *t) {
  const char *msg;
  if (t->interrupted) {
    nl_interrupt_again();
    return;
  }
  if (t->quiet) return;
  lua_rawgeti(H, -1, 2);
  msg = lua_tostring(H, -1);
  fflush(stdout); /* what the script printed comes first */
  fprintf(stderr, "%s: error in task %ld: %s\n", NL_PROGNAME, t->id,
          msg ? msg : "(error object is not a string)");
  fflush(stderr);
  lua_pop(H, 1);
}

/* Stores the outcome {ok, values..., n=} as the task's user value 2 and
 * wakes its joiners. The task's coroutine holds the values: nres on top. */
static void finish(nl_Sched *s, nl_Task *t, int status, int nres) {
  lua_State *H = s->H, *co = t->co;
  int ok = status == LUA_OK;
  lua_rawgetp(H, 1, t); /* the task's userdata */
  if (ok) {
    lua_createtable(H, nres + 1, 1);
    lua_pushboolean(H, 1);
    lua_rawseti(H, -2, 1);
    lua_checkstack(H, nres + 2);
    lua_xmove(co, H, nres);
    for (int i = nres; i >= 1; i--) lua_rawseti(H, -1 - i, i + 1);
    lua_pushinteger(H, nres + 1);
  } else {
    const char *msg;
    lua_createtable(H, 2, 1);
    lua_pushboolean(H, 0);
    lua_rawseti(H, -2, 1);
    if (t->cancelled) {
      lua_pushliteral(H, "cancelled");
    } else {
      t->interrupted = nl_is_interrupted(co, -1);
      msg = lua_tostring(co, -1);
      if (msg == NULL) msg = lua_pushfstring(co, "(error object is a %s value)",
                                             luaL_typename(co, -1));
      luaL_traceback(H, co, msg, 0);
      lua_resetthread(co); /* its to-be-closed variables run now */
    }
    lua_rawseti(H, -2, 2);
    if (!t->cancelled) report_failure(H, t);
    lua_pushinteger(H, 2);
  }
  lua_setfield(H, -2, "n");
  lua_setiuservalue(H, -2, NL_TASK_RESULTS);
  lua_pushnil(H);
  lua_setiuservalue(H, -2, NL_TASK_THREAD); /* the coroutine can go */
  lua_pop(H, 1);
  lua_pushnil(H);
  lua_rawsetp(H, 1, t); /* no longer anchored: the handle may go */
  *(nl_Task **)lua_getextraspace(co) = NULL;
  t->co = NULL;
  t->state = NL_TASK_DONE;
  t->ok = ok;
  free(t->watches);
  t->watches = NULL;
  t->capwatches = 0;
  s->live--;
  nl_loop_use(s->loop, -1);
  if (s->live == 0) nl_loop_wakeup(s->loop); /* a drain may be about to sleep */
  nl_queue_wakeall(&t->joiners, 1);
}

void nl_task_resume(nl_Sched *s, nl_Task *t) {
  lua_State *co = t->co, *prev = s->running, *prevsig;
  int nargs = t->nargs_first, nres = 0, status;
  long prevtask = nl_trace_task;
  t->nargs_first = 0;
  t->state = NL_TASK_RUNNING;
  s->running = co;
  prevsig = nl_signals_running(co); /* Ctrl-C hooks this coroutine */
  nl_trace_task = t->id;
  status = lua_resume(co, prev ? prev : s->L, nargs, &nres);
  nl_trace_task = prevtask;
  nl_signals_running(prevsig);
  s->running = prev;
  if (status == LUA_YIELD) {
    lua_pop(co, nres);
    if (t->state == NL_TASK_RUNNING) nl_sched_ready(t); /* coroutine.yield */
    return;
  }
  finish(s, t, status, status == LUA_OK ? nres : 0);
}

/* Ends a task that is not running: its coroutine is closed (to-be-closed
 * variables run), joiners see false, "cancelled". */
void nl_task_cancel(nl_Sched *s, nl_Task *t) {
  if (t->state == NL_TASK_READY) nl_sched_unready(t);
  if (t->state == NL_TASK_WAITING) nl_waiter_disarm(s->loop, &t->w);
  t->cancelled = 1;
  t->restart_pending = 0;
  lua_resetthread(t->co);
  lua_settop(t->co, 0);
  finish(s, t, LUA_ERRRUN, 0);
}

/* The task whose userdata is at `idx` of L (its coroutine `co` already in
 * user value 1, holding the function and `nargs` arguments) becomes live
 * and ready. */
void nl_task_start(lua_State *L, int idx, nl_Task *t, lua_State *co, int nargs) {
  nl_Sched *s = t->sched;
  idx = lua_absindex(L, idx);
  t->co = co;
  t->nargs_first = nargs;
  *(nl_Task **)lua_getextraspace(co) = t;
  lua_pushvalue(L, idx);
  lua_xmove(L, s->H, 1);
  lua_rawsetp(s->H, 1, t); /* anchored while live */
  t->id = ++s->spawned;
  if (nl_trace_on) nl_trace_spawn(t->id);
  s->live++;
  nl_loop_use(s->loop, 1);
  nl_sched_ready(t);
}
