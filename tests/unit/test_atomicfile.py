"""The one atomic file writer, and that state.json, pid files and bundles' config.json go through it."""
import os
import stat

import pytest

from ansible_collections.daemonless.oci.plugins.module_utils._runtime import atomicfile, jsonio, state
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.errors import OCIError
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.operations import create


def entries(directory):
    return sorted(os.listdir(str(directory)))


def test_write_replaces_the_file_and_leaves_no_temporary(tmp_path):
    path = str(tmp_path / "f.json")
    atomicfile.write(path, "one")
    atomicfile.write(path, b"two\x00bytes")
    with open(path, "rb") as handle:
        assert handle.read() == b"two\x00bytes"
    assert entries(tmp_path) == ["f.json"]


def test_write_replaces_by_rename_so_a_reader_keeps_the_old_file(tmp_path):
    """An open reader of the old file still reads it whole: the new content is a new inode."""
    path = str(tmp_path / "state.json")
    atomicfile.write(path, "old content")
    with open(path) as reader:
        atomicfile.write(path, "new")
        assert reader.read() == "old content"
    with open(path) as handle:
        assert handle.read() == "new"


def test_only_durable_writes_are_synced_and_before_the_rename(tmp_path, monkeypatch):
    events = []
    real_fsync, real_rename = os.fsync, os.rename
    monkeypatch.setattr(os, "fsync", lambda fd: (events.append("fsync"), real_fsync(fd)))
    monkeypatch.setattr(os, "rename", lambda *args: (events.append("rename"), real_rename(*args)))
    atomicfile.write(str(tmp_path / "state.json"), "{}")
    assert events == ["rename"]
    del events[:]
    atomicfile.write(str(tmp_path / "config.json"), "{}", durable=True)
    assert events == ["fsync", "rename"]


def test_mode_is_that_of_open_less_the_umask_unless_given(tmp_path):
    old = os.umask(0o027)
    try:
        atomicfile.write(str(tmp_path / "default"), "x")
        atomicfile.write(str(tmp_path / "private"), "x", mode=0o600)
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(str(tmp_path / "default")).st_mode) == 0o640
    assert stat.S_IMODE(os.stat(str(tmp_path / "private")).st_mode) == 0o600


def test_a_write_that_fails_is_an_error_naming_the_path_and_leaves_the_old_file(tmp_path):
    path = str(tmp_path / "f")
    atomicfile.write(path, "old")
    os.mkdir(str(tmp_path / "f.d"))
    # The rename onto a directory fails after the temporary file was written: it must go.
    with pytest.raises(OCIError) as caught:
        atomicfile.write(str(tmp_path / "f.d"), "new")
    assert str(tmp_path / "f.d") in str(caught.value)
    assert entries(tmp_path) == ["f", "f.d"]
    with open(path) as handle:
        assert handle.read() == "old"


def test_a_missing_directory_is_an_error_naming_the_path(tmp_path):
    path = str(tmp_path / "no" / "such" / "pidfile")
    with pytest.raises(OCIError) as caught:
        atomicfile.write(path, "1")
    assert str(caught.value) == "cannot write %s: No such file or directory" % path


def test_a_symlink_at_the_temporary_name_is_not_written_through(tmp_path):
    """In a shared directory (a pid file in /tmp) another user could plant one."""
    victim = tmp_path / "victim"
    victim.write_text("untouched")
    path = str(tmp_path / "c.pid")
    os.symlink(str(victim), str(tmp_path / (".c.pid.%d.tmp" % os.getpid())))
    with pytest.raises(OCIError):
        atomicfile.write(path, "123")
    assert victim.read_text() == "untouched"
    assert not os.path.exists(path)


def test_state_json_is_written_through_it_readable_by_root_alone(tmp_path):
    path = str(tmp_path / state.STATE_FILE)
    state.write_json_atomic(path, {"id": "c1", "status": "created"})
    with open(path, "rb") as handle:
        assert jsonio.loads(handle.read()) == {"id": "c1", "status": "created"}
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert entries(tmp_path) == [state.STATE_FILE]


def test_pid_files_are_written_through_it(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(atomicfile, "write", lambda *args, **kwargs: calls.append(args))
    create.write_pid_file(str(tmp_path / "c.pid"), 4242)
    assert calls == [(str(tmp_path / "c.pid"), "4242")]


def test_pid_file_content_and_error(tmp_path):
    create.write_pid_file(str(tmp_path / "c.pid"), 4242)
    assert (tmp_path / "c.pid").read_text() == "4242"
    with pytest.raises(OCIError, match="cannot write .*/missing/c.pid"):
        create.write_pid_file(str(tmp_path / "missing" / "c.pid"), 1)


def test_bundle_config_json_is_written_through_it(tmp_path, monkeypatch):
    from ansible_collections.daemonless.oci.plugins.module_utils._bundle import bundle
    rootfs = tmp_path / "rootfs"
    rootfs.mkdir()
    written = []
    real = atomicfile.write
    monkeypatch.setattr(atomicfile, "write", lambda path, data, **kwargs: (written.append((path, kwargs)),
                                                                           real(path, data, **kwargs)))
    outcome = bundle.ensure(str(tmp_path / "b"), {"args": ["true"]}, source=str(rootfs))
    config_file = str(tmp_path / "b" / "config.json")
    # A bundle outlives a crash of the machine: its files are synced before the rename.
    assert written == [(config_file, {"durable": True}), (str(tmp_path / "b" / bundle.STAMP), {"durable": True})]
    with open(config_file) as handle:
        assert handle.read() == outcome["after"]
    assert entries(tmp_path / "b") == [bundle.STAMP, "config.json"]
