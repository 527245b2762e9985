"""lsm.py: the procfs check on the label write path, refusals on hosts without the module, mount data."""
import os

import pytest

from ansible_collections.daemonless.oci.plugins.module_utils._runtime.setup import lsm
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.linux import syscalls
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.errors import OCIError


def test_fstatfs_type_of_proc_is_proc_super_magic():
    fd = os.open("/proc/self/status", os.O_RDONLY | os.O_CLOEXEC)
    try:
        assert syscalls.fstatfs_type(fd) == lsm.PROC_SUPER_MAGIC
    finally:
        os.close(fd)


def test_verify_procfs_accepts_a_proc_file():
    fd = os.open("/proc/self/status", os.O_RDONLY | os.O_CLOEXEC)
    try:
        lsm.verify_procfs(fd, "process.apparmorProfile: /proc/self/status")
    finally:
        os.close(fd)


def test_verify_procfs_refuses_a_regular_file(tmp_path):
    path = tmp_path / "exec"
    path.write_text("")
    fd = os.open(str(path), os.O_WRONLY | os.O_CLOEXEC)
    try:
        with pytest.raises(OCIError) as info:
            lsm.verify_procfs(fd, "process.selinuxLabel: %s" % path)
    finally:
        os.close(fd)
    message = str(info.value)
    assert "process.selinuxLabel" in message
    assert "not a procfs file" in message
    assert "0x9fa0" in message


def test_fstatfs_type_of_a_closed_fd_is_oserror():
    fd = os.open("/proc/self/status", os.O_RDONLY)
    os.close(fd)
    with pytest.raises(OSError):
        syscalls.fstatfs_type(fd)


def test_exec_labels_open_only_procfs_files(tmp_path):
    """A /proc directory that is not procfs (what an image could provide) is refused."""
    fake = tmp_path / "self" / "attr"
    fake.mkdir(parents=True)
    (fake / "exec").write_text("")
    proc_dir = os.open(str(tmp_path), os.O_PATH | os.O_DIRECTORY)
    try:
        with pytest.raises(OCIError) as info:
            lsm.ExecLabels({"selinuxLabel": "system_u:system_r:container_t:s0"}, proc_dir=proc_dir)
    finally:
        os.close(proc_dir)
    assert "process.selinuxLabel" in str(info.value)
    assert "not a procfs file" in str(info.value)


@pytest.mark.parametrize("config, field", [
    ({"process": {"apparmorProfile": "docker-default"}}, "process.apparmorProfile"),
    ({"process": {"selinuxLabel": "system_u:system_r:container_t:s0"}}, "process.selinuxLabel"),
    ({"process": {}, "linux": {"mountLabel": "system_u:object_r:container_file_t:s0"}}, "linux.mountLabel"),
])
def test_check_refuses_a_module_the_host_lacks(monkeypatch, config, field):
    monkeypatch.setattr(lsm, "apparmor_enabled", lambda: False)
    monkeypatch.setattr(lsm, "selinux_enabled", lambda: False)
    with pytest.raises(OCIError) as info:
        lsm.check(config)
    assert str(info.value).startswith(field + ":")
    assert "not enabled on this host" in str(info.value)


def test_check_accepts_what_the_host_has(monkeypatch):
    monkeypatch.setattr(lsm, "apparmor_enabled", lambda: True)
    monkeypatch.setattr(lsm, "selinux_enabled", lambda: True)
    lsm.check({"process": {"apparmorProfile": "p", "selinuxLabel": "l"}, "linux": {"mountLabel": "m"}})
    lsm.check({"process": {}})


def test_mount_data_adds_the_context_to_labelled_types():
    assert lsm.mount_data("mode=755", "tmpfs", "s0") == 'mode=755,context="s0"'
    assert lsm.mount_data(None, "mqueue", "s0") == 'context="s0"'
    assert lsm.mount_data("gid=5", "devpts", "s0") == 'gid=5,context="s0"'
    assert lsm.mount_data("x", "proc", "s0") == "x"
    assert lsm.mount_data("x", "tmpfs", None) == "x"
