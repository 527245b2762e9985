"""A service published on one managed host is reached from another at the first host's address (issue 16).

Two hosts of harness.py (network namespaces with an sshd each, joined by the
bridge mhbr0): on mh1 a playbook makes a CNI bridge network and runs a busybox
httpd on it with a published port; a play on mh2 fetches the page from
mh1's address over the hosts' own network, through mh1's portmap DNAT. Then
mh1 removes the container and the network and is checked clean. Run it only
under the multihost lock (the harness's addresses and names are fixed):
`flock /tmp/multihost.lock make units TEST_PATHS=tests/multihost/test_network_multihost.py`.
"""
import os
import shutil

import pytest


# What the hosts need, and the `hosts` fixture (two of them here), are in conftest.py.
HOST_COUNT = 2
pytestmark = pytest.mark.skipif(not os.access("/usr/lib/cni/portmap", os.X_OK), reason="needs containernetworking-plugins")

PORT = 18080
SERVE = """---
- name: A network and a published web server on the first host
  hosts: mh1
  become: true
  gather_facts: false
  vars:
    oci_dir: /srv/oci
  module_defaults:
    group/daemonless.oci.oci:
      state_root: /run/ocirt
  tasks:
    - name: Build a busybox root filesystem from Debian's busybox-static
      ansible.builtin.shell: |
        set -e
        rootfs={{ oci_dir }}/rootfs
        mkdir -p $rootfs/bin $rootfs/etc $rootfs/tmp $rootfs/proc $rootfs/sys $rootfs/dev
        cp /bin/busybox $rootfs/bin/busybox
        for applet in $(/bin/busybox --list); do [ "$applet" = busybox ] || ln -sf busybox $rootfs/bin/$applet; done
        echo 'root:x:0:0:root:/root:/bin/sh' > $rootfs/etc/passwd
        echo 'root:x:0:' > $rootfs/etc/group
      args:
        creates: "{{ oci_dir }}/rootfs/bin/busybox"
    - name: The network (its list on the host's private /srv)
      daemonless.oci.oci_network:
        name: mhweb
        subnet: 10.78.0.0/24
        dns: false
        config_dir: /srv/cni
        state_root: /run/ocirt
    - name: The bundle
      daemonless.oci.oci_bundle:
        path: "{{ oci_dir }}/bundles/web"
        rootfs_from: "{{ oci_dir }}/rootfs"
        args: [sh, -c, "mkdir -p /dev/shm/w && echo served-by-$(hostname) > /dev/shm/w/index.html && exec httpd -f -p 80 -h /dev/shm/w"]
    - name: The service, published on every address of the host
      daemonless.oci.oci_container_state:
        id: mhweb1
        bundle: "{{ oci_dir }}/bundles/web"
        network: [mhweb]
        network_config_dir: /srv/cni
        publish: ["%(port)d:80"]
""" % {"port": PORT}

FETCH = """---
- name: The second host fetches the page at the first host's address
  hosts: mh2
  gather_facts: false
  tasks:
    - name: Fetch it
      ansible.builtin.uri:
        url: "http://%(address)s:%(port)d/"
        return_content: true
      register: page
      retries: 50
      delay: 0.2
      until: page is succeeded
    - name: It is the first host's container that answered
      ansible.builtin.assert:
        that:
          - page.content | trim == 'served-by-mhweb1'
"""

REMOVE = """---
- name: The first host removes the service and the network
  hosts: mh1
  become: true
  gather_facts: false
  tasks:
    - name: The container goes
      daemonless.oci.oci_container_state:
        id: mhweb1
        state: absent
        stop_signal: SIGKILL
        state_root: /run/ocirt
    - name: The network goes
      daemonless.oci.oci_network:
        name: mhweb
        state: absent
        config_dir: /srv/cni
        state_root: /run/ocirt
"""


def write(directory, name, text):
    path = os.path.join(directory, name)
    with open(path, "w") as handle:
        handle.write(text)
    return path


@pytest.fixture
def ipam_store():
    """The host-local IPAM store of the test's network, which lives on the machine's /var/lib/cni."""
    yield "/var/lib/cni/networks/mhweb"
    shutil.rmtree("/var/lib/cni/networks/mhweb", ignore_errors=True)


def test_a_service_published_on_one_host_is_reached_from_another(hosts, ipam_store, tmp_path):
    inventory = hosts.inventory("root")
    first = hosts.by_name("mh1")
    served = hosts.playbook(write(str(tmp_path), "serve.yml", SERVE), inventory)
    try:
        assert served.rc == 0, str(served)
        fetched = hosts.playbook(write(str(tmp_path), "fetch.yml", FETCH % {"address": first.address,
                                                                            "port": PORT}), inventory)
        assert fetched.rc == 0 and fetched.recap["mh2"]["failed"] == 0, str(fetched)
    finally:
        removed = hosts.playbook(write(str(tmp_path), "remove.yml", REMOVE), inventory)
    assert removed.rc == 0, str(removed)
    assert [e for e in first.state_entries() if e != "=network"] == []
    area = "/proc/%d/root/run/ocirt/=network" % first.keeper.pid
    assert not os.path.isdir(area) or os.listdir(area) == ["cni.py"]
    assert not os.path.isdir(ipam_store) or not [f for f in os.listdir(ipam_store) if f[0].isdigit()]
