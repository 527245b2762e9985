"""The rough edges a new user hit (issue 19, points 1-7, 9, 15), through the modules as Ansible runs them.

Each test is a reproduction from the issue: the modules run as ad-hoc tasks
or a playbook on localhost (real AnsibleModule argument handling, real
check mode, real results), the containers are real. Tests of the backend
alone (container_state.run, bundle.ensure) are used where the module adds
nothing to what is checked.
"""
import functools
import gzip
import io
import json
import os
import subprocess
import tarfile
import textwrap
import uuid

import pytest

from helpers import REPO, SERVICE, ansible_env, cgroup_dirs, container_state_params, new_id, ocirt_cmd, rootfs_of
from ansible_collections.daemonless.oci.plugins.module_utils._ansible import container_state
from ansible_collections.daemonless.oci.plugins.module_utils._bundle import bundle as bundle_mod
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.errors import OCIError
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.operations import lifecycle

ANSIBLE_BIN = os.path.join(REPO, ".venv", "bin")
HANG_SECONDS = 300  # stops a hung ansible run; not a timing assertion


def run_module(module, args, check=False):
    """MODULE (daemonless.oci.MODULE) as an ad-hoc task on localhost: its result, with "failed" added."""
    command = [os.path.join(ANSIBLE_BIN, "ansible"), "localhost", "-c", "local", "-m", "daemonless.oci." + module,
               "-a", json.dumps(args)] + (["--check"] if check else [])
    done = subprocess.run(command, env=ansible_env(), stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          check=False, timeout=HANG_SECONDS)
    # The ad-hoc (minimal) callback prints "localhost | STATUS => {json}".
    text = done.stdout[done.stdout.index("localhost | "):]
    outcome = json.loads(text[text.index("=>") + 2:])
    outcome["failed"] = text.startswith("localhost | FAILED")
    assert "module_stderr" not in outcome and "Traceback" not in done.stdout + done.stderr, done.stdout + done.stderr
    return outcome


def run_playbook(path, *extra):
    """ansible-playbook PATH on localhost: the CompletedProcess (its output is the default callback's)."""
    return subprocess.run([os.path.join(ANSIBLE_BIN, "ansible-playbook"), "-i", "localhost,", "-c", "local",
                           path] + list(extra), env=ansible_env(), stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, check=False, timeout=HANG_SECONDS)


def run_tasks(scratch, tasks, check=False, **module_defaults):
    """TASKS, (module, args) pairs, as one play on localhost (one ansible run: much cheaper than one
    each), in check mode with CHECK; failures do not stop it. MODULE_DEFAULTS go to every
    daemonless.oci module. Returns [((module, args), its registered result)]."""
    out = os.path.join(scratch, "tasks-%s.json" % uuid.uuid4().hex[:8])
    play = {"hosts": "localhost", "gather_facts": False, "check_mode": check,
            "module_defaults": {"group/daemonless.oci.oci": module_defaults}, "tasks": []}
    for index, (module, args) in enumerate(tasks):
        play["tasks"].append({"name": "task %d" % index, "daemonless.oci." + module: args,
                              "register": "r%d" % index, "ignore_errors": True})
    play["tasks"].append({"name": "results", "check_mode": False, "ansible.builtin.copy": {
        "dest": out, "content": "{{ [%s] | to_json }}" % ", ".join("r%d" % i for i in range(len(tasks)))}})
    playbook = os.path.join(scratch, "tasks.yml")
    with open(playbook, "w") as handle:
        json.dump([play], handle)
    done = run_playbook(playbook)
    assert os.path.exists(out), done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr, done.stdout + done.stderr
    with open(out) as handle:
        return list(zip(tasks, json.load(handle)))


@pytest.fixture
def params(state_root):
    """params(**overrides): oci_container_state's parameters with its defaults, for a fresh id."""
    return functools.partial(container_state_params, state_root, new_id("d2"))


def state_dirs(root):
    return [] if not os.path.isdir(root) else [e for e in os.listdir(root) if e != "=monitor"]


# --------------------------------------------------------------------------
# 1. stopped and absent need only the id

def test_stopped_and_absent_need_only_the_id_created_and_running_need_a_bundle(
        params, make_bundle, scratch, state_root):
    # One play: each ansible run pays the controller's start.
    running = container_state.run(params(bundle=make_bundle(SERVICE)))["container"]
    missing = params(id=new_id("d2"))["id"]  # the state_root audit is told of it
    results = [result for _task, result in run_tasks(scratch, [
        ("oci_container_state", {"id": running["id"], "state": "stopped", "stop_timeout": 30}),
        ("oci_container_state", {"id": running["id"], "state": "absent"}),
        # stopped, for a container that does not exist and without a bundle: nothing to do.
        ("oci_container_state", {"id": missing, "state": "stopped"}),
        ("oci_container_state", {"id": missing, "state": "running"}),
    ], state_root=state_root)]
    stopped, gone, nothing, refused = results
    assert not stopped.get("failed") and stopped["changed"], stopped
    assert stopped["container"]["status"] == "stopped" and stopped["actions"] == ["stop"]
    assert running["id"] in stopped["msg"]
    assert not gone.get("failed") and gone["changed"] and gone["container"] is None, gone
    assert not nothing.get("failed") and nothing["changed"] is False and nothing["actions"] == [], nothing
    assert "does not exist" in nothing["msg"] and nothing["container"] is None
    assert refused.get("failed") and "bundle" in refused["msg"], refused
    assert state_dirs(state_root) == []


# --------------------------------------------------------------------------
# 2. check mode on a fresh host: a whole playbook, nothing made

CHECK_PLAYBOOK = textwrap.dedent("""\
    - hosts: localhost
      gather_facts: false
      module_defaults:
        group/daemonless.oci.oci:
          state_root: "{{ root }}"
      tasks:
        - name: bundle
          daemonless.oci.oci_bundle:
            path: "{{ work }}/bundles/web"
            rootfs_from: "{{ rootfs }}"
            rootfs_copy: true
            args: [sleep, "1000"]
          register: bundle
        - name: container
          daemonless.oci.oci_container_state:
            id: "{{ cid }}"
            bundle: "{{ work }}/bundles/web"
          register: container
        - name: stop it
          daemonless.oci.oci_container_state:
            id: "{{ cid }}"
            state: stopped
          register: stopped
        - name: info
          daemonless.oci.oci_container_info:
            name: ["{{ cid }}"]
          register: info
        - name: facts
          daemonless.oci.oci_container_facts:
            name: ["{{ cid }}"]
          register: facts
        - name: remove the bundle
          daemonless.oci.oci_bundle:
            path: "{{ work }}/bundles/web"
            state: absent
          register: bundle_gone
        - name: results
          ansible.builtin.copy:
            dest: "{{ out }}"
            content: "{{ dict(bundle=bundle, container=container, stopped=stopped, info=info, facts=facts,
                             bundle_gone=bundle_gone) | to_json }}"
          check_mode: false
    """)


def test_a_whole_playbook_in_check_mode_on_a_fresh_host_reports_the_plan_and_makes_nothing(
        params, make_bundle, scratch, state_root):
    source = rootfs_of(make_bundle(["true"]))
    work = os.path.join(scratch, "fresh")
    playbook = os.path.join(scratch, "check.yml")
    out = os.path.join(scratch, "results.json")
    with open(playbook, "w") as handle:
        handle.write(CHECK_PLAYBOOK)
    variables = dict(root=state_root, work=work, rootfs=source, cid=params()["id"], out=out)
    done = run_playbook(playbook, "--check", "-e", json.dumps(variables))
    assert done.returncode == 0, done.stdout + done.stderr
    with open(out) as handle:
        results = json.load(handle)
    assert results["bundle"]["changed"] and any(a.startswith("unpack") for a in results["bundle"]["actions"])
    container = results["container"]
    assert container["changed"] and container["actions"] == ["create", "start"], container
    assert "check mode" in container["msg"] and container["container"] is None
    # "stopped" in check mode after a planned start: nothing exists, nothing to stop.
    assert results["stopped"]["changed"] is False
    assert results["info"]["missing"] == [params()["id"]]
    assert results["facts"]["ansible_facts"]["oci_containers"][params()["id"]]["status"] == "absent"
    assert results["bundle_gone"]["changed"] is False
    for name in ("bundle", "container", "stopped", "info", "facts", "bundle_gone"):
        assert results[name].get("msg"), (name, results[name])
    assert not os.path.lexists(work)
    assert state_dirs(state_root) == []


def test_check_mode_with_a_bundle_not_made_yet_recreates_an_existing_container(params, make_bundle, scratch):
    container_state.run(params(bundle=make_bundle(["sleep", "1000"])))
    result = container_state.run(params(bundle=os.path.join(scratch, "not-yet")), check_mode=True, diff=True)
    assert result["changed"] and result["actions"][-1] == "start", result
    assert [a.split(":")[0] for a in result["actions"]] == ["stop", "delete", "create", "start"]
    assert result["container"]["status"] == "running"
    assert not os.path.lexists(os.path.join(scratch, "not-yet"))


def test_without_check_mode_a_missing_bundle_is_an_error_naming_it(params, scratch):
    with pytest.raises(OCIError) as caught:
        container_state.run(params(bundle=os.path.join(scratch, "nope")))
    assert "bundle: " in str(caught.value) and "nope has no config.json" in str(caught.value)


def test_oci_bundle_in_check_mode_with_no_path_and_no_source_yet(make_bundle, scratch):
    path = os.path.join(scratch, "made", "later")
    source = rootfs_of(make_bundle(["true"]))
    results = run_tasks(scratch, [("oci_bundle", {"path": path, "rootfs_from": source, "rootfs_copy": True}),
                                  ("oci_bundle", {"path": path, "rootfs_from": os.path.join(scratch, "made", "img")})],
                        check=True)
    for _task, result in results:
        assert not result.get("failed") and result["changed"], result
        assert any(a.startswith("write") for a in result["actions"]) and "would" in result["msg"], result
    assert "does not exist yet: check mode" in results[1][1]["actions"][0]
    assert not os.path.lexists(os.path.join(scratch, "made"))


# --------------------------------------------------------------------------
# 3. every result has a msg; 4. a job that times out

def test_a_failing_job_under_failed_when_has_a_message(params, make_bundle, scratch, state_root):
    bundle = make_bundle(["sh", "-c", "echo bad >&2; exit 3"])
    playbook = os.path.join(scratch, "job.yml")
    with open(playbook, "w") as handle:
        handle.write(textwrap.dedent("""\
            - hosts: localhost
              gather_facts: false
              tasks:
                - daemonless.oci.oci_container_state:
                    id: "{{ cid }}"
                    bundle: "{{ bundle }}"
                    wait: exited
                    state_root: "{{ root }}"
                  register: job
                  failed_when: job.exit_code != 0
            """))
    done = run_playbook(playbook, "-e", json.dumps(dict(cid=params()["id"], bundle=bundle, root=state_root)))
    assert done.returncode != 0
    assert "Unknown error" not in done.stdout, done.stdout
    assert "exited with code 3" in done.stdout, done.stdout


def test_every_module_result_has_a_message(params, make_bundle, scratch, state_root):
    container_id = params()["id"]
    results = run_tasks(scratch, [
        ("oci_container_info", {}), ("oci_container_facts", {}),
        ("oci_container_state", {"id": container_id, "state": "absent"}),
        ("oci_bundle", {"path": make_bundle(["true"])})], state_root=state_root)
    for (module, _args), result in results:
        assert not result.get("failed") and isinstance(result.get("msg"), str) and result["msg"], (module, result)


def test_a_job_that_times_out_reports_the_container_and_the_change(params, make_bundle, state_root):
    container_id = params()["id"]
    with pytest.raises(container_state.TaskFailed) as caught:
        container_state.run(params(bundle=make_bundle(["sleep", "1000"]), wait="exited", timeout=1))
    result = caught.value.result
    assert result["changed"] is True and result["actions"] == ["create", "start"]
    assert result["container"]["id"] == container_id and result["container"]["status"] == "running"
    message = container_state.failure_message(container_id, caught.value)
    assert message.count(container_id) == 1 and "still running after 1 seconds" in message, message


def test_a_job_that_times_out_through_the_module(params, make_bundle, state_root):
    result = run_module("oci_container_state", {"id": params()["id"], "bundle": make_bundle(["sleep", "1000"]),
                                                "wait": "exited", "timeout": 1, "state_root": state_root})
    assert result["failed"] and result["changed"] is True, result
    assert result["container"]["status"] == "running"
    assert result["msg"].count(params()["id"]) == 1, result["msg"]


# --------------------------------------------------------------------------
# 5. bad paths and bad input: an error naming the option, never a traceback

def test_bad_input_to_every_module_fails_naming_the_option_and_leaves_nothing(
        params, make_bundle, scratch, state_root):
    regular = os.path.join(scratch, "a-file")
    with open(regular, "w") as handle:
        handle.write("not a directory\n")
    elsewhere = os.path.join(scratch, "elsewhere")
    os.mkdir(elsewhere)
    link = os.path.join(scratch, "a-link")
    os.symlink(elsewhere, link)
    source = rootfs_of(make_bundle(["true"]))
    fresh = os.path.join(scratch, "fresh")
    container_id = params()["id"]
    cases = [
        ("oci_bundle", {"path": regular, "rootfs_from": source}, "path: "),
        ("oci_bundle", {"path": link, "rootfs_from": source}, "path: "),
        ("oci_bundle", {"path": os.path.join(regular, "sub"), "rootfs_from": source}, "path: "),
        ("oci_bundle", {"path": regular, "state": "absent"}, "path: "),
        ("oci_bundle", {"path": fresh, "rootfs_from": os.path.join(scratch, "nope")}, "rootfs_from"),
        ("oci_bundle", {"path": fresh, "rootfs_from": source, "memory": "lots"}, "memory"),
        ("oci_bundle", {"path": fresh, "rootfs_from": source, "namespaces": [5]}, "namespaces[0]"),
        ("oci_bundle", {"path": fresh, "rootfs_from": source, "mounts": [{"destination": 5}]}, "mounts"),
        ("oci_bundle", {"path": fresh, "rootfs_from": source, "config": {"process": "x"}}, "process"),
        ("oci_bundle", {"path": "/nonexistent-day-two", "state": "absent", "state_root": regular}, "state_root"),
        ("oci_container_state", {"id": "a/b", "state": "absent"}, "container id"),
        ("oci_container_state", {"id": container_id, "bundle": regular}, "bundle: "),
        ("oci_container_state", {"id": container_id, "bundle": scratch}, "bundle: "),
        ("oci_container_state", {"id": container_id, "state": "stopped", "stop_signal": "99"}, "stop_signal"),
        ("oci_container_state", {"id": container_id, "state": "absent", "state_root": regular}, "state_root"),
        ("oci_container_info", {"state_root": regular}, "state_root"),
        ("oci_container_facts", {"state_root": regular}, "state_root"),
    ]
    results = run_tasks(scratch, [(module, args) for module, args, _needle in cases], state_root=state_root)
    for (module, args, needle), (_task, result) in zip(cases, results):
        assert result.get("failed"), (module, args, result)
        assert needle in result["msg"], (module, args, needle, result["msg"])
        for bad in ("Traceback", "MODULE FAILURE", "Errno", "module_stderr"):
            assert bad not in json.dumps(result), (module, args, bad, result)
    assert os.listdir(elsewhere) == [] and not os.path.lexists(fresh)
    with open(regular) as handle:
        assert handle.read() == "not a directory\n"
    assert state_dirs(state_root) == []


def test_a_bad_env_or_mount_fails_the_task_naming_the_field_and_writes_nothing(make_bundle, scratch, state_root):
    """env values YAML typed (true, null), bad env names and bad mounts: each task fails naming env.KEY or
    the option's own mounts[N] (not config.json's, after the default mounts), config.json stays as it was,
    a new bundle is not made and no container is created."""
    existing = make_bundle(["true"])
    with open(os.path.join(existing, "config.json"), "rb") as handle:
        before = handle.read()
    source = rootfs_of(existing)
    fresh = os.path.join(scratch, "fresh")
    missing = os.path.join(scratch, "no-such-source")
    cases = [
        ("oci_bundle", {"path": existing, "env": {"PORT": 8080, "DEBUG": True}},
         'env.DEBUG: true is a boolean; quote it ("true") to pass the text'),
        ("oci_bundle", {"path": existing, "env": {"EMPTY": None}}, 'env.EMPTY: null is not a value'),
        ("oci_bundle", {"path": existing, "env": {"A=B": "x"}}, "env: 'A=B' is not a valid variable name"),
        ("oci_bundle", {"path": existing, "env": {"": "z"}}, "env: '' is not a valid variable name"),
        ("oci_bundle", {"path": existing, "mounts": [{"destination": "../../../etc", "source": "/tmp"}]},
         "mounts[0].destination: must be an absolute path"),
        ("oci_bundle", {"path": existing, "mounts": [{"source": missing, "destination": "/data"}]},
         "mounts[0].source %s: No such file or directory" % missing),
        ("oci_bundle", {"path": fresh, "rootfs_from": source, "env": {"VERSION": 1.1}}, "env.VERSION: 1.1 is"),
        ("oci_containers", {"containers": [{"id": new_id("envmount"), "bundle": fresh, "rootfs_from": source,
                                            "mounts": [{"source": missing, "destination": "/data"}]}]},
         "mounts[0].source %s" % missing),
    ]
    results = run_tasks(scratch, [(module, args) for module, args, _needle in cases], state_root=state_root)
    for (module, args, needle), (_task, result) in zip(cases, results):
        assert result.get("failed"), (module, args, result)
        # oci_containers' own msg counts the failed items; each item's msg says why.
        messages = [result["msg"]] + [item.get("msg", "") for item in result.get("containers", [])]
        assert any(needle in message for message in messages), (module, args, needle, result)
        assert "mounts[7]" not in json.dumps(result) and "Traceback" not in json.dumps(result), result
    with open(os.path.join(existing, "config.json"), "rb") as handle:
        assert handle.read() == before
    assert not os.path.lexists(fresh)
    assert state_dirs(state_root) == []


# --------------------------------------------------------------------------
# 6. stop_signal checked up front

@pytest.mark.parametrize("signal", ["SIGFOO", "99", "0", "-1"])
def test_a_bad_stop_signal_is_refused_before_anything(params, make_bundle, state_root, signal):
    with pytest.raises(OCIError) as caught:
        container_state.run(params(bundle=make_bundle(["sleep", "1000"]), stop_signal=signal))
    assert str(caught.value).startswith("stop_signal:"), caught.value
    assert state_dirs(state_root) == []


def test_a_bad_stop_signal_is_refused_when_stopping(params, make_bundle, state_root):
    running = container_state.run(params(bundle=make_bundle(["sleep", "1000"])))["container"]
    result = run_module("oci_container_state", {"id": running["id"], "state": "stopped", "stop_signal": "99",
                                                "state_root": state_root})
    assert result["failed"] and "stop_signal" in result["msg"] and "Errno" not in result["msg"], result
    assert lifecycle.state(state_root, running["id"])["status"] == "running"


# --------------------------------------------------------------------------
# 7. a corrupt or truncated image leaves nothing (or the previous bundle) behind

def _tarball(path, truncate=False, corrupt=False):
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w") as tar:
        for name in ("bin", "etc"):
            info = tarfile.TarInfo(name)
            info.type = tarfile.DIRTYPE
            info.mode = 0o755
            tar.addfile(info)
        payload = os.urandom(256 * 1024)
        info = tarfile.TarInfo("bin/big")
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    raw = gzip.compress(data.getvalue())
    if truncate:
        raw = raw[:len(raw) // 2]
    if corrupt:
        raw = raw[:40] + bytes(b ^ 0xFF for b in raw[40:80]) + raw[80:]
    with open(path, "wb") as handle:
        handle.write(raw)
    return path


@pytest.mark.parametrize("damage", ["truncate", "corrupt"])
def test_a_damaged_tarball_leaves_no_bundle_directory(scratch, damage):
    source = _tarball(os.path.join(scratch, "image.tar.gz"), **{damage: True})
    path = os.path.join(scratch, "bundles", "new")
    with pytest.raises(OCIError):
        bundle_mod.ensure(path, {"args": ["true"]}, source=source)
    assert not os.path.lexists(path)
    assert not os.path.lexists(os.path.join(scratch, "bundles"))


def test_a_truncated_tarball_leaves_the_previous_bundle_untouched(scratch):
    good = _tarball(os.path.join(scratch, "good.tar.gz"))
    path = os.path.join(scratch, "bundle")
    bundle_mod.ensure(path, {"args": ["true"]}, source=good)
    before = dict((name, open(os.path.join(path, name)).read()) for name in ("config.json", bundle_mod.STAMP))
    bad = _tarball(os.path.join(scratch, "bad.tar.gz"), truncate=True)
    with pytest.raises(OCIError):
        bundle_mod.ensure(path, {"args": ["sh", "-c", "changed"]}, source=bad)
    assert sorted(os.listdir(path)) == sorted(["rootfs", "config.json", bundle_mod.STAMP])
    assert os.path.getsize(os.path.join(path, "rootfs", "bin", "big")) == 256 * 1024
    for name, text in before.items():
        with open(os.path.join(path, name)) as handle:
            assert handle.read() == text, name


def test_a_broken_oci_layout_leaves_no_bundle_directory(scratch):
    layout = os.path.join(scratch, "layout")
    os.makedirs(os.path.join(layout, "blobs", "sha256"))
    with open(os.path.join(layout, "oci-layout"), "w") as handle:
        json.dump({"imageLayoutVersion": "1.0.0"}, handle)
    with open(os.path.join(layout, "index.json"), "w") as handle:
        json.dump({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                                                      "digest": "sha256:" + "0" * 64, "size": 10}]}, handle)
    path = os.path.join(scratch, "bundles", "from-layout")
    with pytest.raises(OCIError):
        bundle_mod.ensure(path, {"args": ["true"]}, source=layout)
    assert not os.path.lexists(os.path.join(scratch, "bundles"))


# --------------------------------------------------------------------------
# 9. one id in two state roots: the second is refused before anything is made

def test_one_id_in_two_state_roots_is_refused_up_front_and_leaves_nothing(params, make_bundle, state_root):
    other_root = "/run/ocirt-test-%s" % uuid.uuid4().hex[:12]
    container_id = params()["id"]
    bundle = make_bundle(["sleep", "1000"])
    try:
        first = container_state.run(params(bundle=bundle))["container"]
        with pytest.raises(OCIError) as caught:
            container_state.run(params(bundle=bundle, state_root=other_root))
        message = str(caught.value)
        assert "/ocirt/" + container_id in message and "another state root" in message, message
        assert "cgroups_path" in message
        assert state_dirs(other_root) == []
        assert lifecycle.state(state_root, container_id)["pid"] == first["pid"]
        # Once the first is gone, the id is free in the other root, and nothing is left there either.
        assert container_state.run(params(state="absent"))["changed"]
        second = container_state.run(params(bundle=bundle, state_root=other_root))["container"]
        assert second["status"] == "running" and second["cgroup_path"] == "/ocirt/" + container_id
        assert container_state.run(params(state="absent", state_root=other_root))["changed"]
        assert cgroup_dirs("/ocirt/" + container_id) == []
        assert state_dirs(other_root) == []
    finally:
        if os.path.isdir(other_root):
            ocirt_cmd(other_root, "delete", "--force", container_id, check=False)
            subprocess.run(["rm", "-rf", "--one-file-system", other_root], check=False)


# --------------------------------------------------------------------------
# 8. the role: bad values fail before any task, unknown container_* variables are warned about

ROLE_PLAYBOOK = textwrap.dedent("""\
    - hosts: localhost
      gather_facts: false
      roles:
        - role: daemonless.oci.container
    """)


def _run_role(scratch, state_root, **variables):
    playbook = os.path.join(scratch, "role.yml")
    with open(playbook, "w") as handle:
        handle.write(ROLE_PLAYBOOK)
    base = dict(container_name=new_id("role"), container_state_root=state_root,
                container_bundle_dir=os.path.join(scratch, "bundle"))
    base.update(variables)
    return run_playbook(playbook, "-e", json.dumps(base))


def test_the_role_refuses_a_bad_size_before_any_task_and_warns_of_unknown_variables(scratch, state_root):
    done = _run_role(scratch, state_root, container_image_src=os.path.join(scratch, "image.tar"),
                     container_memory="lots", container_ports=["80:80"], container_restart_polcy="always")
    assert done.returncode != 0
    assert "container_memory must be bytes or a size" in done.stdout and '"lots"' in done.stdout, done.stdout
    # A warning of Ansible's own (ansible prints those on stderr).
    assert "ignores container_ports, container_restart_polcy " in done.stderr, done.stderr
    # Nothing past the checks ran: no bundle, no container task.
    assert "Deploy the container" not in done.stdout and "Make the bundle" not in done.stdout
    assert not os.path.lexists(os.path.join(scratch, "bundle"))


def test_the_role_takes_good_values_without_a_warning(scratch, state_root):
    # container_install_cli=false: the launcher's install (test_role_cli.py) is not what this checks, and it
    # would go to this machine's /usr/local.
    done = _run_role(scratch, state_root, container_state="absent", container_memory="256M", container_cpus=0.5,
                     container_install_cli=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ignores" not in done.stdout + done.stderr, done.stdout + done.stderr
