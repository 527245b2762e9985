# -*- coding: utf-8 -*-
# Copyright: daemonless.oci contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A networked container's /etc/resolv.conf, /etc/hosts and /etc/hostname: made for it, outside its image.

No config.json field is applied here; attachment.with_network bind-mounts
the files (mounts with destination /etc/resolv.conf, /etc/hosts,
/etc/hostname). The host's resolv.conf gives the defaults, less its
loopback name servers where the container has a network of its own (the
host's 127.0.0.53 is not the container's).
"""
import ipaddress

HOST_RESOLV_CONF = "/etc/resolv.conf"


def read_host_resolv(path=HOST_RESOLV_CONF):
    """(name servers, search domains, options) of the host's resolv.conf; empty when it has none."""
    servers, search, options = [], [], []
    try:
        with open(path) as handle:
            lines = handle.read(65536).splitlines()
    except (OSError, UnicodeDecodeError):
        return servers, search, options
    for line in lines:
        words = line.split()
        if not words or words[0].startswith(("#", ";")):
            continue
        if words[0] == "nameserver" and len(words) > 1:
            servers.append(words[1])
        elif words[0] in ("search", "domain"):
            search = words[1:]
        elif words[0] == "options":
            options.extend(words[1:])
    return servers, search, options


def resolv_conf(servers, search, options):
    """The file's text (at most 3 name servers: the resolver reads no more)."""
    lines = ["nameserver %s" % server for server in servers[:3]]
    if search:
        lines.insert(0, "search %s" % " ".join(search))
    if options:
        lines.append("options %s" % " ".join(options))
    return "\n".join(lines) + "\n"


def is_loopback(address):
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return True


def hosts(hostname, addresses, extra):
    """The file's text: localhost, the container's addresses under its hostname, then EXTRA {name: address}."""
    lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
    lines.extend("%s\t%s" % (address, hostname) for address in addresses)
    if not addresses:
        lines.append("127.0.1.1\t%s" % hostname)
    lines.extend("%s\t%s" % (address, name) for name, address in sorted(extra.items()))
    return "\n".join(lines) + "\n"


def hostname_file(hostname):
    return hostname + "\n"
