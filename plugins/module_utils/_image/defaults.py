# -*- coding: utf-8 -*-
# Copyright: daemonless.oci contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Where the image store is by default: a constant for the modules' argument specs.

A leaf, importing nothing, so that a module's options do not ship the
store's code with every module (Ansible's payload builder follows imports).
"""

DEFAULT_IMAGE_ROOT = "/var/lib/ocirt/images"
