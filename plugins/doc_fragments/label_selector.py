# -*- coding: utf-8 -*-
# Copyright: daemonless.oci contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)


class ModuleDocFragment(object):
    # The labels selector that oci_container_info and oci_container_facts share (selection.SELECTION_ARGSPEC).
    DOCUMENTATION = r'''
options:
  labels:
    description:
      - Only containers that carry every one of these labels with the same value
        (see O(daemonless.oci.oci_container_state#module:labels)); all containers when empty.
      - Combined with O(name), a container must be named and match.
    type: dict
    default: {}
'''
