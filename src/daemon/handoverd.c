/*
 * handoverd: the per-host daemon. It owns the QEMU processes of its host
 * through the QEMU driver and serves the handoverd protocol on a UNIX
 * socket (and on TCP for peer daemons when configured).
 *
 * Start-up does everything that can fail before it listens: options,
 * configuration, logging, directories, the instance lock, the host UUID,
 * the driver (which reconnects to running QEMUs). A failure there prints
 * one message and exits 1. Once listening it tells a waiting parent
 * through --ready-fd and runs one GLib main loop until SIGTERM or SIGINT,
 * then stops serving, frees the driver (running QEMUs keep running, a
 * restarted daemon finds them again), removes its socket and exits 0.
 */
#define HO_LOG_MODULE "daemon"

#include <errno.h>
#include <fcntl.h>
#include <glib-unix.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "handoverd_conf.h"
#include "handoverd_methods.h"
#include "ho_error.h"
#include "ho_file.h"
#include "ho_i18n.h"
#include "ho_log.h"
#include "ho_rpc_server.h"
#include "qemu_driver.h"
#include "qemu_migration.h"
#include "qemu_process.h"

#ifndef HO_SYSCONFDIR
#define HO_SYSCONFDIR "/etc"
#endif

#define HANDOVERD_DEFAULT_EMULATOR "qemu-system-x86_64"
#define HANDOVERD_PID_FILE "handoverd.pid"

typedef struct {
    HandoverdConf *conf;
    GMainLoop *loop;
    char *emulator; /* the resolved default emulator */
    char *pid_path;
    int lock_fd; /* the locked pid file; -1 when not held */
    HandoverdMethods *methods;
    HoRpcServer *server;
    QemuDriver *driver;
    QemuMigration *migration;
    bool socket_created;
    int stop_signal; /* the signal that ended the loop */
    guint signal_ids[3];
} Handoverd;

static char *opt_config;
static char *opt_root;
static char *opt_log_level;
static int opt_ready_fd = -1;
static gboolean opt_version;

static GOptionEntry option_entries[] = {
    {"config", 'c', 0, G_OPTION_ARG_FILENAME, &opt_config, N_("read the configuration from FILE"),
     N_("FILE")},
    {"root", 0, 0, G_OPTION_ARG_FILENAME, &opt_root,
     N_("keep every directory and the socket under DIR (a self-contained instance)"), N_("DIR")},
    {"ready-fd", 0, 0, G_OPTION_ARG_INT, &opt_ready_fd,
     N_("write READY to file descriptor N once listening, then close it"), N_("N")},
    {"log-level", 0, 0, G_OPTION_ARG_STRING, &opt_log_level,
     N_("log messages of LEVEL and above: debug, info, warn, error"), N_("LEVEL")},
    {"version", 'V', 0, G_OPTION_ARG_NONE, &opt_version, N_("print the version and exit"), NULL},
    G_OPTION_ENTRY_NULL,
};

/* The one place start-up failures are shown: stderr, and the log file
 * when there is one. */
static void
handoverd_print_error(const HandoverdConf *conf)
{
    const char *msg = ho_error_last_message();

    g_printerr(_("handoverd: %1$s\n"), msg);
    if (conf && conf->log_file)
        HO_ERROR("%s", msg);
}

static int
handoverd_parse_options(int *argc, char ***argv)
{
    g_autoptr(GOptionContext) ctx = g_option_context_new(NULL);
    g_autoptr(GError) gerr = NULL;

    g_option_context_set_summary(ctx, _("The handover daemon: runs and migrates the QEMU "
                                        "guests of this host."));
    g_option_context_add_main_entries(ctx, option_entries, HO_GETTEXT_PACKAGE);
    g_option_context_set_translation_domain(ctx, HO_GETTEXT_PACKAGE);
    if (!g_option_context_parse(ctx, argc, argv, &gerr)) {
        ho_error_report(HO_ERR_INVALID_ARG, _("%1$s (see 'handoverd --help')"), gerr->message);
        return -1;
    }
    if (*argc > 1) {
        ho_error_report(HO_ERR_INVALID_ARG,
                        _("unexpected argument '%1$s' (see 'handoverd --help')"), (*argv)[1]);
        return -1;
    }
    return 0;
}

/* The configuration file to read: --config, else the system's or the
 * user's when it exists; none with --root (a self-contained instance). */
static char *
handoverd_config_path(const HandoverdConfHost *host)
{
    g_autofree char *path = NULL;

    if (opt_config)
        return g_strdup(opt_config);
    if (opt_root)
        return NULL;
    if (host->system)
        path = g_build_filename(HO_SYSCONFDIR, "handover", "handoverd.conf", NULL);
    else
        path = g_build_filename(g_get_user_config_dir(), "handover", "handoverd.conf", NULL);
    if (!g_file_test(path, G_FILE_TEST_EXISTS))
        return NULL;
    return g_steal_pointer(&path);
}

/* Configuration file first, then HANDOVER_LOG_* from the environment,
 * then --log-level: the more specific to this run wins. */
static int
handoverd_setup_logging(const HandoverdConf *conf)
{
    HoLogLevel level;

    if (conf->log_level) {
        if (ho_log_level_parse(conf->log_level, &level) < 0)
            return -1;
        ho_log_set_level(level);
    }
    if (conf->log_filters && ho_log_set_filters(conf->log_filters) < 0)
        return -1;
    if (conf->log_file) {
        g_autofree char *dir = g_path_get_dirname(conf->log_file);

        if (ho_file_ensure_dir(dir, 0700) < 0 || ho_log_set_output(conf->log_file) < 0)
            return -1;
    }
    ho_log_init();
    if (opt_log_level) {
        if (ho_log_level_parse(opt_log_level, &level) < 0)
            return -1;
        ho_log_set_level(level);
    }
    return 0;
}

static int
handoverd_check_ready_fd(void)
{
    int flags;

    if (opt_ready_fd < 0)
        return 0;
    flags = fcntl(opt_ready_fd, F_GETFD);
    if (flags < 0) {
        ho_error_report_errno(HO_ERR_INVALID_ARG, errno, _("invalid --ready-fd '%1$d'"),
                              opt_ready_fd);
        return -1;
    }
    /* No QEMU we start may inherit it: the reader would never see EOF. */
    if (fcntl(opt_ready_fd, F_SETFD, flags | FD_CLOEXEC) < 0) {
        ho_error_report_errno(HO_ERR_SYSTEM, errno,
                              _("cannot set close-on-exec on --ready-fd '%1$d'"), opt_ready_fd);
        return -1;
    }
    return 0;
}

static void
handoverd_signal_ready(void)
{
    static const char line[] = "READY\n";
    size_t done = 0;

    if (opt_ready_fd < 0)
        return;
    while (done < sizeof(line) - 1) {
        ssize_t n = write(opt_ready_fd, line + done, sizeof(line) - 1 - done);

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            HO_WARN("cannot write to --ready-fd %d: %s", opt_ready_fd, g_strerror(errno));
            break;
        }
        done += n;
    }
    close(opt_ready_fd);
    opt_ready_fd = -1;
}

static int
handoverd_make_dirs(const HandoverdConf *conf)
{
    g_autofree char *sock_dir = g_path_get_dirname(conf->socket_path);

    /* Definitions and logs are nobody else's business; the runtime
     * directory must be searchable for a socket_mode that lets others in. */
    if (ho_file_ensure_dir(conf->state_dir, 0700) < 0 ||
        ho_file_ensure_dir(conf->runtime_dir, 0755) < 0 ||
        ho_file_ensure_dir(conf->log_dir, 0700) < 0 || ho_file_ensure_dir(sock_dir, 0755) < 0)
        return -1;
    return 0;
}

/* One daemon per runtime directory: two would fight over the same QEMUs.
 * The lock dies with the process, so a daemon killed by SIGKILL does not
 * block its successor. */
static int
handoverd_lock(Handoverd *d)
{
    g_autofree char *text = NULL;
    int fd;

    d->pid_path = g_build_filename(d->conf->runtime_dir, HANDOVERD_PID_FILE, NULL);
    fd = open(d->pid_path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOCTTY, 0644);
    if (fd < 0) {
        ho_error_report_errno(HO_ERR_SYSTEM, errno, _("cannot open '%1$s'"), d->pid_path);
        return -1;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        int err = errno;
        char buf[32] = "";
        ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);

        close(fd);
        if (err == EWOULDBLOCK) {
            buf[n > 0 ? n : 0] = '\0';
            g_strstrip(buf);
            ho_error_report(HO_ERR_OPERATION_INVALID,
                            _("another handoverd (pid %2$s) is running on the runtime "
                              "directory '%1$s'"),
                            d->conf->runtime_dir, *buf ? buf : "?");
        } else {
            ho_error_report_errno(HO_ERR_SYSTEM, err, _("cannot lock '%1$s'"), d->pid_path);
        }
        return -1;
    }
    text = g_strdup_printf("%d\n", (int)getpid());
    if (ftruncate(fd, 0) < 0 || pwrite(fd, text, strlen(text), 0) != (ssize_t)strlen(text)) {
        ho_error_report_errno(HO_ERR_SYSTEM, errno, _("cannot write '%1$s'"), d->pid_path);
        close(fd);
        return -1;
    }
    d->lock_fd = fd;
    return 0;
}

static void
handoverd_unlock(Handoverd *d)
{
    if (d->lock_fd < 0)
        return;
    /* Unlink while still holding the lock, so a successor never locks a
     * file that is about to disappear. */
    if (unlink(d->pid_path) < 0 && errno != ENOENT)
        HO_WARN("cannot remove '%s': %s", d->pid_path, g_strerror(errno));
    close(d->lock_fd);
    d->lock_fd = -1;
}

/* The default emulator as an absolute path when it can be found. */
static char *
handoverd_resolve_emulator(const HandoverdConf *conf)
{
    const char *name =
        conf->default_emulator ? conf->default_emulator : HANDOVERD_DEFAULT_EMULATOR;
    char *found;

    if (g_path_is_absolute(name))
        return g_strdup(name);
    if ((found = g_find_program_in_path(name)))
        return found;
    /* Only the built-in default can get here: a configured one was
     * checked when the file was read. Domains naming their emulator
     * still work. */
    HO_WARN("no '%s' on PATH: domains must name their <emulator>", name);
    return g_strdup(name);
}

static gboolean
handoverd_on_sigterm(gpointer opaque)
{
    Handoverd *d = opaque;

    d->stop_signal = SIGTERM;
    g_main_loop_quit(d->loop);
    return G_SOURCE_CONTINUE;
}

static gboolean
handoverd_on_sigint(gpointer opaque)
{
    Handoverd *d = opaque;

    d->stop_signal = SIGINT;
    g_main_loop_quit(d->loop);
    return G_SOURCE_CONTINUE;
}

static gboolean
handoverd_on_sighup(gpointer opaque)
{
    HO_WARN("SIGHUP: reloading the configuration is not supported; restart handoverd");
    return G_SOURCE_CONTINUE;
}

/* priority_boost: every thread of the daemon, and its autogroup when it
 * leads its session (a systemd service does), runs that many nice levels
 * above where it started, so that its one loop is not queued behind the
 * QEMUs it drives; those start at the original value, each in a session
 * of its own. Without CAP_SYS_NICE it warns and runs as it started. */
static void
handoverd_boost_priority(const HandoverdConf *conf, QemuDriverConfig *dcfg)
{
    QemuProcessNice orig, target;

    if (!conf->priority_boost)
        return;
    if (qemu_process_boost(getpid(), conf->priority_boost, &orig, &target) < 0) {
        HO_WARN("priority_boost: handoverd runs without it (set priority_boost = 0 in the "
                "configuration to turn it off): %s",
                ho_error_last_message());
        ho_error_reset();
        return;
    }
    dcfg->qemu_nice_set = true;
    dcfg->qemu_nice = orig.threads;
    HO_INFO("running at nice %d%s; QEMUs start at %d", target.threads,
            target.has_group ? " (and so does its autogroup)" : "", orig.threads);
}

static int
handoverd_start(Handoverd *d, int *argc, char ***argv)
{
    HandoverdConfHost host;
    g_autofree char *conf_path = NULL;
    const HoRpcMethod *methods;
    size_t nmethods;
    HoRpcLimits limits;
    QemuDriverConfig dcfg = {0};
    QemuMigrationConfig mcfg = {0};
    HandoverdPeerConfig pcfg = {0};
    unsigned int ka_interval_ms = 0;
    unsigned int ka_count = 0;

    if (handoverd_parse_options(argc, argv) < 0)
        return -1;
    if (opt_version)
        return 0;

    handoverd_conf_host_default(&host);
    d->conf = handoverd_conf_new();
    conf_path = handoverd_config_path(&host);
    if (conf_path && handoverd_conf_load_file(d->conf, conf_path) < 0)
        return -1;
    if (handoverd_conf_finish(d->conf, opt_root, &host) < 0)
        return -1;
    if (handoverd_check_ready_fd() < 0)
        return -1;
    if (handoverd_setup_logging(d->conf) < 0)
        return -1;
    if (ho_log_enabled(HO_LOG_DEBUG, HO_LOG_MODULE)) {
        g_autofree char *text = handoverd_conf_format(d->conf);

        HO_DEBUG("configuration%s%s:\n%s", conf_path ? " from " : "", conf_path ? conf_path : "",
                 text);
    }

    if (handoverd_make_dirs(d->conf) < 0 || handoverd_lock(d) < 0 ||
        handoverd_conf_ensure_host_uuid(d->conf) < 0)
        return -1;
    d->emulator = handoverd_resolve_emulator(d->conf);
    handoverd_boost_priority(d->conf, &dcfg);

    d->methods = handoverd_methods_new(g_get_host_name(), d->conf->host_uuid, d->emulator);
    ho_rpc_limits_default(&limits);
    limits.max_message_size = d->conf->max_message_size;
    limits.max_clients = d->conf->max_clients;
    limits.max_requests = d->conf->max_requests_per_client;
    methods = handoverd_methods_table(&nmethods);
    d->server = ho_rpc_server_new(methods, nmethods, d->methods,
                                  handoverd_methods_hello_info(d->methods), &limits, NULL);
    if (!d->server)
        return -1;
    handoverd_methods_set_server(d->methods, d->server);
    /* Peer daemons ask for pings in their hello; local clients do not.
     * Both directions notice a dead peer within postcopy_stall_timeout. */
    handoverd_conf_peer_keepalive(d->conf, &ka_interval_ms, &ka_count);
    ho_rpc_server_set_keepalive(d->server, ka_interval_ms, ka_count);

    dcfg.state_dir = d->conf->state_dir;
    dcfg.runtime_dir = d->conf->runtime_dir;
    dcfg.log_dir = d->conf->log_dir;
    dcfg.default_emulator = d->emulator;
    dcfg.shutdown_timeout_s = d->conf->shutdown_timeout;
    dcfg.record_path = d->conf->record_qmp;
    d->driver = qemu_driver_open(&dcfg, NULL, handoverd_methods_driver_event, d->methods);
    if (!d->driver)
        return -1;
    handoverd_methods_set_driver(d->methods, d->driver);

    mcfg.host_uuid = d->conf->host_uuid;
    mcfg.hostname = g_get_host_name();
    mcfg.migration_address = d->conf->migration_address;
    mcfg.migration_port_min = (int)d->conf->migration_port_min;
    mcfg.migration_port_max = (int)d->conf->migration_port_max;
    mcfg.record_dir = d->conf->migration_record_dir;
    mcfg.progress_interval_ms = d->conf->migration_progress_interval;
    /* Storage copy: a range of its own, since the NBD server and the
     * incoming migration listen at the same time (see handoverd_conf.c). */
    mcfg.nbd_port_min = (int)d->conf->nbd_port_min;
    mcfg.nbd_port_max = (int)d->conf->nbd_port_max;
    mcfg.mirror_stall_s = d->conf->migration_mirror_stall_timeout;
    mcfg.postcopy_stall_s = d->conf->postcopy_stall_timeout;
    mcfg.switchover_boost = d->conf->migration_switchover_boost;
    mcfg.downtime_start_ms = d->conf->migration_downtime_start;
    mcfg.mirror_buf_size = d->conf->migration_mirror_buf_size;
    mcfg.stream_buffer = d->conf->migration_stream_buffer;
    if (mcfg.record_dir && ho_file_ensure_dir(mcfg.record_dir, 0700) < 0)
        return -1;
    d->migration = qemu_migration_new(d->driver, &mcfg, handoverd_methods_migration_event,
                                      d->methods);
    pcfg.keepalive_interval_ms = ka_interval_ms;
    pcfg.keepalive_count = ka_count;
    handoverd_methods_set_migration(d->methods, d->migration, &pcfg);

    d->signal_ids[0] = g_unix_signal_add(SIGTERM, handoverd_on_sigterm, d);
    d->signal_ids[1] = g_unix_signal_add(SIGINT, handoverd_on_sigint, d);
    d->signal_ids[2] = g_unix_signal_add(SIGHUP, handoverd_on_sighup, d);

    if (ho_rpc_server_listen_unix(d->server, d->conf->socket_path, d->conf->socket_mode) < 0)
        return -1;
    d->socket_created = true;
    if (d->conf->listen_address) {
        int port = 0;

        if (ho_rpc_server_listen_tcp(d->server, d->conf->listen_address, (int)d->conf->listen_port,
                                     &port) < 0)
            return -1;
        HO_INFO("listening for peer daemons on %s port %d", d->conf->listen_address, port);
    }
    HO_INFO("handoverd %s listening on '%s' (host UUID %s)", PACKAGE_VERSION_STRING,
            d->conf->socket_path, d->conf->host_uuid);
    handoverd_signal_ready();
    return 0;
}

/* Tear down in the order of the contract: stop serving, free the driver
 * (QEMUs keep running), remove the socket. Safe on a half-started daemon. */
static void
handoverd_stop(Handoverd *d)
{
    size_t i;

    for (i = 0; i < G_N_ELEMENTS(d->signal_ids); i++) {
        if (d->signal_ids[i])
            g_source_remove(d->signal_ids[i]);
    }
    if (d->methods)
        handoverd_methods_set_server(d->methods, NULL);
    g_clear_pointer(&d->server, ho_rpc_server_free);
    /* Jobs stay as persisted; a restarted daemon recovers them. */
    if (d->methods)
        handoverd_methods_set_migration(d->methods, NULL, NULL);
    g_clear_pointer(&d->migration, qemu_migration_free);
    if (d->methods)
        handoverd_methods_set_driver(d->methods, NULL);
    g_clear_pointer(&d->driver, qemu_driver_free);
    g_clear_pointer(&d->methods, handoverd_methods_free);
    if (d->socket_created && unlink(d->conf->socket_path) < 0 && errno != ENOENT)
        HO_WARN("cannot remove '%s': %s", d->conf->socket_path, g_strerror(errno));
    handoverd_unlock(d);
    g_clear_pointer(&d->loop, g_main_loop_unref);
    g_clear_pointer(&d->emulator, g_free);
    g_clear_pointer(&d->pid_path, g_free);
    g_clear_pointer(&d->conf, handoverd_conf_free);
}

int
main(int argc, char **argv)
{
    Handoverd d = {.lock_fd = -1};
    int ret = 0;

    ho_i18n_init();
    ho_log_init();
    /* A client that goes away mid-reply must cost an EPIPE, not the daemon.
     * QEMU ignores SIGPIPE itself, so its children lose nothing. */
    (void)signal(SIGPIPE, SIG_IGN);

    d.loop = g_main_loop_new(NULL, FALSE);
    if (handoverd_start(&d, &argc, &argv) < 0) {
        handoverd_print_error(d.conf);
        ret = 1;
    } else if (opt_version) {
        printf("handoverd %s\n", PACKAGE_VERSION_STRING);
    } else {
        g_main_loop_run(d.loop);
        HO_INFO("stopping on %s", d.stop_signal == SIGINT ? "SIGINT" : "SIGTERM");
    }

    handoverd_stop(&d);
    if (opt_ready_fd >= 0)
        close(opt_ready_fd);
    g_clear_pointer(&opt_config, g_free);
    g_clear_pointer(&opt_root, g_free);
    g_clear_pointer(&opt_log_level, g_free);
    return ret;
}
