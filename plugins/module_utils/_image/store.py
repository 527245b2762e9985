# -*- coding: utf-8 -*-
# Copyright: daemonless.oci contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The image store on a host: content-addressed blobs, unpacked layers, names, and who uses what.

    IMAGE_ROOT/
      lock                      flock'ed exclusively by whoever changes the store
      repositories.json         name -> the image record (digests, layers, platform, config)
      blobs/sha256/<hex>        manifests, configs, compressed layers; admitted only once their digest matched
      layers/sha256/<hex>/      a layer unpacked alone (named by its diff_id), an overlayfs lower directory
      users/<hash>.json         one per bundle built from an image: what it needs kept
      tmp/                      downloads and unpacks in flight

Blobs and layers are shared: a layer in two images is stored once. A name
removed (oci_image state=absent) leaves its blobs and layers to the
collection, which keeps everything a name or a user still references. Users
are recorded by the bundle writer (_bundle/bundle.py) when it builds a
bundle from an image and dropped when the bundle goes; a record whose
bundle directory is gone is stale and ignored.
"""
import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import tempfile

from ansible_collections.daemonless.oci.plugins.module_utils._image.defaults import DEFAULT_IMAGE_ROOT
from ansible_collections.daemonless.oci.plugins.module_utils._runtime import atomicfile
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.errors import OCIError

REPOSITORIES = "repositories.json"
_HEX = re.compile(r"^[a-f0-9]{64}$")


def digest_hex(digest, field="digest"):
    """The hex part of a sha256 DIGEST, which must be well-formed (it becomes a file name)."""
    algorithm, _sep, hexpart = digest.partition(":") if isinstance(digest, str) else ("", "", "")
    if algorithm != "sha256" or not _HEX.match(hexpart):
        raise OCIError("%s: %r is not a sha256 digest" % (field, digest))
    return hexpart


class Store(object):
    """The store at ROOT (created 0700 on first write)."""

    def __init__(self, root=DEFAULT_IMAGE_ROOT):
        if not isinstance(root, str) or not os.path.isabs(root):
            raise OCIError("image_root: %r must be an absolute path" % (root,))
        self.root = os.path.normpath(root)

    # -- paths

    def blob_path(self, digest):
        return os.path.join(self.root, "blobs", "sha256", digest_hex(digest))

    def layer_path(self, diff_id):
        return os.path.join(self.root, "layers", "sha256", digest_hex(diff_id, "diff_id"))

    def has_blob(self, digest, size=None):
        try:
            st = os.lstat(self.blob_path(digest))
        except FileNotFoundError:
            return False
        return st.st_size == size if size is not None else True

    def has_layer(self, diff_id):
        return os.path.isdir(self.layer_path(diff_id))

    # -- writing

    def ensure_dirs(self):
        for sub in ("", "blobs/sha256", "layers/sha256", "users", "tmp"):
            path = os.path.join(self.root, sub) if sub else self.root
            os.makedirs(path, 0o700, exist_ok=True)
        os.chmod(self.root, 0o700)

    @contextlib.contextmanager
    def locked(self):
        """Exclusive use of the store: two plays pulling at once take turns, neither sees a half-written name."""
        try:
            self.ensure_dirs()
            fd = os.open(os.path.join(self.root, "lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        except OSError as exc:
            raise OCIError("image_root %s: %s" % (self.root, exc.strerror or exc))
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield self
        finally:
            os.close(fd)

    @contextlib.contextmanager
    def new_blob(self, digest):
        """A temporary file in the store for blob DIGEST; admit() it once its content is verified."""
        digest_hex(digest)
        fd, tmp = tempfile.mkstemp(prefix="blob-", dir=os.path.join(self.root, "tmp"))
        os.close(fd)
        handle = open(tmp, "w+b")  # by name: admit() renames handle.name
        try:
            yield handle
        finally:
            handle.close()
            if os.path.lexists(tmp):
                os.unlink(tmp)

    def admit(self, handle, digest, hashed=None):
        """Move HANDLE's file (from new_blob) to blobs/ once its content hashes to DIGEST.

        HASHED is the digest its writer computed while writing it (the registry client hashes
        every chunk it writes): reading the file back to hash it again cost a second pass over
        every layer. Without HASHED the file is read and hashed here.

        Each blob is fsync'ed by itself (in its download's thread, in parallel): one syncfs for
        the whole pull was measured slower, since it waits for every other writer's dirty data on
        the filesystem too."""
        handle.flush()
        os.fsync(handle.fileno())
        if hashed is None:
            handle.seek(0)
            hasher = hashlib.sha256()
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                hasher.update(chunk)
            hashed = "sha256:" + hasher.hexdigest()
        if hashed != digest:
            raise OCIError("blob %s: content hashes to %s; not stored" % (digest, hashed))
        os.chmod(handle.name, 0o600)
        os.rename(handle.name, self.blob_path(digest))

    def put_bytes(self, digest, data):
        """Store DATA (a manifest or config already hashed by its reader) as blob DIGEST."""
        if self.has_blob(digest):
            return False
        with self.new_blob(digest) as handle:
            handle.write(data)
            self.admit(handle, digest)
        return True

    def read_blob(self, digest, limit):
        with open(self.blob_path(digest), "rb") as handle:
            data = handle.read(limit + 1)
        if len(data) > limit:
            raise OCIError("blob %s: larger than %d bytes" % (digest, limit))
        return data

    # -- names

    def names(self):
        try:
            with open(os.path.join(self.root, REPOSITORIES)) as handle:
                data = json.load(handle)
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise OCIError("image_root %s: %s unreadable: %s" % (self.root, REPOSITORIES, exc))
        return data if isinstance(data, dict) else {}

    def lookup(self, name):
        record = self.names().get(name)
        return record if isinstance(record, dict) else None

    def set_name(self, name, record):
        names = self.names()
        names[name] = record
        self._write_names(names)

    def remove_name(self, name):
        names = self.names()
        if names.pop(name, None) is None:
            return False
        self._write_names(names)
        return True

    def _write_names(self, names):
        atomicfile.write(os.path.join(self.root, REPOSITORIES), json.dumps(names, indent=1, sort_keys=True) + "\n",
                         mode=0o600, durable=True)

    # -- users

    def _user_file(self, bundle):
        return os.path.join(self.root, "users", hashlib.sha256(bundle.encode("utf-8")).hexdigest()[:32] + ".json")

    def add_user(self, bundle, name, record):
        """Record that the bundle at BUNDLE uses image NAME (RECORD: its store record)."""
        entry = dict(bundle=bundle, name=name, digest=record.get("digest"), blobs=referenced_blobs(record),
                     diff_ids=[layer["diff_id"] for layer in record.get("layers", [])])
        atomicfile.write(self._user_file(bundle), json.dumps(entry, sort_keys=True) + "\n", mode=0o600)

    def remove_user(self, bundle):
        try:
            os.unlink(self._user_file(bundle))
            return True
        except FileNotFoundError:
            return False

    def users(self):
        """The live user records (their bundle still exists)."""
        result = []
        directory = os.path.join(self.root, "users")
        try:
            entries = sorted(os.listdir(directory))
        except FileNotFoundError:
            return result
        for entry in entries:
            try:
                with open(os.path.join(directory, entry)) as handle:
                    record = json.load(handle)
            except (OSError, ValueError):
                continue
            if isinstance(record, dict) and isinstance(record.get("bundle"), str) and os.path.isdir(record["bundle"]):
                result.append(record)
        return result

    def users_of(self, name, record):
        """Bundles that use NAME, or the image RECORD names (the same digest under another name)."""
        return sorted(set(u["bundle"] for u in self.users()
                          if u.get("name") == name or (record and u.get("digest") == record.get("digest"))))

    # -- collection

    def collect(self):
        """Remove blobs and layers that no name and no live user references; return what went."""
        keep_blobs, keep_layers = set(), set()
        for record in self.names().values():
            if isinstance(record, dict):
                keep_blobs.update(referenced_blobs(record))
                keep_layers.update(layer.get("diff_id") for layer in record.get("layers", []))
        for user in self.users():
            keep_blobs.update(user.get("blobs") or [])
            keep_layers.update(user.get("diff_ids") or [])
        removed = []
        for kind, keep in (("blobs", keep_blobs), ("layers", keep_layers)):
            directory = os.path.join(self.root, kind, "sha256")
            try:
                entries = os.listdir(directory)
            except FileNotFoundError:
                continue
            for entry in sorted(entries):
                if "sha256:" + entry in keep:
                    continue
                path = os.path.join(directory, entry)
                if os.path.isdir(path) and not os.path.islink(path):
                    shutil.rmtree(path)
                else:
                    os.unlink(path)
                removed.append("%s/sha256:%s" % (kind, entry))
        tmp = os.path.join(self.root, "tmp")
        if os.path.isdir(tmp):
            for entry in os.listdir(tmp):
                if not entry.startswith(("blob-", "layer-")):
                    continue  # only what this store's own writers left behind
                path = os.path.join(tmp, entry)
                shutil.rmtree(path) if os.path.isdir(path) and not os.path.islink(path) else os.unlink(path)
        return removed

    def disk_usage(self):
        total = 0
        for dirpath, _dirs, files in os.walk(self.root):
            for name in files:
                try:
                    total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
                except OSError:
                    pass
        return total


def referenced_blobs(record):
    blobs = [record.get("digest"), record.get("manifest"), record.get("config")]
    blobs.extend(layer.get("digest") for layer in record.get("layers", []))
    return sorted(set(b for b in blobs if b))
