# -*- coding: utf-8 -*-
# Copyright: daemonless.oci contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Container state on disk: one directory per id under the state root.

<root>/<id>/state.json   the record, replaced atomically (temp file + rename)
<root>/<id>/exec.fifo    exists from create until start has released the process
<root>/<id>/config.json  the config the container was created from

A per-id flock on the container directory keeps two commands on one id from
interleaving. Liveness is the pid *and* the process start time recorded at
create, so a reused pid never passes for the container.
"""
import errno
import fcntl
import os
import stat
import time

from ansible_collections.daemonless.oci.plugins.module_utils._runtime import jsonio
# The state root, as state.DEFAULT_ROOT: defined in a leaf that the modules' options import without this file.
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.defaults import DEFAULT_ROOT  # noqa: F401  # pylint: disable=unused-import
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.errors import NotFound, OCIError
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.ids import INTERNAL_PREFIX, directory_name, validate_id

# The type hints are for mypy (`make check`); what they name from elsewhere is imported for it alone
# (a hint that uses such a name is a string), so that start-up does not pay for typing or cgroups.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ansible_collections.daemonless.oci.plugins.module_utils._runtime.cgroups.cgroup import Cgroup

STATE_FILE = "state.json"
EXEC_FIFO = "exec.fifo"
EXIT_FILE = "exit.json"  # written by the monitor (monitor.EXIT_FILE)
CONFIG_COPY = "config.json"
# Supervision (monitor/supervise.py): kill and delete write STOP_MARKER, under the lock, before they
# signal, so that the monitor does not restart what was stopped on purpose; the monitor writes
# SUPERVISION_FILE (restarts, health).
STOP_MARKER = "stop-requested"  # monitor.STOP_MARKER
SUPERVISION_FILE = "supervision.json"  # monitor.SUPERVISION_FILE
# How long delete --force (or a failed create) waits for a killed process to be gone.
EXIT_WAIT_SECONDS = 10.0

CREATING = "creating"
CREATED = "created"
RUNNING = "running"
PAUSED = "paused"
STOPPED = "stopped"


def utc_now() -> str:
    """RFC 3339 with nanoseconds, as runc prints `created`."""
    now = time.time_ns()
    seconds, nanos = divmod(now, 1000000000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + ".%09dZ" % nanos


def process_start_time(pid: int) -> "int | None":
    """The start time (clock ticks since boot) of PID, or None when it is gone or a zombie."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as handle:
            stat = handle.read()
    except OSError:
        return None
    # The command name may hold spaces and parentheses: split after the last ')'.
    fields = stat[stat.rindex(b")") + 2:].split()
    if fields[0] in (b"Z", b"X"):
        return None
    return int(fields[19])


def write_json_atomic(path: str, data: "Any") -> None:
    """Replace PATH with DATA as JSON, readable by root alone, whole or not at all."""
    # Imported here: the commands that only read or signal (state, list, kill) never write.
    from ansible_collections.daemonless.oci.plugins.module_utils._runtime import atomicfile
    atomicfile.write(path, jsonio.dumps(data), mode=0o600)


class Container:
    """One container's directory, locked for the life of the object (use as a context manager)."""

    def __init__(self, root: str, container_id: str, lock_fd: int) -> None:
        self.root = root
        self.id = container_id
        self.dir = os.path.join(root, directory_name(container_id))
        self._lock_fd: "int | None" = lock_fd
        self._record: "dict[str, Any] | None" = None

    # -- opening and locking -------------------------------------------------

    @classmethod
    def new(cls, root: str, container_id: str) -> "Container":
        """Make the directory of a new container; an existing id is an error."""
        validate_id(container_id)
        os.makedirs(root, mode=0o711, exist_ok=True)
        path = os.path.join(root, directory_name(container_id))
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            raise OCIError("container %s: already exists" % container_id)
        return cls._locked(root, container_id, path)

    @classmethod
    def open(cls, root: str, container_id: str) -> "Container":
        """Open and lock an existing container; an unknown id is an error."""
        validate_id(container_id)
        path = os.path.join(root, directory_name(container_id))
        try:
            return cls._locked(root, container_id, path)
        except FileNotFoundError:
            raise NotFound("container %s: does not exist" % container_id)
        except OSError as exc:
            # O_NOFOLLOW | O_DIRECTORY: a stray file (ENOTDIR) or symlink (ELOOP) in the state root.
            if exc.errno not in (errno.ENOTDIR, errno.ELOOP):
                raise
            raise OCIError("container %s: %s is not a container directory (%s); left as it is"
                           % (container_id, path, _entry_kind(path)))

    @classmethod
    def _locked(cls, root: str, container_id: str, path: str) -> "Container":
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC | os.O_NOFOLLOW)
        fcntl.flock(fd, fcntl.LOCK_EX)
        # A delete that held the lock before us may have removed the directory.
        if os.fstat(fd).st_nlink == 0:
            os.close(fd)
            raise NotFound("container %s: does not exist" % container_id)
        container = cls(root, container_id, fd)
        return container

    def close(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> "Container":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the record ------------------------------------------------------------

    def path(self, name: str) -> str:
        return os.path.join(self.dir, name)

    def read(self) -> "dict[str, Any]":
        if self._record is None:
            try:
                with open(self.path(STATE_FILE), "rb") as handle:
                    record = jsonio.loads(handle.read())
            except FileNotFoundError:
                raise OCIError("container %s: state file is missing (use delete --force)" % self.id)
            except (OSError, ValueError, RecursionError) as exc:
                raise OCIError("container %s: state file is unreadable (%s); use delete --force"
                               % (self.id, exc))
            problem = _record_problem(record)
            if problem:
                raise OCIError("container %s: state file is unreadable (%s); use delete --force"
                               % (self.id, problem))
            self._record = record
        return self._record

    def write(self, record: "dict[str, Any]") -> None:
        write_json_atomic(self.path(STATE_FILE), record)
        self._record = record

    def update(self, **fields: "Any") -> "dict[str, Any]":
        record = self.stage(**fields)
        self.write(record)
        return record

    def stage(self, **fields: "Any") -> "dict[str, Any]":
        """Change the record in memory only; the next update writes it. For what a crash before
        that write may lose: each write costs every create, and one per transition is the aim."""
        record = dict(self.read())
        record.update(fields)
        self._record = record
        return record

    def status(self) -> str:
        """The status as it is now: recorded status corrected by what /proc says."""
        record = self.read()
        pid = record.get("pid") or 0
        if record.get("status") == CREATING:
            if pid and process_start_time(pid) == record.get("pidStartTime"):
                return CREATING
            return STOPPED
        if not pid or process_start_time(pid) != record.get("pidStartTime"):
            return STOPPED
        if os.path.lexists(self.path(EXEC_FIFO)):
            return CREATED
        cgroup = self.cgroup()
        if cgroup is not None and cgroup.is_frozen():
            return PAUSED
        return RUNNING

    def config(self) -> "dict[str, Any]":
        """The config.json the container was created from ({} when unreadable)."""
        try:
            with open(self.path(CONFIG_COPY), "rb") as handle:
                return jsonio.loads(handle.read())
        except (OSError, ValueError):
            return {}

    def cgroup(self) -> "Cgroup | None":
        """The container's Cgroup, or None when it has none recorded."""
        record = self.read().get("cgroup")
        if not record:
            return None
        from ansible_collections.daemonless.oci.plugins.module_utils._runtime.cgroups.cgroup import Cgroup
        return Cgroup.from_record(record)

    def is_alive(self) -> bool:
        record = self.read()
        pid = record.get("pid") or 0
        return bool(pid) and process_start_time(pid) == record.get("pidStartTime")

    def oci_state(self) -> "dict[str, Any]":
        """The state JSON that `state` prints: the spec's fields plus runc's extras."""
        record = self.read()
        status = self.status()
        state = {
            "ociVersion": record.get("ociVersion"),
            "id": self.id,
            "status": status,
            "pid": record.get("pid", 0) if status != STOPPED else 0,
            "bundle": record.get("bundle"),
            "rootfs": record.get("rootfs"),
            "created": record.get("created"),
            "owner": "",
            "annotations": record.get("annotations") or {},
        }
        for key in ("started", "finished", "exitCode", "cgroupPath"):
            if record.get(key) is not None:
                state[key] = record[key]
        monitor = record.get("monitor")
        if monitor:
            state["logPath"] = monitor.get("logPath")
            state["monitorPid"] = monitor.get("pid") if self.monitor_alive() else 0
            if status == STOPPED:
                state.update(self.exit_info())
            if record.get("supervision"):
                state.update(self.supervision_info(status))
        return state

    def supervision_info(self, status: str) -> "dict[str, Any]":
        """The restart policy, restarts and health (from the monitor's supervision.json), and whether a
        live monitor supervises the container."""
        try:
            with open(self.path(SUPERVISION_FILE), "rb") as handle:
                info = jsonio.loads(handle.read())
        except (OSError, ValueError):
            info = {}
        if not isinstance(info, dict):
            info = {}
        supervision = self.read().get("supervision") or {}
        count = info.get("restartCount")
        result = {"restartPolicy": supervision.get("restart", "no"),
                  "restartCount": count if isinstance(count, int) and not isinstance(count, bool) else 0,
                  "supervised": self.monitor_alive()}
        for key in ("restartTimes", "lastExitCode", "lastExitTime", "gaveUp"):
            if key in info:  # a null lastExitCode says the exit was not ours to learn (an adopted container)
                result[key] = info[key]
        # Stopped, with its restart due (the backoff): only while a live monitor is there to do it.
        result["restartPending"] = status == STOPPED and result["supervised"] and info.get("restartPending") is True
        if supervision.get("healthcheck"):
            recorded = info.get("health")
            health: "dict[str, Any]" = dict(recorded) if isinstance(recorded, dict) else {"status": "starting"}
            if status == STOPPED and not result["supervised"] and health.get("status") != "unhealthy":
                health["status"] = "stopped"  # no check runs any more; "unhealthy" stays: it says why it ended
            result["health"] = health
        return result

    def monitor_alive(self) -> bool:
        monitor = self.read().get("monitor") or {}
        return bool(monitor.get("pid")) and process_start_time(monitor["pid"]) == monitor.get("startTime")

    def exit_info(self) -> "dict[str, Any]":
        """How a monitored container ended: from the monitor's exit.json, or said to be unknown."""
        try:
            with open(self.path(EXIT_FILE), "rb") as handle:
                info = jsonio.loads(handle.read())
            result = {"exitCode": info.get("exitCode"), "exitSignal": info.get("signal"),
                      "oomKilled": bool(info.get("oomKilled")), "finished": info.get("finished")}
            if info.get("exitReason"):
                result["exitReason"] = info["exitReason"]  # an adopted container's (monitor.ADOPTED_EXIT)
            return result
        except (OSError, ValueError):
            pass
        if self.monitor_alive():
            return {"exitCode": None, "exitReason": "the monitor is still recording the exit"}
        return {"exitCode": None,
                "exitReason": "unknown: the monitor exited before the container (was it killed?)"}

    def remove(self) -> None:
        """Remove the directory and everything in it (the caller holds the lock).

        A monitor may still be writing its exit record in it: entries that
        appear meanwhile are removed too, a bounded number of rounds.
        """
        for attempt in range(50):
            try:
                names = os.listdir(self.dir)
            except FileNotFoundError:
                return
            for name in names:
                try:
                    os.unlink(self.path(name))
                except (FileNotFoundError, IsADirectoryError):
                    pass
            try:
                os.rmdir(self.dir)
                return
            except FileNotFoundError:
                return
            except OSError as exc:
                if exc.errno != errno.ENOTEMPTY or attempt == 49:
                    raise OCIError("container %s: cannot remove %s: %s" % (self.id, self.dir, exc.strerror))
                time.sleep(0.01)


_RECORD_TYPES = (("id", str), ("status", str), ("pid", int), ("bundle", str))


def _record_problem(record: "Any") -> "str | None":
    """Why RECORD is not a state record this runtime wrote, or None."""
    if not isinstance(record, dict):
        return "not a JSON object"
    for key, kind in _RECORD_TYPES:
        if key in record and (not isinstance(record[key], kind) or isinstance(record[key], bool)):
            return "%s has the wrong type" % key
    if "pidStartTime" in record and record["pidStartTime"] is not None and not isinstance(record["pidStartTime"], int):
        return "pidStartTime has the wrong type"
    return None


def _entry_kind(path: str) -> str:
    try:
        mode = os.lstat(path).st_mode
    except OSError:
        return "gone"
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    return "a directory" if stat.S_ISDIR(mode) else "a file"


def container_ids(root: str, report: "Any" = None) -> "list[str]":
    """The ids of the containers in ROOT; entries that are not container directories are
    skipped, and named to REPORT(message) when given."""
    try:
        names = os.listdir(root)
    except FileNotFoundError:
        return []
    ids = []
    for name in names:
        path = os.path.join(root, name)
        container_id = None
        kind = _entry_kind(path)
        if kind == "gone":
            continue
        if kind == "a directory":
            if not name.startswith(INTERNAL_PREFIX):
                container_id = name
            elif len(name) == 65:
                try:
                    with open(os.path.join(path, STATE_FILE), "rb") as handle:
                        container_id = jsonio.loads(handle.read())["id"]
                except (OSError, ValueError, KeyError, TypeError):
                    continue
            else:
                continue  # the runtime's own ("=monitor")
            try:
                validate_id(container_id)
            except OCIError:
                container_id = None
                kind = "a directory whose name is not a valid container id"
        if container_id is None:
            if report is not None:
                report("%s: not a container directory (%s), skipped" % (path, kind))
            continue
        ids.append(container_id)
    return sorted(ids)


def list_containers(root: str, report: "Any" = None) -> "list[dict[str, Any]]":
    """The states of ROOT's containers; REPORT(message), when given, hears of entries skipped."""
    states = []
    for container_id in container_ids(root, report):
        try:
            with Container.open(root, container_id) as container:
                states.append(container.oci_state())
        except OCIError:
            continue  # deleted meanwhile, or unreadable: `state ID` says which
    return states


def wait_for_exit(pid: int, start_time: "int | None" = None, reap: bool = False,
                  seconds: float = EXIT_WAIT_SECONDS) -> bool:
    """Wait (bounded) for PID to exit; reap it when it is our child. True when it is gone."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if reap:
            try:
                done = os.waitpid(pid, os.WNOHANG)[0]
                if done:
                    return True
            except ChildProcessError:
                pass
        current = process_start_time(pid)
        if current is None or (start_time is not None and current != start_time):
            return True
        time.sleep(0.005)
    return False
