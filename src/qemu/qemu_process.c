#define HO_LOG_MODULE "qemu.process"

#include "qemu_process.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <signal.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "ho_error.h"
#include "ho_i18n.h"
#include "ho_log.h"
#include "ho_socket.h"

/* The fd number QEMU's monitor chardev finds its listening socket at. */
#define QMP_CHILD_FD 3

const char *
qemu_process_host_accel(const char **why)
{
    static gsize once;
    static const char *accel;
    static char *reason;

    if (g_once_init_enter(&once)) {
        int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
        int vm;

        if (fd < 0) {
            reason = g_strdup_printf(_("cannot open '/dev/kvm': %1$s"), g_strerror(errno));
            accel = "tcg";
        } else if ((vm = ioctl(fd, KVM_CREATE_VM, 0)) < 0) {
            reason = g_strdup_printf(_("KVM cannot create a VM: %1$s"), g_strerror(errno));
            accel = "tcg";
            close(fd);
        } else {
            close(vm);
            close(fd);
            accel = "kvm";
        }
        HO_INFO("accelerator %s%s%s", accel, reason ? ": " : "", reason ? reason : "");
        g_once_init_leave(&once, 1);
    }
    if (why)
        *why = reason;
    return accel;
}

char **
qemu_process_firmware_dirs(const char *emulator)
{
    g_autoptr(GPtrArray) dirs = g_ptr_array_new_with_free_func(g_free);
    g_autofree char *path = g_canonicalize_filename(emulator, NULL);
    g_autofree char *bindir = g_path_get_dirname(path);
    g_autofree char *usr = g_path_get_dirname(bindir);
    g_autofree char *prefix = g_path_get_dirname(usr);
    g_autofree char *share = g_build_filename(usr, "share", "qemu", NULL);

    if (g_str_has_suffix(bindir, "/usr/bin") && !g_str_equal(prefix, "/") &&
        g_file_test(share, G_FILE_TEST_IS_DIR)) {
        g_autofree char *seabios = g_build_filename(usr, "share", "seabios", NULL);

        g_ptr_array_add(dirs, g_steal_pointer(&share));
        if (g_file_test(seabios, G_FILE_TEST_IS_DIR))
            g_ptr_array_add(dirs, g_steal_pointer(&seabios));
    }
    g_ptr_array_add(dirs, NULL);
    return (char **)g_ptr_array_free(g_steal_pointer(&dirs), FALSE);
}

static void
spawn_child_setup(gpointer opaque)
{
    const QemuProcessSpawn *opts = opaque;

    /* Only async-signal-safe calls here. */
    if (opts->die_with_parent)
        (void)prctl(PR_SET_PDEATHSIG, SIGKILL);
    (void)setpgid(0, 0);
}

int
qemu_process_spawn(const QemuProcessSpawn *opts, GPid *pid)
{
    g_autoptr(GPtrArray) argv = g_ptr_array_new_with_free_func(g_free);
    g_autoptr(GError) gerr = NULL;
    const char *const *p;
    int source_fds[1], target_fds[1] = {QMP_CHILD_FD};
    int logfd, qmpfd;
    GPid child;
    /* The child runs in opts->workdir: a relative emulator path must not
     * be looked up there. A bare name is still searched on PATH. */
    g_autofree char *emulator = strchr(opts->emulator, '/')
                                    ? g_canonicalize_filename(opts->emulator, NULL)
                                    : g_strdup(opts->emulator);

    qmpfd = ho_socket_unix_listen(opts->qmp_path, 0600, 4);
    if (qmpfd < 0)
        return -1;
    logfd = open(opts->log_path,
                 O_WRONLY | O_CREAT | O_CLOEXEC | (opts->log_append ? O_APPEND : O_TRUNC), 0600);
    if (logfd < 0) {
        ho_error_report_errno(HO_ERR_SYSTEM, errno, _("cannot create QEMU log '%1$s'"),
                              opts->log_path);
        close(qmpfd);
        (void)unlink(opts->qmp_path);
        return -1;
    }

    g_ptr_array_add(argv, g_strdup(emulator));
    for (p = opts->fw_dirs; p && *p; p++) {
        g_ptr_array_add(argv, g_strdup("-L"));
        g_ptr_array_add(argv, g_strdup(*p));
    }
    if (opts->accel) {
        g_ptr_array_add(argv, g_strdup("-accel"));
        g_ptr_array_add(argv, g_strdup(opts->accel));
    }
    if (!opts->args_complete) {
        g_ptr_array_add(argv, g_strdup("-nodefaults"));
        g_ptr_array_add(argv, g_strdup("-no-user-config"));
        g_ptr_array_add(argv, g_strdup("-display"));
        g_ptr_array_add(argv, g_strdup("none"));
    }
    g_ptr_array_add(argv, g_strdup("-chardev"));
    g_ptr_array_add(argv, g_strdup_printf("socket,id=qmp,fd=%d,server=on,wait=off",
                                          QMP_CHILD_FD));
    g_ptr_array_add(argv, g_strdup("-mon"));
    g_ptr_array_add(argv, g_strdup("chardev=qmp,mode=control"));
    for (p = opts->extra_args; p && *p; p++)
        g_ptr_array_add(argv, g_strdup(*p));
    g_ptr_array_add(argv, NULL);

    source_fds[0] = qmpfd;
    if (!g_spawn_async_with_pipes_and_fds(opts->workdir, (const char *const *)argv->pdata,
                                          NULL,
                                          G_SPAWN_DO_NOT_REAP_CHILD |
                                              G_SPAWN_SEARCH_PATH |
                                              G_SPAWN_STDIN_FROM_DEV_NULL,
                                          spawn_child_setup, (gpointer)opts, -1, logfd, logfd,
                                          source_fds, target_fds, 1, &child, NULL, NULL, NULL,
                                          &gerr)) {
        ho_error_report(HO_ERR_SYSTEM, _("cannot start QEMU '%1$s': %2$s"), opts->emulator,
                        gerr->message);
        close(logfd);
        close(qmpfd);
        (void)unlink(opts->qmp_path);
        return -1;
    }
    close(logfd);
    close(qmpfd);
    HO_DEBUG("started %s as pid %d", opts->emulator, (int)child);
    *pid = child;
    return 0;
}

int
qemu_process_start_time(pid_t pid, unsigned long long *start_time)
{
    g_autofree char *path = g_strdup_printf("/proc/%d/stat", (int)pid);
    g_autofree char *text = NULL;
    g_autoptr(GError) gerr = NULL;
    g_auto(GStrv) fields = NULL;
    const char *rest;
    char *end = NULL;
    unsigned long long val;

    if (pid <= 0) {
        ho_error_report(HO_ERR_INVALID_ARG, _("invalid process id %1$d"), (int)pid);
        return -1;
    }
    if (!g_file_get_contents(path, &text, NULL, &gerr)) {
        ho_error_report(HO_ERR_SYSTEM, _("no process %1$d: %2$s"), (int)pid, gerr->message);
        return -1;
    }
    /* "PID (COMM) STATE ...": COMM may hold spaces and parentheses, so the
     * fields start after the last ')'; STATE is field 3, starttime 22. */
    rest = strrchr(text, ')');
    if (rest)
        fields = g_strsplit_set(rest + 1, " \n", -1);
    if (!fields || g_strv_length(fields) < 21 || !fields[20][0]) {
        ho_error_report(HO_ERR_SYSTEM, _("cannot parse '%1$s'"), path);
        return -1;
    }
    /* fields[0] is the empty text before the first space: field 3 is fields[1]. */
    errno = 0;
    val = g_ascii_strtoull(fields[20], &end, 10);
    if (errno != 0 || !end || *end) {
        ho_error_report(HO_ERR_SYSTEM, _("cannot parse '%1$s'"), path);
        return -1;
    }
    *start_time = val;
    return 0;
}

int
qemu_process_pidfd_open(pid_t pid)
{
    /* pidfd_open(2) fds are always close-on-exec. */
    long fd = syscall(SYS_pidfd_open, pid, 0);

    if (fd < 0) {
        ho_error_report_errno(HO_ERR_SYSTEM, errno, _("cannot open a pidfd for process %1$d"),
                              (int)pid);
        return -1;
    }
    return (int)fd;
}

int
qemu_process_pidfd_send_signal(int pidfd, int sig)
{
    if (syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0) < 0) {
        ho_error_report_errno(HO_ERR_SYSTEM, errno, _("cannot send signal %1$d through a pidfd"),
                              sig);
        return -1;
    }
    return 0;
}
