# -*- coding: utf-8 -*-
# Copyright: daemonless.oci contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The container monitor: the parent of a container's process, its log writer, its exit recorder.

runc records neither a container's exit code nor its output; conmon and
containerd's shim exist for that. This is ours. The runtime starts it (see
create.create_monitored) and then replaces it, by exec, with a fresh
interpreter running only this file's source (`python -I -S -c SOURCE ARGS`),
so that a monitor costs one small interpreter, not a copy of the runtime.
That is why this file imports nothing but the standard library and is
complete in itself, and why it uses the C modules _thread and _signal:
threading and signal import functools, collections and enum, which would
cost more memory than the whole rest of the monitor.

It holds the read ends of the container's stdout and stderr pipes and
appends each line to the log as `TIMESTAMP STREAM F|P TEXT` (the CRI log
format that `tail -f` and log shippers read; P marks a partial line), rotating
at a size limit. Reading never waits on the disk: a writer thread does the
writing, with a bounded backlog whose overflow is recorded in the log. As
subreaper it inherits the container's process, reaps it, and writes
exit.json (exit code, signal, whether the OOM killer was involved, finish
time) beside the state, then exits.
"""
import _signal
import _thread
import os
import select
import sys
import time

EXIT_FILE = "exit.json"
MAX_BACKLOG = 64 << 20       # bytes of log waiting for the disk before lines are dropped
PARTIAL_LINE = 16 << 10      # a line longer than this is logged in P(artial) pieces


def timestamp(seconds_ns=None):
    """RFC 3339 with nanoseconds in UTC (the same form as the state's timestamps)."""
    now = time.time_ns() if seconds_ns is None else seconds_ns
    seconds, nanos = divmod(now, 1000000000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + ".%09dZ" % nanos


def oom_kills(path):
    """The cgroup's oom_kill counter (v1 memory.oom_control or v2 memory.events), or None."""
    if not path:
        return None
    try:
        with open(path) as handle:
            for line in handle:
                key, _sep, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
    except (OSError, ValueError):
        return None
    return None


class LogWriter:
    """Appends records to the log from a thread of its own, rotating at max_size into max_files."""

    def __init__(self, path, max_size, max_files):
        self.path = path
        self.max_size = max_size
        self.max_files = max_files
        self.pending = []
        self.pending_bytes = 0
        self.dropped = 0
        self.closed = False
        self.mutex = _thread.allocate_lock()
        # Released by put/close to wake the writer; held while there is nothing to do.
        self.wakeup = _thread.allocate_lock()
        self.wakeup.acquire()
        self.finished = _thread.allocate_lock()
        self.finished.acquire()
        self.fd = self._open()
        self.size = os.fstat(self.fd).st_size
        _thread.start_new_thread(self._run, ())

    def _open(self):
        return os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o640)

    def _wake(self):
        try:
            self.wakeup.release()
        except RuntimeError:
            pass  # already awake

    def put(self, records):
        """Queue RECORDS, a list of (record bytes, bytes of the container's output it carries)."""
        with self.mutex:
            for record, output_bytes in records:
                if self.pending_bytes + len(record) > MAX_BACKLOG:
                    self.dropped += output_bytes
                else:
                    self.pending.append(record)
                    self.pending_bytes += len(record)
        self._wake()

    def close(self):
        with self.mutex:
            self.closed = True
        self._wake()
        self.finished.acquire()
        os.close(self.fd)

    def _run(self):
        try:
            self._loop()
        finally:
            self.finished.release()

    def _loop(self):
        while True:
            self.wakeup.acquire()
            with self.mutex:
                batch, self.pending, self.pending_bytes = self.pending, [], 0
                dropped, self.dropped = self.dropped, 0
                done = self.closed
            if dropped:
                # The drop happened after everything queued so far: the notice goes after it.
                batch.append(("%s stderr F [monitor: the disk fell behind; %d bytes of output "
                              "were dropped here]\n" % (timestamp(), dropped)).encode())
            self._write_batch(batch)
            if done:
                return

    def _write_batch(self, batch):
        """One write per run of records that fits before the next rotation."""
        run = []
        run_size = 0
        for record in batch:
            if self.max_size and self.size + run_size and self.size + run_size + len(record) > self.max_size:
                self._write(b"".join(run))
                run, run_size = [], 0
                if self.size:
                    self._rotate()
            run.append(record)
            run_size += len(record)
        if run:
            self._write(b"".join(run))

    def _write(self, data):
        view = memoryview(data)
        while view:
            try:
                written = os.write(self.fd, view)
            except InterruptedError:
                continue
            except OSError:
                return  # the state directory is gone (deleted) or the disk is full
            view = view[written:]
            self.size += written

    def _rotate(self):
        """log -> log.1 -> ... -> log.<max_files-1>; the oldest goes, and the new log says how much."""
        os.close(self.fd)
        oldest = self.path if self.max_files <= 1 else "%s.%d" % (self.path, self.max_files - 1)
        removed = 0
        try:
            if os.path.exists(oldest):
                removed = os.stat(oldest).st_size
                os.unlink(oldest)
            for index in range(self.max_files - 1, 0, -1):
                newer = self.path if index == 1 else "%s.%d" % (self.path, index - 1)
                if os.path.exists(newer):
                    os.rename(newer, "%s.%d" % (self.path, index))
        except OSError:
            pass
        self.fd = self._open()
        self.size = 0
        if removed:
            self._write(("%s stderr F [monitor: log rotation removed %d bytes of older output]\n"
                         % (timestamp(), removed)).encode())


class Stream:
    """One of the container's output pipes, cut into log records."""

    def __init__(self, fd, name):
        self.fd = fd
        self.name = name.encode()
        self.partial = b""

    def records(self, chunk):
        """(record, output bytes) pairs for CHUNK; what arrived together shares one timestamp.

        A line longer than PARTIAL_LINE becomes P pieces and a final F piece,
        as the CRI format does; an unfinished line waits for the next chunk
        until it is that long.
        """
        stamp = timestamp().encode()
        data = self.partial + chunk
        lines = data.split(b"\n")
        self.partial = lines.pop()
        records = []
        for line in lines:
            while len(line) > PARTIAL_LINE:
                records.append((b"%s %s P %s\n" % (stamp, self.name, line[:PARTIAL_LINE]), PARTIAL_LINE))
                line = line[PARTIAL_LINE:]
            records.append((b"%s %s F %s\n" % (stamp, self.name, line), len(line) + 1))
        while len(self.partial) >= PARTIAL_LINE:
            piece, self.partial = self.partial[:PARTIAL_LINE], self.partial[PARTIAL_LINE:]
            records.append((b"%s %s P %s\n" % (stamp, self.name, piece), len(piece)))
        return records

    def flush(self):
        if not self.partial:
            return []
        piece, self.partial = self.partial, b""
        return [(b"%s %s P %s\n" % (timestamp().encode(), self.name, piece), len(piece))]


def write_exit(state_dir, record):
    # Its own temp + rename, not atomicfile.write: this file imports nothing of the package (see above).
    path = os.path.join(state_dir, EXIT_FILE)
    tmp = path + ".tmp"
    body = "{%s}" % ", ".join('"%s": %s' % (key, _json_value(value)) for key, value in record.items())
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, body.encode())
        finally:
            os.close(fd)
        os.rename(tmp, path)
    except OSError:
        pass  # deleted under us: nobody is left to read it


def _json_value(value):
    # Only the simple values of the exit record: no json import (memory matters here).
    if value is None:
        return "null"
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return '"%s"' % value.replace("\\", "\\\\").replace('"', '\\"')


def signal_name(signum):
    for name in dir(_signal):
        if name.startswith("SIG") and not name.startswith("SIG_") and getattr(_signal, name) == signum:
            return name
    return str(signum)


def exit_record(status, oom_before, oom_path):
    record = {"exitCode": None, "signal": None, "oomKilled": False, "finished": timestamp()}
    if os.WIFEXITED(status):
        record["exitCode"] = os.WEXITSTATUS(status)
    elif os.WIFSIGNALED(status):
        signum = os.WTERMSIG(status)
        record["exitCode"] = 128 + signum
        record["signal"] = signal_name(signum)
    after = oom_kills(oom_path)
    if after is not None and oom_before is not None and after > oom_before:
        record["oomKilled"] = True
    return record


def monitor(pid, stdout_fd, stderr_fd, state_dir, log_path, max_size, max_files, oom_path, oom_before):
    writer = LogWriter(log_path, max_size, max_files)
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    _signal.set_wakeup_fd(wake_w)
    _signal.signal(_signal.SIGCHLD, lambda *args: None)
    # SIGTERM/SIGINT/SIGHUP meant for the container must not end its monitor.
    for signum in (_signal.SIGTERM, _signal.SIGINT, _signal.SIGHUP, _signal.SIGPIPE):
        _signal.signal(signum, _signal.SIG_IGN)
    streams = {}
    poller = select.poll()
    for fd, name in ((stdout_fd, "stdout"), (stderr_fd, "stderr")):
        if fd >= 0:
            os.set_blocking(fd, False)
            streams[fd] = Stream(fd, name)
            poller.register(fd, select.POLLIN)
    poller.register(wake_r, select.POLLIN)
    exit_status = None
    while streams or exit_status is None:
        # Reap everything: the container's process and any orphan it leaves to us.
        while True:
            try:
                child, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                child = 0
                if exit_status is None:
                    exit_status = 255 << 8  # not our child after all: nothing to learn
            if not child:
                break
            if child == pid:
                exit_status = status
        if exit_status is not None and not streams:
            break
        for fd, _events in poller.poll():
            if fd == wake_r:
                try:
                    os.read(wake_r, 4096)
                except BlockingIOError:
                    pass
                continue
            stream = streams[fd]
            try:
                chunk = os.read(fd, 65536)
            except BlockingIOError:
                continue
            except OSError:
                chunk = b""  # a terminal's master reads EIO once the container's side is closed
            if chunk:
                writer.put(stream.records(chunk))
            else:
                writer.put(stream.flush())
                poller.unregister(fd)
                os.close(fd)
                del streams[fd]
    writer.close()
    write_exit(state_dir, exit_record(exit_status, oom_before, oom_path))


def main(argv):
    pid, stdout_fd, stderr_fd, state_dir, log_path, max_size, max_files, oom_path, oom_before = argv
    # OOM_BEFORE is the counter the runtime read before the container could run (create._become_monitor).
    monitor(int(pid), int(stdout_fd), int(stderr_fd), state_dir, log_path, int(max_size), int(max_files),
            oom_path, int(oom_before) if oom_before else None)


if __name__ == "__main__":
    main(sys.argv[1:])
