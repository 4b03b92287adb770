/*
 * handoverd's configuration: a GKeyFile with one group, [handoverd]
 * (docs/handoverd.md lists the keys and their defaults).
 *
 * Loading is strict: an unknown group or key, or a value that does not
 * parse or is out of range, is an error naming the file, group, key and
 * value, and nothing in the configuration changes. Directories that
 * neither --root nor the file set are filled in by handoverd_conf_finish()
 * from where the daemon runs (root or an ordinary user).
 */
#pragma once

#include <glib.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define HANDOVERD_CONF_GROUP "handoverd"

typedef struct {
    char *state_dir;                      /* persistent: definitions, host-uuid, caps cache */
    char *runtime_dir;                    /* volatile: status files, QMP sockets, pid file */
    char *log_dir;                        /* per-domain logs */
    char *socket_path;                    /* the UNIX socket; default runtime_dir/handoverd.sock */
    mode_t socket_mode;                   /* default 0600 */
    char *listen_address;                 /* TCP for peer daemons; NULL: no TCP listener */
    unsigned int listen_port;             /* default 16514; 0 picks a free port */
    unsigned int keepalive_interval;      /* seconds between peer pings, default 5; 0: off */
    unsigned int keepalive_count;         /* unanswered pings before a peer is dead, default 5 */
    char *migration_address;              /* default 127.0.0.1 */
    unsigned int migration_port_min;      /* default 49152 */
    unsigned int migration_port_max;      /* default 49215 */
    unsigned int nbd_port_min;            /* storage copy's NBD servers: default 10809 */
    unsigned int nbd_port_max;            /* default 10872; never overlapping the above */
    char *migration_record_dir;           /* a flight recording per job there; NULL: off */
    unsigned int migration_progress_interval; /* ms between job progress events, default 500 */
    unsigned int migration_mirror_stall_timeout; /* s a disk mirror may make no progress
                                                  * before the migration aborts, default 60 */
    unsigned int priority_boost; /* nice levels above the one handoverd started at */
    unsigned int migration_switchover_boost; /* nice levels for a guest in switchover */
    unsigned int migration_downtime_start; /* ms the downtime limit starts at; 0: off */
    size_t migration_mirror_buf_size;     /* bytes a disk mirror keeps in flight,
                                           * default 4 MiB; 0: QEMU's own (16 MiB) */
    size_t migration_stream_buffer;       /* the migration stream's socket buffers in
                                           * bytes; 0 (default): sized from the round trip */
    unsigned int postcopy_stall_timeout;  /* s a postcopy migration may stall (no progress,
                                           * or a silent peer daemon) before it is forced
                                           * into postcopy-paused, default 10 */
    char *host_uuid;                      /* NULL: state_dir/host-uuid (generated once) */
    char *default_emulator;               /* NULL: qemu-system-x86_64 on PATH */
    unsigned int max_clients;             /* default 64 */
    size_t max_message_size;              /* bytes, default 1048576 */
    unsigned int max_requests_per_client; /* default 32 */
    unsigned int shutdown_timeout;        /* seconds, default 60 */
    char *log_level;                      /* "debug", "info", "warn", "error"; NULL: unset */
    char *log_filters;                    /* "module:level,..."; NULL: unset */
    char *log_file;                       /* NULL: stderr */
    char *record_qmp;                     /* flight recorder path; NULL: off */
} HandoverdConf;

/* Where the directories go when neither --root nor the file names them. */
typedef struct {
    bool system;              /* running as root: /run, /var/lib, /var/log */
    const char *runtime_base; /* a user's $XDG_RUNTIME_DIR */
    const char *data_base;    /* a user's ~/.local/share */
} HandoverdConfHost;

/* A configuration holding the defaults (directories unset). */
HandoverdConf *handoverd_conf_new(void);
/* Free a configuration; accepts NULL. */
void handoverd_conf_free(HandoverdConf *conf);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(HandoverdConf, handoverd_conf_free)

/* Read and apply a configuration file (at most 1 MiB); -1 and an error
 * naming the file (and group, key and value where one is at fault), and
 * conf unchanged. */
int handoverd_conf_load_file(HandoverdConf *conf, const char *path);
/* The same from text; name stands for the file in messages. */
int handoverd_conf_load_data(HandoverdConf *conf, const char *data, size_t len, const char *name);

/* The host facts of this process (geteuid, XDG directories). */
void handoverd_conf_host_default(HandoverdConfHost *host);
/* Fill in what is still unset: with root (--root DIR, which overrides the
 * directory and socket keys of the file) DIR/state, DIR/run, DIR/log and
 * DIR/run/handoverd.sock; else the defaults of host. -1 and an error when
 * root is not an absolute path. */
int handoverd_conf_finish(HandoverdConf *conf, const char *root, const HandoverdConfHost *host);

/* The host UUID: the configured one, else the one kept in
 * state_dir/host-uuid, else a new random one written there (state_dir
 * must exist). Sets conf->host_uuid; -1 and an error naming the file when
 * it cannot be read, is malformed or cannot be written. */
int handoverd_conf_ensure_host_uuid(HandoverdConf *conf);

/* The keepalive of connections between daemons (a migration's peer
 * connection, both ways): the configured keepalive_interval and
 * keepalive_count, tightened so that a dead peer is noticed within
 * postcopy_stall_timeout. A connection is taken for dead after
 * (count + 2) x interval of silence at most (one interval that may still
 * have heard something, count unanswered pings, the final check), so the
 * interval is at most a fifth of the stall timeout and count at most 3.
 * Both 0 when keepalive_interval is 0 (off). */
void handoverd_conf_peer_keepalive(const HandoverdConf *conf, unsigned int *interval_ms,
                                   unsigned int *count);

/* The effective configuration as "key = value" lines in a fixed order,
 * unset keys as "key = (unset)" (g_free it). */
char *handoverd_conf_format(const HandoverdConf *conf);
