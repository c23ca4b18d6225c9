/*
 * wsframe.c: the WebSocket frame codec (layer: runtime, no Lua). Frame
 * layout (RFC 6455, section 5.2): FIN, three RSV bits and the opcode; MASK
 * and a 7-bit length, 126 for a 16-bit length that follows, 127 for a
 * 64-bit one; the 4-byte mask key when MASK is set; the payload.
 */
#include <string.h>

#include "wsframe.h"

int nl_ws_parse(const unsigned char *buf, size_t len, nl_WsHeader *h, const char **why) {
  size_t need = 2, extra;
  uint64_t length;
  h->size = 2;
  if (len < 2) return 0;
  h->fin = buf[0] >> 7;
  h->rsv = buf[0] >> 4 & 7;
  h->opcode = buf[0] & 15;
  h->masked = buf[1] >> 7;
  length = buf[1] & 127;
  extra = length == 126 ? 2 : length == 127 ? 8 : 0;
  need += extra + (h->masked ? 4 : 0);
  h->size = need;
  if (len < need) return 0;
  if (extra > 0) {
    length = 0;
    for (size_t i = 0; i < extra; i++) length = length << 8 | buf[2 + i];
    if (length >> 63) {
      *why = "frame length has its most significant bit set";
      return -1;
    }
  }
  h->length = length;
  if (h->masked) memcpy(h->key, buf + 2 + extra, 4);
  return (int)need;
}

size_t nl_ws_header(unsigned char *out, int fin, int opcode, uint64_t length,
                    const unsigned char *key) {
  size_t n = 2;
  out[0] = (unsigned char)((fin ? 0x80 : 0) | (opcode & 15));
  out[1] = key != NULL ? 0x80 : 0;
  if (length < 126) {
    out[1] |= (unsigned char)length;
  } else if (length <= 0xFFFF) {
    out[1] |= 126;
    out[n++] = (unsigned char)(length >> 8);
    out[n++] = (unsigned char)length;
  } else {
    out[1] |= 127;
    for (int shift = 56; shift >= 0; shift -= 8) out[n++] = (unsigned char)(length >> shift);
  }
  if (key != NULL) {
    memcpy(out + n, key, 4);
    n += 4;
  }
  return n;
}

/* Eight bytes at a time with the key repeated (rotated to the offset),
 * through memcpy so that no load needs alignment; the tail byte by byte. */
void nl_ws_mask(unsigned char *data, size_t len, const unsigned char key[4], uint64_t offset) {
  unsigned char rot[8];
  uint64_t word, m;
  size_t i = 0;
  for (int j = 0; j < 8; j++) rot[j] = key[(offset + (uint64_t)j) & 3];
  memcpy(&m, rot, 8);
  for (; i + 8 <= len; i += 8) {
    memcpy(&word, data + i, 8);
    word ^= m;
    memcpy(data + i, &word, 8);
  }
  for (; i < len; i++) data[i] ^= rot[i & 7];
}

/* ---- UTF-8 ------------------------------------------------------------------ */

/* A state between bytes of a character: how many continuation bytes are
 * still due (bits 0-1) and the range the next one must fall in (bits 2-4):
 * after E0 it must be A0..BF (no overlong form), after ED 80..9F (no
 * surrogate), after F0 90..BF, after F4 80..8F (nothing above U+10FFFF). */
enum { ANY, FROM_A0, UPTO_9F, FROM_90, UPTO_8F };

static int range_ok(int range, unsigned char c) {
  static const unsigned char lo[] = {0x80, 0xA0, 0x80, 0x90, 0x80};
  static const unsigned char hi[] = {0xBF, 0xBF, 0x9F, 0xBF, 0x8F};
  return c >= lo[range] && c <= hi[range];
}

/* The state after lead byte c (0 for ASCII), or NL_UTF8_BAD. */
static int lead(unsigned char c) {
  if (c < 0x80) return 0;
  if (c >= 0xC2 && c <= 0xDF) return 1 | ANY << 2;
  if (c == 0xE0) return 2 | FROM_A0 << 2;
  if (c == 0xED) return 2 | UPTO_9F << 2;
  if (c >= 0xE1 && c <= 0xEF) return 2 | ANY << 2;
  if (c == 0xF0) return 3 | FROM_90 << 2;
  if (c >= 0xF1 && c <= 0xF3) return 3 | ANY << 2;
  if (c == 0xF4) return 3 | UPTO_8F << 2;
  return NL_UTF8_BAD;
}

int nl_utf8_feed(int state, const unsigned char *s, size_t len) {
  size_t i = 0;
  if (state < 0) return NL_UTF8_BAD;
  while (i < len) {
    if (state == 0) {
      uint64_t word;
      while (i + 8 <= len) { /* a run of ASCII, eight bytes at a time */
        memcpy(&word, s + i, 8);
        if (word & 0x8080808080808080ULL) break;
        i += 8;
      }
      if (i == len) break;
      state = lead(s[i++]);
      if (state < 0) return NL_UTF8_BAD;
    } else {
      if (!range_ok(state >> 2, s[i++])) return NL_UTF8_BAD;
      state = (state & 3) - 1; /* the next one may be any continuation byte */
    }
  }
  return state;
}
