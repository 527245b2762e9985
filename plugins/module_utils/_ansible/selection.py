# -*- coding: utf-8 -*-
# Copyright: daemonless.oci contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The whole work of the two read-only modules (oci_container_info and oci_container_facts): their
options, the containers selected by name and labels as results, their logs.

The runtime core knows nothing of Ansible; this turns its container
states into module results.
"""
from ansible.module_utils.basic import AnsibleModule

from ansible_collections.daemonless.oci.plugins.module_utils._ansible import labels
from ansible_collections.daemonless.oci.plugins.module_utils._ansible.argument_specs import STATE_ROOT_ARGSPEC
from ansible_collections.daemonless.oci.plugins.module_utils._ansible.module_support import error_text, require_cffi
from ansible_collections.daemonless.oci.plugins.module_utils._ansible.results import container_result
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.errors import OCIError

# The info and facts modules' options.
SELECTION_ARGSPEC = dict(name=dict(type='list', elements='str', default=[], aliases=['id']))
SELECTION_ARGSPEC.update(STATE_ROOT_ARGSPEC)
# Selection by labels: every label given must match (info and facts).
SELECTION_ARGSPEC.update(labels=dict(type='dict', default={}))
# oci_container_info's own: each selected container's log.
INFO_ARGSPEC = dict(SELECTION_ARGSPEC, logs_tail=dict(type='int'), logs_since=dict(type='str'))


def gather(argument_spec=None):
    """The info and facts modules' work: (their AnsibleModule, containers as results, named ids that
    do not exist, host capabilities). Both take the same options (SELECTION_ARGSPEC) and change nothing."""
    from ansible_collections.daemonless.oci.plugins.module_utils._runtime.host_info import host_capabilities
    from ansible_collections.daemonless.oci.plugins.module_utils._runtime.state import list_containers
    module = AnsibleModule(argument_spec=argument_spec or SELECTION_ARGSPEC, supports_check_mode=True)
    require_cffi(module)
    try:
        states = list_containers(module.params['state_root'])
        host = host_capabilities()
    except (OCIError, OSError, ValueError) as exc:
        module.fail_json(msg="state_root %s: %s" % (module.params['state_root'], error_text(exc)))
    wanted = module.params['name']
    found = set(s['id'] for s in states)
    containers = [container_result(s) for s in states if not wanted or s['id'] in wanted]
    containers = select_by_labels(module, containers)
    # Networks (issue 16): each container's attachments, and CNI CHECK's verdict as drift.
    from ansible_collections.daemonless.oci.plugins.module_utils._ansible.networks import container_facts
    for container in containers:
        container.update(container_facts(module.params['state_root'], container['id']))
    missing = [name for name in wanted if name not in found]
    return module, containers, missing, host


def select_by_labels(module, containers):
    """CONTAINERS that carry every label of the task's `labels` option."""
    try:
        wanted = labels.validate(module.params.get('labels'))
    except OCIError as exc:
        module.fail_json(msg=str(exc))
    return [c for c in containers if labels.matches(c['labels'], wanted)]


def add_logs(module, root, containers):
    """Give each of CONTAINERS its log (`logs`, `log_entries`, `logs_truncated`) when the task asks for it
    (logs_tail or logs_since)."""
    from ansible_collections.daemonless.oci.plugins.module_utils._ansible import logs
    if module.params.get('logs_tail') is None and not module.params.get('logs_since'):
        return
    try:
        tail, since = logs.validate(module.params['logs_tail'], module.params['logs_since'])
        for container in containers:
            entries, truncated = logs.container_logs(root, container['id'], tail=tail, since=since)
            container.update(log_entries=entries, logs=[e['text'] for e in entries], logs_truncated=truncated)
    except OCIError as exc:
        module.fail_json(msg=str(exc))


def absent_result(container_id):
    """A container asked for by name that does not exist, as the facts publish it: status absent, so that
    `ansible_facts.oci_containers[id].status` works in a condition without default()."""
    return {'id': container_id, 'status': 'absent'}


def selection_message(containers, missing, state_root):
    """The info and facts modules' msg: how many containers were found, and which ids asked for were not."""
    text = "%d container(s) in %s" % (len(containers), state_root)
    if missing:
        text += "; absent: %s" % ", ".join(missing)
    return text
