/*
 * sock.h: plain-C socket helpers shared by bindings (layer: runtime). No Lua
 * here: each reports 0 or -errno (libuv's convention), or a getaddrinfo code.
 */
#ifndef NETLUA_SOCK_H
#define NETLUA_SOCK_H

#include <netdb.h>
#include <sys/socket.h>

/* Returned by nl_getaddrinfo/nl_getnameinfo when the deadline passed. */
#define NL_EAI_TIMEOUT (-10001)
/* ... and when Ctrl-C (or shutdown) interrupted the wait. */
#define NL_EAI_INTERRUPTED (-10002)

/* getaddrinfo that never blocks the caller past `deadline` (monotonic,
 * NL_NODEADLINE: none) and that Ctrl-C interrupts: numeric hosts are
 * resolved at once, names in a detached helper thread while the caller waits
 * in nl_wait. Returns 0 (free *res with freeaddrinfo), an EAI_* code, or one
 * of the NL_EAI_* codes above. */
int nl_getaddrinfo(const char *host, const char *serv,
                   const struct addrinfo *hints, struct addrinfo **res,
                   double deadline);

/* getnameinfo under the same rules. */
int nl_getnameinfo(const struct sockaddr *sa, socklen_t salen, char *host,
                   size_t hostlen, char *serv, size_t servlen, int flags,
                   double deadline);

/* A new non-blocking, close-on-exec socket: fd >= 0 or -errno. */
int nl_socket(int family, int type, int protocol);

/* Closes fd, retrying nothing (close must not be retried on Linux). */
void nl_closefd(int fd);

#endif
