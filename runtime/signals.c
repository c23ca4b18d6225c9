/*
 * signals.c: Ctrl-C, SIGPIPE and shutdown for the whole process (layer:
 * runtime). SIGINT, SIGTERM and SIGHUP are all "Ctrl-C": an interrupt that
 * a script can catch, and that ends it with 128 + the signal's number when
 * it does not. Only the main thread takes them; the handler records one, wakes
 * the main thread's wait through a self-pipe and hooks the Lua code that is
 * running so that it stops too (as lua.c does): the main state at once, and
 * the task coroutine the scheduler is resuming once it proves busy (hooks
 * are per coroutine in Lua 5.4, so the scheduler tells us which one runs:
 * one pointer store per resume, nothing else while no Ctrl-C is pending).
 * Waits consume the interrupt and raise "interrupted". A second one that
 * arrives while the first is still unanswered, or once shutdown began, ends
 * the process (128 + its number).
 * A SIGHUP ignored when netlua started (nohup) stays ignored. SIGQUIT
 * (Ctrl-\\) asks for the listing of what the program holds and waits on
 * (inspect.c): its handler only writes to a self-pipe the main thread's loop
 * watches; the program goes on.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include "netlua.h"

static volatile sig_atomic_t interrupt_pending;
static volatile sig_atomic_t interrupt_signo = SIGINT; /* the latest one */
static volatile sig_atomic_t shutdown_begun;
static int interrupt_pipe[2] = {-1, -1};
static int shutdown_pipe[2] = {-1, -1};
static int quit_pipe[2] = {-1, -1};
static lua_State *main_state;
static lua_State *volatile running_task; /* main thread's task being resumed */
static _Thread_local int this_is_main;

#define STOP_MASK (LUA_MASKCALL | LUA_MASKRET | LUA_MASKLINE | LUA_MASKCOUNT)

/* A task is busy, and Ctrl-C stops it where it is, once it has run this
 * many Lua instructions since the Ctrl-C without yielding (a few
 * milliseconds). A task that yields sooner never sees it: the main
 * script's wait does, so a pcall around a task's step cannot swallow it. */
#define BUSY_COUNT 1000000

static void stop_hook(lua_State *L, lua_Debug *ar) {
  (void)ar;
  lua_sethook(L, NULL, 0, 0);
  if (nl_take_interrupt()) nl_raise_interrupted(L);
}

/* Marks the interrupt pending, wakes the waits and hooks the running Lua
 * code. Async-signal-safe: a write and lua_sethook, as lua.c's laction. */
static void post_interrupt(void) {
  lua_State *task = running_task;
  interrupt_pending = 1;
  if (write(interrupt_pipe[1], "!", 1) < 0) { /* pipe full: already awake */ }
  if (main_state != NULL) lua_sethook(main_state, stop_hook, STOP_MASK, 1);
  if (task != NULL) lua_sethook(task, stop_hook, LUA_MASKCOUNT, BUSY_COUNT);
}

static void on_interrupt(int sig) {
  int saved_errno = errno;
  if (shutdown_begun || interrupt_pending) _exit(128 + sig);
  interrupt_signo = sig;
  post_interrupt();
  errno = saved_errno;
}

int nl_interrupt_signal(void) { return interrupt_signo; }

/* SIGQUIT: wakes the main thread's loop, which asks every thread for its
 * part of the listing. Async-signal-safe: one write. */
static void on_quit(int sig) {
  int saved_errno = errno;
  (void)sig;
  if (write(quit_pipe[1], "!", 1) < 0) { /* pipe full: a listing is due */ }
  errno = saved_errno;
}

static void catch_quit(void) {
  struct sigaction sa;
  sa.sa_handler = on_quit;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART; /* a read of the script's goes on */
  sigaction(SIGQUIT, &sa, NULL);
}

void nl_take_quit(void) {
  char drain[64];
  while (read(quit_pipe[0], drain, sizeof drain) > 0) {}
}

/* Installs on_interrupt for sig; with keep_ignored, a signal the parent
 * had set to be ignored stays ignored. */
static void catch_interrupt(int sig, int keep_ignored) {
  struct sigaction sa, old;
  if (keep_ignored && sigaction(sig, NULL, &old) == 0 && old.sa_handler == SIG_IGN)
    return;
  sa.sa_handler = on_interrupt;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0; /* no SA_RESTART: blocking calls return EINTR */
  sigaction(sig, &sa, NULL);
}

lua_State *nl_signals_running(lua_State *co) {
  lua_State *prev;
  if (!this_is_main) return NULL;
  prev = running_task;
  running_task = co;
  /* the one that stops running is no longer busy: its count starts over */
  if (prev != NULL && lua_gethook(prev) == stop_hook) lua_sethook(prev, NULL, 0, 0);
  /* a Ctrl-C that came while no task ran: this one too, should it be busy */
  if (co != NULL && interrupt_pending) lua_sethook(co, stop_hook, LUA_MASKCOUNT, BUSY_COUNT);
  return prev;
}

void nl_interrupt_again(void) {
  if (this_is_main && !interrupt_pending) post_interrupt();
}

static void make_pipe(int fds[2]) {
  if (pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0) abort();
}

void nl_signals_hook(lua_State *L) { main_state = L; }

void nl_signals_init(void) {
  this_is_main = 1;
  make_pipe(interrupt_pipe);
  make_pipe(shutdown_pipe);
  make_pipe(quit_pipe);
  signal(SIGPIPE, SIG_IGN);
  catch_quit();
  catch_interrupt(SIGINT, 0);
  catch_interrupt(SIGTERM, 0);
  catch_interrupt(SIGHUP, 1);
}

int nl_take_interrupt(void) {
  char drain[64];
  if (!this_is_main || !interrupt_pending) return 0;
  while (read(interrupt_pipe[0], drain, sizeof drain) > 0) {}
  if (main_state != NULL) lua_sethook(main_state, NULL, 0, 0);
  interrupt_pending = 0;
  return 1;
}

int nl_raise_interrupted(lua_State *L) {
  if (!this_is_main && nl_reporting_waits()) nl_note_stop(L);
  lua_pushliteral(L, "interrupted");
  return lua_error(L);
}

void nl_begin_shutdown(void) {
  if (shutdown_begun) return;
  shutdown_begun = 1;
  if (write(shutdown_pipe[1], "!", 1) < 0) { /* already readable */ }
}

int nl_shutting_down(void) { return shutdown_begun; }
int nl_interrupt_fd(void) { return interrupt_pipe[0]; }
int nl_shutdown_fd(void) { return shutdown_pipe[0]; }
int nl_quit_fd(void) { return quit_pipe[0]; }
int nl_is_main_thread(void) { return this_is_main; }

int nl_thread_start(pthread_t *thread, void *(*fn)(void *), void *arg) {
  sigset_t all, old;
  int r;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, &old);
  r = pthread_create(thread, NULL, fn, arg);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  return r;
}
