/*
 * buf.h: a growable byte buffer (layer: runtime, no Lua). The bytes are
 * always followed by a NUL that is not counted in `len`, so a buffer of
 * text can be read as a C string; binary data is read with its length.
 */
#ifndef NETLUA_BUF_H
#define NETLUA_BUF_H

#include <stddef.h>
#include <string.h>

typedef struct nl_Buf {
  char *data; /* NULL until the first byte is added */
  size_t len, cap;
} nl_Buf;

/* nl_buf_add when the bytes do not fit: grows the buffer first. */
int nl_buf_grow_add(nl_Buf *b, const void *data, size_t len);

/* Appends len bytes; 0, or -1 when out of memory (the buffer is unchanged).
 * Inline: a reply's head is a dozen small pieces, and a call each cost more
 * than the copies. */
static inline int nl_buf_add(nl_Buf *b, const void *data, size_t len) {
  if (len >= b->cap - b->len) return nl_buf_grow_add(b, data, len);
  if (len > 0) memcpy(b->data + b->len, data, len);
  b->len += len;
  b->data[b->len] = '\0';
  return 0;
}

/* Makes room for `more` bytes after len; 0 or -1 (out of memory). */
int nl_buf_reserve(nl_Buf *b, size_t more);

/* Drops the first n bytes, moving the rest to the front. */
void nl_buf_consume(nl_Buf *b, size_t n);

/* Frees the storage; the buffer is empty and usable again. */
void nl_buf_free(nl_Buf *b);

#endif
