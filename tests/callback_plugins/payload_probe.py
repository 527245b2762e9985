# -*- coding: utf-8 -*-
# Copyright: daemonless.oci contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A test callback: records every payload build (call of ansible's recursive finder) and every task result.

tests/runtime/test_payload_cache_playbooks.py enables it. It is loaded by ansible-playbook's
main process before the workers fork, so the finder it wraps is the one every
worker runs: a build is counted where it happens, not inferred from a time.
"""
from __future__ import annotations

import json
import os

from ansible.executor import module_common
from ansible.plugins.callback import CallbackBase

DOCUMENTATION = r'''
name: payload_probe
type: aggregate
short_description: Records AnsiballZ payload builds and task results (daemonless.oci's tests)
description:
  - Appends one JSON line per call of ansible's recursive module_utils finder and per task result
    to the file named by the environment variable E(PAYLOAD_PROBE_LOG).
requirements:
  - enabled in ANSIBLE_CALLBACKS_ENABLED
'''

LOG = os.environ.get("PAYLOAD_PROBE_LOG")


def _record(event):
    if LOG:
        line = (json.dumps(event, default=str, sort_keys=True) + "\n").encode()
        fd = os.open(LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)


_finder = module_common.recursive_finder


def _counted_finder(name, module_fqn, *args, **kwargs):
    _record({"build": module_fqn})
    return _finder(name, module_fqn, *args, **kwargs)


module_common.recursive_finder = _counted_finder


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "payload_probe"
    CALLBACK_NEEDS_ENABLED = True

    def _result(self, result, status):
        _record({"task": result._task.get_name(), "status": status, "result": result._result})

    def v2_runner_on_ok(self, result):
        self._result(result, "ok")

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._result(result, "failed")
