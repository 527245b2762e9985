"""The container role's `ocirt` command for operators (container_install_cli), installed on this machine
as the managed host (local connection) under the test's scratch directory, then used as an operator
would: the launcher alone, with the host's Python in isolated mode and an empty environment.

The role runs through ansible-runner (tests/runner_events.py), so per-task `changed` and the play's
stats are read from its job events.
"""
import json
import os
import shutil
import subprocess
import sys
import uuid

import pytest

from helpers import REPO, WORDS_BY_ROOT
from runner_events import describe, run_job, stats, task_events

sys.path.insert(0, os.path.join(REPO, "tools"))
import busybox_bundle  # noqa: E402

with open(os.path.join(REPO, "galaxy.yml")) as _handle:
    VERSION = next(line.split(":", 1)[1].strip() for line in _handle if line.startswith("version:"))
PYTHON = "/usr/bin/python3"
PLAY = """
- hosts: all
  gather_facts: false
  tasks:
    - ansible.builtin.include_role:
        name: daemonless.oci.container
"""


@pytest.fixture
def role_run(scratch, state_root):
    """role_run(**vars) -> Runner: the role on localhost for one container, its ocirt under SCRATCH."""
    name = "cli-" + uuid.uuid4().hex[:8]
    WORDS_BY_ROOT.setdefault(state_root, set()).add(name)
    rootfs = os.path.join(scratch, "rootfs")
    busybox_bundle.build_rootfs(rootfs)
    playbook = os.path.join(scratch, "play.yml")
    with open(playbook, "w") as handle:
        handle.write(PLAY)
    inventory = os.path.join(scratch, "inventory.ini")
    with open(inventory, "w") as handle:
        handle.write("localhost ansible_connection=local ansible_python_interpreter=%s\n" % PYTHON)
    runs = []

    def run(**extra):
        variables = dict(container_name=name, container_image_src=rootfs, container_state_root=state_root,
                         container_bundle_dir=os.path.join(scratch, "bundle"),
                         container_args=["sh", "-c", "echo hello from %s; exec sleep 1000" % name],
                         container_stop_signal="SIGKILL",
                         container_cli_path=os.path.join(scratch, "bin", "ocirt"),
                         container_cli_lib_dir=os.path.join(scratch, "lib"))
        variables.update(extra)
        runs.append(len(runs))
        return run_job(os.path.join(scratch, "runner-%d" % len(runs)), playbook, inventory, extravars=variables)
    run.name = name
    return run


def launcher(path, *args):
    """The installed launcher as an operator runs it: the host's Python, isolated, an empty environment."""
    return subprocess.run([PYTHON, "-I", path] + list(args), env={}, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, check=False, timeout=120)


def test_the_role_installs_an_ocirt_that_operators_can_run(role_run, scratch, state_root):
    # One scenario, one container: each role run pays the controller's start and a dozen tasks.
    ocirt = os.path.join(scratch, "bin", "ocirt")
    lib = os.path.join(scratch, "lib")
    # What an older collection version left: its core and its launcher.
    os.makedirs(os.path.join(lib, "0.0.1", "ansible_collections"))
    os.makedirs(os.path.dirname(ocirt))
    with open(ocirt, "w") as handle:
        handle.write("#!/bin/sh\necho old ocirt\n")

    # container_install_cli=false installs nothing and leaves what is there alone.
    elsewhere = os.path.join(scratch, "other", "ocirt")
    skipped = role_run(container_install_cli=False, container_cli_path=elsewhere)
    assert skipped.status == "successful", describe(skipped)
    assert not os.path.exists(elsewhere) and sorted(os.listdir(lib)) == ["0.0.1"]
    assert task_events(skipped, "Install the launcher") == []
    with open(ocirt) as handle:
        assert handle.read() == "#!/bin/sh\necho old ocirt\n"

    first = role_run()
    assert first.status == "successful", describe(first)
    core = os.path.join(lib, VERSION)
    assert sorted(os.listdir(lib)) == [VERSION], "the older version's core must be replaced"
    with open(os.path.join(core, "VERSION")) as handle:
        assert handle.read() == VERSION + "\n"
    package = os.path.join(core, "ansible_collections", "daemonless", "oci", "plugins", "module_utils", "_runtime")
    sources = [os.path.join(d, f) for d, dummy, files in os.walk(package) for f in files if f.endswith(".py")]
    assert len(sources) > 20 and os.path.isfile(os.path.join(package, "operations", "create.py"))
    # Fresh bytecode for every source, for the host's Python: no start of ocirt compiles anything.
    tag = subprocess.run([PYTHON, "-c", "import sys; print(sys.implementation.cache_tag)"], capture_output=True,
                         text=True, check=True).stdout.strip()
    missing = [s for s in sources if not os.path.isfile(os.path.join(
        os.path.dirname(s), "__pycache__", "%s.%s.pyc" % (os.path.basename(s)[:-3], tag)))]
    assert missing == []
    installed = task_events(first, "Install the launcher")
    assert installed and all(data["res"]["changed"] for host, data in installed), installed

    version = launcher(ocirt, "--version")
    assert version.returncode == 0 and version.stdout.splitlines()[0] == "ocirt version " + VERSION, version
    listed = launcher(ocirt, "--root", state_root, "list", "--format", "json")
    assert listed.returncode == 0, listed
    assert [(c["id"], c["status"]) for c in json.loads(listed.stdout)] == [(role_run.name, "running")]
    state = launcher(ocirt, "--root", state_root, "state", role_run.name)
    assert state.returncode == 0 and json.loads(state.stdout)["status"] == "running", state
    logs = launcher(ocirt, "--root", state_root, "logs", role_run.name)
    assert logs.returncode == 0 and logs.stdout == "hello from %s\n" % role_run.name, logs
    executed = launcher(ocirt, "--root", state_root, "exec", role_run.name, "sh", "-c", "echo in $(hostname)")
    assert executed.returncode == 0 and executed.stdout.startswith("in "), executed

    # The core alone is enough: nothing of Ansible is imported (the host's Python may lack it).
    probe = subprocess.run([PYTHON, "-I", "-c", "import sys; sys.path.insert(0, sys.argv[1]); "
                            "from ansible_collections.daemonless.oci.plugins.module_utils._runtime import cli; "
                            "code = cli.main(['--root', sys.argv[2], 'list', '-q']); "
                            "print(sorted(m for m in sys.modules if m == 'ansible' or m.startswith('ansible.')))",
                            core, state_root], env={}, capture_output=True, text=True, check=False, timeout=120)
    assert probe.returncode == 0 and probe.stdout.splitlines() == [role_run.name, "[]"], probe

    second = role_run()
    assert second.status == "successful", describe(second)
    assert stats(second)["localhost"].get("changed", 0) == 0, stats(second)
    # Installed and unchanged: one shell command looked, and none of cli.yml's module runs happened.
    assert task_events(second, "Check the variables and look at the host")
    assert task_events(second, "Install the launcher") == [] and task_events(second, "Send the runtime core") == []

    # A core whose version is not the collection's is refused before the launcher is touched.
    with open(ocirt) as handle:
        before = handle.read()
    mismatch = role_run(__container_collection_version="9.9.9")
    assert mismatch.status == "failed", describe(mismatch)
    failed = task_events(mismatch, "Unpack it, compile its bytecode (so that no start of ocirt pays for it), "
                                   "check its version", "runner_on_failed")
    assert failed and "the runtime core sent is version %s, not the collection's 9.9.9" % VERSION \
        in failed[0][1]["res"]["stderr"], failed
    assert not os.path.exists(os.path.join(scratch, "lib", "9.9.9", "VERSION"))
    with open(ocirt) as handle:
        assert handle.read() == before
    still = launcher(ocirt, "--version")
    assert still.returncode == 0 and still.stdout.splitlines()[0] == "ocirt version " + VERSION, still

    # The launcher refuses a core without its VERSION marker (an unpack that did not finish).
    os.unlink(os.path.join(scratch, "lib", VERSION, "VERSION"))
    refused = launcher(ocirt, "--version")
    assert refused.returncode == 1 and "runtime core" in refused.stderr and "missing or incomplete" in refused.stderr
    assert "Traceback" not in refused.stderr

    # The look before cli.yml sees the missing marker, and the next run installs the core again.
    again = role_run()
    assert again.status == "successful", describe(again)
    assert task_events(again, "Install the launcher")
    repaired = launcher(ocirt, "--version")
    assert repaired.returncode == 0 and repaired.stdout.splitlines()[0] == "ocirt version " + VERSION, repaired


UNPACK_TASK = "Unpack it, compile its bytecode (so that no start of ocirt pays for it), check its version"


def test_the_install_check_follows_the_sources_identity(role_run, scratch):
    # The role's copy of the core's sources (__container_cli_src, given as an extra var), so that the test
    # can touch and change them without touching the checkout.
    src = os.path.join(scratch, "module_utils")
    shutil.copytree(os.path.join(REPO, "plugins", "module_utils"), src,
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    core = os.path.join(scratch, "lib", VERSION)
    recorded = os.path.join(core, ".source")

    first = role_run(__container_cli_src=src)
    assert first.status == "successful", describe(first)
    with open(recorded) as handle:
        identity = handle.read().strip()
    assert len(identity) == 64 and int(identity, 16) >= 0

    # Only the modification time of one source changes: the look sees another identity and cli.yml runs,
    # but the archive is the same bytes, so nothing is sent or unpacked again, and nothing is reported.
    target = os.path.join(src, "_runtime", "defaults.py")
    info = os.stat(target)
    os.utime(target, ns=(info.st_atime_ns, info.st_mtime_ns + 10 ** 9))
    touched = role_run(__container_cli_src=src)
    assert touched.status == "successful", describe(touched)
    sent = task_events(touched, "Send the runtime core")
    assert sent and not any(data["res"]["changed"] for host, data in sent), sent
    unpacked = task_events(touched, UNPACK_TASK)
    assert unpacked and unpacked[0][1]["res"]["stdout_lines"] == ["unchanged"], unpacked
    assert stats(touched)["localhost"].get("changed", 0) == 0, stats(touched)
    with open(recorded) as handle:
        assert handle.read().strip() not in ("", identity)

    # A source whose content changes: sent and unpacked again, and the host's core has the new content.
    with open(target, "a") as handle:
        handle.write("\n# changed by test_the_install_check_follows_the_sources_identity\n")
    changed = role_run(__container_cli_src=src)
    assert changed.status == "successful", describe(changed)
    sent = task_events(changed, "Send the runtime core")
    assert sent and sent[0][1]["res"]["changed"], sent
    unpacked = task_events(changed, UNPACK_TASK)
    assert unpacked and unpacked[0][1]["res"]["stdout_lines"] == ["unpacked"], unpacked
    installed = os.path.join(core, "ansible_collections", "daemonless", "oci", "plugins", "module_utils",
                             "_runtime", "defaults.py")
    with open(installed) as handle:
        assert handle.read().endswith("# changed by test_the_install_check_follows_the_sources_identity\n")

    # The archive on the host no longer matching what was unpacked (an unpack that did not finish) is seen
    # on the host, whatever the recorded identity says: the next run unpacks again.
    with open(os.path.join(core, ".unpacked"), "w") as handle:
        handle.write("0" * 64 + "  -\n")
    repaired = role_run(__container_cli_src=src)
    assert repaired.status == "successful", describe(repaired)
    unpacked = task_events(repaired, UNPACK_TASK)
    assert unpacked and unpacked[0][1]["res"]["stdout_lines"] == ["unpacked"], unpacked
