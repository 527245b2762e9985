# -*- coding: utf-8 -*-
# Copyright: daemonless.oci contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A bundle directory made to match a declaration: its root filesystem and its config.json.

The rootfs comes from a directory (used in place, or copied), a rootfs
tarball, or an OCI image layout. What was unpacked, and from what, is kept
in BUNDLE/.oci-bundle.json, so an unchanged source is never unpacked twice;
config.json is rewritten only when its content changes. Every function
takes check_mode and then reports what it would do without writing.

The bundle directory is out of reach of other users: 0700, or 0710 with the
group of the container's root when the config gives it a user namespace
(Docker's choice for its root), so that only that host group may traverse
it. An image's setuid files, file capabilities and everything else in the
root filesystem are therefore reachable by root and the container only; the
staging directory an image is unpacked into is inside it, and 0700 too.
"""
import hashlib
import json
import os
import shutil
import stat
import time

from ansible_collections.daemonless.oci.plugins.module_utils._bundle import config as bundle_config
from ansible_collections.daemonless.oci.plugins.module_utils._bundle import users
from ansible_collections.daemonless.oci.plugins.module_utils._runtime import atomicfile
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.errors import OCIError

STAMP = ".oci-bundle.json"
ROOTFS = "rootfs"
# process.args in check mode's diff while the image that gives them is not pulled or unpacked yet.
IMAGE_ARGS_UNKNOWN = "(the image's command: known once the image is pulled or unpacked)"
CONFIG = "config.json"
ROOTFS_CHECKS = ("identity", "digest")


def _sha256_file(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return "sha256:" + digest.hexdigest()


def _sha256_entry(dir_fd, name):
    """The sha256 of the regular file NAME in DIR_FD, never following a link that replaced it since its lstat."""
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    digest = hashlib.sha256()
    with os.fdopen(fd, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _tree_fingerprint(path, content=False):
    """An identity of a directory tree from a walk of its metadata: every entry's name, type, mode, size,
    owner, inode, modification and change times. A file rewritten, replaced, touched or chmodded anywhere in
    the tree changes its change time, which no user can set back; a change made with the clock or the file
    system itself altered is beyond a stat (CONTENT=True: each regular file's sha256 and each link's target
    are in it too, rootfs_check=digest)."""
    digest = hashlib.sha256()
    for dirpath, dirnames, filenames, dir_fd in os.fwalk(path):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            st = os.lstat(name, dir_fd=dir_fd)
            rel = os.path.relpath(os.path.join(dirpath, name), path)
            fields = (rel, st.st_mode, st.st_size, st.st_uid, st.st_gid, st.st_ino, st.st_mtime_ns, st.st_ctime_ns)
            line = "%s\0%o\0%d\0%d\0%d\0%d\0%d\0%d" % fields
            if content and stat.S_ISREG(st.st_mode):
                line += "\0" + _sha256_entry(dir_fd, name)
            elif content and stat.S_ISLNK(st.st_mode):
                line += "\0" + os.readlink(name, dir_fd=dir_fd)
            digest.update((line + "\n").encode("utf-8", "surrogateescape"))
    return ("tree-content:" if content else "tree-stat:") + digest.hexdigest()


def source_kind(source):
    if os.path.isdir(source):
        # lexists: an oci-layout that is not a regular file is the layout's error to report, not a directory.
        return "oci-layout" if os.path.lexists(os.path.join(source, "oci-layout")) else "directory"
    if os.path.isfile(source):
        return "tarball"
    if os.path.lexists(source):
        raise OCIError("rootfs_from %s: not a directory or a regular file" % source)
    raise OCIError("rootfs_from %s: no such directory or file" % source)


def source_identity(source):
    """What identifies a tarball's file without reading it: device, inode, size, mtime, ctime.

    A file replaced (new inode), rewritten (size, mtime) or touched in any way
    (ctime, which no user can set back) gets a new identity; a content change
    with all of these preserved is beyond what a stat sees (rootfs_check=digest).
    """
    st = os.stat(source)
    return [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]


def source_key(source, kind, reference, platform, copy, content=False):
    """What identifies the source's content: unchanged key, nothing to unpack (CONTENT: a copied directory's
    file contents are read into it, rootfs_check=digest)."""
    if kind == "tarball":
        return _sha256_file(source)
    if kind == "oci-layout":
        from ansible_collections.daemonless.oci.plugins.module_utils._bundle import oci_layout
        # Blobs are content-addressed: the index and the choice made in it identify the image.
        return "layout:%s:%s:%s" % (oci_layout.index_digest(source), reference or "", platform or "")
    if copy:
        try:
            return _tree_fingerprint(source, content=content)
        except OSError as exc:
            # A link swapped in (O_NOFOLLOW), an unreadable file: named, never followed.
            raise OCIError("rootfs_from %s: reading %s: %s" % (source, exc.filename, exc.strerror))
    return "in-place:" + source


def read_stamp(path):
    try:
        with open(os.path.join(path, STAMP)) as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return {}


def _platform(value):
    if not value:
        return None
    parts = value.split("/")
    if len(parts) < 2:
        raise OCIError("platform %r: give os/architecture[/variant], such as linux/amd64" % value)
    platform = {"os": parts[0], "architecture": parts[1]}
    if len(parts) > 2:
        platform["variant"] = parts[2]
    return platform


def _unpack(kind, source, target, reference, platform, max_size):
    """Fill TARGET from SOURCE; return (image digest or None, image config or None)."""
    from ansible_collections.daemonless.oci.plugins.module_utils._bundle import directory, oci_layout, tarball
    if kind == "tarball":
        return tarball.unpack_tarball(source, target, max_size=max_size)["digest"], None
    if kind == "oci-layout":
        result = oci_layout.unpack_oci_layout(source, target, reference=reference, platform=_platform(platform),
                                              max_size=max_size)
        return result["digest"], result.get("config")
    directory.copy_directory(source, target, max_size=max_size)
    return None, None


def _max_size(value):
    """max_unpacked_size in bytes, or None for the default (the free space less 5 %)."""
    if value is None:
        return None
    size = bundle_config.parse_size(value, "max_unpacked_size")
    if size <= 0:
        raise OCIError("max_unpacked_size: must be a positive size such as 2G, not %r" % (value,))
    return size


def _access(config):
    """(mode, group) of the bundle directory: 0700 root, or 0710 with the host group of the
    container's root when CONFIG makes a user namespace (its root must reach the rootfs)."""
    from ansible_collections.daemonless.oci.plugins.module_utils._runtime.setup.namespaces import host_id
    linux = config.get("linux") or {}
    if any(ns.get("type") == "user" and not ns.get("path") for ns in linux.get("namespaces") or []):
        gid = host_id(linux.get("gidMappings"))
        if gid:
            return 0o710, gid
    return 0o700, 0


def _access_change(path, access):
    """What would restrict PATH to ACCESS, or None when it already is (or does not exist yet)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    if (st.st_mode & 0o7777, st.st_uid, st.st_gid) == (access[0], 0, access[1]):
        return None
    return "restrict %s to mode %04o, owner 0, group %d" % (path, access[0], access[1])


def _protect(path, access):
    os.makedirs(path, 0o700, exist_ok=True)
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        os.chown(fd, 0, access[1])
        os.chmod(fd, access[0])
    finally:
        os.close(fd)


def users_of(path, state_root):
    """Ids of the containers in STATE_ROOT created from the bundle at PATH."""
    from ansible_collections.daemonless.oci.plugins.module_utils._runtime.state import list_containers
    try:
        states = list_containers(state_root)
    except OSError as exc:
        raise OCIError("state_root %s: %s" % (state_root, exc.strerror))
    return [s["id"] for s in states if s.get("bundle") == path]


def _check_path(path):
    """The directories a bundle at PATH needs made (PATH first, outermost last), or an error naming path:
    it must be a directory, or not exist yet under directories. A symlink is refused: the bundle would
    be written, and later removed, wherever it points."""
    if os.path.islink(path):
        raise OCIError("path: %s is a symbolic link (to %s); give the directory itself" % (path, os.readlink(path)))
    if os.path.lexists(path) and not os.path.isdir(path):
        raise OCIError("path: %s exists and is not a directory" % path)
    missing = []
    parent = path
    while not os.path.lexists(parent):
        missing.append(parent)
        parent = os.path.dirname(parent)
    if missing and not os.path.isdir(parent):
        raise OCIError("path: %s cannot be made, %s is not a directory" % (path, parent))
    return missing


def message(path, actions, check_mode):
    """oci_bundle's msg: what was done (or would be) to the bundle."""
    if not actions:
        return "bundle %s: up to date" % path
    return "bundle %s: %s%s" % (path, "would " if check_mode else "", "; ".join(actions))


def ensure(path, options, source=None, reference=None, platform=None, copy=False, state_root=None,
           check_mode=False, max_unpacked_size=None, rootfs_check="identity", image=None, image_root=None):
    """Make the bundle at PATH match; return dict(changed, actions, msg, config, before/after texts, digests).

    MAX_UNPACKED_SIZE: what an unpacked root filesystem may take (bytes or a
    size such as 2G); default the free space of the bundle's filesystem less 5 %.
    ROOTFS_CHECK: "identity" takes a tarball whose identity (source_identity)
    is the one recorded when its digest was computed as unchanged, without
    reading it (an unchanged bundle then decides in a stat); "digest" reads
    it again. An OCI layout is always identified by its index (one small
    file), a copied directory by a walk of its metadata (_tree_fingerprint),
    with "digest" by the content of its files too.
    All or nothing: a failure (a corrupt image, a bad option) removes the
    directories this call made, and leaves an existing bundle as it was.
    """
    path = os.path.abspath(path)
    if rootfs_check not in ROOTFS_CHECKS:
        raise OCIError("rootfs_check: must be one of %s, not %r" % (", ".join(ROOTFS_CHECKS), rootfs_check))
    made = _check_path(path)
    try:
        outcome = _ensure(path, options, source, reference, platform, copy, state_root, check_mode, max_unpacked_size,
                          rootfs_check, image, image_root)
    except BaseException:
        if made and not check_mode:
            shutil.rmtree(made[-1], ignore_errors=True)
        raise
    outcome["msg"] = message(path, outcome["actions"], check_mode)
    return outcome


def _ensure(path, options, source, reference, platform, copy, state_root, check_mode, max_unpacked_size, rootfs_check,
            image, image_root):
    # The options alone are checked before anything is unpacked, so a bad one leaves nothing behind.
    max_size = _max_size(max_unpacked_size)
    access = _access(bundle_config.build_config(options))
    if not check_mode:
        # In check mode an earlier task that makes a mount's source did not run: as for rootfs_from, no failure.
        bundle_config.check_mount_sources(options.get("mounts"), path)
    actions = []
    restrict = _access_change(path, access)
    if restrict:
        actions.append(restrict)
    stamp = read_stamp(path)
    rootfs_path = ROOTFS
    image_digest = stamp.get("image_digest")
    image_config = stamp.get("image_config")
    image_annotation, warnings = None, []
    # Check mode with an image not pulled or unpacked yet: its command is not known.
    image_args_unknown = False
    if image is not None:
        if source is not None:
            raise OCIError("image and rootfs_from: give one of them")
        new_stamp, actions_image, warnings = _image_rootfs(
            path, image, image_root, stamp, access, state_root, max_size, check_mode)
        actions.extend(actions_image)
        image_digest, image_config = new_stamp["image_digest"], new_stamp["image_config"]
        image_annotation = new_stamp.get("overlay")
        image_args_unknown = check_mode and image_config is None
    elif source is not None and check_mode and not os.path.lexists(os.path.abspath(source)):
        # An earlier task (a copy, a download) makes it, and in check mode did not: report, do not fail.
        actions.append("unpack %s into %s (it does not exist yet: check mode)"
                       % (os.path.abspath(source), os.path.join(path, ROOTFS)))
        new_stamp = stamp
    elif source is not None:
        source = os.path.abspath(source)
        kind = source_kind(source)
        if kind != "oci-layout" and (reference or platform):
            raise OCIError("image_ref and platform apply to an OCI image layout; %s is a %s" % (source, kind))
        in_place = kind == "directory" and not copy
        # Taken before the digest: a change while it is computed makes the next run compute it again.
        identity = source_identity(source) if kind == "tarball" else None
        if (identity is not None and rootfs_check == "identity" and stamp.get("source") == source
                and stamp.get("identity") == identity and stamp.get("key")):
            key = stamp["key"]
        else:
            key = source_key(source, kind, reference, platform, copy, content=rootfs_check == "digest")
        if in_place:
            rootfs_path = source
            if stamp.get("key") != key:
                actions.append("use %s as the root filesystem in place" % source)
                image_digest, image_config = None, None
        elif stamp.get("key") != key or not os.path.isdir(os.path.join(path, ROOTFS)):
            actions.append("unpack %s (%s) into %s" % (source, kind, os.path.join(path, ROOTFS)))
            if not check_mode:
                _protect(path, access)  # before the first file of the image lands
                image_digest, image_config = _replace_rootfs(path, kind, source, reference, platform, state_root,
                                                             max_size)
            elif kind == "oci-layout":
                image_config = None  # known once unpacked; the config diff may miss image defaults
                image_args_unknown = True
        new_stamp = {"source": source, "kind": kind, "key": key, "image_digest": image_digest,
                     "image_config": image_config}
        if identity is not None:
            new_stamp["identity"] = identity
    else:
        if not os.path.isdir(os.path.join(path, ROOTFS)) and not stamp.get("source"):
            raise OCIError("rootfs_from: required, since %s has no rootfs yet" % path)
        if stamp.get("kind") == "directory" and stamp.get("key", "").startswith("in-place:"):
            rootfs_path = stamp["source"]
        new_stamp = stamp
    rootfs_dir = rootfs_path if os.path.isabs(rootfs_path) else os.path.join(path, rootfs_path)
    if image_annotation is not None:
        # The rootfs is only a mount point: names resolve through the image's topmost /etc/passwd layer.
        rootfs_dir = _passwd_layer(image_annotation) or rootfs_dir
    config = bundle_config.build_config(options, image_config=image_config, rootfs_path=rootfs_path,
                                        resolve_user=_user_resolver(rootfs_dir))
    if image_args_unknown and options.get("args") is None:
        # Said, not guessed: the runtime's default command in the diff would read as the image's replaced.
        config["process"]["args"] = [IMAGE_ARGS_UNKNOWN]
    if image is not None:
        config = _image_config(config, options, image_annotation)
    after = json.dumps(config, indent=2, sort_keys=True) + "\n"
    config_file = os.path.join(path, CONFIG)
    try:
        with open(config_file) as handle:
            before = handle.read()
    except OSError:
        before = ""
    if before != after:
        actions.append("write %s" % config_file)
    if not check_mode:
        _protect(path, access)
        if before != after:
            atomicfile.write(config_file, after, durable=True)
        if new_stamp != stamp:
            atomicfile.write(os.path.join(path, STAMP), json.dumps(new_stamp, sort_keys=True) + "\n", durable=True)
    return {
        "changed": bool(actions),
        "actions": actions,
        "path": path,
        "rootfs": rootfs_path if os.path.isabs(rootfs_path) else os.path.join(path, rootfs_path),
        "config": config,
        "config_digest": "sha256:" + hashlib.sha256(after.encode("utf-8")).hexdigest(),
        "image_digest": image_digest,
        "warnings": warnings,
        "before": before,
        "after": after,
    }


def _user_resolver(rootfs_dir):
    """User names resolve through the image's own files; in check mode before the first unpack
    there is no rootfs yet, and names stay unresolved (uid 0) in the reported config."""
    if not os.path.isdir(rootfs_dir):
        return None
    return lambda value, field: users.resolve_in(rootfs_dir, value, field)


# -- a root filesystem from an image in the store (the image option) -----------------------------------------

def _image_rootfs(path, image, image_root, stamp, access, state_root, max_size, check_mode):
    """(new stamp, actions, warnings) for a rootfs from IMAGE: layers unpacked once into the store, an
    overlay of them with this bundle's own upper directory (or a copy where overlayfs is missing)."""
    from ansible_collections.daemonless.oci.plugins.module_utils._bundle import image_rootfs
    try:
        name, store, record = image_rootfs.lookup(image, image_root)
    except OCIError:
        if not check_mode:
            raise
        # The play pulls before it builds the bundle; in check mode the pull did not happen.
        from ansible_collections.daemonless.oci.plugins.module_utils._image import reference as references
        name = references.parse(image, field="image").name
        return (dict(stamp, source="image:" + name, kind="image", key=None, image_digest=None, image_config=None),
                ["use image %s (not in the store yet)" % name], [])
    overlay = image_rootfs.overlay_supported()
    key = "image:%s:%s" % (record["manifest"], "overlay" if overlay else "copy")
    new_stamp = {"source": "image:" + name, "kind": "image", "key": key, "image_digest": record["digest"],
                 "image_config": record.get("image_config") or {}, "image_root": store.root,
                 "overlay": image_rootfs.overlay_annotation(store, record) if overlay else None,
                 "warnings": [] if overlay else [image_rootfs.COPY_WARNING]}
    actions, warnings = [], list(new_stamp["warnings"])
    fresh = stamp.get("key") != key or not os.path.isdir(os.path.join(path, ROOTFS))
    if fresh:
        actions.append("root filesystem from image %s (%s, %s)"
                       % (name, record["digest"], "overlay" if overlay else "copy"))
    if check_mode:
        return new_stamp, actions, warnings
    _protect(path, access)
    if overlay:
        warnings.extend(image_rootfs.unpack_layers(store, name, record, max_size))
    if fresh:
        _set_aside(path, (ROOTFS, image_rootfs.OVERLAY_DIR))
        if overlay:
            image_rootfs.make_overlay_dirs(path)
        else:
            warnings.extend(image_rootfs.copy_layers(store, name, record, os.path.join(path, ROOTFS), max_size))
        _remove_old_rootfs(path, state_root)
    store.add_user(path, name, record)
    return new_stamp, actions, warnings


def _set_aside(path, names):
    """Move the old rootfs and overlay directories aside: a live container may still use them."""
    for name in names:
        if os.path.lexists(os.path.join(path, name)):
            os.rename(os.path.join(path, name), os.path.join(path, ".rootfs.old-%d-%s" % (time.time_ns(), name)))


def _image_config(config, options, annotation):
    """The image bundle's additions: the overlay annotation for the runtime, and a writable root unless
    readonly_rootfs (alias read_only) says otherwise (podman's default, not runc spec's)."""
    from ansible_collections.daemonless.oci.plugins.module_utils._runtime import spec
    from ansible_collections.daemonless.oci.plugins.module_utils._runtime.overlay import OVERLAY_ANNOTATION
    if options.get("readonly_rootfs") is None:
        config["root"]["readonly"] = False
    if annotation is not None:
        config.setdefault("annotations", {})[OVERLAY_ANNOTATION] = annotation
    spec.validate(config)
    return config


def _passwd_layer(annotation):
    """The topmost layer directory of the overlay ANNOTATION that holds etc/passwd, or None."""
    for layer in json.loads(annotation)["lower"]:
        if os.path.isfile(os.path.join(layer, "etc", "passwd")):
            return layer
    return None


def _replace_rootfs(path, kind, source, reference, platform, state_root, max_size):
    """Unpack beside the old rootfs, then swap; an old rootfs a live container uses is kept aside."""
    staging = os.path.join(path, ".rootfs.new")
    if os.path.lexists(staging):
        shutil.rmtree(staging)
    os.mkdir(staging, 0o700)
    try:
        digest, config = _unpack(kind, source, staging, reference, platform, max_size)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    current = os.path.join(path, ROOTFS)
    if os.path.lexists(current):
        old = os.path.join(path, ".rootfs.old-%d" % time.time_ns())
        os.rename(current, old)
    os.rename(staging, current)
    _remove_old_rootfs(path, state_root)
    return digest, config


def _remove_old_rootfs(path, state_root):
    """Old root filesystems are removed once no container of this bundle is alive to use them."""
    if state_root:
        from ansible_collections.daemonless.oci.plugins.module_utils._runtime.state import list_containers
        if any(s.get("bundle") == path and s["status"] != "stopped" for s in list_containers(state_root)):
            return
    for name in os.listdir(path):
        if name.startswith(".rootfs.old-"):
            shutil.rmtree(os.path.join(path, name), ignore_errors=True)


def remove(path, state_root, force=False, check_mode=False):
    """state=absent: delete the bundle directory; refuse while containers use it, unless FORCE."""
    from ansible_collections.daemonless.oci.plugins.module_utils._runtime.operations.lifecycle import delete
    path = os.path.abspath(path)
    if os.path.islink(path) or (os.path.lexists(path) and not os.path.isdir(path)):
        raise OCIError("path: %s is not a bundle directory (a %s); left as it is"
                       % (path, "symbolic link" if os.path.islink(path) else "file"))
    users = users_of(path, state_root) if state_root else []
    if users and not force:
        raise OCIError("bundle %s is used by container(s) %s; delete them first or use force"
                       % (path, ", ".join(users)))
    actions = ["delete container %s" % cid for cid in users]
    if os.path.lexists(path):
        actions.append("remove %s" % path)
    stamp = read_stamp(path)
    if not check_mode:
        for cid in users:
            delete(state_root, cid, force=True)
        if os.path.lexists(path):
            shutil.rmtree(path)
        if stamp.get("kind") == "image" and stamp.get("image_root"):
            # The store may collect this bundle's layers now.
            from ansible_collections.daemonless.oci.plugins.module_utils._image.store import Store
            Store(stamp["image_root"]).remove_user(path)
    return {"changed": bool(actions), "actions": actions, "path": path,
            "msg": message(path, actions, check_mode) if actions else "bundle %s: absent already" % path}
