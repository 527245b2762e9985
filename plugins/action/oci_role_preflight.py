# -*- coding: utf-8 -*-
# Copyright: daemonless.oci contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The daemonless.oci.container role's first task (documented in plugins/modules/oci_role_preflight.py).

One task instead of three (a warning's debug, an assert, a raw look): every task a role runs costs a
round of the play's strategy, skipped or not, and the role's own tasks around its one module task were
most of what it cost above podman_container (issue 20, bench/README.md)."""
from __future__ import annotations

import hashlib
import os
import shlex

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase

ARGUMENT_SPEC = dict(
    name=dict(type="str", required=True),
    known=dict(type="list", elements="str", default=[]),
    known_from=dict(type="path"),
    prefix=dict(type="str", default="container_"),
    problems=dict(type="list", elements="str", default=[]),
    look=dict(type="str"),
    look_args=dict(type="list", elements="str", default=[]),
    identify=dict(type="dict", options=dict(
        path=dict(type="path", required=True),
        parts=dict(type="list", elements="str", required=True),
    )),
)


def spec_options(path):
    """The option names of the entry point `main` of the role argument spec file PATH."""
    import yaml  # pylint: disable=import-outside-toplevel
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        with open(path, "rb") as handle:
            spec = yaml.load(handle, Loader=loader)  # nosec B506: a safe loader
        return list(spec["argument_specs"]["main"]["options"])
    except (OSError, yaml.YAMLError, KeyError, TypeError) as error:
        raise AnsibleActionFail("known_from: cannot read the options of %s: %s" % (path, error))


def source_identity(path, parts):
    """What identifies the files of PARTS under PATH without reading them: each file's path, size and
    modification time (bytecode left out), summed with sha256. A content change that restores the size
    and the time is not seen, as make would not see it."""
    lines = []
    for part in parts:
        top = os.path.join(path, part)
        if os.path.isfile(top):
            found = [(part, os.stat(top))]
        elif os.path.isdir(top):
            found = []
            for directory, subdirectories, files in os.walk(top):
                subdirectories[:] = [name for name in subdirectories if name != "__pycache__"]
                for name in files:
                    if not name.endswith(".pyc"):
                        full = os.path.join(directory, name)
                        found.append((os.path.relpath(full, path), os.stat(full)))
        else:
            raise AnsibleActionFail("identify: %s is missing" % top)
        lines.extend("%s %d %d\n" % (name, info.st_size, info.st_mtime_ns) for name, info in found)
    return hashlib.sha256("".join(sorted(lines)).encode()).hexdigest()


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(ARGUMENT_SPEC)

    def run(self, tmp=None, task_vars=None):
        self._supports_check_mode = True
        result = super().run(tmp, task_vars)
        _validation, args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)
        known = set(args["known"])
        if args["known_from"]:
            known.update(spec_options(args["known_from"]))
        unknown = sorted(name for name in (task_vars or {})
                         if name.startswith(args["prefix"]) and name not in known)
        result.update(changed=False, unknown=unknown, look=[])
        if args["identify"]:
            result["identity"] = source_identity(args["identify"]["path"], args["identify"]["parts"])
        if unknown:
            result["warnings"] = ["container %s: the role daemonless.oci.container ignores %s (not among its variables:"
                                  " see `ansible-doc -t role daemonless.oci.container`)"
                                  % (args["name"], ", ".join(unknown))]
        if args["problems"]:
            result.update(failed=True, msg="container %s: %s" % (args["name"], "; ".join(args["problems"])))
            return result
        if args["look"]:
            # Ansible appends " && sleep 0" to the command: after a final newline that would be a line of
            # its own, and a syntax error.
            command = args["look"].rstrip()
            if args["look_args"]:
                # The values as positional parameters: the command itself stays a fixed text.
                command = "set -- %s\n%s" % (" ".join(shlex.quote(value) for value in args["look_args"]), command)
            done = self._low_level_execute_command(command)
            result["look"] = [line.strip() for line in (done.get("stdout") or "").splitlines() if line.strip()]
            result["look_rc"] = done.get("rc")
        return result
