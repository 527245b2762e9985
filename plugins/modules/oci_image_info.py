#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: daemonless.oci contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r'''
module: oci_image_info
short_description: List the images in the host's image store
version_added: 0.2.0
description:
  - Returns the images of the store at O(image_root) (all, or O(name)) with their digests, size,
    configuration, the bundles built from them and the containers of O(state_root) using those.
    Changes nothing.
author:
  - daemonless.oci maintainers (@daemonless)
extends_documentation_fragment:
  - daemonless.oci.image_root
  - daemonless.oci.read_only
  - daemonless.oci.state_root
options:
  name:
    description:
      - Image names (each with its registry), as M(containers.podman.podman_image_info) takes them; one name may be
        given as a string. All images when not given. A name not in the store is left out of RV(images).
    type: list
    elements: str
seealso:
  - module: daemonless.oci.oci_image
'''

EXAMPLES = r'''
- name: Images on the host
  daemonless.oci.oci_image_info:
  register: store

- name: Names no container uses
  ansible.builtin.debug:
    msg: "{{ store.images | rejectattr('containers') | map(attribute='name') }}"
'''

RETURN = r'''
images:
  description: The images, sorted by name, each as M(daemonless.oci.oci_image) returns it, with RV(images[].containers).
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: The canonical name.
      type: str
    digest:
      description: The digest the name resolved to when pulled.
      type: str
    size:
      description: Bytes of the manifest, configuration and compressed layers.
      type: int
    platform:
      description: C(os/architecture[/variant]).
      type: str
    used_by:
      description: Bundle directories built from the image.
      type: list
      elements: str
    containers:
      description: Ids of the containers of O(state_root) whose bundle is built from the image.
      type: list
      elements: str
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.daemonless.oci.plugins.module_utils._ansible.argument_specs import image_info_argument_spec
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.errors import OCIError


def main():
    module = AnsibleModule(argument_spec=image_info_argument_spec(), supports_check_mode=True)
    from ansible_collections.daemonless.oci.plugins.module_utils._image import pull
    try:
        images = pull.describe(module.params['image_root'], module.params['name'], module.params['state_root'])
    except OCIError as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(changed=False, images=images)


if __name__ == '__main__':
    main()
