# -*- coding: utf-8 -*-
# Copyright: daemonless.oci contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""OCI image layouts: index, manifest and config resolved for a platform, layers checked and applied in order.

Every file of the layout (oci-layout, index.json, blobs/<alg>/<hex>) is
opened relative to the layout directory, one component at a time with
O_NOFOLLOW, and must be a regular file: a blob that is a symbolic link
(possibly to a host file outside the layout) is refused, and a FIFO is
refused rather than waited on (O_NONBLOCK).
"""
import errno
import hashlib
import json
import os
import re

from ansible_collections.daemonless.oci.plugins.module_utils._runtime.errors import OCIError
from ansible_collections.daemonless.oci.plugins.module_utils._bundle.tarball import HashingReader, apply_tar, decompressed, drain
from ansible_collections.daemonless.oci.plugins.module_utils._bundle.writer import CHUNK, Writer, open_dest, open_regular, reason
# host_platform stays importable from here, where it lived first (tests/unit/test_image.py reads it).
from ansible_collections.daemonless.oci.plugins.module_utils._image.platform import (  # noqa: F401  # pylint: disable=unused-import
    host_platform, platform_matches as _platform_matches, platform_text as _platform_text,
    want_platform as _want_platform)

MAX_JSON_BLOB = 32 << 20
MAX_INDEX_DEPTH = 8

MEDIA_INDEX = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
)
MEDIA_MANIFEST = (
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)
MEDIA_CONFIG = (
    "application/vnd.oci.image.config.v1+json",
    "application/vnd.docker.container.image.v1+json",
)
MEDIA_LAYER = (
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
)
REF_NAME = "org.opencontainers.image.ref.name"
CONTAINERD_NAME = "io.containerd.image.name"

_DIGEST_HEX = {"sha256": re.compile(r"^[a-f0-9]{64}$"), "sha512": re.compile(r"^[a-f0-9]{128}$")}


def _check_descriptor(desc, where):
    if not isinstance(desc, dict):
        raise OCIError("%s: not a descriptor object" % where)
    digest = desc.get("digest")
    algorithm, sep, hexpart = digest.partition(":") if isinstance(digest, str) else ("", "", "")
    pattern = _DIGEST_HEX.get(algorithm)
    # Also what keeps a digest like "sha256:../../x" from naming a file outside blobs/.
    if pattern is None or not pattern.match(hexpart):
        raise OCIError("%s.digest: %r is not a sha256 or sha512 digest" % (where, digest))
    size = desc.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise OCIError("%s.size: %r is not a byte count" % (where, size))


class _Layout(object):
    """An OCI image layout directory: oci-layout, index.json, blobs/<alg>/<hex>."""

    def __init__(self, path):
        self.path = path
        try:
            self.fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            raise OCIError("OCI layout %s: %s" % (path, reason(exc)))
        try:
            marker = self._read_json_file("oci-layout")
            if not isinstance(marker, dict) or not str(marker.get("imageLayoutVersion", "")).startswith("1."):
                raise OCIError("OCI layout %s: oci-layout has no imageLayoutVersion 1.x" % path)
            self.index = self._read_json_file("index.json")
            self.manifests = self._manifest_list(self.index, "index.json")
        except BaseException:
            self.close()
            raise

    def close(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def open_file(self, parts, label):
        """A reader on the regular file PARTS (path components) inside the layout, no link followed."""
        parent = os.dup(self.fd)
        try:
            for part in parts[:-1]:
                try:
                    child = os.open(part, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
                except OSError as exc:
                    if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                        raise OCIError("%s: %s is a symbolic link or not a directory; blobs are read only from "
                                       "inside the layout" % (label, part))
                    raise OCIError("%s: %s" % (label, reason(exc)))
                os.close(parent)
                parent = child
            return open_regular(parts[-1], label, dir_fd=parent, follow=False)
        finally:
            os.close(parent)

    def _read_json_file(self, name):
        with self.open_file([name], "OCI layout %s: %s" % (self.path, name)) as handle:
            try:
                data = handle.read(MAX_JSON_BLOB + 1)
            except OSError as exc:
                raise OCIError("OCI layout %s: %s: %s" % (self.path, name, reason(exc)))
        return self._parse(data, name)

    def _parse(self, data, where):
        if len(data) > MAX_JSON_BLOB:
            raise OCIError("OCI layout %s: %s: larger than %d bytes" % (self.path, where, MAX_JSON_BLOB))
        try:
            return json.loads(data.decode("utf-8"))
        except ValueError as exc:
            raise OCIError("OCI layout %s: %s: invalid JSON: %s" % (self.path, where, exc))

    def _manifest_list(self, index, where):
        manifests = index.get("manifests") if isinstance(index, dict) else None
        if not isinstance(manifests, list):
            raise OCIError("OCI layout %s: %s: no manifests list" % (self.path, where))
        for position, desc in enumerate(manifests):
            _check_descriptor(desc, "%s manifests[%d]" % (where, position))
        return manifests

    def open_blob(self, desc, where):
        """The blob DESC names, opened and checked against its size and digest, at offset 0."""
        _check_descriptor(desc, where)
        digest, size = desc["digest"], desc["size"]
        algorithm, hexpart = digest.split(":", 1)
        handle = self.open_file(["blobs", algorithm, hexpart], "OCI layout %s: blob %s (%s)" % (self.path, digest, where))
        try:
            st = os.fstat(handle.fileno())
            if st.st_size != size:
                raise OCIError("OCI layout %s: blob %s (%s): %d bytes, its descriptor says %d"
                               % (self.path, digest, where, st.st_size, size))
            hasher = hashlib.new(algorithm)
            total = 0
            while True:
                chunk = handle.read(CHUNK)
                if not chunk:
                    break
                total += len(chunk)
                hasher.update(chunk)
            if total != size or hasher.hexdigest() != hexpart:
                raise OCIError("OCI layout %s: blob %s (%s): content does not match its digest (%d bytes hashing "
                               "to %s:%s)" % (self.path, digest, where, total, algorithm, hasher.hexdigest()))
            handle.seek(0)
        except BaseException:
            handle.close()
            raise
        return handle

    def read_json_blob(self, desc, where):
        if desc.get("size", 0) > MAX_JSON_BLOB:
            raise OCIError("OCI layout %s: blob %s (%s): larger than %d bytes"
                           % (self.path, desc.get("digest"), where, MAX_JSON_BLOB))
        with self.open_blob(desc, where) as handle:
            data = handle.read()
        value = self._parse(data, "blob %s (%s)" % (desc["digest"], where))
        if not isinstance(value, dict):
            raise OCIError("OCI layout %s: blob %s (%s): not a JSON object" % (self.path, desc["digest"], where))
        return value

    # -- choosing the manifest

    def select(self, reference, platform):
        """(descriptor, manifest) for REFERENCE (tag, digest or None) and PLATFORM."""
        where = "index.json"
        if reference is None:
            if len(self.manifests) != 1:
                raise OCIError("OCI layout %s: %d images; choose one by tag or digest: %s"
                               % (self.path, len(self.manifests), self._available()))
            desc, where = self.manifests[0], "index.json manifests[0]"
        elif _looks_like_digest(reference):
            found = self._find_digest(self.manifests, reference, where, 0)
            if found is None:
                raise OCIError("OCI layout %s: no manifest with digest %s; available: %s"
                               % (self.path, reference, self._available()))
            desc, where = found
        else:
            matches = [(position, desc) for position, desc in enumerate(self.manifests)
                       if _annotation(desc, REF_NAME) == reference or _annotation(desc, CONTAINERD_NAME) == reference]
            if not matches:
                raise OCIError("OCI layout %s: no image tagged %r; available: %s"
                               % (self.path, reference, self._available()))
            if len(set(desc["digest"] for position, desc in matches)) > 1:
                # Several entries for one tag: per-platform manifests listed directly in index.json.
                want = _want_platform(platform)
                matches = [item for item in matches if _platform_matches(want, item[1].get("platform"))]
                if len(matches) != 1:
                    raise OCIError("OCI layout %s: tag %r names several manifests, %d of them for %s"
                                   % (self.path, reference, len(matches), _platform_text(want)))
            desc, where = matches[0][1], "index.json manifests[%d]" % matches[0][0]
        return self._resolve(desc, where, platform)

    def _available(self):
        names = []
        for desc in self.manifests:
            name = _annotation(desc, REF_NAME) or _annotation(desc, CONTAINERD_NAME)
            names.append(name if name else desc["digest"] + " (untagged)")
        return ", ".join(names) if names else "none"

    def _find_digest(self, manifests, digest, where, depth):
        for position, desc in enumerate(manifests):
            if desc["digest"] == digest:
                return desc, "%s manifests[%d]" % (where, position)
        if depth >= MAX_INDEX_DEPTH:
            return None
        for position, desc in enumerate(manifests):
            if desc.get("mediaType") in MEDIA_INDEX:
                inner_where = "%s manifests[%d]" % (where, position)
                inner = self.read_json_blob(desc, inner_where)
                found = self._find_digest(self._manifest_list(inner, "index " + desc["digest"]), digest,
                                          "index " + desc["digest"], depth + 1)
                if found is not None:
                    return found
        return None

    def _resolve(self, desc, where, platform):
        """Follow image indexes down to an image manifest, choosing by platform."""
        for depth in range(MAX_INDEX_DEPTH + 1):
            blob = self.read_json_blob(desc, where)
            media = desc.get("mediaType") or blob.get("mediaType")
            if media in MEDIA_INDEX or (media is None and "manifests" in blob):
                label = "index " + desc["digest"]
                manifests = self._manifest_list(blob, label)
                want = _want_platform(platform)
                chosen = [(position, item) for position, item in enumerate(manifests)
                          if _platform_matches(want, item.get("platform"))]
                if not chosen:
                    offered = ", ".join(_platform_text(item.get("platform")) for item in manifests) or "none"
                    raise OCIError("OCI layout %s: %s (%s) has no manifest for platform %s; it has: %s"
                                   % (self.path, label, where, _platform_text(want), offered))
                desc, where = chosen[0][1], "%s manifests[%d]" % (label, chosen[0][0])
                continue
            if media in MEDIA_MANIFEST or (media is None and "layers" in blob):
                return desc, blob, where
            raise OCIError("OCI layout %s: %s (%s): media type %s is not an image manifest or index"
                           % (self.path, desc["digest"], where, media))
        raise OCIError("OCI layout %s: image indexes nested deeper than %d" % (self.path, MAX_INDEX_DEPTH))


def _looks_like_digest(reference):
    algorithm = reference.partition(":")[0]
    return algorithm in _DIGEST_HEX and ":" in reference


def _annotation(desc, key):
    annotations = desc.get("annotations")
    if isinstance(annotations, dict):
        value = annotations.get(key)
        return value if isinstance(value, str) else None
    return None


def index_digest(layout_dir):
    """sha256 of LAYOUT_DIR's index.json, read as the layout's files are (what identifies its images)."""
    with _Layout(layout_dir) as layout:
        with layout.open_file(["index.json"], "OCI layout %s: index.json" % layout_dir) as handle:
            digest = hashlib.sha256()
            for chunk in iter(lambda: handle.read(CHUNK), b""):
                digest.update(chunk)
    return "sha256:" + digest.hexdigest()


def unpack_oci_layout(layout_dir, dest, reference=None, platform=None, max_size=None):
    """Unpack an image of the OCI layout LAYOUT_DIR into DEST, layer by layer.

    REFERENCE: a tag (org.opencontainers.image.ref.name), a manifest digest,
    or None when the layout holds one image. PLATFORM: "os/arch[/variant]"
    or a dict (os, architecture, variant); default the host's.
    Returns dict(digest=<manifest digest>, config=<the image config's
    "config" object>, layers=[digests], config_digest, platform, warnings).
    DEST is created, or must be empty. MAX_SIZE: bytes the unpacked tree may
    take, all layers together (writer.SizeLimit; default the free space less 5 %).
    """
    with _Layout(layout_dir) as layout:
        return _unpack(layout, layout_dir, dest, reference, platform, max_size)


def _unpack(layout, layout_dir, dest, reference, platform, max_size):
    desc, manifest, where = layout.select(reference, platform)
    label = "manifest " + desc["digest"]
    config_desc = manifest.get("config")
    _check_descriptor(config_desc, label + " config")
    if config_desc.get("mediaType") not in MEDIA_CONFIG:
        raise OCIError("OCI layout %s: %s: config media type %s: not a container image"
                       % (layout_dir, label, config_desc.get("mediaType")))
    config = layout.read_json_blob(config_desc, label + " config")
    layers = manifest.get("layers")
    if not isinstance(layers, list):
        raise OCIError("OCI layout %s: %s: no layers list" % (layout_dir, label))
    for position, layer in enumerate(layers):
        _check_descriptor(layer, "%s layers[%d]" % (label, position))
        if layer.get("mediaType") not in MEDIA_LAYER:
            raise OCIError("OCI layout %s: %s layers[%d] (%s): media type %s is not a layer this runtime unpacks"
                           % (layout_dir, label, position, layer["digest"], layer.get("mediaType")))
    rootfs = config.get("rootfs") if isinstance(config.get("rootfs"), dict) else {}
    diff_ids = rootfs.get("diff_ids")
    if diff_ids is not None and (not isinstance(diff_ids, list) or len(diff_ids) != len(layers)):
        raise OCIError("OCI layout %s: config %s: rootfs.diff_ids does not list one digest per layer (%d layers)"
                       % (layout_dir, config_desc["digest"], len(layers)))

    rootfd = open_dest(dest)
    try:
        writer = Writer(rootfd, max_size)
        for position, layer in enumerate(layers):
            layer_label = "layer %s (%s layers[%d])" % (layer["digest"], label, position)
            with layout.open_blob(layer, "%s layers[%d]" % (label, position)) as blob:
                with decompressed(blob, layer_label) as (compression, reader):
                    hashed = HashingReader(reader)
                    writer.begin_layer()
                    apply_tar(hashed, writer, layer_label, layer=True)
                    drain(hashed, layer_label)
            if diff_ids is not None and diff_ids[position] != "sha256:" + hashed.hash.hexdigest():
                raise OCIError("%s: uncompressed content is sha256:%s, config rootfs.diff_ids[%d] says %s"
                               % (layer_label, hashed.hash.hexdigest(), position, diff_ids[position]))
        writer.finish()
    finally:
        os.close(rootfd)
    image_config = config.get("config")
    image_platform = dict((key, config[key]) for key in ("os", "architecture", "variant") if config.get(key))
    return dict(digest=desc["digest"], config=image_config if isinstance(image_config, dict) else {},
                layers=[layer["digest"] for layer in layers], config_digest=config_desc["digest"],
                platform=image_platform, warnings=writer.warnings.render())
