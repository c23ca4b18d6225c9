/*
 * shared.c: objects shared between threads (layer: runtime). A channel, a
 * mutex or a thread's record is one reference-counted C structure that
 * starts with an nl_Shared (its count and its lock); each state that uses it
 * wraps it in a userdata of its own, a "box" holding one reference, and a box
 * crosses into another state by taking one more (the nl_Transfer hooks
 * below). The counting needs no Lua; the boxes are the Lua face.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "netlua.h"

/* The objects listed for SIGQUIT's listing (channels), process-wide. Lock
 * order: this list, then an object's own lock. */
static pthread_mutex_t listed_mu = PTHREAD_MUTEX_INITIALIZER;
static nl_Shared *listed;

void nl_shared_init(nl_Shared *s, const char *tname, void (*destroy)(nl_Shared *s)) {
  atomic_init(&s->refs, 1);
  pthread_mutex_init(&s->mu, NULL);
  s->tname = tname;
  s->destroy = destroy;
  s->describe = NULL;
  s->lprev = s->lnext = NULL;
}

void nl_shared_list(nl_Shared *s, void (*describe)(nl_Shared *s, char *out, size_t size)) {
  pthread_mutex_lock(&listed_mu);
  s->describe = describe;
  s->lnext = listed;
  if (listed != NULL) listed->lprev = s;
  listed = s;
  pthread_mutex_unlock(&listed_mu);
}

static void unlist(nl_Shared *s) {
  pthread_mutex_lock(&listed_mu);
  if (s->lprev != NULL) s->lprev->lnext = s->lnext;
  else listed = s->lnext;
  if (s->lnext != NULL) s->lnext->lprev = s->lprev;
  pthread_mutex_unlock(&listed_mu);
}

/* The lines are gathered in C under the locks (a Lua error must not leave
 * them held), then handed to Lua. */
char *nl_shared_describe_all(const char *prefix, int *count) {
  char line[512];
  char *text = NULL;
  size_t len = 0, cap = 0;
  *count = 0;
  pthread_mutex_lock(&listed_mu);
  for (nl_Shared *s = listed; s != NULL; s = s->lnext) {
    size_t n;
    pthread_mutex_lock(&s->mu);
    s->describe(s, line, sizeof line);
    pthread_mutex_unlock(&s->mu);
    n = strlen(prefix) + strlen(line) + 1;
    if (len + n + 1 > cap) {
      char *more = realloc(text, cap = 2 * (len + n + 1));
      if (more == NULL) break;
      text = more;
    }
    len += (size_t)sprintf(text + len, "%s%s\n", prefix, line);
    (*count)++;
  }
  pthread_mutex_unlock(&listed_mu);
  return text;
}

void nl_shared_retain(nl_Shared *s) {
  atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
}

/* The last reference frees the object: whoever drops it has seen every
 * other owner's writes (acq_rel), as the mutex would have shown them. */
void nl_shared_release(nl_Shared *s) {
  if (atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) != 1) return;
  if (s->describe != NULL) unlist(s);
  pthread_mutex_destroy(&s->mu);
  s->destroy(s);
}

void nl_shared_lock(nl_Shared *s) { pthread_mutex_lock(&s->mu); }
void nl_shared_unlock(nl_Shared *s) { pthread_mutex_unlock(&s->mu); }

/* ---- boxes: the userdata a state wraps around one ----------------------- */

typedef struct Box {
  nl_Shared *s; /* NULL once released (or before the object exists) */
} Box;

nl_Shared **nl_pushshared(lua_State *L, const char *tname, nl_Shared *s) {
  Box *b = (Box *)lua_newuserdatauv(L, sizeof *b, 0);
  b->s = NULL;
  luaL_setmetatable(L, tname);
  b->s = s;
  return &b->s;
}

nl_Shared *nl_checkshared(lua_State *L, int idx, const char *tname) {
  Box *b = (Box *)luaL_checkudata(L, idx, tname);
  if (b->s == NULL) {
    const char *dot = strrchr(tname, '.');
    luaL_error(L, "attempt to use a released %s", dot ? dot + 1 : tname);
  }
  return b->s;
}

/* The box at idx when it is one (its class transfers through the hooks
 * below), else NULL: __eq may be called with any other userdata. */
static Box *test_box(lua_State *L, int idx) {
  const nl_Transfer *t;
  if (lua_type(L, idx) != LUA_TUSERDATA) return NULL;
  if (luaL_getmetafield(L, idx, NL_TRANSFER_FIELD) == LUA_TNIL) return NULL;
  t = (const nl_Transfer *)lua_touserdata(L, -1);
  lua_pop(L, 1);
  if (t == NULL || t->export_ != nl_shared_export) return NULL;
  return (Box *)lua_touserdata(L, idx);
}

int nl_shared_gc(lua_State *L) {
  Box *b = test_box(L, 1);
  if (b != NULL && b->s != NULL) {
    nl_Shared *s = b->s;
    b->s = NULL;
    nl_shared_release(s);
  }
  return 0;
}

int nl_shared_tostring(lua_State *L) {
  Box *b = test_box(L, 1);
  luaL_argcheck(L, b != NULL, 1, "shared object expected");
  luaL_getmetafield(L, 1, "__name");
  lua_pushfstring(L, "%s: %p", lua_tostring(L, -1), (void *)b->s);
  return 1;
}

int nl_shared_eq(lua_State *L) {
  Box *a = test_box(L, 1), *b = test_box(L, 2);
  lua_pushboolean(L, a != NULL && b != NULL && a->s == b->s && a->s != NULL);
  return 1;
}

void *nl_shared_export(lua_State *L, int idx) {
  Box *b = test_box(L, idx);
  if (b == NULL || b->s == NULL) {
    lua_pushliteral(L, "it was released");
    return NULL;
  }
  nl_shared_retain(b->s);
  return b->s;
}

void nl_shared_import(lua_State *L, void *payload) {
  nl_Shared *s = (nl_Shared *)payload;
  nl_pushshared(L, s->tname, s);
}

void nl_shared_discard(void *payload) { nl_shared_release((nl_Shared *)payload); }
