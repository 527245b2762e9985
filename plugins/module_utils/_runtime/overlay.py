# -*- coding: utf-8 -*-
# Copyright: daemonless.oci contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The annotation org.daemonless.oci.rootfs.overlay (annotations): its name and its checked parse.

setup/mounts.py mounts the overlay root it describes (see its docstring for
the value: {"lower": [layer dirs], "upper": dir, "work": dir}); the config
validator (spec.py) and oci_bundle, which writes the annotation, need only
the name and the parse, and import this leaf instead of the mount code (an
Ansible module ships every file its imports reach).
"""
import os

from ansible_collections.daemonless.oci.plugins.module_utils._runtime import jsonio
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.errors import OCIError

OVERLAY_ANNOTATION = "org.daemonless.oci.rootfs.overlay"
# The writable layer of a bundle oci_bundle makes from an image; a hand-written annotation may name others.
BUNDLE_UPPER = "overlay/upper"
BUNDLE_WORK = "overlay/work"
OVERLAY_MAX_LOWER = 128
_HEX = frozenset("0123456789abcdef")
# overlayfs splits its options on "," and lowerdir on ":"; "\\" escapes, and a newline has no business here.
_OVERLAY_UNSAFE = (",", ":", "\\", "\n")


def _layer_store(path):
    """The store directory (with its trailing /) of PATH = <store>/layers/sha256/<64 hex>, else None.

    Checked by hand, not with a regular expression: `re` (and the enum it imports) would cost
    every create about as much as the interpreter's own start."""
    head, sep, digest = path.rpartition("/layers/sha256/")
    if not sep or (head and not head.startswith("/")) or "\0" in head or len(digest) != 64 or not _HEX.issuperset(digest):
        return None
    return head + "/"


def parse_overlay(annotations):
    """The overlay annotation's (lower dirs, upper, work), checked; None without it. OCIError names the field."""
    text = (annotations or {}).get(OVERLAY_ANNOTATION)
    if text is None:
        return None
    field = 'annotations["%s"]' % OVERLAY_ANNOTATION
    try:
        value = jsonio.loads(text)
    except (TypeError, ValueError):
        raise OCIError("%s: not JSON" % field)
    if not isinstance(value, dict):
        raise OCIError("%s: must be a JSON object with lower, upper and work" % field)
    lower = value.get("lower")
    if not isinstance(lower, list) or not lower or len(lower) > OVERLAY_MAX_LOWER:
        raise OCIError("%s.lower: must list 1 to %d layer directories" % (field, OVERLAY_MAX_LOWER))
    stores = set()
    for index, path in enumerate(lower):
        where = "%s.lower[%d]" % (field, index)
        store = _layer_store(path) if isinstance(path, str) else None
        if store is None or os.path.normpath(path) != path:
            raise OCIError("%s: %r is not an image store's layer directory (/.../layers/sha256/<hex>)" % (where, path))
        if any(c in path for c in _OVERLAY_UNSAFE):
            raise OCIError("%s: %r holds a character overlayfs options cannot carry (, : \\ newline)" % (where, path))
        stores.add(store)
    if len(stores) != 1:
        raise OCIError("%s.lower: the layers must all come from one image store" % field)
    dirs = []
    for key in ("upper", "work"):
        path = value.get(key)
        if (not isinstance(path, str) or not path or os.path.isabs(path) or os.path.normpath(path) != path
                or path.split("/")[0] == ".." or any(c in path for c in _OVERLAY_UNSAFE)):
            raise OCIError("%s.%s: %r must be a plain relative path inside the bundle" % (field, key, path))
        dirs.append(path)
    return list(lower), dirs[0], dirs[1]


def make_writable_layer(bundle):
    """Fresh, empty BUNDLE_UPPER and BUNDLE_WORK in BUNDLE (the upper's root is the merged root's: 0755).
    Nothing may have the overlay mounted: a new bundle's, or a deleted container's."""
    import shutil  # only here: a create never needs it
    overlay = os.path.join(bundle, os.path.dirname(BUNDLE_UPPER))
    if os.path.lexists(overlay):
        shutil.rmtree(overlay)
    os.makedirs(os.path.join(bundle, BUNDLE_UPPER), 0o700)
    os.chmod(os.path.join(bundle, BUNDLE_UPPER), 0o755)
    os.makedirs(os.path.join(bundle, BUNDLE_WORK), 0o700)


def owns_writable_layer(overlay):
    """Whether OVERLAY (parse_overlay's result, or None) names the writable layer oci_bundle makes, which is
    the bundle's to empty; a hand-written config's directories may hold anything."""
    return overlay is not None and tuple(overlay[1:]) == (BUNDLE_UPPER, BUNDLE_WORK)
