"""oci_container_state's secrets (_ansible/secrets.py) on real containers, without Ansible.

A secret must be readable in the container at its target with its mode and
owner, on a read-only nosuid/nodev/noexec mount, and its content must be
nowhere else: not in the state root, the bundle, the log, the result or the
diff. A changed secret recreates the container, an unchanged one does not;
bad entries fail naming the entry before anything exists; a hostile image
cannot redirect a secret out of its rootfs.
"""
import functools
import hashlib
import json
import os
import uuid

import pytest

from helpers import container_state_params, new_id
from ansible_collections.daemonless.oci.plugins.module_utils._ansible import container_exec, container_state, secrets
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.errors import OCIError
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.spec import default_config


def unique_secret():
    return "s3cr3t-" + uuid.uuid4().hex


@pytest.fixture
def params(state_root):
    """params(**overrides): the module's parameters with the argument spec's defaults, for a fresh id."""
    container_id = new_id("sec")
    build = functools.partial(container_state_params, state_root, container_id, stop_timeout=0)  # sleep ignores SIGTERM
    yield build
    # Whatever a test left, and its secrets directory: the state_root fixture then audits the rest.
    container_state.run(build(state="absent"))
    assert not os.path.exists(secrets.container_directory(state_root, container_id))


@pytest.fixture
def app_bundle(make_bundle):
    """A bundle sleeping as app (1000:1000) in an image that names app."""
    return make_bundle(["sleep", "1000"], config={"process": {"user": {"uid": 1000, "gid": 1000}}})


def exec_out(state_root, container_id, *argv):
    result = container_exec.run(dict(id=container_id, argv=list(argv), command=None, env={}, user=None,
                                     workdir=None, stdin=None, stdin_add_newline=True, strip_empty_ends=True,
                                     tty=False, detach=False, state_root=state_root))
    assert result["rc"] == 0, result
    return result["stdout"]


def files_holding(needle, *tops):
    """Every file under TOPS whose bytes contain NEEDLE (symlinks not followed)."""
    found = []
    for top in tops:
        for dirpath, dirnames, filenames in os.walk(top):
            for name in filenames:
                path = os.path.join(dirpath, name)
                if os.path.islink(path) or not os.path.isfile(path):
                    continue
                with open(path, "rb") as handle:
                    if needle.encode() in handle.read():
                        found.append(path)
    return found


def test_a_secret_is_in_the_container_with_its_mode_and_owner_and_nowhere_else(params, app_bundle, state_root,
                                                                               scratch):
    password, key = unique_secret(), unique_secret()
    key_file = os.path.join(scratch, "api.key")
    with open(key_file, "w") as handle:
        handle.write(key)
    wanted = [{"name": "db_password", "content": password},
              {"name": "api", "src": key_file, "target": "/etc/app/api.key", "mode": "0440", "uid": 0, "gid": 1000}]
    result = container_state.run(params(bundle=app_bundle, secrets=wanted), diff=True)
    assert result["actions"] == ["create", "start"]
    cid = result["container"]["id"]
    # The container's user (app) reads its secret; the owner and mode are as asked.
    assert exec_out(state_root, cid, "cat", "/run/secrets/db_password") == password
    assert exec_out(state_root, cid, "stat", "-c", "%a %u %g", "/run/secrets/db_password") == "400 1000 1000"
    assert exec_out(state_root, cid, "stat", "-c", "%a %u %g", "/etc/app/api.key") == "440 0 1000"
    assert exec_out(state_root, cid, "cat", "/etc/app/api.key") == key
    mounts = exec_out(state_root, cid, "cat", "/proc/self/mountinfo").splitlines()
    for directory in ("/run/secrets", "/etc/app"):
        line = next(m for m in mounts if m.split()[4] == directory)
        options = set(line.split()[5].split(","))
        assert {"ro", "nosuid", "nodev", "noexec"} <= options, line
        assert line.split(" - ")[1].split()[0] == "tmpfs", line
    # Written nowhere but the host tmpfs: not in the state root, the bundle, the log, the result, the diff.
    log_path = result["container"]["log_path"]
    assert os.path.exists(log_path)
    for needle in (password, key):
        assert files_holding(needle, state_root, app_bundle, os.path.dirname(log_path)) == []
        assert needle not in json.dumps(result)
    host = secrets.container_directory(state_root, cid)
    assert files_holding(password, host) and os.stat(host).st_mode & 0o777 == 0o700
    again = container_state.run(params(bundle=app_bundle, secrets=wanted), diff=True)
    assert again["changed"] is False and again["actions"] == []
    assert password not in json.dumps(again)


def test_a_changed_secret_recreates_the_container_and_an_unchanged_one_does_not(params, app_bundle, state_root):
    first, second = unique_secret(), unique_secret()
    created = container_state.run(params(bundle=app_bundle, secrets=[{"name": "token", "content": first}]))
    cid, pid = created["container"]["id"], created["container"]["pid"]
    changed = container_state.run(params(bundle=app_bundle, secrets=[{"name": "token", "content": second}]))
    verbs = [action.split(":")[0] for action in changed["actions"]]
    assert changed["changed"] and verbs == ["stop", "delete", "create", "start"]
    assert changed["container"]["pid"] != pid
    assert exec_out(state_root, cid, "cat", "/run/secrets/token") == second
    assert first not in json.dumps(changed) and second not in json.dumps(changed)
    token = [{"name": "token", "content": second, "mode": "0444"}]
    moded = container_state.run(params(bundle=app_bundle, secrets=token))
    assert moded["changed"]
    assert exec_out(state_root, cid, "stat", "-c", "%a", "/run/secrets/token") == "444"
    same = container_state.run(params(bundle=app_bundle, secrets=token))
    assert same["changed"] is False
    # The annotation the plan compares holds a salted MAC, not the content nor its plain digest.
    annotation = json.dumps(container_state.observe(state_root, cid)[1]["annotations"])
    assert "org.daemonless.oci.secrets.token" in annotation
    assert hashlib.sha256(second.encode()).hexdigest() not in annotation
    gone = container_state.run(params(state="absent"))
    assert gone["changed"] and not os.path.exists(secrets.container_directory(state_root, cid))


def test_check_mode_writes_no_secret(params, app_bundle, state_root):
    result = container_state.run(params(bundle=app_bundle, secrets=[{"name": "x", "content": unique_secret()}]),
                                 check_mode=True)
    assert result["changed"] and result["actions"] == ["create", "start"]
    assert not os.path.exists(secrets.container_directory(state_root, params()["id"]))


def test_a_symlinked_run_in_the_image_cannot_send_a_secret_out_of_the_rootfs(params, make_bundle, state_root,
                                                                             scratch):
    bundle = make_bundle(["sleep", "1000"])
    outside = os.path.join(scratch, "outside-" + uuid.uuid4().hex[:8])
    rootfs_run = os.path.join(bundle, "rootfs", "run")
    os.rmdir(rootfs_run)
    os.symlink(outside, rootfs_run)  # absolute: on the host it names OUTSIDE, in the root it stays inside
    value = unique_secret()
    result = container_state.run(params(bundle=bundle, secrets=[{"name": "k", "content": value}]))
    cid = result["container"]["id"]
    assert exec_out(state_root, cid, "cat", "/run/secrets/k") == value
    assert not os.path.exists(outside)
    assert files_holding(value, scratch) == []


@pytest.mark.parametrize("entry, needle", [
    ({"name": "a/b", "content": "x"}, "secrets[0].name: 'a/b'"),
    ({"name": "..", "content": "x"}, "secrets[0].name: '..'"),
    ({"name": ".", "content": "x"}, "secrets[0].name: '.'"),
    ({"name": "ok", "content": "x", "target": "/run/../etc/x"}, "secrets[0].target: '/run/../etc/x' must not hold"),
    ({"name": "ok", "content": "x", "target": "/top"}, "secrets[0].target: '/top': a secret's directory"),
    ({"name": "ok", "content": "x", "src": "/etc/hostname"}, "secrets[0]: give content or src, not both"),
    ({"name": "ok"}, "secrets[0]: needs content or src"),
    ({"name": "ok", "content": "x", "mode": "rwx"}, "secrets[0].mode: must be an octal mode"),
    ({"name": "ok", "content": "x", "uid": -1}, "secrets[0].uid: must be a numeric id"),
    ({"name": "ok", "src": "/nonexistent/secret"}, "secrets[0].src: cannot read /nonexistent/secret"),
    ({"name": "ok", "src": "/etc"}, "secrets[0].src: /etc is not a regular file"),
    ({"name": "ok", "content": "x" * (secrets.MAX_SECRET_SIZE + 1)}, "secrets[0]: a secret may be at most"),
])
def test_a_bad_secret_fails_naming_it_and_leaves_nothing(params, app_bundle, state_root, entry, needle):
    with pytest.raises(OCIError) as caught:
        container_state.run(params(bundle=app_bundle, secrets=[entry]))
    assert needle in str(caught.value)
    cid = params()["id"]
    assert container_state.observe(state_root, cid) == (None, None)
    assert not os.path.exists(secrets.container_directory(state_root, cid))


@pytest.mark.parametrize("entries, needle", [
    ([{"name": "a", "content": "x"}, {"name": "a", "content": "y", "target": "other"}], "'a' is given twice"),
    ([{"name": "a", "content": "x"}, {"name": "b", "content": "y", "target": "a"}], "is the target of another"),
    ([{"name": "a", "content": "x"}, {"name": "b", "content": "y", "target": "/run/secrets/sub/b"}],
     "lies inside /run/secrets"),
])
def test_conflicting_secrets_fail_before_anything(params, app_bundle, state_root, entries, needle):
    with pytest.raises(OCIError, match=needle):
        container_state.run(params(bundle=app_bundle, secrets=entries))
    assert not os.path.exists(secrets.container_directory(state_root, params()["id"]))


def test_owners_are_mapped_through_the_user_namespace():
    config = {"linux": {"namespaces": [{"type": "user"}],
                        "uidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}],
                        "gidMappings": [{"containerID": 0, "hostID": 200000, "size": 65536}]}}
    assert secrets.host_ids(config, 1000, 33) == (101000, 200033)
    assert secrets.host_ids({"linux": {"namespaces": [{"type": "pid"}]}}, 1000, 33) == (1000, 33)
    with pytest.raises(OCIError, match="uid 70000 is not mapped"):
        secrets.host_ids(config, 70000, 0)


def test_a_userns_container_reads_its_secret_owned_by_its_mapped_user(params, make_bundle, state_root, userns_scratch):
    maps = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    bundle = make_bundle(["sleep", "1000"], config={
        "process": {"user": {"uid": 1000, "gid": 1000}},
        "linux": {"namespaces": default_config()["linux"]["namespaces"] + [{"type": "user"}],
                  "uidMappings": maps, "gidMappings": maps}})
    # The mount point exists in the image: the container's root (host uid 100000) may not create
    # entries in a rootfs directory that host root owns.
    os.mkdir(os.path.join(bundle, "rootfs", "run", "secrets"))
    value = unique_secret()
    result = container_state.run(params(bundle=bundle, secrets=[{"name": "k", "content": value}]))
    cid = result["container"]["id"]
    assert exec_out(state_root, cid, "cat", "/run/secrets/k") == value
    assert exec_out(state_root, cid, "stat", "-c", "%a %u %g", "/run/secrets/k") == "400 1000 1000"
    host_file = os.path.join(secrets.container_directory(state_root, cid), "0", "k")
    info = os.stat(host_file)
    assert (info.st_uid, info.st_gid) == (101000, 101000)
