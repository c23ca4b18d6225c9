/*
 * httpreply.c: the head of a reply of http.server (layer: bindings, plain
 * C, no Lua): the status line, the Date (formatted once a second per
 * server handle), the handler's header lines, Content-Length and
 * Connection, queued in the connection's output; and the server's own
 * plain-text replies (404, 400, 500 ...). bindings/httpconn.c sends them.
 */
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "httpserver.h"
#include "trace.h"

void httpreply_add_str(nl_Buf *b, const char *s) { nl_buf_add(b, s, strlen(s)); }

/* The Date line, formatted once a second per server handle. */
static void add_date(Conn *c) {
  Server *s = c->srv;
  time_t now = time(NULL);
  if (now != s->date_second || s->date_line[0] == '\0') {
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(s->date_line, sizeof s->date_line, "Date: %a, %d %b %Y %H:%M:%S GMT\r\n", &tm);
    s->date_second = now;
  }
  httpreply_add_str(&c->out, s->date_line);
}

/* v in decimal at out (at least 20 bytes; no NUL); returns its length.
 * snprintf cost more than the rest of a reply's head. */
static size_t format_decimal(char *out, uint64_t v) {
  char rev[20];
  size_t n = 0, i;
  do {
    rev[n++] = (char)('0' + v % 10);
    v /= 10;
  } while (v != 0);
  for (i = 0; i < n; i++) out[i] = rev[n - 1 - i];
  return n;
}

int httpreply_has_body(int status) { return status != 204 && status != 304; }

/* Queues the status line, the Date and the handler's `headers` (hlen bytes
 * of "Name: value\r\n" lines). A status that is not a final one (200-599)
 * becomes 500. Returns the status sent. */
int httpreply_status(Conn *c, int status, const char *headers, size_t hlen) {
  char digits[24];
  nl_Buf *b = &c->out;
  if (status < 200 || status > 599) status = 500;
  httpreply_add_str(b, "HTTP/1.1 ");
  nl_buf_add(b, digits, format_decimal(digits, (uint64_t)status));
  httpreply_add_str(b, " ");
  httpreply_add_str(b, nl_http_reason(status));
  httpreply_add_str(b, "\r\n");
  add_date(c);
  nl_buf_add(&c->out, headers, hlen);
  return status;
}

void httpreply_connection(Conn *c) {
  httpreply_add_str(&c->out, c->closing ? "Connection: close\r\n\r\n" : "Connection: keep-alive\r\n\r\n");
}

/* Queues a response head for a body of `length` bytes; Date,
 * Content-Length and Connection are ours. Returns the status sent. */
int httpreply_head(Conn *c, int status, const char *headers, size_t hlen,
                      uint64_t length) {
  char digits[24];
  status = httpreply_status(c, status, headers, hlen);
  if (nl_trace_on) nl_trace_http_reply(c->fd, status, httpreply_has_body(status) ? length : 0);
  if (httpreply_has_body(status)) {
    httpreply_add_str(&c->out, "Content-Length: ");
    nl_buf_add(&c->out, digits, format_decimal(digits, length));
    httpreply_add_str(&c->out, "\r\n");
  }
  httpreply_connection(c);
  return status;
}

/* Queues a complete response; HEAD, 204 and 304 get no body. */
void httpreply_full(Conn *c, int status, const char *headers, size_t hlen,
                           const char *body, size_t len, int head) {
  status = httpreply_head(c, status, headers, hlen, len);
  if (!head && httpreply_has_body(status)) nl_buf_add(&c->out, body, len);
}

/* The text of our own reply with `status`. */
static const char *error_text(int status) {
  switch (status) {
  case 400: return "bad request\n";
  case 404: return "not found\n";
  case 408: return "request timeout\n";
  case 413: return "request body too large\n";
  case 414: return "uri too long\n";
  case 431: return "request header fields too large\n";
  case 501: return "not implemented\n";
  case 505: return "http version not supported\n";
  case 507: return "not enough disk space for the request body\n";
  default: return "internal server error\n";
  }
}

void httpreply_ours(Conn *c, int status, int head) {
  const char *text = error_text(status);
  httpreply_full(c, status, NL_TEXT_TYPE, sizeof NL_TEXT_TYPE - 1, text, strlen(text), head);
}

void httpreply_error(Conn *c, int status) {
  c->closing = 1;
  httpreply_ours(c, status, 0);
}
