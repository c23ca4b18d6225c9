/*
 * httpparse.h: a strict HTTP/1.1 request parser (layer: runtime, no Lua).
 * It reads requests as RFC 9112 says a server must, refusing what lets a
 * request be read two ways (request smuggling): line ends other than CRLF,
 * obsolete line folding, white space before a field's colon, control bytes
 * in fields, conflicting or malformed Content-Length, Transfer-Encoding
 * other than a lone "chunked", chunk data not followed by CRLF. A chunked
 * body's trailer fields are kept apart from the header fields.
 *
 * It is fed the unparsed input from its start and consumes only whole
 * elements (the head, a chunk-size line, chunk data, a trailer line), so
 * the caller keeps the rest and feeds it again with more input behind it.
 * Every size is bounded by nl_HttpLimits, never by what the peer sends.
 *
 * The body of a multipart/form-data request (an upload) goes to a new file
 * in limits->spool_dir as it arrives, when that is set, instead of memory:
 * a connection then holds no more of it than one read.
 */
#ifndef NETLUA_HTTPPARSE_H
#define NETLUA_HTTPPARSE_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

typedef struct nl_HttpLimits {
  size_t max_uri;    /* request-target bytes (414 past it) */
  size_t max_header; /* header section bytes, and trailer section (431) */
  size_t max_body;   /* body bytes after de-chunking (413) */
  char spool_dir[PATH_MAX]; /* where uploads' bodies go ("": kept in memory) */
} nl_HttpLimits;

typedef struct nl_HttpRequest {
  /* The request, once nl_http_parse returned NL_HTTP_DONE. */
  char method[32];
  nl_Buf target;
  nl_Buf headers;   /* fields in order: lower-case name \0 value \0 ... */
  nl_Buf trailers;  /* a chunked body's trailer fields, the same way */
  nl_Buf body;
  char *spool_path;   /* the body's file when it went to one (else NULL) */
  int spool_fd;       /* open on spool_path while the body comes */
  uint64_t spooled;   /* bytes written there */
  int major, minor;
  int keep_alive;      /* the connection may carry another request */
  int expect_continue; /* 1: "Expect: 100-continue" and a body to come */
  int is_head;
  /* Progress. */
  int state;
  size_t scan;          /* where the search for the head's end goes on */
  size_t line1;         /* length of the request line with its CRLF (0: not seen) */
  uint64_t remaining;   /* bytes of the body or chunk still to come */
  size_t trailer_bytes;
} nl_HttpRequest;

#define NL_HTTP_MORE 0 /* more input is needed */
#define NL_HTTP_DONE 1 /* a whole request is parsed */

/* Parses data[0..len), the input not consumed so far. Returns NL_HTTP_DONE,
 * NL_HTTP_MORE, or minus the status to answer (400, 413, 414, 431, 501,
 * 505); *used is set to the bytes consumed. */
int nl_http_parse(nl_HttpRequest *r, const char *data, size_t len, size_t *used,
                  const nl_HttpLimits *limits);

/* The file the parsed request's body went to, or NULL: the caller takes
 * it over (frees the string, removes the file). Otherwise reset and free
 * remove it. */
char *nl_http_take_spool(nl_HttpRequest *r);

/* Ready for the next request on the connection (storage kept, but a large
 * body's given back). */
void nl_http_reset(nl_HttpRequest *r);
void nl_http_free(nl_HttpRequest *r);

/* Walks the fields of `headers` or `trailers`: from *off, sets name and
 * value with their lengths and moves *off on; 0 at the end. */
int nl_http_next_field(const nl_Buf *fields, size_t *off, const char **name,
                       size_t *namelen, const char **value, size_t *valuelen);

/* Splits a request-target into its path and query (without '?'). The path
 * of a target that has none is "/" (returned as a static string). */
void nl_http_split_target(const char *target, size_t len, const char **path,
                          size_t *pathlen, const char **query, size_t *querylen);

/* Whether s[0, len) is a token (RFC 9110: a field name, say). */
int nl_http_is_token(const char *s, size_t len);

/* Whether token tok[0, len) is `want`, in any case. */
int nl_http_token_is(const char *tok, size_t len, const char *want);

/* The reason phrase for a status ("Unknown" for one it does not know). */
const char *nl_http_reason(int status);

#endif
