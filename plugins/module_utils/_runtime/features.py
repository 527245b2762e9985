# -*- coding: utf-8 -*-
# Copyright: daemonless.oci contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""`ocirt features`: what this runtime implements, as the runtime-spec's features document.

Only what the code here really does is listed, whatever the host has: the
spec's `enabled` means implemented (AppArmor and SELinux labels are, in
setup/lsm.py; a host without the module refuses the field at create). What
the host lacks (LSMs, controllers) is reported by the host part of
oci_container_info.

VERSION is the collection's version (galaxy.yml's, checked by a unit test),
which `ocirt --version` prints.
"""
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.setup import hooks, mounts
from ansible_collections.daemonless.oci.plugins.module_utils._runtime import spec

VERSION = "0.1.0"


def features():
    document = {
        "ociVersionMin": "1.0.0",
        "ociVersionMax": "1.1.0",
        "hooks": list(hooks.KINDS),
        "mountOptions": sorted(set(mounts.FLAG_OPTIONS) | set(mounts.PROPAGATION_OPTIONS)
                               | set(mounts.IGNORED_OPTIONS)),
        "linux": {
            "namespaces": list(spec.NAMESPACE_TYPES),
            "capabilities": list(spec.CAPABILITIES),
            "cgroup": {"v1": True, "v2": True, "systemd": True, "systemdUser": False, "rdma": True},
            "apparmor": {"enabled": True},
            "selinux": {"enabled": True},
            "intelRdt": {"enabled": False},
            "mountExtensions": {"idmap": {"enabled": False}},
        },
        "annotations": {"io.github.daemonless.oci.version": VERSION},
    }
    try:
        from ansible_collections.daemonless.oci.plugins.module_utils._runtime.setup import seccomp
    except ImportError:
        document["linux"]["seccomp"] = {"enabled": False}
    else:
        document["linux"]["seccomp"] = seccomp.features()
    return document
