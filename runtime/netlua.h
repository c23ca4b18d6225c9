/*
 * netlua.h: the runtime API that bindings share (layer: runtime).
 *
 * Bindings include this header and nothing from another binding. It offers
 * the state factory, the one waiting point (nl_wait), Ctrl-C handling, clocks,
 * the error helpers of the `nil, message, code` convention, and access to the
 * Lua halves of modules that are compiled into the binary.
 */
#ifndef NETLUA_H
#define NETLUA_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include "lua.h"
#include "lauxlib.h"

#define NL_VERSION "0.1.0"
#define NL_PROGNAME "netlua"

/* ---- states (state.c) --------------------------------------------------- */

/* A fully equipped state: standard libraries, every built-in module in
 * package.preload, and the module search path. Main and every thread use it.
 * Returns NULL when out of memory. */
lua_State *nl_newstate(void);

/* Registers the function at `idx` to run, under pcall and in order of
 * registration, after the main script ends and before the state closes (the
 * thread module waits for its threads there). [-0, +0, m] */
void nl_atexit(lua_State *L, int idx);

/* Runs what nl_atexit registered (main only). Returns 0, or 1 when one of
 * them failed, its error message is printed; 2 when one was interrupted by
 * Ctrl-C (the program then exits 128 + the signal, 130 for SIGINT). */
int nl_run_atexit(lua_State *L);

/* Process-wide set-up of the search path, once, before any state exists:
 * `script_dir` is the directory of the main script (NULL for -e/stdin/REPL). */
void nl_setscriptdir(const char *script_dir);

/* ---- libcurl, loaded on first use (curlload.c) --------------------------- */

/* Loads libcurl (dlopen) and runs curl_global_init, once per process, from
 * any thread; http.c calls it before the first transfer. Returns NULL
 * when libcurl is ready, else why it is not (dlerror's text). Until it
 * returned NULL no curl_* function may be called. */
const char *nl_curl_load(void);

/* libcurl's version string (loads it); NULL when it cannot be loaded. */
const char *nl_curl_version(void);

/* At exit, in main: curl_global_cleanup if libcurl was ever loaded. */
void nl_curl_cleanup(void);

/* ---- OpenSSL, loaded on first use (ossload.c, ossl.h) ------------------- */

/* Load libcrypto.so.3 (and initialise it without atexit clean-up), or
 * libssl.so.3 after it, once per process, from any thread. NULL when it is
 * ready, else why not ("cannot load libssl.so.3: <dlerror>"). Until one
 * returned NULL, none of that library's functions may be called. */
const char *nl_libcrypto_load(void);
const char *nl_libssl_load(void);

/* ---- Lua halves compiled into the binary (embedded.c, generated) -------- */

typedef struct nl_Embedded {
  const char *name;      /* module name: bindings/NAME.lua or runtime/NAME.lua */
  const char *chunkname; /* "=[netlua] NAME.lua" */
  const char *source;
  size_t size;
  const char *summary;   /* a lab tool's line for netlua -h; "" for a module */
} nl_Embedded;

extern const nl_Embedded nl_embedded[];
extern const nl_Embedded nl_lab[]; /* lab/NAME.lua and the scripts' modules they use */

/* The lab (lab.c): `netlua -m NAME` runs the embedded tool lab/NAME.lua.
 * nl_lab_tool finds a tool by name (NULL: none); nl_lab_list prints each
 * tool's name and summary; nl_lab_enable makes every state made after it
 * (threads' too) find the lab's modules (cli, chatroom, ...) by require;
 * nl_lab_preload is state.c's part of that. */
const nl_Embedded *nl_lab_tool(const char *name);
void nl_lab_list(FILE *out);
void nl_lab_enable(void);
void nl_lab_preload(lua_State *L);

/* Runs the embedded Lua half `name` with the `nargs` values on top of the
 * stack as its arguments (`...`); leaves its single result. Raises on error.
 * [-nargs, +1, e] */
void nl_runembedded(lua_State *L, const char *name, int nargs);

/* Sets `tracing` (--trace is on) and `trace(name, fd, key, value, ...)`
 * in the table on top, for a module's Lua half (tracelua.c). [-0, +0, m] */
void nl_trace_export(lua_State *L);

/* ---- clocks (clock.c) ---------------------------------------------------- */

double nl_monotonic(void); /* seconds from an arbitrary point, never jumps */
double nl_walltime(void);  /* seconds since the epoch, microsecond resolution */

/* ---- the one waiting point (loop.c) ------------------------------------- */

#define NL_READ  1
#define NL_WRITE 2
#define NL_NODEADLINE (-1.0)

/* Timeouts above this many seconds (a century) mean no limit. */
#define NL_MAXTIMEOUT 3.2e9

/* A deadline `timeout` seconds from now; negative, NaN, math.huge or above
 * NL_MAXTIMEOUT: none. */
double nl_deadline(double timeout);

/* Waits until `fd` is ready for `events` (NL_READ|NL_WRITE) or the absolute
 * monotonic `deadline` passes (NL_NODEADLINE: no limit). fd < 0 only sleeps.
 * Returns the ready events (>0, may include NL_READ|NL_WRITE on error/hangup),
 * 0 on timeout, or -EINTR when Ctrl-C interrupted the wait (or the process is
 * shutting down, in threads). Needs no Lua: plain C callers use it too. */
int nl_wait(int fd, int events, double deadline);

/* One descriptor of a multi-descriptor wait: fill fd and events (fd < 0 is
 * skipped); nl_waitmany sets ready. */
typedef struct nl_PollFd {
  int fd;
  int events; /* NL_READ | NL_WRITE */
  int ready;  /* out: ready events */
} nl_PollFd;

/* nl_wait for several descriptors at once (libcurl's sockets, select()).
 * Returns how many have ready events (>0), 0 on timeout, -EINTR when
 * interrupted, or another -errno. */
int nl_waitmany(nl_PollFd *fds, int n, double deadline);

/* Readiness of fds right now, without waiting: how many are ready (ready
 * set), or -errno. */
int nl_waitmany_now(nl_PollFd *fds, int n);

/* nl_wait for bindings: raises the "interrupted" error instead of -EINTR.
 * Returns ready events, or 0 on timeout. */
int nl_waitL(lua_State *L, int fd, int events, double deadline);

/* Sleeps `seconds` through nl_waitL (Ctrl-C interrupts it). */
void nl_sleepL(lua_State *L, double seconds);

/* ---- the event loop of this OS thread (loop.c) ------------------------- */

/* Each OS thread owns one loop (epoll), made on first use. Suspended callers
 * are waiters: a task (sched.c) or a C stack that runs the loop until its
 * own waiter fires. Plain C, no Lua. */
typedef struct nl_Loop nl_Loop;
typedef struct nl_Waiter nl_Waiter;
typedef struct nl_Watch nl_Watch;
typedef void (*nl_WakeFn)(nl_Waiter *w);
/* Runs the tasks that are ready; returns nonzero when more became ready. */
typedef int (*nl_LoopRunner)(void *ud);

#define NL_PENDING (-100000) /* waiter result while it waits */
#define NL_IDLE (-100001)    /* waiter result when not armed */
#define NL_NOTIMER ((size_t)-1)

struct nl_Watch { /* one descriptor of a waiter */
  int fd, events, ready;
  nl_Waiter *owner;
  nl_Watch *prev, *next; /* the loop's list of watches on fd */
};

struct nl_Waiter {
  int result;    /* NL_PENDING; then >0 ready, 0 timeout, -EINTR */
  nl_WakeFn wake; /* called once the result is set (NULL: a C stack) */
  void *data;
  void (*unlink)(nl_Waiter *w); /* leaves a wait queue (set by its owner) */
  nl_Waiter *qprev, *qnext;     /* links of that wait queue */
  void *queue;
  double deadline;
  size_t heap_index;
  nl_Watch *watches;
  int nwatches;
};

nl_Loop *nl_loop(void);          /* this thread's loop, or NULL (no memory) */
void nl_loop_wakeall(void);      /* any thread: wakes every thread's loop */
/* How many timers (waits with a deadline) this thread's loop holds, and
 * the soonest deadline in *soonest (unchanged when none). */
size_t nl_loop_timers(double *soonest);
nl_Loop *nl_loop_active(void);   /* the loop when tasks live on it, else NULL */
void nl_loop_free(void);         /* at the end of a thread */
void nl_loop_setrunner(nl_Loop *loop, nl_LoopRunner runner, void *ud);
void nl_loop_use(nl_Loop *loop, int delta); /* count of live tasks */
void nl_loop_wakeup(nl_Loop *loop); /* any thread: makes the loop look again */
void nl_loop_forget(int fd);     /* fd is being closed (nl_closefd calls it) */
void nl_waiter_init(nl_Waiter *w, nl_WakeFn wake, void *data);
int nl_waiter_arm(nl_Loop *loop, nl_Waiter *w, nl_Watch *watches, int n, double deadline);
void nl_waiter_disarm(nl_Loop *loop, nl_Waiter *w);
void nl_waiter_fire(nl_Loop *loop, nl_Waiter *w, int result);
void nl_loop_runonce(nl_Loop *loop, nl_Waiter *self);
int nl_loop_wait(nl_Loop *loop, nl_PollFd *fds, int n, double deadline);

/* ---- tasks: waits that suspend only the calling task (sched.c) -------- */

/* Inside a task these suspend the task and run the others; the running C
 * function is then called again from the start with its stack values
 * 1..nargs (it keeps its progress there or in its userdata), and this wait
 * returns what the suspended one ended with. Outside a task (or nargs < 0)
 * they wait as nl_waitL does. Where the task cannot yield (a metamethod, a
 * C callback) they raise an error that says how to restructure. */
int nl_waitk(lua_State *L, int nargs, int fd, int events, double deadline);
int nl_waitmanyk(lua_State *L, int nargs, nl_PollFd *fds, int n, double deadline);
void nl_sleepk(lua_State *L, int nargs, double seconds);

/* The sleep(seconds) of time, task and thread: one argument check (a
 * non-negative number), then nl_sleepk. A lua_CFunction. */
int nl_sleep_lua(lua_State *L);

/* True while the running C function is being called again after a wait
 * (it must not restart its timers then). */
int nl_restarting(lua_State *L);

/* Per-call records. What a call that waits has done so far (bytes carried,
 * a start index, the address it was trying, its deadline) belongs to the
 * call, never to the object it works on: many tasks may use one object at
 * once. The record is a full userdata in the call's own stack slot `slot`
 * (the last of the `nargs` it passes to its waits), so a replay finds it
 * there and it is collected when the call returns or its task is
 * cancelled. A call makes it only when it is about to wait: one that
 * completes at once allocates nothing. */
void *nl_callrec_new(lua_State *L, int slot, size_t size); /* zeroed, at slot */
void *nl_callrec_get(lua_State *L, int slot); /* a replay's record, else NULL */

/* True when L is a running task, whose waits (nl_waitk ...) suspend it. */
int nl_in_task(lua_State *L);

/* Runs the loop until every task of this state has finished (main, when
 * the script returns; threads, when their function returns). Returns 0, or
 * -EINTR when Ctrl-C/shutdown stopped it. */
int nl_sched_drain(lua_State *L);

/* Cancels the tasks of this state that are still live (main, when the
 * script failed or was interrupted): their to-be-closed variables run. */
void nl_sched_cancelall(lua_State *L);

/* Pushes the live tasks of this state, in the order they were spawned, one
 * line each: "PREFIXtask N: what it waits on (file:line)\n"; "" when there
 * are none. For the listing of what an interrupted program waited for. */
void nl_sched_describe(lua_State *L, const char *prefix);

/* ---- what is still waited for, in words (waits.c) ------------------------ */

/* Pushes onto L what `co` waits on, when the call at `level` of co's stack
 * is the one that waits (0 for a suspended task, 1 in a message handler),
 * and where in the script: "accept on 127.0.0.1:5000 (app.lua:7)". The
 * words come from runtime/waits.lua; co may be L. [-0, +1, m] */
void nl_describe_wait(lua_State *L, lua_State *co, int level);

/* Ctrl-C ended a script that was waiting for its tasks or threads: from now
 * on, threads stopped by the shutdown describe what they waited on. */
void nl_report_waits(void);
int nl_reporting_waits(void);

/* Called by nl_raise_interrupted in a thread's own code (not a task) once
 * nl_report_waits is on: notes what the call stopping now waited on, in the
 * registry under NL_STOPPED_KEY (the first such call only). */
#define NL_STOPPED_KEY "netlua.stoppedat"
void nl_note_stop(lua_State *L);

/* Prints `lines` (from nl_sched_describe and the threads) on stderr, after
 * the header "netlua: the script had ended and was still waiting for:",
 * which is printed once per process. Main thread only. */
void nl_print_waits(const char *lines);


/* ---- inspecting a running program: SIGQUIT (inspect.c) -------------------- */

/* `kill -QUIT PID` (Ctrl-\\) prints, without stopping the program, what
 * each thread holds and waits on. The handler only marks the request;
 * each thread writes its part at a safe point, its loop's wait. */

/* An object a state lists for it (a socket): its place in this state's
 * list and how to describe it in one line (no Lua; "" to leave it out). */
typedef struct nl_Listed nl_Listed;
struct nl_Listed {
  nl_Listed *prev, *next;
  void (*describe)(nl_Listed *item, char *out, size_t size);
};

/* Each state, made by nl_newstate, is its thread's: the listing of that
 * thread comes from it. */
void nl_inspect_attach(lua_State *L);
/* Lists item in this thread's state until nl_inspect_unlist (its __gc). */
void nl_inspect_list(nl_Listed *item, void (*describe)(nl_Listed *, char *, size_t));
void nl_inspect_unlist(nl_Listed *item);
/* SIGQUIT came (main thread's loop): every thread is to write its part. */
void nl_inspect_request(void);
/* Each round of a loop: writes this thread's part when one is due. */
void nl_inspect_poll(void);

/* ---- Ctrl-C and shutdown (signals.c) ------------------------------------ */
/* "Ctrl-C" below stands for any of SIGINT, SIGTERM and SIGHUP. */

/* Once, in main, before any state or thread (the main thread's loop watches
 * the Ctrl-C descriptor made here): SIGPIPE ignored; SIGINT, SIGTERM and
 * SIGHUP (unless ignored from the start) handled. */
void nl_signals_init(void);

/* The main state, whose running Lua code Ctrl-C interrupts too. */
void nl_signals_hook(lua_State *L);

/* The signal of the latest interrupt (SIGINT when none came): an uncaught
 * "interrupted" ends the program with 128 + this. */
int nl_interrupt_signal(void);

/* pthread_create with every async signal blocked from the thread's first
 * instruction on (the mask is inherited). Returns 0 or an errno value. */
int nl_thread_start(pthread_t *thread, void *(*fn)(void *), void *arg);

/* True (and the interrupt consumed) when Ctrl-C arrived since last asked. */
int nl_take_interrupt(void);

/* The scheduler tells which task coroutine it resumes in the main thread
 * (NULL: none), so Ctrl-C hooks the Lua code running there too; returns the
 * previous one, to be restored when the resume returns. */
lua_State *nl_signals_running(lua_State *co);

/* Ctrl-C once more, from the runtime (main thread only): a task that did
 * not catch "interrupted" hands it on to the code that waits for it. */
void nl_interrupt_again(void);

/* Raises the catchable error "interrupted". */
int nl_raise_interrupted(lua_State *L);

/* The program is ending: waits in every thread return -EINTR from now on,
 * and a further Ctrl-C exits at once with status 128 + its signal. */
void nl_begin_shutdown(void);
int nl_shutting_down(void);

/* Descriptors every loop also watches (internal to loop.c). */
int nl_interrupt_fd(void); /* main thread: readable while Ctrl-C is pending */
int nl_quit_fd(void);      /* main thread: readable once SIGQUIT came */
void nl_take_quit(void);   /* empties it */
int nl_shutdown_fd(void);  /* every thread: readable once shutdown began */
int nl_is_main_thread(void);

/* ---- values crossing between states (copy.c) --------------------------- */

/* A userdata type that can cross into another thread's state puts a light
 * userdata pointing to a static const nl_Transfer in its metatable under
 * NL_TRANSFER_FIELD. Sockets move (export detaches the descriptor, the
 * sender's object then reads as closed); channels and mutexes are shared
 * (export takes a reference). */
#define NL_TRANSFER_FIELD "__nl_transfer"

typedef struct nl_Transfer {
  const char *module; /* required in the receiving state before import */
  /* Detaches or references the resource of the userdata at idx; returns a
   * heap payload, or NULL with an error message pushed. */
  void *(*export_)(lua_State *L, int idx);
  /* Pushes a new userdata owning payload (takes ownership). */
  void (*import_)(lua_State *L, void *payload);
  /* Releases a payload that will never be imported. */
  void (*discard)(void *payload);
} nl_Transfer;

/* Values packed off any Lua state: nil, booleans, integers and floats (kept
 * apart), strings, tables (deep; shared sub-tables and cycles preserved),
 * functions with their upvalues, module tables (by name), nl_Transfer
 * userdata. */
typedef struct nl_Packet nl_Packet;

/* Packs the n values from stack index `first`. Raises a Lua error naming the
 * offending value when one cannot cross ("upvalue 'f' (a coroutine) cannot
 * be passed to a thread"). */
nl_Packet *nl_pack(lua_State *L, int first, int n);

/* Pushes the packed values into L and frees the packet; returns how many. */
int nl_unpack(lua_State *L, nl_Packet *packet);

/* Frees a packet that will never be unpacked (discarding moved resources). */
void nl_packet_free(nl_Packet *packet);

/* The bytes of memory a packet holds (what freeing it gives back). */
size_t nl_packet_size(const nl_Packet *packet);

/* ---- objects shared between threads (shared.c) -------------------------- */

/* The head of a C structure that threads share (a channel, a mutex, a
 * thread's record): its reference count and the lock that guards it and its
 * wait queues. Each state wraps it in a userdata of its own (a box) that
 * holds one reference. */
typedef struct nl_Shared nl_Shared;
struct nl_Shared {
  atomic_int refs;
  pthread_mutex_t mu;
  const char *tname;                 /* class of its boxes */
  void (*destroy)(nl_Shared *s);     /* frees it once unreferenced */
  /* Listed for SIGQUIT (nl_shared_list): one line about the object, with
   * its lock held; and its place in the process-wide list. */
  void (*describe)(nl_Shared *s, char *out, size_t size);
  nl_Shared *lprev, *lnext;
};

/* Lists s in the process-wide list the SIGQUIT listing prints (inspect.c),
 * until its last reference goes. */
void nl_shared_list(nl_Shared *s, void (*describe)(nl_Shared *s, char *out, size_t size));

/* A line "PREFIX<describe>\n" for each listed object, in a string to
 * free (NULL when none), and how many in *count. No Lua. */
char *nl_shared_describe_all(const char *prefix, int *count);

/* One reference (the caller's), lock initialised. No Lua. */
void nl_shared_init(nl_Shared *s, const char *tname, void (*destroy)(nl_Shared *s));
void nl_shared_retain(nl_Shared *s);
void nl_shared_release(nl_Shared *s); /* the last one calls destroy */
void nl_shared_lock(nl_Shared *s);
void nl_shared_unlock(nl_Shared *s);

/* Pushes a new box of class `tname` owning one reference to s (s may be
 * NULL: the box is made closed first, the constructor then fills the
 * returned slot). [-0, +1, m] */
nl_Shared **nl_pushshared(lua_State *L, const char *tname, nl_Shared *s);

/* The object of the box at idx; raises "attempt to use a released X". */
nl_Shared *nl_checkshared(lua_State *L, int idx, const char *tname);

/* Metamethods of a box: __gc drops its reference, __tostring "tname: 0x..",
 * __eq compares the objects. */
int nl_shared_gc(lua_State *L);
int nl_shared_tostring(lua_State *L);
int nl_shared_eq(lua_State *L);

/* nl_Transfer hooks of a box: a crossing box takes one more reference. */
void *nl_shared_export(lua_State *L, int idx);
void nl_shared_import(lua_State *L, void *payload);
void nl_shared_discard(void *payload);

/* ---- wait queues: waiting on shared objects (waitqueue.c) --------------- */

/* One queue type for every wait on a shared object (a channel's receivers
 * and senders, a mutex, a thread's or a task's joiners), in a task or not,
 * from any thread. Waiters queue in order (FIFO) and a wake-up is a
 * hand-over: the waker takes the first waiter off the queue and gives it a
 * status (and a value: a channel's item), so what it hands over (the value,
 * the room, the lock) is that waiter's even before it runs, and nobody
 * arriving later takes it first. A waiter that goes away without taking what
 * it was handed (its task cancelled, Ctrl-C) passes it on through the
 * queue's pass_on. The queue's owner lock guards it; NULL owner: a queue of
 * one thread (task joins).
 *
 * Who is woken how: a task of the waker's own thread is made ready at once;
 * a task of another thread is posted to its scheduler's inbox and that
 * thread's loop is woken (nl_loop_wakeup), the loop then makes it ready;
 * blocking code (no task) waits in nl_wait on its state's eventfd, which the
 * waker writes. */
typedef struct nl_WaitQueue nl_WaitQueue;
typedef struct nl_QueueWait nl_QueueWait;
typedef struct nl_Inbox nl_Inbox;

struct nl_WaitQueue {
  nl_QueueWait *head, *tail;
  nl_Shared *owner; /* its lock and references; NULL: one thread's queue */
  /* With the owner locked: `w` was handed w->status/w->value and goes away
   * without taking them; give them to the next waiter or back to the owner. */
  void (*pass_on)(nl_WaitQueue *q, nl_QueueWait *w);
};

/* One waiter: in a task it lives in the call's record (nl_callrec_new),
 * else on the C stack of nl_queue_until. pass_on reads status and value;
 * the rest is the runtime's. */
struct nl_QueueWait {
  int status;  /* 0 while waiting or timed out; then the waker's (> 0) */
  void *value; /* what the waker handed over with it */
  nl_QueueWait *prev, *next; /* on the queue, then on an inbox */
  nl_WaitQueue *queue;
  int state;   /* listed, posted to an inbox, done (guarded by the owner) */
  int pending; /* listed or holding an outcome not yet taken (its thread's) */
  pthread_t thread;  /* whose it is */
  nl_Waiter *waiter; /* a task's: fired by the loop; NULL: blocking */
  nl_Inbox *inbox;   /* a task's scheduler's */
  int fd;            /* blocking: the eventfd the waker writes */
  int *depth;        /* blocking: waits nested on that eventfd */
};

void nl_queue_init(nl_WaitQueue *q, nl_Shared *owner,
                   void (*pass_on)(nl_WaitQueue *q, nl_QueueWait *w));

/* A call that may wait on q: with the owner locked, `ready(q, value)`
 * says whether the call can go on now (> 0, its status; it may set *value
 * and change the object, a channel's item taken, a mutex taken) or must wait
 * (0). Waits until the first waiter is handed an outcome, `deadline`, or
 * Ctrl-C. Returns ready's status, the waker's (*value set to what it handed
 * over), or 0 on timeout. Ctrl-C/shutdown in a blocking wait raises
 * "interrupted" (with slot < 0 it returns -EINTR instead, for a caller that
 * decides itself). No lock is held on return.
 *
 * In a task that can suspend, a call that must wait keeps its waiter in a
 * record at stack slot `slot` (the last of the values its waits pass; made
 * only then) and suspends; the replayed call, entering this again, finds its
 * outcome there. The record is a to-be-closed value: however the call ends
 * (it returns, raises, its task is cancelled), a waiter still listed leaves
 * the queue and an outcome it did not take is passed on. Elsewhere (the main
 * script, a thread's function, a coroutine of the user's own; slot < 0
 * always) it blocks on this state's eventfd through nl_wait. */
int nl_queue_until(lua_State *L, int slot, nl_WaitQueue *q, double deadline,
                   int (*ready)(nl_WaitQueue *q, void **value), void **value);

/* With the owner locked: hands `status` (> 0) and `value` to the first
 * waiter and wakes it. Returns 1, or 0 when nobody waits. */
int nl_queue_wakeone(nl_WaitQueue *q, int status, void *value);
void nl_queue_wakeall(nl_WaitQueue *q, int status);

/* For a queue of one thread (owner NULL) whose waiters are all woken
 * together and re-check their condition (socket.c's turns): waits until
 * nl_queue_wakeall(q, 1) or `deadline`: 1 woken, 0 timeout; Ctrl-C raises. A task
 * waits with an entry of its own (it waits for one thing at a time), so the
 * call needs no record for it; the call is replayed as after nl_waitk and
 * this wait then returns the suspended one's outcome. */
int nl_waitqueue(lua_State *L, int nargs, nl_WaitQueue *q, double deadline);

/* Makes this state's eventfd for blocking waits now (main, at start-up), so
 * that a wait later cannot fail for want of a descriptor. */
void nl_queue_setup(lua_State *L);

/* ---- a receive call's data across its waits (gather.c) ------------------ */

/* What a receive call collected: its prefix, then what it read (`got`
 * counts only the latter, for the caller). On the C stack until the call
 * must wait; nl_gather_keep then moves it into a userdata at stack index
 * `slot`, where the replay finds it (nl_gather_begin with the length kept,
 * 0 for a fresh call, which starts with the prefix). */
typedef struct nl_Gather {
  lua_State *L;
  int slot;
  char *data;
  size_t len, cap;
  size_t got;
  int held; /* data is the userdata at slot, not `local` */
  char local[LUAL_BUFFERSIZE];
} nl_Gather;

void nl_gather_begin(nl_Gather *g, lua_State *L, int slot, size_t kept,
                     const char *prefix, size_t plen);
void nl_gather_add(nl_Gather *g, const char *p, size_t n);
void nl_gather_keep(nl_Gather *g);

/* ---- errors (errors.c) -------------------------------------------------- */

/* Pushes nil, msg and, when code is not NULL, code. Returns the count. */
int nl_pushfail(lua_State *L, const char *msg, const char *code);

/* nil, lowercase message for errno `err`, "ENAME". Returns 3. */
int nl_pusherrno(lua_State *L, int err);

/* "ECONNREFUSED" for ECONNREFUSED; "E?" when unknown. */
const char *nl_errname(int err);

/* strerror in lowercase, into buf. Returns buf. */
const char *nl_strerror(int err, char *buf, size_t size);

/* Message handler for lua_pcall (lua.c's): the error as a string (from
 * __tostring, or naming its type) followed by the traceback. */
int nl_msghandler(lua_State *L);

/* True when the value at idx is the "interrupted" error (nl_raise_interrupted),
 * also when a message handler added a traceback to it. */
int nl_is_interrupted(lua_State *L, int idx);

/* Creates a metatable for userdata type `tname` with `methods` in __index
 * and `meta` as metamethods. Leaves nothing on the stack. */
void nl_newclass(lua_State *L, const char *tname, const luaL_Reg *methods,
                 const luaL_Reg *meta);

/* nl_newclass for a type whose values can cross into another thread's
 * state: `transfer` goes under NL_TRANSFER_FIELD. */
void nl_newclass_transfer(lua_State *L, const char *tname, const luaL_Reg *methods,
                          const luaL_Reg *meta, const nl_Transfer *transfer);

#endif
