# -*- coding: utf-8 -*-
# Copyright: daemonless.oci contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The runtime's defaults that the modules' options repeat: constants only, no config.json field.

A leaf, importing nothing: the modules' argument specs take their defaults
from here, and Ansible's payload builder ships every module a file imports,
so importing the code that applies these (state.py, operations/create.py)
for them would ship the whole runtime with every module.
"""

DEFAULT_ROOT = "/run/ocirt"  # the state root
DEFAULT_LOG_MAX_SIZE = 20 << 20  # bytes of a monitor's container.log before it rotates
DEFAULT_LOG_MAX_FILES = 5  # rotated logs kept
