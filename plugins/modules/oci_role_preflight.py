#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: daemonless.oci contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# The work is done on the controller by plugins/action/oci_role_preflight.py; this file documents it.

DOCUMENTATION = r'''
module: oci_role_preflight
short_description: The first task of the daemonless.oci.container role
version_added: 0.1.0
description:
  - What the role C(daemonless.oci.container) does
    before its work, in one task (each task a role runs costs a round of the play, so this one replaces three).
  - On the controller, warns about the task's variables whose names begin with O(prefix) and that are not
    among O(known) or the options of O(known_from) (a typo, or a podman or docker habit such as
    C(container_ports)), fails with O(problems) when there are any, and identifies the sources of
    O(identify).
  - On the host, runs the shell command O(look) when given (as M(ansible.builtin.raw) would, and in check
    mode too, since it must only read) and returns its output, a line per fact.
  - Made for the role; a playbook has no use for it.
author:
  - daemonless.oci maintainers (@daemonless)
options:
  name:
    description: The container's name, which begins each message.
    type: str
    required: true
  known:
    description: Variable names the caller knows besides those of O(known_from), such as a result it registers.
    type: list
    elements: str
    default: []
  known_from:
    description: A role argument spec file (C(meta/argument_specs.yml)) whose entry point C(main) names the known variables.
    type: path
  prefix:
    description: Only variables whose names begin with this are checked against O(known).
    type: str
    default: container_
  problems:
    description: What is wrong with the caller's values, one message each; the task fails with them.
    type: list
    elements: str
    default: []
  look:
    description:
      - A shell command run on the host (no module is sent); it must only read, and print a line per fact.
      - Not run when O(problems) is not empty. Its exit code is returned, not judged.
    type: str
  look_args:
    description:
      - Values for O(look), as its positional parameters (C($1), C($2), ...), each quoted for the shell here, so
        that O(look) can be a fixed text.
    type: list
    elements: str
    default: []
  identify:
    description:
      - Sources on the controller to identify without reading them (RV(identity)), as the role's C(ocirt) install
        check does.
    type: dict
    suboptions:
      path:
        description: The directory O(identify.parts) are relative to.
        type: path
        required: true
      parts:
        description: Files and directories under O(identify.path); bytecode (C(__pycache__), C(*.pyc)) is left out.
        type: list
        elements: str
        required: true
attributes:
  check_mode:
    support: full
    description: Changes nothing; O(look) runs in check mode too.
  diff_mode:
    support: none
    description: Nothing changes, so there is nothing to diff.
  action:
    support: full
    description: Runs on the controller; only O(look) reaches the host.
seealso:
  - module: ansible.builtin.raw
  - module: ansible.builtin.validate_argument_spec
'''

EXAMPLES = r'''
- name: Check the role's variables and look at the host
  daemonless.oci.oci_role_preflight:
    name: "{{ container_name }}"
    known_from: "{{ role_path }}/meta/argument_specs.yml"
    known: [container_result]
    problems: "{{ [] if container_name is match('^[a-z0-9-]+$') else ['container_name has other characters'] }}"
    look: test -d /var/log/app || echo logdir=missing
  register: preflight
'''

RETURN = r'''
unknown:
  description: The variables that begin with O(prefix) and are not among O(known), sorted; each is in a warning.
  returned: always
  type: list
  elements: str
  sample: [container_ports]
look:
  description: The output of O(look), a stripped line each; empty when it did not run.
  returned: always
  type: list
  elements: str
  sample: ["version=0.1.0", "logdir=missing"]
look_rc:
  description: The exit code of O(look).
  returned: when O(look) ran
  type: int
identity:
  description: The sha256 of each file's path, size and modification time under O(identify), one line each, sorted.
  returned: when O(identify) is given
  type: str
'''
