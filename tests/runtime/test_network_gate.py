"""oci_container_state imports the network code only when a task or a container has a network (container_state.py).

Each case runs container_state.run in a fresh interpreter on a real
container and reports which of the network modules that run imported: none
for a container without network options (it still gets its hostname), all
for a task with network options, and for the delete (or re-create) of a
container that has an attachment recorded, which must release it.
"""
import json
import os
import subprocess
import sys

import pytest

from helpers import COLLECTIONS, SERVICE, container_state_params, new_id
from ansible_collections.daemonless.oci.plugins.module_utils._ansible import container_state, networks
from ansible_collections.daemonless.oci.plugins.module_utils._network import cni
from ansible_collections.daemonless.oci.plugins.module_utils._network.hostname import PLACEHOLDER_HOSTNAME
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.errors import OCIError

HANG_SECONDS = 120  # stops a hung run; not a timing assertion
NETWORK_MODULES = ("_ansible.networks", "_network.attachment", "_network.conflist", "_network.ports",
                   "_network.drift", "_network.cni")
PREFIX = "ansible_collections.daemonless.oci.plugins.module_utils."

RUN = """
import json, sys
from ansible_collections.daemonless.oci.plugins.module_utils._ansible import container_state
result = container_state.run(json.loads(sys.argv[1]))
print(json.dumps(dict(result=result, loaded=[name for name in sys.modules if name.startswith(%r)])))
""" % PREFIX


def run_fresh(params):
    """container_state.run(PARAMS) in a new interpreter: (its result, our modules it imported)."""
    env = dict(os.environ, PYTHONPATH=COLLECTIONS)
    done = subprocess.run([sys.executable, "-c", RUN, json.dumps(params)], env=env, capture_output=True, text=True,
                          check=False, timeout=HANG_SECONDS)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    return out["result"], set(name[len(PREFIX):] for name in out["loaded"])


def network_loaded(loaded):
    return sorted(set(NETWORK_MODULES) & loaded)


def test_a_container_without_network_options_imports_no_network_code_and_gets_its_hostname(state_root, make_bundle):
    cid = new_id("ng")
    params = container_state_params(state_root, cid, bundle=make_bundle(SERVICE), state="running")
    made, loaded = run_fresh(params)
    assert made["changed"] and made["container"]["status"] == "running"
    assert network_loaded(loaded) == [], loaded
    assert container_state.observe(state_root, cid)[1]["hostname"] == cid
    again, loaded = run_fresh(params)
    assert not again["changed"] and network_loaded(loaded) == []
    gone, loaded = run_fresh(dict(params, state="absent"))
    assert gone["changed"] and network_loaded(loaded) == []
    assert container_state.observe(state_root, cid)[0] is None


def test_network_options_import_it_and_a_recorded_attachment_is_released_by_a_task_without_them(
        state_root, make_bundle):
    cid = new_id("ng")
    bundle = make_bundle(SERVICE)
    with_net = container_state_params(state_root, cid, bundle=bundle, state="running", network=["host"],
                                      etc_hosts={"db.example": "192.0.2.7"})
    made, loaded = run_fresh(with_net)
    assert made["changed"] and "_ansible.networks" in loaded and "_network.attachment" in loaded
    directory = cni.container_dir(os.path.abspath(state_root), cid)
    assert container_state.has_attachment(state_root, cid) and os.path.isdir(directory)
    # The same container without the options: made again, its attachment released, through the network code.
    plain = container_state_params(state_root, cid, bundle=bundle, state="running")
    remade, loaded = run_fresh(plain)
    assert remade["changed"] and "_ansible.networks" in loaded, remade
    assert not os.path.isdir(directory)
    assert network_loaded(run_fresh(plain)[1]) == []
    # And deleted with an attachment: released, as before.
    run_fresh(with_net)
    assert os.path.isdir(directory)
    gone, loaded = run_fresh(dict(plain, state="absent"))
    assert gone["changed"] and "_ansible.networks" in loaded and not os.path.isdir(directory)


def test_an_attachment_left_by_an_interrupted_task_is_still_released_by_absent(state_root):
    cid = new_id("ng")
    directory = cni.container_dir(os.path.abspath(state_root), cid)
    os.makedirs(directory)
    result, loaded = run_fresh(container_state_params(state_root, cid, state="absent"))
    assert result["changed"] and "release network: left by an interrupted task" in result["actions"]
    assert "_ansible.networks" in loaded and not os.path.isdir(directory)


# Both ways give the same config for a task without network options: the hostname only where a UTS
# namespace is, the task's over the bundle's over the id; a bad one refused naming the option.
CONFIGS = [
    {"linux": {"namespaces": [{"type": "uts"}, {"type": "mount"}]}, "hostname": PLACEHOLDER_HOSTNAME},
    {"linux": {"namespaces": [{"type": "uts"}]}, "hostname": "chosen"},
    {"linux": {"namespaces": [{"type": "mount"}]}, "hostname": "kept"},
    {"linux": {"namespaces": [{"type": "uts"}]}},
    {"process": {"args": ["true"]}},
]


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("hostname", [None, "given"])
def test_the_gate_gives_the_config_the_network_code_gives_without_a_network(config, hostname):
    params = container_state_params("/run/ocirt-gate-unused", "ctr-1", hostname=hostname)
    assert not container_state.asks_network(params)
    assert container_state.network_config(config, params) == networks.container_config(config, params)
    assert "hostname" not in config or config["hostname"] in (PLACEHOLDER_HOSTNAME, "chosen", "kept")  # not edited


@pytest.mark.parametrize("overrides", [dict(network=["none"]), dict(network=None), dict(publish=[]), dict(etc_hosts={})])
def test_what_asks_for_no_network(overrides):
    assert not container_state.asks_network(container_state_params("/run/x", "c", **overrides))


@pytest.mark.parametrize("overrides", [dict(network=["host"]), dict(network=["net1"]), dict(network=[]),
                                       dict(publish=["80"]), dict(ip="10.0.0.2"), dict(dns_servers=["192.0.2.1"]),
                                       dict(dns_search=["x"]), dict(etc_hosts={"a": "192.0.2.1"})])
def test_what_asks_for_the_network_code_so_that_its_checks_still_apply(overrides):
    params = container_state_params("/run/x", "c", **overrides)
    assert container_state.asks_network(params)


def test_a_bad_hostname_is_refused_naming_the_option_without_the_network_code():
    params = container_state_params("/run/x", "c", hostname="not a name")
    with pytest.raises(OCIError, match="^hostname: "):
        container_state.network_config({"linux": {"namespaces": [{"type": "uts"}]}}, params)


def test_the_gates_network_area_is_cnis():
    assert container_state.NETWORK_AREA == cni.NETWORK_AREA
