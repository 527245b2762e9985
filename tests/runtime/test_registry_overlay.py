"""Overlay root filesystems from hostile images and hostile overlay annotations.

A layer is unpacked alone into the store with the bundle writer's defences:
a layer whose paths climb out, go through a planted symlink or name device
nodes writes nothing outside its directory; whiteouts become overlayfs
whiteouts and an image's own trusted.overlay.* xattrs are dropped. The
runtime refuses an org.daemonless.oci.rootfs.overlay annotation that points
outside an image store, carries overlayfs option separators, or leaves the
bundle, naming the field, and leaves nothing behind.
"""
import json
import os
import stat
import tarfile
import uuid

import pytest

import registry_support as rs
from helpers import assert_create_fails, edit_config, run_ok
from registry_support import FakeRegistry, make_image
from ansible_collections.daemonless.oci.plugins.module_utils._bundle import bundle
from ansible_collections.daemonless.oci.plugins.module_utils._image import pull
from ansible_collections.daemonless.oci.plugins.module_utils._image.store import Store

ANNOTATION = "org.daemonless.oci.rootfs.overlay"


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return rs.Pki(str(tmp_path_factory.mktemp("overlay-pki")))


@pytest.fixture
def registry(pki):
    server = FakeRegistry(pki)
    yield server
    server.stop()


def info(path, kind=tarfile.REGTYPE, data=b"", mode=0o644, **extra):
    member = tarfile.TarInfo(path)
    member.type, member.mode = kind, mode
    if kind == tarfile.REGTYPE:
        member.size = len(data)
    for key, value in extra.items():
        setattr(member, key, value)
    return member, data


def test_a_hostile_layer_stays_in_its_directory_and_whiteouts_work(registry, pki, tmp_path, ocirt):
    image_root = str(tmp_path / "images")
    marker = "escape-%s" % uuid.uuid4().hex[:8]
    lower = [info("bin", tarfile.SYMTYPE, linkname="/bin"), info("gone", data=b"lower\n"),
             info("dir", tarfile.DIRTYPE, mode=0o755), info("dir/old", data=b"old\n"),
             info("keep", data=b"kept\n")]
    evil = info("../../../../../../tmp/" + marker, data=b"out\n")
    upper = [evil, info("/tmp2/" + marker, data=b"abs\n"),
             info("planted", tarfile.SYMTYPE, linkname="/tmp"), info("planted/" + marker + "-via-link", data=b"x\n"),
             info("dev/sda", tarfile.BLKTYPE, devmajor=8, devminor=0, mode=0o666),
             info("fakewhiteout", tarfile.CHRTYPE, devmajor=0, devminor=0),
             info(".wh.gone"), info("dir/.wh..wh..opq"), info("dir/new", data=b"new\n"),
             info("redirected", data=b"r\n", pax_headers={"SCHILY.xattr.trusted.overlay.redirect": "/keep"})]
    manifest, blobs = make_image(None, layers=[lower, upper])
    registry.add("1", manifest, blobs)
    name = pull.ensure_present(image_root, registry.host + "/repo:1", ca_path=pki.ca)["image"]["name"]
    path = str(tmp_path / "bundle")
    busybox = os.path.realpath("/bin/busybox")
    options = {"args": [busybox, "sh", "-c", "cd /; echo *; cat dir/new; cat keep; ls dir"],
               "mounts": [{"source": busybox, "destination": busybox, "options": ["ro"]}]}
    result = bundle.ensure(path, options, image=name, image_root=image_root, state_root=ocirt.root)
    assert any("device node" in w for w in result["warnings"])
    assert any("trusted.overlay.redirect" in w for w in result["warnings"])
    for outside in ("/tmp/" + marker, "/tmp2/" + marker, "/tmp/%s-via-link" % marker):
        assert not os.path.lexists(outside), outside
    record = Store(image_root).lookup(name)
    top = Store(image_root).layer_path(record["layers"][1]["diff_id"])
    # In overlayfs form: the whiteout a 0:0 character device, the opaque directory marked by its xattr.
    st = os.lstat(os.path.join(top, "gone"))
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
    assert os.getxattr(os.path.join(top, "dir"), "trusted.overlay.opaque") == b"y"
    assert not os.path.lexists(os.path.join(top, "dev", "sda"))
    assert not os.path.lexists(os.path.join(top, "fakewhiteout"))  # an image's own 0:0 device is no whiteout
    assert "trusted.overlay.redirect" not in os.listxattr(os.path.join(top, "redirected"))
    assert os.path.isfile(os.path.join(top, "tmp", marker))  # the climbing name landed inside
    out = run_ok(ocirt, path).split("\n")
    names = out[0].split()
    assert "gone" not in names and "keep" in names and "tmp" in names
    assert out[1:4] == ["new", "kept", "new"]  # dir/old hidden by the opaque whiteout
    bundle.remove(path, ocirt.root)
    pull.ensure_absent(image_root, name)
    assert os.listdir(os.path.join(image_root, "layers", "sha256")) == []


@pytest.fixture
def store_layer(tmp_path):
    hexpart = "ab" * 32
    layer = tmp_path / "store" / "layers" / "sha256" / hexpart
    layer.mkdir(parents=True)
    return str(layer)


def overlay_bundle(make_bundle, value, namespaces=True):
    path = make_bundle(["true"])
    os.makedirs(os.path.join(path, "overlay", "upper"))
    os.makedirs(os.path.join(path, "overlay", "work"))

    def change(config):
        config.setdefault("annotations", {})[ANNOTATION] = value if isinstance(value, str) else json.dumps(value)
        if not namespaces:
            config["linux"]["namespaces"] = [ns for ns in config["linux"]["namespaces"] if ns["type"] != "mount"]
    edit_config(path, change)
    return path


def test_a_valid_annotation_mounts_the_overlay(make_bundle, ocirt, store_layer):
    with open(os.path.join(store_layer, "from-the-layer"), "w") as handle:
        handle.write("layer\n")
    path = overlay_bundle(make_bundle, {"lower": [store_layer], "upper": "overlay/upper", "work": "overlay/work"})
    busybox = os.path.realpath("/bin/busybox")

    def change(config):
        config["process"]["args"] = [busybox, "sh", "-c", "cat /from-the-layer; echo w > /written"]
        config["mounts"].append({"destination": busybox, "source": busybox, "type": "bind",
                                 "options": ["rbind", "ro"]})
        config["root"]["readonly"] = False
    edit_config(path, change)
    # The bundle's own rootfs (busybox) is only the mount point: the layer is what the container sees.
    assert run_ok(ocirt, path) == "layer\n"
    assert os.path.isfile(os.path.join(path, "overlay", "upper", "written"))
    assert not os.path.exists(os.path.join(store_layer, "written"))


@pytest.mark.parametrize("make_value, needle", [
    (lambda layer: {"lower": ["/etc"], "upper": "overlay/upper", "work": "overlay/work"},
     "is not an image store's layer directory"),
    (lambda layer: {"lower": ["/tmp/a:b/layers/sha256/" + "ab" * 32], "upper": "overlay/upper",
                    "work": "overlay/work"}, "options cannot carry"),
    (lambda layer: {"lower": ["/tmp/a,b/layers/sha256/" + "ab" * 32], "upper": "overlay/upper",
                    "work": "overlay/work"}, "options cannot carry"),
    (lambda layer: {"lower": [layer, "/other/layers/sha256/" + "cd" * 32], "upper": "overlay/upper",
                    "work": "overlay/work"}, "one image store"),
    (lambda layer: {"lower": [layer], "upper": "../../etc", "work": "overlay/work"}, "inside the bundle"),
    (lambda layer: {"lower": [layer], "upper": "/etc", "work": "overlay/work"}, "inside the bundle"),
    (lambda layer: {"lower": [layer], "upper": "overlay/upper", "work": "overlay/work,lowerdir=/"},
     "inside the bundle"),
    (lambda layer: {"lower": [], "upper": "overlay/upper", "work": "overlay/work"}, "1 to 128"),
    (lambda layer: "not json", "not JSON"),
    (lambda layer: {"lower": [layer + "/../../../../../etc/layers/sha256/" + "ab" * 32], "upper": "overlay/upper",
                    "work": "overlay/work"}, "is not an image store's layer directory"),
])
def test_hostile_annotations_are_refused_naming_the_field(make_bundle, ocirt, store_layer, make_value, needle):
    path = overlay_bundle(make_bundle, make_value(store_layer))
    assert_create_fails(ocirt, path, 'annotations["%s"' % ANNOTATION, needle)


def test_a_symlinked_layer_or_upper_dir_is_refused(make_bundle, ocirt, store_layer, tmp_path):
    link = os.path.join(os.path.dirname(store_layer), "cd" * 32)
    os.symlink("/", link)
    path = overlay_bundle(make_bundle, {"lower": [link], "upper": "overlay/upper", "work": "overlay/work"})
    assert_create_fails(ocirt, path, ANNOTATION, "missing or a symbolic link")
    path = overlay_bundle(make_bundle, {"lower": [store_layer], "upper": "overlay/up2", "work": "overlay/work"})
    os.symlink("/etc", os.path.join(path, "overlay", "up2"))
    assert_create_fails(ocirt, path, ANNOTATION, "leaves the bundle")


def test_an_overlay_root_needs_a_mount_namespace(make_bundle, ocirt, store_layer):
    path = overlay_bundle(make_bundle, {"lower": [store_layer], "upper": "overlay/upper", "work": "overlay/work"},
                          namespaces=False)
    assert_create_fails(ocirt, path, ANNOTATION, "needs a new mount namespace")
