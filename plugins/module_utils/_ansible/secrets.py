# -*- coding: utf-8 -*-
# Copyright: daemonless.oci contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""oci_container_state's secrets: files on a host tmpfs, bind-mounted read-only into the container.

Where a secret lives (podman's way): each container's secrets are files in
its own directory on a host tmpfs, outside the state root and the bundle,

    /run/ocirt-secrets/<digest of the state root>/<container id>/<n>/<file>

(the container's directory 0700, owned by the container's root as its user
namespace maps it, the ones above it 0711: no listing; a tmpfs is mounted
at /run/ocirt-secrets when /run is none), one sub-directory <n> per target
directory in the container, bind-mounted there read-only, nosuid, nodev,
noexec. The config the container is created from names those host
directories only, so any re-create of it (a recreate by the plan, a restart
by the monitor) finds the files again; the content itself is never in
config.json, the state directory, the logs, a diff or a result. The runtime
resolves each mount destination inside the rootfs, so a hostile image (a
/run that is a symlink out of it) cannot send a secret anywhere else.

What the plan compares: each secret is the annotation
org.daemonless.oci.secrets.<name> = hmac-sha256:<salt>:<mac>, an HMAC of the
content, target, mode and owner keyed with a random per-container salt that
the next run reads back from the container's recorded config: an unchanged
secret gives the same annotation, a changed one another, and the content
cannot be recovered or confirmed from it without the salt and a guess.
"""
import errno
import fcntl
import hashlib
import hmac
import json
import os
import posixpath
import re
import secrets as random_source
import shutil
import stat

from ansible_collections.daemonless.oci.plugins.module_utils._runtime.errors import NotFound, OCIError
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.state import Container

BASE = "/run/ocirt-secrets"
TMPFS_MAGIC = 0x01021994
TMPFS_OPTIONS = "mode=0711,size=64m"
DEFAULT_DIRECTORY = "/run/secrets"
DEFAULT_MODE = 0o400
MAX_SECRET_SIZE = 512 * 1024  # podman's limit: a secret is a key or a password file, not a data set
ANNOTATION = "org.daemonless.oci.secrets."
MOUNT_OPTIONS = ["bind", "ro", "nosuid", "nodev", "noexec"]
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,252}$")


class Secret:
    """One entry of the secrets option, checked: name, target, mode, owner, and its content (bytes), or None
    for a src that does not exist yet (parse's LENIENT)."""

    def __init__(self, name, target, mode, uid, gid, content):
        self.name, self.target, self.mode, self.uid, self.gid, self.content = name, target, mode, uid, gid, content

    def mac(self, salt):
        if self.content is None:
            return "unknown"
        key = bytes.fromhex(salt)
        described = json.dumps([self.target, self.mode, self.uid, self.gid], sort_keys=True).encode()
        return hmac.new(key, described + b"\0" + self.content, hashlib.sha256).hexdigest()


def _mode(value, field):
    if value is None:
        return DEFAULT_MODE
    if isinstance(value, int) and not isinstance(value, bool):
        mode = value
    elif isinstance(value, str) and re.match(r"^0?[0-7]{1,4}$", value):
        mode = int(value, 8)
    else:
        raise OCIError("%s: must be an octal mode such as '0400', not %r" % (field, value))
    if not 0 <= mode <= 0o7777:
        raise OCIError("%s: must be an octal mode such as '0400', not %r" % (field, value))
    return mode


def _id(value, field):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, str)) or not str(value).isdigit() \
            or not str(value).isascii() or int(value) > (1 << 32) - 2:
        raise OCIError("%s: must be a numeric id inside the container, not %r" % (field, value))
    return int(value)


def _target(value, name, field):
    """The container path of a secret: default /run/secrets/NAME; a relative one is under /run/secrets."""
    if value is None or value == "":
        return posixpath.join(DEFAULT_DIRECTORY, name)
    if not isinstance(value, str) or "\0" in value:
        raise OCIError("%s: must be a path" % field)
    path = value if value.startswith("/") else posixpath.join(DEFAULT_DIRECTORY, value)
    parts = path.split("/")
    if ".." in parts or "." in parts:
        raise OCIError("%s: %r must not hold '.' or '..' components" % (field, value))
    path = posixpath.normpath(path)
    if posixpath.dirname(path) == "/" or path == "/":
        raise OCIError("%s: %r: a secret's directory becomes a mount of secrets only; it cannot be /" % (field, value))
    return path


def _content(entry, field, lenient):
    if entry.get("content") is not None and entry.get("src") is not None:
        raise OCIError("%s: give content or src, not both" % field)
    if entry.get("content") is not None:
        data = entry["content"]
        data = data.encode("utf-8", "surrogateescape") if isinstance(data, str) else bytes(data)
    elif entry.get("src") is not None:
        try:
            fd = os.open(entry["src"], os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
        except OSError as exc:
            if lenient and exc.errno == errno.ENOENT:
                return None
            raise OCIError("%s.src: cannot read %s: %s" % (field, entry["src"], exc.strerror))
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise OCIError("%s.src: %s is not a regular file" % (field, entry["src"]))
        with os.fdopen(fd, "rb") as handle:
            data = handle.read(MAX_SECRET_SIZE + 1)
    else:
        raise OCIError("%s: needs content or src" % field)
    if len(data) > MAX_SECRET_SIZE:
        raise OCIError("%s: a secret may be at most %d bytes" % (field, MAX_SECRET_SIZE))
    return data


def parse(entries, process_user, lenient=False):
    """The secrets option (a list of dicts) as Secrets, every field checked; PROCESS_USER owns them by default.
    LENIENT: a src that does not exist has content None instead of being an error."""
    result = []
    names, targets = set(), set()
    for index, entry in enumerate(entries or []):
        field = "secrets[%d]" % index
        if not isinstance(entry, dict):
            raise OCIError("%s: must be a dict with name and content or src" % field)
        unknown = set(entry) - set(("name", "content", "src", "target", "mode", "uid", "gid"))
        if unknown:
            raise OCIError("%s: unknown keys %s" % (field, ", ".join(sorted(unknown))))
        name = entry.get("name")
        if not isinstance(name, str) or not _NAME.match(name):
            raise OCIError("%s.name: %r must be letters, digits, '_', '.' and '-' (no '/', not '.' or '..')"
                           % (field, name))
        if name in names:
            raise OCIError("%s.name: %r is given twice" % (field, name))
        names.add(name)
        target = _target(entry.get("target"), name, field + ".target")
        if target in targets:
            raise OCIError("%s.target: %s is the target of another secret" % (field, target))
        targets.add(target)
        uid = _id(entry.get("uid"), field + ".uid")
        gid = _id(entry.get("gid"), field + ".gid")
        result.append(Secret(name, target, _mode(entry.get("mode"), field + ".mode"),
                             process_user.get("uid", 0) if uid is None else uid,
                             process_user.get("gid", 0) if gid is None else gid,
                             _content(entry, field, lenient)))
    directories = sorted(set(posixpath.dirname(s.target) for s in result))
    for directory in directories:
        for other in directories:
            if other.startswith(directory + "/"):
                raise OCIError("secrets: target directory %s lies inside %s, also a secrets mount; "
                               "put them in one directory or in separate ones" % (other, directory))
    for secret in result:
        # A secret's own target must not be the directory of another's (a file cannot hold a mount).
        if secret.target in directories:
            raise OCIError("secrets: %s is the target of secret %s and the directory of another"
                           % (secret.target, secret.name))
    return result


def container_directory(state_root, container_id):
    """The host directory of CONTAINER_ID's secrets: per state root (two roots are two worlds), per id."""
    root_key = hashlib.sha256(os.path.abspath(state_root).encode("utf-8")).hexdigest()[:16]
    name = container_id if len(container_id) <= 128 else "=" + hashlib.sha256(container_id.encode()).hexdigest()
    return os.path.join(BASE, root_key, name)


def _recorded_salts(state_root, container_id):
    try:
        with Container.open(state_root, container_id) as container:
            annotations = container.config().get("annotations") or {}
    except NotFound:
        return {}
    salts = {}
    for key, value in annotations.items():
        if key.startswith(ANNOTATION) and isinstance(value, str) and value.count(":") == 2:
            salt = value.split(":")[1]
            if re.match(r"^[0-9a-f]{32}$", salt):
                salts[key[len(ANNOTATION):]] = salt
    return salts


def with_secrets(config, params):
    """CONFIG with the task's secrets: a read-only bind of a host tmpfs directory at each target directory,
    and one annotation per secret for the plan. The files themselves are written by deliver(), which
    fails on a src that is missing here (in check mode an earlier task may make it: it counts as changed)."""
    entries = params.get("secrets")
    if not entries:
        return config
    process_user = (config.get("process") or {}).get("user") or {}
    wanted = parse(entries, process_user, lenient=True)
    salts = _recorded_salts(params["state_root"], params["id"])
    annotations = dict((k, v) for k, v in (config.get("annotations") or {}).items() if not k.startswith(ANNOTATION))
    for secret in wanted:
        salt = salts.get(secret.name) or random_source.token_hex(16)
        annotations[ANNOTATION + secret.name] = "hmac-sha256:%s:%s" % (salt, secret.mac(salt))
    host = container_directory(params["state_root"], params["id"])
    mounts = list(config.get("mounts") or [])
    for index, directory in enumerate(sorted(set(posixpath.dirname(s.target) for s in wanted))):
        mounts.append({"destination": directory, "type": "bind", "source": os.path.join(host, str(index)),
                       "options": list(MOUNT_OPTIONS)})
    return dict(config, annotations=annotations, mounts=mounts)


def host_ids(config, uid, gid):
    """(uid, gid) on the host of the container's UID and GID: through linux.uidMappings/gidMappings when the
    config makes a user namespace, else themselves."""
    linux = config.get("linux") or {}
    if not any(ns.get("type") == "user" for ns in linux.get("namespaces") or []):
        return uid, gid

    def mapped(value, mappings, field):
        for mapping in mappings or []:
            start, size = mapping.get("containerID", 0), mapping.get("size", 0)
            if start <= value < start + size:
                return mapping.get("hostID", 0) + value - start
        raise OCIError("secrets: %s %d is not mapped by the config's linux.%s" % (field[:3], value, field))
    return mapped(uid, linux.get("uidMappings"), "uidMappings"), mapped(gid, linux.get("gidMappings"), "gidMappings")


def _ensure_base():
    """BASE exists, 0711 root, on a tmpfs: secrets never touch a disk. Mounted here when /run is no tmpfs."""
    from ansible_collections.daemonless.oci.plugins.module_utils._runtime.linux import syscalls
    os.makedirs(BASE, mode=0o700, exist_ok=True)
    lock = os.open(BASE + ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        fd = os.open(BASE, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            on_tmpfs = syscalls.fstatfs_type(fd) == TMPFS_MAGIC
        finally:
            os.close(fd)
        if not on_tmpfs:
            try:
                syscalls.mount("ocirt-secrets", BASE, "tmpfs", 0x2 | 0x4 | 0x8, TMPFS_OPTIONS)  # nosuid nodev noexec
            except OSError as exc:
                raise OCIError("secrets: cannot mount a tmpfs at %s: %s" % (BASE, exc.strerror))
    finally:
        os.close(lock)
    os.chmod(BASE, 0o711)


def deliver(config, params):
    """Write the task's secrets for a container about to be created from CONFIG (with_secrets' result).

    Made beside the old directory and swapped in, so a failure leaves the old
    one; files are created exclusively, never through a link, then owned and
    moded for the container's user as its user namespace maps it.
    """
    directory = container_directory(params["state_root"], params["id"])
    entries = params.get("secrets")
    if not entries:
        remove(params["state_root"], params["id"])
        return
    wanted = parse(entries, (config.get("process") or {}).get("user") or {})
    _ensure_base()
    parent = os.path.dirname(directory)
    os.makedirs(parent, mode=0o711, exist_ok=True)
    os.chmod(parent, 0o711)
    staging = directory + ".new"
    shutil.rmtree(staging, ignore_errors=True)
    os.mkdir(staging, 0o700)
    try:
        # The container's root mounts the directory from inside its user namespace: it must own it.
        os.chown(staging, *host_ids(config, 0, 0))
        index_of = dict((d, str(i)) for i, d in enumerate(sorted(set(posixpath.dirname(s.target) for s in wanted))))
        for sub in index_of.values():
            os.mkdir(os.path.join(staging, sub), 0o755)
            os.chmod(os.path.join(staging, sub), 0o755)
        for secret in wanted:
            path = os.path.join(staging, index_of[posixpath.dirname(secret.target)], posixpath.basename(secret.target))
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            try:
                view = memoryview(secret.content)
                while view:
                    view = view[os.write(fd, view):]
                os.fchown(fd, *host_ids(config, secret.uid, secret.gid))
                os.fchmod(fd, secret.mode)
            finally:
                os.close(fd)
        old = directory + ".old"
        shutil.rmtree(old, ignore_errors=True)
        if os.path.lexists(directory):
            os.rename(directory, old)
        os.rename(staging, directory)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def remove(state_root, container_id):
    """Remove CONTAINER_ID's secrets (state=absent, or a create that failed); nothing when it has none."""
    directory = container_directory(state_root, container_id)
    for path in (directory, directory + ".new", directory + ".old"):
        shutil.rmtree(path, ignore_errors=True)
    try:
        os.rmdir(os.path.dirname(directory))
    except OSError:
        pass  # other containers of this state root still have secrets
