# -*- coding: utf-8 -*-
# Copyright: daemonless.oci contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""linux.cgroupsPath in systemd's form, slice:prefix:name: the systemd cgroup driver.

Applies linux.cgroupsPath when it reads SLICE:PREFIX:NAME (runc's and
podman's systemd form). The container's cgroup is then a transient scope unit,
PREFIX-NAME.scope, in SLICE (system.slice when empty), made through systemd's
D-Bus API (org.freedesktop.systemd1.Manager.StartTransientUnit) with
Delegate=yes, so that systemd hands the cgroup below the scope to the
runtime (its limits, its device program) and leaves it alone. The scope is
made with the container's first process in it, and stopped (StopUnit) at
delete; systemd removes its cgroup then.

With the systemd driver chosen (`ocirt --systemd-cgroup`, the module's
cgroup_manager=systemd), linux.cgroupsPath must be in that form, and an
empty one means DEFAULT_SLICE:DEFAULT_PREFIX:<id> (runc's default, with this
runtime's name as the prefix): driver_path.

The calls go through systemd's own `busctl`: no D-Bus library on managed
hosts. This module is imported only for a config in that form or that driver.
"""
import os
import time

from ansible_collections.daemonless.oci.plugins.module_utils._runtime.errors import OCIError

FIELD = "linux.cgroupsPath"
# The systemd driver's cgroupsPath when the config gives none: the scope ocirt-<id>.scope in system.slice.
DEFAULT_SLICE = "system.slice"
DEFAULT_PREFIX = "ocirt"
SCOPE_WAIT_SECONDS = 10.0
# Characters systemd takes in a unit name (unit_name_is_valid), besides letters and digits.
UNIT_NAME_EXTRA = set(":-_.\\@")


class Scope:
    """The transient scope UNIT in SLICE, whose cgroup is PATH (inside every hierarchy)."""

    def __init__(self, slice_name, unit, path):
        self.slice = slice_name
        self.unit = unit
        self.path = path

    def __repr__(self):
        return "Scope(%s in %s at %s)" % (self.unit, self.slice, self.path)


def is_systemd_form(cgroups_path):
    """Whether CGROUPS_PATH reads slice:prefix:name rather than a cgroup path."""
    return bool(cgroups_path) and not cgroups_path.startswith("/") and cgroups_path.count(":") == 2


def driver_path(cgroups_path, container_id, option="--systemd-cgroup"):
    """linux.cgroupsPath as the systemd driver takes it: empty becomes the default scope's,
    slice:prefix:name stays, a cgroup path is an error naming OPTION (as runc refuses it)."""
    if not cgroups_path:
        return "%s:%s:%s" % (DEFAULT_SLICE, DEFAULT_PREFIX, container_id)
    if not is_systemd_form(cgroups_path):
        raise OCIError("%s %r: with %s it must read slice:prefix:name (such as %s:%s:%s), not a cgroup path"
                       % (FIELD, cgroups_path, option, DEFAULT_SLICE, DEFAULT_PREFIX, container_id))
    return cgroups_path


def parse(cgroups_path, container_id):
    """The Scope for CGROUPS_PATH (slice:prefix:name); a missing name is the container's id."""
    slice_name, prefix, name = cgroups_path.split(":")
    slice_name = slice_name or DEFAULT_SLICE
    name = name or container_id
    if name.endswith(".slice"):
        raise OCIError("%s %r: a slice as the container's own unit is not supported: name a scope "
                       "(slice:prefix:name makes prefix-name.scope)" % (FIELD, cgroups_path))
    unit = ("%s-%s.scope" % (prefix, name)) if prefix else "%s.scope" % name
    for part, what in ((slice_name, "slice"), (unit, "unit name")):
        if len(part) > 255 or any(not (c.isascii() and c.isalnum()) and c not in UNIT_NAME_EXTRA for c in part):
            raise OCIError("%s %r: the %s %r is not a valid systemd unit name" % (FIELD, cgroups_path, what, part))
    return Scope(slice_name, unit, expand_slice(slice_name, cgroups_path) + "/" + unit)


def expand_slice(slice_name, cgroups_path=None):
    """The cgroup path of a slice: a-b.slice is /a.slice/a-b.slice, -.slice the root (systemd's rule)."""
    if not slice_name.endswith(".slice"):
        raise OCIError("%s %r: %r is not a slice (slice:prefix:name needs a name ending in .slice)"
                       % (FIELD, cgroups_path, slice_name))
    if slice_name == "-.slice":
        return ""
    stem = slice_name[:-len(".slice")]
    if not stem or stem.startswith("-") or stem.endswith("-") or "--" in stem or "/" in stem:
        raise OCIError("%s %r: %r is not a valid slice name" % (FIELD, cgroups_path, slice_name))
    path = ""
    words = stem.split("-")
    for index in range(len(words)):
        path += "/" + "-".join(words[:index + 1]) + ".slice"
    return path


def available():
    """None when systemd manages this host and busctl can reach it, else the reason it cannot."""
    if not os.path.isdir("/run/systemd/system"):
        return "PID 1 is not systemd (no /run/systemd/system)"
    if _busctl() is None:
        return "systemd's busctl is not installed"
    return None


def _busctl():
    for directory in ("/usr/bin", "/bin", "/usr/sbin", "/sbin"):
        path = os.path.join(directory, "busctl")
        if os.access(path, os.X_OK):
            return path
    return None


def _call(method, signature, *args):
    """busctl call systemd's Manager METHOD; (returncode, stdout, stderr)."""
    import subprocess
    argv = [_busctl() or "busctl", "call", "org.freedesktop.systemd1", "/org/freedesktop/systemd1",
            "org.freedesktop.systemd1.Manager", method, signature] + [str(a) for a in args]
    result = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            check=False)
    return result.returncode, result.stdout.decode("utf-8", "replace"), result.stderr.decode("utf-8", "replace")


def start(scope, pid, description):
    """Make SCOPE with PID in it, delegated; return once PID is in the scope's cgroup."""
    # Delegate: the cgroup below the scope is the runtime's. DefaultDependencies=no: the
    # scope is not ordered against shutdown.target, which would stop containers on its own.
    # CollectMode: a failed scope is unloaded too, so that its name can be used again.
    properties = ["Description", "s", description, "Slice", "s", scope.slice, "Delegate", "b", "true",
                  "DefaultDependencies", "b", "false", "CollectMode", "s", "inactive-or-failed",
                  "PIDs", "au", 1, pid]
    for attempt in (0, 1):
        code, _out, err = _call("StartTransientUnit", "ssa(sv)a(sa(sv))", scope.unit, "fail", 6, *(properties + [0]))
        if code == 0:
            break
        if attempt == 0 and "already exists" in err:
            # A scope of that name left failed by a crash: reset it, as runc does, once.
            _call("ResetFailedUnit", "s", scope.unit)
            continue
        raise OCIError("%s: systemd could not start the scope %s in %s: %s"
                       % (FIELD, scope.unit, scope.slice, err.strip() or "busctl failed (%d)" % code))
    deadline = time.monotonic() + SCOPE_WAIT_SECONDS
    while not _in_cgroup(pid, scope.path):
        if time.monotonic() > deadline:
            stop(scope.unit)
            raise OCIError("%s: systemd did not move process %d into %s within %d seconds"
                           % (FIELD, pid, scope.unit, SCOPE_WAIT_SECONDS))
        time.sleep(0.002)


def _in_cgroup(pid, path):
    """Whether PID's cgroup is PATH in the unified hierarchy, or in systemd's named one (hybrid, v1)."""
    try:
        with open("/proc/%d/cgroup" % pid) as handle:
            lines = handle.read().splitlines()
    except OSError:
        return False
    for line in lines:
        hierarchy, controllers, current = line.split(":", 2)
        if (hierarchy == "0" or controllers == "name=systemd") and current == path:
            return True
    return False


def stop(unit):
    """StopUnit UNIT; a unit that is gone already is fine (a scope ends with its last process)."""
    code, _out, err = _call("StopUnit", "ss", unit, "fail")
    if code != 0 and "not loaded" not in err and "NoSuchUnit" not in err:
        raise OCIError("cannot stop the systemd scope %s: %s" % (unit, err.strip() or "busctl failed (%d)" % code))
