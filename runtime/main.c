/*
 * main.c: the netlua command line, in the shape of Lua's own lua.c (layer:
 * runtime). All set-up runs inside a protected call (pmain); a message
 * handler adds the traceback; lua_close always runs so __gc closes
 * descriptors. Exit codes: 0 ok, 1 error, 2 bad usage, 128 + the signal
 * when an interrupt ends the run (130 Ctrl-C, 143 SIGTERM, 129 SIGHUP).
 */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lualib.h"
#include "netlua.h"
#include "repl.h"
#include "trace.h"

#define EXIT_USAGE 2

static const char *progname = NL_PROGNAME;

/* Set by the message handler when the error that ends the run is an
 * interrupt (Ctrl-C, SIGTERM, SIGHUP). */
static int ended_by_interrupt;

/* The tool named by -m NAME, else NULL (set by collect_args). */
static const char *lab_tool_name;

static const char usage_line[] =
  "usage: netlua [-e code] [-l mod] [-i] [-v] [-h] [--trace[=fmt] ...] "
  "[script [args...] | -m tool [args...] | -]\n";

static void print_usage_error(const char *badoption) {
  if (badoption[1] == 'e' || badoption[1] == 'l' || badoption[1] == 'm' ||
      strcmp(badoption, "--trace-file") == 0)
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
         "  -m tool   run one of the lab's built-in tools (below) with the\n"
         "            arguments after it\n"
         "  -i        enter interactive mode after running the script\n"
         "  -v        show version information\n"
         "  -h        show this help\n"
         "  --trace[=text|jsonl]  write a timeline of every network event\n"
         "            (to stderr; also NETLUA_TRACE=text|jsonl)\n"
         "  --trace-file path     ... to this file (NETLUA_TRACE_FILE)\n"
         "  --trace-data          ... with the bytes sent and received\n"
         "  --        stop handling options\n"
         "  -         run the script from standard input\n\n"
         "With no script and a terminal, netlua starts a REPL.\n"
         "Modules are found next to the script, in NETLUA_PATH (directories\n"
         "separated by ':'), then in Lua's default path.\n\n"
         "The lab's tools (netlua -m tool --help tells more):\n",
         usage_line);
  nl_lab_list(stdout);
}

/* Loads libcurl to name its version (netlua itself starts without it). */
static void print_version(void) {
  const char *curl = nl_curl_version();
  printf("netlua %s (%s, lua-cjson 2.1, libcurl %s)\n", NL_VERSION,
         LUA_RELEASE, curl ? curl : "not available");
}

static void print_message(const char *msg) {
  fflush(stdout); /* what the script printed comes first */
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
#define HAS_M 16

/* Scans options; returns flags and sets *script to the index of the script
 * (argc when none). On a bad option *script holds its index. */
static int collect_args(char **argv, int *script) {
  int flags = 0, i;
  for (i = 1; argv[i] != NULL; i++) {
    *script = i;
    if (argv[i][0] != '-') return flags;
    switch (argv[i][1]) {
    case '-':
      if (argv[i][2] != '\0') {
        int n = nl_trace_option(argv + i); /* --trace... */
        if (n == 0) return HAS_ERROR;
        i += n - 1;
        break;
      }
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
    case 'm': /* -m tool args...: the tool is the "script" */
      if (argv[i][2] != '\0') {
        lab_tool_name = argv[i] + 2;
      } else if (argv[i + 1] == NULL) {
        return HAS_ERROR;
      } else {
        lab_tool_name = argv[++i];
      }
      *script = i;
      return flags | HAS_M;
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

/* Runs the lab tool lab_tool_name with the arguments after its name. */
static int run_tool(lua_State *L) {
  const nl_Embedded *tool = nl_lab_tool(lab_tool_name);
  int status;
  if (tool == NULL) {
    fprintf(stderr, "%s: no tool '%s'; the lab's tools are:\n", progname, lab_tool_name);
    nl_lab_list(stderr);
    return -1;
  }
  status = luaL_loadbuffer(L, tool->source, tool->size, tool->chunkname);
  if (status == LUA_OK) {
    int n = push_script_args(L);
    status = docall(L, n, 0);
  }
  return report(L, status);
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
  int ok = 1, drained_interrupt = 0;
  luaL_checkversion(L);
  if (flags == HAS_ERROR) {
    print_usage_error(argv[script]);
    lua_pushinteger(L, EXIT_USAGE);
    return 1;
  }
  create_arg_table(L, argv, argc, script);
  if (flags & HAS_V) print_version();
  if (!run_options(L, argv, script)) ok = 0;
  else if (flags & HAS_M) {
    int status = run_tool(L);
    if (status == -1) {
      lua_pushinteger(L, EXIT_USAGE);
      return 1;
    }
    if (status != LUA_OK) ok = 0;
  } else if (script < argc && run_script(L, argv + script) != LUA_OK) ok = 0;
  else if ((flags & HAS_I) && nl_repl(L, docall)) ok = 0, ended_by_interrupt = 1;
  else if (script == argc && !(flags & (HAS_E | HAS_V))) {
    if (isatty(0)) {
      print_version();
      if (nl_repl(L, docall)) ok = 0, ended_by_interrupt = 1;
    } else if (dochunk(L, luaL_loadfile(L, NULL)) != LUA_OK) {
      ok = 0;
    }
  }
  if (ok && nl_sched_drain(L) != 0) { /* tasks finish before threads */
    nl_report_waits(); /* the threads stopped now say what they waited on */
    nl_sched_describe(L, "  ");
    nl_print_waits(lua_tostring(L, -1));
    lua_pop(L, 1);
    ok = 0;
    ended_by_interrupt = drained_interrupt = 1; /* said once the threads' lines are out */
  }
  if (!ok && ended_by_interrupt) nl_begin_shutdown(); /* stop the threads */
  if (!ok) nl_sched_cancelall(L); /* tasks left: their resources close */
  switch (nl_run_atexit(L)) {
  case 2: ended_by_interrupt = 1; ok = 0; break;
  case 1: ok = 0; break;
  }
  if (drained_interrupt) print_message("interrupted");
  lua_pushinteger(L, ok ? EXIT_SUCCESS
                        : (ended_by_interrupt ? 128 + nl_interrupt_signal() : EXIT_FAILURE));
  return 1;
}

/* The script's path; NULL for none, for stdin's and for a lab tool's. */
static const char *find_script(int argc, char **argv) {
  int script = argc, flags = collect_args(argv, &script);
  if (flags == HAS_ERROR || (flags & HAS_M) || script >= argc) return NULL;
  return argv[script];
}

/* glibc hands the top of the heap back to the kernel as soon as 128 KiB of
 * it are free, and serves blocks from 128 KiB up with mmap until a freed one
 * raises that bar. A script that moves data in 64 KiB strings frees them a
 * batch at a time, at each GC cycle: the heap shrank and grew again every
 * cycle, each time with brk calls, page faults and freshly zeroed pages
 * (in the bench's p2p_fanout row the peers' CPU time fell from about 8 s to
 * about 5 s without them). Keeping up to 8 MiB of free heap, and taking
 * blocks below 4 MiB from the heap, ends that; setting the first by hand
 * turns off glibc's moving bar, hence the second. */
static void tune_malloc(void) {
#if defined(M_TRIM_THRESHOLD) && defined(M_MMAP_THRESHOLD)
  mallopt(M_MMAP_THRESHOLD, 4 << 20);
  mallopt(M_TRIM_THRESHOLD, 8 << 20);
#endif
}

int main(int argc, char **argv) {
  lua_State *L;
  int status, code;
  const char *why;
  if (argv[0] && argv[0][0]) progname = NL_PROGNAME;
  tune_malloc();
  set_script_dir(find_script(argc, argv));
  if (lab_tool_name != NULL) nl_lab_enable(); /* before any state is made */
  if ((why = nl_trace_start()) != NULL) { /* before any thread */
    print_message(why);
    return EXIT_USAGE;
  }
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
