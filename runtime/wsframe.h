/*
 * wsframe.h: the WebSocket frame codec of RFC 6455 (layer: runtime, no
 * Lua): frame headers parsed and built, payloads masked, UTF-8 checked
 * across fragments. The websocket module (bindings/websocket.c and .lua)
 * runs the protocol over it for both the server and the client side.
 */
#ifndef NETLUA_WSFRAME_H
#define NETLUA_WSFRAME_H

#include <stddef.h>
#include <stdint.h>

#define NL_WS_MAXHEADER 14 /* 2 + 8 (64-bit length) + 4 (mask key) */

typedef struct nl_WsHeader {
  int fin, rsv, opcode, masked; /* rsv: the three RSV bits, 0..7 */
  uint64_t length;              /* payload bytes */
  unsigned char key[4];         /* the mask key when masked */
  size_t size;                  /* bytes of the header itself */
} nl_WsHeader;

/* The header at the start of buf (len bytes): its size (> 0) with *h filled
 * in; 0 when more bytes are needed (h->size then holds the header's whole
 * size as far as the bytes at hand tell: 2 before the first two); or -1
 * with *why set when the length is
 * impossible (a 64-bit length with its top bit set). Checks nothing else:
 * what is allowed (opcodes, RSV bits, masking) is the protocol's business. */
int nl_ws_parse(const unsigned char *buf, size_t len, nl_WsHeader *h, const char **why);

/* Writes the header of a frame to out (room for NL_WS_MAXHEADER bytes),
 * with the shortest length form; key is NULL for an unmasked frame.
 * Returns its size. */
size_t nl_ws_header(unsigned char *out, int fin, int opcode, uint64_t length,
                    const unsigned char *key);

/* XORs len bytes of data with the mask key, data being the part of a
 * payload that starts offset bytes into it. Masking and unmasking are the
 * same operation. */
void nl_ws_mask(unsigned char *data, size_t len, const unsigned char key[4], uint64_t offset);

/* Incremental UTF-8 check: state 0 is "between characters"; feed each
 * piece with the state the last piece left. Returns the new state, or
 * NL_UTF8_BAD at the first byte that cannot be UTF-8 (overlong forms,
 * surrogates and code points above U+10FFFF included). A message is valid
 * when its last piece leaves state 0. */
#define NL_UTF8_BAD (-1)
int nl_utf8_feed(int state, const unsigned char *s, size_t len);

#endif
