#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: daemonless.oci contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r'''
module: oci_container_facts
short_description: Publish OCI containers and host capabilities as facts
version_added: 0.1.0
description:
  - Sets C(ansible_facts.oci_containers), a dict of the containers in O(state_root) by id, and
    C(ansible_facts.oci_host), the host's container capabilities, so that later tasks can use
    conditions such as C(ansible_facts.oci_containers.web.status == 'running').
  - The same data as M(daemonless.oci.oci_container_info), as facts.
author:
  - daemonless.oci maintainers (@daemonless)
extends_documentation_fragment:
  - daemonless.oci.label_selector
  - daemonless.oci.read_only
  - daemonless.oci.state_root
attributes:
  facts:
    support: full
    description: Sets C(oci_containers) and C(oci_host).
options:
  name:
    description:
      - Container ids to publish; all containers when empty.
      - An id named here that does not exist is published with C(status=absent) (and its C(id) only), so
        that C(ansible_facts.oci_containers[id].status) can be tested without C(default()).
    type: list
    elements: str
    default: []
    aliases: [id]
seealso:
  - module: daemonless.oci.oci_container_info
'''

EXAMPLES = r'''
- name: Gather container facts
  daemonless.oci.oci_container_facts:

- name: Restart web only when it stopped
  daemonless.oci.oci_container_state:
    id: web
    bundle: /srv/bundles/web
    restart: true
  when: ansible_facts.oci_containers.web.status == 'stopped'

- name: Facts for the containers a play cares about, whether they exist or not
  daemonless.oci.oci_container_facts:
    name: [web, db]

- name: Create db only where it does not exist yet
  daemonless.oci.oci_container_state:
    id: db
    bundle: /srv/bundles/db
  when: ansible_facts.oci_containers.db.status == 'absent'

- name: Facts of the containers labelled app=web only
  daemonless.oci.oci_container_facts:
    labels:
      app: web
'''

RETURN = r'''
ansible_facts:
  description: The facts set.
  returned: always
  type: dict
  contains:
    oci_containers:
      description:
        - Containers by id, each as M(daemonless.oci.oci_container_state) returns it, with its
          C(networks), C(drift) and C(network_problems) as M(daemonless.oci.oci_container_info) describes them.
        - "An id named in O(name) that does not exist is here as C({\"id\": ID, \"status\": \"absent\"})."
      returned: always
      type: dict
      sample:
        "web": {"id": "web", "status": "running", "pid": 4242, "labels": {"app": "web"}}
        "db": {"id": "db", "status": "absent"}
    oci_host:
      description: The host's container capabilities, as M(daemonless.oci.oci_container_info) returns them in RV(ignore:host).
      returned: always
      type: dict
msg:
  description: How many containers were found, and which ids named in O(name) are absent.
  returned: always
  type: str
  sample: "1 container(s) in /run/ocirt; absent: db"
'''

from ansible_collections.daemonless.oci.plugins.module_utils._ansible.selection import (
    absent_result, gather, selection_message)


def main():
    module, containers, missing, host = gather()
    published = dict((c['id'], c) for c in containers)
    published.update((name, absent_result(name)) for name in missing)
    module.exit_json(changed=False, msg=selection_message(containers, missing, module.params['state_root']),
                     ansible_facts=dict(oci_containers=published, oci_host=host))


if __name__ == '__main__':
    main()
