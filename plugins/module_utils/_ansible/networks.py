# -*- coding: utf-8 -*-
# Copyright: daemonless.oci contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The modules' side of networks: oci_network's work, and what oci_container_state and the facts take from _network.

Nothing here knows AnsibleModule: errors are OCIError, results are dicts.
"""
import os
import shutil

from ansible_collections.daemonless.oci.plugins.module_utils._network import attachment, bridge, cni, conflist, drift
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.errors import OCIError

IPAM_DIR = "/var/lib/cni/networks"  # host-local's reservations, one directory per network
DNSNAME_DIR = drift.DNSNAME_DIR  # dnsname's dnsmasq files, one directory per network


def network_argument_spec():
    """oci_network's argument_spec (a new dict each call)."""
    from ansible_collections.daemonless.oci.plugins.module_utils._ansible.argument_specs import STATE_ROOT_ARGSPEC
    spec = dict(
        name=dict(type='str', required=True),
        state=dict(type='str', default='present', choices=['present', 'absent']),
        driver=dict(type='str', default='bridge', choices=list(conflist.DRIVERS)),
        subnet=dict(type='str'),
        gateway=dict(type='str'),
        ip_range=dict(type='str'),
        interface_name=dict(type='str'),
        parent=dict(type='str'),
        ip_masquerade=dict(type='bool', default=True),
        internal=dict(type='bool', default=False),
        isolate=dict(type='bool', default=False),
        dns=dict(type='bool', default=True),
        force=dict(type='bool', default=False),
        config_dir=dict(type='path', default=conflist.DEFAULT_CONFIG_DIR),
        cni_path=dict(type='str', default=cni.DEFAULT_CNI_PATH),
    )
    spec.update(STATE_ROOT_ARGSPEC)
    return spec


def check_plugins(network, cni_path, option=None):
    """OCIError naming OPTION (else oci_network's option that wants the plugin), the plugin and its
    Debian package when a plugin of NETWORK is not installed: before anything is made."""
    for plugin in network["plugins"]:
        try:
            cni.find_plugin(plugin["type"], cni_path, network["name"])
        except cni.CNIError as exc:
            raise OCIError("%s: %s" % (option or ("dns" if plugin["type"] == "dnsname" else "driver"), exc))


def run_network(params, check_mode=False, diff=False):
    """Bring network params['name'] to params['state']; return oci_network's result."""
    name = conflist.validate_name(params["name"])
    config_dir = params["config_dir"]
    path = conflist.path_of(config_dir, name)
    before = None
    if os.path.exists(path):
        before = conflist.read(config_dir, name, "name")
    others = conflist.all_networks(config_dir)
    others.pop(name, None)
    result = dict(changed=False, path=path)
    if params["state"] == "absent":
        if before is None:
            result["network"] = None
            return result
        users = attachment.users_of(params["state_root"], name)
        if users and not params["force"]:
            raise OCIError("name: network %s is used by container(s) %s: remove them first, or force=true"
                           % (name, ", ".join(users)))
        result.update(changed=True, users=users, network=None)
        if diff:
            result["diff"] = dict(before=conflist.text_of(before), after="")
        if not check_mode:
            os.unlink(path)
            if not users:
                _remove_leftovers(name, conflist.settings_of(before))
        return result
    wanted = dict(params)
    existing = conflist.settings_of(before) if before else {}
    if not wanted.get("subnet") and existing.get("subnet"):
        wanted["subnet"] = existing["subnet"]  # an automatic subnet stays what it was
        wanted["gateway"] = wanted.get("gateway") or existing.get("gateway")
    taken = dict((other, str(subnets[0])) for other, subnets in
                 ((other, conflist.subnets_of(c)) for other, c in others.items()) if subnets)
    if not wanted.get("subnet"):
        taken.update(conflist.host_routes())
    settings = conflist.settings_from(wanted, taken)
    conflist.check_overlap(settings, others)
    built = conflist.build(settings)
    check_plugins(built, params["cni_path"])
    changed = before is None or conflist.text_of(before) != conflist.text_of(built)
    users = attachment.users_of(params["state_root"], name)
    result.update(changed=changed, network=settings, users=users)
    if diff:
        result["diff"] = dict(before=conflist.text_of(before) if before else "", after=conflist.text_of(built))
    if changed and not check_mode:
        conflist.write(config_dir, built)
        # The bridge keeps the old address (or name) and bridge's ADD refuses it: with no container on it, it
        # goes now; with some, the last of them to leave the old list takes it (bridge.tidy).
        if before is not None and not users and bridge.gateway_of(before) != bridge.gateway_of(built):
            _remove_leftovers(name, conflist.settings_of(before))
    return result


def _remove_leftovers(name, settings):
    """What the plugins keep per network once none of its containers is left: the bridge, IPAM's and dnsname's files."""
    if settings.get("interface_name"):
        bridge.remove(settings["interface_name"])
    for base in (IPAM_DIR, DNSNAME_DIR):
        directory = os.path.join(base, name)
        if os.path.isdir(directory):
            shutil.rmtree(directory, ignore_errors=True)


# --------------------------------------------------------------------------
# oci_container_state

def container_config(config, params):
    """CONFIG with what the task's network options add (container_state.desired's step)."""
    request = attachment.request_from(config, params)
    return attachment.with_network(config, request, params["state_root"], params["id"])


class ContainerNetwork:
    """reconcile.apply's hands on a container's network: attach before create, release after delete."""

    def __init__(self, params, bundle_config):
        self.params = params
        self.bundle_config = bundle_config
        self.attaching = None

    def attach(self):
        """What the container's create needs (the namespace, its files' mount points); the plugins' work
        goes on meanwhile, ready() waits for it."""
        request = attachment.request_from(self.bundle_config, self.params)
        if request.mode == "cni":
            for network in request.networks.values():
                check_plugins(network, request.cni_path, "network")
        self.attaching = attachment.begin_attach(self.params["state_root"], self.params["id"], request)

    def ready(self):
        """The attachment complete (before the container starts); OCIError with everything undone when not."""
        attaching, self.attaching = self.attaching, None
        if attaching is not None:
            attaching.finish()

    def release(self):
        attaching, self.attaching = self.attaching, None
        if attaching is not None:
            attaching.abandon()
        attachment.release(self.params["state_root"], self.params["id"], self.params.get("cni_path"))


def release(root, container_id, cni_path=None):
    return attachment.release(root, container_id, cni_path)


# --------------------------------------------------------------------------
# facts and info

def container_facts(root, container_id):
    """{networks, drift} of a container: its attachments, and CNI CHECK's verdict when one was lost."""
    found = attachment.describe(root, container_id)
    problems = [problem for _index, problem in drift.problems(os.path.abspath(root), container_id)] if found else []
    return {"networks": found, "drift": {"network": "missing"} if problems else {}, "network_problems": problems}


# --------------------------------------------------------------------------
# drift repaired by a converge

def repair_needed(root, container_id, params, current, actions):
    """What CNI CHECK finds missing of a running container that this converge keeps running as it is ([]
    otherwise): the converge re-attaches it in place (repair)."""
    if params["state"] != "running" or not current or current.get("status") != "running":
        return []
    if any(action.verb in ("stop", "delete", "create") for action in actions):
        return []  # made again, with a new attachment
    if not attachment.has_attachment(root, container_id):
        return []
    return [problem for _index, problem in drift.problems(os.path.abspath(root), container_id)]


def repair(root, container_id, current):
    """Re-attach in place what repair_needed found (drift.repair); the networks re-attached."""
    return drift.repair(root, container_id, current.get("pid"))
