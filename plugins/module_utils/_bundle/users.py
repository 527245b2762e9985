# -*- coding: utf-8 -*-
# Copyright: daemonless.oci contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""process.user (uid, gid, additionalGids) from a user name, through the IMAGE's /etc/passwd and /etc/group.

Never the host's files: a name means what the image says it means. The
rootfs is hostile, so both files are opened inside it (paths.open_in_root:
a symlink to the host's /etc/shadow or to /proc/... resolves inside the
rootfs, not out of it), must be regular files no larger than MAX_FILE_SIZE,
and a malformed line is skipped, not trusted.

What a USER value means, as podman (and runc's user lookup) read it:
  name | uid            the passwd entry by name (required) or by uid (optional:
                        an unknown uid runs with gid 0); its primary gid, and
                        as additionalGids every group of /etc/group whose
                        member list names the user
  name|uid : group|gid  the group by name (required) or number; an explicit
                        group replaces the primary gid and adds no
                        supplementary groups
"""
import os
import stat

from ansible_collections.daemonless.oci.plugins.module_utils._runtime.errors import OCIError
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.linux import paths
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.values import is_digits

MAX_FILE_SIZE = 1 << 20  # far beyond any real passwd; a bigger file is an attack or a mistake
MAX_ID = (1 << 32) - 2  # (uid_t)-1 means "unchanged" to setresuid: never a user


def is_numeric(value):
    """True when VALUE (an option's user) needs no lookup: uid or uid:gid, digits only."""
    uid, _sep, gid = str(value).partition(":")
    return is_digits(uid) and (not gid or is_digits(gid))


def read_entries(rootfd, path, field, fields):
    """The lines of PATH in the root ROOTFD with at least FIELDS colon-separated fields (lists of str).

    A missing file reads as empty (a scratch image has none); anything else
    that is not a small regular file is an error naming FIELD.
    """
    try:
        fd = paths.open_in_root(rootfd, path)
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise OCIError("%s: cannot open %s in the image: %s" % (field, path, exc.strerror))
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise OCIError("%s: %s in the image is not a regular file" % (field, path))
        if info.st_size > MAX_FILE_SIZE:
            raise OCIError("%s: %s in the image is larger than %d bytes" % (field, path, MAX_FILE_SIZE))
        # Reopened through the O_PATH descriptor: what was checked is what is read.
        with open(paths.fd_path(fd), "rb") as handle:
            data = handle.read(MAX_FILE_SIZE + 1)
    finally:
        os.close(fd)
    if len(data) > MAX_FILE_SIZE:
        raise OCIError("%s: %s in the image is larger than %d bytes" % (field, path, MAX_FILE_SIZE))
    entries = []
    for raw in data.split(b"\n"):
        try:
            line = raw.decode("utf-8").strip()
        except UnicodeDecodeError:
            continue
        if not line or line.startswith("#") or "\0" in line:
            continue
        parts = line.split(":")
        if len(parts) >= fields and parts[0] and is_digits(parts[2]) and int(parts[2]) <= MAX_ID:
            entries.append(parts)
    return entries


def _number(text, field, value):
    number = int(text)
    if number > MAX_ID:
        raise OCIError("%s: %r: %s is not a valid id" % (field, value, text))
    return number


def resolve(rootfd, value, field="user"):
    """process.user for VALUE, names looked up in the root filesystem open at ROOTFD."""
    text = str(value)
    user, _sep, group = text.partition(":")
    if not user or (_sep and not group):
        raise OCIError("%s: %r must be user, user:group, uid or uid:gid" % (field, value))
    passwd = read_entries(rootfd, "/etc/passwd", field, 4)
    if is_digits(user):
        uid = _number(user, field, value)
        entry = next((e for e in passwd if int(e[2]) == uid), None)
    else:
        entry = next((e for e in passwd if e[0] == user), None)
        if entry is None:
            raise OCIError("%s: %r: the image has no user %r in /etc/passwd" % (field, value, user))
        uid = int(entry[2])
    result = {"uid": uid, "gid": 0}
    if entry is not None and is_digits(entry[3]):
        result["gid"] = _number(entry[3], field, value)
    if group:
        if is_digits(group):
            result["gid"] = _number(group, field, value)
        else:
            found = next((e for e in read_entries(rootfd, "/etc/group", field, 3) if e[0] == group), None)
            if found is None:
                raise OCIError("%s: %r: the image has no group %r in /etc/group" % (field, value, group))
            result["gid"] = int(found[2])
    elif entry is not None:
        extra = []
        for found in read_entries(rootfd, "/etc/group", field, 4):
            gid = int(found[2])
            if entry[0] in found[3].split(",") and gid != result["gid"] and gid not in extra:
                extra.append(gid)
        if extra:
            result["additionalGids"] = extra
    return result


def resolve_in(rootfs, value, field="user"):
    """resolve() in the root filesystem directory ROOTFS (a host path)."""
    try:
        rootfd = os.open(rootfs, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise OCIError("%s: cannot open the root filesystem %s: %s" % (field, rootfs, exc.strerror))
    try:
        return resolve(rootfd, value, field)
    finally:
        os.close(rootfd)
