"""A copied rootfs directory (rootfs_copy) is known by a walk of its metadata, not by reading its files.

The copy and the content digest are wrapped to count their calls: "not re-read" is the absence of a
copy and of any file's content being opened, observed, not timed. What the stat walk cannot see (a
change made with the clock or the file system itself set back) is what rootfs_check=digest is for: it
reads every file's content, on every run.
"""
import os

import pytest

from ansible_collections.daemonless.oci.plugins.module_utils._bundle import bundle as bundle_mod
from ansible_collections.daemonless.oci.plugins.module_utils._bundle import directory
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.errors import OCIError


@pytest.fixture
def counted(monkeypatch):
    """{'copies': [...], 'reads': [...]}: the copies made and the files whose content was hashed."""
    seen = {"copies": [], "reads": []}
    real_copy, real_entry = directory.copy_directory, bundle_mod._sha256_entry

    def copy(source, dest, max_size=None):
        seen["copies"].append(source)
        return real_copy(source, dest, max_size=max_size)

    def entry(dir_fd, name):
        seen["reads"].append(name)
        return real_entry(dir_fd, name)
    monkeypatch.setattr(directory, "copy_directory", copy)
    monkeypatch.setattr(bundle_mod, "_sha256_entry", entry)
    return seen


def make_tree(root):
    for sub in ("bin", "etc/deep/er"):
        os.makedirs(os.path.join(root, sub))
    for rel, text in (("bin/tool", "#!/bin/sh\n"), ("etc/motd", "one"), ("etc/deep/er/conf", "a=1\n")):
        with open(os.path.join(root, rel), "w") as handle:
            handle.write(text)
    os.symlink("tool", os.path.join(root, "bin", "alias"))


def copied(bundle, rel):
    with open(os.path.join(bundle, "rootfs", rel)) as handle:
        return handle.read()


def ensure(bundle, source, **kwargs):
    return bundle_mod.ensure(bundle, {}, source=source, copy=True, **kwargs)


def test_an_unchanged_tree_is_walked_not_read_and_a_change_anywhere_is_copied(tmp_path, counted):
    source, bundle = str(tmp_path / "tree"), str(tmp_path / "bundle")
    make_tree(source)
    assert ensure(bundle, source)["changed"] and counted["copies"] == [source]
    again = ensure(bundle, source)
    assert again["changed"] is False and again["actions"] == []
    assert counted["copies"] == [source] and counted["reads"] == []

    # Deep in the tree, same size, its modification time set back: the change time still tells.
    deep = os.path.join(source, "etc", "deep", "er", "conf")
    before = os.stat(deep)
    with open(deep, "w") as handle:
        handle.write("a=2\n")
    os.utime(deep, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert os.stat(deep).st_size == before.st_size
    changed = ensure(bundle, source)
    assert changed["changed"] and any(a.startswith("unpack ") for a in changed["actions"])
    assert copied(bundle, "etc/deep/er/conf") == "a=2\n" and len(counted["copies"]) == 2

    # A mode change, a new file, a link pointed elsewhere: each is a change.
    for change in (lambda: os.chmod(os.path.join(source, "etc", "motd"), 0o600),
                   lambda: open(os.path.join(source, "etc", "new"), "w").close(),
                   lambda: (os.unlink(os.path.join(source, "bin", "alias")),
                            os.symlink("other", os.path.join(source, "bin", "alias")))):
        count = len(counted["copies"])
        change()
        assert ensure(bundle, source)["changed"] and len(counted["copies"]) == count + 1
        assert ensure(bundle, source)["changed"] is False and len(counted["copies"]) == count + 1
    assert os.readlink(os.path.join(bundle, "rootfs", "bin", "alias")) == "other"
    assert counted["reads"] == []


def test_rootfs_check_digest_reads_every_file_every_time(tmp_path, counted):
    source, bundle = str(tmp_path / "tree"), str(tmp_path / "bundle")
    make_tree(source)
    assert ensure(bundle, source, rootfs_check="digest")["changed"]
    assert sorted(counted["reads"]) == ["conf", "motd", "tool"]
    assert ensure(bundle, source, rootfs_check="digest")["changed"] is False
    assert sorted(counted["reads"]) == sorted(["conf", "motd", "tool"] * 2) and len(counted["copies"]) == 1
    # Switching to identity records the stat walk's key once (one copy), then reads nothing.
    assert ensure(bundle, source)["changed"] and ensure(bundle, source)["changed"] is False
    assert len(counted["reads"]) == 6 and len(counted["copies"]) == 2


def test_a_regular_file_swapped_for_a_link_during_the_digest_is_not_followed(tmp_path, monkeypatch):
    source = str(tmp_path / "tree")
    make_tree(source)
    outside = str(tmp_path / "secret")
    with open(outside, "w") as handle:
        handle.write("not part of the image")
    real_lstat = os.lstat

    def swapping_lstat(name, *args, **kwargs):
        result = real_lstat(name, *args, **kwargs)
        if name == "motd":  # after its lstat said "regular file", it becomes a link out of the tree
            os.unlink(name, dir_fd=kwargs["dir_fd"])
            os.symlink(outside, name, dir_fd=kwargs["dir_fd"])
        return result
    monkeypatch.setattr(bundle_mod.os, "lstat", swapping_lstat)
    bundle = str(tmp_path / "bundle")
    with pytest.raises(OCIError, match="rootfs_from %s: reading motd: Too many levels of symbolic links" % source):
        ensure(bundle, source, rootfs_check="digest")
    assert not os.path.lexists(bundle)
