# -*- coding: utf-8 -*-
# Copyright: daemonless.oci contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Drift of a container's network: CNI CHECK of each attachment, and its repair in place.

No config.json field is applied here. CHECK is run as the CNI spec says:
each plugin of the list as attached (the cache's), in order, with the
attachment's ADD result as prevResult and the same CNI_ARGS, IFNAME, NETNS
and runtimeConfig as its ADD. Two packaged plugins need help:

- portmap 1.1.1 (Debian's containernetworking-plugins 1.1.1+ds1) checks
  the container's IPv4 DNAT chain in ip6tables too, where it never is, so
  its CHECK fails on every healthy IPv4 attachment whenever ip6tables works
  (fixed upstream in plugins 1.3.0, "Only check ipv6 when an IPv6 is
  configured"). Its iptables library looks `ip6tables` up in PATH, and a
  missing one means "IPv6 not usable": for an attachment without an IPv6
  address its CHECK runs with a PATH that holds `iptables` only, which is
  what 1.3.0 checks. A lost DNAT rule or chain then fails it.
- dnsname 1.3.1 (Debian's golang-github-containernetworking-plugin-dnsname,
  unmaintained upstream) lists the parent of the network's directory
  (/run/containers/cni/dnsname) for its `addnhosts` and `dnsmasq.conf`,
  which live one level down, so its CHECK fails on every attachment. Its
  CHECK is not run; what it means to check is read here instead: the
  network's dnsmasq runs (its pidfile names a live dnsmasq) and the
  container's name is in the network's addnhosts.

Repair (a converge of a running container that drifted) re-attaches the
failing attachments in place: CNI DEL, then ADD with the address it had
(host-local's IP argument), in the same namespace, so the container keeps
running, its address and its /etc files. A namespace whose bind mount was
removed is bound again from the container's process first.
"""
import os
import shutil

from ansible_collections.daemonless.oci.plugins.module_utils._network import cni, netns
from ansible_collections.daemonless.oci.plugins.module_utils._network.attachment import cni_args_for
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.errors import OCIError

DNSNAME_DIR = "/run/containers/cni/dnsname"  # dnsname's files, one directory per network
IPV4_TOOLS = "ipv4-tools"  # in the container's network directory: portmap's PATH for its CHECK


def _has_ipv6(result):
    return any(":" in (entry.get("address") or "") for entry in (result or {}).get("ips") or [])


def _ipv4_tools(root, container_id):
    """A directory holding only `iptables` (a link to the host's): portmap 1.1.1's PATH for CHECK."""
    directory = os.path.join(cni.container_dir(root, container_id), IPV4_TOOLS)
    link = os.path.join(directory, "iptables")
    if not os.path.lexists(link):
        iptables = shutil.which("iptables", path=cni.CLEAN_PATH)
        if iptables is None:
            return cni.CLEAN_PATH  # then portmap's own error says iptables is missing
        os.makedirs(directory, mode=0o700, exist_ok=True)
        os.symlink(iptables, link)
    return directory


def _pid_of(path):
    try:
        with open(path, "rb") as handle:
            return int(handle.read(32).strip() or b"0")
    except (OSError, ValueError):
        return 0


def _dnsname_problem(network, attachment, container_id):
    """None when the network's dnsmasq runs and knows the container's name, else what is wrong."""
    name = network["name"]
    directory = os.path.join(DNSNAME_DIR, name)
    pid = _pid_of(os.path.join(directory, "pidfile"))
    try:
        with open("/proc/%d/comm" % pid, "rb") as handle:
            alive = pid > 0 and handle.read().strip() == b"dnsmasq"
    except OSError:
        alive = False
    if not alive:
        return "network %s: dnsname: its dnsmasq is not running" % name
    addresses = [entry["address"].split("/")[0] for entry in (attachment.get("result") or {}).get("ips") or []]
    try:
        with open(os.path.join(directory, "addnhosts"), "rb") as handle:
            lines = [line.decode("utf-8", "replace").split() for line in handle.read(1 << 22).splitlines()]
    except OSError:
        lines = []
    if not any(words[:1] and words[0] in addresses and container_id in words[1:] for words in lines):
        return "network %s: dnsname: %s is not in dnsmasq's hosts" % (name, container_id)
    return None


def problems(root, container_id):
    """[(attachment index or None for the namespace, sentence)] of what is missing; [] when all is in place
    or nothing is attached."""
    try:
        cache = cni.read_cache(root, container_id)
    except cni.CNIError as exc:
        return [(None, str(exc))]
    if cache is None:
        return []
    path = cni.netns_path(root, container_id)
    if not os.path.ismount(path):
        return [(None, "network namespace %s is gone" % path)]
    found = []
    cni_path = cache.get("cniPath") or cni.DEFAULT_CNI_PATH
    for index, attachment in enumerate(cache.get("attachments") or []):
        if attachment.get("result") is None:
            found.append((index, "network %s: its ADD never finished" % attachment.get("network")))
            continue
        network = attachment["config"]
        for plugin in network.get("plugins") or []:
            kind = plugin.get("type")
            if kind == "dnsname":
                problem = _dnsname_problem(network, attachment, container_id)
                if problem:
                    found.append((index, problem))
                continue
            tools = cni.CLEAN_PATH
            if kind == "portmap" and not _has_ipv6(attachment["result"]):
                tools = _ipv4_tools(root, container_id)
            try:
                cni.finish(cni.start("CHECK", plugin, network, container_id, path, attachment["ifname"],
                                     cni_args=attachment.get("cniArgs", ""), cni_path=cni_path,
                                     prev_result=attachment["result"], runtime_config=attachment.get("runtimeConfig"),
                                     path=tools))
            except cni.CNIError as exc:
                found.append((index, str(exc)))
    return found


def rebind(root, container_id, pid):
    """Bind the running container's network namespace (its process PID's) at its path again."""
    path = cni.netns_path(root, container_id)
    if not os.path.exists(path):
        fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o444)
        os.close(fd)
    netns.bind("/proc/%d/ns/net" % pid, path)


def repair(root, container_id, pid):
    """Re-attach in place what CHECK finds missing (DEL, then ADD with the same address); the networks
    re-attached. OCIError naming the network when an ADD fails (the cache keeps what DEL needs)."""
    root = os.path.abspath(root)
    found = problems(root, container_id)
    if any(index is None for index, _problem in found):
        if not pid:
            raise OCIError("network: %s" % "; ".join(problem for _index, problem in found))
        rebind(root, container_id, pid)
        found = problems(root, container_id)
    cache = cni.read_cache(root, container_id)
    path = cni.netns_path(root, container_id)
    cni_path = cache.get("cniPath") or cni.DEFAULT_CNI_PATH
    repaired = []
    for index in sorted(set(index for index, _problem in found if index is not None)):
        attachment = cache["attachments"][index]
        failures = cni.delete_attachment(attachment, container_id, path, cni_path)
        if failures:
            raise OCIError("network: %s" % "; ".join(failures))
        address = _first_address(attachment)
        attachment["cniArgs"] = cni_args_for(container_id, address)
        attachment["result"] = None
        cni.write_cache(root, container_id, cache)
        result = None
        try:
            for plugin in attachment["config"]["plugins"]:
                result = cni.invoke("ADD", plugin, attachment["config"], container_id, path, attachment["ifname"],
                                    cni_args=attachment["cniArgs"], cni_path=cni_path, prev_result=result,
                                    runtime_config=attachment.get("runtimeConfig"))
        except cni.CNIError as exc:
            raise OCIError("network: repair: %s" % exc)
        attachment["result"] = result
        cni.write_cache(root, container_id, cache)
        repaired.append(attachment["network"])
    return repaired


def _first_address(attachment):
    for entry in (attachment.get("result") or {}).get("ips") or []:
        return entry["address"].split("/")[0]
    args = dict(part.partition("=")[::2] for part in (attachment.get("cniArgs") or "").split(";"))
    return args.get("IP") or None
