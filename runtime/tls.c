/*
 * tls.c: TLS over a non-blocking descriptor, on OpenSSL 3 (layer: runtime).
 * See tls.h: contexts with secure defaults, connections, one step of a
 * handshake/read/write at a time that says what it waits for, and the
 * messages a failed verification gives. No Lua, no waiting.
 */
#include <errno.h>
#include <stdint.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "netlua.h"
#include "sock.h"
#include "tls.h"
#include "trace.h"

static pthread_once_t tls_once = PTHREAD_ONCE_INIT;
static int tls_ready;        /* written once under tls_once */
static FILE *keylog;         /* $SSLKEYLOGFILE, opened once */
static int alpn_index = -1;  /* a server context's ALPN list (ex_data) */
static int failed_index = -1; /* names of the certificate that failed (ex_data) */
static int verifyext_index = -1; /* a context's NL_TLS_CONTINUE | NL_TLS_IGNORE_PURPOSE */

static void alpn_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx,
                      long argl, void *argp) {
  free(ptr);
}

static void tls_setup(void) {
  const char *path = getenv("SSLKEYLOGFILE");
  /* no atexit clean-up: main.c explains (a daemon thread may still use it) */
  if (OPENSSL_init_ssl(OPENSSL_INIT_NO_ATEXIT, NULL) != 1) return;
  alpn_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, alpn_free);
  failed_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, alpn_free);
  verifyext_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, NULL);
  if (path != NULL && *path != '\0') keylog = fopen(path, "ae");
  tls_ready = 1;
}

static int nl_tls_init(void) {
  pthread_once(&tls_once, tls_setup);
  return tls_ready ? 0 : -1;
}

/* ---- errors --------------------------------------------------------------- */

/* The reason of OpenSSL's latest error, lowercase, or `fallback`. */
static void openssl_error(nl_TlsErr err, const char *what, const char *fallback) {
  unsigned long e = ERR_peek_last_error();
  const char *reason = e != 0 ? ERR_reason_error_string(e) : NULL;
  snprintf(err, NL_TLS_ERRSIZE, "%s%s%s", what ? what : "", what ? ": " : "",
           reason != NULL ? reason : fallback);
  for (char *p = err; *p; p++)
    if (*p >= 'A' && *p <= 'Z') *p = (char)(*p - 'A' + 'a');
  ERR_clear_error();
}

/* One name of a general name entry (DNS or IP) appended to buf. */
static void add_name(char *buf, size_t size, const char *name) {
  size_t len = strlen(buf);
  if (len + 3 >= size) return;
  snprintf(buf + len, size - len, "%s%s", len > 0 ? ", " : "", name);
}

void nl_tls_ip_format(const ASN1_OCTET_STRING *ip, char *buf, size_t size) {
  const unsigned char *p = ASN1_STRING_get0_data(ip);
  int n = ASN1_STRING_length(ip);
  buf[0] = '\0';
  if (n == 4) {
    snprintf(buf, size, "%u.%u.%u.%u", p[0], p[1], p[2], p[3]);
  } else if (n == 16) {
    size_t len = 0;
    for (int i = 0; i < 16 && len < size; i += 2)
      len += (size_t)snprintf(buf + len, size - len, "%s%x", i ? ":" : "",
                              (unsigned)(p[i] << 8 | p[i + 1]));
  }
}

void nl_tls_cert_names(X509 *cert, char *buf, size_t size) {
  GENERAL_NAMES *names = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
  buf[0] = '\0';
  for (int i = 0; names != NULL && i < sk_GENERAL_NAME_num(names); i++) {
    const GENERAL_NAME *g = sk_GENERAL_NAME_value(names, i);
    if (g->type == GEN_DNS)
      add_name(buf, size, (const char *)ASN1_STRING_get0_data(g->d.dNSName));
    else if (g->type == GEN_IPADD) {
      char ip[64];
      nl_tls_ip_format(g->d.iPAddress, ip, sizeof ip);
      add_name(buf, size, ip);
    }
  }
  GENERAL_NAMES_free(names);
  if (buf[0] == '\0') {
    X509_NAME *subject = X509_get_subject_name(cert);
    if (X509_NAME_get_text_by_NID(subject, NID_commonName, buf, (int)size) < 0)
      snprintf(buf, size, "no name");
  }
}

/* The name the connection meant to reach (host or address), or "". */
static void wanted_name(SSL *ssl, char *buf, size_t size) {
  X509_VERIFY_PARAM *param = SSL_get0_param(ssl);
  const char *host = X509_VERIFY_PARAM_get0_host(param, 0);
  char *ip = host == NULL ? X509_VERIFY_PARAM_get1_ip_asc(param) : NULL;
  snprintf(buf, size, "%s", host ? host : ip ? ip : "");
  OPENSSL_free(ip);
}

void nl_tls_verify_message(SSL *ssl, nl_TlsErr err) {
  long v = SSL_get_verify_result(ssl);
  if (v == X509_V_ERR_HOSTNAME_MISMATCH || v == X509_V_ERR_IP_ADDRESS_MISMATCH) {
    char names[96], wanted[64];
    const char *failed = SSL_get_ex_data(ssl, failed_index);
    X509 *peer = SSL_get1_peer_certificate(ssl);
    if (peer != NULL) nl_tls_cert_names(peer, names, sizeof names);
    else snprintf(names, sizeof names, "%s", failed ? failed : "no name");
    X509_free(peer);
    wanted_name(ssl, wanted, sizeof wanted);
    snprintf(err, NL_TLS_ERRSIZE,
             "certificate verify failed: host name mismatch (certificate is for %s, "
             "connected to %s)", names, wanted);
    return;
  }
  snprintf(err, NL_TLS_ERRSIZE, "certificate verify failed: %s",
           X509_verify_cert_error_string(v));
}

/* What a failed check comes to under the context's verifyext: 1 when the
 * handshake goes on. A purpose ignored is no failure; under lsec_continue
 * SSL_get_verify_result (getpeerverification) still tells the failure. */
static int verifyext_passes(SSL *ssl, X509_STORE_CTX *st) {
  intptr_t ext = (intptr_t)SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), verifyext_index);
  if ((ext & NL_TLS_IGNORE_PURPOSE) && X509_STORE_CTX_get_error(st) == X509_V_ERR_INVALID_PURPOSE) {
    X509_STORE_CTX_set_error(st, X509_V_OK); /* not a failure at all */
    return 1;
  }
  return (ext & NL_TLS_CONTINUE) != 0;
}

/* Verification callback: keeps the names of the peer's certificate when
 * it fails (OpenSSL keeps no peer certificate after a failed handshake),
 * and lets the failure pass when verifyext says so. */
static int verify_cb(int ok, X509_STORE_CTX *st) {
  SSL *ssl;
  X509 *cert;
  char *names;
  if (ok) return ok;
  ssl = X509_STORE_CTX_get_ex_data(st, SSL_get_ex_data_X509_STORE_CTX_idx());
  if (ssl == NULL) return ok;
  if (verifyext_passes(ssl, st)) return 1;
  cert = X509_STORE_CTX_get_current_cert(st);
  if (X509_STORE_CTX_get_error_depth(st) != 0 || cert == NULL || (names = malloc(96)) == NULL)
    return ok;
  nl_tls_cert_names(cert, names, 96);
  free(SSL_get_ex_data(ssl, failed_index));
  SSL_set_ex_data(ssl, failed_index, names);
  return ok;
}

void nl_tls_ctx_verify(SSL_CTX *ctx, int flags) {
  SSL_CTX_set_verify(ctx, flags, verify_cb);
}

void nl_tls_ctx_verifyext(SSL_CTX *ctx, int flags) {
  unsigned long crl = (flags & NL_TLS_CRL_CHECK ? X509_V_FLAG_CRL_CHECK : 0) |
                      (flags & NL_TLS_CRL_CHAIN ? X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL : 0);
  SSL_CTX_set_ex_data(ctx, verifyext_index, (void *)(intptr_t)(flags & (NL_TLS_CONTINUE | NL_TLS_IGNORE_PURPOSE)));
  if (crl != 0) X509_STORE_set_flags(SSL_CTX_get_cert_store(ctx), crl);
}

/* What the last SSL_* call's result `rc` means (see tls.h's step results). */
static int step_result(SSL *ssl, int rc, nl_TlsErr err) {
  int e = SSL_get_error(ssl, rc), saved = errno;
  unsigned long last;
  switch (e) {
    case SSL_ERROR_NONE: return 0;
    case SSL_ERROR_WANT_READ: return NL_READ;
    case SSL_ERROR_WANT_WRITE: return NL_WRITE;
    case SSL_ERROR_ZERO_RETURN:
      snprintf(err, NL_TLS_ERRSIZE, "closed");
      return NL_TLS_CLOSED;
    case SSL_ERROR_SYSCALL:
      ERR_clear_error();
      if (saved == 0 || saved == ECONNRESET || saved == EPIPE) {
        snprintf(err, NL_TLS_ERRSIZE, "closed");
        return NL_TLS_CLOSED;
      }
      nl_strerror(saved, err, NL_TLS_ERRSIZE);
      return NL_TLS_FAIL;
    default:
      last = ERR_peek_last_error();
      if (ERR_GET_REASON(last) == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
        ERR_clear_error();
        snprintf(err, NL_TLS_ERRSIZE, "closed");
        return NL_TLS_CLOSED;
      }
      if (ERR_GET_REASON(last) == SSL_R_CERTIFICATE_VERIFY_FAILED &&
          SSL_get_verify_result(ssl) != X509_V_OK) {
        ERR_clear_error();
        nl_tls_verify_message(ssl, err);
        return NL_TLS_FAIL;
      }
      openssl_error(err, NULL, "tls error");
      return NL_TLS_FAIL;
  }
}

/* ---- contexts --------------------------------------------------------------- */

static void keylog_line(const SSL *ssl, const char *line) {
  flockfile(keylog);
  fputs(line, keylog);
  fputc('\n', keylog);
  fflush(keylog);
  funlockfile(keylog);
}

SSL_CTX *nl_tls_ctx_new(int server, nl_TlsErr err) {
  SSL_CTX *ctx;
  const char *why = nl_libssl_load();
  if (why != NULL) {
    snprintf(err, NL_TLS_ERRSIZE, "%s", why);
    return NULL;
  }
  if (nl_tls_init() != 0) {
    snprintf(err, NL_TLS_ERRSIZE, "cannot initialise openssl");
    return NULL;
  }
  ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
  if (ctx == NULL) {
    openssl_error(err, "cannot make a tls context", "out of memory");
    return NULL;
  }
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  if (keylog != NULL) SSL_CTX_set_keylog_callback(ctx, keylog_line);
  if (!server && SSL_CTX_set_default_verify_paths(ctx) != 1) {
    openssl_error(err, "cannot load the system's ca certificates", "unknown error");
    SSL_CTX_free(ctx);
    return NULL;
  }
  return ctx;
}

int nl_tls_ctx_protocol(SSL_CTX *ctx, const char *protocol, nl_TlsErr err) {
  int version = 0;
  if (strcmp(protocol, "tlsv1_2") == 0) version = TLS1_2_VERSION;
  else if (strcmp(protocol, "tlsv1_3") == 0) version = TLS1_3_VERSION;
  else if (strcmp(protocol, "any") != 0 && strcmp(protocol, "sslv23") != 0 &&
           strcmp(protocol, "tlsv1") != 0 && strcmp(protocol, "tlsv1_1") != 0) {
    snprintf(err, NL_TLS_ERRSIZE, "invalid protocol '%s' (any, tlsv1_2 or tlsv1_3)", protocol);
    return -1;
  }
  if (version != 0) {
    SSL_CTX_set_min_proto_version(ctx, version);
    SSL_CTX_set_max_proto_version(ctx, version);
  }
  return 0;
}

int nl_tls_ctx_keypair(SSL_CTX *ctx, const char *certfile, const char *keyfile,
                       const char *password, nl_TlsErr err) {
  char what[NL_TLS_ERRSIZE / 2];
  if (password != NULL) SSL_CTX_set_default_passwd_cb_userdata(ctx, (void *)password);
  if (certfile != NULL && SSL_CTX_use_certificate_chain_file(ctx, certfile) != 1) {
    snprintf(what, sizeof what, "cannot load certificate %s", certfile);
    openssl_error(err, what, "unknown error");
    return -1;
  }
  if (keyfile != NULL && SSL_CTX_use_PrivateKey_file(ctx, keyfile, SSL_FILETYPE_PEM) != 1) {
    snprintf(what, sizeof what, "cannot load key %s", keyfile);
    openssl_error(err, what, "unknown error");
    return -1;
  }
  SSL_CTX_set_default_passwd_cb_userdata(ctx, NULL);
  if (certfile != NULL && keyfile != NULL && SSL_CTX_check_private_key(ctx) != 1) {
    openssl_error(err, "key does not match the certificate", "key values mismatch");
    return -1;
  }
  return 0;
}

int nl_tls_ctx_trust(SSL_CTX *ctx, const char *cafile, const char *capath, nl_TlsErr err) {
  X509_STORE *store = X509_STORE_new();
  if (store == NULL) {
    snprintf(err, NL_TLS_ERRSIZE, "out of memory");
    return -1;
  }
  SSL_CTX_set_cert_store(ctx, store); /* the system's store no longer */
  if (SSL_CTX_load_verify_locations(ctx, cafile, capath) != 1) {
    openssl_error(err, "cannot load ca certificates", "unknown error");
    return -1;
  }
  if (cafile != NULL) {
    STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(cafile);
    if (names != NULL) SSL_CTX_set_client_CA_list(ctx, names);
  }
  ERR_clear_error();
  return 0;
}

/* A server picks the first of its protocols that the client offers. */
static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned int inlen, void *arg) {
  const unsigned char *mine = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), alpn_index);
  unsigned char *sel;
  if (mine == NULL) return SSL_TLSEXT_ERR_NOACK;
  if (SSL_select_next_proto(&sel, outlen, mine + 2, mine[0] | (unsigned)mine[1] << 8,
                            in, inlen) != OPENSSL_NPN_NEGOTIATED)
    return SSL_TLSEXT_ERR_NOACK;
  *out = sel;
  return SSL_TLSEXT_ERR_OK;
}

int nl_tls_ctx_alpn(SSL_CTX *ctx, const unsigned char *wire, size_t len, nl_TlsErr err) {
  unsigned char *copy;
  if (len == 0 || len > 0xffff) {
    snprintf(err, NL_TLS_ERRSIZE, "invalid alpn list");
    return -1;
  }
  if (SSL_CTX_set_alpn_protos(ctx, wire, (unsigned)len) != 0) { /* 0 is success */
    openssl_error(err, "invalid alpn list", "unknown error");
    return -1;
  }
  copy = malloc(len + 2);
  if (copy == NULL) {
    snprintf(err, NL_TLS_ERRSIZE, "out of memory");
    return -1;
  }
  copy[0] = (unsigned char)(len & 0xff);
  copy[1] = (unsigned char)(len >> 8); /* [length lo][length hi][list] */
  memcpy(copy + 2, wire, len);
  free(SSL_CTX_get_ex_data(ctx, alpn_index));
  SSL_CTX_set_ex_data(ctx, alpn_index, copy);
  SSL_CTX_set_alpn_select_cb(ctx, alpn_select, NULL);
  return 0;
}

/* ---- connections ------------------------------------------------------------ */

SSL *nl_tls_new(SSL_CTX *ctx, int fd, nl_TlsErr err) {
  SSL *ssl = SSL_new(ctx);
  if (ssl == NULL || SSL_set_fd(ssl, fd) != 1) {
    openssl_error(err, "cannot make a tls connection", "out of memory");
    SSL_free(ssl);
    return NULL;
  }
  return ssl;
}

int nl_tls_sethost(SSL *ssl, const char *host, int check, nl_TlsErr err) {
  int ok = 1, address = nl_is_numeric_host(host);
  if (!address) ok = SSL_set_tlsext_host_name(ssl, host) == 1;
  if (ok && check) {
    X509_VERIFY_PARAM *param = SSL_get0_param(ssl);
    X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    ok = address ? X509_VERIFY_PARAM_set1_ip_asc(param, host) == 1
                          : X509_VERIFY_PARAM_set1_host(param, host, 0) == 1;
    SSL_set_verify(ssl, SSL_VERIFY_PEER, verify_cb);
  }
  if (!ok) openssl_error(err, "invalid host name", "unknown error");
  return ok ? 0 : -1;
}

/* --trace: how a handshake ended (`step` 0: done, else failed with err):
 * the version and cipher, the peer certificate's names, the verification
 * ("off" when the peer's certificate is not checked). */
static void trace_handshake(SSL *ssl, int step, const char *err) {
  const SSL_CIPHER *ci = SSL_get_current_cipher(ssl);
  X509 *peer = SSL_get1_peer_certificate(ssl);
  long v = SSL_get_verify_result(ssl);
  char names[256] = "";
  if (peer != NULL) nl_tls_cert_names(peer, names, sizeof names);
  X509_free(peer);
  nl_trace_tls(SSL_get_fd(ssl), step == 0 ? SSL_get_version(ssl) : NULL,
               step == 0 && ci != NULL ? SSL_CIPHER_get_name(ci) : NULL, names,
               SSL_get_verify_mode(ssl) == SSL_VERIFY_NONE ? "off"
               : v == X509_V_OK ? "ok" : X509_verify_cert_error_string(v),
               step < 0 ? err : NULL);
}

int nl_tls_handshake(SSL *ssl, nl_TlsErr err) {
  int step;
  ERR_clear_error();
  errno = 0;
  step = step_result(ssl, SSL_do_handshake(ssl), err);
  if (nl_trace_on && step <= 0) trace_handshake(ssl, step, err);
  return step;
}

int nl_tls_read(SSL *ssl, void *buf, size_t len, size_t *n, nl_TlsErr err) {
  int step;
  ERR_clear_error();
  errno = 0;
  *n = 0;
  step = step_result(ssl, SSL_read_ex(ssl, buf, len, n), err);
  if (nl_trace_on && step == 0) nl_trace_tls_io(SSL_get_fd(ssl), 0, buf, *n);
  return step;
}

int nl_tls_write(SSL *ssl, const void *buf, size_t len, size_t *n, nl_TlsErr err) {
  int step;
  ERR_clear_error();
  errno = 0;
  *n = 0;
  step = step_result(ssl, SSL_write_ex(ssl, buf, len, n), err);
  if (nl_trace_on && step == 0) nl_trace_tls_io(SSL_get_fd(ssl), 1, buf, *n);
  return step;
}

void nl_tls_shutdown(SSL *ssl) {
  ERR_clear_error();
  if (SSL_is_init_finished(ssl)) SSL_shutdown(ssl);
  ERR_clear_error();
}
