/*
 * socket_call.c: a call of the socket module that waits (layer:
 * bindings): its timeouts (luasocket's timeout.c), its record, and its
 * turn on a side of its socket. Every wait of the module goes through
 * call_waitfor or call_turn, which call the runtime's nl_waitk or
 * nl_waitqueue (where Ctrl-C and the task scheduler plug in).
 *
 * Tasks sharing a socket: the calls on one side of a socket take turns,
 * first come first served. A call that can finish without waiting just
 * runs (when nobody holds or waits for that side): it costs two tests and
 * allocates nothing. A call that has to wait makes its record and holds
 * the side across its waits; a call that finds the side held queues its
 * record behind it and waits on its own wait queue, so the holder hands
 * the side to exactly the next one in line (a wake-all queue would wake
 * them all and let the last one in go first). Receiving and sending are
 * separate sides: one task may wait in receive while another sends.
 */
#include <errno.h>
#include <string.h>

#include "socket_int.h"
#include "tasksched.h"

enum { REC_FREE, REC_QUEUED, REC_HOLDS };

/* ---- the side's queue ------------------------------------------------------- */

static void queue_remove(Side *sd, CallRec *rec) {
  if (rec->prev) rec->prev->next = rec->next;
  else sd->head = rec->next;
  if (rec->next) rec->next->prev = rec->prev;
  else sd->tail = rec->prev;
  rec->prev = rec->next = NULL;
}

static void queue_append(Side *sd, CallRec *rec) {
  rec->prev = sd->tail;
  rec->next = NULL;
  if (sd->tail) sd->tail->next = rec;
  else sd->head = rec;
  sd->tail = rec;
}

/* The record lets go of its side: a holder hands it to the first call in
 * line and wakes that one. Idempotent. */
static void rec_release(CallRec *rec) {
  Side *sd;
  CallRec *next;
  if (rec->s == NULL) return;
  sd = &rec->s->sides[rec->side];
  if (rec->state == REC_QUEUED) {
    queue_remove(sd, rec);
  } else if (rec->state == REC_HOLDS && sd->holder == rec) {
    sd->holder = next = sd->head;
    if (next != NULL) {
      queue_remove(sd, next);
      next->state = REC_HOLDS;
      nl_queue_wakeall(&next->q, 1);
    }
  }
  rec->state = REC_FREE;
  rec->s = NULL;
}

/* __close of the record's slot (the call ended however it ended), and
 * __gc (a coroutine that died in the call and was never closed). */
static int rec_close(lua_State *L) {
  CallRec *rec = lua_touserdata(L, 1);
  rec_release(rec);
  inet_lookupsfree(rec->lookups);
  rec->lookups = NULL;
  return 0;
}

void call_open(lua_State *L) {
  luaL_newmetatable(L, NL_CALL_MT);
  lua_pushcfunction(L, rec_close);
  lua_setfield(L, -2, "__close");
  lua_pushcfunction(L, rec_close);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);
}

/* The record's socket was closed or moved: its call ends with "closed". */
static void rec_detach(CallRec *rec) {
  rec->closed = 1;
  rec->state = REC_FREE;
  rec->s = NULL;
}

/* The socket is closed or moves to another thread: every call on it ends
 * with "closed". Queued ones are woken here; a holder waits on the socket
 * (nl_loop_forget wakes it, the caller's next step) or on a lookup. */
void call_detach(nl_Socket *s) {
  for (int i = 0; i < NSIDES; i++) {
    Side *sd = &s->sides[i];
    CallRec *rec = sd->holder;
    sd->holder = NULL;
    if (rec != NULL) {
      rec_detach(rec);
      inet_lookupswake(rec->lookups);
    }
    while ((rec = sd->head) != NULL) {
      queue_remove(sd, rec);
      rec_detach(rec);
      nl_queue_wakeall(&rec->q, 1);
    }
  }
}

/* ---- the call ------------------------------------------------------------------ */

/* A call on the socket at stack index `sidx` (0: on no socket). A fresh
 * call keeps its `nargs` arguments and its record's slot is empty; a
 * replay finds its record there. The 't' timeout starts now (a clock read
 * only when it is set). */
void call_begin(Call *c, lua_State *L, int sidx, int side, int nargs, int slot) {
  nl_Socket *s = sidx > 0 ? lua_touserdata(L, sidx) : NULL;
  CallRec *rec = nl_callrec_get(L, slot);
  if (rec != NULL && lua_rawlen(L, slot) != sizeof *rec) rec = NULL;
  c->L = L;
  c->s = s;
  c->sidx = sidx;
  c->side = side;
  c->slot = slot;
  c->rec = rec;
  c->gai = 0;
  if (rec != NULL) {
    c->p = rec->p;
    return;
  }
  lua_settop(L, nargs);
  lua_settop(L, slot);
  memset(&c->p, 0, sizeof c->p);
  c->p.block = s != NULL ? s->block : -1;
  c->p.total = s != NULL ? s->total : -1;
  c->p.start = c->p.total >= 0 ? nl_monotonic() : -1;
  c->p.deadline = NL_NODEADLINE;
}

/* The deadline of the call's next wait: 'b' per wait, 't' for the whole
 * call, as the socket's timeouts were when the call began. */
double call_deadline(Call *c) {
  double d = NL_NODEADLINE;
  if (c->s == NULL) return c->p.deadline;
  if (c->p.block >= 0) d = nl_monotonic() + c->p.block;
  if (c->p.total >= 0) {
    double t = c->p.start + c->p.total;
    if (d < 0 || t < d) d = t;
  }
  return d;
}

/* Makes the call's record in its slot, to-be-closed: the one its socket
 * keeps from its last call when there is one (a socket's calls wait one
 * after another, so waiting allocates nothing in the steady state), else a
 * new one. [-0, +0, m] */
static CallRec *rec_make(Call *c) {
  lua_State *L = c->L;
  CallRec *rec;
  if (c->sidx > 0 && lua_getiuservalue(L, c->sidx, SPARE_UV) == LUA_TUSERDATA) {
    rec = lua_touserdata(L, -1);
    memset(rec, 0, sizeof *rec);
    lua_replace(L, c->slot);
    lua_pushnil(L);
    lua_setiuservalue(L, c->sidx, SPARE_UV);
  } else {
    if (c->sidx > 0) lua_pop(L, 1);
    rec = nl_callrec_new(L, c->slot, sizeof *rec);
    luaL_getmetatable(L, NL_CALL_MT);
    lua_setmetatable(L, c->slot);
  }
  lua_toclose(L, c->slot);
  rec->side = c->side;
  c->rec = rec;
  return rec;
}

/* Every method that began a call on a socket returns through here with its
 * n results on top: the side it holds goes to the next call in line, its
 * lookups are freed, and its record goes back to its socket for the next
 * call. (Its slot's __close does the same for a call that raises or is
 * cancelled, without keeping the record, and for a call on no socket.) */
int call_return(Call *c, int n) {
  CallRec *rec = c->rec;
  if (rec == NULL) return n;
  rec_release(rec);
  inet_lookupsfree(rec->lookups);
  rec->lookups = NULL;
  if (c->sidx > 0) {
    lua_pushvalue(c->L, c->slot);
    lua_setiuservalue(c->L, c->sidx, SPARE_UV);
  }
  return n;
}

/* Before a wait: the call's record, made if it has none, holds the
 * call's progress and, on a socket side, the side (call_turn gave the call
 * its turn). [-0, +0, m] */
CallRec *call_keep(Call *c) {
  CallRec *rec = c->rec != NULL ? c->rec : rec_make(c);
  if (c->side != SIDE_NONE && rec->state == REC_FREE && !rec->closed) {
    rec->s = c->s;
    rec->state = REC_HOLDS;
    c->s->sides[c->side].holder = rec;
  }
  rec->p = c->p;
  return rec;
}

/* Waits until it is the call's turn on its side: IO_DONE, IO_TIMEOUT or
 * IO_CLOSED. The first call in line just goes on. A call that cannot wait
 * for its turn (settimeout(0)) times out; one that would block the very
 * call it waits for (a coroutine of the user's own inside a task, below
 * which the holder sleeps) raises instead of hanging. */
int call_turn(Call *c) {
  Side *sd = &c->s->sides[c->side];
  CallRec *rec = c->rec;
  if (rec == NULL) {
    if (sd->holder == NULL && sd->head == NULL) return IO_DONE;
    if (c->p.block == 0) return IO_TIMEOUT;
    if (!nl_in_task(c->L) && nl_loop_active() == NULL)
      luaL_error(c->L, "socket in use by a call that cannot go on while this one "
                       "waits (a coroutine of your own inside a task?): call it "
                       "from the task itself");
    rec = rec_make(c);
    rec->s = c->s;
    rec->state = REC_QUEUED;
    queue_append(sd, rec);
  }
  while (rec->state == REC_QUEUED) {
    double deadline = call_deadline(c);
    int woken;
    rec->p = c->p;
    woken = nl_waitqueue(c->L, c->slot, &rec->q, deadline);
    if (!woken && rec->state == REC_QUEUED) {
      rec_release(rec);
      return IO_TIMEOUT;
    }
  }
  return rec->closed ? IO_CLOSED : IO_DONE;
}

/* Waits for `events` on `fd` (the socket, or a lookup's descriptor) until
 * `deadline`: IO_DONE when ready, IO_TIMEOUT, or IO_CLOSED when the socket
 * was closed or moved away meanwhile; Ctrl-C raises. Inside a task it
 * suspends only the task: the method then runs again from the start and
 * finds its record. */
int call_waitfor(Call *c, int fd, int events, double deadline) {
  nl_Socket *s = c->s;
  int r;
  call_keep(c);
  r = nl_waitk(c->L, c->slot, fd, events, deadline);
  if (c->rec->closed) return IO_CLOSED;
  if (r <= 0 && nl_trace_on) nl_trace_timeout(fd, events);
  if (r <= 0) return IO_TIMEOUT;
  if (s != NULL && fd == s->fd && (events & NL_READ)) s->drained = 0; /* read it */
  return IO_DONE;
}

/* call_waitfor with the call's own deadline. settimeout(0) answers
 * "timeout" at once, as luasocket does, without a poll that cannot wait. */
int call_wait(Call *c, int fd, int events) {
  if (c->s != NULL && c->p.block == 0) return IO_TIMEOUT;
  return call_waitfor(c, fd, events, call_deadline(c));
}
