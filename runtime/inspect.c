/*
 * inspect.c: `kill -QUIT PID` (Ctrl-\) lists what a running program holds
 * and waits on, and the program goes on (layer: runtime). The signal
 * handler only writes to a self-pipe (signals.c); the main thread's loop
 * then raises the listing's generation and wakes every thread's loop
 * (nl_inspect_request). Each thread writes its own part at a safe point,
 * the end of a round of its loop (nl_inspect_poll): its open sockets, what
 * its own code and each of its tasks wait on (waits.c's words, as for the
 * listing at Ctrl-C), its timers; the main thread adds the channels. A
 * thread busy in Lua code writes its part at its next wait. Nothing here
 * runs until a SIGQUIT: a round of a loop pays one atomic load.
 *
 * Each state is its thread's: nl_newstate attaches it here, in a userdata
 * of the registry that holds the list of the objects the state lists (its
 * sockets) and a coroutine of its own on which the listing runs its Lua
 * (the describer of waits), never on a state that is in a call.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "netlua.h"
#include "trace.h"

#define HERE_KEY "netlua.inspect"
#define LINE_MAX_ 512

typedef struct Here {
  nl_Listed head;  /* the state's listed objects (a ring) */
  lua_State *L;    /* the state */
  lua_State *co;   /* the listing's own coroutine (anchored in the registry) */
  unsigned seen;   /* the last listing written */
} Here;

static atomic_uint generation;       /* raised by each SIGQUIT */
static pthread_mutex_t print_mu = PTHREAD_MUTEX_INITIALIZER; /* parts never mix */
static _Thread_local Here *here;

/* __gc of the Here userdata: the state closes, its thread lists no more. */
static int here_gc(lua_State *L) {
  Here *h = lua_touserdata(L, 1);
  if (here == h) here = NULL;
  h->head.next = h->head.prev = &h->head;
  return 0;
}

void nl_inspect_attach(lua_State *L) {
  Here *h = lua_newuserdatauv(L, sizeof *h, 1);
  memset(h, 0, sizeof *h);
  h->head.next = h->head.prev = &h->head;
  h->L = L;
  h->co = lua_newthread(L);
  lua_setiuservalue(L, -2, 1);    /* the coroutine lives as long as h */
  h->seen = atomic_load(&generation);
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, here_gc);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  lua_setfield(L, LUA_REGISTRYINDEX, HERE_KEY);
  here = h;
}

void nl_inspect_list(nl_Listed *item, void (*describe)(nl_Listed *, char *, size_t)) {
  item->describe = describe;
  if (here == NULL) {
    item->next = item->prev = item;
    return;
  }
  item->prev = here->head.prev; /* at the end: the listing is oldest first */
  item->next = &here->head;
  here->head.prev->next = item;
  here->head.prev = item;
}

void nl_inspect_unlist(nl_Listed *item) {
  if (item->next == NULL) return;
  item->prev->next = item->next;
  item->next->prev = item->prev;
  item->next = item->prev = item;
}

void nl_inspect_request(void) {
  atomic_fetch_add(&generation, 1);
  nl_loop_wakeall();
}

/* ---- one thread's part ---------------------------------------------------- */

static void add_line(luaL_Buffer *b, const char *line) {
  luaL_addstring(b, line);
  luaL_addchar(b, '\n');
}

/* "main thread" or "thread N", as --trace names them. */
static void add_title(luaL_Buffer *b, double now) {
  char line[LINE_MAX_];
  if (nl_trace_thread == 0)
    snprintf(line, sizeof line, "netlua: SIGQUIT: process %d, what each thread holds and "
             "waits on (the program goes on)\n-- main thread", (int)getpid());
  else
    snprintf(line, sizeof line, "-- thread %ld", nl_trace_thread);
  add_line(b, line);
  (void)now;
}

/* The listed objects (sockets), "  <describe>\n" each, in a string to free
 * (NULL: none). Gathered without Lua: an allocation of Lua's could run a
 * __gc that unlists an object under the walk. */
static char *listed_text(Here *h) {
  char line[LINE_MAX_], *text = NULL;
  size_t len = 0, cap = 0;
  for (nl_Listed *it = h->head.next; it != &h->head; it = it->next) {
    size_t n;
    line[0] = '\0';
    it->describe(it, line, sizeof line);
    if (line[0] == '\0') continue;
    n = strlen(line) + 4;
    if (len + n > cap) {
      char *more = realloc(text, cap = 2 * (len + n));
      if (more == NULL) break;
      text = more;
    }
    len += (size_t)sprintf(text + len, "  %s\n", line);
  }
  return text;
}

/* A memory error while adding them leaks the text. */
static void add_listed(luaL_Buffer *b, Here *h) {
  char *text = listed_text(h);
  if (text != NULL) luaL_addstring(b, text);
  else add_line(b, "  no open sockets");
  free(text);
}

/* What the state's own code waits on, and each live task. [-0, +0, m] */
static void add_waits(lua_State *co, luaL_Buffer *b, Here *h) {
  luaL_addstring(b, "  code: ");
  nl_describe_wait(co, h->L, 0);
  luaL_addvalue(b);
  luaL_addchar(b, '\n');
  nl_sched_describe(co, "  ");
  luaL_addvalue(b);
}

static void add_timers(luaL_Buffer *b, double now) {
  char line[LINE_MAX_];
  double soonest = 0;
  size_t n = nl_loop_timers(&soonest);
  if (n == 0) snprintf(line, sizeof line, "  timers: none");
  else snprintf(line, sizeof line, "  timers: %zu (the next in %.3f s)", n,
                soonest > now ? soonest - now : 0.0);
  add_line(b, line);
}

/* The channels of the whole process (the main thread's part). A memory
 * error while adding them leaks the text. */
static void add_shared(luaL_Buffer *b) {
  int n;
  char *text = nl_shared_describe_all("  ", &n);
  luaL_addstring(b, "-- channels\n");
  if (text != NULL) luaL_addstring(b, text);
  free(text);
  if (n == 0) add_line(b, "  none");
}

/* The part, as one string on the coroutine's stack. [-0, +1, m] */
static int make_part(lua_State *co) {
  Here *h = lua_touserdata(co, 1);
  double now = nl_monotonic();
  luaL_Buffer b;
  luaL_buffinit(co, &b);
  add_title(&b, now);
  add_listed(&b, h);
  add_waits(co, &b, h);
  add_timers(&b, now);
  if (nl_trace_thread == 0) add_shared(&b);
  luaL_pushresult(&b);
  return 1;
}

static void write_part(const char *text, size_t len) {
  pthread_mutex_lock(&print_mu);
  fwrite(text, 1, len, stderr);
  fflush(stderr);
  pthread_mutex_unlock(&print_mu);
}

void nl_inspect_poll(void) {
  Here *h = here;
  unsigned gen = atomic_load_explicit(&generation, memory_order_relaxed);
  lua_State *co;
  if (h == NULL || gen == h->seen) return;
  h->seen = gen;
  co = h->co;
  lua_settop(co, 0);
  lua_pushcfunction(co, make_part);
  lua_pushlightuserdata(co, h);
  if (lua_pcall(co, 1, 1, 0) == LUA_OK) {
    size_t len;
    const char *text = lua_tolstring(co, -1, &len);
    write_part(text, len);
  } else {
    write_part("netlua: SIGQUIT: no listing (out of memory)\n", 44);
  }
  lua_settop(co, 0);
}
