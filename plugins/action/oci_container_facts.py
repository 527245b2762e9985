# -*- coding: utf-8 -*-
# Copyright: daemonless.oci contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""oci_container_facts runs as ansible's normal action runs it; its payload comes from the persistent payload cache
(plugins/plugin_utils/_payload_cache.py) when none of its files changed."""
from __future__ import annotations

from ansible.plugins.action.normal import ActionModule as NormalAction

from ansible_collections.daemonless.oci.plugins.plugin_utils._payload_cache import PayloadCacheMixin


class ActionModule(PayloadCacheMixin, NormalAction):
    pass
