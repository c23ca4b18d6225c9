/*
 * crypto.c: the crypto module (layer: bindings): hashes and HMAC through
 * OpenSSL 3's EVP interfaces, random bytes, a constant-time comparison,
 * and hex/base64 (runtime/codec.c).
 *
 * The convention is Python's: digest() gives raw bytes, hexdigest() hex.
 * One call: crypto.sha256(data) (and md5, sha1, sha512, or any digest by
 * name with crypto.digest(name, data)) returns the raw bytes;
 * crypto.hexdigest(name, data) the hex. Streaming: crypto.hash(name[, data])
 * and crypto.hmac(name, key[, data]) make objects with update (chainable),
 * digest, hexdigest (neither ends the object), copy and close.
 *
 * Nothing here waits, so tasks need nothing special; objects hold OpenSSL
 * contexts and stay in their state (crossing to a thread is a clear error).
 * Every OpenSSL failure empties this thread's error queue, so a later TLS
 * call never reads a stale error.
 */
#include <limits.h>
#include <pthread.h>
#include <string.h>

#include "codec.h"
#include "modules.h"
#include "netlua.h"
#include "ossl.h"

#define NL_HASH_MT "crypto.hash"
#define NL_HMAC_MT "crypto.hmac"
#define NL_MD_MT "crypto.digestbox" /* internal: a fetched digest */

/* A hash or an HMAC in progress; both pointers are NULL once closed. */
typedef struct Hasher {
  EVP_MD_CTX *md;
  EVP_MAC_CTX *mac;
} Hasher;

/* ---- errors ----------------------------------------------------------------- */

/* Raises "what: <OpenSSL's reason>", emptying the error queue first. */
static int raise_openssl(lua_State *L, const char *what) {
  unsigned long e = ERR_peek_last_error();
  const char *reason = e != 0 ? ERR_reason_error_string(e) : NULL;
  char text[256];
  snprintf(text, sizeof text, "%s: %s", what, reason != NULL ? reason : "failed in OpenSSL");
  ERR_clear_error();
  return luaL_error(L, "%s", text);
}

/* ---- digests, fetched once per state -------------------------------------- */

/* A fetched digest, in a box that frees it. Every function that names a
 * digest has the state's cache (name -> box) as upvalue 1, so a digest is
 * fetched (a locked look-up in OpenSSL) once per state and name rather than
 * at each call. The cache holds at most MAX_CACHED names: beyond that a
 * digest lives in a box on the stack for the call only. */
typedef struct MdBox {
  EVP_MD *md;
} MdBox;

#define MAX_CACHED 64
#define CACHE_COUNT "#" /* the cache's own entry: how many names it holds */

static int mdbox_gc(lua_State *L) {
  MdBox *box = (MdBox *)luaL_checkudata(L, 1, NL_MD_MT);
  EVP_MD_free(box->md);
  box->md = NULL;
  return 0;
}

/* Pushes the box of the digest called name (from the cache, else fetched
 * now) and returns the digest, or NULL when OpenSSL knows no such name
 * (its box then holds nothing). [-0, +1, m] */
static const EVP_MD *push_md(lua_State *L, const char *name) {
  int cache = lua_upvalueindex(1);
  MdBox *box;
  lua_Integer count;
  if (lua_getfield(L, cache, name) == LUA_TUSERDATA) return ((MdBox *)lua_touserdata(L, -1))->md;
  lua_pop(L, 1);
  box = (MdBox *)lua_newuserdatauv(L, sizeof *box, 0);
  box->md = NULL;
  luaL_setmetatable(L, NL_MD_MT);
  if ((box->md = EVP_MD_fetch(NULL, name, NULL)) == NULL) {
    ERR_clear_error();
    return NULL;
  }
  lua_getfield(L, cache, CACHE_COUNT);
  count = lua_tointeger(L, -1);
  lua_pop(L, 1);
  if (count < MAX_CACHED) {
    lua_pushvalue(L, -1);
    lua_setfield(L, cache, name);
    lua_pushinteger(L, count + 1);
    lua_setfield(L, cache, CACHE_COUNT);
  }
  return box->md;
}

/* The digest named by argument arg, its box pushed; raises "unknown digest
 * 'x'" for a name OpenSSL does not know. [-0, +1, v] */
static const EVP_MD *check_md(lua_State *L, int arg) {
  const char *name = luaL_checkstring(L, arg);
  const EVP_MD *md = push_md(L, name);
  if (md == NULL) luaL_argerror(L, arg, lua_pushfstring(L, "unknown digest '%s'", name));
  return md;
}

/* ---- one call --------------------------------------------------------------- */

/* Pushes len bytes as they are, or as lowercase hex. */
static void push_bytes(lua_State *L, const unsigned char *p, size_t len, int hex) {
  char text[2 * EVP_MAX_MD_SIZE];
  if (!hex || len > EVP_MAX_MD_SIZE) {
    lua_pushlstring(L, (const char *)p, len);
    return;
  }
  nl_hex_encode(text, p, len);
  lua_pushlstring(L, text, 2 * len);
}

/* Pushes the digest with md of the string at idx, raw or hex. */
static int push_one_call(lua_State *L, const EVP_MD *md, int idx, int hex) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned len = 0;
  size_t size;
  const char *data = luaL_checklstring(L, idx, &size);
  if (EVP_MD_get_size(md) <= 0 || EVP_MD_get_size(md) > EVP_MAX_MD_SIZE)
    return luaL_error(L, "digest '%s' has no fixed-size output", EVP_MD_get0_name(md));
  if (!EVP_Digest(data, size, out, &len, md, NULL)) return raise_openssl(L, "digest");
  push_bytes(L, out, len, hex);
  return 1;
}

/* digest(name, data) and hexdigest(name, data); upvalue 2: hex or not. */
static int crypto_digest(lua_State *L) {
  luaL_checkstring(L, 2);
  return push_one_call(L, check_md(L, 1), 2, lua_toboolean(L, lua_upvalueindex(2)));
}

/* md5(data), sha1(data) ...: the raw digest; upvalue 2: the digest's name. */
static int crypto_named(lua_State *L) {
  const char *name = lua_tostring(L, lua_upvalueindex(2));
  const EVP_MD *md;
  luaL_checkstring(L, 1);
  if ((md = push_md(L, name)) == NULL) return luaL_error(L, "OpenSSL offers no %s", name);
  return push_one_call(L, md, 1, 0);
}

/* ---- hash and HMAC objects -------------------------------------------------- */

/* A new closed object of class tname on the stack. [-0, +1, m] */
static Hasher *push_hasher(lua_State *L, const char *tname) {
  Hasher *h = (Hasher *)lua_newuserdatauv(L, sizeof *h, 0);
  h->md = NULL;
  h->mac = NULL;
  luaL_setmetatable(L, tname);
  return h;
}

static Hasher *test_hasher(lua_State *L, int idx) {
  Hasher *h = (Hasher *)luaL_testudata(L, idx, NL_HASH_MT);
  return h != NULL ? h : (Hasher *)luaL_testudata(L, idx, NL_HMAC_MT);
}

static Hasher *check_hasher(lua_State *L, int idx) {
  Hasher *h = test_hasher(L, idx);
  if (h == NULL) luaL_typeerror(L, idx, NL_HASH_MT " or " NL_HMAC_MT);
  return h;
}

/* As check_hasher; using a closed object is a bug and raises. */
static Hasher *check_open(lua_State *L, int idx) {
  Hasher *h = check_hasher(L, idx);
  if (h->md == NULL && h->mac == NULL) {
    luaL_getmetafield(L, idx, "__name");
    luaL_error(L, "attempt to use a closed %s", lua_tostring(L, -1));
  }
  return h;
}

/* h:close(), __close and __gc: frees the context; again does nothing. */
static int hasher_close(lua_State *L) {
  Hasher *h = check_hasher(L, 1);
  EVP_MD_CTX_free(h->md);
  EVP_MAC_CTX_free(h->mac);
  h->md = NULL;
  h->mac = NULL;
  return 0;
}

/* Feeds the string at idx in; raises on an OpenSSL failure. */
static void hasher_feed(lua_State *L, Hasher *h, int idx) {
  size_t len;
  const char *data = luaL_checklstring(L, idx, &len);
  int ok = h->md != NULL ? EVP_DigestUpdate(h->md, data, len)
                         : EVP_MAC_update(h->mac, (const unsigned char *)data, len);
  if (!ok) raise_openssl(L, "update");
}

/* h:update(data) -> h, so that calls chain. */
static int hasher_update(lua_State *L) {
  Hasher *h = check_open(L, 1);
  hasher_feed(L, h, 2);
  lua_settop(L, 1);
  return 1;
}

/* The digest so far, into out, without ending h: a copy of the context is
 * finished (Python's semantics: update may go on afterwards). Its length,
 * or 0 after a failure (error queue left for the caller). */
static size_t finish_copy(Hasher *h, unsigned char *out) {
  size_t len = 0;
  if (h->md != NULL) {
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    unsigned n = 0;
    if (c != NULL && EVP_MD_CTX_copy_ex(c, h->md) && EVP_DigestFinal_ex(c, out, &n)) len = n;
    EVP_MD_CTX_free(c);
  } else {
    EVP_MAC_CTX *c = EVP_MAC_CTX_dup(h->mac);
    if (c != NULL && !EVP_MAC_final(c, out, &len, EVP_MAX_MD_SIZE)) len = 0;
    EVP_MAC_CTX_free(c);
  }
  return len;
}

static int push_digest(lua_State *L, int hex) {
  unsigned char out[EVP_MAX_MD_SIZE];
  size_t len = finish_copy(check_open(L, 1), out);
  if (len == 0) return raise_openssl(L, "digest");
  push_bytes(L, out, len, hex);
  return 1;
}

static int hasher_digest(lua_State *L) { return push_digest(L, 0); }
static int hasher_hexdigest(lua_State *L) { return push_digest(L, 1); }

/* h:copy(): an independent object in the same state of progress. */
static int hasher_copy(lua_State *L) {
  Hasher *h = check_open(L, 1);
  Hasher *c;
  luaL_getmetafield(L, 1, "__name");
  c = push_hasher(L, lua_tostring(L, -1));
  if (h->md != NULL) {
    c->md = EVP_MD_CTX_new();
    if (c->md == NULL || !EVP_MD_CTX_copy_ex(c->md, h->md)) return raise_openssl(L, "copy");
  } else {
    c->mac = EVP_MAC_CTX_dup(h->mac);
    if (c->mac == NULL) return raise_openssl(L, "copy");
  }
  return 1;
}

/* h:size(): the length of the digest in bytes. */
static int hasher_size(lua_State *L) {
  Hasher *h = check_open(L, 1);
  lua_pushinteger(L, h->md != NULL ? EVP_MD_CTX_get_size(h->md)
                                   : (lua_Integer)EVP_MAC_CTX_get_mac_size(h->mac));
  return 1;
}

/* crypto.hash(name[, data]): a streaming hash of any digest OpenSSL knows. */
static int crypto_hash(lua_State *L) {
  const EVP_MD *md;
  Hasher *h;
  lua_settop(L, 2);
  if (!lua_isnil(L, 2)) luaL_checkstring(L, 2);
  md = check_md(L, 1);
  h = push_hasher(L, NL_HASH_MT);
  h->md = EVP_MD_CTX_new();
  if (h->md == NULL || !EVP_DigestInit_ex(h->md, md, NULL)) return raise_openssl(L, "hash");
  if (!lua_isnil(L, 2)) hasher_feed(L, h, 2);
  return 1;
}

/* OpenSSL's HMAC implementation, fetched once for the process (a fetch is
 * a locked lookup); kept until exit. */
static EVP_MAC *hmac_impl;
static pthread_once_t hmac_once = PTHREAD_ONCE_INIT;
static void fetch_hmac(void) { hmac_impl = EVP_MAC_fetch(NULL, "HMAC", NULL); }

/* crypto.hmac(name, key[, data]): a streaming HMAC (RFC 2104) with the
 * digest called name. */
static int crypto_hmac(lua_State *L) {
  size_t keylen;
  const char *key = luaL_checklstring(L, 2, &keylen);
  Hasher *h;
  OSSL_PARAM params[2];
  int ok;
  lua_settop(L, 3);
  if (!lua_isnil(L, 3)) luaL_checkstring(L, 3);
  if (EVP_MD_get_flags(check_md(L, 1)) & EVP_MD_FLAG_XOF) /* "unknown digest" as hash */
    luaL_argerror(L, 1, "an extendable-output digest cannot make an HMAC");
  h = push_hasher(L, NL_HMAC_MT);
  params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST,
                                               (char *)lua_tostring(L, 1), 0);
  params[1] = OSSL_PARAM_construct_end();
  pthread_once(&hmac_once, fetch_hmac);
  h->mac = hmac_impl != NULL ? EVP_MAC_CTX_new(hmac_impl) : NULL;
  ok = h->mac != NULL && EVP_MAC_init(h->mac, (const unsigned char *)key, keylen, params);
  if (!ok) return raise_openssl(L, "hmac");
  if (!lua_isnil(L, 3)) hasher_feed(L, h, 3);
  return 1;
}

/* ---- random bytes and comparison ------------------------------------------- */

/* crypto.random(n): n bytes from OpenSSL's generator, seeded by the OS. */
static int crypto_random(lua_State *L) {
  lua_Integer n = luaL_checkinteger(L, 1);
  luaL_Buffer b;
  unsigned char *p;
  luaL_argcheck(L, n >= 0 && n <= INT_MAX, 1, "byte count out of range (0 to 2^31-1)");
  p = (unsigned char *)luaL_buffinitsize(L, &b, (size_t)n);
  if (n > 0 && RAND_bytes(p, (int)n) != 1) return raise_openssl(L, "random");
  luaL_pushresultsize(&b, (size_t)n);
  return 1;
}

/* crypto.compare(a, b): true when the strings are equal, in time that does
 * not depend on where they differ. Strings of different lengths are unequal
 * at once: the length is the one thing the timing tells. */
static int crypto_compare(lua_State *L) {
  size_t alen, blen;
  const char *a = luaL_checklstring(L, 1, &alen);
  const char *b = luaL_checklstring(L, 2, &blen);
  lua_pushboolean(L, alen == blen && CRYPTO_memcmp(a, b, alen) == 0);
  return 1;
}

/* ---- hex and base64 --------------------------------------------------------- */

static int crypto_hex(lua_State *L) {
  size_t len;
  const unsigned char *s = (const unsigned char *)luaL_checklstring(L, 1, &len);
  luaL_Buffer b;
  luaL_argcheck(L, len <= ((size_t)-1) / 2, 1, "string too long");
  nl_hex_encode(luaL_buffinitsize(L, &b, 2 * len), s, len);
  luaL_pushresultsize(&b, 2 * len);
  return 1;
}

/* Pushes nil and "<msg> '<byte>' at position N (<hint>)", or "<msg> at
 * the end of the input"; s is the input. */
static int push_codec_error(lua_State *L, const char *s, const nl_CodecError *e) {
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  luaL_addstring(&b, e->msg);
  if (e->show_byte) {
    unsigned char c = (unsigned char)s[e->pos - 1];
    char shown[8];
    snprintf(shown, sizeof shown, c >= 32 && c < 127 ? " '%c'" : " '\\x%02X'", c);
    luaL_addstring(&b, shown);
  }
  if (e->pos == 0) {
    luaL_addstring(&b, " at the end of the input");
  } else {
    lua_pushfstring(L, " at position %I", (lua_Integer)e->pos);
    luaL_addvalue(&b);
  }
  if (e->hint != NULL) {
    luaL_addstring(&b, " (");
    luaL_addstring(&b, e->hint);
    luaL_addstring(&b, ")");
  }
  luaL_pushresult(&b);
  return nl_pushfail(L, lua_tostring(L, -1), NULL);
}

static int crypto_unhex(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  luaL_Buffer b;
  nl_CodecError e;
  long long n = nl_hex_decode((unsigned char *)luaL_buffinitsize(L, &b, len / 2 + 1), s, len, &e);
  if (n < 0) return push_codec_error(L, s, &e);
  luaL_pushresultsize(&b, (size_t)n);
  return 1;
}

/* base64(s) and base64url(s); upvalue 2: URL-safe (then without padding). */
static int crypto_base64(lua_State *L) {
  size_t len;
  const unsigned char *s = (const unsigned char *)luaL_checklstring(L, 1, &len);
  int url = lua_toboolean(L, lua_upvalueindex(2));
  luaL_Buffer b;
  luaL_argcheck(L, len <= ((size_t)-1) / 4 * 3 - 3, 1, "string too long");
  char *out = luaL_buffinitsize(L, &b, nl_base64_encoded_len(len));
  luaL_pushresultsize(&b, nl_base64_encode(out, s, len, url, !url));
  return 1;
}

/* unbase64(s) and unbase64url(s); upvalue 2: URL-safe. */
static int crypto_unbase64(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  luaL_Buffer b;
  nl_CodecError e;
  unsigned char *out = (unsigned char *)luaL_buffinitsize(L, &b, len / 4 * 3 + 3);
  long long n = nl_base64_decode(out, s, len, lua_toboolean(L, lua_upvalueindex(2)), &e);
  if (n < 0) return push_codec_error(L, s, &e);
  luaL_pushresultsize(&b, (size_t)n);
  return 1;
}

/* ---- the module ------------------------------------------------------------- */

static const luaL_Reg hasher_methods[] = {
  {"update", hasher_update},
  {"digest", hasher_digest},
  {"hexdigest", hasher_hexdigest},
  {"copy", hasher_copy},
  {"size", hasher_size},
  {"close", hasher_close},
  {NULL, NULL}
};

static const luaL_Reg hasher_meta[] = {
  {"__gc", hasher_close},
  {"__close", hasher_close},
  {NULL, NULL}
};

static const luaL_Reg crypto_funcs[] = {
  {"hash", crypto_hash},
  {"hmac", crypto_hmac},
  {"random", crypto_random},
  {"compare", crypto_compare},
  {"hex", crypto_hex},
  {"unhex", crypto_unhex},
  {NULL, NULL}
};

static const luaL_Reg mdbox_meta[] = {
  {"__gc", mdbox_gc},
  {NULL, NULL}
};

/* Sets t[name] = fn with upvalues the cache and the variant on top, which
 * it pops. Stack: t, variant. [-1, +0, m] */
static void set_closure(lua_State *L, int cache, const char *name, lua_CFunction fn) {
  lua_pushvalue(L, cache);
  lua_insert(L, -2);
  lua_pushcclosure(L, fn, 2);
  lua_setfield(L, -2, name);
}

/* Every function gets the state's digest cache as upvalue 1; those that
 * come in variants get theirs (a flag, a digest's name) as upvalue 2. */
int luaopen_crypto(lua_State *L) {
  static const char *const named[] = {"md5", "sha1", "sha256", "sha512"};
  static const struct {
    const char *name;
    lua_CFunction fn;
    int variant;
  } variants[] = {
    {"digest", crypto_digest, 0},     {"hexdigest", crypto_digest, 1},
    {"base64", crypto_base64, 0},     {"base64url", crypto_base64, 1},
    {"unbase64", crypto_unbase64, 0}, {"unbase64url", crypto_unbase64, 1},
  };
  int cache;
  const char *why = nl_libcrypto_load();
  if (why != NULL) return luaL_error(L, "crypto: %s", why);
  nl_newclass(L, NL_HASH_MT, hasher_methods, hasher_meta);
  nl_newclass(L, NL_HMAC_MT, hasher_methods, hasher_meta);
  nl_newclass(L, NL_MD_MT, NULL, mdbox_meta);
  lua_newtable(L); /* cache */
  cache = lua_gettop(L);
  luaL_newlibtable(L, crypto_funcs); /* cache, module */
  lua_pushvalue(L, cache);
  luaL_setfuncs(L, crypto_funcs, 1);
  for (size_t i = 0; i < sizeof named / sizeof named[0]; i++) {
    lua_pushstring(L, named[i]);
    set_closure(L, cache, named[i], crypto_named);
  }
  for (size_t i = 0; i < sizeof variants / sizeof variants[0]; i++) {
    lua_pushboolean(L, variants[i].variant);
    set_closure(L, cache, variants[i].name, variants[i].fn);
  }
  return 1;
}
