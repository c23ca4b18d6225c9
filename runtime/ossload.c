/*
 * ossload.c: OpenSSL's libcrypto and libssl, loaded on first use (layer:
 * runtime). ossl.h explains why and how the calls reach nl_ossl.
 *
 * Each library is loaded once per process under pthread_once, in any
 * thread: libcrypto by `require "crypto"`, libssl (after libcrypto) by
 * `require "ssl"` and the first TLS context (nl_tls_ctx_new: an HTTPS
 * server). Loading libcrypto ends with OPENSSL_init_crypto(NO_ATEXIT):
 * OpenSSL must not tear itself down from atexit, because daemon threads may
 * still use it while the process exits (they crashed when it did), and only
 * the first initialisation in the process decides. libcurl's TLS is the same
 * OpenSSL (the loader maps one libssl.so.3 per process), so curlload.c loads
 * libcrypto before curl_global_init initialises it.
 * The libraries are never unloaded (OpenSSL's threads and atexit make
 * dlclose unsafe).
 */
#include <dlfcn.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NL_OSSL_LOADER /* the table by its names, no redirects */
#include "ossl.h"
#include "netlua.h"

#define STRINGIFY(x) #x
#define SONAME(lib, major) lib ".so." STRINGIFY(major)

/* Until its library is loaded, each entry points here: calling OpenSSL
 * before nl_libcrypto_load / nl_libssl_load is a bug in netlua, which must
 * not be a call through NULL. GCC allows the cast from void (*)(void). */
static void not_loaded(void) {
  fputs("netlua: an OpenSSL function was called before OpenSSL was loaded\n", stderr);
  abort();
}

#define NOT_LOADED(name) .name = (__typeof__(&name))not_loaded,
nl_Ossl nl_ossl = {NL_OSSL_CRYPTO_FUNCS(NOT_LOADED) NL_OSSL_SSL_FUNCS(NOT_LOADED)};

typedef struct Library {
  const char *soname;
  pthread_once_t once;
  atomic_int state; /* 0 not tried, 1 loaded, -1 failed */
  char error[256];  /* why it failed */
} Library;

static Library libcrypto = {.soname = SONAME("libcrypto", OPENSSL_SHLIB_VERSION),
                            .once = PTHREAD_ONCE_INIT};
static Library libssl = {.soname = SONAME("libssl", OPENSSL_SHLIB_VERSION),
                         .once = PTHREAD_ONCE_INIT};

/* Records why `lib` failed; returns 0. */
static int failed(Library *lib, const char *what, const char *why) {
  snprintf(lib->error, sizeof lib->error, "cannot load %s: %s%s", lib->soname,
           what, why);
  atomic_store(&lib->state, -1);
  return 0;
}

/* dlopen; NULL with lib's error set. */
static void *open_library(Library *lib) {
  void *handle = dlopen(lib->soname, RTLD_NOW | RTLD_LOCAL);
  const char *why;
  if (handle != NULL) return handle;
  why = dlerror();
  failed(lib, "", why != NULL ? why : "dlopen failed");
  return NULL;
}

/* One entry of the table from `handle`. ISO C has no cast between object
 * and function pointers, so dlsym's result is copied in (POSIX). */
static int resolve(Library *lib, void *handle, const char *name, void *slot,
                   size_t size) {
  void *p = dlsym(handle, name);
  if (p == NULL) return failed(lib, "no symbol ", name);
  memcpy(slot, &p, size);
  return 1;
}

#define RESOLVE(name)                                                          \
  if (!resolve(lib, handle, #name, &nl_ossl.name, sizeof nl_ossl.name)) return 0;

static int resolve_crypto(Library *lib, void *handle) {
  NL_OSSL_CRYPTO_FUNCS(RESOLVE)
  return 1;
}

static int resolve_ssl(Library *lib, void *handle) {
  NL_OSSL_SSL_FUNCS(RESOLVE)
  return 1;
}

/* The pthread_once routines. On failure the library stays mapped if it
 * was found, and its entries may be half filled: nothing calls them. */
static void load_crypto(void) {
  void *handle = open_library(&libcrypto);
  if (handle == NULL || !resolve_crypto(&libcrypto, handle)) return;
  if (nl_ossl.OPENSSL_init_crypto(OPENSSL_INIT_NO_ATEXIT, NULL) != 1) {
    failed(&libcrypto, "", "OPENSSL_init_crypto failed");
    return;
  }
  atomic_store(&libcrypto.state, 1);
}

/* libssl needs libcrypto: without it, libssl fails with its message. */
static void load_ssl(void) {
  void *handle;
  if (nl_libcrypto_load() != NULL) {
    memcpy(libssl.error, libcrypto.error, sizeof libssl.error);
    atomic_store(&libssl.state, -1);
    return;
  }
  handle = open_library(&libssl);
  if (handle == NULL || !resolve_ssl(&libssl, handle)) return;
  atomic_store(&libssl.state, 1);
}

static const char *loaded(Library *lib) {
  return atomic_load(&lib->state) == 1 ? NULL : lib->error;
}

const char *nl_libcrypto_load(void) {
  pthread_once(&libcrypto.once, load_crypto);
  return loaded(&libcrypto);
}

const char *nl_libssl_load(void) {
  pthread_once(&libssl.once, load_ssl);
  return loaded(&libssl);
}
