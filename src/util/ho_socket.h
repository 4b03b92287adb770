/*
 * Socket helpers. Every fd returned is close-on-exec. Listening and
 * connected sockets are blocking unless said otherwise; connect on a UNIX
 * socket does not block for long.
 */
#pragma once

#include <glib.h>
#include <stdbool.h>
#include <sys/types.h>

/* Upper bound on fds passed in one message. */
#define HO_SOCKET_MAX_FDS 16

/* Listen on a UNIX socket path (an existing socket file there is replaced),
 * mode applied to the socket file; fd or -1. */
int ho_socket_unix_listen(const char *path, mode_t mode, int backlog);
/* Connect to a UNIX socket path; fd or -1. */
int ho_socket_unix_connect(const char *path);
/* Listen on host:port (TCP, IPv4 or IPv6; port 0 picks one, returned in
 * *bound_port when non-NULL); fd or -1. */
int ho_socket_tcp_listen(const char *host, int port, int backlog, int *bound_port);
/* Connect to host:port; fd or -1. */
int ho_socket_tcp_connect(const char *host, int port);
/* Turn Nagle's algorithm off (TCP_NODELAY). On a listening socket Linux
 * passes it on to every connection accept() returns. -1 on failure. */
int ho_socket_set_nodelay(int fd);
/* Fix the socket's send buffer (sndbuf > 0) and receive buffer (rcvbuf >
 * 0) at that many bytes, turning the kernel's autotuning off for it. As
 * root the net.core.[rw]mem_max caps do not apply (SO_*BUFFORCE); without
 * the privilege the capped value is set. On a listening socket every
 * connection accept() returns inherits them. -1 on failure. */
int ho_socket_set_buffers(int fd, int sndbuf, int rcvbuf);
/* The kernel's smoothed round-trip time of a connected TCP socket in
 * microseconds (TCP_INFO), or -1 when fd is not one (a UNIX socket). */
int ho_socket_tcp_rtt_us(int fd);
/* Switch O_NONBLOCK; -1 on failure. */
int ho_socket_set_nonblock(int fd, bool nonblock);

/* Send len bytes with nfds fds attached (SCM_RIGHTS) in one sendmsg; returns
 * bytes sent or -1 (errno kept; EAGAIN is not reported as an error). */
ssize_t ho_socket_send_fds(int sock, const void *buf, size_t len, const int *fds, size_t nfds);
/* Receive up to len bytes and up to maxfds passed fds (made close-on-exec);
 * *nfds is set to the count received. Extra fds beyond maxfds are closed.
 * Returns bytes read (0 at EOF) or -1 (errno kept). */
ssize_t ho_socket_recv_fds(int sock, void *buf, size_t len, int *fds, size_t maxfds,
                           size_t *nfds);
