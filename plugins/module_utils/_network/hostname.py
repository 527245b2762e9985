# -*- coding: utf-8 -*-
# Copyright: daemonless.oci contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A container's hostname: the task's, else the bundle's own choice, else its id.

Applies: hostname (set only where the container has a UTS namespace of its
own). A leaf (the standard library's re only): every container gets its
hostname, but the network code (attachment.py, the plugins' driver, the
ports) is imported only for a task with network options or a container
with an attachment (_ansible/container_state.py decides).
"""
import re

from ansible_collections.daemonless.oci.plugins.module_utils._runtime.errors import OCIError

HOSTNAME_RE = re.compile(r"^[A-Za-z0-9_]([A-Za-z0-9_.+-]{0,252})$")
# The hostname spec.default_config() writes: a bundle with it did not choose one, so the container id wins.
PLACEHOLDER_HOSTNAME = "ocirt"
MAX_HOSTNAME = 64  # the kernel's HOST_NAME_MAX


def choose_hostname(config, params):
    """The container's hostname: the task's `hostname`, else the bundle's when it chose one (anything but
    the default config's placeholder), else the container id (its first 64 bytes), as podman does."""
    wanted = params.get("hostname")
    if wanted is None:
        wanted = config.get("hostname")
        if not wanted or wanted == PLACEHOLDER_HOSTNAME:
            wanted = params["id"][:MAX_HOSTNAME]
    if not HOSTNAME_RE.match(wanted) or len(wanted.encode("utf-8")) > MAX_HOSTNAME:
        raise OCIError("hostname: %r is not a host name (at most %d of A-Za-z0-9_.+-)" % (wanted, MAX_HOSTNAME))
    return wanted


def with_hostname(config, hostname):
    """A copy of CONFIG with HOSTNAME, when it has a UTS namespace (without one there is no name to set)."""
    config = dict(config)
    if any(ns.get("type") == "uts" for ns in (config.get("linux") or {}).get("namespaces") or []):
        config["hostname"] = hostname
    return config
