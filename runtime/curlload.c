/*
 * curlload.c: libcurl, loaded on first use (layer: runtime).
 *
 * Linking libcurl pulls in ~35 shared objects (OpenSSL, GSSAPI, LDAP,
 * nghttp2, ssh, idn, psl ...): mapping and relocating them tripled netlua's
 * start-up time and cost ~9 MiB of RSS in every process, also in the many
 * scripts that never make an HTTP request. So netlua is not linked against
 * libcurl. This file defines the curl_* functions the bindings call, as thin
 * forwarders to pointers that nl_curl_load resolves with dlopen + dlsym the
 * first time `require "http"` runs (state.c), in any thread. bindings/http.c
 * is written against <curl/curl.h> as usual and does not know.
 *
 * Loading runs once per process under pthread_once and ends with
 * curl_global_init, so it happens-before every other curl call in every
 * thread. libcurl >= 7.84 says so itself with CURL_VERSION_THREADSAFE
 * (Debian 12's 7.88 has it), but we don't rely on it: pthread_once already
 * serializes the init. libcurl's TLS is the OpenSSL that the ssl and crypto
 * modules load (one libssl.so.3 per process): libcrypto is loaded and
 * initialised first (ossload.c: without atexit clean-up), whichever module
 * comes first.
 * libcurl is never unloaded (OpenSSL's atexit handlers and threads make
 * dlclose unsafe); main calls curl_global_cleanup at exit if it was loaded.
 *
 * The forwarders are hidden (not in the executable's dynamic symbol table,
 * although we link with -E), so libcurl's own calls to its public functions
 * still bind inside libcurl. A curl function the bindings start to use must
 * be added to CURL_FUNCS (the link fails until it is).
 */
#define CURL_DISABLE_TYPECHECK /* the type-checking macros hide our definitions */

#include <dlfcn.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#pragma GCC visibility push(hidden)
#include <curl/curl.h>
#pragma GCC visibility pop

#include "netlua.h"

#define LIBCURL_SONAME "libcurl.so.4"

/* Every forwarded function but the variadic ones:
 * R(return type, name, parameters, arguments) returns a value, V returns void. */
#define CURL_FUNCS(R, V)                                                       \
  R(CURL *, curl_easy_init, (void), ())                                        \
  V(curl_easy_cleanup, (CURL *h), (h))                                         \
  V(curl_easy_reset, (CURL *h), (h))                                           \
  R(CURLcode, curl_easy_perform, (CURL *h), (h))                               \
  R(CURLcode, curl_easy_pause, (CURL *h, int bits), (h, bits))                 \
  R(const char *, curl_easy_strerror, (CURLcode c), (c))                       \
  R(char *, curl_easy_escape, (CURL *h, const char *s, int n), (h, s, n))      \
  R(char *, curl_easy_unescape, (CURL *h, const char *s, int n, int *out),     \
    (h, s, n, out))                                                            \
  V(curl_free, (void *p), (p))                                                 \
  R(CURLM *, curl_multi_init, (void), ())                                      \
  R(CURLMcode, curl_multi_cleanup, (CURLM *m), (m))                            \
  R(CURLMcode, curl_multi_add_handle, (CURLM *m, CURL *h), (m, h))             \
  R(CURLMcode, curl_multi_remove_handle, (CURLM *m, CURL *h), (m, h))          \
  R(CURLMcode, curl_multi_socket_action,                                       \
    (CURLM *m, curl_socket_t s, int ev, int *running), (m, s, ev, running))    \
  R(CURLMsg *, curl_multi_info_read, (CURLM *m, int *left), (m, left))         \
  R(CURLMcode, curl_multi_perform, (CURLM *m, int *running), (m, running))     \
  R(CURLMcode, curl_multi_wait,                                                \
    (CURLM *m, struct curl_waitfd *fds, unsigned n, int ms, int *ret),         \
    (m, fds, n, ms, ret))                                                      \
  R(CURLMcode, curl_multi_poll,                                                \
    (CURLM *m, struct curl_waitfd *fds, unsigned n, int ms, int *ret),         \
    (m, fds, n, ms, ret))                                                      \
  R(CURLMcode, curl_multi_wakeup, (CURLM *m), (m))                             \
  R(CURLMcode, curl_multi_timeout, (CURLM *m, long *ms), (m, ms))              \
  R(CURLMcode, curl_multi_fdset,                                               \
    (CURLM *m, fd_set *r, fd_set *w, fd_set *e, int *max), (m, r, w, e, max))  \
  R(CURLMcode, curl_multi_assign, (CURLM *m, curl_socket_t s, void *p),        \
    (m, s, p))                                                                 \
  R(const char *, curl_multi_strerror, (CURLMcode c), (c))                     \
  R(struct curl_slist *, curl_slist_append,                                    \
    (struct curl_slist *l, const char *s), (l, s))                             \
  V(curl_slist_free_all, (struct curl_slist *l), (l))                          \
  R(char *, curl_version, (void), ())                                          \
  R(curl_version_info_data *, curl_version_info, (CURLversion v), (v))         \
  R(CURLcode, curl_global_init, (long flags), (flags))                         \
  V(curl_global_cleanup, (void), ())

#define CURL_VARIADIC(X)                                                       \
  X(curl_easy_setopt) X(curl_easy_getinfo) X(curl_multi_setopt)

/* The resolved entry points, one per function, typed as curl.h declares. */
#define AS_POINTER(name) __typeof__(name) *name;
#define R_POINTER(ret, name, params, args) AS_POINTER(name)
#define V_POINTER(name, params, args) AS_POINTER(name)
static struct {
  CURL_FUNCS(R_POINTER, V_POINTER)
  CURL_VARIADIC(AS_POINTER)
} fn;

static pthread_once_t load_once = PTHREAD_ONCE_INIT;
static atomic_int load_state; /* 0 not tried, 1 loaded, -1 failed */
static char load_error[256];

/* dlsym that fills load_error when the symbol is missing. */
static int resolve(void *lib, const char *name, void **slot) {
  *slot = dlsym(lib, name);
  if (*slot != NULL) return 1;
  snprintf(load_error, sizeof load_error, "%s: no symbol %s", LIBCURL_SONAME,
           name);
  return 0;
}

/* Resolves every entry point; 1 on success. ISO C has no cast between
 * object and function pointers, so dlsym's result is copied in (POSIX). */
#define R_RESOLVE(ret, name, params, args) V_RESOLVE(name, params, args)
#define V_RESOLVE(name, params, args) RESOLVE(name)
#define RESOLVE(name)                                                          \
  if (!resolve(lib, #name, &p)) return 0;                                      \
  memcpy(&fn.name, &p, sizeof fn.name);
static int resolve_all(void *lib) {
  void *p;
  CURL_FUNCS(R_RESOLVE, V_RESOLVE)
  CURL_VARIADIC(RESOLVE)
  return 1;
}

/* The pthread_once routine: dlopen, dlsym, curl_global_init. On failure
 * load_error says why; the library stays mapped if it was found. */
static void load(void) {
  void *lib;
  CURLcode rc;
  /* A libcurl on another TLS library works without it: no error here. */
  (void)nl_libcrypto_load();
  lib = dlopen(LIBCURL_SONAME, RTLD_NOW | RTLD_LOCAL);
  if (lib == NULL) {
    const char *e = dlerror();
    snprintf(load_error, sizeof load_error, "%s", e ? e : LIBCURL_SONAME);
    atomic_store(&load_state, -1);
    return;
  }
  if (!resolve_all(lib)) {
    atomic_store(&load_state, -1);
    return;
  }
  rc = fn.curl_global_init(CURL_GLOBAL_DEFAULT);
  if (rc != CURLE_OK) {
    snprintf(load_error, sizeof load_error, "curl_global_init: %s",
             fn.curl_easy_strerror(rc));
    atomic_store(&load_state, -1);
    return;
  }
  atomic_store(&load_state, 1);
}

const char *nl_curl_load(void) {
  pthread_once(&load_once, load);
  return atomic_load(&load_state) == 1 ? NULL : load_error;
}

const char *nl_curl_version(void) {
  if (nl_curl_load() != NULL) return NULL;
  return fn.curl_version_info(CURLVERSION_NOW)->version;
}

void nl_curl_cleanup(void) {
  if (atomic_load(&load_state) == 1) fn.curl_global_cleanup();
}

/* Every forwarder goes through here: loaded, or a bug in netlua (a curl
 * call before `require "http"` succeeded), which must not be a NULL call. */
static void ensure_loaded(const char *name) {
  if (nl_curl_load() == NULL) return;
  fprintf(stderr, "netlua: %s called but libcurl is not loaded: %s\n", name,
          load_error);
  abort();
}

/* ---- the forwarders ------------------------------------------------------ */

#define R_FORWARD(ret, name, params, args)                                     \
  ret name params {                                                            \
    ensure_loaded(#name);                                                      \
    return fn.name args;                                                       \
  }
#define V_FORWARD(name, params, args)                                          \
  void name params {                                                           \
    ensure_loaded(#name);                                                      \
    fn.name args;                                                              \
  }
CURL_FUNCS(R_FORWARD, V_FORWARD)

/* setopt's third argument has the type its option's number range says
 * (curl.h's CURLOPTTYPE_*, shared by easy and multi options). Callbacks
 * cross as a generic function pointer: the calling convention is the same. */
typedef void (*generic_fn)(void);
#define FORWARD_SETOPT(call, h, option, ap)                                    \
  (option < CURLOPTTYPE_OBJECTPOINT    ? call(h, option, va_arg(ap, long))     \
   : option < CURLOPTTYPE_FUNCTIONPOINT ? call(h, option, va_arg(ap, void *))  \
   : option < CURLOPTTYPE_OFF_T ? call(h, option, va_arg(ap, generic_fn))      \
   : option < CURLOPTTYPE_BLOB  ? call(h, option, va_arg(ap, curl_off_t))      \
                                : call(h, option, va_arg(ap, void *)))

CURLcode curl_easy_setopt(CURL *h, CURLoption option, ...) {
  va_list ap;
  CURLcode rc;
  ensure_loaded("curl_easy_setopt");
  va_start(ap, option);
  rc = FORWARD_SETOPT(fn.curl_easy_setopt, h, option, ap);
  va_end(ap);
  return rc;
}

CURLMcode curl_multi_setopt(CURLM *m, CURLMoption option, ...) {
  va_list ap;
  CURLMcode rc;
  ensure_loaded("curl_multi_setopt");
  va_start(ap, option);
  rc = FORWARD_SETOPT(fn.curl_multi_setopt, m, option, ap);
  va_end(ap);
  return rc;
}

/* Every CURLINFO_* takes a pointer to where the answer goes. */
CURLcode curl_easy_getinfo(CURL *h, CURLINFO info, ...) {
  va_list ap;
  CURLcode rc;
  ensure_loaded("curl_easy_getinfo");
  va_start(ap, info);
  rc = fn.curl_easy_getinfo(h, info, va_arg(ap, void *));
  va_end(ap);
  return rc;
}
