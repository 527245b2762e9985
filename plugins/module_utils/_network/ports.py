# -*- coding: utf-8 -*-
# Copyright: daemonless.oci contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Published ports: `publish` entries as podman's and docker's `-p` write them, to portmap's portMappings.

No config.json field is applied here. An entry is
`[HOST_IP:]HOST_PORT[-END]:CONTAINER_PORT[-END][/tcp|/udp]`; a range maps
port for port and both sides must be as long. The result is the CNI
`portMappings` capability's list (one mapping per port), which the portmap
plugin turns into DNAT rules.

Without a host port (`80`, `:80`, `127.0.0.1::80`, as podman's `-p`), a
mapping has hostPort 0 until the container is attached: assign_free() then
picks a port the kernel calls free and no other container of the state root
publishes. The 0 is what the plan compares (so the task stays idempotent);
the port chosen is in the container's cache and its facts.
"""
import errno
import ipaddress
import socket

from ansible_collections.daemonless.oci.plugins.module_utils._runtime.errors import OCIError

PROTOCOLS = ("tcp", "udp")
MAX_RANGE = 1000  # ports one entry may publish: beyond that it is a typo, and thousands of DNAT rules


def _port_range(text, entry, option):
    first, dash, last = text.partition("-")
    try:
        if not first.isdigit() or (dash and not last.isdigit()):
            raise ValueError
        low, high = int(first), int(last) if dash else int(first)
    except ValueError:
        raise OCIError("%s: %r: %r is not a port or a port range (1-65535)" % (option, entry, text))
    for port in (low, high):
        if not 1 <= port <= 65535:
            raise OCIError("%s: %r: port %d is outside 1-65535" % (option, entry, port))
    if high < low:
        raise OCIError("%s: %r: range %s ends before it starts" % (option, entry, text))
    if high - low >= MAX_RANGE:
        raise OCIError("%s: %r: range %s publishes more than %d ports" % (option, entry, text, MAX_RANGE))
    return list(range(low, high + 1))


def parse_one(entry, option="publish"):
    """One entry's mappings: [{hostIP, hostPort, containerPort, protocol}], or OCIError naming OPTION and ENTRY."""
    if not isinstance(entry, str) or not entry:
        raise OCIError("%s: %r is not a port mapping such as \"8080:80\"" % (option, entry))
    text, _slash, protocol = entry.partition("/")
    protocol = protocol or "tcp"
    if protocol not in PROTOCOLS:
        raise OCIError("%s: %r: protocol must be tcp or udp, not %r" % (option, entry, protocol))
    host_ip = ""
    if text.startswith("["):  # [IPv6]:host:container
        address, bracket, text = text[1:].partition("]:")
        if not bracket:
            raise OCIError("%s: %r: an IPv6 address is written [ADDRESS]:HOST_PORT:CONTAINER_PORT" % (option, entry))
        host_ip = address
    parts = text.split(":")
    if len(parts) == 3 and not host_ip:
        host_ip = parts.pop(0)
    if len(parts) == 1:
        parts.insert(0, "")  # a container port alone: any host port
    if len(parts) != 2:
        raise OCIError("%s: %r: write HOST_PORT:CONTAINER_PORT, optionally IP: before and /udp after" % (option, entry))
    if host_ip:
        try:
            host_ip = str(ipaddress.ip_address(host_ip))
        except ValueError:
            raise OCIError("%s: %r: %r is not an IP address" % (option, entry, host_ip))
    container_ports = _port_range(parts[1], entry, option)
    host_ports = _port_range(parts[0], entry, option) if parts[0] else [0] * len(container_ports)
    if len(host_ports) != len(container_ports):
        raise OCIError("%s: %r: the host range has %d ports, the container range %d"
                       % (option, entry, len(host_ports), len(container_ports)))
    mappings = []
    for host_port, container_port in zip(host_ports, container_ports):
        mapping = {"hostPort": host_port, "containerPort": container_port, "protocol": protocol}
        if host_ip:
            mapping["hostIP"] = host_ip
        mappings.append(mapping)
    return mappings


def parse(entries, option="publish"):
    """All entries' mappings; a host port published twice (same address and protocol, or any address) is an error."""
    mappings = []
    for entry in entries or []:
        mappings.extend(parse_one(entry, option))
    seen = {}
    for mapping in mappings:
        if not mapping["hostPort"]:
            continue  # chosen at attach, never one taken
        key = (mapping["hostPort"], mapping["protocol"])
        address = mapping.get("hostIP", "")
        for other in seen.get(key, []):
            if not address or not other or other == address:
                raise OCIError("%s: host port %d/%s is published twice" % (option, key[0], key[1]))
        seen.setdefault(key, []).append(address)
    return mappings


def overlaps(mapping, other):
    """True when two mappings claim the same host port (the same address, or one of them on every address)."""
    if (mapping["hostPort"], mapping["protocol"]) != (other["hostPort"], other["protocol"]) or not mapping["hostPort"]:
        return False
    mine, theirs = mapping.get("hostIP", ""), other.get("hostIP", "")
    return not mine or not theirs or mine == theirs


def check_free(mappings, option="publish"):
    """OCIError naming OPTION when a host port is taken by a process of the host (it could not be reached)."""
    for mapping in mappings:
        if not mapping["hostPort"]:
            continue
        address = mapping.get("hostIP", "")
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        kind = socket.SOCK_STREAM if mapping["protocol"] == "tcp" else socket.SOCK_DGRAM
        probe = socket.socket(family, kind)
        try:
            probe.bind((address, mapping["hostPort"]))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise OCIError("%s: host port %s%d/%s is already in use on this host"
                               % (option, address + ":" if address else "", mapping["hostPort"],
                                  mapping["protocol"]))
            if exc.errno != errno.EADDRNOTAVAIL:
                raise OCIError("%s: host port %d/%s: %s" % (option, mapping["hostPort"], mapping["protocol"],
                                                            exc.strerror))
            raise OCIError("%s: %s is not an address of this host" % (option, address))
        finally:
            probe.close()


def assign_free(mappings, taken, option="publish"):
    """MAPPINGS with each hostPort 0 replaced by a port free on the host (the kernel's choice of a bound
    socket's port) that none of TAKEN (other containers' mappings) holds; OCIError naming OPTION when none."""
    assigned = []
    for mapping in mappings:
        if mapping["hostPort"]:
            assigned.append(mapping)
            continue
        address = mapping.get("hostIP", "")
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        kind = socket.SOCK_STREAM if mapping["protocol"] == "tcp" else socket.SOCK_DGRAM
        for _attempt in range(100):
            with socket.socket(family, kind) as probe:
                try:
                    probe.bind((address, 0))
                except OSError as exc:
                    raise OCIError("%s: no free host port for %d/%s: %s"
                                   % (option, mapping["containerPort"], mapping["protocol"], exc.strerror))
                port = probe.getsockname()[1]
            chosen = dict(mapping, hostPort=port)
            if not any(overlaps(chosen, other) for other in list(taken) + assigned):
                assigned.append(chosen)
                break
        else:
            raise OCIError("%s: no free host port for %d/%s"
                           % (option, mapping["containerPort"], mapping["protocol"]))
    return assigned
