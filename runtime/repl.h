/*
 * repl.h: the interactive prompt (runtime/repl.c).
 */
#ifndef NL_REPL_H
#define NL_REPL_H

#include "lua.h"

/* How the REPL runs what was typed: the command line's protected call,
 * with its message handler (lua_pcall's arguments and status). */
typedef int (*nl_CallFn)(lua_State *L, int narg, int nres);

/* Reads and runs lines until end of input. Returns 1 when SIGTERM/SIGHUP
 * at the prompt ended it (the program then ends as for an uncaught
 * interrupt), else 0. */
int nl_repl(lua_State *L, nl_CallFn docall);

#endif
