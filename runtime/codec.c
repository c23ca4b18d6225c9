/*
 * codec.c: hex and base64 encoders and decoders (layer: runtime, no Lua).
 * Table-free decoding by character ranges keeps both alphabets in one
 * function; every decoder checks each byte and reports the first bad one.
 */
#include "codec.h"

static const char hex_digits[] = "0123456789abcdef";

void nl_hex_encode(char *out, const unsigned char *in, size_t len) {
  for (size_t i = 0; i < len; i++) {
    out[2 * i] = hex_digits[in[i] >> 4];
    out[2 * i + 1] = hex_digits[in[i] & 15];
  }
}

/* The value of hex digit c, or -1. */
static int hex_value(unsigned char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

static long long fail(nl_CodecError *err, const char *msg, size_t pos) {
  err->msg = msg;
  err->pos = pos;
  err->show_byte = 0;
  err->hint = NULL;
  return -1;
}

/* A byte that does not belong at pos, shown in the message. */
static long long fail_byte(nl_CodecError *err, const char *msg, size_t pos, const char *hint) {
  fail(err, msg, pos);
  err->show_byte = 1;
  err->hint = hint;
  return -1;
}

long long nl_hex_decode(unsigned char *out, const char *in, size_t len, nl_CodecError *err) {
  for (size_t i = 0; i < len; i++) {
    if (hex_value((unsigned char)in[i]) < 0) return fail_byte(err, "invalid hex digit", i + 1, NULL);
  }
  if (len % 2 != 0) return fail(err, "unpaired hex digit (odd length)", len);
  for (size_t i = 0; i < len; i += 2)
    out[i / 2] = (unsigned char)(hex_value((unsigned char)in[i]) << 4 |
                                 hex_value((unsigned char)in[i + 1]));
  return (long long)(len / 2);
}

size_t nl_base64_encoded_len(size_t len) { return (len + 2) / 3 * 4; }

/* The character for six-bit value v in the chosen alphabet. */
static char b64_char(unsigned v, int url) {
  static const char std[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  if (v == 62 && url) return '-';
  if (v == 63 && url) return '_';
  return std[v];
}

size_t nl_base64_encode(char *out, const unsigned char *in, size_t len, int url, int pad) {
  size_t o = 0, i = 0;
  for (; i + 2 < len; i += 3) {
    unsigned long v = (unsigned long)in[i] << 16 | (unsigned long)in[i + 1] << 8 | in[i + 2];
    out[o++] = b64_char(v >> 18 & 63, url);
    out[o++] = b64_char(v >> 12 & 63, url);
    out[o++] = b64_char(v >> 6 & 63, url);
    out[o++] = b64_char(v & 63, url);
  }
  if (i < len) { /* one or two bytes left */
    unsigned long v = (unsigned long)in[i] << 16 | (i + 1 < len ? (unsigned long)in[i + 1] << 8 : 0);
    out[o++] = b64_char(v >> 18 & 63, url);
    out[o++] = b64_char(v >> 12 & 63, url);
    if (i + 1 < len) out[o++] = b64_char(v >> 6 & 63, url);
    else if (pad) out[o++] = '=';
    if (pad) out[o++] = '=';
  }
  return o;
}

/* The six-bit value of c in the chosen alphabet, or -1. */
static int b64_value(unsigned char c, int url) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == (url ? '-' : '+')) return 62;
  if (c == (url ? '_' : '/')) return 63;
  return -1;
}

static int is_space(unsigned char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

/* A character of the other alphabet gets a hint, as mixing the two up is
 * the usual mistake. */
static long long bad_char(nl_CodecError *err, unsigned char c, int url, size_t pos) {
  const char *hint = NULL;
  if (b64_value(c, !url) >= 0)
    hint = url ? "standard base64? use unbase64" : "URL-safe base64? use unbase64url";
  return fail_byte(err, "invalid base64 character", pos, hint);
}

long long nl_base64_decode(unsigned char *out, const char *in, size_t len, int url,
                           nl_CodecError *err) {
  size_t o = 0, n = 0, pads = 0, group_start = 0;
  unsigned long acc = 0;
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)in[i];
    int v;
    if (is_space(c)) continue;
    if (c == '=') {
      if (n < 2 || n + pads >= 4) return fail(err, "misplaced '=' padding", i + 1);
      pads++;
      continue;
    }
    if (pads > 0) return fail(err, "data after '=' padding", i + 1);
    if ((v = b64_value(c, url)) < 0) return bad_char(err, c, url, i + 1);
    if (n == 0) group_start = i + 1;
    acc = acc << 6 | (unsigned)v;
    if (++n == 4) {
      out[o++] = (unsigned char)(acc >> 16);
      out[o++] = (unsigned char)(acc >> 8);
      out[o++] = (unsigned char)acc;
      n = 0;
      acc = 0;
    }
  }
  if (n == 1) return fail(err, "lone base64 character (a group needs two or more)", group_start);
  if (pads > 0 && n + pads != 4) return fail(err, "incomplete '=' padding", 0);
  if (n == 2) out[o++] = (unsigned char)(acc >> 4);
  if (n == 3) {
    out[o++] = (unsigned char)(acc >> 10);
    out[o++] = (unsigned char)(acc >> 2);
  }
  return (long long)o;
}
