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
  - A container recreated from a changed configuration (or with O(recreate)) of an image bundle (the
    O(daemonless.oci.oci_bundle#module:image) option) starts from the image again; the bundle's writable
    layer (C(overlay/upper)) is emptied first, as a new podman or docker container starts from its image.
    A restart keeps what the container wrote (O(restart), a stopped container started again, its
    O(restart_policy) or health check). Keep data in mounts. Where the layers were copied (no overlayfs)
    and for a bundle from O(daemonless.oci.oci_bundle#module:rootfs_from), the root filesystem is the
    bundle's own and is kept.
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
      - Required with O(state=created) and O(state=running). O(state=stopped) and O(state=absent) need only
        O(id); with O(state=stopped) a bundle also creates a container that does not exist (left waiting)
        and recreates one whose configuration changed.
      - In check mode a bundle with no C(config.json) yet (made by an earlier M(daemonless.oci.oci_bundle)
        task, itself in check mode) is not an error; the task reports that the container would be created
        (or recreated).
    type: path
  state:
    description:
      - V(created) leaves the container's process waiting to be started.
      - V(running) starts it (creating it first if needed).
      - V(stopped) stops a running container gracefully (O(stop_signal), then SIGKILL after
        O(stop_timeout)). Given O(bundle), a container that does not exist yet is created and left
        waiting; without it, a container that does not exist is nothing to do (C(changed=false), and
        RV(msg) says it does not exist).
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
      - V(healthy) (with O(healthcheck) and O(state=running)) waits until the health check passes,
        at most O(timeout) seconds, and fails with the check's last output when the container turns
        unhealthy, stops, or the time runs out; with C(serial), a play stops at the first host whose
        new container is not healthy.
      - V(none) returns as soon as the container is in the wanted state.
    type: str
    choices: [none, exited, healthy]
    default: none
  timeout:
    description:
      - Seconds to wait with O(wait=exited) or O(wait=healthy); 0 waits without limit.
      - A job still running then fails the task, with C(changed=true) when the task created or started it
        and RV(container) as it is (the job is left running).
    type: int
    default: 300
  expected_exit_codes:
    description:
      - With O(wait=exited), the exit codes that count as the job's success; any other fails the task with
        the code, whether the OOM killer killed the job, and the tail of its log (RV(logs_lines)), and
        C(changed=true) when the task ran the job. A finished job that is not run again is judged again.
      - Not given (or an empty list), any exit code is a success; test RV(exit_code) in C(failed_when).
    type: list
    elements: int
    version_added: 0.1.0
  restart_policy:
    description:
      - What the container's monitor does when the container's process exits by itself.
      - V(no) leaves it stopped. V(on-failure) creates and starts it again after an exit code other
        than 0 (or a kill), V(on-failure:N) at most N times, then gives up and says so
        (RV(container.restart_gave_up)). V(always) and V(unless-stopped) restart it after any exit
        (the two are the same here, as there is no daemon whose own restart would tell them apart).
      - Restarts back off from 100 ms, doubling up to 5 minutes; after 10 seconds of running the
        backoff starts again from 100 ms.
      - A stop or removal asked for (O(state=stopped), O(state=absent), C(ocirt kill), C(ocirt delete))
        is never undone by a restart.
      - While the monitor waits out the backoff the container is stopped with its restart due
        (RV(container.restart_pending), docker's C(restarting)); O(state=running) leaves it to the monitor
        (no change, and the count and backoff go on), O(state=stopped) cancels the restart.
      - A container with C(process.terminal) cannot have a restart policy.
      - Changing it recreates the container.
    type: str
    default: 'no'
  healthcheck:
    description:
      - A health check the container's monitor runs in the container (as C(ocirt exec) does), every
        O(healthcheck.interval). RV(container.health) reports V(starting), V(healthy) or V(unhealthy)
        with the last check's exit code and output.
      - Changing it recreates the container.
    type: dict
    suboptions:
      test:
        description:
          - The command, as a list (argv, run as is) or a string (run with C(/bin/sh -c)).
          - It passes when it exits 0.
        type: raw
        required: true
      interval:
        description: Time between checks, as podman writes it (V(30s), V(1m30s)) or a number of seconds. Default 30s.
        type: raw
      timeout:
        description: Time a check may take; then its processes are killed and it has failed. Default 30s.
        type: raw
      retries:
        description: Failures in a row that make the container unhealthy. Default 3.
        type: int
      start_period:
        description: Time after the start during which failures do not count (a pass still makes it healthy). Default 0.
        type: raw
      on_failure:
        description:
          - What the monitor does when the container turns unhealthy.
          - V(restart) kills and re-creates it (whatever O(restart_policy) says; it counts as a restart).
          - V(kill) kills it, and it stays stopped.
        type: str
        choices: [none, restart, kill]
        default: none
  stop_signal:
    description:
      - The signal that asks the container to stop (a name such as V(SIGTERM) or a number from 1 to 64).
      - Checked before anything is done, whatever O(state); an unknown name or a number out of range fails
        the task.
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
  secrets:
    description:
      - Files given to the container without being written into its bundle, its C(config.json), its state,
        its log, the task's result or its diff.
      - Each container's secrets are files on a host tmpfs, in a directory of its own under
        C(/run/ocirt-secrets) (0700, root; a tmpfs is mounted there when C(/run) is none), bind-mounted
        read-only, C(nosuid), C(nodev), C(noexec) at each target's directory inside the container, podman's
        way. The directory shows only the secrets (the image's files there are hidden), and any re-creation of
        the container finds them again. They are removed with the container (O(state=absent)).
      - Targets are resolved inside the container's root filesystem; a symbolic link in the image cannot send
        a secret out of it.
      - The container keeps an annotation C(org.daemonless.oci.secrets.NAME) per secret, a salted HMAC of its
        content, target, mode and owner, so that a changed secret recreates the container and an unchanged one
        does not; the content cannot be read back from it.
      - For a file on the controller, use O(secrets[].content) with C(lookup('file', ...)).
    type: list
    elements: dict
    suboptions:
      name:
        description: The secret's name (letters, digits, C(_), C(.), C(-)); its default file name.
        type: str
        required: true
      content:
        description: The secret itself. Never logged. One of O(secrets[].content) and O(secrets[].src) is required.
        type: str
      src:
        description: A file on the managed host holding the secret (at most 512 KiB), read when the container is created.
        type: path
      target:
        description:
          - Where the container sees it. Default C(/run/secrets/NAME); a relative path is under C(/run/secrets).
          - An absolute path elsewhere makes its directory a secrets-only mount, so it cannot be a directory
            directly under C(/), nor inside another secret's directory.
        type: str
      mode:
        description: The file's mode, as an octal string (C('0440')).
        type: raw
        default: '0400'
      uid:
        description: The owner, a uid inside the container (mapped through a user namespace). Default the container's user.
        type: int
      gid:
        description: The group, a gid inside the container. Default the container's user's group.
        type: int
  network:
    description:
      - V(none) (the default when unset) keeps the bundle's namespaces as they are (a bundle from
        M(daemonless.oci.oci_bundle) has an empty network namespace of its own).
      - V(host) shares the host's network (the bundle's network namespace entry is dropped).
      - A list of network names (see M(daemonless.oci.oci_network)) gives the container a persistent
        network namespace under O(state_root), attached to each network with CNI ADD before the
        container is created (the first network is C(eth0)), and released (CNI DEL from the cache,
        the namespace unmounted) when it is deleted, also by C(ocirt delete --force) through a
        poststop hook, and by O(state=absent) after a crash of an earlier task.
      - With V(host) or networks, the container gets its own C(/etc/resolv.conf), C(/etc/hosts)
        and C(/etc/hostname), made under O(state_root) and bind-mounted read-only (never written
        into the image).
      - A stopped container keeps its attachment (its address and published ports); a change of
        any network option recreates the container, which re-attaches it.
      - With O(state=running), a running container kept as it is has its attachments checked (CNI
        CHECK); one found lost (say, its DNAT or firewall rules flushed) is re-attached in place (CNI
        DEL, then ADD with the same address) and the task reports a change; the container keeps running.
    type: list
    elements: str
  publish:
    description:
      - Ports published on the host, as podman's C(-p) writes them, through the C(portmap) plugin
        (DNAT rules, nothing listens on the host) - V(8080:80), V(127.0.0.1:8443:443/tcp),
        V(5353:53/udp), V(8000-8009:9000-9009).
      - A host port that a process of the host or another container of O(state_root) holds is refused.
      - A container port alone (V(80), V(:80), V(127.0.0.1::80), V(53/udp)) gets a free host port, chosen
        when the container is attached and reported in the facts' C(networks[].published); it stays while
        the container lives (later runs keep it), and a recreate chooses again.
      - Needs O(network) to be a list of networks.
    type: list
    elements: str
    aliases: [ports]
  ip:
    description: A static address on the first network of O(network) (inside its subnet).
    type: str
  hostname:
    description:
      - The container's hostname (it needs a UTS namespace of its own, which bundles have by default).
      - Default is the hostname the bundle's C(config.json) chose (M(daemonless.oci.oci_bundle)'s
        O(daemonless.oci.oci_bundle#module:hostname)), else the container id (its first 64 characters), as podman
        does. C(ocirt), the hostname of the default configuration, counts as not chosen.
    type: str
  dns_servers:
    description: Name servers for the container's C(/etc/resolv.conf), instead of the network's and the host's.
    type: list
    elements: str
  dns_search:
    description: Search domains for the container's C(/etc/resolv.conf), instead of the network's and the host's.
    type: list
    elements: str
  etc_hosts:
    description: Extra C(/etc/hosts) entries, as host name to address.
    type: dict
  network_config_dir:
    description: Where the networks' CNI configuration lists are (O(daemonless.oci.oci_network#module:config_dir)).
    type: path
    default: /etc/cni/net.d
  cni_path:
    description: Where the CNI plugins are (directories separated by C(:)).
    type: str
    default: /usr/lib/cni:/opt/cni/bin
  boot_record:
    description:
      - Boot persistence (the M(daemonless.oci.container) role's C(container_boot_persistence)). When
        set, the task changes no container; it writes the options that shape the container (all but
        O(state), O(wait), O(timeout), O(recreate), O(restart) and O(logs_lines)), with the cgroup
        manager it would use, to this file, only when they differ from what it holds.
      - The role's systemd unit runs C(ocirt-boot), which reads the file and creates the container
        from it as this module would (the same health check, restart policy, labels, secrets,
        networks, published ports and cgroup manager), then hands the container's monitor to systemd
        as the unit's main process. A later task without O(boot_record) finds that container as it
        wants it and changes nothing.
      - The file may hold the secrets' content, as podman's file secret driver keeps them, so it is
        written with mode C(0600) (its directory, when made, C(0700)), and C(ocirt-boot) refuses a file
        that is not a regular file of its own user with that mode. In the diff each secret's content
        is masked.
    type: path
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

- name: Run a job that may also end with 3 (nothing to do), failing with its output otherwise
  daemonless.oci.oci_container_state:
    id: sync
    bundle: /srv/bundles/sync
    wait: exited
    expected_exit_codes: [0, 3]

- name: Run with a database password at /run/secrets/db_password, readable by the container's user only
  daemonless.oci.oci_container_state:
    id: web
    bundle: /srv/bundles/web
    secrets:
      - name: db_password
        content: "{{ vault_db_password }}"
      - name: tls_key
        content: "{{ lookup('ansible.builtin.file', 'files/web.key') }}"
        target: /etc/web/tls/web.key
        mode: '0440'
        gid: 33
- name: Run a supervised service and wait until it answers
  daemonless.oci.oci_container_state:
    id: web
    bundle: /srv/bundles/web
    restart_policy: on-failure:5
    healthcheck:
      test: [wget, -q, -O, /dev/null, "http://127.0.0.1:8080/health"]
      interval: 10s
      timeout: 3s
      retries: 3
      start_period: 30s
      on_failure: restart
    wait: healthy
    timeout: 120

- name: Stop gracefully, waiting up to 30 seconds
  daemonless.oci.oci_container_state:
    id: web
    state: stopped
    stop_timeout: 30

- name: Publish a web server on a bridge network
  daemonless.oci.oci_container_state:
    id: web
    bundle: /srv/bundles/web
    network: [web]
    publish:
      - "8080:80"
      - "127.0.0.1:8443:443/tcp"

- name: Remove it
  daemonless.oci.oci_container_state:
    id: web
    state: absent

- name: Record how web runs, for a systemd unit that runs ocirt-boot (the container role does this)
  daemonless.oci.oci_container_state:
    id: web
    bundle: /srv/bundles/web
    network: [web]
    publish: ["8080:80"]
    restart_policy: on-failure
    healthcheck:
      test: [wget, -q, -O, /dev/null, "http://127.0.0.1:80/"]
    boot_record: /var/lib/ocirt/boot/web.json
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
    restart_policy:
      description: 'The restart policy its monitor applies.'
      type: str
      returned: success
      sample: on-failure:5
    restart_count:
      description: 'How many times its monitor re-created it.'
      type: int
      returned: success
    restart_times:
      description: 'When (RFC 3339) the last restarts happened, oldest first (at most 20).'
      type: list
      elements: str
      returned: success
    last_exit_code:
      description: 'The exit code of the last exit its monitor saw (null if none, or unknown).'
      type: int
      returned: success
    last_exit_time:
      description: 'When that exit happened (RFC 3339).'
      type: str
      returned: success
    restart_gave_up:
      description: 'Why the monitor stopped restarting it (for example V(gave up after 2 restarts (on-failure:2))), or null.'
      type: str
      returned: success
    restart_pending:
      description: 'Whether it is stopped and its monitor restarts it when the restart policy''s backoff ends.'
      type: bool
      returned: success
    supervised:
      description: 'Whether a live monitor is in charge of it.'
      type: bool
      returned: success
    health:
      description: 'Its health check''s status (null without O(healthcheck)).'
      type: dict
      returned: success
      contains:
        status:
          description:
            - 'V(starting), V(healthy), V(unhealthy), or V(stopped) once the container and its monitor are gone.'
            - 'V(unhealthy) stays when that is how it ended.'
          type: str
        failing_streak:
          description: 'Failed checks in a row.'
          type: int
        last_exit_code:
          description: 'The last check''s exit code.'
          type: int
        last_output:
          description: 'The end of the last check''s output (up to 2 KiB).'
          type: str
        last_check:
          description: 'When the last check ended (RFC 3339).'
          type: str
msg:
  description:
    - What the task did (or would do in check mode) and where that leaves the container; for a job, its
      exit code. On failure, the error, naming the container once.
  returned: always
  type: str
  sample: "container web: create, start; running"
actions:
  description:
    - What the task did (or would do in check mode), with the reason, in order.
    - V(supervise) says that the container ran without a monitor (its monitor was killed) and that a
      new monitor adopted it; that monitor cannot learn the exit code of a process it did not start.
  returned: always
  type: list
  elements: str
  sample: ["update: memory", "stop: process.args changed", "delete: process.args changed", "create: recreate: process.args changed", "start"]
cgroup_manager:
  description: The cgroup manager the task used (O(cgroup_manager), or the host's default).
  returned: unless O(state=absent)
  type: str
  sample: cgroupfs
boot_record:
  description: The boot record written (or found unchanged).
  returned: when O(boot_record) is set
  type: str
  sample: /var/lib/ocirt/boot/web.json
python:
  description:
    - The Python the module ran with. A container on CNI networks names it in its poststop hook, so the
      boot unit's C(ocirt-boot) must run the same one (the role checks this).
  returned: when O(boot_record) is set
  type: str
  sample: /usr/bin/python3
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

from ansible_collections.daemonless.oci.plugins.module_utils._ansible import bytecode


def main():
    # The rest of the collection is imported once its compiled code can come from the host's cache.
    cache = bytecode.install()
    from ansible_collections.daemonless.oci.plugins.module_utils._ansible import container_state
    from ansible_collections.daemonless.oci.plugins.module_utils._ansible.argument_specs import (
        CONTAINER_STATE_REQUIRED_IF, container_state_argument_spec)
    from ansible_collections.daemonless.oci.plugins.module_utils._ansible.module_support import error_text, require_cffi
    from ansible_collections.daemonless.oci.plugins.module_utils._runtime.errors import OCIError
    from ansible_collections.daemonless.oci.plugins.module_utils._ansible import boot
    argument_spec = container_state_argument_spec()
    argument_spec.update(boot.BOOT_RECORD_ARGSPEC)
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True,
                           required_if=CONTAINER_STATE_REQUIRED_IF)
    bytecode.persist(cache, not module.check_mode)
    require_cffi(module)
    try:
        if module.params['boot_record']:
            result = boot.record(module.params, check_mode=module.check_mode, diff=module._diff)
        else:
            result = container_state.run(module.params, check_mode=module.check_mode, diff=module._diff)
    except container_state.TaskFailed as exc:
        module.fail_json(msg=container_state.failure_message(module.params['id'], exc), **exc.result)
    except (OCIError, OSError, ValueError) as exc:
        # OSError and ValueError: whatever the checks missed still fails as a message, never a traceback.
        module.fail_json(msg=container_state.failure_message(module.params['id'], error_text(exc)))
    module.exit_json(**result)


if __name__ == '__main__':
    main()
