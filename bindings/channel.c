/*
 * channel.c: thread.channel, a queue of values shared between threads and
 * tasks (layer: bindings, part of the `thread` module).
 *
 * A channel is one nl_Shared structure; each state holds a box of it. Values
 * cross by copy (nl_pack/nl_unpack) and sit in C memory while queued. Calls
 * that cannot go on wait on one of two runtime wait queues: receivers while
 * nothing is queued, senders while a bounded channel is full. Waiters are
 * served in order and a wake-up hands over: a send gives its value straight
 * to the first waiting receiver, a recv that makes room reserves it for the
 * first waiting sender. So what was handed to a waiter is its own before it
 * runs, and a waiter that goes away (its task cancelled, Ctrl-C) passes it on
 * (pass_on_value, pass_on_room). With waiters queued the channel is empty
 * (receivers) or full (senders): a new call queues behind them. A send
 * given room before a close still delivers (end_if_drained).
 */
#include <errno.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <stdlib.h>

#include "thread.h"
#include "trace.h"

typedef struct Item {
  struct Item *next;
  nl_Packet *packet;
} Item;

typedef struct Channel {
  nl_Shared sh;        /* first: references, lock */
  nl_WaitQueue recvq;  /* receivers, while nothing is queued */
  nl_WaitQueue sendq;  /* senders, while there is no room */
  Item *head, *tail;
  size_t count, capacity; /* capacity 0: unbounded */
  size_t reserved;        /* room given to sends still packing */
  size_t bytes, peak;     /* memory the queued values hold; most since last empty */
  int closed;
  long id;                /* --trace: its number (1, 2, ...), 0 when off */
} Channel;

/* Outcomes of a wait (what a waker hands over). */
enum { GOT_VALUE = 1, GOT_ROOM = 1, GOT_CLOSED, GOT_VALUE_TRIM };

/* A channel that empties (or goes away) after holding this much gives the
 * memory back to the system (give_back_memory). */
#define TRIM_BYTES ((size_t)8 << 20)

/* Freed values stay in malloc's free lists, resident, however many there
 * were; malloc_trim returns their pages to the system. It walks every
 * arena, so it runs only after a channel held TRIM_BYTES. Without glibc,
 * nothing to do. */
static void give_back_memory(void) {
#ifdef __GLIBC__
  malloc_trim(0);
#endif
}

static size_t item_size(const Item *it) {
  return sizeof *it + nl_packet_size(it->packet);
}

/* The last reference went: the values still queued go with it. */
static void channel_destroy(nl_Shared *sh) {
  Channel *ch = (Channel *)sh;
  int trim = ch->bytes >= TRIM_BYTES;
  while (ch->head != NULL) {
    Item *it = ch->head;
    ch->head = it->next;
    nl_packet_free(it->packet);
    free(it);
  }
  free(ch);
  if (trim) give_back_memory();
}

static Channel *check_channel(lua_State *L, int idx) {
  return (Channel *)nl_checkshared(L, idx, NL_CHANNEL_MT);
}

/* ---- the queue of values (the channel locked) ------------------------------ */

static void account(Channel *ch, Item *it) {
  ch->count++;
  ch->bytes += item_size(it);
  if (ch->bytes > ch->peak) ch->peak = ch->bytes;
}

static void enqueue(Channel *ch, Item *it) {
  it->next = NULL;
  if (ch->tail != NULL) ch->tail->next = it;
  else ch->head = it;
  ch->tail = it;
  account(ch, it);
}

/* A value handed to a receiver that went away: it was sent before every
 * value queued, so it goes first (the channel may hold one more than its
 * capacity until it is taken). */
static void push_front(Channel *ch, Item *it) {
  it->next = ch->head;
  ch->head = it;
  if (ch->tail == NULL) ch->tail = it;
  account(ch, it);
}

static int has_room(const Channel *ch) {
  return ch->capacity == 0 || ch->count + ch->reserved < ch->capacity;
}

/* Room that appeared goes to the senders that wait for it, in order. */
static void grant_room(Channel *ch) {
  while (ch->sendq.head != NULL && has_room(ch)) {
    ch->reserved++;
    nl_queue_wakeone(&ch->sendq, GOT_ROOM, NULL);
  }
}

/* Takes the first value (there is one). GOT_VALUE_TRIM when that emptied a
 * channel that held TRIM_BYTES: the receiver gives the memory back once the
 * value is freed. */
static int dequeue(Channel *ch, Item **out) {
  Item *it = ch->head;
  int status = GOT_VALUE;
  ch->head = it->next;
  if (ch->head == NULL) ch->tail = NULL;
  ch->count--;
  ch->bytes -= item_size(it);
  if (ch->count == 0) {
    if (ch->peak >= TRIM_BYTES) status = GOT_VALUE_TRIM;
    ch->peak = ch->bytes = 0;
  }
  *out = it;
  grant_room(ch);
  return status;
}

/* A closed channel ends for its receivers once it is drained and no send
 * that began before the close (given room, packing) is still under way:
 * until then a recv waits for that value rather than report "closed". */
static void end_if_drained(Channel *ch) {
  if (ch->closed && ch->count == 0 && ch->reserved == 0)
    nl_queue_wakeall(&ch->recvq, GOT_CLOSED);
}

/* pass_on of the receivers' queue: the value goes to the next receiver, or
 * back to the front of the channel. */
static void pass_on_value(nl_WaitQueue *q, nl_QueueWait *w) {
  Channel *ch = (Channel *)q->owner;
  Item *it = (Item *)w->value;
  w->value = NULL;
  if (w->status != GOT_VALUE || it == NULL) return;
  if (!nl_queue_wakeone(&ch->recvq, GOT_VALUE, it)) push_front(ch, it);
}

/* pass_on of the senders' queue: the room goes to the next sender. */
static void pass_on_room(nl_WaitQueue *q, nl_QueueWait *w) {
  Channel *ch = (Channel *)q->owner;
  if (w->status != GOT_ROOM) return;
  ch->reserved--;
  grant_room(ch);
  end_if_drained(ch);
}

/* ---- the SIGQUIT listing ------------------------------------------------------ */

static int waiting(const nl_WaitQueue *q) {
  int n = 0;
  for (const nl_QueueWait *w = q->head; w != NULL; w = w->next) n++;
  return n;
}

/* With the channel locked: "thread.channel: 0x...: 3 queued (capacity 8),
 * 0 receivers waiting, 1 sender waiting", as tostring names it. */
static void channel_describe(nl_Shared *sh, char *out, size_t size) {
  Channel *ch = (Channel *)sh;
  int r = waiting(&ch->recvq), s = waiting(&ch->sendq);
  char cap[40] = "";
  if (ch->capacity > 0) snprintf(cap, sizeof cap, " (capacity %zu)", ch->capacity);
  snprintf(out, size, "%s: %p: %zu queued%s, %d receiver%s waiting, %d sender%s waiting%s",
           NL_CHANNEL_MT, (void *)sh, ch->count, cap, r, r == 1 ? "" : "s", s,
           s == 1 ? "" : "s", ch->closed ? ", closed" : "");
}

/* ---- thread.channel and its methods ---------------------------------------- */

int thread_channel(lua_State *L) {
  lua_Integer cap = luaL_optinteger(L, 1, 0);
  nl_Shared **box;
  Channel *ch;
  luaL_argcheck(L, lua_isnoneornil(L, 1) || cap > 0, 1, "capacity must be positive");
  box = nl_pushshared(L, NL_CHANNEL_MT, NULL);
  ch = (Channel *)calloc(1, sizeof *ch);
  if (ch == NULL) return luaL_error(L, "not enough memory");
  nl_shared_init(&ch->sh, NL_CHANNEL_MT, channel_destroy);
  nl_queue_init(&ch->recvq, &ch->sh, pass_on_value);
  nl_queue_init(&ch->sendq, &ch->sh, pass_on_room);
  ch->capacity = (size_t)cap;
  nl_shared_list(&ch->sh, channel_describe);
  if (nl_trace_on) ch->id = nl_trace_next_channel();
  *box = &ch->sh;
  return 1;
}

/* A send may go on: the channel is closed, or it has room (reserved now). */
static int can_send(nl_WaitQueue *q, void **value) {
  Channel *ch = (Channel *)q->owner;
  (void)value;
  if (ch->closed) return GOT_CLOSED;
  if (!has_room(ch)) return 0;
  ch->reserved++;
  return GOT_ROOM;
}

/* A recv may go on: a value is queued (taken now), or the channel is closed. */
static int can_recv(nl_WaitQueue *q, void **value) {
  Channel *ch = (Channel *)q->owner;
  if (ch->count > 0) return dequeue(ch, (Item **)value);
  return ch->closed && ch->reserved == 0 ? GOT_CLOSED : 0;
}

/* nl_pack under lua_pcall, so that send can give back its room. */
static int pack_one(lua_State *L) {
  lua_pushlightuserdata(L, nl_pack(L, 1, 1));
  return 1;
}

/* A send or receive that ends with `why` ("timeout", "closed"): its
 * failure, traced. */
static int send_failed(lua_State *L, Channel *ch, const char *why) {
  if (nl_trace_on) nl_trace_channel(1, ch->id, 0, NULL, why);
  return nl_pushfail(L, why, NULL);
}

static int recv_failed(lua_State *L, Channel *ch, const char *why) {
  if (nl_trace_on) nl_trace_channel(0, ch->id, 0, NULL, why);
  return nl_pushfail(L, why, NULL);
}

/* --trace: a value received (on top, the first of n), and the depth left. */
static void trace_recv(lua_State *L, Channel *ch, int n) {
  long depth;
  nl_shared_lock(&ch->sh);
  depth = (long)ch->count;
  nl_shared_unlock(&ch->sh);
  nl_trace_channel(0, ch->id, depth, luaL_typename(L, -n), NULL);
}

/* ch:send(v[, timeout]) -> true | nil, "timeout"|"closed"
 * Room is reserved before v is packed: packing moves sockets out of this
 * state, so a send that times out or finds the channel closed fails before
 * that, leaving the socket with the sender. A waiting send keeps its record
 * in slot 4. */
static int chan_send(lua_State *L) {
  Channel *ch = check_channel(L, 1);
  double deadline = nl_deadline(luaL_optnumber(L, 3, -1));
  const char *type = luaL_typename(L, 2);
  int status;
  nl_Packet *p;
  Item *it;
  luaL_argcheck(L, !lua_isnoneornil(L, 2), 2, "cannot send nil");
  status = nl_queue_until(L, 4, &ch->sendq, deadline, can_send, NULL);
  if (status != GOT_ROOM) return send_failed(L, ch, status == 0 ? "timeout" : "closed");
  lua_pushcfunction(L, pack_one);
  lua_pushvalue(L, 2);
  status = lua_pcall(L, 1, 1, 0);
  p = status == LUA_OK ? (nl_Packet *)lua_touserdata(L, -1) : NULL;
  it = p != NULL ? (Item *)malloc(sizeof *it) : NULL;
  if (it != NULL) it->packet = p;
  nl_shared_lock(&ch->sh);
  ch->reserved--;
  /* even if closed meanwhile: it was sent before */
  if (it != NULL && !nl_queue_wakeone(&ch->recvq, GOT_VALUE, it)) enqueue(ch, it);
  grant_room(ch); /* ours, when the value went straight to a receiver or nowhere */
  end_if_drained(ch);
  /* listed before the receiver can list its recv, which takes the lock */
  if (nl_trace_on && it != NULL) nl_trace_channel(1, ch->id, (long)ch->count, type, NULL);
  nl_shared_unlock(&ch->sh);
  if (status != LUA_OK) return lua_error(L);
  if (it == NULL) {
    nl_packet_free(p);
    return luaL_error(L, "not enough memory");
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* ch:recv([timeout]) -> value | nil, "timeout"|"closed". A waiting recv
 * keeps its record in slot 3. */
static int chan_recv(lua_State *L) {
  Channel *ch = check_channel(L, 1);
  double deadline = nl_deadline(luaL_optnumber(L, 2, -1));
  void *value = NULL;
  int status = nl_queue_until(L, 3, &ch->recvq, deadline, can_recv, &value), n;
  Item *it = (Item *)value;
  nl_Packet *p;
  if (status != GOT_VALUE && status != GOT_VALUE_TRIM)
    return recv_failed(L, ch, status == 0 ? "timeout" : "closed");
  p = it->packet;
  free(it);
  n = nl_unpack(L, p); /* frees p */
  if (nl_trace_on && n > 0) trace_recv(L, ch, n);
  if (status == GOT_VALUE_TRIM) give_back_memory();
  return n;
}

static int chan_close(lua_State *L) {
  Channel *ch = check_channel(L, 1);
  nl_shared_lock(&ch->sh);
  ch->closed = 1;
  nl_queue_wakeall(&ch->sendq, GOT_CLOSED);
  end_if_drained(ch);
  nl_shared_unlock(&ch->sh);
  return 0;
}

static int chan_len(lua_State *L) {
  Channel *ch = check_channel(L, 1);
  size_t n;
  nl_shared_lock(&ch->sh);
  n = ch->count;
  nl_shared_unlock(&ch->sh);
  lua_pushinteger(L, (lua_Integer)n);
  return 1;
}

static int chan_closed(lua_State *L) {
  Channel *ch = check_channel(L, 1);
  int closed;
  nl_shared_lock(&ch->sh);
  closed = ch->closed;
  nl_shared_unlock(&ch->sh);
  lua_pushboolean(L, closed);
  return 1;
}

/* for v in ch:iter() do: recv until closed and drained. A replay keeps the
 * stack recv left (the channel, its timeout slot, its record). */
static int chan_next(lua_State *L) {
  int n;
  if (!nl_restarting(L)) {
    lua_settop(L, 0);
    lua_pushvalue(L, lua_upvalueindex(1));
  }
  n = chan_recv(L);
  if (lua_isnil(L, -n)) return 0;
  return n;
}

static int chan_iter(lua_State *L) {
  check_channel(L, 1);
  lua_settop(L, 1);
  lua_pushcclosure(L, chan_next, 1);
  return 1;
}

static const luaL_Reg chan_methods[] = {
  {"send", chan_send},
  {"recv", chan_recv},
  {"close", chan_close},
  {"closed", chan_closed},
  {"iter", chan_iter},
  {NULL, NULL}
};

static const luaL_Reg chan_meta[] = {
  {"__gc", nl_shared_gc},
  {"__close", chan_close},
  {"__len", chan_len},
  {"__eq", nl_shared_eq},
  {"__tostring", nl_shared_tostring},
  {NULL, NULL}
};

void thread_open_channel(lua_State *L) {
  nl_newclass_transfer(L, NL_CHANNEL_MT, chan_methods, chan_meta, &thread_shared_transfer);
}
