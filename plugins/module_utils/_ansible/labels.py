# -*- coding: utf-8 -*-
# Copyright: daemonless.oci contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Container labels: oci_container_state's `labels`, and the `labels` selector of info and facts.

A label is stored as the OCI annotation `org.daemonless.oci.label.<key>` in
the config the container is created from (desired() adds them), never in
the bundle's config.json. The prefix keeps labels apart from the bundle's
own annotations (podman keeps labels apart from OCI annotations too), so
that reading them back and selecting by them sees labels only. Being part
of the config, a changed label recreates the container: the runtime records
the config it was created from, and that record is what info reports.
"""
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.errors import OCIError

PREFIX = "org.daemonless.oci.label."
KEY_MAX = 253  # a DNS name's length: labels are keys such as app or com.example.tier, not documents
VALUE_MAX = 4096


def validate(labels, option="labels"):
    """LABELS (a dict, or None) as {str: str}; scalars become strings, as podman's --label does.

    OCIError naming OPTION.KEY for a key that is empty, too long or holds a
    control character, and for a value that is a list, a dict, null or too long.
    """
    if labels is None:
        return {}
    if not isinstance(labels, dict):
        raise OCIError("%s: must be a dict of label names to values, not %s" % (option, type(labels).__name__))
    result = {}
    for key, value in labels.items():
        if not isinstance(key, str) or not key or len(key) > KEY_MAX or any(ord(c) < 32 or ord(c) == 127 for c in key):
            raise OCIError("%s: label name %r must be 1 to %d characters with no control characters"
                           % (option, key, KEY_MAX))
        if isinstance(value, bool):
            value = "true" if value else "false"
        elif isinstance(value, (int, float)):
            value = str(value)
        if not isinstance(value, str):
            raise OCIError("%s.%s: must be a string, not %s" % (option, key, type(value).__name__))
        if len(value) > VALUE_MAX:
            raise OCIError("%s.%s: longer than %d characters" % (option, key, VALUE_MAX))
        result[key] = value
    return result


def with_labels(config, labels):
    """CONFIG with LABELS added as annotations; CONFIG itself when there are none (nothing to recreate for)."""
    labels = validate(labels)
    if not labels:
        return config
    annotations = dict(config.get("annotations") or {})
    annotations.update((PREFIX + key, value) for key, value in labels.items())
    return dict(config, annotations=annotations)


def from_annotations(annotations):
    """The labels among a container's annotations."""
    return dict((key[len(PREFIX):], value) for key, value in (annotations or {}).items()
                if key.startswith(PREFIX) and len(key) > len(PREFIX))


def matches(container_labels, wanted):
    """True when every label of WANTED (already validated) has the same value in CONTAINER_LABELS."""
    return all(container_labels.get(key) == value for key, value in wanted.items())
