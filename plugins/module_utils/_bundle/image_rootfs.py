# -*- coding: utf-8 -*-
# Copyright: daemonless.oci contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A bundle's root filesystem from an image in the store (oci_bundle's `image` option).

Each layer of the image is unpacked once into the store
(IMAGE_ROOT/layers/sha256/<diff_id hex>, by overlay_layers.OverlayLayerWriter,
its diff_id checked), shared by every bundle of every image that has it. The
bundle gets an empty `rootfs` mount point, its own `overlay/upper` and
`overlay/work`, and the runtime annotation org.daemonless.oci.rootfs.overlay
listing the layers: the runtime mounts the overlay inside the container's
mount namespace at create. Where the kernel has no overlayfs, the layers are
copied into `rootfs` instead, with a warning.

The unpacker (tar, the writer, dataclasses and typing with it: about 25 ms
of imports) is imported by the functions that unpack: a bundle from layers
the pull already unpacked, and oci_image finding its image present, never
load it.
"""
import json
import os
import shutil

from ansible_collections.daemonless.oci.plugins.module_utils._image import reference as references
from ansible_collections.daemonless.oci.plugins.module_utils._image.store import Store
from ansible_collections.daemonless.oci.plugins.module_utils._runtime import overlay
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.errors import OCIError

UPPER = overlay.BUNDLE_UPPER
WORK = overlay.BUNDLE_WORK
OVERLAY_DIR = os.path.dirname(UPPER)
COPY_WARNING = ("overlayfs is not available on this host: the image's layers were copied into the bundle's rootfs "
                "(a full copy per bundle)")


def overlay_supported():
    try:
        with open("/proc/filesystems") as handle:
            return any(line.split()[-1:] == ["overlay"] for line in handle)
    except OSError:
        return False


def lookup(image, image_root):
    """(canonical name, store, record) of IMAGE, which must be in the store."""
    name = references.parse(image, field="image").name
    store = Store(image_root)
    record = store.lookup(name) if os.path.isdir(store.root) else None
    if record is None:
        raise OCIError("image: %s is not in the image store %s; pull it first (daemonless.oci.oci_image)"
                       % (name, store.root))
    return name, store, record


def _apply_layer(store, layer, writer, label):
    from ansible_collections.daemonless.oci.plugins.module_utils._bundle.tarball import (
        HashingReader, apply_tar, decompressed, drain)
    from ansible_collections.daemonless.oci.plugins.module_utils._bundle.writer import open_regular
    with open_regular(store.blob_path(layer["digest"]), label) as blob:
        with decompressed(blob, label) as (_compression, reader):
            hashed = HashingReader(reader)
            writer.begin_layer()
            apply_tar(hashed, writer, label, layer=True)
            drain(hashed, label)
    if "sha256:" + hashed.hash.hexdigest() != layer["diff_id"]:
        raise OCIError("%s: uncompressed content is sha256:%s, the image config's diff_id says %s"
                       % (label, hashed.hash.hexdigest(), layer["diff_id"]))


def unpack_layer(store, layer, label, max_size=None):
    """Unpack LAYER (an image record's entry) into the store unless it is there; its warnings.

    The caller holds the store's lock. The tree is built in tmp/ and renamed into layers/ only
    once it is complete and its content hashed to the diff_id: a failure leaves no layer."""
    if store.has_layer(layer["diff_id"]):
        return []
    if not store.has_blob(layer["digest"]):
        raise OCIError("%s: its blob is not in the store; pull the image again" % label)
    import tempfile
    from ansible_collections.daemonless.oci.plugins.module_utils._bundle.overlay_layers import OverlayLayerWriter
    from ansible_collections.daemonless.oci.plugins.module_utils._bundle.writer import open_dest
    staging = tempfile.mkdtemp(prefix="layer-", dir=os.path.join(store.root, "tmp"))
    try:
        rootfd = open_dest(os.path.join(staging, "tree"))
        try:
            writer = OverlayLayerWriter(rootfd, max_size)
            _apply_layer(store, layer, writer, label)
            writer.finish()
        finally:
            os.close(rootfd)
        os.rename(os.path.join(staging, "tree"), store.layer_path(layer["diff_id"]))
        return writer.warnings.render()
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def pull_unpacker():
    """What oci_image passes to pull.ensure_present as `unpack`: the layers unpacked as they
    arrive, when containers will stack them (overlayfs); None where they would be copied."""
    return unpack_layer if overlay_supported() else None


def unpack_layers(store, name, record, max_size=None):
    """Unpack every layer of RECORD the store lacks (under its lock); the warnings of those unpacked."""
    warnings = []
    if all(store.has_layer(layer["diff_id"]) for layer in record["layers"]):
        return warnings  # unpacked by the pull: no lock to wait for
    with store.locked():
        for position, layer in enumerate(record["layers"]):
            label = "image %s layer %s (layers[%d])" % (name, layer["digest"], position)
            warnings.extend(unpack_layer(store, layer, label, max_size))
    return warnings


def copy_layers(store, name, record, dest, max_size=None):
    """The copy fallback: every layer applied in order into DEST (the bundle's own rootfs)."""
    from ansible_collections.daemonless.oci.plugins.module_utils._bundle.writer import Writer, open_dest
    rootfd = open_dest(dest)
    try:
        writer = Writer(rootfd, max_size)
        for position, layer in enumerate(record["layers"]):
            _apply_layer(store, layer, writer, "image %s layer %s (layers[%d])" % (name, layer["digest"], position))
        writer.finish()
    finally:
        os.close(rootfd)
    return writer.warnings.render()


def overlay_annotation(store, record):
    """The runtime annotation's value: the layers topmost first (overlayfs's lowerdir order)."""
    lower = [store.layer_path(layer["diff_id"]) for layer in reversed(record["layers"])]
    return json.dumps({"lower": lower, "upper": UPPER, "work": WORK}, sort_keys=True)


def make_overlay_dirs(path):
    """Fresh upper and work directories, and an empty rootfs mount point."""
    overlay.make_writable_layer(path)
    rootfs = os.path.join(path, "rootfs")
    if os.path.lexists(rootfs) and not (os.path.isdir(rootfs) and not os.listdir(rootfs)):
        shutil.rmtree(rootfs)
    os.makedirs(rootfs, 0o755, exist_ok=True)
