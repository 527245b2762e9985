"""The boot record (_ansible/boot.py): what the unit's ocirt-boot needs on the host, and hostile records.

- boot.py, with everything it imports (lazily or not), is within the parts
  of module_utils the role ships to the host (roles/container/vars/main.yml,
  __container_cli_parts) and imports no Ansible: the host has none.
- record() writes what load() reads back, 0600 in a 0700 directory, only when
  it differs; the diff masks secrets.
- A tampered, unreadable, foreign or malformed record fails load() with an
  error naming the file (and the option), before anything is made.
"""
import json
import os
import stat

import pytest
import yaml

from helpers import REPO
from test_import_rules import MODULE_UTILS, PACKAGE, STDLIB, RUNTIME_THIRD_PARTY, load_imports, read_sources
from ansible_collections.daemonless.oci.plugins.module_utils._ansible import boot
from ansible_collections.daemonless.oci.plugins.module_utils._ansible.argument_specs import (
    container_state_argument_spec)
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.errors import OCIError

ROLE_VARS = os.path.join(REPO, "roles", "container", "vars", "main.yml")
BOOT = PACKAGE + "._ansible.boot"


def shipped_parts():
    with open(ROLE_VARS) as handle:
        return yaml.safe_load(handle)["__container_cli_parts"]


def shipped(module, parts):
    """Whether MODULE (a dotted name of ours) is in PARTS (paths under module_utils: packages or files)."""
    relative = module[len(PACKAGE) + 1:].replace(".", "/")
    return any(relative == part or relative.startswith(part + "/") or relative + ".py" == part
               or relative + "/__init__.py" == part for part in parts)


def test_ocirt_boot_needs_only_what_the_role_ships_and_no_ansible():
    imports = load_imports(read_sources(MODULE_UTILS))
    parts = shipped_parts()
    seen, todo, outside = set(), [BOOT], []
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for imp in imports[name]:
            if imp.target is not None:
                todo.append(imp.target)
                # A package's __init__ is imported with any of its modules.
                todo.extend(p for p in (imp.target.rsplit(".", 1)[0],) if p in imports and p != PACKAGE)
            elif imp.raw.split(".")[0] not in STDLIB | RUNTIME_THIRD_PARTY:
                outside.append(str(imp))
    assert not outside, "ocirt-boot runs where there is no Ansible: %s" % outside
    missing = sorted(name for name in seen if not shipped(name, parts))
    assert not missing, "imported by ocirt-boot but not shipped by the role (__container_cli_parts): %s" % missing
    assert BOOT in seen and PACKAGE + "._ansible.container_state" in seen


def params_for(tmp_path, **overrides):
    """oci_container_state's params as AnsibleModule hands them over: every option, defaults filled in."""
    params = dict((name, option.get("default")) for name, option in container_state_argument_spec().items())
    params.update(id="web", bundle=str(tmp_path / "bundle"), state_root=str(tmp_path / "state"),
                  cgroup_manager="cgroupfs", boot_record=str(tmp_path / "boot" / "web.json"),
                  healthcheck=dict(test=["true"], interval="1s", timeout=None, retries=2, start_period=None,
                                   on_failure="restart"),
                  restart_policy="on-failure:3", labels={"app": "web"}, network=["front"], publish=["8080:80"],
                  secrets=[dict(name="pw", content="s3cret", src=None, target=None, mode="0400", uid=None,
                                gid=None)])
    params.update(overrides)
    return params


def test_a_record_is_written_root_only_once_and_read_back_as_the_task_gave_it(tmp_path):
    params = params_for(tmp_path)
    first = boot.record(params, diff=True)
    path = params["boot_record"]
    assert first["changed"] and first["boot_record"] == path and first["cgroup_manager"] == "cgroupfs"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o700
    assert "s3cret" not in first["diff"]["after"] and boot.SECRET_MASK in first["diff"]["after"]
    assert boot.record(params)["changed"] is False
    loaded = boot.load(path, "web")
    for name in boot.recorded_options():
        assert loaded[name] == params[name], name
    # What a boot does, whatever the task said.
    assert {k: loaded[k] for k in boot.AT_BOOT} == boot.AT_BOOT
    # A change of any recorded option rewrites it; check mode only says so.
    moved = params_for(tmp_path, publish=["8081:80"])
    assert boot.record(moved, check_mode=True)["changed"] is True
    assert boot.load(path)["publish"] == ["8080:80"]
    assert boot.record(moved)["changed"] is True and boot.load(path)["publish"] == ["8081:80"]


def test_bad_options_fail_when_recorded_not_at_boot(tmp_path):
    with pytest.raises(OCIError, match="restart_policy"):
        boot.record(params_for(tmp_path, restart_policy="sometimes"))
    with pytest.raises(OCIError, match="boot_record: must be an absolute path"):
        boot.record(params_for(tmp_path, boot_record="boot/web.json"))
    with pytest.raises(OCIError, match="stop_signal"):
        boot.record(params_for(tmp_path, stop_signal="SIGNOPE"))
    assert not os.path.exists(tmp_path / "boot")


def good_record(tmp_path):
    params = params_for(tmp_path)
    boot.record(params)
    with open(params["boot_record"]) as handle:
        return params["boot_record"], json.load(handle)


def rewrite(path, content, mode=0o600):
    os.unlink(path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "w") as handle:
        handle.write(content if isinstance(content, str) else json.dumps(content))
    os.chmod(path, mode)


def tamper(content, change):
    change(content)
    return content


@pytest.mark.parametrize("change,needle", [
    (lambda c: "{not json", "not JSON"),
    (lambda c: [], "not a boot record"),
    (lambda c: tamper(c, lambda d: d.update(format="something else")), "not a boot record"),
    (lambda c: tamper(c, lambda d: d.update(version=99)), "version 99"),
    (lambda c: tamper(c, lambda d: d.update(params="x")), "params must be an object"),
    (lambda c: tamper(c, lambda d: d["params"].update(command="rm -rf /")), "unknown options: command"),
    (lambda c: tamper(c, lambda d: d["params"].pop("network")), "missing options: network"),
    (lambda c: tamper(c, lambda d: d["params"].update(stop_timeout="10")), "stop_timeout must be of type int"),
    (lambda c: tamper(c, lambda d: d["params"].update(stop_timeout=True)), "stop_timeout must be of type int"),
    (lambda c: tamper(c, lambda d: d["params"].update(publish="8080:80")), "publish must be of type list"),
    (lambda c: tamper(c, lambda d: d["params"].update(publish=[8080])), r"publish\[0\] must be of type str"),
    (lambda c: tamper(c, lambda d: d["params"].update(cgroup_manager="lxc")), "cgroup_manager must be one of"),
    (lambda c: tamper(c, lambda d: d["params"]["healthcheck"].update(shell="x")), "healthcheck: unknown options"),
    (lambda c: tamper(c, lambda d: d["params"]["healthcheck"].update(test=None)), "healthcheck.test is required"),
    (lambda c: tamper(c, lambda d: d["params"]["secrets"].append("pw")), r"secrets\[1\] must be of type dict"),
    (lambda c: tamper(c, lambda d: d["params"].update(bundle="relative/dir")), "bundle must be an absolute path"),
    (lambda c: tamper(c, lambda d: d["params"].update(id="../etc")), "id: "),
    (lambda c: tamper(c, lambda d: d["params"].update(id="db")), "is the record of container db, not of web"),
])
def test_a_tampered_record_fails_naming_the_file_and_the_option(tmp_path, change, needle):
    path, content = good_record(tmp_path)
    rewrite(path, change(content))
    with pytest.raises(OCIError, match="boot record %s: .*%s" % (path, needle)):
        boot.load(path, "web")


def test_a_record_others_could_read_or_write_is_refused(tmp_path):
    path, content = good_record(tmp_path)
    for mode in (0o644, 0o620, 0o604):
        os.chmod(path, mode)
        with pytest.raises(OCIError, match="boot record %s: mode %04o lets others" % (path, mode)):
            boot.load(path, "web")


def test_a_missing_foreign_linked_or_huge_record_is_refused(tmp_path):
    path, content = good_record(tmp_path)
    link = str(tmp_path / "link.json")
    os.symlink(path, link)
    with pytest.raises(OCIError, match="boot record %s: cannot be read" % link):
        boot.load(link, "web")
    with pytest.raises(OCIError, match="boot record %s: cannot be read: No such file" % (path + ".gone")):
        boot.load(path + ".gone", "web")
    with pytest.raises(OCIError, match="not a regular file"):
        boot.load(str(tmp_path), "web")
    os.chown(path, 65534, 65534)
    with pytest.raises(OCIError, match="owned by uid 65534"):
        boot.load(path, "web")
    os.chown(path, 0, 0)
    rewrite(path, " " * (boot.MAX_RECORD_BYTES + 1))
    with pytest.raises(OCIError, match="larger than"):
        boot.load(path, "web")


def test_the_entry_point_says_what_is_wrong_and_exits_non_zero(tmp_path, capsys):
    assert boot.main(["--pid-file", "x", "web"]) == 2
    assert "usage: ocirt-boot" in capsys.readouterr().err
    path = str(tmp_path / "missing.json")
    assert boot.main(["--record", path, "--pid-file", str(tmp_path / "pid"), "web"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("ocirt-boot: container web: boot record %s: cannot be read" % path), err
    assert not os.path.exists(tmp_path / "pid")
