# -*- coding: utf-8 -*-
# Copyright: daemonless.oci contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""oci_bundle's work from its parameters: the one mapping of its options onto _bundle.bundle.

oci_bundle and oci_containers (which takes oci_bundle's options per item)
both call run(), so an option added to bundle_argument_spec() is passed on
in one place. Nothing here knows AnsibleModule; an OCIError is the task's
failure, worded by failure_message().
"""
from ansible_collections.daemonless.oci.plugins.module_utils._ansible.argument_specs import BUNDLE_CONFIG_OPTIONS

# What the module returns of ensure()'s outcome (the rest feeds the diff).
RESULT_KEYS = ('changed', 'actions', 'msg', 'path', 'rootfs', 'config', 'config_digest', 'image_digest')


def run(params, check_mode=False, diff=False):
    """Make the bundle params['path'] match params (or remove it); return the module's result."""
    from ansible_collections.daemonless.oci.plugins.module_utils._bundle import bundle
    if params['state'] == 'absent':
        return bundle.remove(params['path'], params['state_root'], force=params['force'], check_mode=check_mode)
    outcome = bundle.ensure(params['path'], dict((name, params[name]) for name in BUNDLE_CONFIG_OPTIONS),
                            source=params['rootfs_from'], reference=params['image_ref'],
                            platform=params['platform'], copy=params['rootfs_copy'],
                            state_root=params['state_root'], check_mode=check_mode,
                            max_unpacked_size=params['max_unpacked_size'],
                            rootfs_check=params.get('rootfs_check') or 'identity',
                            image=params.get('image'), image_root=params.get('image_root'))
    result = dict((key, outcome[key]) for key in RESULT_KEYS)
    if outcome.get('warnings'):
        result['warnings'] = list(outcome['warnings'])  # exit_json shows each as a warning
    if diff:
        result['diff'] = dict(before=outcome['before'], after=outcome['after'],
                              before_header=outcome['path'] + '/config.json',
                              after_header=outcome['path'] + '/config.json')
    return result


def failure_message(path, exc):
    """The task's error for EXC (an OCIError, or an OSError or ValueError the checks missed)."""
    from ansible_collections.daemonless.oci.plugins.module_utils._ansible.module_support import error_text
    return "bundle %s: %s" % (path, error_text(exc))
