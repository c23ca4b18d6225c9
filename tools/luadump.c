/*
 * luadump.c: a build tool (not part of netlua). Compiles one Lua file into
 * Lua bytecode on stdout with the same static liblua netlua links, so the
 * embedded Lua halves (tools/embed.sh) load without being parsed again in
 * every state: loading socket.lua's bytecode takes ~1/7 of parsing it.
 * Debug information is kept, so error messages and tracebacks name lines.
 * Usage: luadump CHUNKNAME file.lua > file.luac
 */
#include <stdio.h>

#include "lauxlib.h"
#include "lua.h"

static int write_chunk(lua_State *L, const void *p, size_t size, void *ud) {
  (void)L;
  return fwrite(p, 1, size, (FILE *)ud) != size;
}

int main(int argc, char **argv) {
  lua_State *L;
  FILE *in;
  luaL_Buffer b;
  size_t n;
  int status;
  if (argc != 3) {
    fputs("usage: luadump CHUNKNAME file.lua > file.luac\n", stderr);
    return 2;
  }
  L = luaL_newstate();
  in = fopen(argv[2], "rb");
  if (L == NULL || in == NULL) {
    perror(argv[2]);
    return 1;
  }
  luaL_buffinit(L, &b);
  while ((n = fread(luaL_prepbuffer(&b), 1, LUAL_BUFFERSIZE, in)) > 0)
    luaL_addsize(&b, n);
  fclose(in);
  luaL_pushresult(&b);
  status = luaL_loadbuffer(L, lua_tostring(L, -1), luaL_len(L, -1), argv[1]);
  if (status != LUA_OK) {
    fprintf(stderr, "luadump: %s\n", lua_tostring(L, -1));
    return 1;
  }
  if (lua_dump(L, write_chunk, stdout, 0) != 0 || fflush(stdout) != 0) {
    perror("luadump: stdout");
    return 1;
  }
  lua_close(L);
  return 0;
}
