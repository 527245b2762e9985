"""What the multihost test modules share: what the hosts need, and the hosts themselves (harness.py).

Each test module gets its own set of hosts (`hosts`, module scope): its
tests run in order on them, and the next module starts on fresh hosts. A
module says how many it wants with HOST_COUNT (default 3) and which of them
get a pure cgroup v2 layout with V2_HOSTS (their numbers, default none).
"""
import os
import shutil

import pytest

import harness

# In CI (CI=true) a missing package fails the run instead of skipping it: `make venv` installs them.
OPTIONAL = os.environ.get("CI") != "true"
NEEDS = [
    pytest.mark.skipif(os.geteuid() != 0, reason="the hosts need root: namespaces, cgroups, sshd"),
    pytest.mark.skipif(OPTIONAL and not os.access(harness.SSHD, os.X_OK),
                       reason="needs Debian's openssh-server (%s)" % harness.SSHD),
    pytest.mark.skipif(OPTIONAL and shutil.which("sudo") is None, reason="needs sudo for become"),
]


def pytest_collection_modifyitems(config, items):
    here = os.path.dirname(os.path.abspath(__file__))
    for item in items:
        if os.path.dirname(str(item.fspath)) == here:
            for mark in NEEDS:
                item.add_marker(mark)


@pytest.fixture(scope="module")
def hosts(request):
    """The module's HOST_COUNT hosts (V2_HOSTS of them pure v2), up for its tests; afterwards torn down,
    and the machine checked clean."""
    count = getattr(request.module, "HOST_COUNT", 3)
    v2 = getattr(request.module, "V2_HOSTS", ())
    if v2:
        mounts = harness.cgroup_mounts()
        if harness.unified_mount(mounts) is None:
            pytest.skip("the machine has no cgroup2 hierarchy to give a pure-v2 host")
        if [m[1] for m in mounts] == ["cgroup2"]:
            pytest.skip("the machine is pure v2 itself: no v1/hybrid host to converge beside the v2 one")
    machine = harness.Harness(count, v2=v2).up()
    try:
        yield machine
    finally:
        errors = machine.teardown()
        leftovers = machine.leftovers()
        assert not errors and not leftovers, "teardown: %s; left on the machine: %s" % (errors, leftovers)


@pytest.fixture(scope="module")
def sudo_inventory(hosts):
    """The hosts' inventory logged in as the unprivileged test user, root through sudo."""
    return hosts.inventory(harness.TEST_USER, {"ansible_become_method": "sudo", "ansible_become_user": "root"})
