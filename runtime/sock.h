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

/* True when getaddrinfo answers without asking anyone: a numeric or NULL
 * host, AI_NUMERICHOST, or a name /etc/hosts lists (for the family asked)
 * while nsswitch.conf has the C library read that file first. It never
 * waits, no helper thread is needed, and a connect with timeout 0 to such
 * a name starts at once, as luasocket's does. */
int nl_resolves_at_once(const char *host, const struct addrinfo *hints);

/* getnameinfo under the same rules. */
int nl_getnameinfo(const struct sockaddr *sa, socklen_t salen, char *host,
                   size_t hostlen, char *serv, size_t servlen, int flags,
                   double deadline);

/* The same lookups for a caller that waits by itself (a task, socket.c):
 * a job runs getaddrinfo/getnameinfo in a detached helper thread (numeric
 * hosts: at once, no thread) and makes nl_lookup_fd readable when it is
 * done. The caller owns one reference and gives it back with
 * nl_lookup_release, finished or not, from the thread that started it (its
 * loop forgets the descriptor); an unfinished job is freed by its thread. */
typedef struct nl_Lookup nl_Lookup;

/* Starts a lookup; NULL when out of memory or threads. */
nl_Lookup *nl_lookup_addr(const char *host, const char *serv,
                          const struct addrinfo *hints);
nl_Lookup *nl_lookup_name(const struct sockaddr *sa, socklen_t salen, int flags);

int nl_lookup_fd(const nl_Lookup *job); /* readable once done (-1: done) */
int nl_lookup_done(nl_Lookup *job);     /* true once the results are final */

/* The outcome of a finished job: the getaddrinfo/getnameinfo code (errno
 * set for EAI_SYSTEM). nl_lookup_addrinfo hands over *res (freeaddrinfo). */
int nl_lookup_addrinfo(nl_Lookup *job, struct addrinfo **res);
int nl_lookup_nameinfo(nl_Lookup *job, char *host, size_t hostlen, char *serv,
                       size_t servlen);
void nl_lookup_release(nl_Lookup *job);

/* A new non-blocking, close-on-exec socket: fd >= 0 or -errno. */
int nl_socket(int family, int type, int protocol);

/* Closes fd, retrying nothing (close must not be retried on Linux). */
void nl_closefd(int fd);

/* True for an IPv4 or IPv6 address written as digits (and for NULL). */
int nl_is_numeric_host(const char *host);

/* A listening TCP socket on host:port (SO_REUSEADDR, non-blocking,
 * close-on-exec), trying each address the name resolves to (through
 * nl_getaddrinfo, so Ctrl-C interrupts a slow lookup). Returns the
 * descriptor, or -errno; a failed lookup returns -1 with its getaddrinfo
 * code in *gai (NL_EAI_INTERRUPTED: Ctrl-C). */
int nl_listen_tcp(const char *host, int port, int backlog, int *gai);

/* The numeric host of an IPv4 or IPv6 socket address and its port (0 and
 * "" for other families). */
void nl_addr_format(const struct sockaddr *sa, char *host, size_t hostlen, int *port);

#endif
