/*
 * trace.h: the --trace recorder (layer: runtime, no Lua). One timeline of
 * what the process does on the wire, from every thread and task, written
 * as text for people or as JSON lines for tools (README: "Seeing what
 * happens").
 *
 * Off, a site costs one predictable branch: callers write
 *     if (nl_trace_on) nl_trace_send(fd, data, n, errno);
 * and nothing is formatted or allocated. Every nl_trace_* keeps errno.
 * `err` arguments: 0 done, > 0 an errno value, or one of the socket
 * module's io codes below (its IO_TIMEOUT and IO_CLOSED have these values).
 */
#ifndef NETLUA_TRACE_H
#define NETLUA_TRACE_H

#include <sys/socket.h>
#include <sys/types.h>

struct addrinfo;

#define NL_TRACE_TIMEOUT (-1)
#define NL_TRACE_CLOSED (-2)

/* Set once, by nl_trace_start, before any other thread exists. */
extern int nl_trace_on;

/* Who is running: the thread module's id (0: main) and the task number
 * of this thread's scheduler (0: not in a task). Set by thread.c and
 * sched.c. */
extern _Thread_local long nl_trace_thread, nl_trace_task;

/* Command line: how many of argv[0..] the trace option at argv[0] takes
 * (--trace[=text|jsonl], --trace-file PATH, --trace-data), 0 when it is
 * none of them or is malformed. Only records the choice. */
int nl_trace_option(char **argv);

/* Once, in main, before any thread: applies the options or else
 * NETLUA_TRACE / NETLUA_TRACE_FILE from the environment and opens the
 * output. Returns NULL, or why tracing cannot start (the program then
 * exits with status 2). */
const char *nl_trace_start(void);

/* Writes out the lines kept back: a trace to a file is written in
 * batches, before the thread waits (loop.c) and at exit. */
void nl_trace_flush(void);

/* The events. started: nl_monotonic() when the operation began (for its
 * duration). */
void nl_trace_lookup(const char *host, const char *serv, int gai,
                     const struct addrinfo *res, double started);
void nl_trace_socket(int fd, int family, int type);
void nl_trace_bind(int fd, const struct sockaddr *sa, socklen_t len, int err);
void nl_trace_listen(int fd, int backlog, int err);
void nl_trace_connect(int fd, const struct sockaddr *sa, socklen_t len, int err,
                      double started);
void nl_trace_accept(int listen_fd, int fd, const struct sockaddr *peer, socklen_t len);
/* Called right before a send or sendto system call, whose nl_trace_send
 * or nl_trace_sendto must follow: a receive on another thread that gets
 * those bytes waits to be listed until the send is. */
void nl_trace_sending(void);
/* A stream send/recv's outcome as the system call returned it: n bytes
 * (recv: 0 is the end of stream), or n < 0 with errno in err (EAGAIN and
 * EINTR are not events). */
void nl_trace_send(int fd, const char *data, ssize_t n, int err);
void nl_trace_recv(int fd, const char *data, ssize_t n, int err);
/* A datagram sendto/recvfrom; `peer` NULL: the connected peer. */
void nl_trace_sendto(int fd, const char *data, ssize_t n, int err,
                     const struct sockaddr *peer, socklen_t len);
void nl_trace_recvfrom(int fd, const char *data, ssize_t n, int err,
                       const struct sockaddr *peer, socklen_t len);
void nl_trace_shutdown(int fd, int how);
void nl_trace_close(int fd); /* fds it never saw made are ignored */
void nl_trace_timeout(int fd, int events);
/* What a failure means, in words (the socket module's explanations), on fd
 * (-1: none, a name lookup). */
void nl_trace_explain(int fd, const char *why);

/* What libcurl's debug callback reports (bindings/http.c): its own words
 * ("Trying 127.0.0.1:8080..."), the request head it sent, each response
 * header line (the status line is an event), body bytes out and in. The
 * connection's addresses as libcurl gives them (NULL/"" or port 0 when
 * not connected yet). */
enum { NL_TRACE_CURL_TEXT, NL_TRACE_CURL_HEAD_OUT, NL_TRACE_CURL_HEAD_IN,
       NL_TRACE_CURL_BODY_OUT, NL_TRACE_CURL_BODY_IN };
void nl_trace_curl(int kind, const char *local_ip, long local_port, const char *peer_ip,
                   long peer_port, const char *data, size_t size);

/* A TLS handshake's end on fd: the version and cipher agreed, the peer
 * certificate's names, how its verification went ("ok", OpenSSL's reason,
 * "off"), or the error that ended it (NULL: none). */
void nl_trace_tls(int fd, const char *version, const char *cipher, const char *peer,
                  const char *verify, const char *error);

/* http.server: a request read on fd, and the reply queued for it (its
 * status and body length), with the time between them. */
void nl_trace_http_request(int fd, const char *method, const char *target);
void nl_trace_http_reply(int fd, int status, unsigned long long length);

/* Tasks and threads: a task spawned (by the one running), a task
 * suspended on fd (the first of count; none: a timer or a queue) until
 * deadline, a task woken with its wait's result (> 0 ready, 0 timeout,
 * < 0 interrupted); a thread started or ended ("started", "ended"). */
void nl_trace_spawn(long task);
void nl_trace_wait(int fd, int events, int count, double deadline);
void nl_trace_wake(long task, int result);
void nl_trace_thread_event(const char *what, const char *name);

/* A TLS connection's plaintext on fd: n bytes written (out) or read
 * through nl_tls_write/nl_tls_read (runtime/tls.c). */
void nl_trace_tls_io(int fd, int out, const char *data, size_t n);

/* A value sent into (out) or received from channel number `channel`
 * (thread.channel), its Lua type, and how many values are queued after;
 * or the error that ended the call ("timeout", "closed"). */
long nl_trace_next_channel(void); /* a new channel's number: 1, 2, ... */
void nl_trace_channel(int out, long channel, long depth, const char *value,
                      const char *error);

/* An event of the modules' Lua halves (WebSocket frames, server-sent
 * events; runtime/tracelua.c): `name` on fd (-1: none) with n fields,
 * keys[i] = strs[i], or ints[i] where strs[i] is NULL. */
void nl_trace_note(const char *name, int fd, int n, const char *const keys[],
                   const char *const strs[], const long long ints[]);

#endif
