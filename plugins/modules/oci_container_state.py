#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: daemonless.oci contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r'''
module: oci_container_state
short_description: Bring an OCI container to created, running, stopped or absent
version_added: 0.1.0
description:
  - Creates, starts, stops, updates, recreates or deletes a container from an OCI bundle
    (see M(daemonless.oci.oci_bundle)), directly through the collection's runtime core;
    no container daemon runs on the host.
  - Idempotent. The bundle's C(config.json) is compared with the configuration the container
    was created from (kept in its state directory), never with a command line. Changes to
    cgroup limits (memory, cpu, pids, block I/O, huge pages) are applied to the running
    container in place; any other change recreates it (stop, delete, create, start).
  - Every container it creates gets a monitor process that logs its output to a file, records
    its exit code, and survives the task.
extends_documentation_fragment:
  - daemonless.oci.changes
  - daemonless.oci.state_root
attributes:
  check_mode:
    description: Reports what would change and touches nothing (no mount, cgroup, process or file).
  diff_mode:
    description: Shows the status and configuration before and after.
options:
  id:
    description:
      - The container's id, unique in O(state_root).
    type: str
    required: true
    aliases: [name]
  bundle:
    description:
      - The bundle directory (C(config.json) and the root filesystem).
      - Required unless O(state=absent).
    type: path
  state:
    description:
      - V(created) leaves the container's process waiting to be started.
      - V(running) starts it (creating it first if needed).
      - V(stopped) stops a running container gracefully (O(stop_signal), then SIGKILL after
        O(stop_timeout)); a container that does not exist yet is created and left waiting.
      - V(absent) stops and deletes the container.
    type: str
    choices: [created, running, stopped, absent]
    default: running
  recreate:
    description: Recreate the container even when its configuration is unchanged.
    type: bool
    default: false
  restart:
    description:
      - With O(state=running), stop and recreate a running (or finished) container even when
        nothing changed. OCI containers cannot be restarted in place.
    type: bool
    default: false
  wait:
    description:
      - V(exited) runs the container as a job, waits for it to finish (at most O(timeout)
        seconds), and returns RV(exit_code), RV(oom_killed) and RV(logs_lines). A finished job
        whose configuration is unchanged is not run again unless O(restart=true).
      - V(none) returns as soon as the container is in the wanted state.
    type: str
    choices: [none, exited]
    default: none
  timeout:
    description: Seconds to wait for a job with O(wait=exited); 0 waits without limit.
    type: int
    default: 300
  stop_signal:
    description: The signal that asks the container to stop (a name such as V(SIGTERM) or a number).
    type: str
    default: SIGTERM
  stop_timeout:
    description: Seconds to wait after O(stop_signal) before SIGKILL.
    type: int
    default: 10
  log_path:
    description:
      - Where the monitor writes the container's output. Default is C(container.log) in the
        container's state directory.
    type: path
  log_max_size:
    description: Size in bytes at which the log is rotated; 0 disables rotation.
    type: int
    default: 20971520
  log_max_files:
    description: How many log files (the current one and rotated ones) are kept.
    type: int
    default: 5
  cgroup_manager:
    description:
      - Who makes the container's cgroup.
      - V(cgroupfs) is the runtime itself, at the bundle's C(linux.cgroupsPath) (a path), or at
        C(/ocirt/<id>) when the bundle gives none. A C(slice:prefix:name) there still makes that
        systemd scope, as C(ocirt) does without C(--systemd-cgroup).
      - V(systemd) is a transient systemd scope, made with C(Delegate=yes) and stopped when the
        container is deleted. It is C(ocirt-<id>.scope) in C(system.slice) when the bundle gives no
        C(linux.cgroupsPath), else the scope the bundle's C(slice:prefix:name) names. A
        C(linux.cgroupsPath) that is a path is an error with V(systemd), as with C(runc --systemd-cgroup).
      - Default is V(systemd) where PID 1 is systemd and the host's cgroup layout is pure v2,
        else V(cgroupfs), as podman chooses.
      - Changing it for an existing container recreates the container.
    type: str
    choices: [cgroupfs, systemd]
  logs_lines:
    description: How many of the last log lines RV(logs_lines) returns with O(wait=exited).
    type: int
    default: 20
  labels:
    description:
      - Labels of the container (as podman's C(--label)), a dict of names to strings; numbers and
        booleans become strings.
      - Stored as the annotations C(org.daemonless.oci.label.<name>) of the config the container is
        created from (the bundle's C(config.json) is not changed), and returned as RV(container.labels).
        M(daemonless.oci.oci_container_info) and M(daemonless.oci.oci_container_facts) select containers by them.
      - Labels are part of the container's config, so adding, changing or removing one recreates the container.
      - A label name is 1 to 253 characters without control characters; a value at most 4096 characters.
    type: dict
notes:
  - Run as root (C(become=true)) on Linux hosts.
seealso:
  - module: daemonless.oci.oci_bundle
  - module: daemonless.oci.oci_container_info
'''

EXAMPLES = r'''
- name: A labelled service, to find it again with oci_container_info's labels selector
  daemonless.oci.oci_container_state:
    id: web
    bundle: /srv/bundles/web
    labels:
      app: web
      tier: front

- name: Run a web server from a bundle
  daemonless.oci.oci_container_state:
    id: web
    bundle: /srv/bundles/web
    state: running

- name: Run a job to completion and use its exit code
  daemonless.oci.oci_container_state:
    id: migrate
    bundle: /srv/bundles/migrate
    state: running
    wait: exited
    timeout: 600
  register: job
  failed_when: job.exit_code != 0

- name: Stop gracefully, waiting up to 30 seconds
  daemonless.oci.oci_container_state:
    id: web
    state: stopped
    stop_timeout: 30

- name: Remove it
  daemonless.oci.oci_container_state:
    id: web
    state: absent
'''

RETURN = r'''
container:
  description: The container after the task (null once absent).
  returned: always
  type: dict
  contains:
    id:
      description: 'The container id.'
      type: str
      returned: success
    status:
      description: 'created, running, paused or stopped.'
      type: str
      returned: success
    pid:
      description: 'The container process on the host (0 when stopped).'
      type: int
      returned: success
    bundle:
      description: 'The bundle directory.'
      type: str
      returned: success
    rootfs:
      description: 'The root filesystem.'
      type: str
      returned: success
    created:
      description: 'Creation time (RFC 3339).'
      type: str
      returned: success
    started:
      description: 'Start time (RFC 3339).'
      type: str
      returned: when started
    finished:
      description: 'Exit time (RFC 3339).'
      type: str
      returned: when stopped
    exit_code:
      description: 'Exit code (128+N when killed by signal N).'
      type: int
      returned: when stopped
    exit_signal:
      description: 'The signal that killed it.'
      type: str
      returned: when killed by a signal
    oom_killed:
      description: 'Whether the OOM killer was involved.'
      type: bool
      returned: when stopped
    exit_reason:
      description: 'Why the exit code is unknown.'
      type: str
      returned: when unknown
    log_path:
      description: 'The log file the monitor writes.'
      type: str
      returned: success
    monitor_pid:
      description: 'The monitor process (0 once it exited).'
      type: int
      returned: success
    cgroup_path:
      description: 'The container''s cgroup path.'
      type: str
      returned: success
    annotations:
      description: 'The config''s annotations.'
      type: dict
      returned: success
    labels:
      description: 'The container''s labels (O(labels)): its annotations C(org.daemonless.oci.label.<name>), by name.'
      type: dict
      returned: success
      sample: {"app": "web"}
actions:
  description: What the task did (or would do in check mode), with the reason, in order.
  returned: always
  type: list
  elements: str
  sample: ["update: memory", "stop: process.args changed", "delete: process.args changed", "create: recreate: process.args changed", "start"]
cgroup_manager:
  description: The cgroup manager the task used (O(cgroup_manager), or the host's default).
  returned: unless O(state=absent)
  type: str
  sample: cgroupfs
exit_code:
  description: The job's exit code.
  returned: when O(wait=exited)
  type: int
oom_killed:
  description: Whether the OOM killer ended the job.
  returned: when O(wait=exited)
  type: bool
logs_lines:
  description: The last O(logs_lines) lines of the job's output (stdout and stderr, in order).
  returned: when O(wait=exited)
  type: list
  elements: str
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.daemonless.oci.plugins.module_utils._ansible import container_state
from ansible_collections.daemonless.oci.plugins.module_utils._ansible.argument_specs import (
    CONTAINER_STATE_REQUIRED_IF, container_state_argument_spec)
from ansible_collections.daemonless.oci.plugins.module_utils._ansible.module_support import require_cffi
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.errors import OCIError


def main():
    module = AnsibleModule(argument_spec=container_state_argument_spec(), supports_check_mode=True,
                           required_if=CONTAINER_STATE_REQUIRED_IF)
    require_cffi(module)
    try:
        result = container_state.run(module.params, check_mode=module.check_mode, diff=module._diff)
    except OCIError as exc:
        module.fail_json(msg=container_state.failure_message(module.params['id'], exc))
    module.exit_json(**result)


if __name__ == '__main__':
    main()
