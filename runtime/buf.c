/*
 * buf.c: the growable byte buffer of buf.h (layer: runtime).
 */
#include <stdlib.h>
#include <string.h>

#include "buf.h"

int nl_buf_reserve(nl_Buf *b, size_t more) {
  size_t need = b->len + more + 1, cap = b->cap ? b->cap : 256;
  char *p;
  if (more > (size_t)-1 / 2 - b->len) return -1;
  if (need <= b->cap) return 0;
  while (cap < need) cap *= 2;
  p = realloc(b->data, cap);
  if (p == NULL) return -1;
  b->data = p;
  b->cap = cap;
  return 0;
}

int nl_buf_grow_add(nl_Buf *b, const void *data, size_t len) {
  if (nl_buf_reserve(b, len) != 0) return -1;
  if (len > 0) memcpy(b->data + b->len, data, len);
  b->len += len;
  b->data[b->len] = '\0';
  return 0;
}

void nl_buf_consume(nl_Buf *b, size_t n) {
  if (n >= b->len) {
    b->len = 0;
  } else {
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
  }
  if (b->data != NULL) b->data[b->len] = '\0';
}

void nl_buf_free(nl_Buf *b) {
  free(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
}
