/* Tests for src/util/ho_socket: real sockets in a temporary directory. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <glib.h>

#include "ho_error.h"
#include "ho_socket.h"
#include "testutils.h"

static bool
fd_cloexec(int fd)
{
    int flags = fcntl(fd, F_GETFD);

    g_assert_cmpint(flags, >=, 0);
    return flags & FD_CLOEXEC;
}

/* Open fds of this process, to check that nothing leaks. */
static unsigned
count_fds(void)
{
    g_autoptr(GDir) dir = g_dir_open("/proc/self/fd", 0, NULL);
    unsigned n = 0;

    g_assert_nonnull(dir);
    while (g_dir_read_name(dir))
        n++;
    return n;
}

static void
check_echo(int a, int b)
{
    char buf[16] = {0};

    g_assert_cmpint(write(a, "ping", 4), ==, 4);
    g_assert_cmpint(read(b, buf, sizeof(buf)), ==, 4);
    g_assert_cmpstr(buf, ==, "ping");
    g_assert_cmpint(write(b, "pong", 4), ==, 4);
    memset(buf, 0, sizeof(buf));
    g_assert_cmpint(read(a, buf, sizeof(buf)), ==, 4);
    g_assert_cmpstr(buf, ==, "pong");
}

static void
test_unix(void)
{
    g_autofree char *dir = test_make_tmpdir("sock");
    g_autofree char *path = g_build_filename(dir, "s.sock", NULL);
    struct stat st;
    int lfd;
    int cfd;
    int afd;

    lfd = ho_socket_unix_listen(path, 0660, 4);
    g_assert_cmpint(lfd, >=, 0);
    g_assert_true(fd_cloexec(lfd));
    g_assert_cmpint(lstat(path, &st), ==, 0);
    g_assert_true(S_ISSOCK(st.st_mode));
    g_assert_cmpint(st.st_mode & 07777, ==, 0660);

    cfd = ho_socket_unix_connect(path);
    g_assert_cmpint(cfd, >=, 0);
    g_assert_true(fd_cloexec(cfd));
    afd = accept(lfd, NULL, NULL);
    g_assert_cmpint(afd, >=, 0);
    check_echo(cfd, afd);
    close(afd);
    close(cfd);
    close(lfd);

    /* The socket file of a listener that is gone is replaced. */
    g_assert_cmpint(lstat(path, &st), ==, 0);
    lfd = ho_socket_unix_listen(path, 0600, 4);
    g_assert_cmpint(lfd, >=, 0);
    g_assert_cmpint(lstat(path, &st), ==, 0);
    g_assert_cmpint(st.st_mode & 07777, ==, 0600);
    cfd = ho_socket_unix_connect(path);
    g_assert_cmpint(cfd, >=, 0);
    close(cfd);
    close(lfd);
}

static void
test_unix_not_socket(void)
{
    g_autofree char *dir = test_make_tmpdir("sock");
    g_autofree char *path = g_build_filename(dir, "file", NULL);
    g_autofree char *expected = g_strdup_printf("'%s' exists and is not a socket", path);
    g_autofree char *data = NULL;

    g_assert_true(g_file_set_contents(path, "keep", -1, NULL));
    g_assert_cmpint(ho_socket_unix_listen(path, 0600, 1), ==, -1);
    g_assert_cmpint(ho_error_last()->code, ==, HO_ERR_INVALID_ARG);
    g_assert_cmpstr(ho_error_last_message(), ==, expected);
    g_assert_true(g_file_get_contents(path, &data, NULL, NULL));
    g_assert_cmpstr(data, ==, "keep");
    ho_error_reset();
}

static void
test_unix_too_long(void)
{
    struct sockaddr_un addr;
    g_autofree char *dir = test_make_tmpdir("sock");
    g_autofree char *name = g_strnfill(sizeof(addr.sun_path), 'x');
    g_autofree char *path = g_build_filename(dir, name, NULL);
    g_autofree char *expected = g_strdup_printf("UNIX socket path '%s' is too long: %zu bytes, "
                                                "at most %zu",
                                                path, strlen(path), sizeof(addr.sun_path) - 1);

    g_assert_cmpint(ho_socket_unix_listen(path, 0600, 1), ==, -1);
    g_assert_cmpint(ho_error_last()->code, ==, HO_ERR_INVALID_ARG);
    g_assert_cmpstr(ho_error_last_message(), ==, expected);
    ho_error_reset();
    g_assert_cmpint(ho_socket_unix_connect(path), ==, -1);
    g_assert_cmpstr(ho_error_last_message(), ==, expected);
    ho_error_reset();
    g_assert_false(g_file_test(path, G_FILE_TEST_EXISTS));
}

static void
test_unix_connect_missing(void)
{
    g_autofree char *dir = test_make_tmpdir("sock");
    g_autofree char *path = g_build_filename(dir, "nobody.sock", NULL);
    g_autofree char *expected = g_strdup_printf("cannot connect to UNIX socket '%s': %s", path,
                                                g_strerror(ENOENT));
    unsigned before = count_fds();

    g_assert_cmpint(ho_socket_unix_connect(path), ==, -1);
    g_assert_cmpint(ho_error_last()->code, ==, HO_ERR_SYSTEM);
    g_assert_cmpstr(ho_error_last_message(), ==, expected);
    g_assert_cmpuint(count_fds(), ==, before);
    ho_error_reset();
}

static void
test_tcp(void)
{
    int port = 0;
    int lfd = ho_socket_tcp_listen("127.0.0.1", 0, 4, &port);
    int lfd2;
    int cfd;
    int afd;
    g_autofree char *expected = NULL;
    g_autofree char *refused = NULL;

    g_assert_cmpint(lfd, >=, 0);
    g_assert_true(fd_cloexec(lfd));
    g_assert_cmpint(port, >, 0);
    g_assert_cmpint(port, <=, 65535);

    cfd = ho_socket_tcp_connect("127.0.0.1", port);
    g_assert_cmpint(cfd, >=, 0);
    g_assert_true(fd_cloexec(cfd));
    afd = accept(lfd, NULL, NULL);
    g_assert_cmpint(afd, >=, 0);
    check_echo(cfd, afd);
    close(afd);
    close(cfd);

    /* The port is taken. */
    lfd2 = ho_socket_tcp_listen("127.0.0.1", port, 4, NULL);
    g_assert_cmpint(lfd2, ==, -1);
    expected = g_strdup_printf("cannot listen on '127.0.0.1:%d': %s", port,
                               g_strerror(EADDRINUSE));
    g_assert_cmpint(ho_error_last()->code, ==, HO_ERR_SYSTEM);
    g_assert_cmpstr(ho_error_last_message(), ==, expected);
    ho_error_reset();
    close(lfd);

    /* Nobody listens there any more. */
    refused = g_strdup_printf("cannot connect to '127.0.0.1:%d': %s", port,
                               g_strerror(ECONNREFUSED));
    g_assert_cmpint(ho_socket_tcp_connect("127.0.0.1", port), ==, -1);
    g_assert_cmpstr(ho_error_last_message(), ==, refused);
    ho_error_reset();
}

static bool
have_ipv6_loopback(void)
{
    int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in6 sa = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
    bool ok;

    if (fd < 0)
        return false;
    ok = bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
    close(fd);
    return ok;
}

static void
test_tcp_ipv6_and_wildcard(void)
{
    int port = 0;
    int lfd;
    int cfd;
    int afd;

    if (!have_ipv6_loopback()) {
        g_test_skip("no IPv6 loopback here");
        return;
    }
    lfd = ho_socket_tcp_listen("::1", 0, 4, &port);
    g_assert_cmpint(lfd, >=, 0);
    g_assert_cmpint(port, >, 0);
    cfd = ho_socket_tcp_connect("::1", port);
    g_assert_cmpint(cfd, >=, 0);
    afd = accept(lfd, NULL, NULL);
    g_assert_cmpint(afd, >=, 0);
    check_echo(cfd, afd);
    close(afd);
    close(cfd);
    close(lfd);

    /* The wildcard listener takes both families. */
    lfd = ho_socket_tcp_listen(NULL, 0, 4, &port);
    g_assert_cmpint(lfd, >=, 0);
    cfd = ho_socket_tcp_connect("127.0.0.1", port);
    g_assert_cmpint(cfd, >=, 0);
    afd = accept(lfd, NULL, NULL);
    g_assert_cmpint(afd, >=, 0);
    check_echo(cfd, afd);
    close(afd);
    close(cfd);
    cfd = ho_socket_tcp_connect("::1", port);
    g_assert_cmpint(cfd, >=, 0);
    afd = accept(lfd, NULL, NULL);
    g_assert_cmpint(afd, >=, 0);
    check_echo(cfd, afd);
    close(afd);
    close(cfd);
    close(lfd);
}

/* An int socket option's value. */
static int
sockopt_of(int fd, int level, int opt)
{
    int v = -1;
    socklen_t len = sizeof(v);

    g_assert_cmpint(getsockopt(fd, level, opt, &v, &len), ==, 0);
    return v;
}

static int
nodelay_of(int fd)
{
    return sockopt_of(fd, IPPROTO_TCP, TCP_NODELAY);
}

/* What dst_nbd_listen relies on: Nagle off on the listening socket is off
 * on every connection accepted from it (QEMU accepts them, not us); a
 * listener left alone hands out connections with Nagle on. */
static void
test_tcp_nodelay(void)
{
    for (int on = 0; on <= 1; on++) {
        int port = 0;
        int lfd = ho_socket_tcp_listen("127.0.0.1", 0, 4, &port);
        int cfd;
        int afd;

        g_assert_cmpint(lfd, >=, 0);
        if (on)
            g_assert_cmpint(ho_socket_set_nodelay(lfd), ==, 0);
        cfd = ho_socket_tcp_connect("127.0.0.1", port);
        g_assert_cmpint(cfd, >=, 0);
        afd = accept(lfd, NULL, NULL);
        g_assert_cmpint(afd, >=, 0);
        g_assert_cmpint(nodelay_of(afd) != 0, ==, on);
        check_echo(cfd, afd);
        close(afd);
        close(cfd);
        close(lfd);
    }
    /* Not a TCP socket: the error names the fd. */
    {
        int fds[2];
        g_autofree char *expected = NULL;

        g_assert_cmpint(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), ==, 0);
        g_assert_cmpint(ho_socket_set_nodelay(fds[0]), ==, -1);
        expected = g_strdup_printf("cannot set TCP_NODELAY on fd %d: ", fds[0]);
        g_assert_true(g_str_has_prefix(ho_error_last_message(), expected));
        ho_error_reset();
        close(fds[0]);
        close(fds[1]);
    }
}

static int
buffer_of(int fd, int opt)
{
    return sockopt_of(fd, SOL_SOCKET, opt);
}

/* What the migration stream relies on (migration_stream_buffer): a
 * receive buffer fixed on the listening socket is the one of every
 * connection accepted from it (the destination QEMU accepts, not us), and
 * a send buffer fixed on the connected socket stays. Linux reports twice
 * the value set (its bookkeeping share); without the fix the accepted
 * connection has the kernel's default. The round trip is known on TCP
 * and unknown on a UNIX socket. */
static void
test_tcp_buffers(void)
{
    int port = 0;
    int lfd = ho_socket_tcp_listen("127.0.0.1", 0, 4, &port);
    int plain = ho_socket_tcp_listen("127.0.0.1", 0, 4, NULL);
    int cfd;
    int afd;
    int fds[2];

    g_assert_cmpint(lfd, >=, 0);
    g_assert_cmpint(plain, >=, 0);
    g_assert_cmpint(ho_socket_set_buffers(lfd, 0, 40000), ==, 0);
    g_assert_cmpint(buffer_of(lfd, SO_RCVBUF), ==, 80000);
    /* 0 leaves the other one alone. */
    g_assert_cmpint(buffer_of(lfd, SO_SNDBUF), ==, buffer_of(plain, SO_SNDBUF));
    cfd = ho_socket_tcp_connect("127.0.0.1", port);
    g_assert_cmpint(cfd, >=, 0);
    g_assert_cmpint(ho_socket_set_buffers(cfd, 36000, 0), ==, 0);
    g_assert_cmpint(buffer_of(cfd, SO_SNDBUF), ==, 72000);
    afd = accept(lfd, NULL, NULL);
    g_assert_cmpint(afd, >=, 0);
    g_assert_cmpint(buffer_of(afd, SO_RCVBUF), ==, 80000);
    check_echo(cfd, afd);
    g_assert_cmpint(ho_socket_tcp_rtt_us(cfd), >=, 0);
    g_assert_cmpint(ho_socket_tcp_rtt_us(afd), >=, 0);
    close(afd);
    close(cfd);
    close(plain);
    close(lfd);

    g_assert_cmpint(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), ==, 0);
    g_assert_cmpint(ho_socket_tcp_rtt_us(fds[0]), ==, -1);
    close(fds[0]);
    close(fds[1]);
    /* A closed fd: the error names it. */
    g_assert_cmpint(ho_socket_set_buffers(fds[0], 0, 40000), ==, -1);
    g_assert_true(strstr(ho_error_last_message(), "receive buffer") != NULL);
    ho_error_reset();
}

static void
test_tcp_bad_port(void)
{
    g_assert_cmpint(ho_socket_tcp_listen("127.0.0.1", 70000, 1, NULL), ==, -1);
    g_assert_cmpint(ho_error_last()->code, ==, HO_ERR_INVALID_ARG);
    g_assert_cmpstr(ho_error_last_message(), ==, "invalid TCP port 70000");
    g_assert_cmpint(ho_socket_tcp_listen("127.0.0.1", -1, 1, NULL), ==, -1);
    g_assert_cmpstr(ho_error_last_message(), ==, "invalid TCP port -1");
    g_assert_cmpint(ho_socket_tcp_connect("127.0.0.1", 0), ==, -1);
    g_assert_cmpstr(ho_error_last_message(), ==, "invalid TCP port 0");
    g_assert_cmpint(ho_socket_tcp_connect(NULL, 80), ==, -1);
    g_assert_cmpstr(ho_error_last_message(), ==, "no host to connect to");
    ho_error_reset();
}

static void
test_nonblock(void)
{
    int sv[2];
    char c;

    g_assert_cmpint(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), ==, 0);
    g_assert_cmpint(ho_socket_set_nonblock(sv[0], true), ==, 0);
    g_assert_true(fcntl(sv[0], F_GETFL) & O_NONBLOCK);
    g_assert_cmpint(read(sv[0], &c, 1), ==, -1);
    g_assert_cmpint(errno, ==, EAGAIN);
    g_assert_cmpint(ho_socket_set_nonblock(sv[0], false), ==, 0);
    g_assert_false(fcntl(sv[0], F_GETFL) & O_NONBLOCK);
    close(sv[0]);
    close(sv[1]);

    g_assert_cmpint(ho_socket_set_nonblock(-1, true), ==, -1);
    g_assert_cmpint(ho_error_last()->code, ==, HO_ERR_SYSTEM);
    ho_error_reset();
}

static int
open_file(const char *dir, const char *name)
{
    g_autofree char *path = g_build_filename(dir, name, NULL);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);

    g_assert_cmpint(fd, >=, 0);
    return fd;
}

static void
check_same_file(int a, int b)
{
    struct stat sa;
    struct stat sb;

    g_assert_cmpint(fstat(a, &sa), ==, 0);
    g_assert_cmpint(fstat(b, &sb), ==, 0);
    g_assert_cmpuint(sa.st_dev, ==, sb.st_dev);
    g_assert_cmpuint(sa.st_ino, ==, sb.st_ino);
}

static void
test_pass_fds(void)
{
    g_autofree char *dir = test_make_tmpdir("fds");
    int sv[2];
    int fds[2];
    int got[4] = {-1, -1, -1, -1};
    size_t ngot = 99;
    char buf[16] = {0};
    unsigned before;
    size_t i;

    g_assert_cmpint(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), ==, 0);
    fds[0] = open_file(dir, "a");
    fds[1] = open_file(dir, "b");
    before = count_fds();

    g_assert_cmpint(ho_socket_send_fds(sv[0], "hello", 5, fds, 2), ==, 5);
    g_assert_cmpint(ho_socket_recv_fds(sv[1], buf, sizeof(buf), got, 4, &ngot), ==, 5);
    g_assert_cmpstr(buf, ==, "hello");
    g_assert_cmpuint(ngot, ==, 2);
    g_assert_cmpuint(count_fds(), ==, before + 2);
    for (i = 0; i < 2; i++) {
        g_assert_cmpint(got[i], >=, 0);
        g_assert_cmpint(got[i], !=, fds[i]);
        check_same_file(got[i], fds[i]);
        g_assert_true(fd_cloexec(got[i]));
        close(got[i]);
    }
    g_assert_cmpint(got[2], ==, -1);

    /* Plain data: no fds. */
    g_assert_cmpint(ho_socket_send_fds(sv[0], "x", 1, NULL, 0), ==, 1);
    g_assert_cmpint(ho_socket_recv_fds(sv[1], buf, sizeof(buf), got, 4, &ngot), ==, 1);
    g_assert_cmpuint(ngot, ==, 0);

    close(fds[0]);
    close(fds[1]);
    close(sv[0]);
    close(sv[1]);
}

/* More fds than the receiver asked for: the extra ones are closed. */
static void
test_pass_fds_extra(void)
{
    g_autofree char *dir = test_make_tmpdir("fds");
    int sv[2];
    int fds[3];
    int got[1] = {-1};
    size_t ngot = 99;
    char buf[4];
    unsigned before;

    g_assert_cmpint(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), ==, 0);
    fds[0] = open_file(dir, "a");
    fds[1] = open_file(dir, "b");
    fds[2] = open_file(dir, "c");
    before = count_fds();

    g_assert_cmpint(ho_socket_send_fds(sv[0], "x", 1, fds, 3), ==, 1);
    g_assert_cmpint(ho_socket_recv_fds(sv[1], buf, sizeof(buf), got, 1, &ngot), ==, 1);
    g_assert_cmpuint(ngot, ==, 1);
    check_same_file(got[0], fds[0]);
    g_assert_cmpuint(count_fds(), ==, before + 1);
    close(got[0]);

    /* A receiver that takes none at all. */
    g_assert_cmpint(ho_socket_send_fds(sv[0], "y", 1, fds, 2), ==, 1);
    g_assert_cmpint(ho_socket_recv_fds(sv[1], buf, sizeof(buf), NULL, 0, &ngot), ==, 1);
    g_assert_cmpuint(ngot, ==, 0);
    g_assert_cmpuint(count_fds(), ==, before);

    close(fds[0]);
    close(fds[1]);
    close(fds[2]);
    close(sv[0]);
    close(sv[1]);
}

/* A sender that passes more than HO_SOCKET_MAX_FDS: MSG_CTRUNC. */
static void
test_pass_fds_truncated(void)
{
    enum { N = HO_SOCKET_MAX_FDS + 4 };
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(int) * N)];
    } cbuf;
    struct iovec iov = {.iov_base = (void *)"z", .iov_len = 1};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
    struct cmsghdr *cmsg;
    int sv[2];
    int fds[N];
    int got[HO_SOCKET_MAX_FDS];
    size_t ngot = 99;
    char buf[4];
    unsigned before;
    size_t i;

    g_assert_cmpint(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), ==, 0);
    before = count_fds();

    memset(&cbuf, 0, sizeof(cbuf));
    for (i = 0; i < N; i++)
        fds[i] = sv[0];
    msg.msg_control = cbuf.buf;
    msg.msg_controllen = sizeof(cbuf.buf);
    cmsg = CMSG_FIRSTHDR(&msg);
    cmsg->cmsg_level = SOL_SOCKET;
    cmsg->cmsg_type = SCM_RIGHTS;
    cmsg->cmsg_len = CMSG_LEN(sizeof(int) * N);
    memcpy(CMSG_DATA(cmsg), fds, sizeof(fds));
    g_assert_cmpint(sendmsg(sv[0], &msg, 0), ==, 1);

    errno = 0;
    g_assert_cmpint(ho_socket_recv_fds(sv[1], buf, sizeof(buf), got, G_N_ELEMENTS(got), &ngot),
                    ==, -1);
    g_assert_cmpint(errno, ==, EMSGSIZE);
    g_assert_cmpint(ho_error_last()->code, ==, HO_ERR_LIMIT);
    g_assert_cmpuint(ngot, ==, 99); /* untouched */
    g_assert_cmpuint(count_fds(), ==, before);
    ho_error_reset();

    close(sv[0]);
    close(sv[1]);
}

static void
test_pass_fds_errors(void)
{
    int sv[2];
    int fds[HO_SOCKET_MAX_FDS + 1];
    size_t ngot = 99;
    char buf[4];
    size_t i;

    g_assert_cmpint(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), ==, 0);
    for (i = 0; i < G_N_ELEMENTS(fds); i++)
        fds[i] = sv[0];

    errno = 0;
    g_assert_cmpint(ho_socket_send_fds(sv[0], "x", 1, fds, G_N_ELEMENTS(fds)), ==, -1);
    g_assert_cmpint(errno, ==, EINVAL);
    g_assert_cmpint(ho_error_last()->code, ==, HO_ERR_LIMIT);
    g_assert_cmpstr(ho_error_last_message(), ==,
                    "cannot pass 17 file descriptors at once (at most 16)");
    ho_error_reset();

    g_assert_cmpint(ho_socket_send_fds(sv[0], "", 0, fds, 1), ==, -1);
    g_assert_cmpint(ho_error_last()->code, ==, HO_ERR_INVALID_ARG);
    ho_error_reset();

    /* Nothing to read on a non-blocking socket: EAGAIN, not an error. */
    g_assert_cmpint(ho_socket_set_nonblock(sv[1], true), ==, 0);
    errno = 0;
    g_assert_cmpint(ho_socket_recv_fds(sv[1], buf, sizeof(buf), fds, 1, &ngot), ==, -1);
    g_assert_cmpint(errno, ==, EAGAIN);
    g_assert_null(ho_error_last());
    g_assert_cmpuint(ngot, ==, 99);

    /* The peer closed: 0 bytes, end of file. */
    close(sv[0]);
    g_assert_cmpint(ho_socket_recv_fds(sv[1], buf, sizeof(buf), fds, 1, &ngot), ==, 0);
    g_assert_cmpuint(ngot, ==, 0);

    /* Sending to a closed peer: EPIPE, reported, and no SIGPIPE. */
    g_assert_cmpint(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv + 0), ==, 0);
    close(sv[1]);
    errno = 0;
    g_assert_cmpint(ho_socket_send_fds(sv[0], "x", 1, NULL, 0), ==, -1);
    g_assert_cmpint(errno, ==, EPIPE);
    g_assert_cmpint(ho_error_last()->code, ==, HO_ERR_SYSTEM);
    ho_error_reset();
    close(sv[0]);
}

int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);

    g_test_add_func("/socket/unix", test_unix);
    g_test_add_func("/socket/unix-not-socket", test_unix_not_socket);
    g_test_add_func("/socket/unix-too-long", test_unix_too_long);
    g_test_add_func("/socket/unix-connect-missing", test_unix_connect_missing);
    g_test_add_func("/socket/tcp", test_tcp);
    g_test_add_func("/socket/tcp-ipv6-wildcard", test_tcp_ipv6_and_wildcard);
    g_test_add_func("/socket/tcp-bad-port", test_tcp_bad_port);
    g_test_add_func("/socket/tcp-nodelay", test_tcp_nodelay);
    g_test_add_func("/socket/tcp-buffers", test_tcp_buffers);
    g_test_add_func("/socket/nonblock", test_nonblock);
    g_test_add_func("/socket/pass-fds", test_pass_fds);
    g_test_add_func("/socket/pass-fds-extra", test_pass_fds_extra);
    g_test_add_func("/socket/pass-fds-truncated", test_pass_fds_truncated);
    g_test_add_func("/socket/pass-fds-errors", test_pass_fds_errors);

    return g_test_run();
}
