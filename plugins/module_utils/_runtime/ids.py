# -*- coding: utf-8 -*-
# Copyright: daemonless.oci contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Container ids: what one may be, and the state directory name it gets.

An id is runc's: letters, digits and `_ + . -` (runc's `^[\\w+-\\.]+$`, less
the ',' its character range lets in), neither '.' nor '..', at most 1024
bytes. Nothing else: an id with a newline or an escape sequence would forge
rows in `ocirt list` or reach a terminal raw. The cgroup path of a container
without linux.cgroupsPath is named like its state directory, so both layers
take the name from here.
"""
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.errors import OCIError

MAX_ID_BYTES = 1024
# Names in the state root that start with "=" are the runtime's own (no id
# can, '=' is outside the alphabet): "=<sha256>" holds a container whose id is
# too long for a directory name, "=monitor" the monitor's code (create._monitor_module).
INTERNAL_PREFIX = "="
MAX_DIRECT_NAME_BYTES = 200
ID_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_+.-")


def validate_id(container_id):
    if not isinstance(container_id, str) or not container_id:
        raise OCIError("container id must not be empty")
    if len(container_id.encode("utf-8", "surrogateescape")) > MAX_ID_BYTES:
        raise OCIError("container id %r...: longer than %d bytes" % (container_id[:32], MAX_ID_BYTES))
    if not ID_CHARS.issuperset(container_id):
        # %r: a control character in the id is shown escaped, never written raw.
        raise OCIError("container id %r: only A-Za-z0-9 and _ + . - are allowed (as runc)" % container_id)
    if container_id in (".", "..") or ".." in container_id:
        raise OCIError("container id %r: must not be '.' or contain '..'" % container_id)
    return container_id


def directory_name(container_id):
    """The id itself, or for an id too long to be a file name, '=' and its sha256."""
    raw = container_id.encode("utf-8", "surrogateescape")
    if len(raw) <= MAX_DIRECT_NAME_BYTES:
        return container_id
    import hashlib
    return INTERNAL_PREFIX + hashlib.sha256(raw).hexdigest()
