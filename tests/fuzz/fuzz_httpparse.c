/*
 * fuzz_httpparse.c: libFuzzer target for runtime/httpparse.c, the server's
 * request parser. `make fuzz` builds it with ASan+UBSan and runs it for
 * FUZZ_SECONDS (default 60) from the seeds in tests/fuzz/http_seeds.
 *
 * The input is fed as a connection would deliver it: the first byte picks
 * a read size, the rest arrives in pieces of that size, the unconsumed bytes
 * kept and fed again as httpserver.c does, over any number of pipelined
 * requests. Besides memory errors it checks the parser's promises: it never
 * consumes more than it was given, a parsed request stays within the limits,
 * and the fields it reports are walkable.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "httpparse.h"

static const nl_HttpLimits limits = {.max_uri = 256, .max_header = 512, .max_body = 4096};

static void check_request(const nl_HttpRequest *r) {
  size_t off = 0, nlen, vlen, fields = 0;
  const char *n, *v, *path, *query;
  size_t pathlen, querylen;
  if (r->body.len > limits.max_body || r->target.len > limits.max_uri) abort();
  while (nl_http_next_field(&r->headers, &off, &n, &nlen, &v, &vlen)) {
    if (memchr(v, '\r', vlen) || memchr(v, '\n', vlen)) abort();
    fields++;
  }
  off = 0;
  while (nl_http_next_field(&r->trailers, &off, &n, &nlen, &v, &vlen)) fields++;
  nl_http_split_target(r->target.data ? r->target.data : "", r->target.len, &path,
                       &pathlen, &query, &querylen);
  if (pathlen == 0) abort();
  (void)fields;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  nl_HttpRequest r;
  nl_Buf in = {0};
  size_t piece, fed = 0, pos = 0;
  if (size < 1) return 0;
  piece = (size_t)data[0] % 64 + 1;
  data++, size--;
  memset(&r, 0, sizeof r);
  nl_http_reset(&r);
  while (fed < size || pos < in.len) {
    size_t n = size - fed < piece ? size - fed : piece, used = 0;
    int rc;
    if (n > 0 && nl_buf_add(&in, data + fed, n) != 0) break;
    fed += n;
    rc = nl_http_parse(&r, in.data + pos, in.len - pos, &used, &limits);
    if (used > in.len - pos) abort();
    pos += used;
    if (rc < 0) break;
    if (rc == NL_HTTP_DONE) {
      check_request(&r);
      nl_http_reset(&r);
      continue;
    }
    if (n == 0) break; /* all fed, more needed: the peer would time out */
    nl_buf_consume(&in, pos);
    pos = 0;
  }
  nl_http_free(&r);
  nl_buf_free(&in);
  return 0;
}
