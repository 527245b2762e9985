"""Each default is one named constant: the module docs, the role's defaults and its argument specs agree with it.

YAML cannot import Python, so the places that must repeat a default are
compared with the constant here (ansible-test sanity compares the module's
docs with its argument spec, which uses the constants).
"""
import importlib
import os

import pytest
import yaml

from helpers import REPO
from ansible_collections.daemonless.oci.plugins.module_utils._ansible import argument_specs, reconcile
from ansible_collections.daemonless.oci.plugins.module_utils._runtime import state
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.operations import create

# module option -> (the constant, the role variable that passes it)
DEFAULTS = {
    "state_root": (state.DEFAULT_ROOT, "container_state_root"),
    "stop_signal": (reconcile.DEFAULT_STOP_SIGNAL, "container_stop_signal"),
    "stop_timeout": (reconcile.DEFAULT_STOP_TIMEOUT, "container_stop_timeout"),
    "log_max_size": (create.DEFAULT_LOG_MAX_SIZE, "container_log_max_size"),
    "log_max_files": (create.DEFAULT_LOG_MAX_FILES, "container_log_max_files"),
    "timeout": (argument_specs.DEFAULT_JOB_TIMEOUT, "container_timeout"),
    "logs_lines": (argument_specs.DEFAULT_LOGS_LINES, None),
}


def load_yaml(*parts):
    with open(os.path.join(REPO, *parts)) as handle:
        return yaml.safe_load(handle)


def module_options():
    """oci_container_state's options as documented, with the state_root fragment's."""
    module = importlib.import_module("ansible_collections.daemonless.oci.plugins.modules.oci_container_state")
    fragment = importlib.import_module("ansible_collections.daemonless.oci.plugins.doc_fragments.state_root")
    options = yaml.safe_load(module.DOCUMENTATION)["options"]
    options.update(yaml.safe_load(fragment.ModuleDocFragment.DOCUMENTATION)["options"])
    return options


@pytest.mark.parametrize("option", sorted(DEFAULTS))
def test_module_docs_give_the_constant(option):
    assert module_options()[option]["default"] == DEFAULTS[option][0]


@pytest.mark.parametrize("option", sorted(name for name in DEFAULTS if DEFAULTS[name][1]))
def test_the_role_passes_the_constant_by_default(option):
    constant, variable = DEFAULTS[option]
    assert load_yaml("roles", "container", "defaults", "main.yml")[variable] == constant
    specs = load_yaml("roles", "container", "meta", "argument_specs.yml")
    assert specs["argument_specs"]["main"]["options"][variable]["default"] == constant
