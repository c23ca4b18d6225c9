/*
 * ssl_int.h: what the C files of the ssl module share (layer: bindings,
 * private to ssl.c, ssl_context.c and ssl_cert.c): the context and
 * connection objects.
 */
#ifndef NETLUA_SSL_INT_H
#define NETLUA_SSL_INT_H

#include "netlua.h"
#include "tls.h"

#define NL_SSLCTX_MT "SSL:Context"     /* LuaSec's class names */
#define NL_SSLCONN_MT "SSL:Connection"
#define NL_SSLCERT_MT "SSL:Certificate"
#define VERIFY_UNSET (-1)              /* no `verify` given */
#define SSL_BUFSIZE 16384              /* one TLS record of plaintext */

typedef struct Context {
  SSL_CTX *ctx;
  int server;
  int verify; /* SSL_VERIFY_* flags, or VERIFY_UNSET */
} Context;

/* Receiving and sending: the calls on each side of a connection take
 * turns (ssl.c), so one task may receive while another sends, and two
 * receivers (or senders) never interleave their data. */
enum { SIDE_READ, SIDE_WRITE, NSIDES };

struct CallRec;

/* A connection: plain values, so it can move to another thread by copy
 * (ssl.c's transfer), and the calls that wait on it meanwhile (of the
 * thread it is in; none when it moves). */
typedef struct Conn {
  SSL *ssl;   /* NULL once closed */
  int fd;     /* owned: closed with the connection */
  int server;
  int verify; /* its context's */
  char *host; /* the name a client meant to reach (malloc), or NULL */
  double block, total; /* luasocket's timeouts */
  size_t maxline;      /* receive("*l") fails on longer lines; 0: no limit */
  double received, sent;
  size_t first, last;  /* plaintext not yet returned: buf[first..last) */
  struct CallRec *holder[NSIDES]; /* the call that holds a side across its waits */
  nl_WaitQueue turn[NSIDES];      /* calls waiting for a side (woken together) */
  char buf[SSL_BUFSIZE];
} Conn;

/* ssl_context.c */
Context *ssl_checkcontext(lua_State *L, int idx);
int ssl_context_gc(lua_State *L);
int ssl_newcontext(lua_State *L);

/* ssl.c */
Conn *ssl_checkconn(lua_State *L, int idx);
Conn *ssl_checkopen(lua_State *L, int idx); /* raises on a closed one */
int ssl_sethost(Conn *c, const char *host, nl_TlsErr err);

/* ssl_cert.c: certificates, SNI, verification results */
void ssl_cert_open(lua_State *L);
void ssl_sni_setup(SSL_CTX *ctx);
int ssl_sni(lua_State *L);
int ssl_getpeercertificate(lua_State *L);
int ssl_getpeerchain(lua_State *L);
int ssl_getpeerverification(lua_State *L);
int ssl_getlocalcertificate(lua_State *L);
int ssl_loadcertificate(lua_State *L);

#endif
