/*
 * A mock QMP server that plays a transcript from tests/qemumonitorjsondata/.
 *
 * Transcript format: the flight recorder's JSON lines (see qemu_recorder.h),
 * plus
 *   - '#' comment lines, and blank lines, ignored; every transcript starts
 *     with comments saying what it shows and how it was recorded;
 *   - an optional first JSON line {"meta":{"schema":{"src":"qemu-7.2", ...}}}
 *     naming, per side, the schema file schema/<name>.json (a saved
 *     query-qmp-schema reply) that every command the client sends is
 *     checked against;
 *   - ${name} placeholders inside strings. In a "send" line (what the code
 *     under test must send) a placeholder binds on first use to what the
 *     client sent and must match on every later use; a string that is
 *     exactly "${name}" matches any scalar. In a "recv" line (what the mock
 *     answers) placeholders are replaced by their bound values, a whole
 *     "${name}" by the value's own JSON type.
 *
 * Each side ("src", "dst", ...) gets its own UNIX socket. Per side, lines
 * play in file order: "open" waits for the client to connect, "recv" lines
 * are written (greeting, replies with the client's id substituted for the
 * recorded one, events with a fresh timestamp), "send" lines wait for the
 * client's next command and compare it (JSON equality ignoring "id" and key
 * order, placeholders as above), "close" closes the connection as if QEMU
 * had died. Across sides, a "recv" line is held until every "send" line
 * above it in the file, on any side, has been matched: QEMU's output
 * follows the input that caused it. A "recv" line also waits the recorded
 * time since the previous line of its side, capped (default 200 ms).
 *
 * A "close" line with "by": "client" does not close: it waits until the
 * client drops the connection (the code under test killed QEMU or closed
 * its monitor), then counts as QEMU gone like any "close".
 *
 * A "recv" line with "quiet_ms": N is written only after N ms in which the
 * client sent that side nothing: a command arriving first (or already
 * waiting) fails the test. It proves the code waits for that output
 * (say the last BLOCK_JOB_COMPLETED before migrate-continue) instead of
 * racing ahead of it.
 *
 * A line {"include": FILE, "side": SIDE} inserts the records of FILE (a
 * path relative to the including transcript, one side only, no nested
 * include) as side SIDE, with its meta schema unless the outer file named
 * one for SIDE. Optional: "start_at": CMD (the records from the first
 * command CMD on only, e.g. a probe without its greeting), "stop_at": CMD
 * (the records before the first command CMD only, e.g. to drop a
 * recording's final quit) and
 * "replace_return": {CMD: VALUE} (the reply to CMD returns VALUE, e.g. a
 * capability list with one removed). Errors in included records are
 * reported at the include line.
 *
 * Any mismatch (unexpected command, wrong arguments, schema violation,
 * commands after the transcript ended, early disconnect) records a failure
 * with a diff of expected against actual, and the mock stops answering.
 */
#pragma once

#include <glib.h>
#include <stdbool.h>

typedef struct _QemuMock QemuMock;

/* Load a transcript (absolute, or relative to tests/qemumonitorjsondata/)
 * and listen on one socket per side in a temporary directory. NULL and an
 * error (file, line and reason) when the transcript is malformed. */
QemuMock *qemu_mock_new(const char *transcript, GMainContext *ctx);
void qemu_mock_free(QemuMock *mock);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(QemuMock, qemu_mock_free)

/* The socket path a client should connect to for side; NULL for an
 * unknown side. */
const char *qemu_mock_socket_path(QemuMock *mock, const char *side);
/* The sides in the transcript, NULL-terminated (owned by mock). */
const char *const *qemu_mock_sides(QemuMock *mock);
/* Bind a placeholder in advance (a string value). */
void qemu_mock_bind(QemuMock *mock, const char *name, const char *value);
/* The text a placeholder is bound to, or NULL. */
const char *qemu_mock_lookup(QemuMock *mock, const char *name);
/* Cap on the recorded delay before a "recv" line (ms). */
void qemu_mock_set_max_delay(QemuMock *mock, guint ms);

/* Serve side on a new listening socket at path (created here, removed
 * when the mock is freed) instead of the one in the temporary directory:
 * for code that connects to a path it chose. 0, or -1 and an error. */
int qemu_mock_side_listen_at(QemuMock *mock, const char *side, const char *path);

/* Called each time a "close" record of a side is played (also when the
 * client had already left): that side's QEMU is gone, and a test that
 * stands in a process for it ends that process here. */
typedef void (*QemuMockCloseFunc)(QemuMock *mock, const char *side, void *opaque);
void qemu_mock_set_close_func(QemuMock *mock, QemuMockCloseFunc fn, void *opaque);

/* What was played so far, in order, one string per line: "SIDE send CMD"
 * (a command matched), "SIDE recv EVENT", "SIDE recv MIGRATION STATUS"
 * (events with a data.status), "SIDE recv return", "SIDE recv error",
 * "SIDE close". For cross-side order checks. */
const GPtrArray *qemu_mock_history(QemuMock *mock);
/* Called with each new history line as it is played (from inside the
 * mock: act on it from an idle). */
typedef void (*QemuMockHistoryFunc)(QemuMock *mock, const char *line, void *opaque);
void qemu_mock_set_history_func(QemuMock *mock, QemuMockHistoryFunc fn, void *opaque);

/* Whether every line has been played and nothing went wrong. */
bool qemu_mock_done(QemuMock *mock);
/* The first failure (with a diff where it applies), or NULL. */
const char *qemu_mock_failure(QemuMock *mock);
/* Iterate the context until done, a failure, or timeout_ms; 0 when done
 * without failure, else -1 (the failure or "timed out at <file>:<line>:
 * waiting for ..." in the per-thread error). */
int qemu_mock_run(QemuMock *mock, guint timeout_ms);
