#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: daemonless.oci contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r'''
module: oci_container_info
short_description: Report OCI containers and what the host offers them
version_added: 0.1.0
description:
  - Returns the full state of the containers in O(state_root) (all, or those named) and the
    host's container capabilities (cgroup layout and controllers, user, time and cgroup
    namespaces, seccomp, LSMs). Changes nothing.
  - M(daemonless.oci.oci_container_facts) returns the same as facts.
author:
  - daemonless.oci maintainers (@daemonless)
extends_documentation_fragment:
  - daemonless.oci.label_selector
  - daemonless.oci.read_only
  - daemonless.oci.state_root
options:
  name:
    description: Container ids to report; all containers when empty.
    type: list
    elements: str
    default: []
    aliases: [id]
  logs_tail:
    description:
      - Return the last this many lines of each selected container's log in RV(containers[].logs) and
        RV(containers[].log_entries) (0 to 10000). The log is the one the container's monitor writes
        (a running service's as well as a finished job's), rotated files included.
      - When neither this nor O(logs_since) is given, no log is read.
    type: int
  logs_since:
    description:
      - Return only the log lines written since this time, as C(podman logs --since) - an RFC 3339 time in
        UTC (V(2026-01-02T15:04:05Z)) or a duration before now (V(90s), V(10m), V(2h)).
      - With O(logs_tail), the last O(logs_tail) of those lines.
    type: str
seealso:
  - module: daemonless.oci.oci_container_facts
  - module: daemonless.oci.oci_container_state
'''

EXAMPLES = r'''
- name: All containers of the host
  daemonless.oci.oci_container_info:
  register: oci

- name: The last 50 lines of the web containers' logs from the last 10 minutes
  daemonless.oci.oci_container_info:
    labels:
      app: web
    logs_tail: 50
    logs_since: 10m
  register: web

- name: Show them, stderr marked
  ansible.builtin.debug:
    msg: "{{ item.time }} {{ item.stream }}: {{ item.text }}"
  loop: "{{ web.containers | map(attribute='log_entries') | flatten }}"

- name: Fail when the web container is not running
  ansible.builtin.assert:
    that: (oci.containers | selectattr('id', 'equalto', 'web') | first).status == 'running'
'''

RETURN = r'''
containers:
  description:
    - The containers, sorted by id, each as M(daemonless.oci.oci_container_state) returns it.
    - A named container that does not exist is left out and listed in RV(missing).
    - Each also has C(networks), its network attachments (M(daemonless.oci.oci_container_state)'s
      O(daemonless.oci.oci_container_state#module:network)), each with C(network), C(interface),
      C(addresses), C(mac), C(gateway) and C(published) (the port mappings); C(drift), which is
      a dict that maps C(network) to V(missing) when CNI CHECK finds an attachment lost (say, its DNAT or
      firewall rules flushed, or the network's dnsmasq killed; the next M(daemonless.oci.oci_container_state)
      run with O(daemonless.oci.oci_container_state#module:state=running) re-attaches it in place); and
      C(network_problems), CHECK's messages.
  returned: always
  type: list
  elements: dict
  sample: [{"id": "web", "status": "running", "pid": 4242, "bundle": "/srv/bundles/web", "labels": {"app": "web"}}]
  contains:
    labels:
      description: The container's labels (see O(daemonless.oci.oci_container_state#module:labels)).
      type: dict
      returned: always
    logs:
      description:
        - The selected log lines' text, oldest first (stdout and stderr as they came).
        - Invalid UTF-8 is replaced; a line longer than 16 KiB is cut, and says how many bytes were cut.
        - Empty for a container created without a monitor (it has no log).
      type: list
      elements: str
      returned: when O(logs_tail) or O(logs_since) is given
    log_entries:
      description: The same lines with their stream and time.
      type: list
      elements: dict
      returned: when O(logs_tail) or O(logs_since) is given
      contains:
        stream:
          description: V(stdout) or V(stderr).
          type: str
        time:
          description: When the line (its first piece) was written, RFC 3339 in UTC with nanoseconds.
          type: str
        text:
          description: The line, without its newline.
          type: str
      sample: [{"stream": "stderr", "time": "2026-01-02T15:04:05.123456789Z", "text": "listening on :80"}]
    logs_truncated:
      description: Whether older selected lines were left out to keep the text returned under 1 MiB per container.
      type: bool
      returned: when O(logs_tail) or O(logs_since) is given
missing:
  description:
    - Named containers that do not exist (M(daemonless.oci.oci_container_facts) publishes the same ids
      with C(status=absent)).
  returned: always
  type: list
  elements: str
msg:
  description: How many containers were found, and which named ids are absent.
  returned: always
  type: str
  sample: "1 container(s) in /run/ocirt; absent: db"
host:
  description: What the host offers containers.
  returned: always
  type: dict
  contains:
    kernel:
      description: 'Kernel release.'
      type: str
      returned: always
    architecture:
      description: 'Machine architecture.'
      type: str
      returned: always
    cgroup:
      description: Cgroup layout (mode v1, v2 or hybrid; v1 hierarchies; the unified mount and its controllers).
      type: dict
      returned: always
    user_namespaces:
      description: 'Whether user namespaces can be created.'
      type: bool
      returned: always
    time_namespace:
      description: 'Whether the kernel has time namespaces.'
      type: bool
      returned: always
    cgroup_namespace:
      description: 'Whether the kernel has cgroup namespaces.'
      type: bool
      returned: always
    seccomp:
      description: 'Whether the kernel has seccomp.'
      type: bool
      returned: always
    seccomp_actions:
      description: 'The seccomp actions the kernel offers.'
      type: list
      elements: str
      returned: always
    lsms:
      description: 'The active Linux security modules.'
      type: list
      elements: str
      returned: always
    apparmor:
      description: 'Whether AppArmor is active.'
      type: bool
      returned: always
    selinux:
      description: 'Whether SELinux is active.'
      type: bool
      returned: always
'''

from ansible_collections.daemonless.oci.plugins.module_utils._ansible.selection import (
    INFO_ARGSPEC, add_logs, gather, selection_message)


def main():
    module, containers, missing, host = gather(INFO_ARGSPEC)
    add_logs(module, module.params['state_root'], containers)
    module.exit_json(changed=False, msg=selection_message(containers, missing, module.params['state_root']),
                     containers=containers, missing=missing, host=host)


if __name__ == '__main__':
    main()
