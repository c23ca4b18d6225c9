/*
 * gather.c: the data of a receive call that may wait (layer: runtime;
 * used by the socket and ssl bindings).
 *
 * A receive call collects its prefix, then what it reads. A call that needs
 * no wait keeps it on the C stack. Before it waits, the data moves into a
 * userdata at a stack slot of the call, where the replay after the wait
 * finds it again; later rounds append there, and the storage grows by
 * doubling, so a line that arrives in many pieces costs time linear in its
 * length.
 */
#include <string.h>

#include "netlua.h"

/* Moves the data into a new userdata at the call's slot with room for cap
 * bytes. */
static void gather_move(nl_Gather *g, size_t cap) {
  char *p = lua_newuserdatauv(g->L, cap, 0);
  memcpy(p, g->data, g->len);
  lua_replace(g->L, g->slot);
  g->data = p;
  g->cap = cap;
  g->held = 1;
}

void nl_gather_add(nl_Gather *g, const char *p, size_t n) {
  if (g->cap - g->len < n) gather_move(g, g->len + n > 2 * g->cap ? g->len + n : 2 * g->cap);
  memcpy(g->data + g->len, p, n);
  g->len += n;
}

void nl_gather_begin(nl_Gather *g, lua_State *L, int slot, size_t kept,
                     const char *prefix, size_t plen) {
  g->L = L;
  g->slot = slot;
  g->got = 0;
  if (kept > 0) {
    g->data = lua_touserdata(L, slot);
    g->cap = lua_rawlen(L, slot);
    g->len = kept;
    g->held = 1;
    return;
  }
  g->data = g->local;
  g->cap = sizeof g->local;
  g->len = 0;
  g->held = 0;
  nl_gather_add(g, prefix, plen);
}

void nl_gather_keep(nl_Gather *g) {
  if (g->len > 0 && !g->held) gather_move(g, g->cap);
}
