/*
 * ssl_context.c: the ssl module's contexts (layer: bindings): ssl.newcontext
 * turns LuaSec's parameter table (mode, protocol, key, certificate, CA
 * files, verify, options, ciphers, ALPN, password) into an SSL_CTX made by
 * runtime/tls.c; the connections (ssl.c) are made from it.
 */
#include <stdlib.h>
#include <string.h>

#include "netlua.h"
#include "ssl_int.h"

Context *ssl_checkcontext(lua_State *L, int idx) {
  Context *x = luaL_checkudata(L, idx, NL_SSLCTX_MT);
  if (x->ctx == NULL) luaL_error(L, "attempt to use a freed ssl context");
  return x;
}

int ssl_context_gc(lua_State *L) {
  Context *x = luaL_checkudata(L, 1, NL_SSLCTX_MT);
  SSL_CTX_free(x->ctx);
  x->ctx = NULL;
  return 0;
}

/* params[field] as a string, or NULL when absent. Raises when it is of
 * another type. */
static const char *opt_field(lua_State *L, const char *field) {
  const char *s;
  lua_getfield(L, 1, field);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    return NULL;
  }
  if (lua_type(L, -1) != LUA_TSTRING)
    luaL_error(L, "ssl parameter '%s' must be a string, got %s", field, luaL_typename(L, -1));
  s = lua_tostring(L, -1);
  lua_pop(L, 1); /* the table keeps it alive */
  return s;
}

/* LuaSec's names for the flags of `verify` and `verifyext`. */
typedef struct {
  const char *name;
  int flag;
} FlagName;

static const FlagName verify_names[] = {
  {"none", SSL_VERIFY_NONE}, {"peer", SSL_VERIFY_PEER}, {"client_once", SSL_VERIFY_CLIENT_ONCE},
  {"fail_if_no_peer_cert", SSL_VERIFY_FAIL_IF_NO_PEER_CERT}, {NULL, 0}};

static const FlagName verifyext_names[] = {
  {"lsec_continue", NL_TLS_CONTINUE}, {"lsec_ignore_purpose", NL_TLS_IGNORE_PURPOSE},
  {"crl_check", NL_TLS_CRL_CHECK}, {"crl_check_chain", NL_TLS_CRL_CHAIN}, {NULL, 0}};

/* The flag `name` stands for in `names`, or an error listing them. */
static int flag_of(lua_State *L, const FlagName *names, const char *field, const char *name) {
  luaL_Buffer b;
  for (int i = 0; names[i].name != NULL; i++)
    if (strcmp(name, names[i].name) == 0) return names[i].flag;
  luaL_buffinit(L, &b);
  for (int i = 0; names[i].name != NULL; i++) {
    if (i > 0) luaL_addstring(&b, ", ");
    luaL_addstring(&b, names[i].name);
  }
  luaL_pushresult(&b);
  return luaL_error(L, "invalid %s option '%s' (%s)", field, name, lua_tostring(L, -1));
}

/* params[field]: a name or a list of names, their flags or'ed; unset
 * (VERIFY_UNSET) when absent. */
static int parse_flags(lua_State *L, const char *field, const FlagName *names) {
  int flags = 0, top = lua_gettop(L);
  lua_getfield(L, 1, field);
  if (lua_isnil(L, -1)) flags = VERIFY_UNSET;
  else if (lua_type(L, -1) == LUA_TSTRING) flags = flag_of(L, names, field, lua_tostring(L, -1));
  else if (lua_istable(L, -1))
    for (lua_Integer i = 1; lua_rawgeti(L, -1, i) == LUA_TSTRING; i++) {
      flags |= flag_of(L, names, field, lua_tostring(L, -1));
      lua_pop(L, 1);
    }
  else luaL_error(L, "ssl parameter '%s' must be a string or a list", field);
  lua_settop(L, top);
  return flags;
}

/* params.alpn (a name or a list of names) in wire format, pushed as a
 * string; nothing pushed when absent. Returns whether it pushed. */
static int push_alpn(lua_State *L, int idx) {
  luaL_Buffer b;
  int t = lua_type(L, idx);
  if (t == LUA_TNIL || t == LUA_TNONE) return 0;
  idx = lua_absindex(L, idx); /* luaL_buffinit pushes */
  luaL_buffinit(L, &b);
  for (lua_Integer i = 1;; i++) {
    size_t len;
    const char *name;
    if (t == LUA_TSTRING) name = lua_tolstring(L, idx, &len);
    else if (t == LUA_TTABLE && lua_rawgeti(L, idx, i) == LUA_TSTRING) {
      name = lua_tolstring(L, -1, &len);
      lua_pop(L, 1); /* the table keeps it */
    } else if (t == LUA_TTABLE) {
      lua_pop(L, 1);
      break;
    } else {
      return luaL_error(L, "alpn must be a string or a list of strings");
    }
    if (len == 0 || len > 255) luaL_error(L, "invalid alpn protocol name '%s'", name);
    luaL_addchar(&b, (char)len);
    luaL_addlstring(&b, name, len);
    if (t == LUA_TSTRING) break;
  }
  luaL_pushresult(&b);
  return 1;
}

/* One of LuaSec's options: those that still mean something on OpenSSL 3
 * are applied; the rest (no_sslv2, single_dh_use ...) are what OpenSSL 3
 * does anyway. */
static void apply_option(SSL_CTX *ctx, const char *o) {
  if (strcmp(o, "cipher_server_preference") == 0)
    SSL_CTX_set_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE);
  else if (strcmp(o, "no_compression") == 0)
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION);
  else if (strcmp(o, "no_ticket") == 0)
    SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
}

/* params.options: a name or a list of names. */
static void apply_options(lua_State *L, SSL_CTX *ctx) {
  int top = lua_gettop(L), t = lua_getfield(L, 1, "options");
  if (t == LUA_TSTRING) apply_option(ctx, lua_tostring(L, -1));
  else if (t == LUA_TTABLE)
    for (lua_Integer i = 1; lua_rawgeti(L, -1, i) == LUA_TSTRING; i++) {
      apply_option(ctx, lua_tostring(L, -1));
      lua_pop(L, 1);
    }
  lua_settop(L, top);
}

/* params.password: a string, or (as LuaSec allows) a function called with
 * no arguments that returns it; left on the stack while the key loads.
 * NULL for none. */
static const char *opt_password(lua_State *L) {
  if (lua_getfield(L, 1, "password") != LUA_TFUNCTION) {
    lua_pop(L, 1);
    return opt_field(L, "password");
  }
  lua_call(L, 0, 1);
  if (lua_type(L, -1) != LUA_TSTRING)
    luaL_error(L, "ssl parameter 'password': the function returned %s, not a string",
               luaL_typename(L, -1));
  return lua_tostring(L, -1);
}

/* The settings of params that may fail, in LuaSec's order. 0, or -1 with
 * err set. */
static int configure(lua_State *L, Context *x, nl_TlsErr err) {
  const char *protocol = opt_field(L, "protocol");
  const char *cafile = opt_field(L, "cafile"), *capath = opt_field(L, "capath");
  const char *ciphers = opt_field(L, "ciphers"), *suites = opt_field(L, "ciphersuites");
  const char *curve = opt_field(L, "curve"), *password = opt_password(L);
  SSL_CTX *ctx = x->ctx;
  int top = lua_gettop(L);
  if (curve == NULL) curve = opt_field(L, "curveslist");
  if (protocol != NULL && nl_tls_ctx_protocol(ctx, protocol, err) != 0) return -1;
  if (nl_tls_ctx_keypair(ctx, opt_field(L, "certificate"), opt_field(L, "key"),
                         password, err) != 0) return -1;
  if ((cafile != NULL || capath != NULL) && nl_tls_ctx_trust(ctx, cafile, capath, err) != 0)
    return -1;
  if (ciphers != NULL && SSL_CTX_set_cipher_list(ctx, ciphers) != 1) {
    snprintf(err, NL_TLS_ERRSIZE, "invalid cipher list '%s'", ciphers);
    return -1;
  }
  if (suites != NULL && SSL_CTX_set_ciphersuites(ctx, suites) != 1) {
    snprintf(err, NL_TLS_ERRSIZE, "invalid cipher suites '%s'", suites);
    return -1;
  }
  if (curve != NULL && SSL_CTX_set1_groups_list(ctx, curve) != 1) {
    snprintf(err, NL_TLS_ERRSIZE, "invalid curve '%s'", curve);
    return -1;
  }
  if (lua_getfield(L, 1, "alpn") != LUA_TNIL && push_alpn(L, -1)) {
    size_t len;
    const char *wire = lua_tolstring(L, -1, &len);
    if (nl_tls_ctx_alpn(ctx, (const unsigned char *)wire, len, err) != 0) return -1;
  }
  lua_settop(L, top);
  return 0;
}

/* ssl.newcontext(params): a context, or nil, err. */
int ssl_newcontext(lua_State *L) {
  const char *mode;
  Context *x;
  nl_TlsErr err;
  int server, depth, verifyext;
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  mode = opt_field(L, "mode");
  if (mode == NULL || (strcmp(mode, "client") != 0 && strcmp(mode, "server") != 0))
    return luaL_error(L, "ssl parameter 'mode' must be \"client\" or \"server\"");
  server = strcmp(mode, "server") == 0;
  x = lua_newuserdatauv(L, sizeof *x, 0); /* params, ctx */
  memset(x, 0, sizeof *x);
  luaL_setmetatable(L, NL_SSLCTX_MT);
  x->server = server;
  x->verify = parse_flags(L, "verify", verify_names);
  verifyext = parse_flags(L, "verifyext", verifyext_names);
  lua_getfield(L, 1, "depth");
  depth = (int)luaL_optinteger(L, -1, -1);
  lua_pop(L, 1);
  x->ctx = nl_tls_ctx_new(server, err);
  if (x->ctx == NULL || configure(L, x, err) != 0) return nl_pushfail(L, err, NULL);
  if (x->verify != VERIFY_UNSET) nl_tls_ctx_verify(x->ctx, x->verify);
  if (verifyext != VERIFY_UNSET) nl_tls_ctx_verifyext(x->ctx, verifyext);
  if (depth >= 0) SSL_CTX_set_verify_depth(x->ctx, depth);
  apply_options(L, x->ctx);
  if (server) ssl_sni_setup(x->ctx);
  lua_settop(L, 2);
  return 1;
}

