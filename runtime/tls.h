/*
 * tls.h: TLS over a non-blocking descriptor, on OpenSSL (layer: runtime).
 * No Lua and no waiting here: each step says what it needs next (NL_READ or
 * NL_WRITE, the loop's event bits), and the caller waits through the
 * runtime's one wait path (nl_waitk ...), so in a task only the task waits.
 * bindings/ssl.c (LuaSec's API) and the HTTPS server (bindings/httpconn.c)
 * sit on top of it.
 *
 * Secure by default: a client context trusts the system's CA store unless
 * it is given its own; a connection that knows the name it meant to reach
 * (nl_tls_sethost) verifies the chain and that name. Verification failures
 * read "certificate verify failed: <why>".
 */
#ifndef NETLUA_TLS_H
#define NETLUA_TLS_H

#include <stddef.h>
#include "ossl.h"

#define NL_TLS_ERRSIZE 256
typedef char nl_TlsErr[NL_TLS_ERRSIZE];

/* A connection's TLS on its way from one module to another (http.server's
 * req:socket() hands it to the ssl module): a userdata with this metatable,
 * whose __gc frees `ssl` unless the receiver took it (set it to NULL). */
#define NL_TLS_HANDLE_MT "netlua.tls"
typedef struct nl_TlsHandle {
  SSL *ssl;
} nl_TlsHandle;

/* Step results besides 0 (done) and the wants NL_READ / NL_WRITE. */
#define NL_TLS_CLOSED (-1) /* the peer closed (or reset) the connection */
#define NL_TLS_FAIL (-2)   /* a protocol or verification error (err says) */

/* A fresh context: TLS 1.2 at least, partial writes, the key log callback.
 * A client one trusts the system's CA store. NULL with err set on failure. */
SSL_CTX *nl_tls_ctx_new(int server, nl_TlsErr err);

/* The lowest and highest protocol version: "any", "tlsv1_2", "tlsv1_3"
 * (LuaSec's names; "tlsv1", "tlsv1_1" and "sslv23" are taken as "any"). */
int nl_tls_ctx_protocol(SSL_CTX *ctx, const char *protocol, nl_TlsErr err);

/* Certificate chain and private key from PEM files (the key may be
 * encrypted with `password`, NULL: none). 0, or -1 with err set. */
int nl_tls_ctx_keypair(SSL_CTX *ctx, const char *certfile, const char *keyfile,
                       const char *password, nl_TlsErr err);

/* Trust these CAs instead of the system's (a server: also the names it
 * sends when it asks for a client certificate). */
int nl_tls_ctx_trust(SSL_CTX *ctx, const char *cafile, const char *capath, nl_TlsErr err);

/* How the context verifies its peer (SSL_VERIFY_* flags), remembering the
 * names of a certificate that failed, for the message. */
void nl_tls_ctx_verify(SSL_CTX *ctx, int flags);

/* LuaSec's verifyext: what verification lets pass or checks besides. */
#define NL_TLS_CONTINUE 1        /* lsec_continue: a failed check does not stop the handshake */
#define NL_TLS_IGNORE_PURPOSE 2  /* lsec_ignore_purpose: a certificate made for another use */
#define NL_TLS_CRL_CHECK 4       /* crl_check: the peer's certificate against its CA's CRL */
#define NL_TLS_CRL_CHAIN 8       /* crl_check_chain: every certificate of the chain */
void nl_tls_ctx_verifyext(SSL_CTX *ctx, int flags);

/* ALPN protocols in wire format (length-prefixed names): a client offers
 * them, a server picks the first of its own the client offers. */
int nl_tls_ctx_alpn(SSL_CTX *ctx, const unsigned char *wire, size_t len, nl_TlsErr err);

/* A connection on `fd` (which the caller keeps owning). */
SSL *nl_tls_new(SSL_CTX *ctx, int fd, nl_TlsErr err);

/* The name a client meant to reach: sent as SNI (not for an address) and,
 * when `check`, verified against the certificate with the chain. */
int nl_tls_sethost(SSL *ssl, const char *host, int check, nl_TlsErr err);

/* One step of each operation: 0 done (*n bytes moved), NL_READ/NL_WRITE
 * (wait for that, then call again with the same arguments), NL_TLS_CLOSED
 * or NL_TLS_FAIL (err set). */
int nl_tls_handshake(SSL *ssl, nl_TlsErr err);
int nl_tls_read(SSL *ssl, void *buf, size_t len, size_t *n, nl_TlsErr err);
int nl_tls_write(SSL *ssl, const void *buf, size_t len, size_t *n, nl_TlsErr err);

/* Sends close_notify, without waiting for the peer's. */
void nl_tls_shutdown(SSL *ssl);

/* "certificate verify failed: <why>" for the connection's verify result,
 * host name mismatches naming both names. */
void nl_tls_verify_message(SSL *ssl, nl_TlsErr err);

/* The certificate's names (subjectAltName DNS/IP entries, else its common
 * name), comma separated, into buf. */
void nl_tls_cert_names(X509 *cert, char *buf, size_t size);

/* An iPAddress entry as text ("127.0.0.1", "::1" long form). */
void nl_tls_ip_format(const ASN1_OCTET_STRING *ip, char *buf, size_t size);

#endif
