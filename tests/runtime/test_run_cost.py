"""What one `ocirt run` costs, counted on real containers: state writes and imported modules.

The runtime's `main` runs as the `ocirt` launcher runs it, with one spy
around the atomic file writer (every state.json and config copy goes through
it) that logs each path to a file, and the runtime modules loaded by the end
written beside it. Each transition is one write (issue 20): a run of a
container without hooks, labels or a terminal writes state.json four times
(creating; its pid, for crash recovery; created; running), nothing once it
has exited unless --keep asks to keep the record, and imports no module that
only hooks, labels, a terminal or extra flags need.
"""
import json
import os
import subprocess
import sys

import pytest

from helpers import COLLECTIONS, REPO, new_id, parse_mountinfo, read_text, state_record

RUNTIME = "ansible_collections.daemonless.oci.plugins.module_utils._runtime"
SPY = r"""
import sys
before = set(sys.modules)
sys.path[0:0] = [%(collections)r]
log = open(%(log)r, "a")
from ansible_collections.daemonless.oci.plugins.module_utils._runtime import atomicfile
real_write = atomicfile.write

def write(path, *args, **kwargs):
    log.write(path + "\n")
    log.flush()
    return real_write(path, *args, **kwargs)

atomicfile.write = write
%(patch)s
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.cli import main
code = main(sys.argv[1:])
with open(%(modules)r, "w") as handle:
    handle.write("\n".join(sorted(name for name in sys.modules if name.startswith(%(runtime)r))))
with open(%(modules)r + ".new", "w") as handle:
    handle.write("\n".join(sorted(name for name in set(sys.modules) - before if not name.startswith("ansible_"))))
sys.exit(code)
"""
# Standard modules that cost about as much CPU to import as the interpreter's own start
# (re and enum, through json, signal, argparse, ...): nothing a plain run does needs them.
COSTLY_STDLIB = {"re", "enum", "json", "signal", "argparse", "subprocess", "socket", "tempfile", "shutil"}
# Only for what the plain busybox config does not ask for.
OPTIONAL = ["setup.hooks", "setup.lsm", "setup.terminal", "setup.seccomp", "setup.sched", "values",
            "cgroups.systemd", "monitor.monitor", "monitor.logs", "features"]


def spied_run(ocirt, scratch, bundle, container_id, *flags, **kwargs):
    """Run the container through the spy: (basenames of the files written, runtime modules loaded);
    kwargs["stdlib"], a set when given, gets the other modules the command imported; kwargs["patch"]: Python
    run before the command (a fault to inject); kwargs["output"], a list when given, gets its stdout."""
    log = os.path.join(scratch, "writes-%s.txt" % container_id)
    modules = os.path.join(scratch, "modules-%s.txt" % container_id)
    code = SPY % {"collections": COLLECTIONS, "log": log, "modules": modules, "runtime": RUNTIME,
                  "patch": kwargs.get("patch", "")}
    # -I without -S: the venv's site-packages (cffi) come from site, as the launcher adds them itself.
    result = subprocess.run([sys.executable, "-I", "-c", code, "--root", ocirt.root, "run"] + list(flags)
                            + ["--bundle", bundle, container_id], stdin=subprocess.DEVNULL,
                            capture_output=True, text=True, cwd=REPO, timeout=60, check=False)
    assert result.returncode == kwargs.get("expected_code", 0), result
    if "output" in kwargs:
        kwargs["output"].append(result.stdout)
    with open(log) as handle:
        written = [os.path.basename(line.strip()) for line in handle]
    with open(modules) as handle:
        loaded = set(name[len(RUNTIME) + 1:] for name in handle.read().split())
    if "stdlib" in kwargs:
        with open(modules + ".new") as handle:
            kwargs["stdlib"].update(handle.read().split())
    return written, loaded


def test_run_writes_state_once_per_transition_and_none_at_exit(ocirt, make_bundle, scratch):
    bundle = make_bundle(["true"])
    container_id = new_id("cost")
    stdlib = set()
    written, loaded = spied_run(ocirt, scratch, bundle, container_id, stdlib=stdlib)
    assert written == ["state.json", "config.json", "state.json", "state.json", "state.json"], written
    assert not os.path.lexists(os.path.join(ocirt.root, container_id))
    assert "operations.create" in loaded and "setup.container_init" in loaded, loaded
    assert not loaded.intersection(OPTIONAL), sorted(loaded.intersection(OPTIONAL))
    assert "_json" in stdlib, sorted(stdlib)  # the spy saw the imports: jsonio's accelerator is one
    assert not stdlib.intersection(COSTLY_STDLIB), sorted(stdlib.intersection(COSTLY_STDLIB))


def test_run_keep_records_the_exit_in_one_more_write(ocirt, make_bundle, scratch):
    bundle = make_bundle(["sh", "-c", "exit 3"])
    container_id = new_id("cost")
    written, _loaded = spied_run(ocirt, scratch, bundle, container_id, "--keep", expected_code=3)
    assert written.count("state.json") == 5, written
    record = state_record(ocirt.root, container_id)
    assert record["exitCode"] == 3 and record["finished"], record
    state = ocirt.state(container_id)
    assert state["status"] == "stopped" and state["exitCode"] == 3, state
    ocirt("delete", container_id)


def test_hooks_still_see_the_exit_code_and_cgroup_path_without_the_extra_writes(ocirt, make_bundle, scratch):
    """The exit code reaches poststop hooks, and cgroupPath the prestart ones, though neither is
    written to state.json on its own any more."""
    out = os.path.join(scratch, "hooks")
    os.mkdir(out)
    hook = {"path": "/bin/sh", "args": ["sh", "-c", 'cat > "$0"']}
    hooks = {"prestart": [dict(hook, args=hook["args"] + [os.path.join(out, "prestart.json")])],
             "poststop": [dict(hook, args=hook["args"] + [os.path.join(out, "poststop.json")])]}
    bundle = make_bundle(["sh", "-c", "exit 5"], config={"hooks": hooks})
    container_id = new_id("cost")
    written, loaded = spied_run(ocirt, scratch, bundle, container_id, expected_code=5)
    assert written.count("state.json") == 4, written
    assert "setup.hooks" in loaded
    with open(os.path.join(out, "prestart.json")) as handle:
        prestart = json.load(handle)
    with open(os.path.join(out, "poststop.json")) as handle:
        poststop = json.load(handle)
    assert prestart["cgroupPath"] == "/ocirt/" + container_id, prestart
    assert poststop["status"] == "stopped" and poststop["exitCode"] == 5, poststop


NO_MOUNT_SETATTR = """
import errno
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.linux import syscalls

def missing(*args, **kwargs):
    raise OSError(errno.ENOSYS, "mount_setattr: Function not implemented")

syscalls.mount_setattr = missing
"""


def _cgroup_mounts(output):
    mounts = parse_mountinfo(output)
    return [m for m in mounts if m["point"] == "/sys/fs/cgroup" or m["point"].startswith("/sys/fs/cgroup/")]


@pytest.mark.parametrize("patch", ["", NO_MOUNT_SETATTR], ids=["mount_setattr", "remounts"])
def test_the_cgroup_mount_and_each_of_its_binds_are_read_only_in_one_call_or_one_by_one(
        ocirt, make_bundle, scratch, patch):
    """The v1/hybrid cgroup tmpfs and its binds go read-only through one recursive mount_setattr; a
    kernel without it (ENOSYS, injected) gets the remounts one by one, with the same result."""
    bundle = make_bundle(["cat", "/proc/self/mountinfo"])
    output = []
    spied_run(ocirt, scratch, bundle, new_id("cost"), patch=patch, output=output)
    cgroup = _cgroup_mounts(output[0])
    # One bind per hierarchy of the host (one mounted twice is still one).
    hierarchies = set((m["fstype"], frozenset(m["super"])) for m in parse_mountinfo(read_text("/proc/self/mountinfo"))
                      if m["fstype"] in ("cgroup", "cgroup2"))
    if len(cgroup) == 1:
        pytest.skip("a pure v2 host: the cgroup mount is one bind (covered by test_cgroup_v2)")
    assert len(cgroup) == 1 + len(hierarchies), cgroup
    for mount in cgroup:
        assert {"ro", "nosuid", "nodev", "noexec"} <= mount["opts"], mount
