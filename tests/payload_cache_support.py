"""What the payload cache's tests share: a private copy of the collection, ansible runs that record their
payload builds (tests/callback_plugins/payload_probe.py), and a fresh build by ansible's own code."""
import base64
import collections
import io
import json
import os
import shutil
import subprocess
import time
import zipfile

import helpers
from helpers import REPO, poll, processes_rooted_under

ANSIBLE_BIN = os.path.join(REPO, ".venv", "bin")
PYTHON = os.path.join(ANSIBLE_BIN, "python")
PROBE = os.path.join(REPO, "tests", "callback_plugins")
HANG_SECONDS = 300  # stops a hung ansible run; not a timing assertion
FQN = "ansible_collections.daemonless.oci.plugins.modules."
# The cache keeps no build whose files changed less than this ago (RACY_NS in _payload_cache.py).
RACY_SECONDS = 1.0


def copy_collection(base):
    """A copy of the collection under BASE (which the test may change freely): (collections path, root).
    Returns once its files are older than the cache's racy window, as a checkout's are."""
    collections_path = os.path.join(base, "collections")
    root = os.path.join(collections_path, "ansible_collections", "daemonless", "oci")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(os.path.join(REPO, "plugins"), os.path.join(root, "plugins"), ignore=ignore)
    shutil.copytree(os.path.join(REPO, "meta"), os.path.join(root, "meta"))
    shutil.copy(os.path.join(REPO, "galaxy.yml"), root)
    time.sleep(RACY_SECONDS + 0.1)  # a wait for the racy window to pass, not a time limit
    return collections_path, root


def ansible_env(base, collections_path, **extra):
    """helpers.ansible_env for the copy under COLLECTIONS_PATH, with its own ANSIBLE_HOME (so its own payload
    store) under BASE, none of the caller's DAEMONLESS_OCI_* settings, and the payload probe."""
    env = helpers.ansible_env(stdout_callback=None, collections_path=collections_path,
                              drop=("ANSIBLE_", "DAEMONLESS_OCI_"),
                              ANSIBLE_HOME=os.path.join(base, "home"), ANSIBLE_CALLBACK_PLUGINS=PROBE,
                              ANSIBLE_CALLBACKS_ENABLED="payload_probe", ANSIBLE_RETRY_FILES_ENABLED="false",
                              PAYLOAD_PROBE_LOG=os.path.join(base, "probe.jsonl"))
    env.update(extra)
    return env


def store_of(base):
    return os.path.join(base, "home", "daemonless.oci", "payloads")


def run_play(base, env, tasks, *flags):
    """TASKS (a list of task dicts) as one play on localhost: (builds, {task name: (status, result)}).
    builds counts the payload builds of our modules by fqn (a Counter: 0 for a module never built)."""
    log = env["PAYLOAD_PROBE_LOG"]
    if os.path.exists(log):
        os.unlink(log)
    playbook = os.path.join(base, "play.yml")
    with open(playbook, "w") as handle:
        json.dump([{"hosts": "localhost", "gather_facts": False, "tasks": tasks}], handle)
    done = subprocess.run([os.path.join(ANSIBLE_BIN, "ansible-playbook"), "-i", "localhost,", "-c", "local",
                           playbook] + list(flags), env=env, stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, check=False, timeout=HANG_SECONDS)
    output = done.stdout + done.stderr
    assert "Traceback" not in output, output
    builds, results = collections.Counter(), {}
    with open(log) as handle:
        for line in handle:
            event = json.loads(line)
            if "build" in event:
                if event["build"].startswith(FQN):
                    builds[event["build"][len(FQN):]] += 1
            else:
                results[event["task"]] = (event["status"], event["result"])
    assert done.returncode == 0, output
    # An async task's wrapper may still be exiting in the run's remote temporary directory (under BASE).
    poll(lambda: not processes_rooted_under(base), "the run's processes under %s to exit" % base)
    return builds, results


def fresh_build(collections_path, module):
    """{zip member: bytes} of daemonless.oci.MODULE's payload built now by ansible's modify_module, in a fresh
    interpreter (ansible's collection loader must own ansible_collections) with a fresh cache directory."""
    script = r"""
import base64, os, sys, tempfile
os.environ["ANSIBLE_COLLECTIONS_PATH"] = sys.argv[1]
from ansible import constants as C
from ansible.executor import module_common
from ansible.parsing.dataloader import DataLoader
from ansible.plugins.loader import init_plugin_loader, module_loader
from ansible.template import Templar
init_plugin_loader([sys.argv[1]])
C.DEFAULT_LOCAL_TMP = tempfile.mkdtemp()
name = "daemonless.oci." + sys.argv[2]
path = module_loader.find_plugin_with_context(name).plugin_resolved_path
module_common.modify_module(module_name=name, module_path=path, module_args={}, templar=Templar(loader=DataLoader()),
                            task_vars={"ansible_python_interpreter": sys.executable})
cache = os.path.join(C.DEFAULT_LOCAL_TMP, "ansiballz_cache")
(entry,) = [f for f in os.listdir(cache) if not f.endswith(".lock")]
sys.stdout.write(module_common._CachedModule.load(os.path.join(cache, entry)).zip_data.decode())
"""
    env = dict((key, value) for key, value in os.environ.items()
               if key != "PYTHONPATH" and not key.startswith(("ANSIBLE_", "DAEMONLESS_OCI_")))
    done = subprocess.run([PYTHON, "-c", script, collections_path, module], env=env, capture_output=True,
                          check=True, timeout=HANG_SECONDS)
    return zip_members(done.stdout)


def zip_members(b64):
    with zipfile.ZipFile(io.BytesIO(base64.b64decode(b64))) as archive:
        return dict((name, archive.read(name)) for name in archive.namelist())


def entries(store):
    """{module: entry} of the store's entries (JSON), by module name."""
    found = {}
    for name in os.listdir(store):
        if name.endswith(".json") and name.startswith(FQN):
            with open(os.path.join(store, name)) as handle:
                found[name[len(FQN):].rsplit("-", 1)[0]] = json.load(handle)
    return found
