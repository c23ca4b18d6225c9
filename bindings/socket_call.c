/*
 * socket_call.c: timeouts and the single waiting point of the socket
 * module (layer: bindings), after luasocket's timeout.c. Every wait of a
 * socket method goes through sock_wait, which calls the runtime's nl_waitk
 * (where Ctrl-C and the task scheduler plug in).
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "socket_int.h"

/* The start of a call; a call restarted after a wait in a task (see
 * sock_wait) keeps its start, so 't' timeouts span the whole call. */
void timeout_markstart(lua_State *L, nl_Socket *s) {
  if (nl_restarting(L)) return;
  s->start = s->total >= 0 ? nl_monotonic() : -1; /* no clock read per call */
}

/* The deadline of the next wait: 'b' per wait, 't' for the whole call. */
double timeout_deadline(nl_Socket *s) {
  double d = NL_NODEADLINE;
  if (s->block >= 0) d = nl_monotonic() + s->block;
  if (s->total >= 0) {
    double t;
    if (s->start < 0) s->start = nl_monotonic(); /* 't' set during the call */
    t = s->start + s->total;
    if (d < 0 || t < d) d = t;
  }
  return d;
}

/* Every wait of this module: 1 when ready, 0 on timeout; Ctrl-C raises.
 * Inside a task it suspends only the task, and the method then runs again
 * from the start with its stack values 1..s->nargs (each method that waits
 * sets nargs first and keeps its progress there: receive's data so far, send's
 * start index); the syscalls below are all safe to repeat. nargs < 0: the
 * method cannot be repeated, the wait blocks the thread's loop instead. */
int sock_wait(lua_State *L, nl_Socket *s, int events) {
  /* settimeout(0): answer "timeout" at once, as luasocket does, without a
   * poll that cannot wait (it cost one ppoll per would-block call). */
  if (s->block == 0) return 0;
  if (nl_waitk(L, s->nargs, s->fd, events, timeout_deadline(s)) <= 0) return 0;
  if (events & NL_READ) s->drained = 0; /* readable now: read it */
  return 1;
}
