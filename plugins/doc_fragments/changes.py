# -*- coding: utf-8 -*-
# Copyright: daemonless.oci contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)


class ModuleDocFragment(object):
    # What the modules that change the host share: oci_bundle and oci_container_state. Each
    # module's own attributes add the description of what its check mode and diff show.
    DOCUMENTATION = r'''
options: {}
author:
  - daemonless.oci maintainers (@daemonless)
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
'''
