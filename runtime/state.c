/*
 * state.c: the one factory of Lua states (layer: runtime). The main program
 * and every thread call nl_newstate, so each state has the standard
 * libraries, every built-in module preloaded (built-ins are found before any
 * file on disk) and the same module search path: next to the main script,
 * then NETLUA_PATH, then Lua's defaults.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lualib.h"
#include "netlua.h"
#include "modules.h"

/* Every built-in module: linit.c's recipe, declared in modules.h. */

/* Pushes require(name). */
static void require_module(lua_State *L, const char *name) {
  lua_getglobal(L, "require");
  lua_pushstring(L, name);
  lua_call(L, 1, 1);
}

/* require "cjson" gives the same table as require "json". */
static int open_json_as_cjson(lua_State *L) {
  require_module(L, "json");
  return 1;
}

/* require "ssl.config": LuaSec's table of what the build supports, which
 * is ssl.config. */
static int open_ssl_config(lua_State *L) {
  require_module(L, "ssl");
  lua_getfield(L, -1, "config");
  return 1;
}

/* A module written all in Lua (bindings/NAME.lua, embedded): require's
 * name with '.' as '_' ("http.url" -> http_url.lua). */
static int open_lua_module(lua_State *L) {
  const char *name = luaL_gsub(L, luaL_checkstring(L, 1), ".", "_");
  nl_runembedded(L, name, 0);
  return 1;
}

static const luaL_Reg preloaded_modules[] = {
  {"json", luaopen_json},
  {"cjson", open_json_as_cjson},
  {"cjson.safe", luaopen_json_safe},
  {"time", luaopen_time},
  {"http", luaopen_http},
  {"http.server", luaopen_http_server},
  {"http.url", open_lua_module},
  {"thread", luaopen_thread},
  {"socket", luaopen_socket},
  {"task", luaopen_task},
  {"crypto", luaopen_crypto},
  {"ssl", luaopen_ssl},
  {"ssl.https", luaopen_ssl_https},
  {"ssl.config", open_ssl_config},
  {"websocket", luaopen_websocket},
  {"lfs", luaopen_lfs},
  {NULL, NULL}
};

#define ATEXIT_KEY "netlua.atexit"

static char *search_path_prefix; /* set once by main, before any thread */

/* "dir/?.lua;dir/?/init.lua;" for each directory of a ':'-separated list. */
static void add_dirs(luaL_Buffer *b, const char *list) {
  while (list != NULL && *list != '\0') {
    const char *end = strchr(list, ':');
    size_t len = end ? (size_t)(end - list) : strlen(list);
    if (len > 0) {
      luaL_addlstring(b, list, len);
      luaL_addstring(b, "/?.lua;");
      luaL_addlstring(b, list, len);
      luaL_addstring(b, "/?/init.lua;");
    }
    list = end ? end + 1 : NULL;
  }
}

void nl_setscriptdir(const char *script_dir) {
  lua_State *L = luaL_newstate();
  luaL_Buffer b;
  const char *s;
  if (L == NULL) return;
  luaL_buffinit(L, &b);
  if (script_dir != NULL) add_dirs(&b, script_dir);
  add_dirs(&b, getenv("NETLUA_PATH"));
  luaL_pushresult(&b);
  s = lua_tostring(L, -1);
  free(search_path_prefix);
  search_path_prefix = strdup(s);
  lua_close(L);
}

static void set_search_path(lua_State *L) {
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "path");
  lua_pushfstring(L, "%s%s", search_path_prefix ? search_path_prefix : "",
                  lua_tostring(L, -1));
  lua_setfield(L, -3, "path");
  lua_pop(L, 2);
}

static void preload_modules(lua_State *L) {
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  for (const luaL_Reg *m = preloaded_modules; m->func != NULL; m++) {
    lua_pushcfunction(L, m->func);
    lua_setfield(L, -2, m->name);
  }
  lua_pop(L, 1);
}

/* print(...): Lua's, with two differences. The values are turned into
 * text first (__tostring may run Lua) and the line is written under
 * stdout's lock, so threads printing at once never mix their lines. And
 * there is no fflush: the line goes into stdout's buffer, as io.write's
 * text does, so it is out at once on a terminal (line-buffered) and, into
 * a file or a pipe, when a thread is about to wait, at exit, before an
 * error is reported, or every 4 KiB: a server answering a queue of
 * clients makes one write(2) for many log lines instead of one each. */
static int print_buffered(lua_State *L) {
  int n = lua_gettop(L);
  luaL_checkstack(L, n, "too many values to print");
  for (int i = 1; i <= n; i++) luaL_tolstring(L, i, NULL);
  flockfile(stdout);
  for (int i = 1; i <= n; i++) {
    size_t len;
    const char *text = lua_tolstring(L, n + i, &len);
    if (i > 1) putc_unlocked('\t', stdout);
    fwrite_unlocked(text, 1, len, stdout);
  }
  putc_unlocked('\n', stdout);
  funlockfile(stdout);
  return 0;
}

static int open_everything(lua_State *L) {
  luaL_openlibs(L);
  lua_register(L, "print", print_buffered);
  preload_modules(L);
  nl_lab_preload(L);
  set_search_path(L);
  nl_inspect_attach(L);
  return 0;
}

lua_State *nl_newstate(void) {
  lua_State *L;
  L = luaL_newstate();
  if (L == NULL) return NULL;
  *(void **)lua_getextraspace(L) = NULL; /* not a task (sched.c) */
  lua_pushcfunction(L, open_everything);
  if (lua_pcall(L, 0, 0, 0) != LUA_OK) { /* only out of memory */
    fprintf(stderr, "netlua: %s\n", lua_tostring(L, -1));
    lua_close(L);
    return NULL;
  }
  return L;
}

void nl_runembedded(lua_State *L, const char *name, int nargs) {
  for (const nl_Embedded *e = nl_embedded; e->name != NULL; e++) {
    if (strcmp(e->name, name) != 0) continue;
    if (luaL_loadbuffer(L, e->source, e->size, e->chunkname) != LUA_OK)
      lua_error(L);
    lua_insert(L, -(nargs + 1));
    lua_call(L, nargs, 1);
    return;
  }
  luaL_error(L, "netlua: no embedded Lua module '%s'", name);
}

void nl_atexit(lua_State *L, int idx) {
  idx = lua_absindex(L, idx);
  luaL_getsubtable(L, LUA_REGISTRYINDEX, ATEXIT_KEY);
  lua_pushvalue(L, idx);
  lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
  lua_pop(L, 1);
}

int nl_run_atexit(lua_State *L) {
  int failed = 0, interrupted = 0;
  if (lua_getfield(L, LUA_REGISTRYINDEX, ATEXIT_KEY) != LUA_TTABLE) {
    lua_pop(L, 1);
    return 0;
  }
  for (lua_Integer i = 1; lua_rawgeti(L, -1, i) != LUA_TNIL; i++) {
    if (lua_pcall(L, 0, 0, 0) != LUA_OK) {
      const char *msg = lua_tostring(L, -1);
      if (nl_is_interrupted(L, -1)) interrupted = 1;
      lua_writestringerror("%s: ", NL_PROGNAME);
      lua_writestringerror("%s\n", msg ? msg : "(error object is not a string)");
      lua_pop(L, 1);
      failed = 1;
    }
  }
  lua_pop(L, 2);
  return interrupted ? 2 : failed;
}
