#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: daemonless.oci contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r'''
module: oci_container_exec
short_description: Run a command in a running OCI container
version_added: 0.1.0
description:
  - Runs a command in a running container of O(state_root), as C(ocirt exec) does (the same code path, inside the
    module; no second program), and returns its exit code and output, like
    M(containers.podman.podman_container_exec) and M(community.docker.docker_container_exec).
  - The command joins the container's namespaces and cgroup and gets the container's own process settings
    (environment, capabilities, seccomp filter, rlimits, ...) with what the options here change.
  - A nonzero exit code fails the task, as with M(ansible.builtin.command), podman_container_exec and
    docker_container_exec (Ansible fails any result whose C(rc) is not 0); the result still has C(rc), C(stdout)
    and C(stderr). Decide otherwise with C(failed_when), for example C(result.rc not in [0, 1]). The task also
    fails when the command cannot run at all - an unknown container, one that is not running, a bad option, a
    program that is missing or not executable - with a message that says why.
  - The task always reports C(changed=true), as there is no way to know what a command changed; use
    C(changed_when) to say otherwise.
author:
  - daemonless.oci maintainers (@daemonless)
extends_documentation_fragment:
  - daemonless.oci.state_root
attributes:
  check_mode:
    support: full
    description: Runs nothing, and reports C(changed=true) with a RV(msg) saying what would have run.
  diff_mode:
    support: none
    description: There is no before and after to show; what a command changes is unknown.
options:
  id:
    description: The id of the container, which must be running.
    type: str
    required: true
    aliases: [name]
  argv:
    description:
      - The command and its arguments, as a list; run as is, no shell.
      - Exactly one of O(argv) and O(command) is required.
    type: list
    elements: str
  command:
    description:
      - The command as a string, split into arguments as a POSIX shell would split it (quotes, backslashes)
        but run without a shell; use O(argv) to pass arguments untouched, or C(sh -c '...') for shell syntax.
      - Exactly one of O(argv) and O(command) is required.
    type: str
  env:
    description:
      - Environment variables, added to (and overriding) the container's own.
      - Names and values follow the rules of M(daemonless.oci.oci_bundle)'s O(daemonless.oci.oci_bundle#module:env),
        and a bad one fails the task. A name must not be empty, nor hold C(=), a blank or NUL. A value is a string
        or an integer (its decimal text); a boolean, null, float, list or dict is refused (quote it in YAML to
        pass its text).
    type: dict
    default: {}
  user:
    description:
      - The user to run as, C(user), C(user:group), C(uid) or C(uid:gid), looked up in the container's own
        C(/etc/passwd) and C(/etc/group) as M(daemonless.oci.oci_bundle)'s O(daemonless.oci.oci_bundle#module:user)
        is (with the user's supplementary groups); default the container's user.
    type: str
  workdir:
    description: The working directory inside the container (absolute); default the container's.
    type: str
    aliases: [cwd, chdir]
  stdin:
    description: Text given to the command on its standard input; without it the command reads an empty input.
    type: str
  stdin_add_newline:
    description: Add a newline to O(stdin).
    type: bool
    default: true
  strip_empty_ends:
    description: Remove trailing newlines from RV(stdout) and RV(stderr).
    type: bool
    default: true
  tty:
    description:
      - Give the command a terminal. Its output then comes through the terminal, all in RV(stdout), with
        C(\r\n) line ends; RV(stderr) is empty.
    type: bool
    default: false
  detach:
    description:
      - Start the command in the background and return once it runs, with its RV(pid); its output goes
        nowhere and its exit code is not known. O(stdin) cannot be given.
    type: bool
    default: false
seealso:
  - module: daemonless.oci.oci_container_state
  - module: daemonless.oci.oci_bundle
'''

EXAMPLES = r'''
- name: Ask the database whether it is ready
  daemonless.oci.oci_container_exec:
    id: db
    argv: [pg_isready, -h, localhost]
  register: ready
  changed_when: false
  failed_when: ready.rc not in [0, 1]

- name: Run a shell pipeline as the web server's user
  daemonless.oci.oci_container_exec:
    id: web
    command: sh -c 'ls /var/www | wc -l'
    user: www-data
    workdir: /var/www

- name: Feed a script to a shell in the container
  daemonless.oci.oci_container_exec:
    id: web
    argv: [sh]
    stdin: |
      echo one
      echo two >&2
      exit 3
  register: script
  failed_when: script.rc != 3

- name: Start a background job in the container
  daemonless.oci.oci_container_exec:
    id: web
    argv: [sh, -c, 'sleep 3600']
    detach: true
'''

RETURN = r'''
rc:
  description: The command's exit code (128 + N when signal N ended it).
  returned: success, unless O(detach=true)
  type: int
  sample: 0
stdout:
  description: What the command wrote to its standard output (invalid UTF-8 replaced).
  returned: success, unless O(detach=true)
  type: str
  sample: hello
stderr:
  description: What the command wrote to its standard error.
  returned: success, unless O(detach=true)
  type: str
  sample: ''
stdout_lines:
  description: RV(stdout) split into lines.
  returned: success, unless O(detach=true)
  type: list
  elements: str
  sample: [hello]
stderr_lines:
  description: RV(stderr) split into lines.
  returned: success, unless O(detach=true)
  type: list
  elements: str
  sample: []
pid:
  description: The host's process id of the command started in the background.
  returned: success, when O(detach=true)
  type: int
  sample: 12345
argv:
  description: The command that ran (or would run), as a list.
  returned: success
  type: list
  elements: str
  sample: [sh, -c, 'ls /var/www | wc -l']
msg:
  description: What happened, in words.
  returned: always
  type: str
  sample: "sh -c 'ls /var/www | wc -l' in container web exited with 0"
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.daemonless.oci.plugins.module_utils._ansible import container_exec
from ansible_collections.daemonless.oci.plugins.module_utils._ansible.module_support import require_cffi
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.errors import OCIError


def main():
    module = AnsibleModule(argument_spec=container_exec.argument_spec(), supports_check_mode=True,
                           mutually_exclusive=container_exec.MUTUALLY_EXCLUSIVE,
                           required_one_of=container_exec.REQUIRED_ONE_OF)
    require_cffi(module)
    try:
        result = container_exec.run(module.params, check_mode=module.check_mode)
    except OCIError as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(**result)


if __name__ == '__main__':
    main()
