/*
 * Starting QEMU processes: the host's accelerator, the firmware
 * directories of an emulator, and spawning with a QMP socket the caller
 * already listens on (passed as an fd, so the monitor can connect at once
 * instead of waiting for a socket file to appear).
 */
#pragma once

#include <glib.h>
#include <stdbool.h>
#include <sys/types.h>

/* "kvm" when /dev/kvm can create a VM, else "tcg"; *why (if non-NULL) gets
 * the reason KVM is not used, or NULL. Probed once per process. */
const char *qemu_process_host_accel(const char **why);

/* The -L directories for an emulator: for a binary unpacked into a private
 * prefix (PREFIX/usr/bin/qemu-system-x86_64 with PREFIX/usr/share/qemu
 * present, PREFIX not "/"), its own firmware dirs; for a system binary,
 * none. NULL-terminated, g_strfreev it. */
char **qemu_process_firmware_dirs(const char *emulator);

typedef struct {
    const char *emulator;          /* path of the QEMU binary */
    const char *const *fw_dirs;    /* -L directories, NULL-terminated, may be NULL */
    const char *accel;             /* "kvm" or "tcg"; NULL: no -accel */
    const char *qmp_path;          /* where to create the QMP listening socket */
    const char *log_path;          /* QEMU's stdout and stderr (created, truncated) */
    bool log_append;               /* append to log_path instead of truncating it */
    const char *workdir;           /* cwd of the child; NULL: inherit */
    const char *const *extra_args; /* more arguments, NULL-terminated, may be NULL */
    bool die_with_parent;          /* PR_SET_PDEATHSIG: tests and tools, not the daemon */
    /* extra_args is a whole command line from qemu_command_build (without
     * its argv[0] and without a QMP socket): add only the QMP monitor, not
     * -nodefaults, -no-user-config, -display none; fw_dirs and accel must
     * be NULL (the command line has them). */
    bool args_complete;
    bool set_nice;                 /* the child runs at nice (not the caller's value) */
    int nice;
} QemuProcessSpawn;

/* Create the QMP listening socket at opts->qmp_path, spawn the emulator
 * with -nodefaults -no-user-config -display none, the socket as fd 3 for
 * its monitor, and the extra arguments. The child is not reaped (the
 * caller adds a child watch). *pid set on success; -1 and an error naming
 * the binary otherwise (nothing left behind). */
int qemu_process_spawn(const QemuProcessSpawn *opts, GPid *pid);

/* The start time of a process (field 22 of /proc/PID/stat, clock ticks
 * since boot): with the pid it names one process, never a later one that
 * reuses the pid. -1 and an error when there is no such process. */
int qemu_process_start_time(pid_t pid, unsigned long long *start_time);
/* pidfd_open(2): a close-on-exec fd naming the process, readable once it
 * has exited (reaped or not); works for processes that are not our
 * children. -1 and an error. */
int qemu_process_pidfd_open(pid_t pid);
/* Send a signal through a pidfd, which cannot hit a later process with
 * the same pid; -1 and an error (ESRCH included: it has exited). */
int qemu_process_pidfd_send_signal(int pidfd, int sig);

/* Scheduling priority of a whole process. Linux keeps a nice value per
 * thread; and a session leader heads a scheduler autogroup of its own
 * (when the kernel has autogroups), whose nice value weighs it against
 * other sessions: the value that counts when the CPUs are contended,
 * since the scheduler shares them between autogroups first. QEMUs are
 * session leaders (qemu_process_spawn). */
typedef struct {
    int threads;    /* the main thread's nice value */
    bool has_group; /* pid leads its session and /proc/PID/autogroup exists */
    int group;      /* that autogroup's nice value */
} QemuProcessNice;

/* Read both; -1 and an error when the process is gone. */
int qemu_process_get_nice(pid_t pid, QemuProcessNice *nice);
/* Set every thread (through /proc/PID/task) to nice->threads and, with
 * has_group, the autogroup to nice->group. A thread that exits meanwhile
 * is skipped; one created meanwhile inherits its creator's value. The
 * number of threads set; -1 and an error when none could be, or the
 * autogroup could not be (going below the current value needs
 * CAP_SYS_NICE). */
int qemu_process_set_nice(pid_t pid, const QemuProcessNice *nice);
/* from, boost levels higher (lower nice values), at most -20. */
void qemu_process_nice_boost(const QemuProcessNice *from, unsigned int boost,
                             QemuProcessNice *to);
/* Raise pid (threads and autogroup) levels higher: get, boost, set. *before
 * gets the values it ran at and *after the new ones. 0; or -1 and an
 * error, with whatever was set put back. */
int qemu_process_boost(pid_t pid, unsigned int levels, QemuProcessNice *before,
                       QemuProcessNice *after);
