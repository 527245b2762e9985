"""image with layouts written by real tools: umoci builds a busybox image, skopeo copies it.

The layout is umoci's (init, new, unpack, repack, config), a second tag adds
a layer of real umoci whiteouts, and skopeo copies the image to other
layouts, once recompressed with zstd. Each unpacks to the busybox tree, which
runs under chroot.
"""
import hashlib
import json
import os
import shutil
import stat
import subprocess

import pytest

import busybox_bundle  # tools/, on sys.path through tests/conftest.py
from ansible_collections.daemonless.oci.plugins.module_utils._bundle import oci_layout
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.errors import OCIError

UMOCI = shutil.which("umoci")
SKOPEO = shutil.which("skopeo")
CHROOT = shutil.which("chroot")

pytestmark = [
    pytest.mark.skipif(UMOCI is None, reason="umoci is not installed (Debian package umoci)"),
    pytest.mark.skipif(os.geteuid() != 0, reason="unpacking images with their owners and chroot need root"),
]
needs_skopeo = pytest.mark.skipif(SKOPEO is None, reason="skopeo is not installed (Debian package skopeo)")
needs_zstd = pytest.mark.skipif(shutil.which("zstd") is None, reason="the zstd command is not installed")


def run(*argv):
    return subprocess.run([str(a) for a in argv], check=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True).stdout


def describe(root):
    """Type, mode, owner, mtime, content or link target, device numbers per path; the root's own times left out."""
    tree = {}
    for dirpath, dirnames, filenames in os.walk(root):
        paths = [dirpath] if dirpath == root else []
        for path in paths + [os.path.join(dirpath, n) for n in dirnames + filenames]:
            st = os.lstat(path)
            rel = os.path.relpath(path, root)
            info = {"type": stat.S_IFMT(st.st_mode), "uid": st.st_uid, "gid": st.st_gid}
            if rel != ".":
                info["mtime"] = st.st_mtime
            if stat.S_ISLNK(st.st_mode):
                info["target"] = os.readlink(path)
            else:
                info["mode"] = oct(stat.S_IMODE(st.st_mode))
            if stat.S_ISREG(st.st_mode):
                with open(path, "rb") as handle:
                    info["sha256"] = hashlib.sha256(handle.read()).hexdigest()
            tree[rel] = info
    return tree


def same_tree(unpacked, source):
    """UNPACKED is SOURCE, mtimes within a second: umoci's tar headers round times to whole seconds."""
    got, want = describe(unpacked), describe(source)
    assert sorted(got) == sorted(want)
    for rel in want:
        got_time, want_time = got[rel].pop("mtime", None), want[rel].pop("mtime", None)
        assert got[rel] == want[rel], rel
        if want_time is not None:
            assert abs(got_time - want_time) <= 1, (rel, got_time, want_time)


def tags(layout):
    with open(os.path.join(layout, "index.json")) as handle:
        index = json.load(handle)
    return dict((m.get("annotations", {}).get("org.opencontainers.image.ref.name"), m["digest"])
                for m in index["manifests"])


@pytest.fixture(scope="module")
def busybox_layout(tmp_path_factory):
    """An umoci layout: tag latest = the busybox rootfs with a config; tag trimmed = a second layer deleting things."""
    base = str(tmp_path_factory.mktemp("image-tools"))
    src = busybox_bundle.build_rootfs(os.path.join(base, "src"))
    layout = os.path.join(base, "layout")
    run(UMOCI, "init", "--layout", layout)
    run(UMOCI, "new", "--image", layout + ":latest")
    bundle = os.path.join(base, "bundle")
    run(UMOCI, "unpack", "--image", layout + ":latest", bundle)
    run("cp", "-a", src + "/.", os.path.join(bundle, "rootfs"))
    run(UMOCI, "repack", "--image", layout + ":latest", bundle)
    run(UMOCI, "config", "--image", layout + ":latest", "--config.entrypoint", "/bin/sh",
        "--config.cmd", "-c", "--config.cmd", "echo hello", "--config.env", "FOO=bar",
        "--config.workingdir", "/home/app", "--config.user", "1000:1000")
    trimmed = os.path.join(base, "trimmed")
    run(UMOCI, "unpack", "--image", layout + ":latest", trimmed)
    os.unlink(os.path.join(trimmed, "rootfs", "etc", "hostname"))
    shutil.rmtree(os.path.join(trimmed, "rootfs", "usr", "bin"))
    with open(os.path.join(trimmed, "rootfs", "etc", "added"), "w") as handle:
        handle.write("added\n")
    run(UMOCI, "repack", "--image", layout + ":trimmed", trimmed)
    return {"src": src, "layout": layout, "base": base}


def test_umoci_layout_unpacks_and_runs(busybox_layout, tmp_path):
    layout = busybox_layout["layout"]
    dest = str(tmp_path / "rootfs")
    result = oci_layout.unpack_oci_layout(layout, dest, reference="latest")
    assert result["digest"] == tags(layout)["latest"]
    assert result["config"]["Entrypoint"] == ["/bin/sh"]
    assert result["config"]["Cmd"] == ["-c", "echo hello"]
    assert "FOO=bar" in result["config"]["Env"]
    assert result["config"]["WorkingDir"] == "/home/app"
    assert result["config"]["User"] == "1000:1000"
    assert result["platform"]["os"] == "linux"
    assert all(layer.startswith("sha256:") for layer in result["layers"]) and result["layers"]
    assert os.path.isfile(os.path.join(dest, "bin", "busybox"))
    same_tree(dest, busybox_layout["src"])
    if CHROOT is None:
        pytest.skip("no chroot command")
    subprocess.run([CHROOT, dest, "/bin/busybox", "true"], check=True)
    out = subprocess.run([CHROOT, dest] + result["config"]["Entrypoint"] + result["config"]["Cmd"], check=True,
                         stdout=subprocess.PIPE, universal_newlines=True).stdout
    assert out == "hello\n"


def test_umoci_whiteouts(busybox_layout, tmp_path):
    layout = busybox_layout["layout"]
    with pytest.raises(OCIError, match="choose one by tag or digest: latest, trimmed|trimmed, latest"):
        oci_layout.unpack_oci_layout(layout, str(tmp_path / "ambiguous"))
    dest = str(tmp_path / "rootfs")
    result = oci_layout.unpack_oci_layout(layout, dest, reference="trimmed")
    assert result["digest"] == tags(layout)["trimmed"]
    assert len(result["layers"]) == 2
    assert not os.path.lexists(os.path.join(dest, "etc", "hostname"))
    assert not os.path.lexists(os.path.join(dest, "usr", "bin"))
    assert os.path.isdir(os.path.join(dest, "usr"))
    with open(os.path.join(dest, "etc", "added")) as handle:
        assert handle.read() == "added\n"
    if CHROOT is not None:
        subprocess.run([CHROOT, dest, "/bin/busybox", "true"], check=True)


@needs_skopeo
@pytest.mark.parametrize("compression", ["gzip", "zstd"])
def test_skopeo_copy_unpacks_to_the_same_tree(busybox_layout, tmp_path, compression):
    if compression == "zstd" and shutil.which("zstd") is None:
        pytest.skip("the zstd command is not installed (Debian package zstd)")
    layout = busybox_layout["layout"]
    copy = str(tmp_path / "copy")
    argv = [SKOPEO, "--insecure-policy", "copy", "--quiet"]
    if compression == "zstd":
        argv += ["--dest-compress-format", "zstd"]
    run(*(argv + ["oci:%s:latest" % layout, "oci:%s:latest" % copy]))
    original = oci_layout.unpack_oci_layout(layout, str(tmp_path / "original"), reference="latest")
    copied = oci_layout.unpack_oci_layout(copy, str(tmp_path / "copied"), reference="latest")
    assert copied["config"] == original["config"]
    if compression == "zstd":
        with open(os.path.join(copy, "blobs", *copied["digest"].split(":"))) as handle:
            media_types = [layer["mediaType"] for layer in json.load(handle)["layers"]]
        assert media_types and all(m.endswith("+zstd") for m in media_types), media_types
    assert describe(str(tmp_path / "copied")) == describe(str(tmp_path / "original"))
    if CHROOT is not None:
        subprocess.run([CHROOT, str(tmp_path / "copied"), "/bin/busybox", "true"], check=True)
