# -*- coding: utf-8 -*-
# Copyright: daemonless.oci contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Where CNI's files are by default: constants only, for the modules' argument specs.

A leaf, importing nothing, so that a module's options do not ship the
network code with every module (Ansible's payload builder follows imports).
cni.py keeps its own copy of DEFAULT_CNI_PATH: it runs alone as a poststop
hook and imports the standard library only (tests/unit/test_payload.py
checks that the two agree).
"""

DEFAULT_CNI_PATH = "/usr/lib/cni:/opt/cni/bin"
DEFAULT_CONFIG_DIR = "/etc/cni/net.d"
