"""User names resolved through the image (`_bundle/users.py`), and env_file: oci_bundle on real bundles and containers.

The image's /etc/passwd and /etc/group decide what a name means, never the
host's; the rootfs is hostile (symlinks out of it, huge or binary files),
and whatever it holds either resolves inside it or fails naming `user`.
"""
import json
import os

import pytest

import busybox_bundle
from helpers import run_ok, write_file
from ansible_collections.daemonless.oci.plugins.module_utils._bundle import bundle as bundle_mod
from ansible_collections.daemonless.oci.plugins.module_utils._bundle import users
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.errors import OCIError

# Names and numbers the host's files do not have (or mean otherwise), so a lookup in the host's would show.
PASSWD = busybox_bundle.PASSWD + "www-data:x:33:33:www-data:/var/www:/bin/false\nimguser:x:4242:4343::/:/bin/sh\n"
GROUP = busybox_bundle.GROUP + ("www-data:x:33:\nimggroup:x:4343:\ndevs:x:5151:imguser,app\n"
                                "ops:x:5252:app,imguser\nlonely:x:5353:\n")


@pytest.fixture
def rootfs(scratch):
    """A busybox rootfs with the extra users and groups above; returns its path."""
    path = os.path.join(scratch, "source")
    busybox_bundle.build_rootfs(path)
    write_file(os.path.join(path, "etc", "passwd"), PASSWD)
    write_file(os.path.join(path, "etc", "group"), GROUP)
    return path


def bundle_with(scratch, rootfs, user, **options):
    path = os.path.join(scratch, "bundle")
    options = dict(options, user=user, args=["grep", "-E", "^(Uid|Gid|Groups):", "/proc/self/status"])
    result = bundle_mod.ensure(path, options, source=rootfs, copy=True)
    return path, result["config"]["process"]["user"]


@pytest.mark.parametrize("user, wanted", [
    ("www-data", {"uid": 33, "gid": 33}),
    ("www-data:www-data", {"uid": 33, "gid": 33}),
    ("imguser", {"uid": 4242, "gid": 4343, "additionalGids": [5151, 5252]}),
    ("4242", {"uid": 4242, "gid": 4343, "additionalGids": [5151, 5252]}),
    ("imguser:lonely", {"uid": 4242, "gid": 5353}),
    ("nobody", {"uid": 65534, "gid": 65534}),
    ("1000:1000", {"uid": 1000, "gid": 1000}),
    ("1000", {"uid": 1000, "gid": 1000, "additionalGids": [5151, 5252]}),
    ("7777", {"uid": 7777, "gid": 0}),
    ("7777:33", {"uid": 7777, "gid": 33}),
])
def test_a_user_resolves_through_the_image_and_the_container_runs_as_it(scratch, rootfs, ocirt, user, wanted):
    path, process_user = bundle_with(scratch, rootfs, user)
    assert process_user == wanted
    with open(os.path.join(path, "config.json")) as handle:
        assert json.load(handle)["process"]["user"] == wanted
    # What the kernel says the process is: real, effective, saved and fs ids, and its group list.
    status = dict(line.split(":", 1) for line in run_ok(ocirt, path).splitlines())
    assert status["Uid"].split() == [str(wanted["uid"])] * 4
    assert status["Gid"].split() == [str(wanted["gid"])] * 4
    assert sorted(int(g) for g in status["Groups"].split()) == sorted(wanted.get("additionalGids", []))


@pytest.mark.parametrize("user, needle", [
    ("nosuchuser", "no user 'nosuchuser'"),
    ("www-data:nosuchgroup", "no group 'nosuchgroup'"),
    ("root", None),  # the host's root exists everywhere: resolved from the image below, not an error
])
def test_a_name_the_image_lacks_is_an_error_naming_user_and_writes_no_bundle(scratch, rootfs, user, needle):
    path = os.path.join(scratch, "bundle")
    if needle is None:
        assert bundle_with(scratch, rootfs, user)[1] == {"uid": 0, "gid": 0}
        return
    with pytest.raises(OCIError) as caught:
        bundle_mod.ensure(path, {"user": user}, source=rootfs, copy=True)
    assert str(caught.value).startswith("user: ") and needle in str(caught.value)
    assert not os.path.exists(os.path.join(path, "config.json"))


def test_a_host_only_name_does_not_resolve(scratch, rootfs):
    # Debian hosts have 'daemon' and 'sys'; this image has neither.
    with open("/etc/passwd") as handle:
        host_names = [line.split(":")[0] for line in handle if line.strip()]
    missing = next(name for name in host_names if name not in PASSWD)
    with pytest.raises(OCIError, match="no user %r" % missing):
        bundle_with(scratch, rootfs, missing)


def host_secret_file(scratch):
    """A host file in /etc-style format that the image must never be able to read through a link."""
    path = os.path.join(scratch, "host-passwd")
    write_file(path, "www-data:x:31337:31337::/:/bin/sh\nhostonly:x:4040:4040::/:/bin/sh\n")
    return path


@pytest.mark.parametrize("target_kind", ["absolute", "relative", "proc"])
def test_a_symlinked_passwd_resolves_inside_the_rootfs_never_on_the_host(scratch, rootfs, target_kind):
    host = host_secret_file(scratch)
    passwd = os.path.join(rootfs, "etc", "passwd")
    os.unlink(passwd)
    target = {"absolute": host, "relative": "../../../../../../../.." + host,
              "proc": "/proc/1/root" + host}[target_kind]
    os.symlink(target, passwd)
    with pytest.raises(OCIError, match="no user 'hostonly'"):
        users.resolve_in(rootfs, "hostonly")
    # Inside the root the link leads nowhere: as an image without /etc/passwd, a uid stays itself.
    assert users.resolve_in(rootfs, "31337") == {"uid": 31337, "gid": 0}


def test_a_symlink_into_the_rootfs_is_followed_inside_it(rootfs):
    passwd = os.path.join(rootfs, "etc", "passwd")
    os.rename(passwd, os.path.join(rootfs, "etc", "passwd.real"))
    os.symlink("/etc/passwd.real", passwd)
    assert users.resolve_in(rootfs, "imguser") == {"uid": 4242, "gid": 4343, "additionalGids": [5151, 5252]}


def test_a_huge_passwd_is_refused_naming_user(rootfs):
    with open(os.path.join(rootfs, "etc", "passwd"), "ab") as handle:
        handle.truncate(users.MAX_FILE_SIZE + 1)
    with pytest.raises(OCIError, match=r"^user: /etc/passwd in the image is larger than"):
        users.resolve_in(rootfs, "imguser")


@pytest.mark.parametrize("kind", ["fifo", "directory"])
def test_a_passwd_that_is_no_regular_file_is_refused_without_blocking(rootfs, kind):
    passwd = os.path.join(rootfs, "etc", "passwd")
    os.unlink(passwd)
    os.mkfifo(passwd) if kind == "fifo" else os.mkdir(passwd)
    with pytest.raises(OCIError, match=r"^user: /etc/passwd in the image is not a regular file"):
        users.resolve_in(rootfs, "imguser")


def test_binary_junk_and_malformed_lines_are_skipped(rootfs):
    junk = (b"\xff\xfe\x00garbage\n" + os.urandom(2048).replace(b"\n", b"") + b"\n"
            b"short:x:1\n" b"baduid:x:notanumber:1::/:/bin/sh\n" b"nul\x00name:x:5:5::/:/bin/sh\n"
            b"huge:x:99999999999999:1::/:/bin/sh\n" b"# comment:x:6:6::/:/bin/sh\n"
            b":x:7:7::/:/bin/sh\n" b"good:x:8080:8181::/:/bin/sh\n")
    with open(os.path.join(rootfs, "etc", "passwd"), "wb") as handle:
        handle.write(junk)
    with open(os.path.join(rootfs, "etc", "group"), "ab") as handle:
        handle.write(b"\xff\xfe:x:9:good\nbroken:x:zz:good\nfine:x:8282:other,good\n")
    assert users.resolve_in(rootfs, "good") == {"uid": 8080, "gid": 8181, "additionalGids": [8282]}
    for name in ("short", "baduid", "huge", "# comment"):
        with pytest.raises(OCIError, match="no user"):
            users.resolve_in(rootfs, name)


@pytest.mark.parametrize("bad", ["", ":", "app:", ":app", "99999999999:1"])
def test_malformed_user_values_are_errors_naming_user(rootfs, bad):
    with pytest.raises(OCIError, match=r"^user: "):
        users.resolve_in(rootfs, bad)


def test_an_image_without_etc_files_takes_numbers_only(rootfs):
    os.unlink(os.path.join(rootfs, "etc", "passwd"))
    os.unlink(os.path.join(rootfs, "etc", "group"))
    assert users.resolve_in(rootfs, "1234:5678") == {"uid": 1234, "gid": 5678}
    with pytest.raises(OCIError, match="no user 'app'"):
        users.resolve_in(rootfs, "app")


def test_check_mode_before_the_first_unpack_reports_an_unresolved_name_without_failing(scratch, rootfs):
    path = os.path.join(scratch, "bundle")
    result = bundle_mod.ensure(path, {"user": "www-data"}, source=rootfs, copy=True, check_mode=True)
    assert result["changed"] and not os.path.exists(path)


def test_env_file_reaches_the_container_under_env(scratch, rootfs, ocirt):
    """oci_bundle's env_file on a real container: the file's variables, env's winning (same test file: same bundle)."""
    env_path = os.path.join(scratch, "app.env")
    write_file(env_path, "# settings\nFROM_FILE=a b\nBOTH=file\n")
    path = os.path.join(scratch, "bundle")
    bundle_mod.ensure(path, {"args": ["env"], "env_file": [env_path], "env": {"BOTH": "option"}}, source=rootfs,
                      copy=True)
    lines = run_ok(ocirt, path).splitlines()
    assert "FROM_FILE=a b" in lines and "BOTH=option" in lines and "BOTH=file" not in lines
    # A changed file is a changed config.json: oci_container_state then recreates the container.
    write_file(env_path, "FROM_FILE=changed\n")
    again = bundle_mod.ensure(path, {"args": ["env"], "env_file": [env_path], "env": {"BOTH": "option"}})
    assert again["changed"] and "FROM_FILE=changed" in run_ok(ocirt, path).splitlines()
