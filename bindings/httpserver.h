/*
 * httpserver.h: what the C files of http.server share (layer: bindings,
 * private to httpserver.c, httpconn.c and httphead.c): the Group every
 * worker shares, a state's Server handle on it, one client connection.
 */
#ifndef NETLUA_HTTPSERVER_H
#define NETLUA_HTTPSERVER_H

#include <stdatomic.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>

#include "netlua.h"
#include "buf.h"
#include "httpparse.h"
#include "tls.h"

#define NL_SERVER_MT "http.server"
#define NL_CONN_MT "http.server.conn"

typedef struct Limits {
  nl_HttpLimits http;
  double request_timeout, keepalive_timeout, send_timeout;
  double linger;        /* seconds a lingering close may last (0: none) */
  int max_connections;
} Limits;

/* What the workers of one server share. */
typedef struct Group {
  atomic_int refs;
  int fd;               /* the listening socket */
  int stop_fd;          /* eventfd: readable while serving stops */
  atomic_int spare_fd;  /* held open so an EMFILE accept can shed the client */
  Limits limits;
  atomic_llong served;  /* requests answered, by every worker */
  atomic_llong max_served; /* stop when served reaches it (0: never) */
  atomic_int stopping;
  atomic_int close_asked; /* close once serving has stopped */
  SSL_CTX *tls;         /* HTTPS: the server's context (NULL: plain HTTP) */
} Group;

typedef struct Conn Conn;

/* The head lines of a headers table, collected (httphead.c). */
typedef struct HeadLines {
  nl_Buf text;   /* the lines, in the table's order */
  nl_Buf refs;   /* where each line is in text */
} HeadLines;

enum { STREAM_NONE, STREAM_CHUNKED, STREAM_RAW };

/* One state's handle on a Group. Its connections keep it alive (user
 * value), so their limits stay readable after the group is released. */
typedef struct Server {
  Group *g;             /* NULL once closed */
  int nconn;            /* open connections made by this handle */
  Conn *conns;          /* ... in a list, for making room when all are taken */
  Limits limits;
  time_t date_second;   /* when date_line was formatted */
  char date_line[64];   /* "Date: ...\r\n" */
} Server;

/* One client connection (user value 1: its Server userdata). */
struct Conn {
  int fd;
  SSL *ssl;        /* HTTPS: the connection's TLS (NULL: plain) */
  int handshaken;  /* its handshake is done */
  int want;        /* what TLS waits for to go on (NL_READ/NL_WRITE; 0: as asked) */
  nl_HttpRequest req;
  nl_Buf in;       /* bytes read, not yet parsed from `in_pos` on */
  size_t in_pos;
  nl_Buf out;      /* response bytes not yet written, from out_pos on */
  size_t out_pos;
  int file_fd;     /* a file being sent after `out` (-1: none) */
  off_t file_pos;
  uint64_t file_left;
  int closing;     /* close once the reply is written */
  int in_request;  /* bytes of a request have arrived */
  int awaiting;    /* read() is waiting for a request: the connection may be shed */
  int head;        /* the request being answered is a HEAD */
  int http10;      /* ... came as HTTP/1.0 (a stream is close-delimited) */
  int streaming;   /* a streamed reply is open: STREAM_CHUNKED or STREAM_RAW */
  int lingering;   /* its last reply is out: reading and discarding until close */
  size_t linger_left; /* ... at most this many more bytes */
  const char *failure; /* why read() is sending an error reply */
  double deadline;
  double since;    /* when the wait for the current request began */
  char peer[64];
  HeadLines lines; /* conn:reply's head lines, collected */
  nl_Buf head_text; /* ... and sorted */
  Server *srv;
  const Limits *limits;
  Conn *prev, *next; /* in srv->conns while open */
};

/* httpserver.c */
void http_group_count(Group *g); /* one more reply; may stop serving */

/* httpconn.c */
void httpconn_new(lua_State *L, Server *s); /* a closed Conn of the server at 1 [-0,+1,m] */
Conn *httpconn_check(lua_State *L, int idx);
int httpconn_open(Conn *c, int fd, const struct sockaddr_storage *ss, SSL_CTX *tls);
int httpconn_shed_one(Server *s);
extern const luaL_Reg httpconn_methods[], httpconn_meta[];

/* httphead.c */
/* httpreply.c: a reply's head, queued in c->out. */
#define NL_TEXT_TYPE "Content-Type: text/plain; charset=utf-8\r\n"
void httpreply_add_str(nl_Buf *b, const char *s);
int httpreply_has_body(int status); /* not 204 or 304 */
/* The status line, the Date and `headers` (hlen bytes of "Name: value\r\n"
 * lines); a status that is not final (200-599) becomes 500. Returns the
 * status sent. */
int httpreply_status(Conn *c, int status, const char *headers, size_t hlen);
void httpreply_connection(Conn *c); /* "Connection: ..." and the head's end */
/* A whole head for a body of `length` bytes. Returns the status sent. */
int httpreply_head(Conn *c, int status, const char *headers, size_t hlen, uint64_t length);
/* A whole reply; with `head` (a HEAD request), and for 204 and 304, no body. */
void httpreply_full(Conn *c, int status, const char *headers, size_t hlen, const char *body,
                    size_t len, int head);
void httpreply_ours(Conn *c, int status, int head); /* our text/plain reply */
void httpreply_error(Conn *c, int status); /* ... after which the connection closes */

/* httpreq.c: pushes the request table for r, with conn:read's arguments at
 * 1 (the connection: _conn), 2 (the metatable) and 3 (the server). */
void httpreq_push(lua_State *L, nl_HttpRequest *r, const char *peer);

int httphead_lines(lua_State *L); /* core.headlines(headers[, default]) */
/* Collects the lines of the headers table at idx (none or nil: no fields)
 * into hl, replacing what it held; returns whether one is named
 * Content-Type. May raise (a __tostring or __pairs that fails, no memory):
 * hl stays the caller's to reuse or free. */
int httphead_collect(lua_State *L, int idx, HeadLines *hl);
/* Appends the collected lines to out, sorted, with the whole line `dflt`
 * (dlen bytes) sorted in unless it is NULL. 0, or -1 when out of memory. */
int httphead_put(HeadLines *hl, const char *dflt, size_t dlen, nl_Buf *out);
void httphead_free(HeadLines *hl);

#endif
