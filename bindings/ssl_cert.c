/*
 * ssl_cert.c: the ssl module's certificates, SNI and verification results
 * (layer: bindings): LuaSec's certificate object (subject, issuer, pem,
 * digest, notbefore, notafter, validat, extensions, serial, pubkey),
 * conn:sni() for both sides, getpeercertificate/getpeerchain/
 * getpeerverification.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "codec.h"
#include "ssl_int.h"

typedef struct Cert {
  X509 *x;
} Cert;

/* ---- certificate objects ----------------------------------------------------- */

/* Pushes a certificate object that owns one reference to x (taken). */
static void push_cert(lua_State *L, X509 *x) {
  Cert *c = lua_newuserdatauv(L, sizeof *c, 0);
  c->x = x;
  luaL_setmetatable(L, NL_SSLCERT_MT);
}

static X509 *check_cert(lua_State *L, int idx) {
  return ((Cert *)luaL_checkudata(L, idx, NL_SSLCERT_MT))->x;
}

static int cert_gc(lua_State *L) {
  Cert *c = luaL_checkudata(L, 1, NL_SSLCERT_MT);
  X509_free(c->x);
  c->x = NULL;
  return 0;
}

/* Pushes what a memory BIO holds and frees it. */
static void push_bio(lua_State *L, BIO *bio) {
  char *p;
  long n = BIO_get_mem_data(bio, &p);
  lua_pushlstring(L, p, (size_t)n);
  BIO_free(bio);
}

static int cert_pem(lua_State *L) {
  BIO *bio = BIO_new(BIO_s_mem());
  PEM_write_bio_X509(bio, check_cert(L, 1));
  push_bio(L, bio);
  return 1;
}

static void push_hex(lua_State *L, const unsigned char *p, size_t n) {
  luaL_Buffer b;
  nl_hex_encode(luaL_buffinitsize(L, &b, 2 * n), p, n);
  luaL_pushresultsize(&b, 2 * n);
}

/* cert:digest([alg]): the hex digest of the DER form ("sha1" by default,
 * as LuaSec; "sha256", "sha512", "md5" ...). */
static int cert_digest(lua_State *L) {
  X509 *x = check_cert(L, 1);
  const char *name = luaL_optstring(L, 2, "sha1");
  const EVP_MD *md = EVP_get_digestbyname(name);
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned n;
  if (md == NULL) return luaL_argerror(L, 2, "unknown digest");
  if (X509_digest(x, md, out, &n) != 1) return nl_pushfail(L, "digest failed", NULL);
  push_hex(L, out, n);
  return 1;
}

static void push_objname(lua_State *L, const ASN1_OBJECT *o, int numeric) {
  char buf[128];
  OBJ_obj2txt(buf, sizeof buf, o, numeric);
  lua_pushstring(L, buf);
}

/* A name as LuaSec gives it: a list of {oid=, name=, value=}. */
static void push_name(lua_State *L, const X509_NAME *name) {
  int n = X509_NAME_entry_count(name);
  lua_createtable(L, n, 0);
  for (int i = 0; i < n; i++) {
    const X509_NAME_ENTRY *e = X509_NAME_get_entry(name, i);
    const ASN1_STRING *v = X509_NAME_ENTRY_get_data(e);
    lua_createtable(L, 0, 3);
    push_objname(L, X509_NAME_ENTRY_get_object(e), 1);
    lua_setfield(L, -2, "oid");
    push_objname(L, X509_NAME_ENTRY_get_object(e), 0);
    lua_setfield(L, -2, "name");
    lua_pushlstring(L, (const char *)ASN1_STRING_get0_data(v), (size_t)ASN1_STRING_length(v));
    lua_setfield(L, -2, "value");
    lua_rawseti(L, -2, i + 1);
  }
}

static int cert_subject(lua_State *L) {
  push_name(L, X509_get_subject_name(check_cert(L, 1)));
  return 1;
}

static int cert_issuer(lua_State *L) {
  push_name(L, X509_get_issuer_name(check_cert(L, 1)));
  return 1;
}

/* "Dec  5 13:02:16 2026 GMT", as LuaSec prints times. */
static void push_time(lua_State *L, const ASN1_TIME *t) {
  BIO *bio = BIO_new(BIO_s_mem());
  ASN1_TIME_print(bio, t);
  push_bio(L, bio);
}

static int cert_notbefore(lua_State *L) {
  push_time(L, X509_get0_notBefore(check_cert(L, 1)));
  return 1;
}

static int cert_notafter(lua_State *L) {
  push_time(L, X509_get0_notAfter(check_cert(L, 1)));
  return 1;
}

/* cert:validat(t): whether the certificate is valid at time t (seconds
 * since the epoch). */
static int cert_validat(lua_State *L) {
  X509 *x = check_cert(L, 1);
  time_t t = (time_t)luaL_checknumber(L, 2);
  lua_pushboolean(L, X509_cmp_time(X509_get0_notBefore(x), &t) < 0 &&
                     X509_cmp_time(X509_get0_notAfter(x), &t) > 0);
  return 1;
}

static int cert_serial(lua_State *L) {
  BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(check_cert(L, 1)), NULL);
  char *hex = bn != NULL ? BN_bn2hex(bn) : NULL;
  lua_pushstring(L, hex != NULL ? hex : "");
  OPENSSL_free(hex);
  BN_free(bn);
  return 1;
}

/* cert:pubkey(): the public key in PEM, its type and its size in bits. */
static int cert_pubkey(lua_State *L) {
  EVP_PKEY *key = X509_get0_pubkey(check_cert(L, 1));
  BIO *bio;
  if (key == NULL) return nl_pushfail(L, "no public key", NULL);
  bio = BIO_new(BIO_s_mem());
  PEM_write_bio_PUBKEY(bio, key);
  push_bio(L, bio);
  lua_pushstring(L, OBJ_nid2sn(EVP_PKEY_get_base_id(key)));
  lua_pushinteger(L, EVP_PKEY_get_bits(key));
  return 3;
}

/* Appends a string to the list t[field], made on first use. */
static void add_to_list(lua_State *L, const char *field, const char *s, size_t len) {
  if (lua_getfield(L, -1, field) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_setfield(L, -3, field);
  }
  lua_pushlstring(L, s, len);
  lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
  lua_pop(L, 1);
}

/* The entries of a subjectAltName into the table on top. */
static void add_altnames(lua_State *L, X509_EXTENSION *ext) {
  GENERAL_NAMES *names = X509V3_EXT_d2i(ext);
  for (int i = 0; names != NULL && i < sk_GENERAL_NAME_num(names); i++) {
    const GENERAL_NAME *g = sk_GENERAL_NAME_value(names, i);
    const ASN1_STRING *s = NULL;
    const char *field = NULL;
    char ip[64];
    if (g->type == GEN_DNS) s = g->d.dNSName, field = "dNSName";
    else if (g->type == GEN_EMAIL) s = g->d.rfc822Name, field = "rfc822Name";
    else if (g->type == GEN_URI) s = g->d.uniformResourceIdentifier,
                                 field = "uniformResourceIdentifier";
    if (s != NULL) {
      add_to_list(L, field, (const char *)ASN1_STRING_get0_data(s),
                  (size_t)ASN1_STRING_length(s));
    } else if (g->type == GEN_IPADD) {
      nl_tls_ip_format(g->d.iPAddress, ip, sizeof ip);
      add_to_list(L, "iPAddress", ip, strlen(ip));
    }
  }
  GENERAL_NAMES_free(names);
}

/* cert:extensions(): {[oid] = {name = ..., (subjectAltName's lists)}}. */
static int cert_extensions(lua_State *L) {
  X509 *x = check_cert(L, 1);
  int n = X509_get_ext_count(x);
  lua_newtable(L);
  for (int i = 0; i < n; i++) {
    X509_EXTENSION *ext = X509_get_ext(x, i);
    ASN1_OBJECT *o = X509_EXTENSION_get_object(ext);
    push_objname(L, o, 1);
    lua_newtable(L);
    push_objname(L, o, 0);
    lua_setfield(L, -2, "name");
    if (OBJ_obj2nid(o) == NID_subject_alt_name) add_altnames(L, ext);
    lua_settable(L, -3);
  }
  return 1;
}

static int cert_eq(lua_State *L) {
  lua_pushboolean(L, X509_cmp(check_cert(L, 1), check_cert(L, 2)) == 0);
  return 1;
}

static int cert_tostring(lua_State *L) {
  char names[128];
  nl_tls_cert_names(check_cert(L, 1), names, sizeof names);
  lua_pushfstring(L, "SSL certificate: %s", names);
  return 1;
}

/* ssl.loadcertificate(pem): a certificate object, or nil, err. */
int ssl_loadcertificate(lua_State *L) {
  size_t len;
  const char *pem = luaL_checklstring(L, 1, &len);
  BIO *bio = BIO_new_mem_buf(pem, (int)len);
  X509 *x = bio != NULL ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
  BIO_free(bio);
  if (x == NULL) return nl_pushfail(L, "not a pem certificate", NULL);
  push_cert(L, x);
  return 1;
}

/* ---- a connection's certificates ----------------------------------------------- */

static SSL *check_ssl(lua_State *L, int idx) {
  return ssl_checkopen(L, idx)->ssl;
}

/* The peer's chain as LuaSec numbers it: 1 is the peer's own certificate. */
static X509 *peer_cert(SSL *ssl, int n) {
  STACK_OF(X509) *chain = SSL_get_peer_cert_chain(ssl);
  X509 *x;
  if (n == 1) return SSL_get1_peer_certificate(ssl);
  if (chain == NULL) return NULL;
  /* a client's chain starts with the peer's certificate, a server's not */
  n -= SSL_is_server(ssl) ? 2 : 1;
  if (n < 0 || n >= sk_X509_num(chain)) return NULL;
  x = sk_X509_value(chain, n);
  X509_up_ref(x);
  return x;
}

int ssl_getpeercertificate(lua_State *L) {
  SSL *ssl = check_ssl(L, 1);
  X509 *x = peer_cert(ssl, (int)luaL_optinteger(L, 2, 1));
  if (x == NULL) return nl_pushfail(L, "no certificate", NULL);
  push_cert(L, x);
  return 1;
}

int ssl_getpeerchain(lua_State *L) {
  SSL *ssl = check_ssl(L, 1);
  X509 *x;
  lua_newtable(L);
  for (int i = 1; (x = peer_cert(ssl, i)) != NULL; i++) {
    push_cert(L, x);
    lua_rawseti(L, -2, i);
  }
  if (lua_rawlen(L, -1) == 0) return nl_pushfail(L, "no certificate", NULL);
  return 1;
}

int ssl_getlocalcertificate(lua_State *L) {
  X509 *x = SSL_get_certificate(check_ssl(L, 1));
  if (x == NULL) return nl_pushfail(L, "no certificate", NULL);
  X509_up_ref(x);
  push_cert(L, x);
  return 1;
}

/* conn:getpeerverification(): true, or false and a list of why. */
int ssl_getpeerverification(lua_State *L) {
  SSL *ssl = check_ssl(L, 1);
  X509 *peer = SSL_get1_peer_certificate(ssl);
  long v = SSL_get_verify_result(ssl);
  X509_free(peer);
  if (peer != NULL && v == X509_V_OK) {
    lua_pushboolean(L, 1);
    return 1;
  }
  lua_pushboolean(L, 0);
  lua_createtable(L, 1, 0);
  if (peer == NULL) {
    lua_pushliteral(L, "no peer certificate");
  } else {
    nl_TlsErr err;
    nl_tls_verify_message(ssl, err);
    lua_pushstring(L, err);
  }
  lua_rawseti(L, -2, 1);
  return 2;
}

/* ---- SNI ---------------------------------------------------------------------------- */

/* A server connection's name -> context map (conn:sni(map, strict)),
 * owned by its SSL (ex_data), so it moves with it. */
typedef struct SniEntry {
  char *name;
  SSL_CTX *ctx;
} SniEntry;

typedef struct SniMap {
  int strict, n;
  SniEntry e[];
} SniMap;

static pthread_once_t sni_once = PTHREAD_ONCE_INIT;
static int sni_index = -1;

static void sni_map_free(SniMap *m) {
  if (m == NULL) return;
  for (int i = 0; i < m->n; i++) {
    free(m->e[i].name);
    SSL_CTX_free(m->e[i].ctx);
  }
  free(m);
}

static void sni_exfree(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
                       void *argp) {
  sni_map_free(ptr);
}

static void sni_init(void) {
  sni_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, sni_exfree);
}

/* The servername callback of every server context: picks the context of
 * the name the client asked for; an unknown name is refused when strict. */
static int sni_select(SSL *ssl, int *alert, void *arg) {
  SniMap *m = SSL_get_ex_data(ssl, sni_index);
  const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
  if (m == NULL) return SSL_TLSEXT_ERR_OK;
  for (int i = 0; name != NULL && i < m->n; i++)
    if (strcasecmp(m->e[i].name, name) == 0) {
      SSL_set_SSL_CTX(ssl, m->e[i].ctx);
      return SSL_TLSEXT_ERR_OK;
    }
  if (!m->strict) return SSL_TLSEXT_ERR_OK;
  *alert = SSL_AD_UNRECOGNIZED_NAME;
  return SSL_TLSEXT_ERR_ALERT_FATAL;
}

void ssl_sni_setup(SSL_CTX *ctx) {
  pthread_once(&sni_once, sni_init);
  SSL_CTX_set_tlsext_servername_callback(ctx, sni_select);
}

/* The map at idx (name -> context) as a SniMap; raises on bad entries. */
static SniMap *sni_build(lua_State *L, int idx, int strict) {
  SniMap *m;
  int n = 0;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    if (lua_type(L, -2) != LUA_TSTRING) luaL_error(L, "sni map keys must be host names");
    luaL_checkudata(L, -1, NL_SSLCTX_MT);
    n++;
    lua_pop(L, 1);
  }
  m = calloc(1, sizeof *m + (size_t)n * sizeof m->e[0]);
  if (m == NULL) luaL_error(L, "not enough memory");
  m->strict = strict;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    Context *x = lua_touserdata(L, -1);
    m->e[m->n].name = strdup(lua_tostring(L, -2));
    m->e[m->n].ctx = x->ctx;
    SSL_CTX_up_ref(x->ctx);
    m->n++;
    lua_pop(L, 1);
  }
  return m;
}

/* conn:sni(name) on a client: the name it means to reach (SNI, and
 * verified). conn:sni(map[, strict]) on a server: a context per name. */
int ssl_sni(lua_State *L) {
  Conn *c = ssl_checkconn(L, 1);
  check_ssl(L, 1);
  if (!c->server) {
    nl_TlsErr err;
    if (ssl_sethost(c, luaL_checkstring(L, 2), err) != 0) return nl_pushfail(L, err, NULL);
  } else {
    SniMap *m;
    luaL_checktype(L, 2, LUA_TTABLE);
    m = sni_build(L, 2, lua_toboolean(L, 3));
    pthread_once(&sni_once, sni_init);
    sni_map_free(SSL_get_ex_data(c->ssl, sni_index));
    SSL_set_ex_data(c->ssl, sni_index, m);
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* ---- registration ---------------------------------------------------------------- */

static const luaL_Reg cert_methods[] = {
  {"pem", cert_pem}, {"digest", cert_digest}, {"subject", cert_subject},
  {"issuer", cert_issuer}, {"notbefore", cert_notbefore}, {"notafter", cert_notafter},
  {"validat", cert_validat}, {"serial", cert_serial}, {"pubkey", cert_pubkey},
  {"extensions", cert_extensions}, {NULL, NULL}
};

static const luaL_Reg cert_meta[] = {
  {"__gc", cert_gc}, {"__eq", cert_eq}, {"__tostring", cert_tostring}, {NULL, NULL}
};

void ssl_cert_open(lua_State *L) {
  nl_newclass(L, NL_SSLCERT_MT, cert_methods, cert_meta);
}
