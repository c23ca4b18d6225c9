/*
 * ossl.h: OpenSSL, loaded on first use (layer: runtime). The one header
 * through which netlua's C includes OpenSSL's.
 *
 * netlua is not linked against libssl/libcrypto: mapping them doubled the
 * start-up time and added ~1.7 MiB of RSS to every script, also to the many
 * that never use TLS or a hash. runtime/ossload.c dlopens them the first
 * time `require "crypto"` (libcrypto), `require "ssl"` or an HTTPS server
 * (libssl too) needs them, and fills nl_ossl with the functions that
 * runtime/ossl.names lists. After OpenSSL's own headers this file makes
 * every listed name a call through that table (`SSL_new(ctx)` is
 * `(nl_ossl.SSL_new)(ctx)`), so the code is written against OpenSSL's API
 * as usual, with its prototypes' type checking, and OpenSSL's macros
 * (sk_*_num, BIO_get_mem_data, SSL_set_tlsext_host_name ...) reach the
 * table through the functions they expand to.
 *
 * So: include no <openssl/...> header yourself (add it here, before the
 * redirects), and call nothing from OpenSSL before nl_ossl_load (netlua.h)
 * returned NULL in some thread of the process (a call before aborts with a
 * message). A function missing from ossl.names fails the link.
 */
#ifndef NETLUA_OSSL_H
#define NETLUA_OSSL_H

#include <openssl/bio.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "osslfuncs.h" /* generated: NL_OSSL_CRYPTO_FUNCS, NL_OSSL_SSL_FUNCS */

/* The resolved entry points, typed as OpenSSL's headers declare them. */
#define NL_OSSL_POINTER(name) __typeof__(&name) name;
typedef struct nl_Ossl {
  NL_OSSL_CRYPTO_FUNCS(NL_OSSL_POINTER)
  NL_OSSL_SSL_FUNCS(NL_OSSL_POINTER)
} nl_Ossl;
extern nl_Ossl nl_ossl;

/* ossload.c fills the table by name and does without the redirects. */
#ifndef NL_OSSL_LOADER
#include "osslcalls.h" /* generated: #define SSL_new (nl_ossl.SSL_new) ... */
#endif

#endif
