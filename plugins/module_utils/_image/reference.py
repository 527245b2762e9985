# -*- coding: utf-8 -*-
# Copyright: daemonless.oci contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Image names: `registry[:port]/repository[:tag][@sha256:hex]`, always with the registry.

A name without a registry (`nginx:1.27`, `library/nginx`) is refused rather
than completed: Docker completes it with docker.io, podman with its
unqualified-search-registries list, and which one a host picks silently is
how a typo-squatted image on another registry ends up running. The error
names what the user probably meant.
"""
import re

from ansible_collections.daemonless.oci.plugins.module_utils._runtime.errors import OCIError

# The distribution spec's grammar (reference.go, as documented in distribution-spec).
_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_DIGEST = re.compile(r"^sha256:[a-f0-9]{64}$")
_HOST = re.compile(r"^(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*"
                   r"(?::[0-9]{1,5})?$|^\[[0-9A-Fa-f:.]+\](?::[0-9]{1,5})?$")
MAX_NAME = 255

# Docker Hub's registry name as users write it, and the host its API is on.
DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"


class Reference(object):
    """A parsed image name. registry: as written (the key of names in the store and in auth files);
    api_host: where the registry API is; repository; tag and/or digest."""

    def __init__(self, registry, repository, tag, digest):
        self.registry = registry
        self.repository = repository
        self.tag = tag
        self.digest = digest

    @property
    def api_host(self):
        return DOCKER_HUB_API if self.registry == DOCKER_HUB else self.registry

    @property
    def reference(self):
        """What goes after /manifests/: the digest when pinned, else the tag."""
        return self.digest or self.tag

    @property
    def name(self):
        """The canonical name: registry/repository, then :tag and/or @digest."""
        text = "%s/%s" % (self.registry, self.repository)
        if self.tag:
            text += ":" + self.tag
        if self.digest:
            text += "@" + self.digest
        return text

    def __str__(self):
        return self.name


def _has_registry(first):
    return "." in first or ":" in first or first == "localhost" or first.startswith("[")


def parse(text, field="name"):
    """Reference for TEXT; OCIError naming FIELD when it is not a full image name."""
    if not isinstance(text, str) or not text:
        raise OCIError("%s: an image name is required, such as docker.io/library/alpine:3.20" % field)
    if len(text) > MAX_NAME + 80 or any(c.isspace() or ord(c) < 32 for c in text):
        raise OCIError("%s: %r is not an image name" % (field, text[:80]))
    rest, at, digest = text.partition("@")
    if at and not _DIGEST.match(digest):
        raise OCIError("%s: %r: the digest must be sha256:<64 lowercase hex digits>" % (field, text))
    first, slash, path = rest.partition("/")
    if not slash or not _has_registry(first):
        raise OCIError("%s: %r names no registry, and none is guessed: write the registry too, for example "
                       "%s (Docker Hub), quay.io/%s or ghcr.io/%s"
                       % (field, text, _docker_hub_form(rest) + (at + digest if at else ""), rest, rest))
    if not _HOST.match(first):
        raise OCIError("%s: %r: %r is not a registry host[:port]" % (field, text, first))
    tag = None
    last_slash = path.rfind("/")
    colon = path.rfind(":")
    if colon > last_slash:
        path, tag = path[:colon], path[colon + 1:]
        if not _TAG.match(tag):
            raise OCIError("%s: %r: tag %r is not valid (letters, digits, _ . -; at most 128)" % (field, text, tag))
    if not path or len(path) > MAX_NAME:
        raise OCIError("%s: %r: no repository after the registry" % (field, text))
    for component in path.split("/"):
        if not _COMPONENT.match(component):
            raise OCIError("%s: %r: repository component %r is not valid (lowercase letters, digits, "
                           "separators . _ __ -)" % (field, text, component))
    if first == DOCKER_HUB and "/" not in path:
        path = "library/" + path  # Docker Hub's official images: what docker.io/nginx means
    if tag is None and not at:
        tag = "latest"
    return Reference(first, path, tag, digest if at else None)


def _docker_hub_form(rest):
    repo = rest if "/" in rest.split(":")[0] else "library/" + rest
    if ":" not in repo.rpartition("/")[2]:
        repo += ":latest"
    return "docker.io/" + repo
