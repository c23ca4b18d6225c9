/*
 * codec.h: hex and base64 (RFC 4648, standard and URL-safe alphabets)
 * encoding and decoding (layer: runtime, no Lua). The crypto module exposes
 * them; the WebSocket handshake and anything else that needs base64 share
 * this one copy. Decoders say where the input went wrong.
 */
#ifndef NETLUA_CODEC_H
#define NETLUA_CODEC_H

#include <stddef.h>

/* How a decoder failed: a message, the 1-based position of the byte at
 * fault (0: the input ended too soon), whether that byte is worth showing
 * (a character that does not belong), and a hint or NULL. */
typedef struct nl_CodecError {
  const char *msg;
  size_t pos;
  int show_byte;
  const char *hint;
} nl_CodecError;

/* Writes 2 * len lowercase hex digits to out. */
void nl_hex_encode(char *out, const unsigned char *in, size_t len);

/* Decodes len hex digits (either case) into out (room for len / 2 bytes).
 * Returns the number of bytes written, or -1 with *err filled in. */
long long nl_hex_decode(unsigned char *out, const char *in, size_t len, nl_CodecError *err);

/* Bytes that nl_base64_encode writes for len input bytes, with padding. */
size_t nl_base64_encoded_len(size_t len);

/* Encodes len bytes to out (room for nl_base64_encoded_len(len) bytes) in
 * the standard alphabet (+/) or, when url is true, the URL-safe one (-_).
 * pad: '=' fills the last group to four characters. Returns the length. */
size_t nl_base64_encode(char *out, const unsigned char *in, size_t len, int url, int pad);

/* Decodes base64 in the alphabet chosen by url into out (room for
 * len / 4 * 3 + 3 bytes). ASCII white space is skipped; padding is
 * optional, but when present it must complete the last group and nothing
 * may follow it. Returns the number of bytes written, or -1 with *err. */
long long nl_base64_decode(unsigned char *out, const char *in, size_t len, int url,
                           nl_CodecError *err);

#endif
