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
from helpers import assert_create_fails, edit_config, host_mount_points, run_ok
from registry_support import FakeRegistry, make_image
from ansible_collections.daemonless.oci.plugins.module_utils._bundle import bundle, image_rootfs
from ansible_collections.daemonless.oci.plugins.module_utils._image import pull
from ansible_collections.daemonless.oci.plugins.module_utils._image.store import Store
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.errors import OCIError

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
             info("redirected", data=b"r\n", pax_headers={"SCHILY.xattr.trusted.overlay.redirect": "/keep",
                                                          "SCHILY.xattr.user.overlay.redirect": "/keep"})]
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
    assert os.getxattr(os.path.join(top, "dir"), "user.overlay.opaque") == b"y"  # for a userxattr overlay
    assert not os.path.lexists(os.path.join(top, "dev", "sda"))
    assert not os.path.lexists(os.path.join(top, "fakewhiteout"))  # an image's own 0:0 device is no whiteout
    assert "trusted.overlay.redirect" not in os.listxattr(os.path.join(top, "redirected"))
    assert "user.overlay.redirect" not in os.listxattr(os.path.join(top, "redirected"))
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


USERNS_MAPS = [{"containerID": 0, "hostID": 100000, "size": 65536}]


def userns_image(registry, pki, image_root):
    """An image in the store whose layers exercise ownership, copy-up, a whiteout and an opaque directory."""
    lower = [info("etc", tarfile.DIRTYPE, mode=0o755), info("etc/owned", data=b"lower\n"),
             info("gone", data=b"x\n"), info("dir", tarfile.DIRTYPE, mode=0o755), info("dir/old", data=b"old\n")]
    upper = [info(".wh.gone"), info("dir/.wh..wh..opq"), info("dir/new", data=b"new\n")]
    manifest, blobs = make_image(None, layers=[lower, upper])
    registry.add("1", manifest, blobs)
    return pull.ensure_present(image_root, registry.host + "/repo:1", ca_path=pki.ca,
                               unpack=image_rootfs.pull_unpacker())["image"]["name"]


def userns_bundle(path, name, image_root, script, maps=None):
    busybox = os.path.realpath("/bin/busybox")
    options = {"args": [busybox, "sh", "-c", script],
               "mounts": [{"source": busybox, "destination": busybox, "options": ["ro"]}]}
    bundle.ensure(path, options, image=name, image_root=image_root)

    def change(config):
        config["linux"]["namespaces"].append({"type": "user"})
        config["linux"]["uidMappings"] = maps or USERNS_MAPS
        config["linux"]["gidMappings"] = maps or USERNS_MAPS
    edit_config(path, change)
    # The container's root (host uid 100000) needs search permission down to its rootfs mount point,
    # as for any user-namespaced bundle; the store and the overlay directories stay root's 0700.
    os.chmod(path, 0o711)
    return path


def test_an_overlay_root_in_a_user_namespace_sees_its_files_mapped(registry, pki, tmp_path, ocirt, userns_scratch):
    image_root = str(tmp_path / "images")
    name = userns_image(registry, pki, image_root)
    store = Store(image_root)
    layer = store.layer_path(store.lookup(name)["layers"][0]["diff_id"])
    path = userns_bundle(os.path.join(userns_scratch, "userns-image"), name, image_root,
                         "stat -c '%u:%g' /etc/owned; echo more >> /etc/owned; cat /etc/owned; ls /dir; "
                         "ls /gone 2>/dev/null || echo no-gone; id -u; echo w > /written")
    mounts_before = host_mount_points()
    # Owned by the container's root (not nobody), copied up on write, the opaque directory and the
    # whiteout honoured by the userxattr overlay.
    assert run_ok(ocirt, path).split("\n") == ["0:0", "lower", "more", "new", "no-gone", "0", ""]
    upper = os.path.join(path, "overlay", "upper")
    assert os.stat(os.path.join(upper, "written")).st_uid == 100000
    assert os.stat(os.path.join(upper, "etc", "owned")).st_uid == 100000
    with open(os.path.join(layer, "etc", "owned")) as handle:
        assert handle.read() == "lower\n"  # the shared layer is untouched, and still the host root's
    assert os.stat(os.path.join(layer, "etc", "owned")).st_uid == 0
    assert stat.S_IMODE(os.stat(image_root).st_mode) == 0o700
    assert host_mount_points() == mounts_before  # the idmapped layers lived in the container's namespace only
    bundle.remove(path, ocirt.root)


def test_an_overlay_root_in_a_user_namespace_without_a_root_mapping_is_refused(
        registry, pki, tmp_path, ocirt, userns_scratch):
    image_root = str(tmp_path / "images")
    name = userns_image(registry, pki, image_root)
    path = userns_bundle(os.path.join(userns_scratch, "userns-nomap"), name, image_root, "true",
                         maps=[{"containerID": 1, "hostID": 100001, "size": 65535}])
    assert_create_fails(ocirt, path, "linux.uidMappings", "no mapping for the container's root")
    bundle.remove(path, ocirt.root)


def test_a_pull_with_unpack_stores_each_layer_and_reports_its_warnings(registry, pki, tmp_path):
    image_root = str(tmp_path / "images")
    layers = [[info("a%d" % n, data=os.urandom(2000)), info("dev", tarfile.DIRTYPE, mode=0o755),
               info("dev/null%d" % n, tarfile.CHRTYPE, devmajor=1, devminor=3)] for n in range(6)]
    manifest, blobs = make_image(None, layers=layers)
    registry.add("1", manifest, blobs)
    result = pull.ensure_present(image_root, registry.host + "/repo:1", ca_path=pki.ca,
                                 unpack=image_rootfs.pull_unpacker())
    store = Store(image_root)
    record = store.lookup(result["image"]["name"])
    assert len(record["layers"]) == 6
    for position, layer in enumerate(record["layers"]):
        tree = store.layer_path(layer["diff_id"])
        assert sorted(os.listdir(tree)) == ["a%d" % position, "dev"]
        assert os.listdir(os.path.join(tree, "dev")) == []  # the device node was dropped ...
    assert any("device node" in warning for warning in result["warnings"])  # ... and said so
    downloads = ["download %s" % d for d in [json.loads(manifest)["config"]["digest"]]
                 + [layer["digest"] for layer in record["layers"]] + [record["manifest"]]]
    assert [a for a in result["actions"] if a.startswith("download")] == downloads  # in layer order
    assert os.listdir(os.path.join(image_root, "tmp")) == []


def test_a_layer_whose_content_is_not_its_diff_id_is_refused_by_the_pull_whole(registry, pki, tmp_path):
    image_root = str(tmp_path / "images")
    manifest, blobs = make_image({"etc/a": b"a\n"})
    value = json.loads(manifest)
    config = json.loads(blobs.pop(value["config"]["digest"]))
    config["rootfs"]["diff_ids"] = ["sha256:" + "0" * 64]
    raw = json.dumps(config).encode()
    value["config"]["digest"], value["config"]["size"] = rs.digest_of(raw), len(raw)
    blobs[rs.digest_of(raw)] = raw
    registry.add("1", json.dumps(value).encode(), blobs)
    with pytest.raises(OCIError) as caught:
        pull.ensure_present(image_root, registry.host + "/repo:1", ca_path=pki.ca,
                            unpack=image_rootfs.pull_unpacker())
    assert value["layers"][0]["digest"] in str(caught.value) and "diff_id" in str(caught.value)
    store = Store(image_root)
    # A verified download whose content is refused: no name, no layer, not even the blob.
    assert store.names() == {} and not store.has_blob(value["layers"][0]["digest"])
    assert os.listdir(os.path.join(image_root, "layers", "sha256")) == []
    assert os.listdir(os.path.join(image_root, "tmp")) == []


def test_a_recreate_from_a_changed_config_starts_from_the_image_and_a_restart_keeps_what_was_written(
        registry, pki, tmp_path, state_root, ocirt):
    """As a new podman or docker container: a config change empties the bundle's writable layer; a restart
    (restart: true, or a stopped container started again) keeps it."""
    from ansible_collections.daemonless.oci.plugins.module_utils._ansible import container_state
    from test_restart import params
    image_root = str(tmp_path / "images")
    manifest, blobs = make_image({"etc/from-image": b"image\n"})
    registry.add("1", manifest, blobs)
    name = pull.ensure_present(image_root, registry.host + "/repo:1", ca_path=pki.ca,
                               unpack=image_rootfs.pull_unpacker())["image"]["name"]
    busybox = os.path.realpath("/bin/busybox")
    path = str(tmp_path / "bundle")

    def converge(env, **extra):
        bundle.ensure(path, {"args": [busybox, "sleep", "1000"], "env": env,
                             "mounts": [{"source": busybox, "destination": busybox, "options": ["ro"]}]},
                      image=name, image_root=image_root)
        return container_state.run(params(state_root, "fresh", path, **extra))

    def written():
        return ocirt("exec", "fresh", busybox, "cat", "/written", "/etc/from-image", check=False).stdout

    converge({"A": "1"})
    ocirt("exec", "fresh", busybox, "sh", "-c", "echo mine > /written")
    restarted = converge({"A": "1"}, restart=True)
    assert restarted["actions"][-2:] == ["create: recreate: restart requested", "start"], restarted["actions"]
    assert written() == "mine\nimage\n", "a restart lost what the container wrote"
    changed = converge({"A": "2"})
    assert "process.env changed" in changed["actions"][-2], changed["actions"]
    assert written() == "image\n", "the recreated container still sees what the old one wrote"
    # Only the new container's own mount points are in the upper now.
    assert sorted(os.listdir(os.path.join(path, "overlay", "upper"))) == ["dev", "proc", "sys", "usr"]
    assert converge({"A": "2"})["changed"] is False
    container_state.run(params(state_root, "fresh", path, state="absent"))
    bundle.remove(path, ocirt.root)


def test_check_mode_with_an_image_not_pulled_yet_does_not_show_a_made_up_command(registry, pki, tmp_path):
    """The diff says the command comes from the image (unknown until the pull), not the runtime's default;
    a command the task gives is shown as it is; nothing is written."""
    image_root = str(tmp_path / "images")
    path = str(tmp_path / "bundle")
    planned = bundle.ensure(path, {}, image=registry.host + "/repo:later", image_root=image_root, check_mode=True)
    assert planned["changed"] is True
    assert planned["config"]["process"]["args"] == [bundle.IMAGE_ARGS_UNKNOWN], planned["config"]["process"]
    assert "use image %s/repo:later (not in the store yet)" % registry.host in planned["actions"]
    given = bundle.ensure(path, {"args": ["/bin/httpd", "-f"]}, image=registry.host + "/repo:later",
                          image_root=image_root, check_mode=True)
    assert given["config"]["process"]["args"] == ["/bin/httpd", "-f"]
    assert not os.path.exists(path) and not os.path.exists(image_root)
