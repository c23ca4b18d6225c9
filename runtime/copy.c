/*
 * copy.c: values crossing between Lua states (layer: runtime).
 *
 * nl_pack serialises values off one state into plain C memory (a byte
 * buffer plus the payloads of userdata that move or are shared); nl_unpack
 * rebuilds them in another state. Lua states are not thread-safe, so this is
 * the only way values reach another thread: by copy, never by sharing.
 *
 *   nil, booleans, integers, floats, strings   copied (binary-safe)
 *   tables    deep copy; shared sub-tables and cycles preserved through ids;
 *             a metatable is kept only when it is a module (else dropped)
 *   modules   a value of package.loaded crosses by name (required again)
 *   Lua functions  lua_dump'ed bytecode plus their upvalues, packed the same
 *             way (so recursive functions and _ENV work: _G is a module);
 *             closures that share an upvalue still share it (upvaluejoin)
 *   C functions    only those that are a field of a loaded module, by name
 *   userdata  only those with an nl_Transfer in their metatable
 *
 * Anything else raises an error naming where the value was found.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "netlua.h"

#define MAX_DEPTH 200
#define PACKET_MT "netlua.packet"

enum {
  T_NIL, T_FALSE, T_TRUE, T_INT, T_FLT, T_STR, T_TABLE, T_REF, T_FUNC,
  T_CFUNC, T_MODULE, T_UDATA, T_META, T_END, T_UPJOIN
};

typedef struct Slot {
  const nl_Transfer *transfer;
  void *payload; /* NULL once imported or discarded */
} Slot;

struct nl_Packet {
  char *data;
  size_t len, cap, pos; /* pos: read position while unpacking */
  Slot *slots;
  int nslots, capslots;
  int nvalues;
};

/* ---- the packet itself ---------------------------------------------------- */

void nl_packet_free(nl_Packet *p) {
  if (p == NULL) return;
  for (int i = 0; i < p->nslots; i++)
    if (p->slots[i].payload != NULL) p->slots[i].transfer->discard(p->slots[i].payload);
  free(p->slots);
  free(p->data);
  free(p);
}

size_t nl_packet_size(const nl_Packet *p) {
  return sizeof *p + p->cap + (size_t)p->capslots * sizeof *p->slots;
}

/* A packet under construction or being unpacked lives in a boxed userdata,
 * so that a Lua error half-way frees it through __gc. */
typedef struct Box {
  nl_Packet *p;
} Box;

static int box_gc(lua_State *L) {
  Box *b = (Box *)luaL_checkudata(L, 1, PACKET_MT);
  nl_packet_free(b->p);
  b->p = NULL;
  return 0;
}

/* Pushes a box holding p. [-0, +1, m] */
static Box *push_box(lua_State *L, nl_Packet *p) {
  Box *b = (Box *)lua_newuserdatauv(L, sizeof *b, 0);
  b->p = NULL;
  if (luaL_newmetatable(L, PACKET_MT)) {
    lua_pushcfunction(L, box_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_setmetatable(L, -2);
  b->p = p;
  return b;
}

static void put(lua_State *L, nl_Packet *p, const void *bytes, size_t n) {
  if (p->cap - p->len < n) {
    size_t cap = p->cap ? p->cap : 64;
    char *data;
    while (cap - p->len < n) cap *= 2;
    data = (char *)realloc(p->data, cap);
    if (data == NULL) luaL_error(L, "not enough memory");
    p->data = data;
    p->cap = cap;
  }
  memcpy(p->data + p->len, bytes, n);
  p->len += n;
}

static void put_tag(lua_State *L, nl_Packet *p, int tag) {
  unsigned char c = (unsigned char)tag;
  put(L, p, &c, 1);
}

static void put_size(lua_State *L, nl_Packet *p, size_t n) {
  put(L, p, &n, sizeof n);
}

static void put_lstring(lua_State *L, nl_Packet *p, const char *s, size_t n) {
  put_size(L, p, n);
  put(L, p, s, n);
}

/* ---- naming the offending value ------------------------------------------ */

enum { W_ARG, W_FIELD, W_INDEX, W_KEY, W_UPVALUE };

/* Where a value was found, innermost first through `up`. */
typedef struct Where {
  const struct Where *up;
  int kind;
  const char *name;
  lua_Integer index;
} Where;

static void add_where(luaL_Buffer *b, const Where *w) {
  lua_State *L = b->L;
  switch (w->kind) {
  case W_ARG: lua_pushfstring(L, "argument #%I", w->index); break;
  case W_FIELD: lua_pushfstring(L, "field '%s'", w->name); break;
  case W_INDEX: lua_pushfstring(L, "field [%I]", w->index); break;
  case W_KEY: lua_pushliteral(L, "a table key"); break;
  default: lua_pushfstring(L, "upvalue '%s'", w->name); break;
  }
  luaL_addvalue(b);
}

/* Pushes "a coroutine", "a tcp{client}" ... for the value at idx. */
static void push_type_phrase(lua_State *L, int idx) {
  switch (lua_type(L, idx)) {
  case LUA_TTHREAD: lua_pushliteral(L, "a coroutine"); break;
  case LUA_TFUNCTION: lua_pushliteral(L, "a C function"); break;
  case LUA_TLIGHTUSERDATA: lua_pushliteral(L, "a light userdata"); break;
  case LUA_TUSERDATA:
    if (luaL_getmetafield(L, idx, "__name") == LUA_TSTRING) {
      lua_pushfstring(L, "a %s", lua_tostring(L, -1));
      lua_remove(L, -2);
    } else {
      lua_pushliteral(L, "a userdata");
    }
    break;
  default: lua_pushstring(L, luaL_typename(L, idx)); break;
  }
}

/* Pushes "upvalue 'f' (a coroutine)": where the value at idx was found and
 * what it is. The outermost "argument #1" is left out when that argument is
 * a function (the thread's body): its upvalues are what the reader knows. */
static const char *push_what(lua_State *L, int idx, const Where *w, int top_is_func) {
  luaL_Buffer b;
  int phrase;
  idx = lua_absindex(L, idx);
  push_type_phrase(L, idx);
  phrase = lua_gettop(L);
  luaL_buffinit(L, &b);
  for (const Where *at = w; at != NULL; at = at->up) {
    if (at->up == NULL && at != w && top_is_func && at->index == 1) break;
    if (at != w) luaL_addstring(&b, " of ");
    add_where(&b, at);
  }
  luaL_addstring(&b, " (");
  lua_pushvalue(L, phrase);
  luaL_addvalue(&b);
  luaL_addstring(&b, ")");
  luaL_pushresult(&b);
  lua_remove(L, phrase);
  return lua_tostring(L, -1);
}

/* Raises "upvalue 'f' (a coroutine) cannot be passed to a thread". */
static int cannot_pass(lua_State *L, int idx, const Where *w, int top_is_func) {
  return luaL_error(L, "%s cannot be passed to a thread",
                    push_what(L, idx, w, top_is_func));
}

/* Raises "argument #2 is too deeply nested to pass to a thread (more than
 * 200 levels)", naming the outermost place of the value (its full path would
 * be 200 steps long): the argument, or the upvalue of the thread's body. */
static int too_deep(lua_State *L, const Where *w, int top_is_func) {
  luaL_Buffer b;
  while (w->up != NULL && !(top_is_func && w->up->up == NULL && w->up->index == 1))
    w = w->up;
  luaL_buffinit(L, &b);
  add_where(&b, w);
  luaL_pushresult(&b);
  return luaL_error(L, "%s is too deeply nested to pass to a thread (more than %d levels)",
                    lua_tostring(L, -1), MAX_DEPTH);
}

/* ---- packing -------------------------------------------------------------- */

typedef struct Packer Packer;
static void add_module(Packer *k);
static void add_functions(Packer *k);

struct Packer {
  lua_State *L;
  nl_Packet *p;
  int seen;    /* stack index: table/function -> id */
  int modules; /* stack index: module table or C function -> name */
  int fields;  /* stack index: C function -> field name in its module */
  int built;   /* both maps are built (lazily: plain data needs neither) */
  int pending; /* stack index: userdata to export, and their descriptions */
  int nextid;
  int depth;
  int top_is_func;
};

/* build_modules, level 1: modules[module] = name (first name wins).
 * Stack: ..., name, module. */
static void add_module(Packer *k) {
  lua_State *L = k->L;
  lua_pushvalue(L, -1);
  if (lua_rawget(L, k->modules) == LUA_TNIL) {
    lua_pushvalue(L, -2);
    lua_pushvalue(L, -4);
    lua_rawset(L, k->modules);
  }
  lua_pop(L, 1);
}

/* build_modules, level 2: modules[f] = module name, fields[f] = field name
 * for each C function f of the module. Stack: ..., name, module. */
static void add_functions(Packer *k) {
  lua_State *L = k->L;
  lua_pushnil(L);
  while (lua_next(L, -2)) { /* ..., name, module, key, value */
    if (lua_type(L, -2) == LUA_TSTRING && lua_iscfunction(L, -1)) {
      lua_pushvalue(L, -1);
      if (lua_rawget(L, k->modules) == LUA_TNIL) {
        lua_pushvalue(L, -2);
        lua_pushvalue(L, -6);
        lua_rawset(L, k->modules);
        lua_pushvalue(L, -2);
        lua_pushvalue(L, -4);
        lua_rawset(L, k->fields);
      }
      lua_pop(L, 1);
    }
    lua_pop(L, 1);
  }
}

static void pack_value(Packer *k, int idx, const Where *w);
/* Builds the reverse maps of package.loaded, lazily and in two levels:
 * module table -> name (level 1, a few entries), then C function -> module
 * name and field name (level 2, every function of every module; only when
 * a C function is packed). [-0, +0, m] */
static void build_modules(Packer *k, int level) {
  lua_State *L = k->L;
  if (k->built >= level) return;
  if (k->built == 0) {
    lua_newtable(L);
    lua_replace(L, k->modules);
    lua_newtable(L);
    lua_replace(L, k->fields);
  }
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  lua_pushnil(L);
  while (lua_next(L, -2)) { /* loaded, name, module */
    if (lua_type(L, -2) == LUA_TSTRING && lua_type(L, -1) == LUA_TTABLE) {
      add_module(k);
      if (level == 2) add_functions(k);
    }
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  k->built = level;
}

/* The module name of the value at idx, or NULL (nothing pushed either way;
 * the name stays alive in the modules map). */
static const char *module_name(Packer *k, int idx, int level) {
  const char *name;
  build_modules(k, level);
  lua_pushvalue(k->L, idx);
  lua_rawget(k->L, k->modules);
  name = lua_tostring(k->L, -1);
  lua_pop(k->L, 1);
  return name;
}

/* Emits T_REF when the table/function at idx was packed already; otherwise
 * gives it the next id and returns 0. */
static int pack_seen(Packer *k, int idx) {
  lua_State *L = k->L;
  lua_pushvalue(L, idx);
  if (lua_rawget(L, k->seen) == LUA_TNUMBER) {
    size_t id = (size_t)lua_tointeger(L, -1);
    lua_pop(L, 1);
    put_tag(L, k->p, T_REF);
    put_size(L, k->p, id);
    return 1;
  }
  lua_pop(L, 1);
  lua_pushvalue(L, idx);
  lua_pushinteger(L, k->nextid++);
  lua_rawset(L, k->seen);
  return 0;
}

static void pack_table(Packer *k, int idx, const Where *w) {
  lua_State *L = k->L;
  const char *name = module_name(k, idx, 1);
  if (name != NULL) {
    put_tag(L, k->p, T_MODULE);
    put_lstring(L, k->p, name, strlen(name));
    return;
  }
  if (pack_seen(k, idx)) return;
  put_tag(L, k->p, T_TABLE);
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    Where kw = {w, W_KEY, NULL, 0};
    Where vw = {w, W_FIELD, NULL, 0};
    int key = lua_absindex(L, -2), val = lua_absindex(L, -1);
    if (lua_type(L, key) == LUA_TSTRING) vw.name = lua_tostring(L, key);
    else if (lua_isinteger(L, key)) {
      vw.kind = W_INDEX;
      vw.index = lua_tointeger(L, key);
    } else vw.kind = W_KEY;
    pack_value(k, key, &kw);
    pack_value(k, val, &vw);
    lua_pop(L, 1);
  }
  if (lua_getmetatable(L, idx)) {
    const char *meta = module_name(k, -1, 1);
    if (meta != NULL) {
      put_tag(L, k->p, T_META);
      put_tag(L, k->p, T_MODULE);
      put_lstring(L, k->p, meta, strlen(meta));
    }
    lua_pop(L, 1);
  }
  put_tag(L, k->p, T_END);
}

/* Appends the bytecode straight to the packet; nonzero stops lua_dump. */
static int dump_writer(lua_State *L, const void *bytes, size_t size, void *ud) {
  nl_Packet *p = (nl_Packet *)ud;
  (void)L;
  if (p->cap - p->len < size) {
    size_t cap = p->cap ? p->cap : 64;
    char *data;
    while (cap - p->len < size) cap *= 2;
    data = (char *)realloc(p->data, cap);
    if (data == NULL) return 1;
    p->data = data;
    p->cap = cap;
  }
  memcpy(p->data + p->len, bytes, size);
  p->len += size;
  return 0;
}

static void pack_cfunction(Packer *k, int idx, const Where *w) {
  lua_State *L = k->L;
  const char *mod = module_name(k, idx, 2);
  const char *field;
  if (mod == NULL) cannot_pass(L, idx, w, k->top_is_func);
  lua_pushvalue(L, idx);
  lua_rawget(L, k->fields);
  field = lua_tostring(L, -1);
  put_tag(L, k->p, T_CFUNC);
  put_lstring(L, k->p, mod, strlen(mod));
  put_lstring(L, k->p, field, strlen(field));
  lua_pop(L, 1);
}

/* An upvalue already packed with another closure (two closures over the
 * same local): emits T_UPJOIN naming that closure and upvalue, returns 1.
 * Otherwise remembers this one and returns 0. */
static int pack_shared_upvalue(Packer *k, int func, int fid, int n) {
  lua_State *L = k->L;
  lua_pushlightuserdata(L, lua_upvalueid(L, func, n));
  if (lua_rawget(L, k->seen) == LUA_TNUMBER) {
    lua_Integer where = lua_tointeger(L, -1);
    lua_pop(L, 1);
    put_tag(L, k->p, T_UPJOIN);
    put_size(L, k->p, (size_t)where);
    return 1;
  }
  lua_pop(L, 1);
  lua_pushlightuserdata(L, lua_upvalueid(L, func, n));
  lua_pushinteger(L, (lua_Integer)fid * 256 + n);
  lua_rawset(L, k->seen);
  return 0;
}

/* A Lua function: its bytecode, then each upvalue as a value. */
static void pack_function(Packer *k, int idx, const Where *w) {
  lua_State *L = k->L;
  size_t len, at;
  int nups = 0, fid;
  if (lua_iscfunction(L, idx)) {
    pack_cfunction(k, idx, w);
    return;
  }
  if (pack_seen(k, idx)) return;
  fid = k->nextid - 1;
  put_tag(L, k->p, T_FUNC);
  put_size(L, k->p, 0); /* the length, patched once known */
  at = k->p->len;
  lua_pushvalue(L, idx);
  if (lua_dump(L, dump_writer, k->p, 0) != 0) luaL_error(L, "not enough memory");
  lua_pop(L, 1);
  len = k->p->len - at;
  memcpy(k->p->data + at - sizeof len, &len, sizeof len);
  while (lua_getupvalue(L, idx, nups + 1) != NULL) {
    lua_pop(L, 1);
    nups++;
  }
  put_size(L, k->p, (size_t)nups);
  for (int i = 1; i <= nups; i++) {
    Where uw = {w, W_UPVALUE, lua_getupvalue(L, idx, i), 0};
    if (uw.name == NULL || uw.name[0] == '\0') uw.name = "?";
    if (!pack_shared_upvalue(k, idx, fid, i)) pack_value(k, lua_gettop(L), &uw);
    lua_pop(L, 1);
  }
}

/* A userdata with an nl_Transfer gets a slot; its export (which may detach
 * a socket from the sender) waits until the whole walk succeeded, so a bad
 * value elsewhere leaves the sender's objects untouched. */
static void pack_userdata(Packer *k, int idx, const Where *w) {
  lua_State *L = k->L;
  nl_Packet *p = k->p;
  int field = luaL_getmetafield(L, idx, NL_TRANSFER_FIELD);
  if (field != LUA_TLIGHTUSERDATA) {
    if (field != LUA_TNIL) lua_pop(L, 1);
    cannot_pass(L, idx, w, k->top_is_func);
  }
  if (pack_seen(k, idx)) {
    lua_pop(L, 1);
    return;
  }
  if (p->nslots == p->capslots) {
    int cap = p->capslots ? p->capslots * 2 : 4;
    Slot *slots = (Slot *)realloc(p->slots, sizeof *slots * (size_t)cap);
    if (slots == NULL) luaL_error(L, "not enough memory");
    p->slots = slots;
    p->capslots = cap;
  }
  p->slots[p->nslots].transfer = (const nl_Transfer *)lua_touserdata(L, -1);
  p->slots[p->nslots].payload = NULL;
  lua_pop(L, 1);
  lua_pushvalue(L, idx);
  lua_rawseti(L, k->pending, 2 * p->nslots + 1);
  push_what(L, idx, w, k->top_is_func);
  lua_rawseti(L, k->pending, 2 * p->nslots + 2);
  put_tag(L, p, T_UDATA);
  put_size(L, p, (size_t)p->nslots++);
}

/* Second phase: export every userdata the walk found. */
static void export_pending(Packer *k) {
  lua_State *L = k->L;
  nl_Packet *p = k->p;
  for (int i = 0; i < p->nslots; i++) {
    lua_rawgeti(L, k->pending, 2 * i + 1);
    p->slots[i].payload = p->slots[i].transfer->export_(L, lua_gettop(L));
    if (p->slots[i].payload == NULL) {
      const char *why = lua_tostring(L, -1);
      lua_rawgeti(L, k->pending, 2 * i + 2);
      luaL_error(L, "%s cannot be passed to a thread: %s", lua_tostring(L, -1),
                 why ? why : "refused");
    }
    lua_pop(L, 1);
  }
}

static void pack_value(Packer *k, int idx, const Where *w) {
  lua_State *L = k->L;
  idx = lua_absindex(L, idx);
  if (k->depth >= MAX_DEPTH) too_deep(L, w, k->top_is_func);
  luaL_checkstack(L, 8, "value too deeply nested to pass to a thread");
  k->depth++;
  switch (lua_type(L, idx)) {
  case LUA_TNIL: put_tag(L, k->p, T_NIL); break;
  case LUA_TBOOLEAN:
    put_tag(L, k->p, lua_toboolean(L, idx) ? T_TRUE : T_FALSE);
    break;
  case LUA_TNUMBER:
    if (lua_isinteger(L, idx)) {
      lua_Integer i = lua_tointeger(L, idx);
      put_tag(L, k->p, T_INT);
      put(L, k->p, &i, sizeof i);
    } else {
      lua_Number n = lua_tonumber(L, idx);
      put_tag(L, k->p, T_FLT);
      put(L, k->p, &n, sizeof n);
    }
    break;
  case LUA_TSTRING: {
    size_t len;
    const char *s = lua_tolstring(L, idx, &len);
    put_tag(L, k->p, T_STR);
    put_lstring(L, k->p, s, len);
    break;
  }
  case LUA_TTABLE: pack_table(k, idx, w); break;
  case LUA_TFUNCTION: pack_function(k, idx, w); break;
  case LUA_TUSERDATA: pack_userdata(k, idx, w); break;
  default: cannot_pass(L, idx, w, k->top_is_func);
  }
  k->depth--;
}

nl_Packet *nl_pack(lua_State *L, int first, int n) {
  Packer k;
  Box *box;
  nl_Packet *p;
  first = lua_absindex(L, first);
  luaL_checkstack(L, 10, "too many values to pass to a thread");
  p = (nl_Packet *)calloc(1, sizeof *p);
  if (p == NULL) luaL_error(L, "not enough memory");
  box = push_box(L, p);
  lua_newtable(L);
  k.L = L;
  k.p = p;
  k.seen = lua_gettop(L);
  lua_pushnil(L); /* slots for the maps */
  lua_pushnil(L);
  k.modules = k.seen + 1;
  k.fields = k.seen + 2;
  k.built = 0;
  lua_newtable(L);
  k.pending = k.seen + 3;
  k.nextid = 0;
  k.depth = 0;
  k.top_is_func = n > 0 && lua_type(L, first) == LUA_TFUNCTION;
  for (int i = 0; i < n; i++) {
    Where w = {NULL, W_ARG, NULL, i + 1};
    pack_value(&k, first + i, &w);
  }
  export_pending(&k);
  p->nvalues = n;
  box->p = NULL;
  lua_settop(L, k.seen - 2); /* the box and the maps */
  return p;
}

/* ---- unpacking ------------------------------------------------------------ */

typedef struct Unpacker {
  lua_State *L;
  nl_Packet *p;
  int byid; /* stack index: id -> table/function */
  lua_Integer nextid;
} Unpacker;

static void get(Unpacker *u, void *out, size_t n) {
  nl_Packet *p = u->p;
  if (p->len - p->pos < n) luaL_error(u->L, "corrupt packet");
  memcpy(out, p->data + p->pos, n);
  p->pos += n;
}

static int get_tag(Unpacker *u) {
  unsigned char c;
  get(u, &c, 1);
  return c;
}

static size_t get_size(Unpacker *u) {
  size_t n;
  get(u, &n, sizeof n);
  return n;
}

/* Returns a pointer into the packet (valid until it is freed). */
static const char *get_lstring(Unpacker *u, size_t *len) {
  nl_Packet *p = u->p;
  const char *s;
  *len = get_size(u);
  if (p->len - p->pos < *len) luaL_error(u->L, "corrupt packet");
  s = p->data + p->pos;
  p->pos += *len;
  return s;
}

static void unpack_tagged(Unpacker *u, int tag);

static void unpack_value(Unpacker *u) {
  unpack_tagged(u, get_tag(u));
}

/* package.loaded[name], or require(name). [-0, +1, e] */
static void push_module(lua_State *L, const char *name, size_t len) {
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  lua_pushlstring(L, name, len);
  if (lua_rawget(L, -2) != LUA_TNIL) {
    lua_remove(L, -2);
    return;
  }
  lua_pop(L, 2);
  lua_getglobal(L, "require");
  lua_pushlstring(L, name, len);
  lua_call(L, 1, 1);
}

static void remember(Unpacker *u) {
  lua_pushvalue(u->L, -1);
  lua_rawseti(u->L, u->byid, u->nextid++);
}

static void unpack_table(Unpacker *u) {
  lua_State *L = u->L;
  int tag;
  lua_newtable(L);
  remember(u);
  while ((tag = get_tag(u)) != T_END) {
    if (tag == T_META) {
      unpack_value(u);
      lua_setmetatable(L, -2);
      continue;
    }
    unpack_tagged(u, tag);
    unpack_value(u);
    lua_rawset(L, -3);
  }
}

static void unpack_function(Unpacker *u) {
  lua_State *L = u->L;
  size_t len, nups;
  const char *code = get_lstring(u, &len);
  if (luaL_loadbufferx(L, code, len, "=(thread)", "b") != LUA_OK) lua_error(L);
  remember(u);
  nups = get_size(u);
  for (size_t i = 1; i <= nups; i++) {
    int tag = get_tag(u);
    if (tag == T_UPJOIN) {
      size_t where = get_size(u);
      lua_rawgeti(L, u->byid, (lua_Integer)(where / 256));
      if (!lua_isfunction(L, -1)) luaL_error(L, "corrupt packet");
      lua_upvaluejoin(L, -2, (int)i, -1, (int)(where % 256));
      lua_pop(L, 1);
      continue;
    }
    unpack_tagged(u, tag);
    if (lua_setupvalue(L, -2, (int)i) == NULL) lua_pop(L, 1);
  }
}

static void unpack_userdata(Unpacker *u) {
  lua_State *L = u->L;
  size_t i = get_size(u);
  Slot *s;
  if (i >= (size_t)u->p->nslots) luaL_error(L, "corrupt packet");
  s = &u->p->slots[i];
  push_module(L, s->transfer->module, strlen(s->transfer->module));
  lua_pop(L, 1);
  luaL_checkstack(L, 4, NULL);
  s->transfer->import_(L, s->payload);
  s->payload = NULL;
  remember(u);
}

static void unpack_tagged(Unpacker *u, int tag) {
  lua_State *L = u->L;
  size_t len;
  luaL_checkstack(L, 8, "value too deeply nested");
  switch (tag) {
  case T_NIL: lua_pushnil(L); break;
  case T_FALSE: lua_pushboolean(L, 0); break;
  case T_TRUE: lua_pushboolean(L, 1); break;
  case T_INT: {
    lua_Integer i;
    get(u, &i, sizeof i);
    lua_pushinteger(L, i);
    break;
  }
  case T_FLT: {
    lua_Number n;
    get(u, &n, sizeof n);
    lua_pushnumber(L, n);
    break;
  }
  case T_STR: {
    const char *s = get_lstring(u, &len);
    lua_pushlstring(L, s, len);
    break;
  }
  case T_TABLE: unpack_table(u); break;
  case T_REF: lua_rawgeti(L, u->byid, (lua_Integer)get_size(u)); break;
  case T_FUNC: unpack_function(u); break;
  case T_CFUNC: {
    const char *mod = get_lstring(u, &len);
    size_t flen;
    const char *field;
    push_module(L, mod, len);
    field = get_lstring(u, &flen);
    lua_pushlstring(L, field, flen);
    lua_gettable(L, -2);
    lua_remove(L, -2);
    break;
  }
  case T_MODULE: {
    const char *mod = get_lstring(u, &len);
    push_module(L, mod, len);
    break;
  }
  case T_UDATA: unpack_userdata(u); break;
  default: luaL_error(L, "corrupt packet");
  }
}

int nl_unpack(lua_State *L, nl_Packet *p) {
  Unpacker u;
  Box *box;
  int n = p->nvalues, base;
  if (!lua_checkstack(L, n + 10)) {
    nl_packet_free(p);
    luaL_error(L, "too many values to unpack");
  }
  box = push_box(L, p); /* frees p even when an error interrupts us */
  lua_newtable(L);
  base = lua_gettop(L);
  u.L = L;
  u.p = p;
  u.byid = base;
  u.nextid = 0;
  p->pos = 0;
  for (int i = 0; i < n; i++) unpack_value(&u);
  /* box, byid, values... -> values... */
  lua_rotate(L, base - 1, n);
  box->p = NULL; /* free now: the collector does not see this memory */
  nl_packet_free(p);
  lua_settop(L, base - 2 + n);
  return n;
}
