# -*- coding: utf-8 -*-
# Copyright: daemonless.oci contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Platforms (os/architecture/variant) as image indexes name them, and the host's."""
import os

from ansible_collections.daemonless.oci.plugins.module_utils._runtime.errors import OCIError

# os.uname().machine -> (GOARCH, variant), the names image indexes use.
_ARCH = {
    "x86_64": ("amd64", None), "amd64": ("amd64", None),
    "aarch64": ("arm64", None), "arm64": ("arm64", None),
    "armv7l": ("arm", "v7"), "armv6l": ("arm", "v6"), "armv5tel": ("arm", "v5"),
    "i386": ("386", None), "i586": ("386", None), "i686": ("386", None),
    "ppc64le": ("ppc64le", None), "s390x": ("s390x", None), "riscv64": ("riscv64", None),
    "loongarch64": ("loong64", None),
}
# The variant an index entry without one means (as containerd normalizes them).
_DEFAULT_VARIANT = {"arm64": "v8", "arm": "v7"}


def host_platform():
    """The platform images are chosen for by default: linux and this machine's architecture."""
    machine = os.uname().machine
    arch, variant = _ARCH.get(machine, (machine, None))
    platform = {"os": "linux", "architecture": arch}
    if variant:
        platform["variant"] = variant
    return platform


def want_platform(platform):
    if platform is None:
        return host_platform()
    if isinstance(platform, str):
        parts = platform.split("/")
        if len(parts) not in (2, 3) or not all(parts):
            raise OCIError("platform %r: give os/architecture[/variant], such as linux/amd64" % platform)
        platform = dict(zip(("os", "architecture", "variant"), parts))
    if not isinstance(platform, dict) or not platform.get("os") or not platform.get("architecture"):
        raise OCIError("platform %r: needs os and architecture" % (platform,))
    return platform


def platform_text(platform):
    if not isinstance(platform, dict):
        return "unknown"
    parts = [str(platform.get("os", "?")), str(platform.get("architecture", "?"))]
    if platform.get("variant"):
        parts.append(str(platform["variant"]))
    return "/".join(parts)


def platform_matches(want, have):
    if not isinstance(have, dict):
        return False
    if have.get("os") != want["os"] or have.get("architecture") != want["architecture"]:
        return False
    if not want.get("variant"):
        return True
    default = _DEFAULT_VARIANT.get(want["architecture"])
    return (have.get("variant") or default) == want["variant"]
