# -*- coding: utf-8 -*-
# Copyright: daemonless.oci contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)


class ModuleDocFragment(object):
    # The modules that use the image store: oci_image, oci_image_info and oci_bundle. The others of the
    # action group have no image_root, and an option set for the group reaches every module of it.
    DOCUMENTATION = r'''
options:
  image_root:
    description:
      - The image store directory, where M(daemonless.oci.oci_image) pulls images to.
      - Only M(daemonless.oci.oci_image), M(daemonless.oci.oci_image_info) and M(daemonless.oci.oci_bundle)
        have this option (and the items of M(daemonless.oci.oci_containers)), so C(module_defaults) with the
        C(group/daemonless.oci.oci) action group cannot set it - the other modules of the group would refuse
        it. Set it per module instead, in C(module_defaults) under each module's name.
    type: path
    default: /var/lib/ocirt/images
'''
