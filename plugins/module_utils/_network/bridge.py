# -*- coding: utf-8 -*-
# Copyright: daemonless.oci contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A bridge network's host side once its list changed: the bridge's stale address, the bridge of an old name.

No config.json field is applied here. The bridge plugin makes the bridge and
gives it the gateway's address on the first ADD, and never takes either
back: its DEL removes the container's veth, address and rules only. A list
rewritten with another subnet or gateway (oci_network) leaves the bridge
with the old address, and bridge's ADD (1.1.1, ensureAddr) refuses a
bridge whose first IPv4 address is not the gateway's ("already has an IP
address different from"); a list rewritten with another bridge name leaves
the old bridge behind for good. So:

- before an ADD (prepare): the bridge's addresses no container of the state
  root is attached with are removed; those some container still uses (a
  container of the old list, not yet recreated) are kept, after the
  gateway's, which the plugin then finds first: the old containers keep
  their gateway until their own recreate;
- after a release (tidy): what the released attachment used and no other
  container uses, unless the network's current list wants it, is removed
  (the old address, or the whole old bridge with its rules);
- oci_network, rewriting a list no container is attached with, removes the
  old bridge with its rules and reservations at once (networks.py).

Only the containers of one state root are known: a container of the same
network under another state root is not seen (as for `absent`).
"""
import ipaddress
import json
import os
import shlex
import subprocess

from ansible_collections.daemonless.oci.plugins.module_utils._network import cni, conflist
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.errors import OCIError

# Chains where plugins leave rules naming a bridge once its last container is gone: dnsname opens DNS to its
# dnsmasq (INPUT), the firewall plugin's ingressPolicy keeps the bridge in its isolation stages (1.1.1).
BRIDGE_RULE_CHAINS = ("INPUT", "CNI-ISOLATION-STAGE-1", "CNI-ISOLATION-STAGE-2")


def gateway_of(network):
    """(bridge name, gateway address/prefix) a bridge list gives its bridge, or None (another driver, no
    gateway on the bridge, a list it cannot be read from)."""
    for plugin in network.get("plugins") or []:
        if not isinstance(plugin, dict) or plugin.get("type") != "bridge":
            continue
        name = plugin.get("bridge") or "cni0"  # the plugin's own default
        ipam = plugin.get("ipam") if isinstance(plugin.get("ipam"), dict) else {}
        if not plugin.get("isGateway") or ipam.get("type") != "host-local":
            return None
        try:
            entry = ipam["ranges"][0][0]
            subnet = ipaddress.ip_network(entry["subnet"], strict=False)
            gateway = ipaddress.ip_address(entry["gateway"]) if entry.get("gateway") else subnet.network_address + 1
        except (KeyError, IndexError, TypeError, ValueError):
            return None
        if subnet.version != 4:
            return None
        return name, "%s/%d" % (gateway, subnet.prefixlen)
    return None


def addresses(bridge):
    """BRIDGE's IPv4 addresses (address/prefix), in the kernel's order (the plugin's); [] without the link."""
    if not os.path.isdir(os.path.join("/sys/class/net", bridge)):
        return []
    listed = subprocess.run(["ip", "-j", "-4", "addr", "show", "dev", bridge], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, universal_newlines=True, check=False)
    try:
        links = json.loads(listed.stdout or "[]")
    except ValueError:
        return []
    return ["%s/%s" % (info["local"], info["prefixlen"]) for link in links for info in link.get("addr_info") or []
            if info.get("family") == "inet" and "local" in info]


def _in_use(root, exclude=None):
    """{(bridge, address)} the attachments of ROOT's containers (but EXCLUDE) were made with."""
    used = set()
    for _other, cache in cni.caches(root, exclude):
        for attached in cache.get("attachments") or []:
            found = gateway_of(attached.get("config") or {})
            if found:
                used.add(found)
    return used


def _ip(*argv):
    """`ip ARGV`; its error when it failed, None when not."""
    done = subprocess.run(("ip",) + argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          universal_newlines=True, check=False)
    return done.stderr.strip() or "exit status %d" % done.returncode if done.returncode else None


def prepare(root, container_id, network):
    """NETWORK's bridge made ready for container CONTAINER_ID's ADD (ROOT's other containers keep theirs);
    the error of an `ip` that failed, else None (the ADD then says what is wrong)."""
    wanted = gateway_of(network)
    if wanted is None:
        return None
    bridge, gateway = wanted
    present = addresses(bridge)
    stale = [address for address in present if address != gateway]
    if not stale:
        return None
    used = _in_use(root, exclude=container_id)
    kept = [address for address in stale if (bridge, address) in used]
    if present[0] == gateway:
        removed, added = [address for address in stale if address not in kept], []
    else:
        # The plugin wants the gateway's address first, and the kernel lists a link's addresses in the order
        # they were given: so the gateway's, then the old ones again, for the containers still on them.
        removed, added = stale, ([] if gateway in present else [gateway]) + kept
    for address in removed:
        problem = _ip("addr", "del", address, "dev", bridge)
        if problem:
            return "%s: removing its address %s: %s" % (bridge, address, problem)
    for address in added:
        problem = _ip("addr", "add", address, "dev", bridge)
        if problem:
            return "%s: adding address %s: %s" % (bridge, address, problem)
    return None


def tidy(root, released, current):
    """After a release of attachments RELEASED (their cached configs): what they used that neither ROOT's
    other containers nor the network's CURRENT list ({name: conflist or None}) want, removed."""
    used = _in_use(root)
    for config in released:
        found = gateway_of(config)
        if found is None or found in used:
            continue
        bridge, address = found
        wanted = gateway_of(current.get(config.get("name")) or {})
        if wanted == found:
            continue
        if wanted is None or wanted[0] != bridge:
            if not any(other == bridge for other, _address in used):
                remove(bridge)
        elif address in addresses(bridge):
            _ip("addr", "del", address, "dev", bridge)


def current_lists(config_dir, names):
    """{name: its conflist, or None when it is gone or unreadable} of the networks NAMES in CONFIG_DIR."""
    lists = {}
    for name in names:
        try:
            lists[name] = conflist.read(config_dir, name)
        except OCIError:
            lists[name] = None
    return lists


def remove(bridge):
    """The bridge BRIDGE and the rules naming it that outlive its containers (BRIDGE_RULE_CHAINS)."""
    for chain in BRIDGE_RULE_CHAINS:
        listed = subprocess.run(["iptables", "-w", "-S", chain], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                universal_newlines=True, check=False)
        for line in listed.stdout.splitlines():
            words = shlex.split(line)
            if words[:2] == ["-A", chain] and ("-i" in words or "-o" in words) and bridge in words:
                subprocess.run(["iptables", "-w", "-D"] + words[1:], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, check=False)
    if os.path.isdir(os.path.join("/sys/class/net", bridge)):
        subprocess.run(["ip", "link", "delete", bridge, "type", "bridge"], check=False,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
