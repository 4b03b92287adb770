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
    const char *workdir;           /* cwd of the child; NULL: inherit */
    const char *const *extra_args; /* more arguments, NULL-terminated, may be NULL */
    bool die_with_parent;          /* PR_SET_PDEATHSIG: tests and tools, not the daemon */
} QemuProcessSpawn;

/* Create the QMP listening socket at opts->qmp_path, spawn the emulator
 * with -nodefaults -no-user-config -display none, the socket as fd 3 for
 * its monitor, and the extra arguments. The child is not reaped (the
 * caller adds a child watch). *pid set on success; -1 and an error naming
 * the binary otherwise (nothing left behind). */
int qemu_process_spawn(const QemuProcessSpawn *opts, GPid *pid);
