# -*- coding: utf-8 -*-
# Copyright: daemonless.oci contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A container's state in the shape the modules return.

Apart from module_support (which imports AnsibleModule) so that
container_state, and with it the boot unit's entry point (boot.py), runs on a
host that has the collection's core but no Ansible.
"""
from ansible_collections.daemonless.oci.plugins.module_utils._ansible import labels


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
        'labels': labels.from_annotations(state.get('annotations')),
        # Supervision (only for a container with a restart policy or a health check).
        'restart_policy': state.get('restartPolicy', 'no'),
        'restart_count': state.get('restartCount', 0),
        'restart_times': state.get('restartTimes') or [],
        'last_exit_code': state.get('lastExitCode'),
        'last_exit_time': state.get('lastExitTime'),
        'restart_gave_up': state.get('gaveUp'),
        # Stopped between an exit and the restart its policy does (docker's "restarting").
        'restart_pending': state.get('restartPending', False),
        'supervised': bool(state.get('monitorPid')),
        'health': _health_result(state.get('health')),
    }


def _health_result(health):
    if not health:
        return None
    return {'status': health.get('status'), 'failing_streak': health.get('failingStreak', 0),
            'last_exit_code': health.get('lastExitCode'), 'last_output': health.get('lastOutput') or '',
            'last_check': health.get('lastCheck')}
