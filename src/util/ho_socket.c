/*
 * Socket helpers: UNIX and TCP listeners and connections, fd passing.
 */
#define HO_LOG_MODULE "util.socket"

#include "ho_socket.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "ho_error.h"
#include "ho_i18n.h"
#include "ho_log.h"
#include "ho_uri.h"

static void
socket_close(int fd)
{
    int saved_errno = errno;

    if (fd >= 0)
        close(fd);
    errno = saved_errno;
}

static int
socket_unix_addr(const char *path, struct sockaddr_un *addr)
{
    size_t len;

    if (!path || !*path) {
        ho_error_report(HO_ERR_INVALID_ARG, _("empty UNIX socket path"));
        return -1;
    }
    len = strlen(path);
    memset(addr, 0, sizeof(*addr));
    addr->sun_family = AF_UNIX;
    /* The kernel wants room for the terminating NUL. */
    if (len >= sizeof(addr->sun_path)) {
        ho_error_report(HO_ERR_INVALID_ARG,
                        _("UNIX socket path '%1$s' is too long: %2$zu bytes, at most %3$zu"),
                        path, len, sizeof(addr->sun_path) - 1);
        return -1;
    }
    memcpy(addr->sun_path, path, len + 1);
    return 0;
}

int
ho_socket_unix_listen(const char *path, mode_t mode, int backlog)
{
    struct sockaddr_un addr;
    struct stat st;
    int fd;

    if (socket_unix_addr(path, &addr) < 0)
        return -1;

    /* Replace a stale socket from an earlier run, but nothing else. */
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            ho_error_report(HO_ERR_INVALID_ARG, _("'%1$s' exists and is not a socket"), path);
            return -1;
        }
        if (unlink(path) < 0 && errno != ENOENT) {
            ho_error_report_errno(HO_ERR_SYSTEM, errno, _("cannot remove old socket '%1$s'"),
                                  path);
            return -1;
        }
    }

    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        ho_error_report_errno(HO_ERR_SYSTEM, errno, _("cannot create a UNIX socket for '%1$s'"),
                              path);
        return -1;
    }
    if (bind(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
        ho_error_report_errno(HO_ERR_SYSTEM, errno, _("cannot bind UNIX socket '%1$s'"), path);
        goto error;
    }
    /* Before listen(): nobody can connect while the mode is still wrong. */
    if (chmod(path, mode) < 0) {
        ho_error_report_errno(HO_ERR_SYSTEM, errno, _("cannot set the mode of socket '%1$s'"),
                              path);
        goto error_unlink;
    }
    if (listen(fd, backlog) < 0) {
        ho_error_report_errno(HO_ERR_SYSTEM, errno, _("cannot listen on UNIX socket '%1$s'"),
                              path);
        goto error_unlink;
    }
    HO_DEBUG("listening on UNIX socket '%s' fd=%d", path, fd);
    return fd;

error_unlink:
    (void)unlink(path);
error:
    socket_close(fd);
    return -1;
}

int
ho_socket_unix_connect(const char *path)
{
    struct sockaddr_un addr;
    int fd;

    if (socket_unix_addr(path, &addr) < 0)
        return -1;
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        ho_error_report_errno(HO_ERR_SYSTEM, errno, _("cannot create a UNIX socket for '%1$s'"),
                              path);
        return -1;
    }
    if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
        ho_error_report_errno(HO_ERR_SYSTEM, errno, _("cannot connect to UNIX socket '%1$s'"),
                              path);
        socket_close(fd);
        return -1;
    }
    HO_DEBUG("connected to UNIX socket '%s' fd=%d", path, fd);
    return fd;
}

static int
socket_resolve(const char *host, int port, bool passive, struct addrinfo **res)
{
    struct addrinfo hints = {
        .ai_family = AF_UNSPEC,
        .ai_socktype = SOCK_STREAM,
        .ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0),
    };
    g_autofree char *service = NULL;
    g_autofree char *where = NULL;
    int rc;

    if (port < 0 || port > 65535 || (!passive && port == 0)) {
        ho_error_report(HO_ERR_INVALID_ARG, _("invalid TCP port %1$d"), port);
        return -1;
    }
    service = g_strdup_printf("%d", port);
    rc = getaddrinfo(host, service, &hints, res);
    if (rc != 0) {
        where = ho_uri_format_hostport(host ? host : "*", port);
        if (rc == EAI_SYSTEM) {
            ho_error_report_errno(HO_ERR_SYSTEM, errno, _("cannot resolve '%1$s'"), where);
        } else {
            ho_error_report(HO_ERR_SYSTEM, _("cannot resolve '%1$s': %2$s"), where,
                            gai_strerror(rc));
        }
        return -1;
    }
    return 0;
}

static int
socket_listen_one(const struct addrinfo *ai, bool dual_stack, int backlog)
{
    int fd;
    int on = 1;

    fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0)
        return -1;
    /* Restarting the daemon must not wait for TIME_WAIT to drain. */
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) < 0)
        goto error;
    if (ai->ai_family == AF_INET6 && dual_stack) {
        int off = 0;

        /* The IPv6 wildcard takes IPv4 connections too, whatever the
         * net.ipv6.bindv6only default says. */
        if (setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof(off)) < 0)
            goto error;
    }
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0)
        goto error;
    if (listen(fd, backlog) < 0)
        goto error;
    return fd;

error:
    socket_close(fd);
    return -1;
}

int
ho_socket_tcp_listen(const char *host, int port, int backlog, int *bound_port)
{
    struct addrinfo *res = NULL;
    const struct addrinfo *ai;
    bool wildcard = !host || !*host;
    g_autofree char *where = NULL;
    struct sockaddr_storage ss;
    socklen_t sslen = sizeof(ss);
    int fd = -1;
    int pass;
    int err = EADDRNOTAVAIL;

    if (wildcard)
        host = NULL;
    if (socket_resolve(host, port, true, &res) < 0)
        return -1;

    /* For the wildcard, one dual-stack IPv6 socket covers both families;
     * fall back to IPv4 where IPv6 is not available. */
    for (pass = 0; pass < 2 && fd < 0; pass++) {
        for (ai = res; ai && fd < 0; ai = ai->ai_next) {
            if (wildcard && pass == 0 && ai->ai_family != AF_INET6)
                continue;
            if (wildcard && pass == 1 && ai->ai_family == AF_INET6)
                continue;
            fd = socket_listen_one(ai, wildcard, backlog);
            if (fd < 0)
                err = errno;
        }
        if (!wildcard)
            break;
    }
    freeaddrinfo(res);

    where = ho_uri_format_hostport(host ? host : "*", port);
    if (fd < 0) {
        ho_error_report_errno(HO_ERR_SYSTEM, err, _("cannot listen on '%1$s'"), where);
        errno = err;
        return -1;
    }

    if (getsockname(fd, (struct sockaddr *)&ss, &sslen) < 0) {
        ho_error_report_errno(HO_ERR_SYSTEM, errno, _("cannot get the address of '%1$s'"),
                              where);
        socket_close(fd);
        return -1;
    }
    if (ss.ss_family == AF_INET6)
        port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    else
        port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    if (bound_port)
        *bound_port = port;
    HO_DEBUG("listening on TCP '%s' port %d fd=%d", where, port, fd);
    return fd;
}

int
ho_socket_tcp_connect(const char *host, int port)
{
    struct addrinfo *res = NULL;
    const struct addrinfo *ai;
    g_autofree char *where = NULL;
    int fd = -1;
    int err = ECONNREFUSED;

    if (!host || !*host) {
        ho_error_report(HO_ERR_INVALID_ARG, _("no host to connect to"));
        return -1;
    }
    if (socket_resolve(host, port, false, &res) < 0)
        return -1;
    for (ai = res; ai && fd < 0; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            err = errno;
            continue;
        }
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
            err = errno;
            socket_close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(res);

    where = ho_uri_format_hostport(host, port);
    if (fd < 0) {
        ho_error_report_errno(HO_ERR_SYSTEM, err, _("cannot connect to '%1$s'"), where);
        errno = err;
        return -1;
    }
    HO_DEBUG("connected to TCP '%s' fd=%d", where, fd);
    return fd;
}

int
ho_socket_set_nonblock(int fd, bool nonblock)
{
    int flags = fcntl(fd, F_GETFL);

    if (flags < 0) {
        ho_error_report_errno(HO_ERR_SYSTEM, errno, _("cannot get the flags of fd %1$d"), fd);
        return -1;
    }
    if (nonblock)
        flags |= O_NONBLOCK;
    else
        flags &= ~O_NONBLOCK;
    if (fcntl(fd, F_SETFL, flags) < 0) {
        ho_error_report_errno(HO_ERR_SYSTEM, errno, _("cannot set the flags of fd %1$d"), fd);
        return -1;
    }
    return 0;
}

int
ho_socket_set_nodelay(int fd)
{
    int on = 1;

    if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on)) < 0) {
        ho_error_report_errno(HO_ERR_SYSTEM, errno, _("cannot set TCP_NODELAY on fd %1$d"), fd);
        return -1;
    }
    return 0;
}

static int
socket_set_buffer(int fd, int force_opt, int opt, int bytes)
{
    if (setsockopt(fd, SOL_SOCKET, force_opt, &bytes, sizeof(bytes)) == 0)
        return 0;
    if (errno == EPERM && setsockopt(fd, SOL_SOCKET, opt, &bytes, sizeof(bytes)) == 0)
        return 0;
    ho_error_report_errno(HO_ERR_SYSTEM, errno,
                          _("cannot set the %1$s buffer of fd %2$d to %3$d bytes"),
                          opt == SO_SNDBUF ? "send" : "receive", fd, bytes);
    return -1;
}

int
ho_socket_set_buffers(int fd, int sndbuf, int rcvbuf)
{
    if (sndbuf > 0 && socket_set_buffer(fd, SO_SNDBUFFORCE, SO_SNDBUF, sndbuf) < 0)
        return -1;
    if (rcvbuf > 0 && socket_set_buffer(fd, SO_RCVBUFFORCE, SO_RCVBUF, rcvbuf) < 0)
        return -1;
    return 0;
}

int
ho_socket_tcp_rtt_us(int fd)
{
    struct tcp_info info;
    socklen_t len = sizeof(info);

    memset(&info, 0, sizeof(info));
    if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &len) < 0 ||
        len < offsetof(struct tcp_info, tcpi_rttvar))
        return -1;
    return (int)MIN(info.tcpi_rtt, (guint32)G_MAXINT);
}

/* Room for the most fds we take in one message, correctly aligned. */
typedef union {
    struct cmsghdr align;
    char buf[CMSG_SPACE(sizeof(int) * HO_SOCKET_MAX_FDS)];
} SocketCmsgBuf;

ssize_t
ho_socket_send_fds(int sock, const void *buf, size_t len, const int *fds, size_t nfds)
{
    struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
    SocketCmsgBuf cbuf;
    ssize_t n;

    if (nfds > HO_SOCKET_MAX_FDS) {
        ho_error_report(HO_ERR_LIMIT,
                        _("cannot pass %1$zu file descriptors at once (at most %2$d)"), nfds,
                        HO_SOCKET_MAX_FDS);
        errno = EINVAL;
        return -1;
    }
    /* Fds ride on data: a stream socket drops them with an empty message. */
    if (nfds > 0 && len == 0) {
        ho_error_report(HO_ERR_INVALID_ARG, _("file descriptors must be sent with data"));
        errno = EINVAL;
        return -1;
    }
    if (nfds > 0) {
        struct cmsghdr *cmsg;

        memset(&cbuf, 0, sizeof(cbuf));
        msg.msg_control = cbuf.buf;
        msg.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
        cmsg = CMSG_FIRSTHDR(&msg);
        cmsg->cmsg_level = SOL_SOCKET;
        cmsg->cmsg_type = SCM_RIGHTS;
        cmsg->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
        memcpy(CMSG_DATA(cmsg), fds, sizeof(int) * nfds);
    }

    do {
        n = sendmsg(sock, &msg, MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
        ho_error_report_errno(HO_ERR_SYSTEM, errno, _("cannot send on socket fd %1$d"), sock);
    return n;
}

ssize_t
ho_socket_recv_fds(int sock, void *buf, size_t len, int *fds, size_t maxfds, size_t *nfds)
{
    struct iovec iov = {.iov_base = buf, .iov_len = len};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
    SocketCmsgBuf cbuf;
    struct cmsghdr *cmsg;
    size_t got = 0;
    ssize_t n;

    if (!fds)
        maxfds = 0;
    memset(&cbuf, 0, sizeof(cbuf));
    /* Always offer the full buffer, so fds beyond maxfds arrive and can be
     * closed instead of being dropped with MSG_CTRUNC. */
    msg.msg_control = cbuf.buf;
    msg.msg_controllen = sizeof(cbuf.buf);

    do {
        n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            ho_error_report_errno(HO_ERR_SYSTEM, errno, _("cannot receive on socket fd %1$d"),
                                  sock);
        return -1;
    }

    for (cmsg = CMSG_FIRSTHDR(&msg); cmsg; cmsg = CMSG_NXTHDR(&msg, cmsg)) {
        size_t count;
        size_t i;

        if (cmsg->cmsg_level != SOL_SOCKET || cmsg->cmsg_type != SCM_RIGHTS)
            continue;
        count = (cmsg->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (i = 0; i < count; i++) {
            int fd;

            memcpy(&fd, CMSG_DATA(cmsg) + i * sizeof(int), sizeof(int));
            /* Extra fds, and all of them when some were cut off, are closed. */
            if (got < maxfds && !(msg.msg_flags & MSG_CTRUNC))
                fds[got++] = fd;
            else
                close(fd);
        }
    }

    if (msg.msg_flags & MSG_CTRUNC) {
        /* The sender passed more than we can hold: some fds are lost, so the
         * message cannot be trusted. What did arrive was closed above. */
        ho_error_report(HO_ERR_LIMIT,
                        _("too many file descriptors received on socket fd %1$d (at most %2$d)"),
                        sock, HO_SOCKET_MAX_FDS);
        errno = EMSGSIZE;
        return -1;
    }
    if (got > 0)
        HO_DEBUG("received %zd bytes and %zu fds on fd %d", n, got, sock);
    if (nfds)
        *nfds = got;
    return n;
}
