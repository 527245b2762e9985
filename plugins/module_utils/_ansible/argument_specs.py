# -*- coding: utf-8 -*-
# Copyright: daemonless.oci contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The options of oci_bundle and oci_container_state, as data.

They live here, not in the modules, because a module cannot import another
module: whatever converges several containers at once takes the same options
per item, and must not keep a second copy that drifts.  Each module's
DOCUMENTATION describes these options; `ansible-test sanity` checks that the
two agree.

Every module imports this file, and Ansible's payload builder ships every
module_utils file a module's imports reach (lazy ones too) and parses each
one on the controller: so this file imports constants only, from leaf
modules (the layers' defaults.py), never the code that applies them.
tests/unit/test_payload.py keeps it so.
"""
from ansible_collections.daemonless.oci.plugins.module_utils._image.defaults import DEFAULT_IMAGE_ROOT
from ansible_collections.daemonless.oci.plugins.module_utils._network.defaults import DEFAULT_CNI_PATH, DEFAULT_CONFIG_DIR
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.defaults import DEFAULT_LOG_MAX_FILES, DEFAULT_LOG_MAX_SIZE, DEFAULT_ROOT

# oci_container_state's defaults that are its own (reconcile.py applies the stop signal and timeout);
# the others are the runtime's (state root, log rotation).
DEFAULT_JOB_TIMEOUT = 300  # seconds a job (wait=exited) may run; 0 waits without limit
DEFAULT_STOP_SIGNAL = "SIGTERM"
DEFAULT_STOP_TIMEOUT = 10  # seconds between the stop signal and SIGKILL
DEFAULT_LOGS_LINES = 20
CGROUP_MANAGERS = ("cgroupfs", "systemd")

STATE_ROOT_ARGSPEC = dict(state_root=dict(type='path', default=DEFAULT_ROOT))

# oci_bundle's options that become config.json settings (the rest say where the bundle and its rootfs come from).
BUNDLE_CONFIG_OPTIONS = ('args', 'env', 'cwd', 'user', 'hostname', 'terminal', 'readonly_rootfs', 'mounts',
                         'capabilities', 'namespaces', 'devices', 'sysctl', 'annotations', 'memory', 'memory_swap',
                         'memory_reservation', 'cpus', 'cpu_shares', 'cpuset_cpus', 'pids_limit', 'cgroups_path',
                         'config', 'env_file')


def bundle_argument_spec():
    """oci_bundle's argument_spec (a new dict each call: AnsibleModule fills it in)."""
    spec = dict(
        path=dict(type='path', required=True),
        state=dict(type='str', default='present', choices=['present', 'absent']),
        force=dict(type='bool', default=False),
        rootfs_from=dict(type='path'),
        rootfs_copy=dict(type='bool', default=False),
        args=dict(type='list', elements='str'),
        mounts=dict(type='list', elements='dict'),
        namespaces=dict(type='list', elements='raw'),
        devices=dict(type='list', elements='dict'),
        rootfs_check=dict(type='str', default='identity', choices=['identity', 'digest']),
        env_file=dict(type='list', elements='path'),
    )
    # The options that are a type and nothing more (no default, no choices).
    for type_name, names in (
            ('str', ('image_ref', 'platform', 'max_unpacked_size', 'cwd', 'user', 'hostname', 'memory',
                     'memory_swap', 'memory_reservation', 'cpus', 'cpuset_cpus', 'cgroups_path')),
            ('bool', ('terminal', 'readonly_rootfs')),
            ('int', ('cpu_shares', 'pids_limit')),
            ('dict', ('env', 'capabilities', 'sysctl', 'annotations', 'config'))):
        spec.update((name, dict(type=type_name)) for name in names)
    spec.update(STATE_ROOT_ARGSPEC)
    spec.update(bundle_image_argument_spec())
    return spec


def secrets_argument_spec():
    """oci_container_state's secrets option (_ansible/secrets.py), a new dict each call. Each content is
    no_log, so Ansible masks it in every output; the list itself is not secret (no_log=False tells
    validate-modules so)."""
    return dict(secrets=dict(type='list', elements='dict', no_log=False, options=dict(
        name=dict(type='str', required=True),
        content=dict(type='str', no_log=True),
        src=dict(type='path'),
        target=dict(type='str'),
        mode=dict(type='raw', default='0400'),
        uid=dict(type='int'),
        gid=dict(type='int'),
    ), mutually_exclusive=[('content', 'src')], required_one_of=[('content', 'src')]))


# Supervision by the container's monitor (_ansible/supervision.py); durations as podman writes them.
SUPERVISION_ARGSPEC = dict(
    restart_policy=dict(type='str', default='no'),
    healthcheck=dict(type='dict', options=dict(
        test=dict(type='raw', required=True),
        interval=dict(type='raw'),
        timeout=dict(type='raw'),
        retries=dict(type='int'),
        start_period=dict(type='raw'),
        on_failure=dict(type='str', default='none', choices=['none', 'restart', 'kill']),
    )),
)


def container_state_argument_spec():
    """oci_container_state's argument_spec (a new dict each call)."""
    spec = dict(
        id=dict(type='str', required=True, aliases=['name']),
        bundle=dict(type='path'),
        state=dict(type='str', default='running', choices=['created', 'running', 'stopped', 'absent']),
        recreate=dict(type='bool', default=False),
        restart=dict(type='bool', default=False),
        wait=dict(type='str', default='none', choices=['none', 'exited', 'healthy']),
        timeout=dict(type='int', default=DEFAULT_JOB_TIMEOUT),
        expected_exit_codes=dict(type='list', elements='int'),
        stop_signal=dict(type='str', default=DEFAULT_STOP_SIGNAL),
        stop_timeout=dict(type='int', default=DEFAULT_STOP_TIMEOUT),
        log_path=dict(type='path'),
        log_max_size=dict(type='int', default=DEFAULT_LOG_MAX_SIZE),
        log_max_files=dict(type='int', default=DEFAULT_LOG_MAX_FILES),
        logs_lines=dict(type='int', default=DEFAULT_LOGS_LINES),
        cgroup_manager=dict(type='str', choices=list(CGROUP_MANAGERS)),
    )
    spec.update(secrets_argument_spec())
    spec.update(SUPERVISION_ARGSPEC)
    # Labels: annotations org.daemonless.oci.label.<key> of the container's config (_ansible/labels.py).
    spec.update(labels=dict(type='dict'))
    spec.update(STATE_ROOT_ARGSPEC)
    spec.update(container_network_argument_spec())
    return spec


def container_network_argument_spec():
    """oci_container_state's network options (issue 16: _network/, _ansible/networks.py)."""
    return dict(
        network=dict(type='list', elements='str'),
        publish=dict(type='list', elements='str', aliases=['ports']),
        ip=dict(type='str'),
        hostname=dict(type='str'),
        dns_servers=dict(type='list', elements='str'),
        dns_search=dict(type='list', elements='str'),
        etc_hosts=dict(type='dict'),
        network_config_dir=dict(type='path', default=DEFAULT_CONFIG_DIR),
        cni_path=dict(type='str', default=DEFAULT_CNI_PATH),
    )


# oci_container_state's cross-option rules, as AnsibleModule's required_if takes them.
# Stopping or removing a container needs only its id; `stopped` with a bundle also creates a missing one.
CONTAINER_STATE_REQUIRED_IF = [('state', 'created', ['bundle']), ('state', 'running', ['bundle'])]


# -- images (oci_image, oci_image_info; oci_bundle's image option names an image in the same store) --------

IMAGE_PULL_POLICIES = ('missing', 'always', 'never')
IMAGE_ROOT_ARGSPEC = dict(image_root=dict(type='path', default=DEFAULT_IMAGE_ROOT))


def image_argument_spec():
    """oci_image's argument_spec (a new dict each call)."""
    spec = dict(
        name=dict(type='str', required=True),
        state=dict(type='str', default='present', choices=['present', 'absent']),
        pull=dict(type='str', default='missing', choices=list(IMAGE_PULL_POLICIES)),
        platform=dict(type='str'),
        username=dict(type='str'),
        password=dict(type='str', no_log=True),
        auth_file=dict(type='path'),
        validate_certs=dict(type='bool', default=True),
        ca_path=dict(type='path'),
        timeout=dict(type='int', default=30),
        force=dict(type='bool', default=False),
        import_from=dict(type='path'),
    )
    spec.update(IMAGE_ROOT_ARGSPEC)
    # Where the containers are whose bundles use the image: every module of the action group takes
    # state_root, as module_defaults for the group passes it to each of them.
    spec.update(STATE_ROOT_ARGSPEC)
    return spec


def image_info_argument_spec():
    """oci_image_info's argument_spec (a new dict each call)."""
    spec = dict(name=dict(type='list', elements='str'))
    spec.update(IMAGE_ROOT_ARGSPEC)
    spec.update(STATE_ROOT_ARGSPEC)
    return spec


def bundle_image_argument_spec():
    """oci_bundle's options for a root filesystem from an image in the store."""
    return dict(image=dict(type='str'), image_root=dict(type='path', default=DEFAULT_IMAGE_ROOT),
                # read_only: podman's name for it; for an image bundle the default is false, as in podman.
                readonly_rootfs=dict(type='bool', aliases=['read_only']))
