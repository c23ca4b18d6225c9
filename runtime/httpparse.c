/*
 * httpparse.c: the strict HTTP/1.1 request parser of httpparse.h (layer:
 * runtime). We parse requests ourselves because the parser Debian ships
 * (libhttp-parser 2.9) is built without its strict mode: it takes bare LF
 * line ends, white space before a field's colon, obs-fold, and any two bytes
 * after chunk data, each a way to make a proxy and this server read one
 * request differently. The grammar is RFC 9112's; what it lets a server
 * refuse, this refuses.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "httpparse.h"

enum { ST_HEAD, ST_LENGTH, ST_CHUNK_SIZE, ST_CHUNK_DATA, ST_CHUNK_END, ST_TRAILERS,
       ST_DONE };

#define CHUNK_LINE_MAX 4096 /* a chunk-size line with its extensions */
#define VERSION_LEN 8       /* "HTTP/1.1" */

/* ---- character classes (RFC 9110 5.6.2, 5.5) ------------------------------ */

static int is_tchar(unsigned char ch) {
  if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9'))
    return 1;
  return ch != '\0' && strchr("!#$%&'*+-.^_`|~", ch) != NULL;
}

/* A byte of a field value or chunk extension: VCHAR, obs-text, SP, HTAB. */
static int is_field_byte(unsigned char ch) {
  return ch == ' ' || ch == '\t' || (ch > 0x20 && ch != 0x7f);
}

static int is_ows(unsigned char ch) { return ch == ' ' || ch == '\t'; }

static int hex_value(unsigned char ch) {
  if (ch >= '0' && ch <= '9') return ch - '0';
  if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
  if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
  return -1;
}

/* ---- fields --------------------------------------------------------------- */

int nl_http_next_field(const nl_Buf *fields, size_t *off, const char **name,
                       size_t *namelen, const char **value, size_t *valuelen) {
  const char *end, *p, *z;
  if (fields->data == NULL || *off >= fields->len) return 0;
  end = fields->data + fields->len;
  p = fields->data + *off;
  z = memchr(p, '\0', (size_t)(end - p));
  if (z == NULL || z + 1 >= end) return 0;
  *name = p;
  *namelen = (size_t)(z - p);
  p = z + 1;
  z = memchr(p, '\0', (size_t)(end - p));
  if (z == NULL) return 0;
  *value = p;
  *valuelen = (size_t)(z - p);
  *off = (size_t)(z + 1 - fields->data);
  return 1;
}

/* Parses one field line (without its CRLF) into `fields`: a token, a colon
 * right after it, optional white space, a value of field bytes. 0 or -400
 * (-500: out of memory). */
static int add_field_line(nl_Buf *fields, const char *line, size_t len) {
  size_t i = 0, start, end;
  while (i < len && is_tchar((unsigned char)line[i])) i++;
  if (i == 0 || i == len || line[i] != ':') return -400;
  if (nl_buf_reserve(fields, len + 2) != 0) return -500;
  for (size_t k = 0; k < i; k++) {
    char ch = line[k];
    fields->data[fields->len++] = (char)(ch >= 'A' && ch <= 'Z' ? ch + 32 : ch);
  }
  fields->data[fields->len++] = '\0';
  start = i + 1;
  end = len;
  while (start < end && is_ows((unsigned char)line[start])) start++;
  while (end > start && is_ows((unsigned char)line[end - 1])) end--;
  for (size_t k = start; k < end; k++)
    if (!is_field_byte((unsigned char)line[k])) return -400;
  return nl_buf_add(fields, line + start, end - start) != 0 ||
         nl_buf_add(fields, "", 1) != 0 ? -500 : 0;
}

/* ---- the request line ----------------------------------------------------- */

/* "METHOD SP target SP HTTP/x.y" (without CRLF). 0 or -status. */
static int parse_request_line(nl_HttpRequest *r, const char *line, size_t len,
                              const nl_HttpLimits *limits) {
  size_t i = 0, t0;
  const char *v;
  while (i < len && is_tchar((unsigned char)line[i])) i++;
  if (i == 0 || i == len || line[i] != ' ') return -400;
  if (i >= sizeof r->method) return -501;
  memcpy(r->method, line, i);
  r->method[i] = '\0';
  t0 = ++i;
  while (i < len && line[i] > 0x20 && line[i] < 0x7f) i++;
  if (i - t0 > limits->max_uri) return -414;
  if (i == t0 || i == len || line[i] != ' ') return -400;
  if (nl_buf_add(&r->target, line + t0, i - t0) != 0) return -500;
  i++;
  v = line + i;
  if (len - i != VERSION_LEN || memcmp(v, "HTTP/", 5) != 0 || v[6] != '.' ||
      v[5] < '0' || v[5] > '9' || v[7] < '0' || v[7] > '9')
    return -400;
  r->major = v[5] - '0';
  r->minor = v[7] - '0';
  if (r->major != 1) return -505;
  r->is_head = strcmp(r->method, "HEAD") == 0;
  return 0;
}

/* ---- framing (RFC 9112 6) ---------------------------------------------------- */

/* A Content-Length value: digits only; 0 or -400, -413 past max_body. */
static int parse_length(const char *v, size_t len, uint64_t *out, size_t max_body) {
  uint64_t n = 0;
  if (len == 0) return -400;
  for (size_t i = 0; i < len; i++) {
    if (v[i] < '0' || v[i] > '9') return -400;
    if (n > (UINT64_MAX - 9) / 10) return -413;
    n = n * 10 + (uint64_t)(v[i] - '0');
  }
  *out = n;
  return n > max_body ? -413 : 0;
}

/* The next token of a comma-separated list from *pos: sets its start and
 * length; 0 at the end. */
static int next_token(const char *list, size_t len, size_t *pos, const char **tok,
                      size_t *toklen) {
  size_t i = *pos, end;
  while (i < len && (is_ows((unsigned char)list[i]) || list[i] == ',')) i++;
  if (i >= len) return 0;
  *tok = list + i;
  while (i < len && list[i] != ',') i++;
  end = i;
  while (end > (size_t)(*tok - list) && is_ows((unsigned char)list[end - 1])) end--;
  *toklen = end - (size_t)(*tok - list);
  *pos = i;
  return 1;
}

int nl_http_token_is(const char *tok, size_t len, const char *want) {
  return len == strlen(want) && strncasecmp(tok, want, len) == 0;
}

int nl_http_is_token(const char *s, size_t len) {
  if (len == 0) return 0;
  for (size_t i = 0; i < len; i++)
    if (!is_tchar((unsigned char)s[i])) return 0;
  return 1;
}

/* True when the comma-separated list holds token (any case). */
static int has_token(const char *list, size_t len, const char *token) {
  size_t pos = 0, tlen;
  const char *t;
  while (next_token(list, len, &pos, &t, &tlen))
    if (nl_http_token_is(t, tlen, token)) return 1;
  return 0;
}

/* Transfer-Encoding must be "chunked" alone. A list whose last coding is
 * not chunked, or that has chunked twice, is 400 (RFC 9112 6.3); chunked
 * behind a coding we do not decode (gzip, chunked) is 501. */
static int check_transfer_encoding(const char *v, size_t len) {
  size_t pos = 0, tlen, count = 0, chunks = 0;
  const char *t;
  int last_chunked = 0;
  while (next_token(v, len, &pos, &t, &tlen)) {
    last_chunked = nl_http_token_is(t, tlen, "chunked");
    chunks += (size_t)last_chunked;
    count++;
  }
  if (!last_chunked || chunks > 1) return -400;
  return count == 1 ? 0 : -501;
}

/* ---- a body that goes to a file ------------------------------------------- */

/* A write error's status: 507 when the disk (or quota) is full, else 500. */
static int write_failure(int err) {
  return err == ENOSPC || err == EDQUOT || err == EFBIG ? -507 : -500;
}

/* Opens a new file of ours (mode 0600, a random name) in dir for the body.
 * 0 or -status. */
static int spool_open(nl_HttpRequest *r, const char *dir) {
  size_t len = strlen(dir) + sizeof "/netlua-body-XXXXXX";
  char *path = malloc(len);
  if (path == NULL) return -500;
  snprintf(path, len, "%s/netlua-body-XXXXXX", dir);
  r->spool_fd = mkostemp(path, O_CLOEXEC);
  if (r->spool_fd < 0) {
    int err = errno;
    free(path);
    return write_failure(err);
  }
  r->spool_path = path;
  r->spooled = 0;
  return 0;
}

static int spool_write(nl_HttpRequest *r, const char *data, size_t len) {
  while (len > 0) {
    ssize_t n = write(r->spool_fd, data, len);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return write_failure(n < 0 ? errno : ENOSPC);
    data += n;
    len -= (size_t)n;
    r->spooled += (uint64_t)n;
  }
  return 0;
}

static void spool_close(nl_HttpRequest *r) {
  if (r->spool_path == NULL) return;
  close(r->spool_fd);
  r->spool_fd = -1;
}

char *nl_http_take_spool(nl_HttpRequest *r) {
  char *path = r->spool_path;
  spool_close(r);
  r->spool_path = NULL;
  return path;
}

static void spool_remove(nl_HttpRequest *r) {
  char *path = nl_http_take_spool(r);
  if (path == NULL) return;
  unlink(path);
  free(path);
}

/* Body bytes taken so far, in memory or in the file. */
static uint64_t body_size(const nl_HttpRequest *r) {
  return r->spool_path != NULL ? r->spooled : r->body.len;
}

static int is_multipart(const char *v, size_t len) {
  static const char media[] = "multipart/form-data";
  size_t n = sizeof media - 1;
  return len >= n && strncasecmp(v, media, n) == 0 &&
         (len == n || v[n] == ';' || v[n] == ' ' || v[n] == '\t');
}

/* Reads the framing and connection fields of a parsed head and picks the
 * body's state. 0 or -status. */
static int apply_fields(nl_HttpRequest *r, const nl_HttpLimits *limits) {
  size_t off = 0, nlen, vlen;
  const char *n, *v;
  int hosts = 0, lengths = 0, chunked = 0, multipart = 0, rc;
  uint64_t length = 0;
  r->keep_alive = r->minor >= 1;
  while (nl_http_next_field(&r->headers, &off, &n, &nlen, &v, &vlen)) {
    if (nlen == 4 && memcmp(n, "host", 4) == 0) {
      hosts++;
    } else if (nlen == 14 && memcmp(n, "content-length", 14) == 0) {
      uint64_t this_length;
      if ((rc = parse_length(v, vlen, &this_length, limits->max_body)) != 0) return rc;
      if (lengths++ > 0 && this_length != length) return -400;
      length = this_length;
    } else if (nlen == 17 && memcmp(n, "transfer-encoding", 17) == 0) {
      if (r->minor == 0 || chunked) return -400;
      if ((rc = check_transfer_encoding(v, vlen)) != 0) return rc;
      chunked = 1;
    } else if (nlen == 10 && memcmp(n, "connection", 10) == 0) {
      if (has_token(v, vlen, "close")) r->keep_alive = 0;
      else if (has_token(v, vlen, "keep-alive")) r->keep_alive = 1;
    } else if (nlen == 12 && memcmp(n, "content-type", 12) == 0) {
      multipart = is_multipart(v, vlen);
    } else if (nlen == 6 && memcmp(n, "expect", 6) == 0) {
      r->expect_continue = r->minor >= 1 && vlen == 12 && strncasecmp(v, "100-continue", 12) == 0;
    }
  }
  if (hosts > 1 || (hosts == 0 && r->minor >= 1)) return -400;
  if (chunked && lengths > 0) return -400;
  if (chunked) {
    r->state = ST_CHUNK_SIZE;
  } else if (length > 0) {
    r->state = ST_LENGTH;
    r->remaining = length;
  } else {
    r->state = ST_DONE;
  }
  if (r->state == ST_DONE) r->expect_continue = 0;
  if (multipart && r->state != ST_DONE && limits->spool_dir[0] != '\0')
    return spool_open(r, limits->spool_dir);
  return 0;
}

/* ---- the head ------------------------------------------------------------------ */

/* Finds the end of the head in data[0..len): every LF must follow a CR. Sets
 * *headlen (0: not complete yet). 0 or -status. */
static int find_head_end(nl_HttpRequest *r, const char *data, size_t len,
                         size_t *headlen, const nl_HttpLimits *limits) {
  size_t i = r->scan;
  *headlen = 0;
  for (;;) {
    const char *lf = memchr(data + i, '\n', len - i);
    if (lf == NULL) break;
    i = (size_t)(lf - data);
    if (i == 0 || data[i - 1] != '\r') return -400;
    if (r->line1 == 0) {
      r->line1 = i + 1;
    } else if (i >= 3 && data[i - 2] == '\n') {
      *headlen = i + 1;
      return 0;
    }
    i++;
  }
  r->scan = len;
  if (r->line1 == 0 && len > limits->max_uri + sizeof r->method + VERSION_LEN + 4)
    return -414;
  if (r->line1 != 0 && len - r->line1 > limits->max_header + 2) return -431;
  return 0;
}

/* Parses a whole head data[0..headlen). 0 or -status. */
static int parse_head(nl_HttpRequest *r, const char *data, size_t headlen,
                      const nl_HttpLimits *limits) {
  size_t pos = r->line1, end = headlen - 2; /* the empty line's CRLF */
  int rc;
  if (headlen - r->line1 > limits->max_header + 2) return -431;
  if ((rc = parse_request_line(r, data, r->line1 - 2, limits)) != 0) return rc;
  while (pos < end) {
    const char *line = data + pos, *lf = memchr(line, '\n', end - pos);
    size_t len = (size_t)(lf - line) - 1; /* without CRLF */
    if ((rc = add_field_line(&r->headers, line, len)) != 0) return rc;
    pos += len + 2;
  }
  return apply_fields(r, limits);
}

/* The head, once it has all arrived; empty lines before a request line are
 * skipped (RFC 9112 2.2). Returns bytes consumed (0: more needed) or
 * -status. */
static long step_head(nl_HttpRequest *r, const char *data, size_t len,
                      const nl_HttpLimits *limits) {
  size_t headlen;
  int rc;
  if (r->scan == 0 && len >= 1 && data[0] == '\r') {
    if (len < 2) return 0;
    return data[1] == '\n' ? 2 : -400;
  }
  if ((rc = find_head_end(r, data, len, &headlen, limits)) != 0) return rc;
  if (headlen == 0) return 0;
  if ((rc = parse_head(r, data, headlen, limits)) != 0) return rc;
  return (long)headlen;
}

/* ---- the body -------------------------------------------------------------------- */

static long take_body(nl_HttpRequest *r, const char *data, size_t len, int next) {
  size_t n = r->remaining < len ? (size_t)r->remaining : len;
  if (n == 0) return 0;
  if (r->spool_path != NULL) {
    int rc = spool_write(r, data, n);
    if (rc != 0) return rc;
  } else if (nl_buf_add(&r->body, data, n) != 0) {
    return -500;
  }
  r->remaining -= n;
  if (r->remaining == 0) r->state = next;
  return (long)n;
}

enum { LINE_INCOMPLETE = -1, LINE_TOO_LONG = -2, LINE_BARE_LF = -3 };

/* A line ending in CRLF at the start of data, no longer than max (CRLF
 * included): its length without CRLF, or one of the LINE_ codes. */
static long line_at(const char *data, size_t len, size_t max) {
  const char *lf = memchr(data, '\n', len < max ? len : max);
  if (lf == NULL) return len >= max ? LINE_TOO_LONG : LINE_INCOMPLETE;
  if (lf == data || lf[-1] != '\r') return LINE_BARE_LF;
  return (long)(lf - data) - 1;
}

/* chunk-size [ BWS ";" chunk-ext ] CRLF */
static long step_chunk_size(nl_HttpRequest *r, const char *data, size_t len,
                            const nl_HttpLimits *limits) {
  long linelen = line_at(data, len, CHUNK_LINE_MAX);
  uint64_t size = 0;
  uint64_t room = limits->max_body - body_size(r);
  size_t i = 0;
  if (linelen == LINE_INCOMPLETE) return 0;
  if (linelen < 0) return -400;
  while (i < (size_t)linelen && hex_value((unsigned char)data[i]) >= 0) {
    size = size * 16 + (uint64_t)hex_value((unsigned char)data[i]);
    if (size > room) return -413;
    i++;
  }
  if (i == 0) return -400;
  while (i < (size_t)linelen && is_ows((unsigned char)data[i])) i++;
  if (i < (size_t)linelen && data[i] != ';') return -400;
  for (; i < (size_t)linelen; i++)
    if (!is_field_byte((unsigned char)data[i])) return -400;
  r->remaining = size;
  r->state = size > 0 ? ST_CHUNK_DATA : ST_TRAILERS;
  return linelen + 2;
}

static long step_chunk_end(nl_HttpRequest *r, const char *data, size_t len) {
  if (len < 2) return len == 1 && data[0] != '\r' ? -400 : 0;
  if (data[0] != '\r' || data[1] != '\n') return -400;
  r->state = ST_CHUNK_SIZE;
  return 2;
}

/* Trailer fields, then the empty line that ends the message. */
static long step_trailer(nl_HttpRequest *r, const char *data, size_t len,
                         const nl_HttpLimits *limits) {
  size_t used = r->trailer_bytes, max = limits->max_header;
  size_t room = (used < max ? max - used : 0) + 2; /* the empty line always fits */
  long linelen = line_at(data, len, room);
  int rc;
  if (linelen == LINE_INCOMPLETE) return 0;
  if (linelen == LINE_TOO_LONG) return -431;
  if (linelen < 0) return -400;
  if (linelen == 0) {
    r->state = ST_DONE;
    return 2;
  }
  if ((rc = add_field_line(&r->trailers, data, (size_t)linelen)) != 0) return rc;
  r->trailer_bytes += (size_t)linelen + 2;
  return linelen + 2;
}

/* ---- the whole ------------------------------------------------------------------- */

static long step(nl_HttpRequest *r, const char *data, size_t len,
                 const nl_HttpLimits *limits) {
  switch (r->state) {
  case ST_HEAD: return step_head(r, data, len, limits);
  case ST_LENGTH: return take_body(r, data, len, ST_DONE);
  case ST_CHUNK_SIZE: return step_chunk_size(r, data, len, limits);
  case ST_CHUNK_DATA: return take_body(r, data, len, ST_CHUNK_END);
  case ST_CHUNK_END: return step_chunk_end(r, data, len);
  case ST_TRAILERS: return step_trailer(r, data, len, limits);
  default: return 0;
  }
}

int nl_http_parse(nl_HttpRequest *r, const char *data, size_t len, size_t *used,
                  const nl_HttpLimits *limits) {
  size_t pos = 0;
  *used = 0;
  while (r->state != ST_DONE) {
    long n = step(r, data + pos, len - pos, limits);
    if (n < 0) return (int)n;
    if (n == 0) return NL_HTTP_MORE;
    pos += (size_t)n;
    *used = pos;
  }
  return NL_HTTP_DONE;
}

/* A body buffer above this size is given back between requests, so an idle
 * keep-alive connection holds little. */
#define KEEP_BODY_CAP 65536

void nl_http_reset(nl_HttpRequest *r) {
  spool_remove(r);
  if (r->body.cap > KEEP_BODY_CAP) nl_buf_free(&r->body);
  r->target.len = r->headers.len = r->trailers.len = r->body.len = 0;
  r->method[0] = '\0';
  r->major = r->minor = 0;
  r->keep_alive = r->expect_continue = r->is_head = 0;
  r->state = ST_HEAD;
  r->scan = r->line1 = 0;
  r->remaining = 0;
  r->trailer_bytes = 0;
}

void nl_http_free(nl_HttpRequest *r) {
  nl_buf_free(&r->target);
  nl_buf_free(&r->headers);
  nl_buf_free(&r->trailers);
  nl_buf_free(&r->body);
  nl_http_reset(r);
}

/* ---- targets and statuses ------------------------------------------------------- */

void nl_http_split_target(const char *target, size_t len, const char **path,
                          size_t *pathlen, const char **query, size_t *querylen) {
  const char *p = target, *end = target + len, *q, *hash;
  hash = memchr(target, '#', len);
  if (hash != NULL) end = hash;
  if (p < end && *p != '/') { /* absolute-form: the path follows the authority */
    const char *sep = end - p >= 3 ? memmem(p, (size_t)(end - p), "://", 3) : NULL;
    p = sep != NULL ? memchr(sep + 3, '/', (size_t)(end - sep - 3)) : NULL;
    if (p == NULL) p = end;
  }
  q = memchr(p, '?', (size_t)(end - p));
  *query = q != NULL ? q + 1 : end;
  *querylen = q != NULL ? (size_t)(end - q - 1) : 0;
  if (q == NULL) q = end;
  if (q == p) {
    *path = "/";
    *pathlen = 1;
  } else {
    *path = p;
    *pathlen = (size_t)(q - p);
  }
}

const char *nl_http_reason(int status) {
  switch (status) {
  case 100: return "Continue";
  case 101: return "Switching Protocols";
  case 200: return "OK";
  case 201: return "Created";
  case 202: return "Accepted";
  case 203: return "Non-Authoritative Information";
  case 204: return "No Content";
  case 205: return "Reset Content";
  case 206: return "Partial Content";
  case 300: return "Multiple Choices";
  case 301: return "Moved Permanently";
  case 302: return "Found";
  case 303: return "See Other";
  case 304: return "Not Modified";
  case 307: return "Temporary Redirect";
  case 308: return "Permanent Redirect";
  case 400: return "Bad Request";
  case 401: return "Unauthorized";
  case 402: return "Payment Required";
  case 403: return "Forbidden";
  case 404: return "Not Found";
  case 405: return "Method Not Allowed";
  case 406: return "Not Acceptable";
  case 408: return "Request Timeout";
  case 409: return "Conflict";
  case 410: return "Gone";
  case 411: return "Length Required";
  case 412: return "Precondition Failed";
  case 413: return "Payload Too Large";
  case 414: return "URI Too Long";
  case 415: return "Unsupported Media Type";
  case 416: return "Range Not Satisfiable";
  case 417: return "Expectation Failed";
  case 418: return "I'm a teapot";
  case 422: return "Unprocessable Entity";
  case 425: return "Too Early";
  case 426: return "Upgrade Required";
  case 428: return "Precondition Required";
  case 429: return "Too Many Requests";
  case 431: return "Request Header Fields Too Large";
  case 451: return "Unavailable For Legal Reasons";
  case 500: return "Internal Server Error";
  case 501: return "Not Implemented";
  case 502: return "Bad Gateway";
  case 503: return "Service Unavailable";
  case 504: return "Gateway Timeout";
  case 505: return "HTTP Version Not Supported";
  case 507: return "Insufficient Storage";
  default: return "Unknown";
  }
}
