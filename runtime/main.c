/*
 * main.c: the netlua command line, in the shape of Lua's own lua.c (layer:
 * runtime). All set-up runs inside a protected call (pmain); a message
 * handler adds the traceback; lua_close always runs so __gc closes
 * descriptors. Exit codes: 0 ok, 1 error, 2 bad usage, 128 + the signal
 * when an interrupt ends the run (130 Ctrl-C, 143 SIGTERM, 129 SIGHUP).
 */
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lualib.h"
#include "netlua.h"

#define EXIT_USAGE 2
#define PROMPT1 "> "
#define PROMPT2 ">> "
#define MAX_INPUT_LINE 512

static const char *progname = NL_PROGNAME;

/* Set by the message handler when the error that ends the run is an
 * interrupt (Ctrl-C, SIGTERM, SIGHUP). */
static int ended_by_interrupt;

static const char usage_line[] =
  "usage: netlua [-e code] [-l mod] [-i] [-v] [-h] [script [args...] | -]\n";

static void print_usage_error(const char *badoption) {
  if (badoption[1] == 'e' || badoption[1] == 'l')
    fprintf(stderr, "%s: '%s' needs an argument\n", progname, badoption);
  else
    fprintf(stderr, "%s: unrecognized option '%s'\n", progname, badoption);
  fputs(usage_line, stderr);
}

static void print_help(void) {
  printf("%s"
         "Run Lua 5.4 scripts with sockets, HTTP, threads and JSON built in.\n\n"
         "  -e code   run the string 'code'\n"
         "  -l mod    require 'mod' into global 'mod' (-l g=mod: into 'g')\n"
         "  -i        enter interactive mode after running the script\n"
         "  -v        show version information\n"
         "  -h        show this help\n"
         "  --        stop handling options\n"
         "  -         run the script from standard input\n\n"
         "With no script and a terminal, netlua starts a REPL.\n"
         "Modules are found next to the script, in NETLUA_PATH (directories\n"
         "separated by ':'), then in Lua's default path.\n",
         usage_line);
}

/* Loads libcurl to name its version (netlua itself starts without it). */
static void print_version(void) {
  const char *curl = nl_curl_version();
  printf("netlua %s (%s, lua-cjson 2.1, libcurl %s)\n", NL_VERSION,
         LUA_RELEASE, curl ? curl : "not available");
}

static void print_message(const char *msg) {
  fprintf(stderr, "%s: %s\n", progname, msg);
  fflush(stderr);
}

/* Prints the error on top of the stack if the status is not OK. */
static int report(lua_State *L, int status) {
  if (status != LUA_OK) {
    const char *msg = lua_tostring(L, -1);
    print_message(msg ? msg : "(error object is not a string)");
    lua_pop(L, 1);
  }
  return status;
}

/* Message handler: notes Ctrl-C, then the runtime's (traceback added). */
static int message_handler(lua_State *L) {
  ended_by_interrupt = nl_is_interrupted(L, 1);
  return nl_msghandler(L);
}

static int docall(lua_State *L, int narg, int nres) {
  int base = lua_gettop(L) - narg;
  int status;
  lua_pushcfunction(L, message_handler);
  lua_insert(L, base);
  status = lua_pcall(L, narg, nres, base);
  lua_remove(L, base);
  return status;
}

/* ---- arguments --------------------------------------------------------- */

#define HAS_ERROR 1
#define HAS_I 2
#define HAS_V 4
#define HAS_E 8

/* Scans options; returns flags and sets *script to the index of the script
 * (argc when none). On a bad option *script holds its index. */
static int collect_args(char **argv, int *script) {
  int flags = 0, i;
  for (i = 1; argv[i] != NULL; i++) {
    *script = i;
    if (argv[i][0] != '-') return flags;
    switch (argv[i][1]) {
    case '-':
      if (argv[i][2] != '\0') return HAS_ERROR;
      *script = i + 1;
      return flags;
    case '\0': return flags; /* '-': stdin */
    case 'i':
      if (argv[i][2] != '\0') return HAS_ERROR;
      flags |= HAS_I | HAS_V;
      break;
    case 'v':
      if (argv[i][2] != '\0') return HAS_ERROR;
      flags |= HAS_V;
      break;
    case 'h':
      if (argv[i][2] != '\0') return HAS_ERROR;
      print_help();
      exit(EXIT_SUCCESS);
    case 'e':
      flags |= HAS_E;
      /* FALLTHROUGH */
    case 'l':
      if (argv[i][2] == '\0') {
        i++;
        if (argv[i] == NULL || argv[i][0] == '-') {
          *script = i - 1;
          return HAS_ERROR;
        }
      }
      break;
    default: return HAS_ERROR;
    }
  }
  *script = i;
  return flags;
}

/* The global 'arg' as lua.c builds it: script at 0, its arguments at 1..n,
 * the interpreter and options at negative indices. */
static void create_arg_table(lua_State *L, char **argv, int argc, int script) {
  int narg;
  if (script == argc) script = 0; /* no script: progname at 0 */
  narg = argc - (script + 1);
  lua_createtable(L, narg, script + 1);
  for (int i = 0; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i - script);
  }
  lua_setglobal(L, "arg");
}

static int dochunk(lua_State *L, int status) {
  if (status == LUA_OK) status = docall(L, 0, 0);
  return report(L, status);
}

static int dostring(lua_State *L, const char *code, const char *name) {
  return dochunk(L, luaL_loadbuffer(L, code, strlen(code), name));
}

/* require 'mod' into global 'g' for "-l g=mod", or 'mod' for "-l mod". */
static int dolibrary(lua_State *L, char *spec) {
  char *eq = strchr(spec, '=');
  const char *modname = spec, *global = spec;
  int status;
  if (eq != NULL) {
    *eq = '\0';
    modname = eq + 1;
  }
  lua_getglobal(L, "require");
  lua_pushstring(L, modname);
  status = docall(L, 1, 1);
  if (status == LUA_OK) lua_setglobal(L, global);
  return report(L, status);
}

/* Runs -e and -l in order. */
static int run_options(lua_State *L, char **argv, int script) {
  for (int i = 1; i < script; i++) {
    char option = argv[i][1];
    if (option != 'e' && option != 'l') continue;
    char *extra = argv[i] + 2;
    if (*extra == '\0') extra = argv[++i];
    int status = option == 'e' ? dostring(L, extra, "=(command line)")
                               : dolibrary(L, extra);
    if (status != LUA_OK) return 0;
  }
  return 1;
}

static int push_script_args(lua_State *L) {
  int n;
  if (lua_getglobal(L, "arg") != LUA_TTABLE) luaL_error(L, "'arg' is not a table");
  n = (int)luaL_len(L, -1);
  luaL_checkstack(L, n + 3, "too many arguments to script");
  for (int i = 1; i <= n; i++) lua_rawgeti(L, -i, i);
  lua_remove(L, -n - 1);
  return n;
}

static int run_script(lua_State *L, char **argv) {
  const char *fname = argv[0];
  int status;
  if (strcmp(fname, "-") == 0 && strcmp(argv[-1], "--") != 0) fname = NULL;
  status = luaL_loadfile(L, fname);
  if (status == LUA_OK) {
    int n = push_script_args(L);
    status = docall(L, n, 0);
  }
  return report(L, status);
}

/* ---- REPL (lua.c's, with readline when the system has it) -------------- */

/* readline is loaded when the REPL starts, as Lua 5.4.6's lua.c does, so
 * scripts don't pay for mapping it (and libtinfo) at start-up. Without
 * it, lines are read with fgets. */
#define READLINE_LIB "libreadline.so.8"

typedef char *(*readline_fn)(const char *prompt);
typedef void (*add_history_fn)(const char *line);
static readline_fn l_readline;
static add_history_fn l_add_history;

/* dlsym's object pointer copied into a function pointer (POSIX allows it;
 * ISO C has no such cast). */
static void load_symbol(void *lib, const char *name, void *slot, size_t size) {
  void *p = dlsym(lib, name);
  if (p != NULL) memcpy(slot, &p, size);
}

static void init_readline(void) {
  void *lib = dlopen(READLINE_LIB, RTLD_NOW | RTLD_LOCAL);
  const char **appname;
  if (lib == NULL) return;
  appname = (const char **)dlsym(lib, "rl_readline_name");
  if (appname != NULL) *appname = "netlua"; /* for ~/.inputrc's $if */
  load_symbol(lib, "add_history", &l_add_history, sizeof l_add_history);
  load_symbol(lib, "readline", &l_readline, sizeof l_readline);
  if (l_add_history == NULL) l_readline = NULL;
}

static int read_line(char *buffer, char **line, const char *prompt) {
  if (l_readline != NULL) {
    *line = l_readline(prompt);
    return *line != NULL;
  }
  fputs(prompt, stdout);
  fflush(stdout);
  *line = fgets(buffer, MAX_INPUT_LINE, stdin);
  return *line != NULL;
}
static void save_line(const char *line) {
  if (l_add_history != NULL && line[0] != '\0') l_add_history(line);
}
static void free_line(char *line, char *buffer) {
  if (line != buffer) free(line); /* readline's malloc'd line */
}

static int push_line(lua_State *L, int first) {
  char buffer[MAX_INPUT_LINE];
  char *line;
  size_t len;
  if (!read_line(buffer, &line, first ? PROMPT1 : PROMPT2)) return 0;
  len = strlen(line);
  if (len > 0 && line[len - 1] == '\n') line[--len] = '\0';
  if (first && line[0] == '=') lua_pushfstring(L, "return %s", line + 1);
  else lua_pushlstring(L, line, len);
  free_line(line, buffer);
  return 1;
}

static int add_return(lua_State *L) {
  const char *line = lua_tostring(L, -1);
  const char *retline = lua_pushfstring(L, "return %s;", line);
  int status = luaL_loadbuffer(L, retline, strlen(retline), "=stdin");
  if (status == LUA_OK) {
    lua_remove(L, -2);
    if (line[0] != '\0') save_line(line);
  } else {
    lua_pop(L, 2);
  }
  return status;
}

static int incomplete(lua_State *L, int status) {
  if (status == LUA_ERRSYNTAX) {
    size_t lmsg;
    const char *msg = lua_tolstring(L, -1, &lmsg);
    const char *eof = "<eof>";
    size_t leof = strlen(eof);
    if (lmsg >= leof && strcmp(msg + lmsg - leof, eof) == 0) {
      lua_pop(L, 1);
      return 1;
    }
  }
  return 0;
}

static int multi_line(lua_State *L) {
  for (;;) {
    size_t len;
    const char *line = lua_tolstring(L, 1, &len);
    int status = luaL_loadbuffer(L, line, len, "=stdin");
    if (!incomplete(L, status) || !push_line(L, 0)) {
      save_line(line);
      return status;
    }
    lua_pushliteral(L, "\n");
    lua_insert(L, -2);
    lua_concat(L, 3);
  }
}

static int load_line(lua_State *L) {
  int status;
  lua_settop(L, 0);
  if (!push_line(L, 1)) return -1;
  if ((status = add_return(L)) != LUA_OK) status = multi_line(L);
  lua_remove(L, 1);
  return status;
}

static void print_results(lua_State *L) {
  int n = lua_gettop(L);
  if (n == 0) return;
  luaL_checkstack(L, LUA_MINSTACK, "too many results to print");
  lua_getglobal(L, "print");
  lua_insert(L, 1);
  if (lua_pcall(L, n, 0, 0) != LUA_OK)
    print_message(lua_pushfstring(L, "error calling 'print' (%s)",
                                  lua_tostring(L, -1)));
}

static void repl(lua_State *L) {
  int status;
  const char *saved = progname;
  progname = NULL;
  init_readline();
  while ((status = load_line(L)) != -1) {
    if (status == LUA_OK) status = docall(L, 0, LUA_MULTRET);
    if (status == LUA_OK) print_results(L);
    else if (status != LUA_OK) {
      const char *msg = lua_tostring(L, -1);
      fprintf(stderr, "%s\n", msg ? msg : "(error object is not a string)");
      lua_pop(L, 1);
    }
  }
  lua_settop(L, 0);
  fputc('\n', stdout);
  progname = saved;
}

/* ---- main -------------------------------------------------------------- */

/* The directory part of a script path, for require; "." for a bare name. */
static void set_script_dir(const char *script) {
  const char *slash = script ? strrchr(script, '/') : NULL;
  if (script == NULL || strcmp(script, "-") == 0) {
    nl_setscriptdir(NULL);
  } else if (slash == NULL) {
    nl_setscriptdir(".");
  } else if (slash == script) {
    nl_setscriptdir("/");
  } else {
    char *dir = strndup(script, (size_t)(slash - script));
    nl_setscriptdir(dir);
    free(dir);
  }
}

/* Everything runs in protected mode: 'pmain' gets argc/argv as light
 * userdata and leaves a boolean, true on success. */
static int pmain(lua_State *L) {
  int argc = (int)lua_tointeger(L, 1);
  char **argv = (char **)lua_touserdata(L, 2);
  int script = argc;
  int flags = collect_args(argv, &script);
  int ok = 1;
  luaL_checkversion(L);
  if (flags == HAS_ERROR) {
    print_usage_error(argv[script]);
    lua_pushinteger(L, EXIT_USAGE);
    return 1;
  }
  create_arg_table(L, argv, argc, script);
  if (flags & HAS_V) print_version();
  if (!run_options(L, argv, script)) ok = 0;
  else if (script < argc && run_script(L, argv + script) != LUA_OK) ok = 0;
  else if (flags & HAS_I) repl(L);
  else if (script == argc && !(flags & (HAS_E | HAS_V))) {
    if (isatty(0)) {
      print_version();
      repl(L);
    } else if (dochunk(L, luaL_loadfile(L, NULL)) != LUA_OK) {
      ok = 0;
    }
  }
  if (ok && nl_sched_drain(L) != 0) { /* tasks finish before threads */
    print_message("interrupted");
    ok = 0;
    ended_by_interrupt = 1;
  }
  if (!ok && ended_by_interrupt) nl_begin_shutdown(); /* stop the threads */
  if (!ok) nl_sched_cancelall(L); /* tasks left: their resources close */
  switch (nl_run_atexit(L)) {
  case 2: ended_by_interrupt = 1; ok = 0; break;
  case 1: ok = 0; break;
  }
  lua_pushinteger(L, ok ? EXIT_SUCCESS
                        : (ended_by_interrupt ? 128 + nl_interrupt_signal() : EXIT_FAILURE));
  return 1;
}

static const char *find_script(int argc, char **argv) {
  int script = argc;
  if (collect_args(argv, &script) == HAS_ERROR || script >= argc) return NULL;
  return argv[script];
}

int main(int argc, char **argv) {
  lua_State *L;
  int status, code;
  if (argv[0] && argv[0][0]) progname = NL_PROGNAME;
  set_script_dir(find_script(argc, argv));
  nl_signals_init();
  /* The main thread's loop is made first, while descriptors are certainly
   * to be had: a script that uses them all up still has it to wait with. */
  if (nl_loop() == NULL) {
    print_message("cannot create the event loop");
    return EXIT_FAILURE;
  }
  L = nl_newstate();
  if (L == NULL) {
    print_message("cannot create state: not enough memory");
    return EXIT_FAILURE;
  }
  nl_signals_hook(L);
  lua_pushcfunction(L, pmain);
  lua_pushinteger(L, argc);
  lua_pushlightuserdata(L, argv);
  status = lua_pcall(L, 2, 1, 0);
  code = status == LUA_OK ? (int)lua_tointeger(L, -1) : EXIT_FAILURE;
  report(L, status);
  lua_close(L);
  nl_loop_free();
  nl_curl_cleanup();
  return code;
}
