# -*- coding: utf-8 -*-
# Copyright: daemonless.oci contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)


class ModuleDocFragment(object):
    DOCUMENTATION = r'''
options:
  state_root:
    description:
      - Directory where the runtime keeps the state of containers, one sub-directory per container.
      - The same as the C(--root) option of the C(ocirt) command. Containers are only visible
        to tasks and commands that use the same state root.
      - Set it once for all modules of the collection with C(module_defaults) and the
        C(group/daemonless.oci.oci) action group.
    type: path
    default: /run/ocirt
requirements:
  - Linux with namespaces and cgroups, run as root.
  - The Python library C(cffi) on the managed host (Debian C(python3-cffi-backend), or C(pip install cffi)).
'''
