#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: daemonless.oci contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r'''
module: oci_network
short_description: Make or remove a named CNI container network
version_added: 0.2.0
description:
  - Writes (or removes) a CNI network configuration list C(<config_dir>/<name>.conflist) that
    M(daemonless.oci.oci_container_state) attaches containers to with its O(daemonless.oci.oci_container_state#module:network) option.
  - A V(bridge) network is the C(bridge) plugin with C(host-local) addresses, then C(portmap)
    (published ports), C(firewall), and C(dnsname) (containers resolve each other by
    name through a dnsmasq on the bridge) when O(dns=true). Nothing is set up on the host until a
    container is attached; the plugins make the bridge, veths and rules then.
  - Idempotent; a changed network is rewritten, and each container on it is recreated on its next
    M(daemonless.oci.oci_container_state) run (its recorded settings no longer match).
  - A changed subnet, gateway or O(interface_name) leaves the bridge's old address (or the old bridge)
    stale. With no container on it, it is removed at once. Otherwise each recreated container gets the
    new address on the bridge, while the containers not recreated yet keep the old one (and their
    traffic) until theirs; the last of them to leave takes the old address (or the old bridge) with
    it. Only the containers of this O(state_root) are seen; a container of the same network under
    another state root may lose its gateway when the old address goes.
  - The plugins come from Debian's C(containernetworking-plugins) and
    C(golang-github-containernetworking-plugin-dnsname) (with C(dnsmasq-base)); the
    C(daemonless.oci.container) role installs them. A missing plugin fails the task naming the plugin
    and its package.
author:
  - daemonless.oci maintainers (@daemonless)
extends_documentation_fragment:
  - daemonless.oci.changes
  - daemonless.oci.state_root
attributes:
  check_mode:
    description: Reports what would change and writes nothing.
  diff_mode:
    description: Shows the configuration list before and after.
options:
  name:
    description:
      - The network's name (letters, digits and C(_ . -), at most 63 characters, no C(/)).
    type: str
    required: true
  state:
    description:
      - V(present) writes the network's configuration list.
      - V(absent) removes it, and once no container uses the network, the bridge, the address
        reservations and the firewall rules the plugins kept for it. A network that containers of
        O(state_root) use is refused unless O(force=true).
    type: str
    choices: [present, absent]
    default: present
  driver:
    description:
      - V(bridge) connects the containers to a Linux bridge on the host (O(interface_name)).
      - V(macvlan) gives each container its own MAC address on the host interface O(parent);
        published ports and O(dns) do not apply.
    type: str
    choices: [bridge, macvlan]
    default: bridge
  subnet:
    description:
      - The network's IPv4 subnet, such as V(10.89.1.0/24). It may not overlap another network of
        O(config_dir) (the error names that network).
      - Default is the first C(/24) of C(10.89.0.0/16) that no other network of O(config_dir) uses and no route of
        the host reaches (a LAN, a VPN, another runtime's bridge), kept afterwards.
    type: str
  gateway:
    description: The bridge's address (the containers' gateway). Default is the subnet's first address.
    type: str
  ip_range:
    description: The part of O(subnet) that containers get addresses from, such as V(10.89.1.128/25).
    type: str
  interface_name:
    description: The bridge's name. Default is C(oci) and 8 hex digits of the network name's hash.
    type: str
  parent:
    description: With O(driver=macvlan), the host interface the network sits on.
    type: str
  ip_masquerade:
    description: Masquerade the containers' traffic that leaves the host (their way out).
    type: bool
    default: true
  internal:
    description: No route out of the network (no default route, no masquerade); the host still reaches it.
    type: bool
    default: false
  isolate:
    description:
      - Drop traffic between this network and every other network that has O(isolate=true) (the
        C(firewall) plugin's C(ingressPolicy=same-bridge), the model of docker's bridge networks).
      - A network without O(isolate) still exchanges traffic with the others.
    type: bool
    default: false
  dns:
    description:
      - Name resolution between the network's containers (the C(dnsname) plugin). Each container is
        found by its id (and its hostname) under the search domain C(dns.oci), and its
        C(/etc/resolv.conf) names the bridge's address first.
    type: bool
    default: true
  force:
    description: With O(state=absent), remove the network even when containers use it (they keep their
      attachment until they are deleted or recreated).
    type: bool
    default: false
  config_dir:
    description: The CNI configuration directory.
    type: path
    default: /etc/cni/net.d
  cni_path:
    description: Where the CNI plugins are (directories separated by C(:)).
    type: str
    default: /usr/lib/cni:/opt/cni/bin
notes:
  - Run as root (C(become=true)) on Linux hosts.
seealso:
  - module: daemonless.oci.oci_container_state
'''

EXAMPLES = r'''
- name: A bridge network with name resolution
  daemonless.oci.oci_network:
    name: web
    subnet: 10.89.10.0/24

- name: A network with no way out
  daemonless.oci.oci_network:
    name: backend
    subnet: 10.89.11.0/24
    internal: true

- name: Remove it
  daemonless.oci.oci_network:
    name: backend
    state: absent
'''

RETURN = r'''
network:
  description: The network's settings (null once absent).
  returned: always
  type: dict
  contains:
    name:
      description: The name.
      type: str
      returned: success
    driver:
      description: bridge or macvlan.
      type: str
      returned: success
    subnet:
      description: The subnet.
      type: str
      returned: success
      sample: 10.89.10.0/24
    gateway:
      description: The gateway (the bridge's address).
      type: str
      returned: success
    ip_range:
      description: Where addresses come from (null is the whole subnet).
      type: str
      returned: success
    interface_name:
      description: The bridge (null for macvlan).
      type: str
      returned: success
    parent:
      description: The macvlan parent interface (null for a bridge).
      type: str
      returned: success
    ip_masquerade:
      description: Whether outgoing traffic is masqueraded.
      type: bool
      returned: success
    internal:
      description: Whether the network has no route out.
      type: bool
      returned: success
    isolate:
      description: Whether the network is isolated from other isolated networks.
      type: bool
      returned: success
    dns:
      description: Whether names are resolved.
      type: bool
      returned: success
path:
  description: The configuration list's file.
  returned: always
  type: str
  sample: /etc/cni/net.d/web.conflist
users:
  description: The containers of O(state_root) attached to the network.
  returned: when the network existed or was made
  type: list
  elements: str
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.daemonless.oci.plugins.module_utils._ansible.networks import network_argument_spec, run_network
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.errors import OCIError


def main():
    module = AnsibleModule(argument_spec=network_argument_spec(), supports_check_mode=True)
    try:
        result = run_network(module.params, check_mode=module.check_mode, diff=module._diff)
    except OCIError as exc:
        module.fail_json(msg="network %s: %s" % (module.params['name'], exc))
    module.exit_json(**result)


if __name__ == '__main__':
    main()
