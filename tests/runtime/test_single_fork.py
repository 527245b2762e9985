"""create forks the container's process itself when no intermediate process is needed (issue 20).

Without a user namespace and with no namespace joined by path, the runtime
makes the pid namespace for its next child (unshare CLONE_NEWPID), forks the
container's process directly, and points its later children back at its own
pid namespace. A prestart hook, run by the runtime once the process waits for
start, sees it all: the container's process is the hook's sibling (the
runtime's child, where the intermediate's orphan would belong to PID 1 or a
subreaper), PID 1 of its own pid namespace, and the hook itself (a later
child of the runtime) is in the host's pid namespace. With a user namespace
the intermediate stays, and the same container still works.
"""
import json
import os
import sys

from helpers import new_id

PROBE = r"""
import json, os, sys
state = json.load(sys.stdin)

def status(pid, key):
    with open("/proc/%d/status" % pid) as handle:
        for line in handle:
            if line.startswith(key + ":"):
                return line.split()[1:]

json.dump({"init_ppid": int(status(state["pid"], "PPid")[0]), "runtime": os.getppid(),
           "init_nspid": status(state["pid"], "NSpid"), "hook_pid_ns": os.readlink("/proc/self/ns/pid"),
           "init_pid_ns": os.readlink("/proc/%d/ns/pid" % state["pid"])}, open(sys.argv[1], "w"))
"""


def _probe_create(ocirt, make_bundle, scratch, config=None):
    out = os.path.join(scratch, "probe-%s.json" % new_id("p"))
    hook = {"path": sys.executable, "args": [sys.executable, "-c", PROBE, out]}
    bundle = make_bundle(["true"], config=dict(config or {}, hooks={"prestart": [hook]}))
    container_id = new_id("fork")
    ocirt("create", "--bundle", bundle, container_id)
    try:
        with open(out) as handle:
            probe = json.load(handle)
        assert ocirt.state(container_id)["status"] == "created"
    finally:
        ocirt("delete", "--force", container_id)
    return probe


def test_without_a_user_namespace_the_runtime_forks_the_container_process_itself(ocirt, make_bundle, scratch):
    probe = _probe_create(ocirt, make_bundle, scratch)
    assert probe["init_ppid"] == probe["runtime"], probe
    assert probe["init_nspid"][-1] == "1" and len(probe["init_nspid"]) == 2, probe
    assert probe["init_pid_ns"] != probe["hook_pid_ns"], probe
    assert probe["hook_pid_ns"] == os.readlink("/proc/self/ns/pid"), probe


def test_with_a_user_namespace_the_intermediate_process_remains(userns_scratch, ocirt, make_bundle, scratch):
    config = {"linux": {
        "namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount", "user")],
        "uidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}],
        "gidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}],
    }}
    probe = _probe_create(ocirt, make_bundle, scratch, config)
    # The intermediate exited once it reported the pid: the container's process is its orphan.
    assert probe["init_ppid"] != probe["runtime"], probe
    assert probe["init_nspid"][-1] == "1", probe
    assert probe["hook_pid_ns"] == os.readlink("/proc/self/ns/pid"), probe
