# -*- coding: utf-8 -*-
# Copyright: daemonless.oci contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a supervising monitor is started with: its options, and the copy of the runtime its helpers run.

The monitor's helpers (supervise.py) import the runtime, but the Ansible
module that created the container, and its temporary copy of this package,
may be long gone when a restart or a check comes: runtime_snapshot copies the
package once per version under <state root>/=monitor/runtime-HASH/.
Kept apart from supervise.py, which imports create and lifecycle, so that
create can use it without an import cycle. No config.json field is applied here.
"""
import os
import sys

from ansible_collections.daemonless.oci.plugins.module_utils._runtime.errors import OCIError
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.ids import INTERNAL_PREFIX

PACKAGE = "ansible_collections.daemonless.oci.plugins.module_utils._runtime"


def monitor_options(root, container_id, supervision):
    """The monitor's KEY=VALUE arguments for SUPERVISION (checked_supervision's record)."""
    options = {"restart": supervision.get("restart", "no"), "id": container_id, "root": root,
               "runtime": runtime_snapshot(root), "python": sys.executable or "/usr/bin/python3"}
    check = supervision.get("healthcheck")
    if check:
        options.update(health="1", interval=repr(check["interval"]), timeout=repr(check["timeout"]),
                       retries=str(check["retries"]), start_period=repr(check["start_period"]),
                       on_failure=check["on_failure"])
    return ["%s=%s" % item for item in sorted(options.items())]


def runtime_snapshot(root):
    """A copy of the runtime package under ROOT/=monitor/runtime-HASH/, for the monitor's helpers.

    The package may be a directory or a member of a zip (an Ansible module's
    payload, deleted when the task ends); the copy is made once per version.
    """
    import hashlib
    sources = sorted(_package_sources(sys.modules[PACKAGE]))
    digest = hashlib.sha256()
    for name, data in sources:
        digest.update(name.encode() + b"\0" + data + b"\0")
    directory = os.path.join(root, INTERNAL_PREFIX + "monitor", "runtime-" + digest.hexdigest()[:16])
    if os.path.isdir(directory):
        return directory
    import shutil
    temporary = "%s.%d.tmp" % (directory, os.getpid())
    package_dir = os.path.join(temporary, *PACKAGE.split("."))
    parts = PACKAGE.split(".")
    try:
        for depth in range(1, len(parts)):
            parent = os.path.join(temporary, *parts[:depth])
            os.makedirs(parent, mode=0o700, exist_ok=True)
            with open(os.path.join(parent, "__init__.py"), "wb"):
                pass
        for name, data in sources:
            path = os.path.join(package_dir, name)
            os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
            with open(path, "wb") as handle:
                handle.write(data)
        os.rename(temporary, directory)
    except OSError as exc:
        shutil.rmtree(temporary, ignore_errors=True)
        if not os.path.isdir(directory):  # another create made it meanwhile: that one serves
            raise OCIError("cannot copy the runtime for the monitor to %s: %s" % (directory, exc.strerror or exc))
    return directory


def _package_sources(package):
    """(path relative to the package, source bytes) of each module of PACKAGE, from a directory or a zip."""
    location = list(package.__path__)[0]
    if os.path.isdir(location):
        for dirpath, dirnames, filenames in os.walk(location):
            dirnames[:] = [d for d in dirnames if d != "__pycache__"]
            for filename in filenames:
                if filename.endswith(".py"):
                    path = os.path.join(dirpath, filename)
                    with open(path, "rb") as handle:
                        yield os.path.relpath(path, location), handle.read()
        return
    import zipfile
    archive = package.__loader__.archive
    prefix = os.path.relpath(location, archive).replace(os.sep, "/") + "/"
    with zipfile.ZipFile(archive) as payload:
        for name in payload.namelist():
            if name.startswith(prefix) and name.endswith(".py"):
                yield name[len(prefix):], payload.read(name)
