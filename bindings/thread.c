/*
 * thread.c: the `thread` module (layer: bindings): OS threads, each running
 * its own Lua state from nl_newstate, and their handles; thread.spawn, join,
 * daemon threads, self, cpus, sleep. Channels (channel.c) and mutexes
 * (mutex.c) are the module's other two files; luaopen_thread, here, opens
 * all three.
 *
 * A thread and its handle share a reference-counted record (nl_Shared):
 * its start packet, then its outcome. Joiners wait on the record's wait
 * queue (runtime/waitqueue.c), in a task or not, and are all woken when it
 * is done. Values cross by copy (nl_pack/nl_unpack).
 *
 * Process-wide state (one of a kind, hence a C global, guarded by its own
 * lock): the count of running non-daemon threads the main script waits for
 * at exit, as Python's threading._shutdown does, and the flag that stops busy
 * threads once the program is ending.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "modules.h"
#include "thread.h"
#include "trace.h"

#define SELF_KEY "thread.self"
#define STOP_HOOK_COUNT 1000

const nl_Transfer thread_shared_transfer = {"thread", nl_shared_export, nl_shared_import,
                                            nl_shared_discard};

/* ---- process-wide: threads the program waits for at exit ------------------ */

/* What a thread stopped by Ctrl-C at exit waited on (nl_report_waits). */
typedef struct Report {
  long id;
  char *text; /* "  thread NAME: ...\n", then its tasks' lines */
  struct Report *next;
} Report;

static struct {
  nl_Shared sh;          /* its lock (never freed) */
  nl_WaitQueue waiters;  /* the main state at exit, woken when none runs */
  int running;           /* non-daemon threads not finished yet */
  atomic_long nextid;
  atomic_int stopping;   /* the program is ending: busy threads stop */
  Report *reports;       /* in the order of the threads' ids */
} procs = {{1, PTHREAD_MUTEX_INITIALIZER, NULL, NULL, NULL, NULL, NULL}, {NULL, NULL, &procs.sh, NULL}, 0, 1, 0, NULL};

static void procs_add(int daemon) {
  if (daemon) return;
  nl_shared_lock(&procs.sh);
  procs.running++;
  nl_shared_unlock(&procs.sh);
}

static void procs_done(int daemon) {
  if (daemon) return;
  nl_shared_lock(&procs.sh);
  if (--procs.running == 0) nl_queue_wakeall(&procs.waiters, 1);
  nl_shared_unlock(&procs.sh);
}

static int none_running(nl_WaitQueue *q, void **value) {
  (void)q;
  (void)value;
  return procs.running == 0;
}

static void stop_everything(void) {
  nl_begin_shutdown();
  atomic_store(&procs.stopping, 1);
}

/* Files a stopped thread's report, keeping the list in id order. */
static void add_report(long id, char *text) {
  Report *rep = text ? (Report *)malloc(sizeof *rep) : NULL, **p;
  if (rep == NULL) {
    free(text);
    return;
  }
  rep->id = id;
  rep->text = text;
  nl_shared_lock(&procs.sh);
  for (p = &procs.reports; *p != NULL && (*p)->id < id; p = &(*p)->next) {}
  rep->next = *p;
  *p = rep;
  nl_shared_unlock(&procs.sh);
}

/* Prints and frees the reports (main, once every thread has ended). */
static void print_reports(void) {
  Report *rep, *next;
  nl_shared_lock(&procs.sh);
  rep = procs.reports;
  procs.reports = NULL;
  nl_shared_unlock(&procs.sh);
  for (; rep != NULL; rep = next) {
    next = rep->next;
    nl_print_waits(rep->text);
    free(rep->text);
    free(rep);
  }
}

/* nl_atexit hook of the main state: waits for every non-daemon thread. A
 * Ctrl-C here (or one that ended the script) stops them: their waits return
 * "interrupted" and a count hook stops busy Lua code. Stopped by a Ctrl-C
 * while the script waited for them, each says what it waited on. */
static int thread_waitall(lua_State *L) {
  int interrupted = 0;
  if (nl_shutting_down()) stop_everything();
  while (nl_queue_until(L, -1, &procs.waiters, NL_NODEADLINE, none_running, NULL) == -EINTR) {
    interrupted = 1;
    nl_report_waits();
    stop_everything();
  }
  print_reports();
  if (interrupted) return nl_raise_interrupted(L);
  return 0;
}

/* ---- thread records ------------------------------------------------------ */

/* What a thread and its handle share. The running thread holds one
 * reference, the handle another. */
typedef struct Record {
  nl_Shared sh;         /* first: references, lock */
  nl_WaitQueue joiners; /* woken together when it is done */
  pthread_t tid;
  long id;
  int daemon;
  int quiet; /* an error it ends with is not printed */
  char *name;
  nl_Packet *start; /* function and arguments, until the thread takes them */
  /* set by the thread before `done`: */
  int done, ok, interrupted;
  nl_Packet *results; /* ok: the function's results */
  char *error;        /* not ok: message and traceback */
} Record;

static void record_destroy(nl_Shared *sh) {
  Record *r = (Record *)sh;
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
  nl_queue_init(&r->joiners, &r->sh, NULL);
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

/* Stopped by the shutdown a Ctrl-C began while the script waited for it:
 * what it waited on (noted by nl_raise_interrupted where it stopped) and
 * what its tasks wait on, filed for thread_waitall to print:
 * "  thread NAME: receive on a channel (app.lua:9)\n" ... Runs under
 * pcall with the record at 1, the stop hook off (it would stop the words
 * being found). */
static int report_waits(lua_State *L) {
  Record *r = (Record *)lua_touserdata(L, 1);
  lua_pushfstring(L, "  thread %s: ", r->name);
  if (lua_getfield(L, LUA_REGISTRYINDEX, NL_STOPPED_KEY) != LUA_TSTRING) {
    lua_pop(L, 1);
    lua_pushliteral(L, "waiting for its tasks");
  }
  lua_pushliteral(L, "\n");
  lua_pushfstring(L, "  thread %s, ", r->name);
  nl_sched_describe(L, lua_tostring(L, -1));
  lua_remove(L, -2);
  lua_concat(L, 4);
  add_report(r->id, strdup(lua_tostring(L, -1)));
  return 0;
}

static void report_stopped(lua_State *L, Record *r) {
  if (r->daemon || !nl_reporting_waits()) return;
  lua_sethook(L, NULL, 0, 0);
  lua_pushcfunction(L, report_waits);
  lua_pushlightuserdata(L, r);
  lua_pcall(L, 1, 0, 0); /* out of memory: no report */
  lua_settop(L, 0);
  lua_sethook(L, stop_hook, LUA_MASKCOUNT, STOP_HOOK_COUNT);
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
  if (r->interrupted) report_stopped(L, r);
  lua_pushcfunction(L, cancel_tasks);
  lua_pcall(L, 0, 0, 0); /* tasks the failed thread leaves: their resources close */
  lua_settop(L, 0);
}

/* The error that ended the thread is printed when it ends, as Python's
 * threading prints it, whether or not a join() will look at it (a join
 * that ignores what it returns must not hide it); not for a quiet thread,
 * nor for one stopped because the program is ending. */
static void print_failure(Record *r) {
  if (r->error == NULL || r->quiet || r->interrupted) return;
  fflush(stdout); /* what the script printed comes first */
  fprintf(stderr, "Exception in thread %s:\n%s\n", r->name, r->error);
  fflush(stderr);
}

static void *thread_main(void *arg) {
  Record *r = (Record *)arg;
  int daemon = r->daemon;
  lua_State *L;
  nl_trace_thread = r->id; /* how --trace names this thread */
  if (nl_trace_on) nl_trace_thread_event("started", r->name);
  L = nl_newstate();
  if (L != NULL) {
    run_body(L, r);
    lua_close(L);
    nl_loop_free();
  } else {
    r->error = strdup("cannot create state: not enough memory");
  }
  print_failure(r);
  if (nl_trace_on) nl_trace_thread_event("ended", r->name);
  nl_shared_lock(&r->sh);
  r->done = 1;
  nl_queue_wakeall(&r->joiners, 1);
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

static int thread_done(nl_WaitQueue *q, void **value) {
  (void)value;
  return ((Record *)q->owner)->done;
}

/* t:join([timeout]) -> true, results... | false, err | nil, "timeout". A
 * waiting join keeps its record in slot 3; every joiner is woken, the
 * first fills the handle's cache and the others read it. */
static int thr_join(lua_State *L) {
  Handle *h = check_handle(L, 1);
  double deadline = nl_deadline(luaL_optnumber(L, 2, -1));
  int status = nl_queue_until(L, 3, &h->r->joiners, deadline, thread_done, NULL);
  if (status == 0) return nl_pushfail(L, "timeout", NULL);
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

/* A boolean option of the table form: false when absent. */
static int flag_option(lua_State *L, const char *key) {
  int on = lua_getfield(L, 1, key) != LUA_TNIL && lua_toboolean(L, -1);
  lua_pop(L, 1);
  return on;
}

/* Spawn options from the table form: thread.spawn{fn, args..., name=,
 * daemon=, quiet=}. Leaves fn and the args on the stack from index 2 on. */
static int spawn_options(lua_State *L, const char **name, int *daemon, int *quiet) {
  lua_Integer n;
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  if (lua_getfield(L, 1, "name") != LUA_TNIL) {
    if (lua_type(L, -1) != LUA_TSTRING) luaL_error(L, "option 'name' must be a string");
    *name = lua_tostring(L, -1);
  }
  *daemon = flag_option(L, "daemon");
  *quiet = flag_option(L, "quiet");
  n = (lua_Integer)lua_rawlen(L, 1);
  luaL_checkstack(L, (int)n + 4, "too many arguments");
  for (lua_Integer i = 1; i <= n; i++) lua_rawgeti(L, 1, i);
  return (int)n;
}

static int thread_spawn(lua_State *L) {
  const char *name = NULL;
  int daemon = 0, quiet = 0, first = 1, n = lua_gettop(L), err;
  long id;
  char defname[32];
  Handle *h;
  Record *r;
  if (lua_type(L, 1) == LUA_TTABLE) {
    n = spawn_options(L, &name, &daemon, &quiet);
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
  r->quiet = quiet;
  r->start = nl_pack(L, first + 1, n);
  nl_shared_retain(&r->sh); /* the thread's */
  procs_add(daemon);
  err = nl_thread_start(&r->tid, thread_main, r);
  if (err != 0) {
    nl_shared_release(&r->sh);
    procs_done(daemon);
    return nl_pusherrno(L, err);
  }
  /* Nobody waits for a daemon to end: detached now, it needs no reaping
   * even when the program leaves by os.exit with its handle uncollected. */
  if (daemon) pthread_detach(r->tid);
  h->reaped = daemon;
  lua_settop(L, first);
  return 1;
}

/* ---- the module ---------------------------------------------------------------- */

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
  {"semaphore", thread_semaphore},
  {"sleep", nl_sleep_lua},
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
  thread_open_channel(L);
  thread_open_mutex(L);
  if (nl_is_main_thread()) {
    nl_queue_setup(L); /* thread_waitall at exit must not fail for want of an eventfd */
    lua_pushcfunction(L, thread_waitall);
    nl_atexit(L, -1);
    lua_pop(L, 1);
  }
  luaL_newlib(L, thread_funcs);
  return 1;
}
