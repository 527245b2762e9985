"""Bad input through the real `ocirt` command: a clear error, and nothing left behind.

Every failure must exit non-zero, name the field or id at fault on stderr
(never a Python traceback), and leave no container: `ocirt list` is empty and
the state root has no directory for the id. The fixtures' host audit checks
mounts and processes as well.
"""
import os
import shutil

import pytest

from ansible_collections.daemonless.oci.plugins.module_utils._runtime import spec
from helpers import assert_failed_cleanly, edit_config, new_id


def launch(ocirt, command, bundle, container_id):
    """create, or run in the foreground; both must fail the same way."""
    return ocirt(command, "--bundle", bundle, container_id, check=False)


COMMANDS = ["create", "run"]


def garbage(bundle):
    with open(os.path.join(bundle, "config.json"), "wb") as handle:
        handle.write(b"\x00{this is: not json,,,")


def deeply_nested(bundle):
    with open(os.path.join(bundle, "config.json"), "wb") as handle:
        handle.write(b"[" * 100000 + b"]" * 100000)


def no_config(bundle):
    os.unlink(os.path.join(bundle, "config.json"))


def args_string(bundle):
    edit_config(bundle, lambda c: c["process"].__setitem__("args", "sh"))


def uid_string(bundle):
    edit_config(bundle, lambda c: c["process"]["user"].__setitem__("uid", "0"))


def no_rootfs(bundle):
    shutil.rmtree(os.path.join(bundle, "rootfs"))


def root_is_a_file(bundle):
    with open(os.path.join(bundle, "afile"), "w") as handle:
        handle.write("not a directory\n")
    edit_config(bundle, lambda c: c["root"].__setitem__("path", "afile"))


def missing_binary(bundle):
    edit_config(bundle, lambda c: c["process"].__setitem__("args", ["/no/such/binary", "arg"]))


def not_in_path(bundle):
    edit_config(bundle, lambda c: c["process"].__setitem__("args", ["nosuchcmd"]))


BIND_INDEX = len(spec.default_config()["mounts"])


def bind_source_missing(bundle):
    edit_config(bundle, lambda c: c["mounts"].append(
        {"destination": "/mnt/data", "type": "bind", "source": "/no/such/source", "options": ["rbind", "ro"]}))


def relative_bind_source_missing(bundle):
    edit_config(bundle, lambda c: c["mounts"].append(
        {"destination": "/mnt/data", "type": "bind", "source": "not-in-bundle", "options": ["bind"]}))


# (id, breaker, needles on stderr)
BROKEN_BUNDLES = [
    ("malformed-json", garbage, ["config.json", "malformed JSON"]),
    ("deeply-nested-json", deeply_nested, ["config.json"]),
    ("no-config", no_config, ["config.json"]),
    ("args-a-string", args_string, ["process.args"]),
    ("uid-a-string", uid_string, ["process.user.uid"]),
    ("rootfs-missing", no_rootfs, ["root.path"]),
    ("root-path-a-file", root_is_a_file, ["root.path", "afile"]),
    ("missing-executable", missing_binary, ["process.args[0]", "/no/such/binary"]),
    ("not-in-path", not_in_path, ["process.args[0]", "nosuchcmd"]),
    ("bind-source-missing", bind_source_missing, ["mounts[%d].source" % BIND_INDEX, "/no/such/source"]),
    ("relative-bind-source-missing", relative_bind_source_missing,
     ["mounts[%d].source" % BIND_INDEX, "not-in-bundle"]),
]


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("breaker,needles", [case[1:] for case in BROKEN_BUNDLES],
                         ids=[case[0] for case in BROKEN_BUNDLES])
def test_broken_bundle(ocirt, make_bundle, command, breaker, needles):
    bundle = make_bundle(["true"])
    breaker(bundle)
    container_id = new_id()
    result = launch(ocirt, command, bundle, container_id)
    assert_failed_cleanly(ocirt, result, container_id, *needles)


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("container_id,needle", [
    ("a/b", "'a/b'"),
    ("..", "'..'"),
    (".", "'.'"),
    ("", "container id"),
    ("x" * 1025, "x" * 32),
    ("=monitor", "'=monitor'"),  # the runtime's own names in the state root start with '='
], ids=["slash", "dotdot", "dot", "empty", "1025-bytes", "internal-prefix"])
def test_bad_id(ocirt, make_bundle, command, container_id, needle):
    bundle = make_bundle(["true"])
    result = launch(ocirt, command, bundle, container_id)
    assert_failed_cleanly(ocirt, result, container_id, needle)
    assert not os.path.lexists(os.path.join(ocirt.root, "a"))


@pytest.mark.parametrize("argv", [
    ["state"], ["start"], ["kill"], ["kill", "{id}", "KILL"], ["delete"],
], ids=["state", "start", "kill", "kill-KILL", "delete"])
def test_unknown_id(ocirt, argv):
    container_id = new_id("ghost")
    args = [arg.format(id=container_id) for arg in argv]
    if "{id}" not in " ".join(argv):
        args.append(container_id)
    result = ocirt(*args, check=False)
    assert_failed_cleanly(ocirt, result, container_id, "container %s: does not exist" % container_id)
    assert result.stdout == ""


@pytest.mark.parametrize("first_status", ["created", "running"])
@pytest.mark.parametrize("command", COMMANDS)
def test_create_on_an_existing_id(ocirt, make_bundle, first_status, command):
    container_id = new_id("dup")
    first = make_bundle(["sleep", "300"])
    ocirt("create", "--bundle", first, container_id)
    if first_status == "running":
        ocirt("start", container_id)
    before = ocirt.state(container_id)
    assert before["status"] == first_status
    entries_before = sorted(os.listdir(os.path.join(ocirt.root, container_id)))

    second = make_bundle(["true"])
    result = launch(ocirt, command, second, container_id)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr
    assert "container %s: already exists" % container_id in result.stderr

    after = ocirt.state(container_id)
    assert after == before  # same status, pid, bundle, created time
    assert after["bundle"] == first
    os.kill(after["pid"], 0)  # the first container's process is still there
    assert ocirt.ids() == [container_id]
    assert sorted(os.listdir(os.path.join(ocirt.root, container_id))) == entries_before

    if first_status == "created":
        ocirt("start", container_id)
        assert ocirt.state(container_id)["status"] == "running"
    ocirt("delete", "--force", container_id)
    assert ocirt.ids() == []


def test_an_id_too_long_for_a_file_name_still_works(ocirt, make_bundle):
    """Ids up to 1024 bytes are valid; one over 255 cannot be a directory name and is stored by hash."""
    container_id = "y" * 300
    ocirt("create", "--bundle", make_bundle(["sleep", "100"]), container_id)
    assert ocirt.state(container_id)["status"] == "created"
    assert ocirt.ids() == [container_id]
    ocirt("delete", "--force", container_id)
    assert ocirt.ids() == []
