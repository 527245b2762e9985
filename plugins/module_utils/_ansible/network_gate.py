# -*- coding: utf-8 -*-
# Copyright: daemonless.oci contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Whether an oci_container_state run needs the network code, and what a container gets without it.

The network code (networks.py, _network's attachment, conflist, ports,
drift ...) was imported by every run, since every container gets its
hostname there and a container that had a network must release it when it
is deleted or made again. It is imported here only for a task with network
options (anything but network none and no DNS, hosts or ports options) or a
container with an attachment recorded (its directory in the state root's
network area: made before its create, removed by its release). Any other
container gets only its hostname, as network none gives it.
"""
import os

from ansible_collections.daemonless.oci.plugins.module_utils._network.hostname import choose_hostname, with_hostname

# cni.NETWORK_AREA (kept equal by a unit test): cni.py runs alone as the poststop hook and imports nothing of
# ours, and importing it here would load what this module exists to spare.
NETWORK_AREA = "=network"
# The options that ask the network code for something (request_from refuses them with network none).
NETWORK_OPTIONS = ("publish", "ip", "dns_servers", "dns_search", "etc_hosts")


def asks_network(params):
    """Whether the task's options ask for a network of any kind."""
    return params.get("network") not in (None, "none", ["none"]) or any(params.get(o) for o in NETWORK_OPTIONS)


def has_attachment(root, container_id):
    return os.path.isdir(os.path.join(os.path.abspath(root), NETWORK_AREA, container_id))


def container_config(config, params):
    """CONFIG with what the task's network options add (container_state.desired's step): the hostname alone
    without any."""
    if not asks_network(params):
        return with_hostname(config, choose_hostname(config, params))
    from ansible_collections.daemonless.oci.plugins.module_utils._ansible import networks
    return networks.container_config(config, params)


def container_network(params, bundle_config):
    """reconcile.Options.network: networks.ContainerNetwork, or None when neither the task nor the container
    has a network (nothing to attach, nothing to release)."""
    if not asks_network(params) and not has_attachment(params["state_root"], params["id"]):
        return None
    from ansible_collections.daemonless.oci.plugins.module_utils._ansible import networks
    return networks.ContainerNetwork(params, bundle_config)


def repair_needed(root, container_id, params, current, actions):
    """networks.repair_needed, for a container with an attachment ([] otherwise)."""
    if not has_attachment(root, container_id):
        return []
    from ansible_collections.daemonless.oci.plugins.module_utils._ansible import networks
    return networks.repair_needed(root, container_id, params, current, actions)
