/*
 * json.c: the json module, lua-cjson with netlua's additions (layer:
 * bindings). Upstream cjson (Debian's 2.1.0) parses and serialises; this
 * file adds what that version has no option for, around its calls:
 *
 *   decode: integers stay integers (a number written without '.', 'e' or
 *           'E' that fits a Lua integer), arrays carry json.array_mt, and
 *           errors are rewritten in words by json.lua (_decode_error).
 *   encode: '/' is written plainly, arrays marked with json.array_mt (or
 *           json.empty_array) encode as arrays even when empty, integers are
 *           written exactly and integral floats with ".0"; indent/sort_keys
 *           and odd marked arrays go to json.lua's encoder (_encode_ext).
 *
 * Both stay at cjson's speed: decode is followed by one pass over the text
 * that touches only containers and integers; encode is preceded by one walk
 * over the value and followed by one pass over the output's backslashes.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "netlua.h"
#include "modules.h"

int luaopen_cjson(lua_State *L); /* lua-cjson's; json.c alone calls it */

#define JSON_ARRAY_MT "json.array"
#define JSON_EMPTY_ARRAY_MT "json.empty_array"
#define DEFAULT_MAX_DEPTH 1000 /* cjson's encode_max_depth until changed */

/* The marker an encode puts in place of a value cjson would write wrongly
 * is the string "\1" followed by the text to write ("[]", "123456789012345",
 * "2.0"); cjson writes it as "\u0001TEXT" (quotes included), which the
 * output pass replaces by TEXT. */
#define MARK_BYTE '\1'
#define MARK_JSON "u0001" /* after the backslash */

/* ---- decode: integers and array_mt ------------------------------------- */

/* One pass over text cjson has just accepted, beside the value it built:
 * the text says which numbers were written as integers and which tables
 * were arrays. Valid text is assumed throughout (cjson checked it). */
typedef struct {
  lua_State *L;
  const char *p, *end;
  int array_mt; /* stack index of json.array_mt */
  int decode;   /* stack index of cjson.decode, for keys with escapes */
} Fix;

static int is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static void skip_space(Fix *f) {
  while (f->p < f->end && is_space(*f->p)) f->p++;
}

/* From an opening quote to past the closing one. */
static void skip_string(Fix *f) {
  const char *p = f->p + 1;
  for (;;) {
    const char *q = memchr(p, '"', (size_t)(f->end - p)), *b;
    if (q == NULL) { f->p = f->end; return; }
    for (b = q; b > p && b[-1] == '\\'; b--) {}
    if (((q - b) & 1) == 0) { f->p = q + 1; return; }
    p = q + 1;
  }
}

/* A number or literal ends at a delimiter (cjson accepted what follows). */
static const char *scalar_end(const Fix *f) {
  const char *p = f->p;
  while (p < f->end && !is_space(*p) && *p != ',' && *p != ']' && *p != '}')
    p++;
  return p;
}

/* "-?[0-9]+" that fits a lua_Integer -> 1 and *out; else 0. Up to 18
 * digits cannot overflow, so only longer ones are checked digit by digit. */
static int parse_integer(const char *p, const char *e, lua_Integer *out) {
  int neg = p < e && *p == '-';
  lua_Unsigned v = 0, lim;
  if (neg) p++;
  if (p == e) return 0;
  if (e - p <= 18) {
    for (; p < e; p++) {
      unsigned d = (unsigned)(unsigned char)*p - '0';
      if (d > 9) return 0;
      v = v * 10 + d;
    }
  } else {
    lim = neg ? (lua_Unsigned)LUA_MAXINTEGER + 1u : (lua_Unsigned)LUA_MAXINTEGER;
    for (; p < e; p++) {
      unsigned d = (unsigned)(unsigned char)*p - '0';
      if (d > 9 || v > (lim - d) / 10) return 0;
      v = v * 10 + d;
    }
  }
  *out = neg ? (lua_Integer)(0u - v) : (lua_Integer)v;
  return 1;
}

static void fix_container(Fix *f, int t);
static void push_key(Fix *f, const char *start, const char *end);

/* Sets t[key] (or t[index] without a key) to i when it holds the float
 * with i's value; the check keeps a repeated object key's last value, as
 * cjson did. */
static void set_integer(Fix *f, int t, const char *key, const char *key_end,
                        lua_Integer index, lua_Integer i) {
  lua_State *L = f->L;
  int is_float;
  if (key != NULL) {
    push_key(f, key, key_end);
    lua_pushvalue(L, -1);
    lua_rawget(L, t);
  } else {
    lua_rawgeti(L, t, index);
  }
  is_float = lua_type(L, -1) == LUA_TNUMBER && !lua_isinteger(L, -1) &&
             lua_tonumber(L, -1) == (lua_Number)i;
  lua_pop(L, 1);
  if (!is_float) {
    if (key != NULL) lua_pop(L, 1);
    return;
  }
  lua_pushinteger(L, i);
  if (key != NULL) lua_rawset(L, t); else lua_rawseti(L, t, index);
}

/* The string, number or literal at f->p, member `index` of array t or the
 * value of t[key]: only a number written as an integer is touched. */
static void fix_scalar(Fix *f, int t, const char *key, const char *key_end,
                       lua_Integer index) {
  const char *e;
  lua_Integer i;
  if (*f->p == '"') { skip_string(f); return; }
  e = scalar_end(f);
  if (parse_integer(f->p, e, &i)) set_integer(f, t, key, key_end, index, i);
  f->p = e;
}

/* The array or object at f->p, member `index` of array t or the value of
 * the key on top of the stack. [-(has_key), +0, e] */
static void fix_value(Fix *f, int t, int has_key, lua_Integer index) {
  lua_State *L = f->L;
  if (has_key) lua_rawget(L, t); else lua_rawgeti(L, t, index);
  if (lua_type(L, -1) == LUA_TTABLE) fix_container(f, lua_gettop(L));
  else f->p = f->end; /* cannot happen for text cjson accepted */
  lua_pop(L, 1);
}

/* Pushes the key from its opening quote at `start` to past its closing
 * quote at `end`. */
static void push_key(Fix *f, const char *start, const char *end) {
  size_t len = (size_t)(end - start) - 2;
  if (memchr(start + 1, '\\', len) == NULL) {
    lua_pushlstring(f->L, start + 1, len);
  } else { /* escapes: cjson decodes them as it did in the object */
    lua_pushvalue(f->L, f->decode);
    lua_pushlstring(f->L, start, len + 2);
    lua_call(f->L, 1, 1);
  }
}

/* The array or object at f->p, whose table cjson made is at t. */
static void fix_container(Fix *f, int t) {
  lua_State *L = f->L;
  int array = *f->p == '[';
  lua_Integer n = 0;
  luaL_checkstack(L, 4, "json: nesting too deep");
  if (array) {
    lua_pushvalue(L, f->array_mt);
    lua_setmetatable(L, t);
  } else if (lua_getmetatable(L, t)) { /* a repeated key's earlier array */
    lua_pop(L, 1);
    lua_pushnil(L);
    lua_setmetatable(L, t);
  }
  f->p++;
  skip_space(f);
  if (f->p < f->end && (*f->p == ']' || *f->p == '}')) { f->p++; return; }
  while (f->p < f->end) {
    if (array) {
      n++;
      if (*f->p == '{' || *f->p == '[') fix_value(f, t, 0, n);
      else fix_scalar(f, t, NULL, NULL, n);
    } else {
      const char *key = f->p, *key_end;
      skip_string(f);
      key_end = f->p;
      skip_space(f);
      f->p++; /* ':' */
      skip_space(f);
      if (*f->p == '{' || *f->p == '[') {
        push_key(f, key, key_end);
        fix_value(f, t, 1, 0);
      } else {
        fix_scalar(f, t, key, key_end, 0);
      }
    }
    skip_space(f);
    if (f->p >= f->end || *f->p++ != ',') return; /* ']' or '}' */
    skip_space(f);
  }
}

/* Pushes "file:line: " of the Lua code that called decode, looking past
 * netlua's own Lua halves (req:json() in http.server, res:json() in http)
 * so that the position is the script's; "" when a C function (pcall)
 * called it. [-0, +1, m] */
static void push_where(lua_State *L) {
  lua_Debug ar;
  for (int level = 1; lua_getstack(L, level, &ar); level++) {
    if (!lua_getinfo(L, "Sl", &ar) || ar.currentline <= 0) break;
    if (strncmp(ar.source, "=[netlua]", 9) == 0) continue;
    lua_pushfstring(L, "%s:%d: ", ar.short_src, ar.currentline);
    return;
  }
  lua_pushliteral(L, "");
}

/* json.decode(text): cjson.decode, then the fix-up pass; an error is
 * rewritten by json.lua and raised at the caller's line.
 * upvalues: 1 cjson.decode, 2 json._decode_error, 3 array_mt */
static int json_decode(lua_State *L) {
  size_t len;
  const char *text = luaL_checklstring(L, 1, &len);
  Fix f;
  lua_settop(L, 1);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_pushvalue(L, 1);
  if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
    if (lua_type(L, -1) != LUA_TSTRING) return lua_error(L);
    lua_pushvalue(L, lua_upvalueindex(2)); /* _decode_error(text, msg) */
    lua_insert(L, 1);
    lua_call(L, 2, 1);
    push_where(L);
    lua_insert(L, -2);
    lua_concat(L, 2);
    return lua_error(L);
  }
  lua_pushvalue(L, lua_upvalueindex(3)); /* 3: array_mt */
  lua_pushvalue(L, lua_upvalueindex(1)); /* 4: cjson.decode */
  lua_pushvalue(L, 2);                   /* 5: the value */
  f.L = L;
  f.p = text;
  f.end = text + len;
  f.array_mt = 3;
  f.decode = 4;
  skip_space(&f);
  if (lua_type(L, 5) == LUA_TTABLE) fix_container(&f, 5);
  else if (lua_type(L, 5) == LUA_TNUMBER) {
    lua_Integer i;
    if (parse_integer(f.p, scalar_end(&f), &i)) lua_pushinteger(L, i);
  }
  return 1;
}

/* ---- encode ------------------------------------------------------------ */

/* One walk over the value before cjson sees it. It finds the values cjson
 * would write wrongly (an empty marked array, an integer longer than
 * cjson's precision, a float it would print as an integer) and notes each
 * as a site to patch; and it decides when only json.lua's encoder will do
 * (a marked array that is not a plain 1..n sequence, a number key cjson
 * would round). */
typedef struct {
  lua_State *L;
  int precision; /* cjson's encode_number_precision; 0 until needed */
  int limit;     /* cjson's encode_max_depth; 0 until needed */
  int fallback;  /* json.lua's encoder must do it */
  int abort;     /* nested too deep (a cycle?): let cjson report it */
  int marklike;  /* a string starts with MARK_BYTE */
  int sites;     /* stack index of the site list */
  int nsites;
} Walk;

/* upvalues of encode: 1 cjson.encode, 2 json._encode_ext, 3 array_mt,
 * 4 empty_array's metatable, 5 cjson.encode_number_precision,
 * 6 cjson.encode_max_depth, 7 the output buffer (OutBuf), 8 the site list
 * kept between calls (nil while a call has it) */

static int ask_cjson(lua_State *L, int upvalue) {
  int v;
  lua_pushvalue(L, lua_upvalueindex(upvalue));
  lua_call(L, 0, 1);
  v = (int)lua_tointeger(L, -1);
  lua_pop(L, 1);
  return v;
}

static int is_marked_array(lua_State *L, int idx) {
  int marked;
  if (!lua_getmetatable(L, idx)) return 0;
  marked = lua_rawequal(L, -1, lua_upvalueindex(3)) ||
           lua_rawequal(L, -1, lua_upvalueindex(4));
  lua_pop(L, 1);
  return marked;
}

static const double pow10_table[] = {
  1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13,
  1e14, 1e15, 1e16, 1e17
};

static int precision(Walk *w) {
  if (w->precision == 0) {
    w->precision = ask_cjson(w->L, 5);
    if (w->precision < 1) w->precision = 1;
    if (w->precision > 17) w->precision = 17;
  }
  return w->precision;
}

/* True when cjson ("%.<precision>g") would write the number at idx so that
 * it reads back as something else: an integer with more digits than the
 * precision (rounded), or a float that prints like an integer ("1"). */
static int number_needs_text(Walk *w, int idx) {
  lua_State *L = w->L;
  if (lua_isinteger(L, idx)) {
    lua_Integer i = lua_tointeger(L, idx);
    double limit = pow10_table[precision(w)];
    return (double)i >= limit || (double)i <= -limit;
  } else {
    double x = lua_tonumber(L, idx), a = fabs(x), near;
    char buf[64];
    if (!isfinite(x)) return 0;
    if (a < 0.5) return x == 0; /* "0", "-0"; others have '.' or 'e' */
    if (a >= pow10_table[precision(w)]) return 0; /* exponent form */
    if (x == floor(x)) return 1;
    near = fabs(x - nearbyint(x));
    if (near > a * 10.0 / pow10_table[precision(w)]) return 0; /* keeps '.' */
    snprintf(buf, sizeof buf, "%.*g", precision(w), x);
    return strpbrk(buf, ".eEin") == NULL;
  }
}

/* The text a site's value is written as. [-0, +1, e] */
static void push_number_text(lua_State *L, int idx) {
  if (lua_isinteger(L, idx)) {
    lua_pushfstring(L, "%I", (LUAI_UACINT)lua_tointeger(L, idx));
  } else {
    lua_pushvalue(L, lua_upvalueindex(1)); /* cjson.encode(x) .. ".0" */
    lua_pushvalue(L, idx);
    lua_call(L, 1, 1);
    lua_pushliteral(L, ".0");
    lua_concat(L, 2);
  }
}


/* Notes that t[key] (key at -3, value at -2) is to be replaced by the
 * marker on top of the stack: a site is {t, key, value, marker} in the
 * site list. [-1, +0, e] */
static void add_site(Walk *w, int t) {
  lua_State *L = w->L;
  int base = w->nsites++ * 4;
  lua_pushvalue(L, t);
  lua_rawseti(L, w->sites, base + 1);
  lua_pushvalue(L, -3);
  lua_rawseti(L, w->sites, base + 2);
  lua_pushvalue(L, -2);
  lua_rawseti(L, w->sites, base + 3);
  lua_rawseti(L, w->sites, base + 4);
}

static int is_empty(lua_State *L, int idx) {
  lua_pushnil(L);
  if (lua_next(L, idx) == 0) return 1;
  lua_pop(L, 2);
  return 0;
}

static int starts_with_mark(lua_State *L, int idx) {
  size_t len;
  const char *s = lua_tolstring(L, idx, &len);
  return len > 0 && s[0] == MARK_BYTE;
}

/* Walks the table at t (an absolute index). Stops early once the answer is
 * json.lua's encoder, or cjson's nesting error (a cycle ends there too, so
 * a table that holds itself twice costs no more than the depth limit). */
static void walk_table(Walk *w, int t, int depth) {
  lua_State *L = w->L;
  int object = 0, bigkey = 0;
  lua_Integer count = 0, max = 0;
  if (depth >= DEFAULT_MAX_DEPTH) {
    if (w->limit == 0) w->limit = ask_cjson(L, 6);
    if (depth >= w->limit) { w->abort = 1; return; }
  }
  luaL_checkstack(L, 6, "json: nesting too deep");
  lua_pushnil(L);
  while (lua_next(L, t) != 0) { /* key at -2, value at -1 */
    int kt = lua_type(L, -2), vt = lua_type(L, -1);
    if (kt == LUA_TNUMBER) {
      if (lua_isinteger(L, -2) && lua_tointeger(L, -2) >= 1) {
        count++;
        if (lua_tointeger(L, -2) > max) max = lua_tointeger(L, -2);
      } else {
        object = 1;
      }
      if (number_needs_text(w, -2)) bigkey = 1;
    } else {
      object = 1;
      if (kt == LUA_TSTRING && starts_with_mark(L, -2)) w->marklike = 1;
    }
    if (vt == LUA_TNUMBER) {
      if (number_needs_text(w, -1)) {
        int v = lua_gettop(L);
        lua_pushliteral(L, "\1");
        push_number_text(L, v);
        lua_concat(L, 2);
        add_site(w, t);
      }
    } else if (vt == LUA_TSTRING) {
      if (starts_with_mark(L, -1)) w->marklike = 1;
    } else if (vt == LUA_TTABLE) {
      int v = lua_gettop(L);
      if (is_marked_array(L, v) && is_empty(L, v)) {
        lua_pushliteral(L, "\1[]");
        add_site(w, t);
      } else {
        walk_table(w, v, depth + 1);
      }
    }
    lua_pop(L, 1);
    if (w->fallback || w->abort) { lua_pop(L, 1); return; }
  }
  /* cjson writes a marked array right only when it is a plain 1..n
   * sequence, and a number key only when it has few digits. */
  if ((is_marked_array(L, t) && (object || count != max)) || bigkey)
    w->fallback = 1;
}

/* The output pass's buffer, kept between calls as cjson keeps its own
 * (encode_keep_buffer): a fresh megabyte on every call costs more in page
 * faults than the pass itself. encode holds it as upvalue 7. */
typedef struct {
  char *data;
  size_t cap;
} OutBuf;

#define OUTBUF_MT "json.outbuf"
#define OUTBUF_KEEP ((size_t)4 << 20) /* a larger one is freed after use */

static int outbuf_gc(lua_State *L) {
  OutBuf *o = (OutBuf *)luaL_checkudata(L, 1, OUTBUF_MT);
  free(o->data);
  o->data = NULL;
  o->cap = 0;
  return 0;
}

static void out_add(lua_State *L, OutBuf *o, size_t *n, const char *s, size_t len) {
  if (len > o->cap - *n) {
    size_t cap = o->cap * 2 > *n + len ? o->cap * 2 : *n + len + 4096;
    char *data = (char *)realloc(o->data, cap);
    if (data == NULL) luaL_error(L, "not enough memory");
    o->data = data;
    o->cap = cap;
  }
  memcpy(o->data + *n, s, len);
  *n += len;
}

/* Pushes the output at `out` with "\/" written "/" and, when there are
 * sites, each marker "\u0001TEXT" (quotes included) written TEXT. Only
 * backslashes are looked at, pair by pair, so an escaped quote never
 * starts a marker. [-0, +1, m] */
static void push_output(lua_State *L, int out, int sites) {
  OutBuf *o = (OutBuf *)lua_touserdata(L, lua_upvalueindex(7));
  size_t len, n = 0;
  const char *s = lua_tolstring(L, out, &len);
  const char *end = s + len, *p = s, *q, *pair_end = NULL;
  if (sites == 0 && memchr(s, '/', len) == NULL) {
    lua_pushvalue(L, out);
    return;
  }
  while ((q = memchr(p, '\\', (size_t)(end - p))) != NULL && q + 1 < end) {
    if (q[1] == '/') {
      out_add(L, o, &n, p, (size_t)(q - p));
      out_add(L, o, &n, "/", 1);
      p = pair_end = q + 2;
    } else if (sites && q > s && q[-1] == '"' && pair_end != q &&
               end - q > 6 && memcmp(q + 1, MARK_JSON, 5) == 0) {
      const char *text = q + 6, *close = memchr(text, '"', (size_t)(end - text));
      if (close == NULL) close = end;
      out_add(L, o, &n, p, (size_t)(q - 1 - p)); /* not the quote */
      out_add(L, o, &n, text, (size_t)(close - text));
      p = pair_end = close + 1; /* past the closing quote */
    } else {
      out_add(L, o, &n, p, (size_t)(q + 2 - p));
      p = pair_end = q + 2;
    }
  }
  out_add(L, o, &n, p, (size_t)(end - p));
  lua_pushlstring(L, o->data, n);
  if (o->cap > OUTBUF_KEEP) {
    free(o->data);
    o->data = NULL;
    o->cap = 0;
  }
}

/* Puts each site's marker (apply) or its value back (restore) in place:
 * fields that exist, so nothing is allocated and nothing can fail. */
static void set_sites(lua_State *L, int sites, int n, int apply) {
  for (int i = apply ? 0 : n - 1; apply ? i < n : i >= 0; i += apply ? 1 : -1) {
    lua_rawgeti(L, sites, i * 4 + 1);
    lua_rawgeti(L, sites, i * 4 + 2);
    lua_rawgeti(L, sites, i * 4 + (apply ? 4 : 3));
    lua_rawset(L, -3);
    lua_pop(L, 1);
  }
}

/* Empties the site list (it must not keep the caller's values alive) and
 * gives it back to the next call. */
static void put_back_sites(lua_State *L, int sites, int n) {
  for (int i = 1; i <= n * 4; i++) {
    lua_pushnil(L);
    lua_rawseti(L, sites, i);
  }
  lua_pushvalue(L, sites);
  lua_replace(L, lua_upvalueindex(8));
}

/* json.encode(v[, opts]): cjson's encoder, with the sites the walk found
 * replaced by markers for the duration of the call (and put back however
 * it ends), then the output pass. Options, and the rare values the walk
 * sends there, go to json.lua's encoder. */
static int json_encode(lua_State *L) {
  Walk w;
  int with_options = !lua_isnoneornil(L, 2), status;
  luaL_checkany(L, 1);
  if (with_options) luaL_checktype(L, 2, LUA_TTABLE);
  lua_settop(L, 2);
  /* 3: the site list; a call made while another has it (from a __gc)
   * makes its own */
  if (lua_pushvalue(L, lua_upvalueindex(8)), lua_type(L, 3) == LUA_TTABLE) {
    lua_pushnil(L);
    lua_replace(L, lua_upvalueindex(8));
  } else {
    lua_pop(L, 1);
    lua_newtable(L);
  }
  memset(&w, 0, sizeof w);
  w.L = L;
  w.sites = 3;
  if (!with_options) {
    if (lua_type(L, 1) == LUA_TTABLE) {
      if (is_marked_array(L, 1) && is_empty(L, 1)) {
        lua_pushliteral(L, "[]");
        return 1;
      }
      walk_table(&w, 1, 0);
    } else if (lua_type(L, 1) == LUA_TNUMBER && number_needs_text(&w, 1)) {
      push_number_text(L, 1);
      return 1;
    }
  }
  if (w.nsites > 0 && w.marklike) w.fallback = 1;
  if (w.abort || w.fallback || with_options) {
    put_back_sites(L, 3, w.nsites);
    w.nsites = 0;
  }
  if (with_options || w.fallback) {
    lua_pushvalue(L, lua_upvalueindex(2)); /* json._encode_ext(v, opts) */
    lua_pushvalue(L, 1);
    lua_pushvalue(L, 2);
    lua_call(L, 2, 1);
    push_output(L, 4, 0);
    return 1;
  }
  set_sites(L, 3, w.nsites, 1);
  lua_pushvalue(L, lua_upvalueindex(1)); /* cjson.encode(v); cjson raises */
  lua_pushvalue(L, 1);                   /* its nesting error on abort */
  status = lua_pcall(L, 1, 1, 0);
  set_sites(L, 3, w.nsites, 0);
  if (!w.abort) put_back_sites(L, 3, w.nsites);
  if (status != LUA_OK) return lua_error(L);
  push_output(L, 4, w.nsites > 0);
  return 1;
}

/* json.array(t): marks t as an array (so {} encodes as []) and returns it. */
static int json_array(lua_State *L) {
  if (lua_isnoneornil(L, 1)) {
    lua_settop(L, 0);
    lua_newtable(L);
  }
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_setmetatable(L, 1);
  return 1;
}

static int refuse_write(lua_State *L) {
  return luaL_error(L, "json.empty_array is read-only");
}

int luaopen_json(lua_State *L) {
  lua_settop(L, 0);
  luaopen_cjson(L);                          /* 1: cjson */
  luaL_newmetatable(L, JSON_ARRAY_MT);       /* 2: array_mt */
  luaL_newmetatable(L, JSON_EMPTY_ARRAY_MT); /* 3: empty array's mt */
  lua_pushcfunction(L, refuse_write);
  lua_setfield(L, 3, "__newindex");
  lua_pushvalue(L, 1);
  lua_pushvalue(L, 2);
  lua_pushvalue(L, 3);
  nl_runembedded(L, "json", 3);              /* 4: module */
  lua_getfield(L, 1, "encode");
  lua_getfield(L, 4, "_encode_ext");
  lua_pushvalue(L, 2);
  lua_pushvalue(L, 3);
  lua_getfield(L, 1, "encode_number_precision");
  lua_getfield(L, 1, "encode_max_depth");
  memset(lua_newuserdatauv(L, sizeof(OutBuf), 0), 0, sizeof(OutBuf));
  if (luaL_newmetatable(L, OUTBUF_MT)) {
    lua_pushcfunction(L, outbuf_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_setmetatable(L, -2);
  lua_newtable(L);
  lua_pushcclosure(L, json_encode, 8);
  lua_setfield(L, 4, "encode");
  lua_getfield(L, 1, "decode");
  lua_getfield(L, 4, "_decode_error");
  lua_pushvalue(L, 2);
  lua_pushcclosure(L, json_decode, 3);
  lua_setfield(L, 4, "decode");
  lua_pushvalue(L, 2);
  lua_pushcclosure(L, json_array, 1);
  lua_setfield(L, 4, "array");
  return 1;
}

/* ---- cjson.safe ---------------------------------------------------------- */

/* Calls upvalue 1 with the arguments; an error becomes nil, message. */
static int safe_call(lua_State *L) {
  int n = lua_gettop(L);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  if (lua_pcall(L, n, LUA_MULTRET, 0) == LUA_OK) return lua_gettop(L);
  luaL_pushfail(L);
  lua_insert(L, -2);
  return 2;
}

/* require "cjson.safe": the json module's functions, with encode and decode
 * returning nil and the message instead of raising, as upstream's safe
 * variant does (its messages are json's). */
int luaopen_json_safe(lua_State *L) {
  static const char *const wrapped[] = {"encode", "decode", NULL};
  luaL_requiref(L, "json", luaopen_json, 0);
  lua_newtable(L);
  lua_pushnil(L);
  while (lua_next(L, -3) != 0) { /* json, safe, key, value */
    lua_pushvalue(L, -2);
    lua_insert(L, -2);
    lua_rawset(L, -4);
  }
  for (int i = 0; wrapped[i] != NULL; i++) {
    lua_getfield(L, -2, wrapped[i]);
    lua_pushcclosure(L, safe_call, 1);
    lua_setfield(L, -2, wrapped[i]);
  }
  lua_pushliteral(L, "cjson.safe");
  lua_setfield(L, -2, "_NAME");
  return 1;
}
