"""Playbooks run as AWX runs a job template: through ansible-runner, read back as its job events.

AWX hands a job to ansible-runner (a private data dir, the playbook, an
inventory, extra vars) and shows what the runner's event stream says: one
event per task and host (runner_on_ok, runner_on_failed, ...) with the
module's result in event_data.res, and the play's stats per host. The tests
read the same events, so what they assert is what an AWX job page shows.
"""
import os
import signal

import ansible_runner

from helpers import REPO

VENV = os.path.join(REPO, ".venv")


def run_job(private_data_dir, playbook, inventory, extravars=None, envvars=None):
    """ansible_runner.run() of PLAYBOOK (a path) with the venv's ansible-playbook and this collection;
    returns the Runner (its status, rc, events and stats)."""
    # The runner's own stdout callback makes the events: a callback chosen by the caller would hide them.
    env = dict((k, v) for k, v in (envvars or {}).items() if k != "ANSIBLE_STDOUT_CALLBACK")
    env.update({
        "ANSIBLE_COLLECTIONS_PATH": os.path.join(VENV, "collections"),
        "ANSIBLE_COLLECTIONS_SCAN_SYS_PATH": "false",
        "ANSIBLE_NOCOLOR": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        # The runner starts `ansible-playbook` from PATH, as AWX's execution environments do.
        "PATH": os.path.join(VENV, "bin") + os.pathsep + env.get("PATH", os.environ.get("PATH", os.defpath)),
    })
    os.makedirs(private_data_dir, exist_ok=True)
    saved = dict((signum, signal.getsignal(signum)) for signum in (signal.SIGINT, signal.SIGTERM))
    try:
        return ansible_runner.run(private_data_dir=str(private_data_dir), playbook=os.path.abspath(playbook),
                                  inventory=os.path.abspath(inventory), extravars=extravars or {}, envvars=env,
                                  quiet=True, timeout=900)
    finally:
        # ansible-runner installs SIGINT and SIGTERM handlers that cancel its job, and leaves them in place:
        # without this, the test process would go on after a cancelled CI run or a kill, its fixtures undone.
        for signum, handler in saved.items():
            signal.signal(signum, handler)


def describe(runner):
    """What went wrong, for an assertion message: status, rc and the tail of the job's output."""
    return "status=%s rc=%s\n%s" % (runner.status, runner.rc, runner.stdout.read()[-8000:])


def task_events(runner, task, event="runner_on_ok"):
    """[(host, event_data)] of EVENT for every run of TASK (its name, without a role's prefix), in order."""
    found = []
    for item in runner.events:
        data = item.get("event_data") or {}
        if item.get("event") == event and data.get("task") == task:
            found.append((data.get("host"), data))
    return found


def stats(runner):
    """The play's stats as AWX shows them: {host: {ok, changed, failures, dark, skipped, ...}}."""
    per_host = {}
    for key, counts in (runner.stats or {}).items():
        for host, count in (counts or {}).items():
            per_host.setdefault(host, {})[key] = count
    return per_host
