/*
 * The flight recorder: every QMP exchange appended to a JSON-lines file,
 * one object per line:
 *
 *   {"ts":<monotonic µs>,"side":"src","dir":"send","msg":{...}}
 *
 * dir is "send" (we sent it to QEMU) or "recv" (QEMU sent it to us); "msg"
 * is the QMP message as a JSON value. Two more kinds mark the connection:
 * {"dir":"open"} when a monitor starts and {"dir":"close","reason":"..."}
 * when it ends. Timestamps come from CLOCK_MONOTONIC (ho_time_now_us), so
 * recordings of both QEMUs on one machine share one clock. Transcripts in
 * tests/qemumonitorjsondata/ use this format, with '#' comment lines and
 * ${name} placeholders added.
 *
 * One recorder may be shared by several monitors (threads included); each
 * line is written with a single write() under a lock.
 */
#pragma once

#include <glib.h>
#include <json-c/json.h>

typedef struct _QemuRecorder QemuRecorder;

/* Open (append, create with 0600) a recording file; NULL and an error naming path. */
QemuRecorder *qemu_recorder_open(const char *path);
/* Take a reference. */
QemuRecorder *qemu_recorder_ref(QemuRecorder *rec);
/* Drop a reference; the file closes with the last one. Accepts NULL. */
void qemu_recorder_unref(QemuRecorder *rec);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(QemuRecorder, qemu_recorder_unref)

/* Record one message; text is the raw JSON as sent or received (len bytes).
 * Text that is not valid JSON is recorded as a JSON string under "raw". */
void qemu_recorder_message(QemuRecorder *rec, const char *side, const char *dir,
                           const char *text, size_t len);
/* Record a connection mark: dir "open" or "close", reason may be NULL. */
void qemu_recorder_mark(QemuRecorder *rec, const char *side, const char *dir,
                        const char *reason);
