/*
 * thread.h: what the files of the `thread` module share (layer: bindings,
 * private to thread.c, channel.c and mutex.c). The module exports only
 * luaopen_thread; the functions here carry the thread_ prefix.
 */
#ifndef NETLUA_THREAD_H
#define NETLUA_THREAD_H

#include "netlua.h"

#define NL_THREAD_MT "thread.handle"
#define NL_CHANNEL_MT "thread.channel"
#define NL_MUTEX_MT "thread.mutex"
#define NL_SEMAPHORE_MT "thread.semaphore"
#define NL_GUARD_MT "thread.mutexguard"

/* Channels and mutexes are shared boxes (runtime/shared.c): one crossing
 * into another state takes a reference. */
extern const nl_Transfer thread_shared_transfer;

/* channel.c: thread.channel([capacity]) and the class of its values. */
int thread_channel(lua_State *L);
void thread_open_channel(lua_State *L);

/* mutex.c: thread.mutex(), thread.semaphore(n) and the classes of mutexes,
 * semaphores and their with's guard. */
int thread_mutex(lua_State *L);
int thread_semaphore(lua_State *L);
void thread_open_mutex(lua_State *L);

#endif
