#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: daemonless.oci contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r'''
module: oci_containers
short_description: Converge many OCI containers, and their bundles, in one task
version_added: 0.2.0
description:
  - Brings every container of O(containers) to its C(state) in one module run, with its
    bundle made as M(daemonless.oci.oci_bundle) makes it; independent containers are converged in
    parallel, and the runtime core runs in the module, so no interpreter starts per container.
  - Each item takes C(id), C(bundle) (the bundle directory, what M(daemonless.oci.oci_bundle) calls
    C(path)) and any option of M(daemonless.oci.oci_container_state) (C(state), C(stop_timeout),
    C(cgroup_manager), ...) and of M(daemonless.oci.oci_bundle) (C(rootfs_from), C(args), C(env),
    C(memory), C(mounts), ...), with the same meaning, defaults and checks. O(state_root) is the
    task's, for every item.
  - When an item gives any of M(daemonless.oci.oci_bundle)'s options, the task makes its bundle
    match them first (once per bundle directory; items naming one bundle directory must declare it
    alike). An item with only C(bundle) uses that bundle as it is, so a C(config.json) written by other
    means is never rewritten. Bundles are removed only by an item's C(remove_bundle), never by O(exclusive).
  - Every item is validated before anything is done; an invalid item (an unknown option, a wrong type,
    a duplicate id) fails the task and nothing changes. Errors name the item, as C(containers[3]).
  - An item with C(state=absent) and C(remove_bundle=true) also removes its C(bundle) directory after
    the container, as M(daemonless.oci.oci_bundle) with C(state=absent) does, but without its C(force);
    a bundle another container still uses is refused, naming that container. C(remove_bundle) needs
    C(state=absent) and C(bundle).
  - An item that fails while converging (a bundle that cannot be made, a container that cannot be
    created) does not stop the others. The task fails at the end, after converging every other item,
    with a RV(msg) listing the failed ids; each item's result says why. Use C(failed_when) to accept
    some failures.
extends_documentation_fragment:
  - daemonless.oci.changes
  - daemonless.oci.state_root
attributes:
  check_mode:
    description: Reports what would change for every bundle and container and touches nothing.
  diff_mode:
    description: Shows each changed bundle's C(config.json) and each changed container's status and configuration.
options:
  containers:
    description:
      - The containers, each a dict of C(id), C(bundle) and options of
        M(daemonless.oci.oci_container_state) and M(daemonless.oci.oci_bundle) (see the description).
      - C(state) is the container's (V(created), V(running), V(stopped), V(absent); default V(running)).
    type: list
    elements: dict
    required: true
  exclusive:
    description:
      - Also stop and delete every container of O(state_root) that O(containers) does not name, as
        C(docker_compose_v2) and C(podman_play) users expect. They are stopped with SIGTERM and
        SIGKILL after 10 seconds, as M(daemonless.oci.oci_container_state) does by default.
    type: bool
    default: false
  single:
    description:
      - The task names exactly one container (O(containers) must have one item), and returns that
        container's result at the top level as M(daemonless.oci.oci_container_state) returns it (RV(id),
        RV(actions), RV(container), RV(msg), and a job's C(exit_code), C(oom_killed), C(logs_lines)), beside
        RV(bundles), RV(containers) and RV(removed); C(changed) is the task's (its bundle's change too),
        and when it fails RV(msg) is the container's own message. The role daemonless.oci.container
        deploys and removes its container with it.
    type: bool
    default: false
  parallel:
    description:
      - How many worker processes converge bundles and containers at the same time.
    type: int
    default: 4
notes:
  - Run as root (C(become=true)) on Linux hosts.
seealso:
  - module: daemonless.oci.oci_bundle
  - module: daemonless.oci.oci_container_state
'''

EXAMPLES = r'''
- name: A web server and a worker from one image, and nothing else on the host
  daemonless.oci.oci_containers:
    exclusive: true
    containers:
      - id: web
        bundle: /srv/bundles/web
        rootfs_from: /srv/images/app
        image_ref: latest
        args: [/bin/httpd, -f, -p, "8080"]
        memory: 256M
      - id: worker
        bundle: /srv/bundles/worker
        rootfs_from: /srv/images/app
        image_ref: latest
        args: [/app/worker]
        stop_timeout: 30

- name: Three replicas of one bundle written by other means, used as it is
  daemonless.oci.oci_containers:
    containers:
      - {id: replica-1, bundle: /srv/bundles/replica}
      - {id: replica-2, bundle: /srv/bundles/replica}
      - {id: replica-3, bundle: /srv/bundles/replica, state: stopped}

- name: Remove them
  daemonless.oci.oci_containers:
    containers:
      - id: web
        state: absent
      - id: worker
        state: absent
'''

RETURN = r'''
containers:
  description:
    - One result per item of O(containers), in their order; each also holds what
      M(daemonless.oci.oci_container_state) returns (such as C(cgroup_manager), or the
      job's C(exit_code) with C(wait=exited)).
  returned: always
  type: list
  elements: dict
  contains:
    id:
      description: The container id.
      type: str
      returned: always
    changed:
      description: Whether the container changed (false for a failed item).
      type: bool
      returned: always
    failed:
      description: Whether converging this item failed.
      type: bool
      returned: always
    msg:
      description: Why it failed.
      type: str
      returned: when failed
    actions:
      description: What was done to it (or would be, in check mode), as M(daemonless.oci.oci_container_state) says.
      type: list
      elements: str
      returned: always
      sample: ["create", "start"]
    container:
      description: The container after the task (null once absent), as M(daemonless.oci.oci_container_state) returns it.
      type: dict
      returned: always
    cgroup_manager:
      description: The cgroup manager used.
      type: str
      returned: when converged to a state other than absent
bundles:
  description: One result per bundle directory the items declare, as M(daemonless.oci.oci_bundle) returns it.
  returned: always
  type: list
  elements: dict
  contains:
    path:
      description: The bundle directory.
      type: str
      returned: always
    changed:
      description: Whether the bundle changed.
      type: bool
      returned: always
    failed:
      description: Whether making it failed (its items then fail too).
      type: bool
      returned: always
    msg:
      description: Why it failed.
      type: str
      returned: when failed
    actions:
      description: What was done to it.
      type: list
      elements: str
      returned: always
    config_digest:
      description: The sha256 of its C(config.json).
      type: str
      returned: unless failed
id:
  description: With O(single=true), the container's id.
  returned: when O(single=true)
  type: str
actions:
  description: With O(single=true), what was done to the container, as M(daemonless.oci.oci_container_state) says.
  returned: when O(single=true)
  type: list
  elements: str
  sample: ["create", "start"]
container:
  description: With O(single=true), the container as M(daemonless.oci.oci_container_state) returns it.
  returned: when O(single=true)
  type: dict
removed:
  description: With O(exclusive=true), the containers of O(state_root) that O(containers) did not name, as in RV(containers).
  returned: always
  type: list
  elements: dict
msg:
  description: Which containers failed; with O(single=true) the container's own message, as
    M(daemonless.oci.oci_container_state) words it (also when nothing failed).
  returned: when an item failed, and always with O(single=true)
  type: str
  sample: "1 of 3 containers failed: db (each one's msg says why; the others were converged)"
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.daemonless.oci.plugins.module_utils._ansible import bytecode


def main():
    # The rest of the collection is imported once its compiled code can come from the host's cache.
    cache = bytecode.install()
    from ansible_collections.daemonless.oci.plugins.module_utils._ansible import containers
    from ansible_collections.daemonless.oci.plugins.module_utils._ansible.argument_specs import STATE_ROOT_ARGSPEC
    from ansible_collections.daemonless.oci.plugins.module_utils._ansible.module_support import require_cffi
    from ansible_collections.daemonless.oci.plugins.module_utils._runtime.errors import OCIError
    argument_spec = dict(
        containers=dict(type='list', elements='dict', required=True),
        exclusive=dict(type='bool', default=False),
        parallel=dict(type='int', default=containers.DEFAULT_PARALLEL),
    )
    argument_spec.update(STATE_ROOT_ARGSPEC)
    argument_spec.update(containers.SINGLE_ARGSPEC)
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    bytecode.persist(cache, not module.check_mode)
    require_cffi(module)
    try:
        result = containers.run(module.params, check_mode=module.check_mode, diff=module._diff)
    except OCIError as exc:
        module.fail_json(msg=str(exc))
    if result.get('failed'):
        module.fail_json(**result)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
