"""The role's first task, daemonless.oci.oci_role_preflight (plugins/action/oci_role_preflight.py), through
real ansible-playbook runs on localhost, and its two helpers in process.

It warns of unknown prefixed variables (the names from an argument spec file and a list), fails with the
caller's problems before it looks at the host, runs the look on the host also in check mode (its exit code
returned, not judged), and identifies a tree of sources by their paths, sizes and times.
"""
import json
import os
import subprocess
import uuid

import pytest

from helpers import HANG_SECONDS, REPO, ansible_env
from ansible_collections.daemonless.oci.plugins.action import oci_role_preflight as preflight
from ansible.errors import AnsibleActionFail

ANSIBLE_PLAYBOOK = os.path.join(REPO, ".venv", "bin", "ansible-playbook")
SPEC = os.path.join(REPO, "roles", "container", "meta", "argument_specs.yml")


def run_preflight(scratch, args, check=False, **variables):
    """One play with the task ARGS (and VARIABLES as play vars): (its registered result, the run)."""
    out = os.path.join(scratch, "result-%s.json" % uuid.uuid4().hex[:8])
    play = {"hosts": "localhost", "gather_facts": False, "check_mode": check, "vars": variables, "tasks": [
        {"name": "preflight", "daemonless.oci.oci_role_preflight": args, "register": "r", "ignore_errors": True},
        {"name": "keep", "check_mode": False, "ansible.builtin.copy": {"dest": out, "content": "{{ r | to_json }}"}},
    ]}
    playbook = os.path.join(scratch, "preflight.yml")
    with open(playbook, "w") as handle:
        json.dump([play], handle)
    done = subprocess.run([ANSIBLE_PLAYBOOK, "-i", "localhost,", "-c", "local", playbook], env=ansible_env(),
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False, timeout=HANG_SECONDS)
    assert done.returncode == 0, done.stdout + done.stderr
    with open(out) as handle:
        return json.load(handle), done


def test_unknown_variables_are_warned_of_and_problems_fail_before_the_host_is_looked_at(scratch):
    marker = os.path.join(scratch, "looked")
    args = {"name": "web", "known_from": SPEC, "known": ["container_result"], "look": "touch %s" % marker}
    result, done = run_preflight(scratch, dict(args, problems=["container_cpus must be a number"]),
                                 container_name="web", container_ports=["80:80"], container_result=1, other_var=2)
    assert result["failed"] and result["msg"] == "container web: container_cpus must be a number", result
    assert result["unknown"] == ["container_ports"], result  # the spec's and the list's are known
    assert "the role daemonless.oci.container ignores container_ports" in done.stderr, done.stderr
    assert not os.path.exists(marker)

    result, done = run_preflight(scratch, args, container_name="web")
    assert not result.get("failed") and result["changed"] is False and result["unknown"] == [], result
    assert os.path.exists(marker) and "ignores" not in done.stderr


def test_the_look_runs_in_check_mode_and_returns_its_lines_and_exit_code(scratch):
    look = "echo ' a=1 '; echo; echo b=two words; exit 3"
    result, _done = run_preflight(scratch, {"name": "web", "look": look}, check=True)
    assert not result.get("failed") and result["changed"] is False, result
    assert result["look"] == ["a=1", "b=two words"] and result["look_rc"] == 3, result
    result, _done = run_preflight(scratch, {"name": "web"})
    assert result["look"] == [] and "look_rc" not in result
    # A fixed script of several lines, its values as positional parameters quoted here.
    script = 'echo "first=$1"\necho "second=$2"\nif [ -z "$3" ]; then echo third=empty; fi\n'
    result, _done = run_preflight(scratch, {"name": "web", "look": script, "look_args": ["a b", "it's $HOME", ""]})
    assert result["look"] == ["first=a b", "second=it's $HOME", "third=empty"] and result["look_rc"] == 0, result


def test_identify_and_a_bad_spec_file_fail_naming_the_option(scratch):
    missing, _done = run_preflight(scratch, {"name": "web", "identify": {"path": scratch, "parts": ["nowhere"]}})
    assert missing["failed"] and missing["msg"] == "identify: %s is missing" % os.path.join(scratch, "nowhere")
    bad_spec = os.path.join(scratch, "spec.yml")
    with open(bad_spec, "w") as handle:
        handle.write("argument_specs: [1, 2]\n")
    broken, _done = run_preflight(scratch, {"name": "web", "known_from": bad_spec})
    assert broken["failed"] and broken["msg"].startswith("known_from: cannot read the options of %s" % bad_spec)
    typed, _done = run_preflight(scratch, {"name": "web", "known": "container_a", "problems": {"a": 1}})
    assert typed["failed"] and "problems" in typed["msg"], typed


def test_the_spec_options_are_the_roles_own():
    options = preflight.spec_options(SPEC)
    assert "container_name" in options and "container_image" in options and len(options) > 40
    with pytest.raises(AnsibleActionFail):
        preflight.spec_options(os.path.join(REPO, "no-such-spec.yml"))


def test_a_source_identity_follows_paths_sizes_and_times_and_ignores_bytecode(tmp_path):
    tree = tmp_path / "src"
    (tree / "pkg" / "__pycache__").mkdir(parents=True)
    (tree / "pkg" / "a.py").write_text("A = 1\n")
    (tree / "one.py").write_text("B = 2\n")
    parts = ["pkg", "one.py"]
    first = preflight.source_identity(str(tree), parts)
    assert len(first) == 64 and preflight.source_identity(str(tree), parts) == first
    (tree / "pkg" / "__pycache__" / "a.cpython-311.pyc").write_bytes(b"code")
    (tree / "pkg" / "b.pyc").write_bytes(b"code")
    assert preflight.source_identity(str(tree), parts) == first
    assert preflight.source_identity(str(tree), ["pkg"]) != first  # the parts are what is identified
    info = os.stat(tree / "one.py")
    os.utime(tree / "one.py", ns=(info.st_atime_ns, info.st_mtime_ns + 1))
    touched = preflight.source_identity(str(tree), parts)
    assert touched != first
    (tree / "pkg" / "c.py").write_text("")
    assert preflight.source_identity(str(tree), parts) not in (first, touched)
