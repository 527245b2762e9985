# -*- coding: utf-8 -*-
# Copyright: daemonless.oci contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What every module of the collection shares: the state_root option, the cffi check, result shapes,
and the whole work of the two read-only modules (info and facts).

The runtime core knows nothing of Ansible; this is the one place that
turns its objects into module results.
"""
import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.daemonless.oci.plugins.module_utils._ansible.argument_specs import STATE_ROOT_ARGSPEC
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.linux import syscalls
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.errors import OCIError
# The info and facts modules' options.
SELECTION_ARGSPEC = dict(name=dict(type='list', elements='str', default=[], aliases=['id']))
SELECTION_ARGSPEC.update(STATE_ROOT_ARGSPEC)


def require_cffi(module):
    """fail_json the Ansible way when the managed host lacks cffi."""
    if syscalls.CFFI_IMPORT_ERROR is not None:
        module.fail_json(msg=missing_required_lib('cffi'),
                         exception=''.join(traceback.format_exception(
                             type(syscalls.CFFI_IMPORT_ERROR), syscalls.CFFI_IMPORT_ERROR,
                             syscalls.CFFI_IMPORT_ERROR.__traceback__)))


def container_result(state):
    """A container's state (oci_state) in the shape the modules return: snake_case keys."""
    if state is None:
        return None
    return {
        'id': state['id'],
        'status': state['status'],
        'pid': state.get('pid') or 0,
        'bundle': state.get('bundle'),
        'rootfs': state.get('rootfs'),
        'created': state.get('created'),
        'started': state.get('started'),
        'finished': state.get('finished'),
        'exit_code': state.get('exitCode'),
        'exit_signal': state.get('exitSignal'),
        'oom_killed': state.get('oomKilled'),
        'exit_reason': state.get('exitReason'),
        'log_path': state.get('logPath'),
        'monitor_pid': state.get('monitorPid'),
        'cgroup_path': state.get('cgroupPath'),
        'annotations': state.get('annotations') or {},
    }


def gather():
    """The info and facts modules' work: (their AnsibleModule, containers as results, named ids that
    do not exist, host capabilities). Both take the same options (SELECTION_ARGSPEC) and change nothing."""
    from ansible_collections.daemonless.oci.plugins.module_utils._runtime.host_info import host_capabilities
    from ansible_collections.daemonless.oci.plugins.module_utils._runtime.operations.lifecycle import list_containers
    module = AnsibleModule(argument_spec=SELECTION_ARGSPEC, supports_check_mode=True)
    require_cffi(module)
    try:
        states = list_containers(module.params['state_root'])
        host = host_capabilities()
    except OCIError as exc:
        module.fail_json(msg=str(exc))
    wanted = module.params['name']
    found = set(s['id'] for s in states)
    containers = [container_result(s) for s in states if not wanted or s['id'] in wanted]
    # Networks (issue 16): each container's attachments, and CNI CHECK's verdict as drift.
    from ansible_collections.daemonless.oci.plugins.module_utils._ansible.networks import container_facts
    for container in containers:
        container.update(container_facts(module.params['state_root'], container['id']))
    missing = [name for name in wanted if name not in found]
    return module, containers, missing, host
