# -*- coding: utf-8 -*-
# Copyright: daemonless.oci contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Shared pieces of the benchmarks: timing a command, statistics, the runtimes, clean-up.

Nothing here is imported by the collection or the test suite.
"""
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH)
TOOLS = os.path.join(REPO, "tools")
VENV = os.path.join(REPO, ".venv")
OCIRT = os.path.join(VENV, "bin", "ocirt")
VENV_PYTHON = os.path.join(VENV, "bin", "python")
BENCH_VENV = os.path.join(BENCH, ".venv")
UNIFIED = "/sys/fs/cgroup/unified"
# Runs "$@" in a private mount namespace without the cgroup2 mount that makes crun 1.8
# refuse this host's hybrid layout (see the README). The same wrapper runs `true` alone.
WRAPPER = ["unshare", "--mount", "--propagation", "private", "--",
           "sh", "-c", "umount -l %s; exec \"$@\"" % UNIFIED, "wrapper"]
DEFAULT_TIMEOUT = 120


class BenchError(Exception):
    pass


def ns():
    return time.perf_counter_ns()


def ms(nanoseconds):
    return nanoseconds / 1e6


def median(values):
    values = sorted(values)
    if not values:
        return None
    middle = len(values) // 2
    if len(values) % 2:
        return values[middle]
    return (values[middle - 1] + values[middle]) / 2.0


def quantile(values, q):
    """Linear interpolation between closest ranks (q in [0, 1])."""
    values = sorted(values)
    if not values:
        return None
    pos = (len(values) - 1) * q
    low = int(pos)
    high = min(low + 1, len(values) - 1)
    return values[low] + (values[high] - values[low]) * (pos - low)


def summary(values):
    """Median, quartiles, min, max and count of VALUES (any unit)."""
    return {"median": median(values), "p25": quantile(values, 0.25), "p75": quantile(values, 0.75),
            "min": min(values) if values else None, "max": max(values) if values else None,
            "n": len(values)}


def paired_ratios(numerators, denominators):
    """Round-by-round ratios of two series measured alternately; their summary.

    Rounds whose denominator is not positive (a difference lost in the noise) are left out.
    """
    ratios = [a / b for a, b in zip(numerators, denominators) if b > 0]
    return summary(ratios)


def load():
    """The machine's load: the 1, 5 and 15 minute averages, and the CPU count."""
    one, five, fifteen = os.getloadavg()
    return {"load1": round(one, 2), "load5": round(five, 2), "load15": round(fifteen, 2),
            "cpus": os.cpu_count()}


def uptime_text():
    try:
        return subprocess.run(["uptime"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                              universal_newlines=True, check=False, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def order(items, round_number):
    """ITEMS forward on even rounds and reversed on odd ones: A B C, C B A, ..."""
    return list(items) if round_number % 2 == 0 else list(reversed(items))


class _Timeout(Exception):
    pass


class _Alarm:
    """Raise _Timeout in the main thread after SECONDS (a one-shot ITIMER_REAL)."""

    def __init__(self, seconds):
        self.seconds = seconds
        self.previous = None

    @staticmethod
    def _fire(_signum, _frame):
        raise _Timeout()

    def __enter__(self):
        self.previous = signal.signal(signal.SIGALRM, self._fire)
        signal.setitimer(signal.ITIMER_REAL, self.seconds)
        return self

    def __exit__(self, *exc):
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, self.previous)
        return False


class Runner:
    """Runs commands with stdin and stdout on /dev/null (or a file), stderr to a file kept for errors.

    A created container inherits the stdio of the runtime that created it: a pipe
    there would keep subprocess waiting for its end until the container exits.
    """

    def __init__(self, workdir):
        self.err_path = os.path.join(workdir, "stderr.txt")
        self.out_path = os.path.join(workdir, "stdout.txt")
        # CPU time (user + system, ns) of the last command and of the descendants it reaped: on a
        # shared machine the wall time carries other people's load, the CPU time much less of it.
        self.last_cpu_ns = None

    def error_text(self):
        try:
            with open(self.err_path, errors="replace") as handle:
                return handle.read()[-2000:]
        except OSError:
            return ""

    def time(self, argv, check=True, capture=False, env=None, timeout=DEFAULT_TIMEOUT):  # pylint: disable=too-many-positional-arguments
        """Run ARGV; return (nanoseconds, exit code, stdout text or None).

        The wait is a plain blocking waitpid: subprocess's own timeout polls with
        growing sleeps (0.5, 1, 2, 4, 8, 16 ms ...), which would round every time up
        to the next poll. The timeout is a SIGALRM instead.
        """
        with open(self.err_path, "wb") as err, open(self.out_path, "w+b") as out:
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            start = ns()
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,  # pylint: disable=consider-using-with
                                    stdout=out if capture else subprocess.DEVNULL, stderr=err, env=env)
            try:
                with _Alarm(timeout):
                    code = proc.wait()
            except _Timeout as error:
                proc.kill()
                proc.wait()
                raise BenchError("timed out after %ss: %s" % (timeout, " ".join(argv))) from error
            except BaseException:
                # Interrupted (SIGTERM, Ctrl-C): end the command before the clean-up deletes what it makes.
                proc.kill()
                proc.wait()
                raise
            elapsed = ns() - start
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            self.last_cpu_ns = int(1e9 * ((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)))
            text = None
            if capture:
                out.seek(0)
                text = out.read().decode("utf-8", "replace")
        if check and code != 0:
            raise BenchError("exit %d: %s\n%s" % (code, " ".join(argv), self.error_text()))
        return elapsed, code, text

    def quiet(self, argv, env=None, timeout=DEFAULT_TIMEOUT):
        """Run ARGV for its effect (clean-up); never raise; return the exit code."""
        try:
            return self.time(argv, check=False, env=env, timeout=timeout)[1]
        except (BenchError, OSError):
            return -1


class Runtime:
    """One OCI runtime: its command line, its own state root, the ids made through it."""

    def __init__(self, name, argv, root, wrapped=False):
        self.name = name
        self.argv = list(argv)
        self.root = root
        self.wrapped = wrapped
        self.ids = []

    def cmd(self, *args):
        return self.argv + ["--root", self.root] + list(args)

    def cleanup(self, runner):
        """delete --force every id made here and any other the state root lists; then the root."""
        ids = list(self.ids)
        try:
            _elapsed, _code, text = runner.time(self.cmd("list", "-q"), check=False, capture=True, timeout=60)
            ids += [line.strip() for line in (text or "").splitlines() if line.strip()]
        except (BenchError, OSError):
            pass
        for container_id in dict.fromkeys(ids):
            runner.quiet(self.cmd("delete", "--force", container_id), timeout=60)
        self.ids = []
        remove_tree(self.root)


def crun_needs_wrapper():
    """True where the cgroup2 mount at /sys/fs/cgroup/unified makes crun 1.8 refuse the host."""
    try:
        with open("/proc/self/mountinfo") as handle:
            return any(line.split()[4] == UNIFIED for line in handle)
    except OSError:
        return False


def make_runtimes(state_base, names=("ocirt", "runc", "crun")):
    """The runtimes asked for that are installed, each with its own state root under STATE_BASE."""
    runtimes = []
    for name in names:
        root = os.path.join(state_base, name)
        if name == "ocirt":
            if not os.access(OCIRT, os.X_OK):
                raise BenchError("%s missing: run `make venv` first" % OCIRT)
            runtimes.append(Runtime(name, [OCIRT], root))
            continue
        path = shutil.which(name)
        if path is None:
            print("  (skipping %s: not installed; apt-get install %s)" % (name, name))
            continue
        if name == "crun" and crun_needs_wrapper():
            runtimes.append(Runtime(name, WRAPPER + [path], root, wrapped=True))
        else:
            runtimes.append(Runtime(name, [path], root))
    return runtimes


def _mounts_under(path):
    prefix = path.rstrip("/") + "/"
    found = []
    with open("/proc/self/mountinfo") as handle:
        for line in handle:
            point = line.split()[4].replace("\\040", " ")
            if point == path or point.startswith(prefix):
                found.append(point)
    return found


def remove_tree(path):
    """rm -rf PATH, unless something is still mounted below it (then say so and leave it)."""
    if not path or not os.path.lexists(path):
        return
    real = os.path.realpath(path)
    mounts = _mounts_under(real)
    if mounts:
        print("  warning: not removing %s: still mounted: %s" % (path, ", ".join(mounts[:5])), file=sys.stderr)
        return
    shutil.rmtree(path, ignore_errors=True)


class Workspace:
    """A temporary folder for one benchmark (bundle, state roots, scratch), removed on exit.

    Clean-up callbacks run in reverse order of registration, whatever happened.
    """

    def __init__(self, name):
        self.name = name
        self.path = None
        self._cleanups = []

    def __enter__(self):
        self.path = tempfile.mkdtemp(prefix="ocirt-bench-%s-" % self.name, dir="/tmp")
        return self

    def on_exit(self, callback, *args):
        self._cleanups.append((callback, args))

    def __exit__(self, *exc):
        while self._cleanups:
            callback, args = self._cleanups.pop()
            try:
                callback(*args)
            except Exception as error:  # pylint: disable=broad-except
                print("  warning: clean-up %s failed: %s" % (getattr(callback, "__name__", callback), error),
                      file=sys.stderr)
        remove_tree(self.path)
        return False


def busybox_bundle(path, args, config=None):
    """The shared busybox bundle of tools/busybox_bundle.py at PATH, running ARGS."""
    if TOOLS not in sys.path:
        sys.path.insert(0, TOOLS)
    import busybox_bundle as builder  # pylint: disable=import-outside-toplevel,import-error
    return builder.build_bundle(path, args=list(args), config=config or {})


def unique_prefix(tag):
    """Ids unique on the machine (crun puts a container's cgroup at /<id>): tag, pid, time."""
    return "ocb-%s-%d-%x" % (tag, os.getpid(), int(time.time() * 1000) & 0xFFFFFF)


def state_status(text):
    try:
        return json.loads(text).get("status")
    except (TypeError, ValueError):
        return None


def git_revision():
    def git(*args):
        try:
            return subprocess.run(["git", "-C", REPO] + list(args), stdout=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL, universal_newlines=True, check=False,
                                  timeout=30).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""
    return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}


def fmt_ms(value, digits=1):
    return "-" if value is None else "%.*f ms" % (digits, value)


def fmt_ratio(stats):
    if not stats or stats.get("median") is None:
        return "-"
    return "%.2fx [%.2f-%.2f]" % (stats["median"], stats["p25"], stats["p75"])


def table(rows, headers):
    """A plain text table: a list of rows (lists of strings) under HEADERS."""
    rows = [[str(cell) for cell in row] for row in rows]
    widths = [max(len(str(h)), *(len(r[i]) for r in rows)) if rows else len(str(h))
              for i, h in enumerate(headers)]
    lines = ["  ".join(str(h).ljust(w) for h, w in zip(headers, widths)),
             "  ".join("-" * w for w in widths)]
    for row in rows:
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths)))
    return "\n".join(lines)


def stale_bytecode():
    """Runtime modules whose cached .pyc is missing or older than the source.

    This environment sets PYTHONDONTWRITEBYTECODE, so a stale .pyc means every
    ocirt command compiles that module again (`make bytecode` refreshes them).
    """
    import importlib.util  # pylint: disable=import-outside-toplevel
    stale = []
    folder = os.path.join(REPO, "plugins", "module_utils")
    sources = sorted(os.path.join(top, name) for top, _dirs, names in os.walk(folder)
                     for name in names if name.endswith(".py"))
    for source in sources:
        name = os.path.relpath(source, folder)
        cached = importlib.util.cache_from_source(source)
        try:
            with open(cached, "rb") as handle:
                header = handle.read(16)
            stat = os.stat(source)
        except OSError:
            stale.append(name)
            continue
        flags = int.from_bytes(header[4:8], "little")
        mtime = int.from_bytes(header[8:12], "little")
        size = int.from_bytes(header[12:16], "little")
        if flags == 0 and (mtime != int(stat.st_mtime) & 0xFFFFFFFF or size != stat.st_size & 0xFFFFFFFF):
            stale.append(name)
    return stale


def targets_text(targets):
    """One line per target: name, value, limit, met or not."""
    lines = []
    for target in targets:
        value = target["value"]
        lines.append("  target %-48s %-8s (limit %s) -> %s" % (
            target["name"], "-" if value is None else "%.3g" % value, target["limit"],
            "met" if target["met"] else "NOT met"))
    return "\n".join(lines)
