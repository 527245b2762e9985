# -*- coding: utf-8 -*-
# Copyright: daemonless.oci contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A container's cgroup: made, joined, written, frozen, signalled, removed.

One directory per hierarchy of the layout (layout.Layout), named by
layout.resolve_path (linux.cgroupsPath); what this runtime made is recorded
so that delete (and the recovery after a crash) removes exactly that. The
planned writes (linux.resources) come from plan.py. Pause and resume use
the v1 freezer's freezer.state, else v2's cgroup.freeze (waiting for
cgroup.events to say frozen); kill --all with SIGKILL uses v2's cgroup.kill
where the kernel has it (5.14).
"""
import errno
import os
# The C module: the signal module builds enums at import, 3 ms of every command.
import _signal as signal
import time

from ansible_collections.daemonless.oci.plugins.module_utils._runtime.errors import OCIError
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.cgroups.layout import RUNTIME_PARENT

FREEZE_WAIT_SECONDS = 10.0
REMOVE_WAIT_SECONDS = 10.0


# -- a container's cgroup ---------------------------------------------------------------

def _write_file(path, value):
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, value.encode() if isinstance(value, str) else value)
    finally:
        os.close(fd)


def _read_file(path):
    with open(path) as handle:
        return handle.read()


class Cgroup:
    """A container's cgroup: one directory per hierarchy, and the ones this runtime made."""

    def __init__(self, dirs, created, mode, unit=None):
        self.dirs = dirs          # {hierarchy name: absolute directory}
        self.created = created    # directories made for this container, parents first
        self.mode = mode
        self.unit = unit          # the systemd scope holding it (systemd.Scope.unit), or None

    def to_record(self):
        record = {"dirs": self.dirs, "created": self.created, "mode": self.mode}
        if self.unit:
            record["unit"] = self.unit
        return record

    @classmethod
    def from_record(cls, record):
        if not record:
            return None
        return cls(record["dirs"], record.get("created", []), record.get("mode"), record.get("unit"))

    @classmethod
    def create(cls, layout, path, owned, pid=None, scope=None):
        """Make PATH in every hierarchy. OWNED: the path is the runtime's default, so an
        existing directory must be empty and becomes this container's; a given
        cgroupsPath may be joined as it is and is then left in place at delete.
        SCOPE (systemd.Scope, with PID the container's process): systemd makes the
        scope, and its cgroup in the hierarchies it manages; the runtime the rest."""
        dirs = {}
        created = []
        unit = None
        try:
            if scope is not None:
                from ansible_collections.daemonless.oci.plugins.module_utils._runtime.cgroups import systemd
                systemd.start(scope, pid, "ocirt container at %s" % path)
                unit = scope.unit
            for hierarchy in layout.hierarchies:
                directory = os.path.join(hierarchy.mountpoint, path.lstrip("/"))
                # The runtime's parent is shared by every container: never removed.
                shared_parent = os.path.join(hierarchy.mountpoint, RUNTIME_PARENT.lstrip("/"))
                made = [d for d in _makedirs(hierarchy.mountpoint, path) if d != shared_parent]
                if owned and not made and _read_file(os.path.join(directory, "cgroup.procs")).strip():
                    raise OCIError("cgroup %s: already exists with processes in it" % directory)
                if owned and directory not in made:
                    made.append(directory)
                created.extend(made)
                dirs[hierarchy.name] = directory
                if "cpuset" in hierarchy.controllers:
                    _init_cpuset(hierarchy.mountpoint, path)
        except OSError as exc:
            cls({}, created, layout.mode, unit).destroy()
            raise OCIError("cgroup %s: %s" % (getattr(exc, "filename", None) or path, exc.strerror))
        except OCIError:
            cls({}, created, layout.mode, unit).destroy()
            raise
        return cls(dirs, created, layout.mode, unit)

    @staticmethod
    def missing_dirs(layout, path):
        """The directories Cgroup.create(layout, path) would make now (not the shared runtime parent)."""
        missing = []
        for hierarchy in layout.hierarchies:
            current = hierarchy.mountpoint
            shared_parent = os.path.join(hierarchy.mountpoint, RUNTIME_PARENT.lstrip("/"))
            for part in [p for p in path.split("/") if p]:
                current = os.path.join(current, part)
                if current != shared_parent and not os.path.isdir(current):
                    missing.append(current)
        return missing

    @classmethod
    def recover(cls, layout, path):
        """The cgroup at PATH as far as it exists, all of it this runtime's to remove: for a
        create that died before it recorded what it made, or a state file that cannot be read."""
        dirs = {}
        for hierarchy in layout.hierarchies:
            directory = os.path.join(hierarchy.mountpoint, path.lstrip("/"))
            if os.path.isdir(directory):
                dirs[hierarchy.name] = directory
        return cls(dirs, list(dirs.values()), layout.mode)

    def directory_for(self, controller, layout):
        hierarchy = layout.hierarchy_for(controller)
        if hierarchy is None:
            return None
        return self.dirs.get(hierarchy.name)

    def add_process(self, pid):
        """Move PID into every hierarchy's directory (before it runs any of the container's code)."""
        for name, directory in self.dirs.items():
            try:
                _write_file(os.path.join(directory, "cgroup.procs"), str(pid))
            except OSError as exc:
                raise OCIError("cgroup %s: cannot add process %d: %s" % (directory, pid, exc.strerror))

    def apply(self, writes, layout):
        """Write each planned file; a write refused for ordering (memory+swap) is retried once at the end."""
        pending = list(writes)
        self._enable_unified_controllers(writes, layout)
        for attempt in (0, 1):
            failed = []
            for write in pending:
                if write.controller == "unified":
                    directory = self.dirs.get("unified")
                else:
                    directory = self.directory_for(write.controller, layout)
                if directory is None:
                    raise OCIError("%s: the host has no %s cgroup controller" % (write.field, write.controller))
                if hasattr(write, "install"):
                    write.install(directory)  # a device program (device_program.DeviceProgram)
                    continue
                try:
                    self._write(directory, write)
                except OSError as exc:
                    if attempt == 0 and exc.errno in (errno.EINVAL, errno.EBUSY):
                        failed.append(write)
                        continue
                    target = os.path.join(directory, write.filename.lstrip("?"))
                    raise OCIError("%s: cannot write %r to %s: %s" % (write.field, write.value, target, exc.strerror))
            pending = failed
            if not pending:
                return

    @staticmethod
    def _write(directory, write):
        """Write to the first of the alternative files ("a|b") that exists; "?" marks an optional file.

        A value "x|y" gives each alternative its own value (BFQ's weight is unconverted).
        """
        names = write.filename.lstrip("?").split("|")
        values = write.value.split("|") if "|" in write.value else [write.value] * len(names)
        optional = write.filename.startswith("?")
        for name, value in zip(names, values):
            path = os.path.join(directory, name)
            if os.path.exists(path):
                _write_file(path, value)
                return
        if optional:
            return
        raise OSError(errno.ENOENT, "the kernel has no %s here" % " or ".join(names), os.path.join(directory, names[0]))

    def _enable_unified_controllers(self, writes, layout):
        """v2: a controller is usable in a cgroup only once every ancestor delegates it, in its
        cgroup.subtree_control. The container's own directory delegates nothing: it holds
        processes, and a v2 cgroup with processes may not (the no-internal-process rule)."""
        fields = {}  # controller -> the first field that needs it
        for write in writes:
            if layout.hierarchy_for(write.controller) is layout.unified and layout.unified is not None:
                fields.setdefault(write.controller, write.field)
            elif write.controller == "unified":
                # linux.resources.unified keys name their controller in the file name (pids.max -> pids).
                prefix = write.filename.split(".", 1)[0]
                if prefix in layout.unified_controllers:
                    fields.setdefault(prefix, write.field)
        directory = self.dirs.get("unified")
        if not directory or not fields:
            return
        wanted = sorted(fields)
        mountpoint = layout.unified.mountpoint
        relative = os.path.relpath(directory, mountpoint)
        current = mountpoint
        for part in [""] + relative.split("/")[:-1]:
            current = os.path.join(current, part) if part else current
            try:
                _write_file(os.path.join(current, "cgroup.subtree_control"), " ".join("+" + c for c in wanted))
            except OSError as exc:
                raise OCIError(self._delegation_error(current, wanted, fields, exc))

    @staticmethod
    def _delegation_error(directory, wanted, fields, exc):
        needed = "; ".join("%s for %s" % (c, fields[c]) for c in wanted)
        if exc.errno == errno.EBUSY:
            return ("cgroup %s: cannot delegate the %s controllers (%s): it holds processes of its own, and "
                    "cgroup v2 lets no cgroup with processes delegate a controller; choose a linux.cgroupsPath "
                    "whose parents hold none" % (directory, ", ".join(wanted), needed))
        try:
            available = _read_file(os.path.join(directory, "cgroup.controllers")).split()
        except OSError:
            available = []
        missing = [c for c in wanted if c not in available]
        if missing:
            return ("cgroup %s: the %s controller%s %s not delegated to it (it has: %s), needed: %s"
                    % (directory, ", ".join(missing), "s" if len(missing) > 1 else "",
                       "are" if len(missing) > 1 else "is", " ".join(available) or "none", needed))
        return "cgroup %s: cannot enable the %s controllers (%s): %s" % (
            directory, ", ".join(wanted), needed, exc.strerror)

    def oom_file(self, layout):
        """The file whose oom_kill counter tells whether the OOM killer struck, or None."""
        directory = self.directory_for("memory", layout)
        if directory is None:
            return None
        hierarchy = layout.hierarchy_for("memory")
        return os.path.join(directory, "memory.oom_control" if hierarchy.version == 1 else "memory.events")

    def procs(self):
        """Pids in the container's cgroup (from the first hierarchy that can say)."""
        for name in ("pids", "freezer", "memory", "unified", "systemd"):
            directory = self.dirs.get(name)
            if directory:
                try:
                    return [int(p) for p in _read_file(os.path.join(directory, "cgroup.procs")).split()]
                except OSError:
                    continue
        for directory in self.dirs.values():
            try:
                return [int(p) for p in _read_file(os.path.join(directory, "cgroup.procs")).split()]
            except OSError:
                continue
        return []

    def _freezer(self):
        if self.dirs.get("freezer"):
            return ("v1", os.path.join(self.dirs["freezer"], "freezer.state"))
        unified = self.dirs.get("unified")
        if unified and os.path.exists(os.path.join(unified, "cgroup.freeze")):
            return ("v2", unified)
        return (None, None)

    def is_frozen(self):
        kind, path = self._freezer()
        try:
            if kind == "v1":
                return _read_file(path).strip() == "FROZEN"
            if kind == "v2":
                return _read_file(os.path.join(path, "cgroup.freeze")).strip() == "1"
        except OSError:
            return False
        return False

    def freeze(self, frozen=True):
        kind, path = self._freezer()
        if kind is None:
            raise OCIError("the host has no freezer (v1 freezer controller or v2 cgroup.freeze)")
        deadline = time.monotonic() + FREEZE_WAIT_SECONDS
        if kind == "v1":
            target = "FROZEN" if frozen else "THAWED"
            while True:
                _write_file(path, target)
                if _read_file(path).strip() == target:
                    return
                if time.monotonic() > deadline:
                    raise OCIError("freezer %s did not reach %s" % (path, target))
                time.sleep(0.001)
        # v2: cgroup.freeze is the request; cgroup.events says "frozen 1" once every task has stopped.
        _write_file(os.path.join(path, "cgroup.freeze"), "1" if frozen else "0")
        wanted = "frozen %d" % (1 if frozen else 0)
        while wanted not in _read_file(os.path.join(path, "cgroup.events")).splitlines():
            if time.monotonic() > deadline:
                if frozen:
                    # Half frozen is neither paused nor running: back to running, as runc does.
                    _write_file(os.path.join(path, "cgroup.freeze"), "0")
                raise OCIError("cgroup %s did not %s within %d seconds"
                               % (path, "freeze" if frozen else "thaw", FREEZE_WAIT_SECONDS))
            time.sleep(0.001)

    def _kill_file(self):
        """The unified directory's cgroup.kill (Linux 5.14), or None."""
        unified = self.dirs.get("unified")
        path = os.path.join(unified, "cgroup.kill") if unified else None
        return path if path and os.path.exists(path) else None

    def signal_all(self, signum):
        """Send SIGNUM to every process. SIGKILL goes through cgroup.kill where the kernel has it,
        which also reaches what forks meanwhile; else the cgroup is frozen while the pids are signalled."""
        kind = self._freezer()[0]
        frozen_before = self.is_frozen()
        kill_file = self._kill_file() if signum == signal.SIGKILL else None
        if kill_file:
            try:
                _write_file(kill_file, "1")
            except OSError as exc:
                raise OCIError("cgroup %s: cannot kill its processes: %s" % (kill_file, exc.strerror))
            if frozen_before:
                self.freeze(False)  # a task frozen by the v1 freezer dies only once thawed
            return
        if kind and not frozen_before:
            self.freeze(True)
        try:
            for pid in self.procs():
                try:
                    os.kill(pid, signum)
                except ProcessLookupError:
                    pass
        finally:
            # A frozen process dies only once thawed: after SIGKILL thaw even a paused container.
            if kind and (not frozen_before or signum == signal.SIGKILL):
                self.freeze(False)

    def destroy(self):
        """Remove the directories this runtime made, innermost first (waiting, bounded, for exits).

        Below the container's own directory everything is the container's: the cgroups it made
        through a writable cgroup mount go first. Below a parent it made, another container's
        cgroup may live: such a parent stays.
        """
        errors = []
        # (A recovered record may list parents among its dirs: the deepest directories are the leaves.)
        leaves = set(d for d in self.dirs.values() if not any(o.startswith(d + "/") for o in self.created))
        for directory in sorted(set(self.created), key=len, reverse=True):
            if directory in leaves:
                for child in _subdirectories(directory):
                    _remove_directory(child, errors)
            _remove_directory(directory, errors)
        if self.unit:
            # systemd removes the scope's cgroup as it stops it.
            from ansible_collections.daemonless.oci.plugins.module_utils._runtime.cgroups import systemd
            try:
                systemd.stop(self.unit)
            except OCIError as exc:
                errors.append(str(exc))
        if errors:
            raise OCIError("cannot remove cgroups: %s" % "; ".join(errors))


def _subdirectories(directory):
    """Every directory below DIRECTORY, innermost first."""
    found = []
    try:
        entries = [entry for entry in os.scandir(directory) if entry.is_dir(follow_symlinks=False)]
    except OSError:
        return found
    for entry in entries:
        found.extend(_subdirectories(entry.path))
        found.append(entry.path)
    return found


def _remove_directory(directory, errors):
    deadline = time.monotonic() + REMOVE_WAIT_SECONDS
    while True:
        try:
            os.rmdir(directory)
            return
        except FileNotFoundError:
            return
        except OSError as exc:
            if exc.errno == errno.EBUSY and time.monotonic() < deadline:
                time.sleep(0.005)
                continue
            if exc.errno == errno.ENOTEMPTY:
                return  # another container's cgroup lives below it
            errors.append("%s: %s" % (directory, exc.strerror))
            return


def _makedirs(mountpoint, path):
    """mkdir -p PATH under MOUNTPOINT; return the directories made."""
    made = []
    current = mountpoint
    for part in [p for p in path.split("/") if p]:
        current = os.path.join(current, part)
        try:
            os.mkdir(current, 0o755)
            made.append(current)
        except FileExistsError:
            pass
    return made


def _init_cpuset(mountpoint, path):
    """A new v1 cpuset starts empty and refuses processes: copy cpus and mems down from its parent."""
    current = mountpoint
    for part in [p for p in path.split("/") if p]:
        parent, current = current, os.path.join(current, part)
        for name in ("cpuset.cpus", "cpuset.mems"):
            target = os.path.join(current, name)
            if not _read_file(target).strip():
                _write_file(target, _read_file(os.path.join(parent, name)).strip() or "\n")
