#define HO_LOG_MODULE "qemu.process"

#include "qemu_process.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
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
    /* A session of its own: with scheduler autogroups the kernel then
     * shares the CPUs between guests (and the daemon), not between their
     * threads, so one QEMU's threads cannot crowd out the daemon's loop. */
    (void)setsid();
    /* A value at or above the caller's needs no privilege. */
    if (opts->set_nice)
        (void)setpriority(PRIO_PROCESS, 0, opts->nice);
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

int
qemu_process_get_nice(pid_t pid, QemuProcessNice *nice)
{
    g_autofree char *path = g_strdup_printf("/proc/%d/autogroup", (int)pid);
    g_autofree char *text = NULL;
    const char *p;
    int val;

    memset(nice, 0, sizeof(*nice));
    errno = 0;
    val = getpriority(PRIO_PROCESS, (id_t)pid);
    if (val == -1 && errno) {
        ho_error_report_errno(HO_ERR_SYSTEM, errno,
                              _("cannot read the scheduling priority of process %1$d"), (int)pid);
        return -1;
    }
    nice->threads = val;
    /* "/autogroup-123 nice 0" */
    if (getsid(pid) == pid && g_file_get_contents(path, &text, NULL, NULL) &&
        (p = strstr(text, " nice ")) && sscanf(p + 6, "%d", &val) == 1) {
        nice->has_group = true;
        nice->group = val;
    }
    return 0;
}

static int
process_set_autogroup_nice(pid_t pid, int nice)
{
    g_autofree char *path = g_strdup_printf("/proc/%d/autogroup", (int)pid);
    g_autofree char *text = g_strdup_printf("%d", nice);
    int fd;
    ssize_t n;

    fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) {
        ho_error_report_errno(HO_ERR_SYSTEM, errno, _("cannot open '%1$s'"), path);
        return -1;
    }
    n = write(fd, text, strlen(text));
    if (n < 0) {
        int err = errno;

        close(fd);
        ho_error_report_errno(HO_ERR_SYSTEM, err,
                              _("cannot set the nice value of the autogroup of process %1$d "
                                "to %2$d"),
                              (int)pid, nice);
        return -1;
    }
    close(fd);
    return 0;
}

int
qemu_process_set_nice(pid_t pid, const QemuProcessNice *nice)
{
    g_autofree char *path = g_strdup_printf("/proc/%d/task", (int)pid);
    DIR *dir = opendir(path);
    struct dirent *ent;
    int set = 0, err = 0;

    if (!dir) {
        ho_error_report_errno(HO_ERR_SYSTEM, errno, _("cannot list the threads of process %1$d"),
                              (int)pid);
        return -1;
    }
    while ((ent = readdir(dir))) {
        char *end = NULL;
        long tid;

        if (ent->d_name[0] < '0' || ent->d_name[0] > '9')
            continue;
        errno = 0;
        tid = strtol(ent->d_name, &end, 10);
        if (errno || *end || tid <= 0)
            continue;
        if (setpriority(PRIO_PROCESS, (id_t)tid, nice->threads) == 0)
            set++;
        else if (errno != ESRCH)
            err = errno;
    }
    closedir(dir);
    if (!set) {
        ho_error_report_errno(HO_ERR_SYSTEM, err ? err : ESRCH,
                              _("cannot set the scheduling priority of process %1$d to %2$d"),
                              (int)pid, nice->threads);
        return -1;
    }
    if (nice->has_group && process_set_autogroup_nice(pid, nice->group) < 0)
        return -1;
    return set;
}

int
qemu_process_boost(pid_t pid, unsigned int levels, QemuProcessNice *before,
                   QemuProcessNice *after)
{
    HoError *err;

    if (qemu_process_get_nice(pid, before) < 0)
        return -1;
    qemu_process_nice_boost(before, levels, after);
    if (qemu_process_set_nice(pid, after) >= 0)
        return 0;
    /* The threads may be set when the autogroup was refused. */
    err = ho_error_steal();
    (void)qemu_process_set_nice(pid, before);
    ho_error_reset();
    ho_error_set(err);
    return -1;
}

void
qemu_process_nice_boost(const QemuProcessNice *from, unsigned int boost, QemuProcessNice *to)
{
    int b = (int)MIN(boost, 39u);

    *to = *from;
    to->threads = MAX(-20, from->threads - b);
    to->group = MAX(-20, from->group - b);
}
