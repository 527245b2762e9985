"""paths: container paths resolved inside the rootfs, never outside it.

open_in_root (openat2 RESOLVE_IN_ROOT) and walk_in_root (the component walk
for kernels before 5.6) must agree on every hostile tree: the same object, or
the same errno, and never anything outside the rootfs.
"""
import errno
import fcntl
import os
import stat
import uuid

import pytest

from ansible_collections.daemonless.oci.plugins.module_utils._runtime.linux import paths, syscalls

MAX_LINKS = paths.MAX_SYMLINKS


def fd_target(fd):
    return os.readlink("/proc/self/fd/%d" % fd)


def build_tree(root, chains=False):
    """A hostile rootfs at ROOT. It has no /usr: links that would escape to the host's /usr must fail."""
    for name in ("etc", "tmp", "real", "dir/sub", "deep/a/b"):
        os.makedirs(os.path.join(root, name))
    with open(os.path.join(root, "etc", "marker"), "w") as handle:
        handle.write("container etc\n")
    with open(os.path.join(root, "real", "f"), "w") as handle:
        handle.write("real file\n")
    links = {
        "etc2": "/etc",                              # absolute: the rootfs's /etc, not the host's
        "esc": "../../../../../../tmp",              # relative escape attempt
        "a": "b", "b": "c", "c": "/real",            # a chain
        "x": "y", "y": "x",                          # a loop
        "self": "self",                              # a one-link loop
        "dang": "/nothere/sub",                      # dangling
        "up": "../../..",                            # relative escape to "/"
        "usr2": "/usr/bin",                          # exists on the host only
        "usr3": "../../../../../../../../usr/bin",   # exists on the host only
        "proc-root": "/proc/self/root",              # a magic link on the host; nothing in the rootfs
        "lnkdir": "/deep/a/b",
        "deep/a/b/rel": "../../../real",
        "deep/a/b/parent": "..",
    }
    for name, target in links.items():
        os.symlink(target, os.path.join(root, name))
    if chains:
        for length in (MAX_LINKS, MAX_LINKS + 1):
            chain = os.path.join(root, "chain%d" % length)
            os.mkdir(chain)
            os.symlink("/real", os.path.join(chain, "l0"))
            for index in range(1, length):
                os.symlink("l%d" % (index - 1), os.path.join(chain, "l%d" % index))
    return os.path.realpath(root)


@pytest.fixture(scope="module")
def ro_rootfs(tmp_path_factory):
    """The tree for the read-only tests, built once."""
    return build_tree(str(tmp_path_factory.mktemp("paths") / "rootfs"), chains=True)


@pytest.fixture
def rootfs(tmp_path):
    """A fresh tree for tests that create files."""
    return build_tree(str(tmp_path / "rootfs"))


def open_root(path):
    return os.open(path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)


@pytest.fixture
def ro_rootfd(ro_rootfs):
    fd = open_root(ro_rootfs)
    yield fd
    os.close(fd)


@pytest.fixture
def rootfd(rootfs):
    fd = open_root(rootfs)
    yield fd
    os.close(fd)


def resolve(function, rootfd, path, flags=os.O_PATH):
    """("ok", resolved host path) or ("err", errno), closing what was opened."""
    try:
        fd = function(rootfd, path, flags)
    except OSError as exc:
        return ("err", exc.errno)
    try:
        assert not os.get_inheritable(fd), "%s returned an inheritable fd" % function.__name__
        return ("ok", fd_target(fd))
    finally:
        os.close(fd)


def ok(relative):
    return ("ok", relative)


def err(number):
    return ("err", number)


# (requested path, expected: ok(path relative to the rootfs) or err(errno))
CASES = [
    ("/", ok("")),
    ("", ok("")),
    (".", ok("")),
    ("/real/f", ok("real/f")),
    ("real//./f", ok("real/f")),
    ("/etc2", ok("etc")),
    ("/etc2/marker", ok("etc/marker")),
    ("/etc2/..", ok("")),
    ("/esc", ok("tmp")),
    ("/esc/../etc/marker", ok("etc/marker")),
    ("/a", ok("real")),
    ("/a/f", ok("real/f")),
    ("/b/../etc", ok("etc")),
    ("/x", err(errno.ELOOP)),
    ("/x/anything", err(errno.ELOOP)),
    ("/self", err(errno.ELOOP)),
    ("/../../etc", ok("etc")),
    ("/../../etc/marker", ok("etc/marker")),
    ("../../../../etc/marker", ok("etc/marker")),
    ("/dir/sub/../../../../etc", ok("etc")),
    ("/real/../../..", ok("")),
    ("/up", ok("")),
    ("/up/real/f", ok("real/f")),
    ("/lnkdir", ok("deep/a/b")),
    ("/lnkdir/..", ok("deep/a")),
    ("/lnkdir/rel/f", ok("real/f")),
    ("/deep/a/b/rel", ok("real")),
    ("/lnkdir/parent", ok("deep/a")),
    ("/lnkdir/parent/b/rel/f", ok("real/f")),
    ("/dang", err(errno.ENOENT)),
    ("/dang/sub", err(errno.ENOENT)),
    ("/missing", err(errno.ENOENT)),
    ("/usr2", err(errno.ENOENT)),
    ("/usr3", err(errno.ENOENT)),
    ("/../../usr/bin", err(errno.ENOENT)),
    ("/proc-root", err(errno.ENOENT)),
    ("/real/f/x", err(errno.ENOTDIR)),
    ("/chain%d/l%d" % (MAX_LINKS, MAX_LINKS - 1), ok("real")),
    ("/chain%d/l%d" % (MAX_LINKS + 1, MAX_LINKS), err(errno.ELOOP)),
    # A regular file is not a directory: neither "f/.." nor "f/" may resolve.
    ("/real/f/..", err(errno.ENOTDIR)),
    ("/real/f/", err(errno.ENOTDIR)),
]


def expected_result(rootfs, expected):
    kind, value = expected
    if kind == "ok":
        return ("ok", os.path.join(rootfs, value).rstrip("/") if value else rootfs)
    return expected


@pytest.mark.parametrize("path,expected", CASES, ids=[case[0] or "<empty>" for case in CASES])
def test_open_and_walk_agree_inside_the_root(ro_rootfs, ro_rootfd, path, expected):
    rootfs = ro_rootfs
    opened = resolve(paths.open_in_root, ro_rootfd, path)
    walked = resolve(paths.walk_in_root, ro_rootfd, path)
    want = expected_result(rootfs, expected)
    assert opened == want, "open_in_root"
    assert walked == want, "walk_in_root"
    for kind, target in (opened, walked):
        if kind == "ok":
            assert target == rootfs or target.startswith(rootfs + "/")


@pytest.mark.parametrize("function", [paths.open_in_root, paths.walk_in_root])
def test_error_types(ro_rootfd, function):
    rootfd = ro_rootfd
    with pytest.raises(FileNotFoundError):
        function(rootfd, "/dang")
    with pytest.raises(FileNotFoundError):
        function(rootfd, "/usr2")
    with pytest.raises(OSError) as caught:
        function(rootfd, "/x")
    assert caught.value.errno == errno.ELOOP


@pytest.mark.parametrize("function", [paths.open_in_root, paths.walk_in_root])
@pytest.mark.parametrize("path,relative", [("/etc2", "etc"), ("/", ""), ("/../../etc", "etc"), ("/a/..", ""),
                                           ("/lnkdir/..", "deep/a"), ("/lnkdir/parent", "deep/a")])
def test_open_a_directory_for_reading(ro_rootfs, ro_rootfd, function, path, relative):
    rootfs, rootfd = ro_rootfs, ro_rootfd
    fd = function(rootfd, path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert fd_target(fd) == (os.path.join(rootfs, relative) if relative else rootfs)
        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
        assert not flags & os.O_PATH  # a real descriptor: it can list the directory
        assert sorted(os.listdir(fd)) == sorted(os.listdir(fd_target(fd)))
        assert not os.get_inheritable(fd)
    finally:
        os.close(fd)


@pytest.mark.parametrize("function", [paths.open_in_root, paths.walk_in_root])
def test_open_directory_flag_on_a_file(ro_rootfd, function):
    rootfd = ro_rootfd
    with pytest.raises(NotADirectoryError):
        function(rootfd, "/a/f", os.O_RDONLY | os.O_DIRECTORY)


@pytest.mark.parametrize("function", [paths.open_in_root, paths.walk_in_root])
def test_open_a_file_for_reading_through_links(ro_rootfd, function):
    rootfd = ro_rootfd
    fd = function(rootfd, "/a/f", os.O_RDONLY)
    try:
        assert os.read(fd, 100) == b"real file\n"
    finally:
        os.close(fd)


def test_open_in_root_falls_back_to_the_walk_without_openat2(ro_rootfs, ro_rootfd, monkeypatch):
    rootfs, rootfd = ro_rootfs, ro_rootfd
    calls = []

    def no_openat2(*args, **kwargs):
        calls.append(args)
        raise OSError(errno.ENOSYS, "openat2: Function not implemented")
    monkeypatch.setattr(syscalls, "openat2", no_openat2)
    monkeypatch.setattr(paths, "_openat2_missing", False)
    assert resolve(paths.open_in_root, rootfd, "/a/f") == ("ok", os.path.join(rootfs, "real", "f"))
    assert paths._openat2_missing is True
    assert resolve(paths.open_in_root, rootfd, "/etc2/marker") == ("ok", os.path.join(rootfs, "etc", "marker"))
    assert len(calls) == 1  # ENOSYS is remembered
    assert resolve(paths.open_in_root, rootfd, "/usr2") == ("err", errno.ENOENT)


# -- ensure_in_root ---------------------------------------------------------------------


def host_untouched(*paths_on_host):
    for path in paths_on_host:
        assert not os.path.lexists(path), "%s was created on the host" % path


@pytest.fixture
def unique():
    return "ocirt-test-" + uuid.uuid4().hex[:10]


def ensure(rootfd, path, directory=True):
    fd = paths.ensure_in_root(rootfd, path, directory=directory)
    try:
        again = paths.open_in_root(rootfd, path)
        try:
            same = os.fstat(fd)
            other = os.fstat(again)
            assert (same.st_dev, same.st_ino) == (other.st_dev, other.st_ino), \
                "ensure_in_root(%s) and open_in_root(%s) name different objects" % (path, path)
        finally:
            os.close(again)
        return fd_target(fd), os.fstat(fd).st_mode
    finally:
        os.close(fd)


# (requested path, directory?, where it must land relative to the rootfs, host paths that must not appear)
ENSURE_CASES = [
    ("/new/sub/leaf", True, "new/sub/leaf", []),
    ("/newfile-parent/file", False, "newfile-parent/file", []),
    ("/real", True, "real", []),
    ("/real/f", False, "real/f", []),
    ("/a/made-through-chain", True, "real/made-through-chain", []),
    ("/dang", True, "nothere/sub", ["/nothere"]),
    ("/dang/deeper/file", False, "nothere/sub/deeper/file", ["/nothere"]),
    ("/etc2/{u}", False, "etc/{u}", ["/etc/{u}"]),
    ("/esc/{u}/d", True, "tmp/{u}/d", ["/tmp/{u}"]),
    ("/usr2/{u}", True, "usr/bin/{u}", ["/usr/bin/{u}"]),
    ("/../../{u}", True, "{u}", ["/{u}"]),
    ("/up/{u}", True, "{u}", ["/{u}"]),
    ("/lnkdir/{u}", True, "deep/a/b/{u}", []),
    # ".." after a symlinked directory: kernel semantics, not string semantics.
    ("/lnkdir/../{u}", True, "deep/a/{u}", []),
]


@pytest.mark.parametrize("path,directory,lands,host", ENSURE_CASES, ids=[case[0] for case in ENSURE_CASES])
def test_ensure_in_root_creates_inside_the_root(rootfs, rootfd, unique, path, directory, lands, host):
    path, lands = path.format(u=unique), lands.format(u=unique)
    host = [h.format(u=unique) for h in host]
    host_untouched(*host)
    target, mode = ensure(rootfd, path, directory)
    assert target == os.path.join(rootfs, lands)
    assert stat.S_ISDIR(mode) if directory else stat.S_ISREG(mode)
    host_untouched(*host)


def test_ensure_in_root_through_a_relative_dangling_link_in_a_linked_dir(rootfs, rootfd):
    # lnkdir -> /deep/a/b; b/rel2 -> ../made: the link resolves to /deep/a/made.
    os.symlink("../made", os.path.join(rootfs, "deep", "a", "b", "rel2"))
    target, mode = ensure(rootfd, "/lnkdir/rel2")
    assert target == os.path.join(rootfs, "deep", "a", "made")
    assert stat.S_ISDIR(mode)
    assert not os.path.lexists(os.path.join(rootfs, "made"))


def test_ensure_in_root_is_idempotent(rootfs, rootfd):
    first = ensure(rootfd, "/dang/again", True)
    second = ensure(rootfd, "/dang/again", True)
    assert first == second == (os.path.join(rootfs, "nothere", "sub", "again"), first[1])


def test_ensure_in_root_keeps_existing_content(rootfs, rootfd):
    ensure(rootfd, "/etc2/marker", directory=False)
    with open(os.path.join(rootfs, "etc", "marker")) as handle:
        assert handle.read() == "container etc\n"


@pytest.mark.parametrize("path", ["/x", "/x/sub", "/self/sub"])
def test_ensure_in_root_loop(ro_rootfd, path):
    rootfd = ro_rootfd
    with pytest.raises(OSError) as caught:
        paths.ensure_in_root(rootfd, path)
    assert caught.value.errno == errno.ELOOP


def test_ensure_in_root_below_a_file(ro_rootfd):
    rootfd = ro_rootfd
    with pytest.raises(OSError) as caught:
        paths.ensure_in_root(rootfd, "/real/f/below")
    assert caught.value.errno == errno.ENOTDIR
