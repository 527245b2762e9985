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
complete in itself, and why it uses the C modules posix, _thread and _signal:
os brings stat, posixpath and _collections_abc (265 KiB of a monitor's
memory), threading and signal functools, collections and enum.

It holds the read ends of the container's stdout and stderr pipes and
appends each line to the log as `TIMESTAMP STREAM F|P TEXT` (the CRI log
format that `tail -f` and log shippers read; P marks a partial line), rotating
at a size limit. Reading never waits on the disk: a writer thread does the
writing, with a bounded backlog whose overflow is recorded in the log. As
subreaper it inherits the container's process, reaps it, and writes
exit.json (exit code, signal, whether the OOM killer was involved, finish
time) beside the state, then exits.

An idle monitor gives memory back (MemoryRelease): once nothing happened
for RELEASE_IDLE seconds it returns the freed heap to the kernel
(malloc_trim) and drops its pages of read-only file mappings (the
interpreter's and the libraries' code and constants, madvise
MADV_DONTNEED), the last of them from a chain of libc calls that goes on
into the wait, so that no Python runs to take them back: they come back
from the page cache by minor faults when the code runs again (a log line,
a child's exit, a health check), and go again at the next idle moment.
No config.json field is applied here.
"""
import _signal
import _thread
import posix
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


def join(directory, name):
    return directory + "/" + name


def exists(path):
    try:
        posix.stat(path)
    except (OSError, ValueError):
        return False
    return True


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
        self.size = posix.fstat(self.fd).st_size
        _thread.start_new_thread(self._run, ())

    def _open(self):
        return posix.open(self.path, posix.O_WRONLY | posix.O_CREAT | posix.O_APPEND | posix.O_CLOEXEC, 0o640)

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
        posix.close(self.fd)

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
                written = posix.write(self.fd, view)
            except InterruptedError:
                continue
            except OSError:
                return  # the state directory is gone (deleted) or the disk is full
            view = view[written:]
            self.size += written

    def _rotate(self):
        """log -> log.1 -> ... -> log.<max_files-1>; the oldest goes, and the new log says how much."""
        posix.close(self.fd)
        oldest = self.path if self.max_files <= 1 else "%s.%d" % (self.path, self.max_files - 1)
        removed = 0
        try:
            if exists(oldest):
                removed = posix.stat(oldest).st_size
                posix.unlink(oldest)
            for index in range(self.max_files - 1, 0, -1):
                newer = self.path if index == 1 else "%s.%d" % (self.path, index - 1)
                if exists(newer):
                    posix.rename(newer, "%s.%d" % (self.path, index))
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


def write_json(state_dir, name, record):
    # Its own temp + rename, not atomicfile.write: this file imports nothing of the package (see above).
    path = join(state_dir, name)
    tmp = path + ".tmp"
    try:
        fd = posix.open(tmp, posix.O_WRONLY | posix.O_CREAT | posix.O_TRUNC | posix.O_CLOEXEC, 0o600)
        try:
            posix.write(fd, json_text(record).encode("utf-8", "replace"))
        finally:
            posix.close(fd)
        posix.rename(tmp, path)
    except OSError:
        pass  # deleted under us: nobody is left to read it


# JSON string escapes: the control characters, the quote and the backslash (no json import: memory).
_ESCAPES = dict((code, "\\u%04x" % code) for code in range(32))
_ESCAPES[ord('"')] = '\\"'
_ESCAPES[ord("\\")] = "\\\\"


def json_text(value):
    """VALUE (None, bool, int, float, str, list, dict of those) as JSON."""
    if value is None:
        return "null"
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return '"%s"' % value.translate(_ESCAPES)
    if isinstance(value, dict):
        return "{%s}" % ", ".join("%s: %s" % (json_text(key), json_text(item)) for key, item in value.items())
    return "[%s]" % ", ".join(json_text(item) for item in value)


def signal_name(signum):
    for name in dir(_signal):
        if name.startswith("SIG") and not name.startswith("SIG_") and getattr(_signal, name) == signum:
            return name
    return str(signum)


ADOPTED_EXIT = ("unknown: this monitor adopted the running container after the one that started it "
                "was killed, and only a parent learns a process's exit code")


def exit_record(status, oom_before, oom_path):
    """STATUS: a wait status, or None when the process was not ours to reap (adopted)."""
    record = {"exitCode": None, "signal": None, "oomKilled": False, "finished": timestamp()}
    if status is None:
        record["exitReason"] = ADOPTED_EXIT
    elif posix.WIFEXITED(status):
        record["exitCode"] = posix.WEXITSTATUS(status)
    elif posix.WIFSIGNALED(status):
        signum = posix.WTERMSIG(status)
        record["exitCode"] = 128 + signum
        record["signal"] = signal_name(signum)
    after = oom_kills(oom_path)
    if after is not None and oom_before is not None and after > oom_before:
        record["oomKilled"] = True
    return record


STOP_MARKER = "stop-requested"      # written by kill and delete under the state lock (state.STOP_MARKER)
SUPERVISION_FILE = "supervision.json"
BACKOFF_FIRST = 0.1                 # seconds before the first restart of a crash loop
BACKOFF_CAP = 300.0
BACKOFF_RESET = 10.0                # seconds of running after which a crash starts the backoff anew
OUTPUT_TAIL = 2048                  # bytes of a health check's output kept in the state
CHECK_GRACE = 10.0                  # beyond its timeout, a check's own process gets this long before SIGKILL
RESTART_TIMES_KEPT = 20
# The short-lived helper runs the runtime from its snapshot (create._runtime_snapshot): the
# monitor itself never imports it, and the Ansible module that started it may be long gone.
HELPER = ("import sys; sys.path.insert(0, sys.argv[1]); "
          "from ansible_collections.daemonless.oci.plugins.module_utils._runtime.monitor import supervise; "
          "sys.exit(supervise.main(sys.argv[2:]))")


MADV_DONTNEED = 4
RELEASE_IDLE = 0.5     # seconds without an event before the monitor gives memory back
# The last drops and the wait run as a chain of ucontexts (makecontext), all in libc. Their layout
# is glibc's: uc_link and uc_stack at the same offsets on these two, a ucontext_t under STRIDE bytes.
CONTEXT_STRIDE = {"x86_64": 1024, "aarch64": 4608}
MAX_CHAINED = 48        # regions dropped in the chain; any more are dropped from Python first
CHAIN_STACK = 65536     # one stack for every context (each starts 128 bytes below the one after it)
MAX_WAITED = 16         # descriptors the chain's poll waits for (a monitor has 3 to 6)
PROT_READ_WRITE = 3
MAP_PRIVATE_ANONYMOUS = 0x22


def releasable(smaps):
    """(start, end, executable) of the mappings in SMAPS (lines of /proc/PID/smaps) whose pages can be dropped.

    Only file-backed, non-writable mappings without anonymous pages: their
    pages are the file's, read back on the next touch. A private mapping
    that was ever written (the relocated RELRO region is r--p but holds
    copy-on-write pages) has Anonymous > 0, and dropping those pages would
    revert them to the file's bytes: it is left alone, as is any mapping
    whose Anonymous line is missing. Line by line, so that the whole file
    (tens of KiB) is never held at once: what the monitor allocates here it
    keeps, in the allocator's pools.
    """
    found = []
    current = None
    for line in smaps:
        fields = line.split()
        if not fields:
            continue
        if fields[0].endswith(b":"):
            if current is not None and fields[0] == b"Anonymous:":
                if fields[1:2] == [b"0"]:
                    found.append(current)
                current = None
            continue
        current = None
        bounds = fields[0].split(b"-")
        if len(fields) < 6 or len(bounds) != 2 or not fields[5].startswith(b"/"):
            continue
        perms = fields[1]
        if perms[:1] != b"r" or perms[1:2] != b"-":
            continue
        try:
            current = (int(bounds[0], 16), int(bounds[1], 16), perms[2:3] == b"x")
        except ValueError:
            current = None
    return found


def release_order(regions):
    """REGIONS merged where adjacent (a library's code and constants: one call), code last and the
    biggest code (the interpreter's) at the very end."""
    merged = []
    for start, end, executable in sorted(regions):
        if merged and merged[-1][1] == start:
            merged[-1] = (merged[-1][0], end, merged[-1][2] or executable)
        else:
            merged.append((start, end, executable))
    merged.sort(key=lambda region: (region[2], region[2] and region[1] - region[0]))
    return merged


class MemoryRelease:
    """Gives an idle monitor's memory back: malloc_trim, and madvise(MADV_DONTNEED) of its read-only
    file mappings, through the runtime's libc FFI (its generated tables, not syscalls.py).

    Dropped code comes back by minor faults when it runs, and the kernel maps
    64 KiB (more with large folios) around each page touched. Run from
    Python, the drops would be undone at once: returning to the interpreter
    and into the wait touches its evaluation loop, its call paths and cffi's,
    which took back 0.8-1 MiB of code. So where glibc's ucontext calls are
    there, the last drops and the wait itself run as a chain of contexts
    (makecontext: madvise, madvise, ..., poll), all in libc, and control
    returns to Python only when the wait ends: the code stays dropped for as
    long as the monitor is idle.
    """

    def __init__(self, options):
        self.lib = None
        self.area = None
        backend_path, tables = options.get("cffi"), options.get("ffi")
        if not backend_path or not tables:
            return
        try:
            # Loaded from its path: putting its directory (site-packages) on sys.path would cache a
            # listing of every package there.
            import _frozen_importlib
            import _frozen_importlib_external
            loader = _frozen_importlib_external.ExtensionFileLoader("_cffi_backend", backend_path)
            backend = _frozen_importlib.module_from_spec(_frozen_importlib.spec_from_loader("_cffi_backend", loader))
            loader.exec_module(backend)
            self.ffi = __import__(tables).build(backend)
            self.lib = self.ffi.dlopen(None)
        except Exception:  # noqa: BLE001 - without it the monitor works the same, only bigger
            self.lib = None
            return
        self.stride = CONTEXT_STRIDE.get(posix.uname().machine)
        if self.stride is not None:
            try:
                lib, ffi = self.lib, self.ffi
                # musl has no makecontext: the lookup fails, and the drops run from Python.
                self.functions = (ffi.cast("void (*)(void)", ffi.addressof(lib, "madvise")),
                                  ffi.cast("void (*)(void)", ffi.addressof(lib, "poll")))
            except (AttributeError, TypeError):
                self.stride = None

    def _context_area(self):
        """Memory for the chain: its contexts, one stack, the pollfds. Mapped, not allocated: the
        pages a chain never touches (most of the stack) cost nothing."""
        if self.area is None:
            size = (MAX_CHAINED + 2) * self.stride + CHAIN_STACK + MAX_WAITED * 8
            area = self.lib.mmap(self.ffi.NULL, size, PROT_READ_WRITE, MAP_PRIVATE_ANONYMOUS, -1, 0)
            if int(self.ffi.cast("long", area)) == -1:
                return None
            self.area = int(self.ffi.cast("unsigned long", area))
        return self.area

    def release_and_wait(self, fds, timeout):
        """Give memory back; then, if it can without returning to Python, wait for FDS to be readable
        (poll, TIMEOUT ms, None for ever). True when it waited: the caller then polls without waiting."""
        lib = self.lib
        if lib is None:
            return False
        try:
            with open("/proc/self/smaps", "rb") as smaps:
                regions = release_order(releasable(smaps))
        except OSError:
            return False
        lib.malloc_trim(0)
        base = self._context_area() if self.stride is not None and len(fds) <= MAX_WAITED else None
        chained = regions[-MAX_CHAINED:] if base is not None else []
        cast = self.ffi.cast
        for start, end, _executable in regions[:len(regions) - len(chained)]:
            lib.madvise(cast("void *", start), end - start, MADV_DONTNEED)
        if base is None:
            return False
        self._chain(base, chained, fds, -1 if timeout is None else min(timeout, 0x7FFFFFFF))
        return True

    def _chain(self, base, regions, fds, timeout):
        ffi, lib, stride = self.ffi, self.lib, self.stride
        madvise, poll = self.functions
        stack = base + (MAX_CHAINED + 2) * stride
        pollfds_address = stack + CHAIN_STACK
        pollfds = ffi.cast("struct ocirt_pollfd *", pollfds_address)
        for index, fd in enumerate(fds):
            pollfds[index].fd = fd
            pollfds[index].events = select.POLLIN
            pollfds[index].revents = 0
        here = ffi.cast("void *", base)
        contexts = [ffi.cast("void *", base + (index + 1) * stride) for index in range(len(regions) + 1)]

        def word(value):  # makecontext's arguments are machine words
            return ffi.cast("unsigned long", value)

        for index, context in enumerate(contexts):
            lib.getcontext(context)
            head = ffi.cast("struct ocirt_context_head *", context)
            # Each context's start frame sits below the next one's: a context's own calls grow down
            # over the frames of those already run, never over those still to run.
            head.ss_sp = ffi.cast("void *", stack)
            head.ss_size = CHAIN_STACK - (len(contexts) - 1 - index) * 128
            head.uc_link = contexts[index + 1] if index + 1 < len(contexts) else here
        for context, (start, end, _executable) in zip(contexts, regions):
            lib.makecontext(context, madvise, 3, word(start), word(end - start), word(MADV_DONTNEED))
        lib.makecontext(contexts[-1], poll, 3, word(pollfds_address), word(len(fds)), word(timeout & 0xFFFFFFFF))
        lib.swapcontext(here, contexts[0])


class Poller:
    """select.poll for readable descriptors that also lists them, for MemoryRelease's wait."""

    def __init__(self):
        self.poll_object = select.poll()
        self.fds = []

    def register(self, fd):
        self.poll_object.register(fd, select.POLLIN)
        if fd not in self.fds:
            self.fds.append(fd)

    def unregister(self, fd):
        self.poll_object.unregister(fd)
        self.fds.remove(fd)

    def poll(self, timeout):
        return self.poll_object.poll(timeout)


class Supervisor:
    """The restart policy and the health check: what to do when the container exits or a check ends."""

    def __init__(self, options):
        self.policy = options.get("restart", "no")
        name, _colon, maximum = self.policy.partition(":")
        self.name = name
        self.maximum = int(maximum or 0)
        self.count = 0
        self.quick_exits = 0
        self.times = []
        self.last_exit_code = None
        self.last_exit_time = None
        self.gave_up = None
        # Between an exit and the restart the policy asked for (the backoff): the container is stopped, but a
        # converge must not take it for one that stays stopped and recreate it.
        self.pending = False
        self.interval = float(options.get("interval", 0))
        self.health = None
        if options.get("health"):
            self.health = "starting"
            self.timeout = float(options["timeout"])
            self.retries = int(options["retries"])
            self.start_period = float(options["start_period"])
            self.on_failure = options["on_failure"]
        self.streak = 0
        self.check_code = None
        self.check_output = ""
        self.check_time = None

    def restart_delay(self, exit_code, ran_for, stop_requested, forced):
        """Seconds until the restart, or None when the container stays stopped (gave_up says why)."""
        self.last_exit_code = exit_code
        self.last_exit_time = timestamp()
        if stop_requested:
            self.gave_up = "stop requested"
            return None
        if not forced:
            if self.name == "no":
                return None
            if self.name == "on-failure":
                if exit_code == 0:
                    return None
                if self.maximum and self.count >= self.maximum:
                    self.gave_up = "gave up after %d restarts (%s)" % (self.count, self.policy)
                    return None
        if ran_for >= BACKOFF_RESET:
            self.quick_exits = 0
        delay = min(BACKOFF_FIRST * (1 << min(self.quick_exits, 30)), BACKOFF_CAP)
        self.quick_exits += 1
        return delay

    def restarted(self):
        self.pending = False
        self.count += 1
        self.times = (self.times + [timestamp()])[-RESTART_TIMES_KEPT:]
        if self.health:
            self.health, self.streak = "starting", 0

    def checked(self, code, output, running_for):
        """Record a check's result; return the on_failure action now due ('restart', 'kill') or None."""
        self.check_code, self.check_time = code, timestamp()
        self.check_output = output[-OUTPUT_TAIL:].decode("utf-8", "replace")
        if code == 0:
            self.health, self.streak = "healthy", 0
            return None
        if self.health == "starting" and running_for < self.start_period:
            return None  # failures during start_period do not count
        self.streak += 1
        if self.streak < self.retries or self.health == "unhealthy":
            return None
        self.health = "unhealthy"
        return self.on_failure if self.on_failure != "none" else None

    def record(self, supervised=True):
        record = {"restartPolicy": self.policy, "restartCount": self.count, "restartTimes": self.times,
                  "lastExitCode": self.last_exit_code, "lastExitTime": self.last_exit_time,
                  "gaveUp": self.gave_up, "supervised": supervised, "restartPending": self.pending}
        if self.health:
            record["health"] = {"status": self.health, "failingStreak": self.streak,
                                "lastExitCode": self.check_code, "lastOutput": self.check_output,
                                "lastCheck": self.check_time}
        return record


class Helper:
    """A short-lived child running the runtime (a restart or a health check), and the pipe it answers on."""

    def __init__(self, pid, answer_fd):
        self.pid = pid
        self.answer_fd = answer_fd
        self.answer = b""
        self.status = None


class Monitor:
    def __init__(self, pid, state_dir, writer, oom_path, oom_before, options):
        self.pid = pid
        self.state_dir = state_dir
        self.writer = writer
        self.oom_path = oom_path
        self.oom_before = oom_before
        self.options = options
        self.supervisor = Supervisor(options) if options.get("runtime") else None
        self.poller = Poller()
        self.streams = {}
        self.pidfd = None
        self.exit_status = None     # the last incarnation's wait status, once it exited
        self.exited = False
        self.started = time.monotonic()
        self.next_restart = None
        self.forced_restart = False
        self.restarter = None
        self.check = None
        self.check_deadline = None
        self.next_check = None
        self.orphans = {}           # wait statuses of children reaped before a restart named them
        self.memory = MemoryRelease(options)
        self.release_at = self.started + RELEASE_IDLE
        if self.supervisor and self.supervisor.health:
            self.next_check = self.started + min(self.supervisor.interval, 0.5)

    def stop_requested(self):
        return exists(join(self.state_dir, STOP_MARKER))

    def add_stream(self, fd, name):
        if fd >= 0:
            posix.set_blocking(fd, False)
            posix.set_inheritable(fd, False)
            self.streams[fd] = Stream(fd, name)
            self.poller.register(fd)

    def adopt(self):
        """Watch a container that is not our child: a pidfd says when it exits (its code stays unknown)."""
        try:
            self.pidfd = posix.pidfd_open(self.pid)
        except OSError:
            self.container_exited(None)
            return
        self.poller.register(self.pidfd)

    def write_supervision(self):
        if self.supervisor:
            write_json(self.state_dir, SUPERVISION_FILE, self.supervisor.record())

    # -- events ------------------------------------------------------------------

    def reap(self):
        while True:
            try:
                child, status = posix.waitpid(-1, posix.WNOHANG)
            except ChildProcessError:
                if self.pid is not None and self.pidfd is None:
                    self.container_exited(255 << 8)  # not our child after all: nothing to learn
                return
            if not child:
                return
            if child == self.pid and self.pidfd is None:
                self.container_exited(status)
            elif self.restarter is not None and child == self.restarter.pid:
                self.restarter.status = status
                self.restart_done()
            elif self.check is not None and child == self.check.pid:
                self.check.status = status
                self.check_done()
            elif len(self.orphans) < 256:
                self.orphans[child] = status

    def container_exited(self, status):
        if self.pidfd is not None:
            self.poller.unregister(self.pidfd)
            posix.close(self.pidfd)
            self.pidfd = None
        self.pid = None
        self.exit_status = status
        record = exit_record(status, self.oom_before, self.oom_path)
        if self.supervisor is None:
            self.exited = True
            return
        if self.check is not None:
            self.kill_check()
        ran_for = time.monotonic() - self.started
        delay = self.supervisor.restart_delay(record["exitCode"], ran_for, self.stop_requested(),
                                              self.forced_restart)
        self.forced_restart = False
        if delay is None:
            self.exited = True
        else:
            write_json(self.state_dir, EXIT_FILE, record)
            self.next_restart = time.monotonic() + delay
            self.supervisor.pending = True
        self.write_supervision()

    def start_restart(self):
        self.next_restart = None
        if self.stop_requested():
            self.supervisor.gave_up = "stop requested"
            self.finish()
            return
        out_r, out_w = posix.pipe2(posix.O_CLOEXEC)
        err_r, err_w = posix.pipe2(posix.O_CLOEXEC)
        self.restarter = self.spawn(["restart", self.options["id"]], (out_w, err_w))
        posix.close(out_w)
        posix.close(err_w)
        self.pending_streams = (out_r, err_r)

    def restart_done(self):
        helper, self.restarter = self.restarter, None
        answer = read_answer(self.poller, helper)
        out_r, err_r = self.pending_streams
        words = answer.split()
        if words[:1] == ["OK"] and len(words) == 3:
            self.pid = int(words[1])
            self.oom_before = int(words[2]) if words[2] != "-" else None
            self.started = time.monotonic()
            self.supervisor.restarted()
            self.add_stream(out_r, "stdout")
            self.add_stream(err_r, "stderr")
            if self.supervisor.health:
                self.next_check = self.started + min(self.supervisor.interval, 0.5)
            if self.pid in self.orphans:
                self.container_exited(self.orphans.pop(self.pid))
            self.orphans.clear()
            self.write_supervision()
            return
        posix.close(out_r)
        posix.close(err_r)
        self.supervisor.gave_up = ("stop requested" if words[:1] == ["STOPPED"]
                                   else "restart failed: %s" % (answer or "no answer"))
        self.finish()

    def finish(self):
        self.exited = True
        if self.supervisor:
            self.supervisor.pending = False
        self.write_supervision()

    def start_check(self):
        self.next_check = None
        if exists(join(self.state_dir, "exec.fifo")):
            self.next_check = time.monotonic() + min(self.supervisor.interval, 0.5)  # not started yet
            return
        out_r, out_w = posix.pipe2(posix.O_CLOEXEC)
        self.check = self.spawn(["health", self.options["id"], repr(self.supervisor.timeout)], (out_w, out_w),
                                answer_fd=out_r)
        posix.close(out_w)
        self.check_deadline = time.monotonic() + self.supervisor.timeout + CHECK_GRACE

    def check_done(self):
        helper, self.check = self.check, None
        output = read_answer(self.poller, helper, text=False)
        status = helper.status
        code = posix.WEXITSTATUS(status) if status is not None and posix.WIFEXITED(status) else 255
        if self.pid is None:
            return  # the container is gone: its check says nothing
        action = self.supervisor.checked(code, output, time.monotonic() - self.started)
        self.next_check = time.monotonic() + self.supervisor.interval
        if action == "kill":
            try:
                posix.close(posix.open(join(self.state_dir, STOP_MARKER),
                                       posix.O_WRONLY | posix.O_CREAT | posix.O_CLOEXEC, 0o600))
            except OSError:
                pass
        if action:
            self.forced_restart = action == "restart"
            try:
                posix.kill(self.pid, _signal.SIGKILL)
            except OSError:
                pass
        self.write_supervision()

    def kill_check(self):
        try:
            posix.killpg(self.check.pid, _signal.SIGKILL)
        except OSError:
            pass

    def spawn(self, args, stdio, answer_fd=None):
        """Fork a helper: the runtime's snapshot in a fresh interpreter, ARGS for supervise.main."""
        if answer_fd is None:
            answer_fd, answer_w = posix.pipe2(posix.O_CLOEXEC)
        else:
            answer_w = None
        python = self.options["python"]
        argv = [python, "-I", "-c", HELPER, self.options["runtime"], self.options["root"]] + args
        pid = posix.fork()
        if pid == 0:
            try:
                posix.setsid()  # its own process group: a check that hangs is killed whole
                moved = [posix.dup(fd) for fd in (stdio[0], stdio[1], answer_w if answer_w is not None else stdio[1])]
                for target, fd in enumerate(moved, 1):
                    posix.dup2(fd, target + 100)
                for target in range(3):
                    posix.dup2(target + 101, target + 1)
                    posix.close(target + 101)
                posix.execv(python, argv)
            finally:
                posix._exit(127)
        if answer_w is not None:
            posix.close(answer_w)
        posix.set_blocking(answer_fd, False)
        self.poller.register(answer_fd)
        return Helper(pid, answer_fd)

    # -- the loop ------------------------------------------------------------------

    def timeout_ms(self):
        waiting_check = self.next_check if self.check is None and self.pid is not None else None
        deadlines = [d for d in (self.next_restart, waiting_check, self.release_at,
                                 self.check_deadline if self.check is not None else None) if d is not None]
        if not deadlines:
            return None
        return max(0, int((min(deadlines) - time.monotonic()) * 1000) + 1)

    def done(self):
        return (self.exited and not self.streams and self.restarter is None and self.check is None)

    def run(self, wake_r):
        self.poller.register(wake_r)
        self.write_supervision()
        while True:
            self.reap()
            if self.done():
                break
            timeout = self.timeout_ms()
            if self.release_at is not None and self.release_at <= time.monotonic():
                # Last before the wait: what runs between the drops and the wait takes pages back (so
                # release_and_wait waits itself where it can).
                self.release_at = None
                timeout = self.timeout_ms()
                if self.memory.release_and_wait(self.poller.fds, timeout):
                    timeout = 0
            events = self.poller.poll(timeout)
            busy = bool(events)
            for fd, _events in events:
                if fd == wake_r:
                    try:
                        posix.read(wake_r, 4096)
                    except BlockingIOError:
                        pass
                elif fd == self.pidfd:
                    self.container_exited(None)
                elif fd in self.streams:
                    self.read_stream(self.streams[fd])
                else:
                    for helper in (self.restarter, self.check):
                        if helper is not None and helper.answer_fd == fd:
                            drain(helper)
            now = time.monotonic()
            if self.next_restart is not None and (now >= self.next_restart or self.stop_requested()):
                self.start_restart()
                busy = True
            if self.check is None and self.next_check is not None and now >= self.next_check \
                    and self.pid is not None:
                self.start_check()
                busy = True
            if self.check is not None and now >= self.check_deadline:
                self.kill_check()
                busy = True
            if busy:
                self.release_at = now + RELEASE_IDLE
        return self.exit_status

    def read_stream(self, stream):
        try:
            chunk = posix.read(stream.fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""  # a terminal's master reads EIO once the container's side is closed
        if chunk:
            self.writer.put(stream.records(chunk))
        else:
            self.writer.put(stream.flush())
            self.poller.unregister(stream.fd)
            posix.close(stream.fd)
            del self.streams[stream.fd]


def drain(helper):
    while True:
        try:
            chunk = posix.read(helper.answer_fd, 65536)
        except (BlockingIOError, OSError):
            return
        if not chunk:
            return
        helper.answer = (helper.answer + chunk)[-65536:]


def read_answer(poller, helper, text=True):
    drain(helper)
    poller.unregister(helper.answer_fd)  # a closed descriptor left in the poll set would wake it forever
    posix.close(helper.answer_fd)
    return helper.answer.decode("utf-8", "replace").strip() if text else helper.answer


def monitor(pid, stdout_fd, stderr_fd, state_dir, log_path, max_size, max_files, oom_path, oom_before,
            options=None):
    options = options or {}
    writer = LogWriter(log_path, max_size, max_files)
    wake_r, wake_w = posix.pipe2(posix.O_NONBLOCK | posix.O_CLOEXEC)
    _signal.set_wakeup_fd(wake_w)
    _signal.signal(_signal.SIGCHLD, lambda *args: None)
    # kill and delete send SIGUSR2 after writing the stop marker: a restart waiting out its backoff is called off.
    _signal.signal(_signal.SIGUSR2, lambda *args: None)
    # SIGTERM/SIGINT/SIGHUP meant for the container must not end its monitor.
    for signum in (_signal.SIGTERM, _signal.SIGINT, _signal.SIGHUP, _signal.SIGPIPE):
        _signal.signal(signum, _signal.SIG_IGN)
    state = Monitor(pid, state_dir, writer, oom_path, oom_before, options)
    state.add_stream(stdout_fd, "stdout")
    state.add_stream(stderr_fd, "stderr")
    if options.get("adopt"):
        state.adopt()
    exit_status = state.run(wake_r)
    writer.close()
    # The last (or only) exit is recorded once all its output is in the log.
    record = exit_record(exit_status, state.oom_before, oom_path)
    write_json(state_dir, EXIT_FILE, record)
    # The monitor ends as the container ended: under systemd (the role's unit, PIDFile=) the monitor
    # is the service's main process, and Restart=on-failure reads this.
    # A stop that was asked for (kill, delete: the marker) is a clean end.
    if exists(join(state_dir, STOP_MARKER)):
        return 0
    return 255 if record["exitCode"] is None else record["exitCode"]


def main(argv):
    pid, stdout_fd, stderr_fd, state_dir, log_path, max_size, max_files, oom_path, oom_before = argv[:9]
    # What follows is KEY=VALUE: the supervision (create_monitored's monitor_options).
    options = dict(item.partition("=")[::2] for item in argv[9:])
    # OOM_BEFORE is the counter the runtime read before the container could run (create._become_monitor).
    return monitor(int(pid), int(stdout_fd), int(stderr_fd), state_dir, log_path, int(max_size), int(max_files),
                   oom_path, int(oom_before) if oom_before else None, options)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
