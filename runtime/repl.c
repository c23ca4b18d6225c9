/*
 * repl.c: the interactive prompt (layer: runtime), lua.c's REPL: reads a
 * line (with readline when the system has it), runs it as an expression
 * or a statement, and shows the results with tables' contents. Ctrl-C at
 * the prompt drops the line being typed; SIGTERM/SIGHUP end the program.
 */
#include <ctype.h>
#include <dlfcn.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lualib.h"
#include "netlua.h"
#include "repl.h"

#define PROMPT1 "> "
#define PROMPT2 ">> "

/* ---- REPL (lua.c's, with readline when the system has it) -------------- */

/* readline is loaded when the REPL starts, as Lua 5.4.6's lua.c does, so
 * scripts don't pay for mapping it (and libtinfo) at start-up. Without
 * it, lines are read with getc. */
#define READLINE_LIB "libreadline.so.8"

/* What reading a line can end with besides a line (statuses are >= 0). */
#define REPL_EOF (-1)    /* Ctrl-D on an empty first line: the REPL ends */
#define REPL_CANCEL (-2) /* Ctrl-C, or Ctrl-D on a ">>" line: start over */
#define REPL_QUIT (-3)   /* SIGTERM/SIGHUP at the prompt: the program ends */

typedef char *(*readline_fn)(const char *prompt);
typedef void (*add_history_fn)(const char *line);
typedef int (*getc_fn)(FILE *in);
static readline_fn l_readline;
static add_history_fn l_add_history;
static int (*l_insert_text)(const char *text);
static void (*l_redisplay)(void);
static int *l_point, *l_end;

/* Set by an interrupt at the prompt: REPL_CANCEL or REPL_QUIT. */
static int prompt_interrupted;

/* dlsym's object pointer copied into a function pointer (POSIX allows it;
 * ISO C has no such cast). */
static void load_symbol(void *lib, const char *name, void *slot, size_t size) {
  void *p = dlsym(lib, name);
  if (p != NULL) memcpy(slot, &p, size);
}

/* What Ctrl-C (or SIGTERM/SIGHUP) at the prompt means. */
static void note_prompt_interrupt(void) {
  prompt_interrupted = nl_interrupt_signal() == SIGINT ? REPL_CANCEL : REPL_QUIT;
}

/* The prompt's input function (readline's, and plain_readline's): waits
 * for a key through the runtime's wait (so the tasks of this thread go on
 * running while the prompt waits, and Ctrl-C is seen there), then reads it. Ctrl-C shows "^C" at the end of
 * the line and ends it, as Enter would; the REPL then drops that line. */
static int repl_getc(FILE *in) {
  int fd = fileno(in);
  unsigned char c;
  for (;;) {
    int ready = nl_wait(fd, NL_READ, NL_NODEADLINE);
    ssize_t n;
    if (ready == -EINTR) {
      note_prompt_interrupt();
      if (prompt_interrupted == REPL_CANCEL && l_readline != NULL && l_insert_text != NULL &&
          l_point != NULL && l_end != NULL && l_redisplay != NULL) {
        *l_point = *l_end;
        l_insert_text("^C");
        l_redisplay();
      }
      return '\n';
    }
    n = read(fd, &c, 1); /* a regular file, which epoll refuses: at once */
    if (n == 1) return c;
    if (n == 0 || (errno != EINTR && errno != EAGAIN)) return EOF;
  }
}

static void init_readline(void) {
  void *lib = dlopen(READLINE_LIB, RTLD_NOW | RTLD_LOCAL);
  const char **appname;
  int *catch_signals;
  getc_fn *getc_slot;
  if (lib == NULL) return;
  appname = (const char **)dlsym(lib, "rl_readline_name");
  if (appname != NULL) *appname = "netlua"; /* for ~/.inputrc's $if */
  load_symbol(lib, "add_history", &l_add_history, sizeof l_add_history);
  load_symbol(lib, "readline", &l_readline, sizeof l_readline);
  load_symbol(lib, "rl_insert_text", &l_insert_text, sizeof l_insert_text);
  load_symbol(lib, "rl_redisplay", &l_redisplay, sizeof l_redisplay);
  l_point = (int *)dlsym(lib, "rl_point");
  l_end = (int *)dlsym(lib, "rl_end");
  /* Our SIGINT handler stays in place while readline reads (readline's own
   * would keep the half-typed line), and keys come through repl_getc. */
  catch_signals = (int *)dlsym(lib, "rl_catch_signals");
  getc_slot = (getc_fn *)dlsym(lib, "rl_getc_function");
  if (l_add_history == NULL || catch_signals == NULL || getc_slot == NULL) {
    l_readline = NULL;
    return;
  }
  *catch_signals = 0;
  *getc_slot = repl_getc;
}

/* A line without readline, a byte at a time through repl_getc: the wait
 * sees a Ctrl-C even when it came before the read began (a blocking getc
 * missed it then, and the next line raised "interrupted"), and the tasks
 * go on while the prompt waits, as with readline. The terminal itself drops
 * what was typed and shows the ^C. */
static char *plain_readline(const char *prompt) {
  size_t len = 0, cap = 128;
  char *line = malloc(cap);
  fputs(prompt, stdout);
  fflush(stdout);
  while (line != NULL) {
    int c = repl_getc(stdin);
    if (prompt_interrupted) {
      len = 0;
      break;
    }
    if (c == EOF && len == 0) {
      free(line);
      return NULL;
    }
    if (c == EOF || c == '\n') break;
    if (len + 1 == cap) {
      char *bigger = realloc(line, cap *= 2);
      if (bigger == NULL) free(line);
      line = bigger;
      if (line == NULL) break;
    }
    line[len++] = (char)c;
  }
  if (line != NULL) line[len] = '\0';
  return line;
}

/* Reads a line with the prompt; NULL at the end of input. */
static char *read_line(const char *prompt) {
  prompt_interrupted = 0;
  return l_readline != NULL ? l_readline(prompt) : plain_readline(prompt);
}

static void save_line(const char *line) {
  if (l_add_history != NULL && line[0] != '\0') l_add_history(line);
}

/* Pushes the next line; a first line "=expr" becomes "return expr".
 * Returns 1, or REPL_EOF, REPL_CANCEL, REPL_QUIT with nothing pushed. */
static int push_line(lua_State *L, int first) {
  char *line = read_line(first ? PROMPT1 : PROMPT2);
  size_t len;
  if (line == NULL) {
    if (prompt_interrupted) return prompt_interrupted;
    if (first) return REPL_EOF;
    fputc('\n', stdout); /* Ctrl-D on ">>": the statement is dropped */
    return REPL_CANCEL;
  }
  if (prompt_interrupted) {
    if (l_readline == NULL && prompt_interrupted == REPL_CANCEL)
      fputc('\n', stdout); /* after the terminal's ^C */
    free(line);
    return prompt_interrupted;
  }
  len = strlen(line);
  if (len > 0 && line[len - 1] == '\n') line[--len] = '\0';
  if (first && line[0] == '=') lua_pushfstring(L, "return %s", line + 1);
  else lua_pushlstring(L, line, len);
  free(line);
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

/* Loads the statement in slot 1, reading ">>" lines while it is
 * incomplete. Returns a status, or what ended the reading. */
static int multi_line(lua_State *L) {
  for (;;) {
    size_t len;
    const char *line = lua_tolstring(L, 1, &len);
    int status = luaL_loadbuffer(L, line, len, "=stdin"), more;
    if (!incomplete(L, status)) {
      save_line(line);
      return status;
    }
    if ((more = push_line(L, 0)) != 1) return more;
    lua_pushliteral(L, "\n");
    lua_insert(L, -2);
    lua_concat(L, 3);
  }
}

/* Reads and compiles the next statement (an expression first); leaves
 * the chunk, or the error, alone on the stack. */
static int load_line(lua_State *L) {
  int status;
  lua_settop(L, 0);
  if ((status = push_line(L, 1)) != 1) return status;
  if ((status = add_return(L)) != LUA_OK) status = multi_line(L);
  if (status < 0) lua_settop(L, 0);
  else lua_remove(L, 1);
  return status;
}

/* ---- REPL: showing values ---------------------------------------------- */

/* Tables show their contents, as luvit's and Tarantool's REPLs do: array
 * items first, then the other keys sorted (numbers, strings, booleans,
 * the rest), nested tables SHOW_DEPTH deep, a table inside itself as
 * <cycle>, on one line when it fits SHOW_WIDTH columns. */
#define SHOW_DEPTH 4
#define SHOW_ITEMS 100
#define SHOW_WIDTH 78

static int key_rank(lua_State *L, int idx) {
  switch (lua_type(L, idx)) {
  case LUA_TNUMBER: return 0;
  case LUA_TSTRING: return 1;
  case LUA_TBOOLEAN: return 2;
  default: return 3;
  }
}

/* table.sort's comparison for keys of different types. */
static int key_less(lua_State *L) {
  int ra = key_rank(L, 1), rb = key_rank(L, 2);
  if (ra != rb) lua_pushboolean(L, ra < rb);
  else if (ra <= 1) lua_pushboolean(L, lua_compare(L, 1, 2, LUA_OPLT));
  else if (ra == 2) lua_pushboolean(L, !lua_toboolean(L, 1) && lua_toboolean(L, 2));
  else lua_pushboolean(L, (uintptr_t)lua_topointer(L, 1) < (uintptr_t)lua_topointer(L, 2));
  return 1;
}

/* Length of the valid UTF-8 sequence at s (at most n bytes), or 0. */
static size_t utf8_length(const unsigned char *s, size_t n) {
  size_t len = s[0] >= 0xF0 ? 4 : s[0] >= 0xE0 ? 3 : s[0] >= 0xC2 ? 2 : 0;
  if (s[0] >= 0xF5 || len == 0 || len > n) return 0;
  for (size_t i = 1; i < len; i++)
    if ((s[i] & 0xC0) != 0x80) return 0;
  if ((len == 3 && s[0] == 0xE0 && s[1] < 0xA0) ||
      (len == 3 && s[0] == 0xED && s[1] >= 0xA0) ||
      (len == 4 && s[0] == 0xF0 && s[1] < 0x90) ||
      (len == 4 && s[0] == 0xF4 && s[1] >= 0x90))
    return 0;
  return len;
}

/* Pushes the string at idx in double quotes, escaped so that it reads back
 * as the same string; UTF-8 text stays as it is. [-0, +1, m] */
static void push_quoted(lua_State *L, int idx) {
  size_t len, i = 0;
  const unsigned char *s = (const unsigned char *)lua_tolstring(L, idx, &len);
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  luaL_addchar(&b, '"');
  while (i < len) {
    unsigned char c = s[i];
    size_t n = c >= 0x80 ? utf8_length(s + i, len - i) : 0;
    const char *esc = c == '"' ? "\\\"" : c == '\\' ? "\\\\" : c == '\n' ? "\\n"
                    : c == '\r' ? "\\r" : c == '\t' ? "\\t" : NULL;
    if (esc != NULL) {
      luaL_addstring(&b, esc);
      i++;
    } else if (n > 0) {
      luaL_addlstring(&b, (const char *)s + i, n);
      i += n;
    } else if (c < 0x20 || c >= 0x7F) {
      char num[8];
      snprintf(num, sizeof num, "\\%03u", c);
      luaL_addstring(&b, num);
      i++;
    } else {
      luaL_addchar(&b, (char)c);
      i++;
    }
  }
  luaL_addchar(&b, '"');
  luaL_pushresult(&b);
}

static int is_identifier(const char *s, size_t len) {
  static const char *const reserved[] = {
    "and", "break", "do", "else", "elseif", "end", "false", "for",
    "function", "goto", "if", "in", "local", "nil", "not", "or", "repeat",
    "return", "then", "true", "until", "while", NULL
  };
  if (len == 0 || !(isalpha((unsigned char)s[0]) || s[0] == '_')) return 0;
  for (size_t i = 1; i < len; i++)
    if (!(isalnum((unsigned char)s[i]) || s[i] == '_')) return 0;
  for (int i = 0; reserved[i] != NULL; i++)
    if (strcmp(s, reserved[i]) == 0) return 0;
  return 1;
}

static void show_value(lua_State *L, int idx, int depth, int seen);

/* Pushes "name = ", "[\"a b\"] = " or "[2.5] = " for the key at idx. */
static void show_key(lua_State *L, int idx, int seen) {
  size_t len = 0;
  const char *name = lua_type(L, idx) == LUA_TSTRING ? lua_tolstring(L, idx, &len) : NULL;
  if (name != NULL && is_identifier(name, len)) {
    lua_pushfstring(L, "%s = ", name);
  } else {
    lua_pushliteral(L, "[");
    show_value(L, idx, SHOW_DEPTH, seen);
    lua_pushliteral(L, "] = ");
    lua_concat(L, 3);
  }
}

/* Pushes the items of the table at t shown as strings; returns their
 * count, and sets whether one of them spans lines and how many come from
 * the array part (shown without keys). */
static int show_items(lua_State *L, int t, int depth, int seen, int *multiline,
                      int *listed) {
  lua_Integer n = 0, shown = 0, left = 0;
  int keys;
  luaL_checkstack(L, SHOW_ITEMS + 8, "table too big to show");
  while (lua_rawgeti(L, t, n + 1) != LUA_TNIL) { /* the array part */
    n++;
    if (shown < SHOW_ITEMS) {
      show_value(L, lua_gettop(L), depth + 1, seen);
      lua_remove(L, -2);
      shown++;
    } else {
      lua_pop(L, 1);
      left++;
    }
  }
  lua_pop(L, 1);
  *listed = (int)shown;
  lua_newtable(L); /* the other keys, sorted */
  keys = lua_gettop(L);
  lua_pushnil(L);
  while (lua_next(L, t) != 0) {
    lua_pop(L, 1);
    if (lua_isinteger(L, -1) && lua_tointeger(L, -1) >= 1 && lua_tointeger(L, -1) <= n)
      continue;
    lua_pushvalue(L, -1);
    lua_rawseti(L, keys, (lua_Integer)lua_rawlen(L, keys) + 1);
  }
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  lua_getfield(L, -1, LUA_TABLIBNAME);
  lua_getfield(L, -1, "sort");
  lua_pushvalue(L, keys);
  lua_pushcfunction(L, key_less);
  lua_call(L, 2, 0);
  lua_pop(L, 2);
  for (lua_Integer i = 1; i <= (lua_Integer)lua_rawlen(L, keys); i++) {
    int key;
    if (shown >= SHOW_ITEMS) { left++; continue; }
    lua_rawgeti(L, keys, i);                  /* key */
    key = lua_gettop(L);
    show_key(L, key, seen);                   /* key, "k = " */
    lua_pushvalue(L, key);
    lua_rawget(L, t);                         /* key, "k = ", value */
    show_value(L, -1, depth + 1, seen);       /* key, "k = ", value, shown */
    lua_remove(L, -2);
    lua_concat(L, 2);                         /* key, "k = shown" */
    lua_remove(L, key);
    lua_insert(L, keys);                      /* below the key list */
    keys++;
    shown++;
  }
  lua_settop(L, keys - 1);
  if (left > 0) {
    lua_pushfstring(L, "... (%I more)", (LUAI_UACINT)left);
    shown++;
  }
  *multiline = 0;
  for (int i = 0; i < shown; i++)
    if (strchr(lua_tostring(L, -1 - i), '\n') != NULL) *multiline = 1;
  return (int)shown;
}

/* Indents every line of the string on top by two spaces. [-1, +1, m] */
static void indent_lines(lua_State *L) {
  luaL_gsub(L, lua_tostring(L, -1), "\n", "\n  ");
  lua_remove(L, -2);
}

static void show_table(lua_State *L, int t, int depth, int seen) {
  int count, multiline, listed, base;
  size_t width = 4;
  if (luaL_getmetafield(L, t, "__tostring") != LUA_TNIL) {
    lua_pop(L, 1);
    luaL_tolstring(L, t, NULL);
    return;
  }
  lua_pushvalue(L, t);
  if (lua_rawget(L, seen) != LUA_TNIL) { /* t holds itself */
    lua_pop(L, 1);
    lua_pushliteral(L, "<cycle>");
    return;
  }
  lua_pop(L, 1);
  lua_pushnil(L);
  if (lua_next(L, t) == 0) {
    lua_pushliteral(L, "{}");
    return;
  }
  lua_pop(L, 2);
  if (depth >= SHOW_DEPTH) {
    lua_pushliteral(L, "{...}");
    return;
  }
  lua_pushvalue(L, t);
  lua_pushboolean(L, 1);
  lua_rawset(L, seen);
  base = lua_gettop(L);
  count = show_items(L, t, depth, seen, &multiline, &listed);
  for (int i = 1; i <= count; i++) width += lua_rawlen(L, base + i) + 2;
  if (!multiline && width + (size_t)depth * 2 <= SHOW_WIDTH) {
    lua_pushliteral(L, "{ ");
    lua_insert(L, base + 1);
    for (int i = 1; i < count; i++) {
      lua_pushliteral(L, ", ");
      lua_insert(L, base + 2 * i + 1);
    }
    lua_pushliteral(L, " }");
    lua_concat(L, 2 * count + 1);
  } else { /* array items fill lines, keyed ones get a line each */
    luaL_Buffer b;
    size_t column = SHOW_WIDTH;
    luaL_buffinit(L, &b);
    luaL_addstring(&b, "{");
    for (int i = 1; i <= count; i++) {
      size_t len = lua_rawlen(L, base + i);
      int fill = i <= listed && !multiline && column + len + 2 <= SHOW_WIDTH;
      if (i > 1) luaL_addchar(&b, ',');
      if (fill) {
        luaL_addchar(&b, ' ');
        column += len + 2;
      } else {
        luaL_addstring(&b, "\n");
        column = len + 3;
        if (i > listed) column = SHOW_WIDTH; /* alone on its line */
      }
      lua_pushvalue(L, base + i);
      indent_lines(L);
      if (!fill) {
        lua_pushliteral(L, "  ");
        lua_insert(L, -2);
        lua_concat(L, 2);
      }
      luaL_addvalue(&b);
    }
    luaL_addstring(&b, "\n}");
    luaL_pushresult(&b);
    lua_replace(L, base + 1);
    lua_settop(L, base + 1);
  }
  lua_pushvalue(L, t);
  lua_pushnil(L);
  lua_rawset(L, seen);
}

/* Pushes the value at idx as the REPL shows it inside a table. */
static void show_value(lua_State *L, int idx, int depth, int seen) {
  idx = lua_absindex(L, idx);
  luaL_checkstack(L, 8, "value too deep to show");
  if (lua_type(L, idx) == LUA_TSTRING) push_quoted(L, idx);
  else if (lua_type(L, idx) == LUA_TTABLE) show_table(L, idx, depth, seen);
  else luaL_tolstring(L, idx, NULL);
}

/* Pushes the results on the stack as one line, as print would write
 * them, but a table shows its contents. Run protected: a __tostring may
 * raise, and then nothing is printed. */
static int show_results(lua_State *L) {
  int n = lua_gettop(L), seen;
  lua_newtable(L); /* the tables being shown, to see cycles */
  seen = lua_gettop(L);
  for (int i = 1; i <= n; i++) {
    if (i > 1) lua_pushliteral(L, "\t");
    if (lua_type(L, i) == LUA_TTABLE) show_table(L, i, 0, seen);
    else luaL_tolstring(L, i, NULL);
  }
  lua_pushliteral(L, "\n");
  lua_concat(L, 2 * n);
  return 1;
}

static void print_results(lua_State *L) {
  int n = lua_gettop(L);
  size_t len;
  const char *text;
  if (n == 0) return;
  luaL_checkstack(L, 2 * n + LUA_MINSTACK, "too many results to print");
  lua_pushcfunction(L, show_results);
  lua_insert(L, 1);
  if (lua_pcall(L, n, 1, 0) != LUA_OK) {
    fprintf(stderr, "error showing the results (%s)\n", lua_tostring(L, -1));
  } else {
    text = lua_tolstring(L, -1, &len);
    fwrite(text, 1, len, stdout);
    fflush(stdout);
  }
  lua_pop(L, 1);
}

/* The REPL (repl.h). */
int nl_repl(lua_State *L, nl_CallFn docall) {
  int status;
  init_readline();
  while ((status = load_line(L)) != REPL_EOF && status != REPL_QUIT) {
    if (status == REPL_CANCEL) continue;
    if (status == LUA_OK) status = docall(L, 0, LUA_MULTRET);
    if (status == LUA_OK) print_results(L);
    else {
      const char *msg = lua_tostring(L, -1);
      fprintf(stderr, "%s\n", msg ? msg : "(error object is not a string)");
      lua_pop(L, 1);
    }
  }
  lua_settop(L, 0);
  fputc('\n', stdout);
  return status == REPL_QUIT;
}

