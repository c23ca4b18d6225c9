/*
 * tasksched.h: the task scheduler's structures (layer: runtime), shared by
 * sched.c (waits, resuming, finishing) and bindings/task.c (the Lua API).
 */
#ifndef NETLUA_TASKSCHED_H
#define NETLUA_TASKSCHED_H

#include "netlua.h"

#define NL_TASK_MT "task"
#define NL_TASK_THREAD 1  /* user value: the coroutine, while it lives */
#define NL_TASK_RESULTS 2 /* user value: {ok, values..., n=} once done */

enum { NL_TASK_NEW, NL_TASK_READY, NL_TASK_RUNNING, NL_TASK_WAITING, NL_TASK_DONE };

typedef struct nl_Sched nl_Sched;

typedef struct nl_Task {
  nl_Waiter w;        /* what the task waits for while suspended */
  nl_Sched *sched;
  lua_State *co;      /* its coroutine (user value 1), NULL once done */
  int state;
  int nargs_first;    /* arguments for the first resume */
  int restart_pending; /* a suspended call is being replayed */
  int cancelled, joined, ok;
  int interrupted; /* ended by a Ctrl-C it did not catch */
  int quiet;       /* spawned quiet: an error it ends with is not printed */
  long id;         /* 1, 2, ... in the order its thread spawned them */
  struct nl_Task *next_ready;
  nl_WaitQueue joiners;
  nl_QueueWait qwait; /* its entry on a queue of nl_waitqueue */
  nl_Watch one, *watches; /* watches of its current wait */
  int capwatches;
  int nwatched;           /* how many that wait has (0: a timer alone) */
} nl_Task;

struct nl_Sched {
  nl_Loop *loop;
  lua_State *L;       /* the state's main thread */
  lua_State *H;       /* bookkeeping stack: table of live tasks at 1 */
  lua_State *running; /* the task coroutine being resumed, or NULL */
  nl_Inbox *inbox;    /* tasks woken by other threads (waitqueue.c) */
  nl_Task *head, *tail; /* ready queue */
  int live;           /* tasks not finished */
  long spawned;       /* tasks spawned so far: the last id given */
};

nl_Sched *nl_sched(lua_State *L);
nl_Task *nl_current_task(lua_State *L);
int nl_sched_run(void *ud);
void nl_sched_ready(nl_Task *t);
void nl_sched_unready(nl_Task *t);
void nl_task_init(nl_Sched *s, nl_Task *t);
void nl_task_start(lua_State *L, int idx, nl_Task *t, lua_State *co, int nargs);
void nl_task_resume(nl_Sched *s, nl_Task *t);
void nl_task_cancel(nl_Sched *s, nl_Task *t);
int nl_task_yield(lua_State *L, nl_Task *t);

/* The running task when the wait of a call passing `nargs` values can
 * suspend it; NULL when it blocks; raises where a task cannot wait. */
nl_Task *nl_task_suspendable(lua_State *L, int nargs);

/* waitqueue.c: the inbox through which other threads wake this scheduler's
 * tasks; nl_inbox_deliver runs in its own thread, from the runner. */
nl_Inbox *nl_inbox_new(nl_Loop *loop);
void nl_inbox_free(nl_Inbox *in);
void nl_inbox_deliver(nl_Inbox *in);

#endif
