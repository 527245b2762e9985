"""Container networks on real CNI plugins, real veths, real iptables rules and real traffic (issue 16).

oci_network's backend (_ansible/networks.run_network) makes a bridge network
in a private CNI config directory; oci_container_state's backend
(container_state.run) runs busybox containers on it. Every test is audited
(the `netaudit` fixture): after it, no veth, no iptables rule, no host-local
reservation, no namespace mount is left, whether it passed or failed.
"""
import json
import os
import random
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid

import pytest

from helpers import WORDS_BY_ROOT, cmdline, poll, read_text
from test_role_cli import role_run  # noqa: F401  # pylint: disable=unused-import
from ansible_collections.daemonless.oci.plugins.module_utils._ansible import argument_specs, container_state, networks
from ansible_collections.daemonless.oci.plugins.module_utils._network import attachment, cni, conflist
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.errors import OCIError
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.operations import create

CNI_BIN = "/usr/lib/cni"
# The chains and jumps the plugins make once per host and share between all networks (podman leaves them
# too): not a container's leftovers.
SHARED_RULES = re.compile(r"^(:CNI-(ADMIN|FORWARD|HOSTPORT-DNAT|HOSTPORT-MASQ|HOSTPORT-SETMARK|ISOLATION-STAGE-1|"
                          r"ISOLATION-STAGE-2) |"
                          r"-A (FORWARD|PREROUTING|OUTPUT|POSTROUTING) .*-j CNI-(FORWARD|HOSTPORT-DNAT|HOSTPORT-MASQ|"
                          r"ISOLATION-STAGE-1)$|-A CNI-ISOLATION-STAGE-[12] -m comment --comment \"[^\"]*\" -j RETURN$|"
                          r"-A CNI-FORWARD .*-j CNI-ADMIN$|-A CNI-HOSTPORT-(MASQ|SETMARK) )")
# The rootfs is read-only: the page goes to /dev/shm, a tmpfs of the container.
HTTPD = "mkdir -p /dev/shm/www && echo hello-from-$(hostname) > /dev/shm/www/index.html && exec httpd -f -p 80 -h /dev/shm/www"


FETCH = "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 %s 80 | tail -n 1 | grep hello"


def _missing_host_feature():
    for plugin in ("bridge", "host-local", "portmap", "firewall", "tuning", "loopback", "dnsname"):
        if not os.access(os.path.join(CNI_BIN, plugin), os.X_OK):
            return "CNI plugin %s missing (install containernetworking-plugins and the dnsname plugin)" % plugin
    if subprocess.run(["iptables", "-L", "-n"], capture_output=True, check=False).returncode != 0:
        return "iptables does not work here"
    if subprocess.run(["which", "dnsmasq"], capture_output=True, check=False).returncode != 0:
        return "dnsmasq missing (dnsmasq-base)"
    return None


pytestmark = pytest.mark.skipif(os.geteuid() != 0 or bool(_missing_host_feature()),
                                reason=_missing_host_feature() or "needs root")


def iptables_rules():
    lines = set()
    for command in (["iptables-save"], ["ip6tables-save"]):
        out = subprocess.run(command, capture_output=True, text=True, check=False).stdout
        for line in out.splitlines():
            if line.startswith("#") or line.startswith("*") or line == "COMMIT":
                continue
            line = re.sub(r" \[\d+:\d+\]$", "", line)
            # A built-in chain with its default policy: listed from the first use of its table on (on a freshly
            # booted host, the first test's), not a rule anything left. A chain a test made has no policy ("-").
            if re.match(r"^:[A-Z]+ ACCEPT$", line):
                continue
            lines.add(line)
    return lines


def host_links():
    return set(os.listdir("/sys/class/net"))


class NetAudit:
    """The host's network state a test may not change for good: links, iptables rules, IPAM reservations."""

    def __init__(self):
        self.links = host_links()
        self.rules = iptables_rules()

    def leftovers(self, network_names):
        problems = []
        links = sorted(link for link in host_links() - self.links if link.startswith(("veth", "oci")))
        if links:
            problems.append("veths or bridges left: %s" % links)
        rules = sorted(rule for rule in iptables_rules() - self.rules if not SHARED_RULES.match(rule))
        if rules:
            problems.append("iptables rules left: %s" % rules)
        dnsmasq = [pid for pid in os.listdir("/proc") if pid.isdigit() and any(
            "/dnsname/%s/" % name in " ".join(cmdline(int(pid)) or []) for name in network_names)]
        if dnsmasq:
            problems.append("dnsmasq left: %s" % dnsmasq)
        for name in network_names:
            directory = os.path.join(networks.IPAM_DIR, name)
            reserved = sorted(f for f in os.listdir(directory) if f not in ("lock",)
                              and not f.startswith("last_reserved_ip")) if os.path.isdir(directory) else []
            if reserved:
                problems.append("IPAM reservations left in %s: %s" % (directory, reserved))
        return problems


@pytest.fixture
def net(state_root, scratch):
    """net(**options) -> the settings of a new bridge network (a private config dir, a random subnet); all
    removed afterwards and the host audited for what the containers could leave."""
    config_dir = os.path.join(scratch, "cni")
    made = []
    audit = NetAudit()

    def make(**options):
        name = "t%s" % uuid.uuid4().hex[:8]
        params = dict(name=name, state="present", driver="bridge", subnet="10.%d.%d.0/24" % (
            random.randint(130, 199), random.randint(0, 255)), gateway=None, ip_range=None, interface_name=None,
            parent=None, ip_masquerade=True, internal=False, isolate=False, dns=True, force=False,
            config_dir=config_dir, cni_path=CNI_BIN, state_root=state_root)
        params.update(options)
        made.append(params)
        return networks.run_network(params)["network"]

    def change(name, **options):
        """Network NAME made again with OPTIONS changed (oci_network's run); its result."""
        params = next(p for p in made if p["name"] == name)
        params.update(options)
        return networks.run_network(params)
    make.config_dir = config_dir
    make.change = change
    yield make
    area = os.path.join(state_root, cni.NETWORK_AREA)
    try:
        # The containers go first (state_root's finalizer runs after this one): remove them here.
        for container_id in sorted(os.listdir(area)) if os.path.isdir(area) else []:
            if container_id != "cni.py":
                container_state.run(dict(id=container_id, state="absent", bundle=None, state_root=state_root,
                                         stop_signal="SIGKILL", stop_timeout=0, recreate=False, restart=False,
                                         wait="none", timeout=10, log_path=None, log_max_size=0, log_max_files=1,
                                         logs_lines=0))
    finally:
        for params in made:
            networks.run_network(dict(params, state="absent", force=True))
    problems = audit.leftovers([p["name"] for p in made])
    assert not problems, "; ".join(problems)


@pytest.fixture
def params(state_root, net):
    """params(**overrides): oci_container_state's parameters for a fresh id on the networks of NET's dir."""
    def build(**overrides):
        container_id = overrides.pop("id", None) or "n-" + uuid.uuid4().hex[:10]
        WORDS_BY_ROOT.setdefault(state_root, set()).add(container_id)
        result = dict(id=container_id, bundle=None, state="running", recreate=False, restart=False, wait="none",
                      timeout=argument_specs.DEFAULT_JOB_TIMEOUT, stop_signal="SIGKILL", stop_timeout=0,
                      log_path=None, log_max_size=create.DEFAULT_LOG_MAX_SIZE,
                      log_max_files=create.DEFAULT_LOG_MAX_FILES, logs_lines=argument_specs.DEFAULT_LOGS_LINES,
                      state_root=state_root, network_config_dir=net.config_dir, cni_path=CNI_BIN)
        result.update(overrides)
        return result
    return build


def address_of(state_root, container_id, index=0):
    found = networks.container_facts(state_root, container_id)["networks"]
    return found[index]["addresses"][0].split("/")[0]


def http_get(url, tries=100):
    """The body at URL; the server may still be starting (a bounded retry, not a measurement)."""
    last = None
    for dummy in range(tries):
        try:
            with urllib.request.urlopen(url, timeout=5) as answer:
                return answer.read().decode()
        except OSError as exc:
            last = exc
            time.sleep(0.05)
    pytest.fail("no answer from %s: %s" % (url, last))


def other_host_address():
    """An address of this host that is not loopback (the published port must answer there too)."""
    out = subprocess.run(["ip", "-4", "-o", "addr", "show", "scope", "global"], capture_output=True,
                         text=True, check=True).stdout
    for line in out.splitlines():
        address = line.split()[3].split("/")[0]
        if not line.split()[1].startswith(("oci", "veth", "cni")):
            return address
    pytest.skip("the host has no global IPv4 address")


def run_job(params, bundle_args, make_bundle, **options):
    bundle = make_bundle(bundle_args)
    return container_state.run(params(bundle=bundle, wait="exited", timeout=60, **options))


# --------------------------------------------------------------------------
# traffic

def test_httpd_answers_at_its_address_and_published_ports(params, net, make_bundle, state_root):
    network = net()
    bundle = make_bundle(["sh", "-c", HTTPD])
    host_port = random.randint(20000, 29000)
    publish = ["%d:80" % host_port, "127.0.0.1:%d:80/tcp" % (host_port + 1)]
    p = params(bundle=bundle, network=[network["name"]], publish=publish)
    result = container_state.run(p)
    assert result["actions"] == ["create", "start"]
    address = address_of(state_root, p["id"])
    assert address.startswith(network["subnet"].rsplit(".", 1)[0] + ".")
    assert http_get("http://%s/" % address).strip() == "hello-from-%s" % p["id"]
    assert http_get("http://127.0.0.1:%d/" % (host_port + 1)).strip() == "hello-from-%s" % p["id"]
    assert http_get("http://%s:%d/" % (other_host_address(), host_port)).strip() == "hello-from-%s" % p["id"]
    facts = networks.container_facts(state_root, p["id"])
    assert facts["drift"] == {} and facts["networks"][0]["gateway"] == network["gateway"]
    assert re.match(r"^([0-9a-f]{2}:){5}[0-9a-f]{2}$", facts["networks"][0]["mac"])
    assert {m["hostPort"] for m in facts["networks"][0]["published"]} == {host_port, host_port + 1}
    # The container's own files: made for it, not in its image.
    # (the runtime makes an empty mount point in the rootfs, as runc does; nothing is written into it)
    assert os.path.getsize(os.path.join(bundle, "rootfs", "etc", "resolv.conf")) == 0
    hosts = read_text(os.path.join(state_root, cni.NETWORK_AREA, p["id"], "hosts"))
    assert "%s\t%s" % (address, p["id"]) in hosts


# A UDP echo server for the container's network namespace: busybox's nc has no UDP mode, so the host's
# Python serves inside the namespace (nsenter --net), which is the path a published port takes all the same.
UDP_ECHO = ("import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('0.0.0.0', 53)); "
            "print('ready', flush=True)\nwhile True:\n    data, peer = s.recvfrom(100); s.sendto(b'echo:' + data, peer)")


def test_a_udp_port_and_a_port_range_are_published(params, net, make_bundle, state_root):
    network = net()
    base = random.randint(30000, 39000)
    bundle = make_bundle(["sh", "-c", HTTPD.replace("-p 80", "-p 9001")])
    p = params(bundle=bundle, network=[network["name"]],
               publish=["%d:53/udp" % base, "%d-%d:9000-9002" % (base + 10, base + 12)])
    container_state.run(p)
    assert http_get("http://127.0.0.1:%d/" % (base + 11)).strip() == "hello-from-%s" % p["id"]
    netns_file = os.path.join(state_root, cni.NETWORK_AREA, p["id"], "netns")
    server = subprocess.Popen(["nsenter", "--net=" + netns_file, sys.executable, "-c", UDP_ECHO],
                              stdout=subprocess.PIPE, text=True)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(2)
    try:
        assert server.stdout.readline().strip() == "ready"
        sock.sendto(b"over-udp", (other_host_address(), base))
        assert sock.recvfrom(100)[0] == b"echo:over-udp"
    finally:
        sock.close()
        server.kill()
        server.wait()


def test_containers_reach_each_other_by_address_and_name_but_not_across_isolated_networks(
        params, net, make_bundle, state_root):
    """isolate is the firewall plugin's ingressPolicy same-bridge: no traffic between two isolated networks."""
    shared = net(isolate=True)
    isolated = net(isolate=True)
    server = params(bundle=make_bundle(["sh", "-c", HTTPD]), network=[shared["name"]], id="srv-" + uuid.uuid4().hex[:6])
    container_state.run(server)
    address = address_of(state_root, server["id"])
    http_get("http://%s/" % address)
    # busybox's own resolver (nslookup) asks dnsmasq on the bridge; nc fetches the page (this static
    # busybox's wget crashes in glibc's NSS, whatever the network).
    by_name = run_job(params, ["sh", "-c", (FETCH + " && nslookup %s | tail -n +3") % (address, server["id"])],
                      make_bundle, network=[shared["name"]])
    assert by_name["exit_code"] == 0, by_name["logs_lines"]
    assert by_name["logs_lines"][0] == "hello-from-%s" % server["id"]
    assert "Address: %s" % address in by_name["logs_lines"], by_name["logs_lines"]
    cut_off = run_job(params, ["sh", "-c", (FETCH + " || echo unreachable") % address],
                      make_bundle, network=[isolated["name"]])
    assert "unreachable" in cut_off["logs_lines"], cut_off["logs_lines"]
    assert not [line for line in cut_off["logs_lines"] if "hello" in line]


# --------------------------------------------------------------------------
# idempotence, changes, check mode, hostname

def test_idempotent_then_a_changed_port_list_recreates_and_check_mode_changes_nothing(
        params, net, make_bundle, state_root):
    network = net()
    port = random.randint(40000, 45000)
    p = params(bundle=make_bundle(["sh", "-c", HTTPD]), network=[network["name"]], publish=["%d:80" % port])
    planned = container_state.run(p, check_mode=True)
    assert planned["changed"] and planned["actions"] == ["create", "start"]
    assert not os.path.exists(os.path.join(state_root, cni.NETWORK_AREA, p["id"]))
    container_state.run(p)
    again = container_state.run(p)
    assert again["changed"] is False and again["actions"] == []
    moved = dict(p, publish=["%d:80" % (port + 1)])
    preview = container_state.run(moved, check_mode=True, diff=True)
    assert preview["changed"] and preview["actions"][-1] == "start"
    assert "annotations.org.daemonless.oci.network.publish changed" in preview["actions"][0]
    assert http_get("http://127.0.0.1:%d/" % port)  # check mode left the old port in place
    container_state.run(moved)
    assert http_get("http://127.0.0.1:%d/" % (port + 1)).strip() == "hello-from-%s" % p["id"]
    rules = "\n".join(iptables_rules())
    assert "--dport %d " % (port + 1) in rules + " " and "--dport %d " % port not in rules + " "


def test_hostname_defaults_to_the_container_id_and_the_option_wins(params, make_bundle):
    """Issue 19 point 16: no more `ocirt` for every container."""
    default = run_job(params, ["hostname"], make_bundle)
    assert default["logs_lines"] == [default["container"]["id"]]
    chosen = run_job(params, ["hostname"], make_bundle, hostname="web1")
    assert chosen["logs_lines"] == ["web1"]


def test_host_network_and_dns_options_are_written_into_the_containers_files(params, make_bundle, state_root):
    job = run_job(params, ["sh", "-c", "cat /etc/resolv.conf /etc/hosts; ls /sys/class/net | grep -c ."],
                  make_bundle, network=["host"], dns_servers=["192.0.2.53"], dns_search=["example.test"],
                  etc_hosts={"db.example.test": "192.0.2.10"})
    text = "\n".join(job["logs_lines"])
    assert "nameserver 192.0.2.53" in text and "search example.test" in text
    assert "192.0.2.10\tdb.example.test" in text
    assert int(job["logs_lines"][-1]) == len(host_links())  # the host's interfaces: no namespace of its own


# --------------------------------------------------------------------------
# nothing left behind

def test_absent_releases_everything(params, net, make_bundle, state_root):
    network = net()
    p = params(bundle=make_bundle(["sleep", "1000"]), network=[network["name"]], publish=["%d:80" % random.randint(
        46000, 47000)])
    container_state.run(p)
    directory = os.path.join(state_root, cni.NETWORK_AREA, p["id"])
    assert os.path.ismount(os.path.join(directory, "netns"))
    gone = container_state.run(dict(p, state="absent"))
    assert gone["changed"] and not os.path.exists(directory)
    assert attachment.users_of(state_root, network["name"]) == []


def test_ocirt_delete_force_releases_the_network_through_the_poststop_hook(
        params, net, make_bundle, state_root, ocirt):
    network = net()
    p = params(bundle=make_bundle(["sleep", "1000"]), network=[network["name"]])
    container_state.run(p)
    ocirt("delete", "--force", p["id"])
    assert not os.path.exists(os.path.join(state_root, cni.NETWORK_AREA, p["id"]))


def test_a_failed_create_leaves_no_network_behind(params, net, make_bundle, state_root):
    network = net()
    p = params(bundle=make_bundle(["/no/such/program"]), network=[network["name"]])
    with pytest.raises(OCIError):
        container_state.run(p)
    assert not os.path.exists(os.path.join(state_root, cni.NETWORK_AREA, p["id"]))


SLOW_PLUGIN = """#!/bin/sh
# The bridge plugin, slowed down on ADD so that the test can kill the task in the middle of it.
if [ "$CNI_COMMAND" = ADD ]; then touch "%s"; sleep 30; fi
exec %s/bridge
"""


@pytest.mark.parametrize("victim", ["module", "plugin"])
def test_kill_9_in_the_middle_of_network_setup_then_absent_cleans_up(
        params, net, make_bundle, state_root, scratch, victim):
    """The task (a real Python process running container_state.run) is SIGKILLed while bridge's ADD runs."""
    network = net()
    cni_dir = os.path.join(scratch, "cnibin")
    os.makedirs(cni_dir)
    marker = os.path.join(scratch, "adding")
    for name in os.listdir(CNI_BIN):
        os.symlink(os.path.join(CNI_BIN, name), os.path.join(cni_dir, name))
    os.unlink(os.path.join(cni_dir, "bridge"))
    with open(os.path.join(cni_dir, "bridge"), "w") as handle:
        handle.write(SLOW_PLUGIN % (marker, CNI_BIN))
    os.chmod(os.path.join(cni_dir, "bridge"), 0o755)
    p = params(bundle=make_bundle(["sleep", "1000"]), network=[network["name"]], cni_path=cni_dir)
    code = ("import json, sys; from ansible_collections.daemonless.oci.plugins.module_utils._ansible import "
            "container_state; container_state.run(json.loads(sys.argv[1]))")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    task = subprocess.Popen([sys.executable, "-c", code, json.dumps(p)], env=env, start_new_session=True)
    try:
        poll(lambda: os.path.exists(marker), "the bridge plugin's ADD to start")
        if victim == "module":
            task.kill()
        else:
            os.killpg(task.pid, signal.SIGKILL)
        task.wait()
    finally:
        if task.poll() is None:
            os.killpg(task.pid, signal.SIGKILL)
            task.wait()
    directory = os.path.join(state_root, cni.NETWORK_AREA, p["id"])
    assert os.path.ismount(os.path.join(directory, "netns"))  # what the crash left
    gone = container_state.run(dict(p, state="absent"))
    # The container itself is made while the bridge's ADD runs (its monitor outlives the task): when it was,
    # absent deletes it and releases its network; when not, only the network was left.
    assert gone["changed"] and gone["actions"] in (["release network: left by an interrupted task"],
                                                   ["stop", "delete"]), gone["actions"]
    assert not os.path.exists(directory)
    # The plugin the task left running (when only the task was killed) is gone too: finishing its ADD
    # after the DEL, it would make the bridge and veth again.
    needle = ("CNI_NETNS=" + os.path.join(directory, "netns")).encode()
    assert not [pid for pid in os.listdir("/proc") if pid.isdigit() and needle in _environ(pid)]


def netns_run(state_root, container_id, *argv):
    netns_file = os.path.join(state_root, cni.NETWORK_AREA, container_id, "netns")
    return subprocess.run(["nsenter", "--net=" + netns_file] + list(argv), capture_output=True, text=True,
                          check=True).stdout


def attach_bare(state_root, net, container_id, **options):
    """Attach a namespace with no container in it (the network side alone, fast)."""
    params = dict(id=container_id, network_config_dir=net.config_dir, cni_path=CNI_BIN, **options)
    attachment.attach(state_root, container_id, attachment.request_from({}, params))


def test_a_static_ip_an_internal_network_and_a_way_out(net, state_root):
    outward, inward = net(dns=False), net(dns=False, internal=True)
    wanted = outward["subnet"].rsplit(".", 1)[0] + ".77"
    try:
        attach_bare(state_root, net, "static", network=[outward["name"]], ip=wanted)
        attach_bare(state_root, net, "inner", network=[inward["name"]])
        assert "%s/24" % wanted in netns_run(state_root, "static", "ip", "-4", "-o", "addr", "show", "eth0")
        assert "default via %s" % outward["gateway"] in netns_run(state_root, "static", "ip", "route")
        assert "default" not in netns_run(state_root, "inner", "ip", "route")  # internal: no way out
    finally:
        attachment.release(state_root, "static")
        attachment.release(state_root, "inner")


def test_a_macvlan_network_on_a_parent_interface(net, state_root):
    parent = "ocmv%s" % uuid.uuid4().hex[:6]
    # A veth as the parent: any interface will do, and the dummy module may be missing.
    subprocess.run(["ip", "link", "add", parent, "type", "veth", "peer", "name", parent + "p"], check=True)
    try:
        subprocess.run(["ip", "link", "set", parent, "up"], check=True)
        network = net(driver="macvlan", parent=parent)
        assert network["dns"] is False and network["interface_name"] is None
        attach_bare(state_root, net, "mv", network=[network["name"]])
        try:
            details = netns_run(state_root, "mv", "ip", "-d", "-o", "addr", "show", "eth0")
            assert network["subnet"].rsplit(".", 1)[0] + "." in details
            assert "macvlan" in netns_run(state_root, "mv", "ip", "-d", "-o", "link", "show", "eth0")
        finally:
            attachment.release(state_root, "mv")
    finally:
        subprocess.run(["ip", "link", "delete", parent], check=False)


def _environ(pid):
    try:
        with open("/proc/%s/environ" % pid, "rb") as handle:
            return handle.read().split(b"\0")
    except OSError:
        return []


def test_fifty_containers_get_distinct_addresses_all_reachable_all_released(net, state_root):
    """The attach/release path of the containers (namespace + CNI ADD/DEL) fifty times, lean: no container
    processes, the host pings each namespace's address through the bridge."""
    network = net(dns=False)
    config = {"linux": {"namespaces": [{"type": "network"}]}}
    ids = ["f%02d-%s" % (i, uuid.uuid4().hex[:6]) for i in range(50)]
    addresses = []
    try:
        for container_id in ids:
            request = attachment.request_from(config, dict(id=container_id, network=[network["name"]],
                                                           network_config_dir=net.config_dir, cni_path=CNI_BIN))
            attachment.attach(state_root, container_id, request)
            addresses.append(address_of(state_root, container_id))
        assert len(set(addresses)) == 50
        for address in addresses:
            assert subprocess.run(["busybox", "ping", "-c", "1", "-W", "5", address], capture_output=True,
                                  check=False).returncode == 0, \
                address
    finally:
        for container_id in ids:
            attachment.release(state_root, container_id)
    assert os.listdir(os.path.join(state_root, cni.NETWORK_AREA)) == ["cni.py"]


# --------------------------------------------------------------------------
# bad input

@pytest.mark.parametrize("publish,needle", [
    (["99999:80"], "port 99999 is outside 1-65535"),
    (["80:abc"], "'abc' is not a port"),
    (["8000-8009:9000-9008"], "the host range has 10 ports, the container range 9"),
    (["1.2.3:80:80"], "is not an IP address"),
    (["80:80/sctp"], "protocol must be tcp or udp"),
])
def test_bad_ports_fail_naming_publish_before_anything_is_made(params, net, make_bundle, state_root, publish,
                                                               needle):
    network = net()
    p = params(bundle=make_bundle(["sleep", "1"]), network=[network["name"]], publish=publish)
    with pytest.raises(OCIError, match="publish: .*" + re.escape(needle)):
        container_state.run(p)
    assert not os.path.exists(os.path.join(state_root, cni.NETWORK_AREA, p["id"]))


def test_a_host_port_already_taken_is_refused(params, net, make_bundle, state_root):
    network = net()
    listener = socket.socket()
    listener.bind(("0.0.0.0", 0))
    listener.listen(1)
    try:
        port = listener.getsockname()[1]
        p = params(bundle=make_bundle(["sleep", "1"]), network=[network["name"]], publish=["%d:80" % port])
        with pytest.raises(OCIError, match="publish: host port %d/tcp is already in use" % port):
            container_state.run(p)
    finally:
        listener.close()
    assert not os.path.exists(os.path.join(state_root, cni.NETWORK_AREA, p["id"]))


@pytest.mark.parametrize("network,needle", [
    (["nosuchnet"], "network: no network named 'nosuchnet'"),
    (["a/b"], "network: 'a/b' is not a network name"),
    (["host", "x"], "network: host cannot be combined"),
])
def test_bad_network_names_fail_naming_network(params, make_bundle, state_root, network, needle):
    p = params(bundle=make_bundle(["sleep", "1"]), network=network)
    with pytest.raises(OCIError, match=re.escape(needle)):
        container_state.run(p)
    assert not os.path.exists(os.path.join(state_root, cni.NETWORK_AREA))


def test_a_missing_plugin_is_named_with_its_package(params, net, make_bundle, state_root, scratch):
    network = net()
    empty = os.path.join(scratch, "nocni")
    os.makedirs(empty)
    p = params(bundle=make_bundle(["sleep", "1"]), network=[network["name"]], cni_path=empty)
    with pytest.raises(OCIError, match="network: .*CNI plugin 'bridge' not found in %s: install the Debian "
                                       "package containernetworking-plugins" % re.escape(empty)):
        container_state.run(p)
    assert not os.path.exists(os.path.join(state_root, cni.NETWORK_AREA, p["id"]))


def test_lost_rules_show_as_drift(params, net, make_bundle, state_root):
    network = net()
    p = params(bundle=make_bundle(["sleep", "1000"]), network=[network["name"]])
    container_state.run(p)
    address = address_of(state_root, p["id"])
    rules = [r for r in iptables_rules() if r.startswith("-A CNI-FORWARD") and address in r]
    assert rules
    for rule in rules:
        subprocess.run(["iptables", "-D"] + shlex.split(rule)[1:], check=True)
    facts = networks.container_facts(state_root, p["id"])
    assert facts["drift"] == {"network": "missing"}, facts
    assert any("firewall" in problem for problem in facts["network_problems"])


FAILING_FIREWALL = """#!/bin/sh
# The firewall plugin failing its ADD (after bridge's, which succeeded): the container is made by then.
if [ "$CNI_COMMAND" = ADD ]; then echo '{"cniVersion": "1.0.0", "code": 999, "msg": "refused by the test"}'; exit 1; fi
exec %s/firewall
"""


def test_a_plugin_failing_after_the_container_was_made_leaves_neither_behind(
        params, net, make_bundle, state_root, scratch):
    """The container is created while the first plugin's ADD runs: a later plugin's failure takes it away too."""
    network = net(dns=False)
    cni_dir = os.path.join(scratch, "cnibin")
    os.makedirs(cni_dir)
    for name in os.listdir(CNI_BIN):
        if name != "firewall":
            os.symlink(os.path.join(CNI_BIN, name), os.path.join(cni_dir, name))
    with open(os.path.join(cni_dir, "firewall"), "w") as handle:
        handle.write(FAILING_FIREWALL % CNI_BIN)
    os.chmod(os.path.join(cni_dir, "firewall"), 0o755)
    p = params(bundle=make_bundle(["sleep", "1000"]), network=[network["name"]], cni_path=cni_dir)
    with pytest.raises(OCIError, match="network %s: CNI ADD of plugin firewall failed: error 999: refused by "
                                       "the test" % network["name"]):
        container_state.run(p)
    assert container_state.observe(state_root, p["id"])[0] is None
    assert not os.path.exists(os.path.join(state_root, cni.NETWORK_AREA, p["id"]))


def test_lo_is_up_and_portmap_runs_only_for_a_container_that_publishes(net, state_root):
    """lo is brought up by the namespace's maker (no loopback plugin); portmap is left out of the list of a
    container without published ports, and so out of its DEL and CHECK."""
    network = net(dns=False)
    try:
        attach_bare(state_root, net, "quiet", network=[network["name"]])
        attach_bare(state_root, net, "loud", network=[network["name"]], publish=["%d:80" % random.randint(
            48000, 49000)])
        assert ",UP," in netns_run(state_root, "quiet", "ip", "-o", "link", "show", "lo")
        assert netns_run(state_root, "quiet", "busybox", "ping", "-c", "1", "-W", "2", "127.0.0.1")
        kinds = {}
        for name in ("quiet", "loud"):
            attachments = cni.read_cache(os.path.abspath(state_root), name)["attachments"]
            kinds[name] = [[plugin["type"] for plugin in a["config"]["plugins"]] for a in attachments]
        assert kinds == {"quiet": [["bridge", "firewall"]], "loud": [["bridge", "portmap", "firewall"]]}
    finally:
        attachment.release(state_root, "quiet")
        attachment.release(state_root, "loud")


def _portmap_rules(container_id):
    """(chain, [its jump rules]) of the container's DNAT chain, from iptables-save's nat table."""
    out = subprocess.run(["iptables-save", "-t", "nat"], capture_output=True, text=True, check=True).stdout
    jumps = [line for line in out.splitlines()
             if line.startswith("-A CNI-HOSTPORT-DNAT ") and 'id: \\"%s\\"' % container_id in line]
    chains = {shlex.split(line)[-1] for line in jumps}
    assert len(chains) == 1, out
    return chains.pop(), jumps


def test_lost_nat_rules_a_dead_dnsmasq_and_an_unmounted_namespace_are_drift_that_a_converge_repairs(
        params, net, make_bundle, state_root):
    """CHECK passes on a healthy attachment (bridge, portmap, firewall, and dnsname's part read by us) and
    fails once the DNAT chain of a published port is gone; the next converge re-attaches in place: the same
    process, the same address, the port answers again."""
    network = net()
    port = random.randint(50000, 55000)
    p = params(bundle=make_bundle(["sh", "-c", HTTPD]), network=[network["name"]], publish=["%d:80" % port])
    container_state.run(p)
    pid = container_state.observe(state_root, p["id"])[0]["pid"]
    address = address_of(state_root, p["id"])
    assert http_get("http://127.0.0.1:%d/" % port).strip() == "hello-from-%s" % p["id"]
    healthy = networks.container_facts(state_root, p["id"])
    assert healthy["drift"] == {} and healthy["network_problems"] == [], healthy
    assert container_state.run(p)["changed"] is False

    chain, jumps = _portmap_rules(p["id"])
    for jump in jumps:
        subprocess.run(["iptables", "-t", "nat", "-D"] + shlex.split(jump)[1:], check=True)
    subprocess.run(["iptables", "-t", "nat", "-F", chain], check=True)
    subprocess.run(["iptables", "-t", "nat", "-X", chain], check=True)
    with pytest.raises(OSError):
        urllib.request.urlopen("http://127.0.0.1:%d/" % port, timeout=5)
    lost = networks.container_facts(state_root, p["id"])
    assert lost["drift"] == {"network": "missing"}, lost
    assert [problem for problem in lost["network_problems"] if "portmap" in problem] == lost["network_problems"]
    preview = container_state.run(p, check_mode=True)
    assert preview["changed"] and preview["actions"][0].startswith("repair network: ")
    assert networks.container_facts(state_root, p["id"])["drift"] == {"network": "missing"}  # check mode
    repaired = container_state.run(p)
    assert repaired["changed"] and len(repaired["actions"]) == 1 and "portmap" in repaired["actions"][0]
    assert container_state.observe(state_root, p["id"])[0]["pid"] == pid  # in place: not recreated
    assert address_of(state_root, p["id"]) == address
    assert http_get("http://127.0.0.1:%d/" % port).strip() == "hello-from-%s" % p["id"]
    assert networks.container_facts(state_root, p["id"])["drift"] == {}
    assert container_state.run(p)["changed"] is False

    # dnsname's part: the network's dnsmasq killed, then started again by the repair's ADD.
    dns_dir = os.path.join(networks.DNSNAME_DIR, network["name"])
    os.kill(int(read_text(os.path.join(dns_dir, "pidfile")).strip()), signal.SIGKILL)
    poll(lambda: "dnsmasq is not running" in " ".join(networks.container_facts(state_root, p["id"])[
        "network_problems"]), "the killed dnsmasq to be seen")
    assert container_state.run(p)["changed"]
    answer = subprocess.run(["busybox", "nslookup", "%s.dns.oci" % p["id"], network["gateway"]],
                            capture_output=True, text=True, check=False).stdout
    assert "Address: %s" % address in answer, answer
    assert networks.container_facts(state_root, p["id"])["drift"] == {}

    # The namespace's bind mount removed under the running container: bound again from its process.
    netns_file = os.path.join(state_root, cni.NETWORK_AREA, p["id"], "netns")
    subprocess.run(["umount", netns_file], check=True)
    assert networks.container_facts(state_root, p["id"])["network_problems"] == [
        "network namespace %s is gone" % os.path.abspath(netns_file)]
    assert container_state.run(p)["changed"]
    assert os.path.ismount(netns_file) and networks.container_facts(state_root, p["id"])["drift"] == {}
    assert http_get("http://127.0.0.1:%d/" % port).strip() == "hello-from-%s" % p["id"]


def test_a_random_host_port_is_chosen_reported_kept_and_answers(params, net, make_bundle, state_root):
    """publish "80" (podman's -p 80): a free host port is chosen at attach, shown in the facts, and kept by
    the next runs (the plan compares the request, not the port chosen)."""
    network = net(dns=False)
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    try:
        p = params(bundle=make_bundle(["sh", "-c", HTTPD]), network=[network["name"]],
                   publish=["80", "127.0.0.1::80"])
        container_state.run(p)
        published = networks.container_facts(state_root, p["id"])["networks"][0]["published"]
        chosen = [m["hostPort"] for m in published]
        assert len(set(chosen)) == 2 and all(1024 <= port <= 65535 for port in chosen), published
        assert busy.getsockname()[1] not in chosen
        assert published[1]["hostIP"] == "127.0.0.1"
        for port in chosen:
            assert http_get("http://127.0.0.1:%d/" % port).strip() == "hello-from-%s" % p["id"]
        assert container_state.run(p)["changed"] is False
        assert networks.container_facts(state_root, p["id"])["networks"][0]["published"] == published
    finally:
        busy.close()


# --------------------------------------------------------------------------
# a network changed under its containers

def bridge_addresses(bridge):
    """The IPv4 addresses (address/prefix) of BRIDGE, in the kernel's order; [] when there is no such link."""
    out = subprocess.run(["ip", "-j", "-4", "addr", "show", "dev", bridge], capture_output=True, text=True,
                         check=False)
    if out.returncode != 0:
        return []
    return ["%s/%d" % (a["local"], a["prefixlen"]) for link in json.loads(out.stdout) for a in link["addr_info"]]


def other_subnet(network):
    """A /24 that is not NETWORK's nor any other test's (they take 10.130-199.x)."""
    return "10.%d.%d.0/24" % (random.randint(200, 250), random.randint(0, 255))


def nothing_left_of(subnet, network_name):
    """What is left on the host of SUBNET ("10.x.y.0/24"): bridge addresses, iptables rules, IPAM files."""
    prefix = subnet.rsplit(".", 1)[0] + "."
    left = []
    for link in host_links():
        left += [a for a in bridge_addresses(link) if a.startswith(prefix)] if link.startswith("oci") else []
    left += [rule for rule in iptables_rules() if prefix in rule]
    directory = os.path.join(networks.IPAM_DIR, network_name)
    for name in sorted(os.listdir(directory)) if os.path.isdir(directory) else []:
        if name.startswith(prefix) or prefix in read_text(os.path.join(directory, name)):
            left.append(os.path.join(directory, name))
    return left


def test_a_changed_subnet_recreates_the_container_on_it_and_leaves_nothing_of_the_old(
        params, net, make_bundle, state_root):
    """The user's trial: a running container, its network's subnet changed, the container converged again:
    the bridge's old address made the new ADD fail, and the container stayed deleted."""
    network = net()
    old = network["subnet"]
    p = params(bundle=make_bundle(["sh", "-c", HTTPD]), network=[network["name"]])
    container_state.run(p)
    assert http_get("http://%s/" % address_of(state_root, p["id"])).strip() == "hello-from-%s" % p["id"]
    changed = net.change(network["name"], subnet=other_subnet(network))
    assert changed["changed"] and changed["users"] == [p["id"]]
    new = changed["network"]
    result = container_state.run(p)
    assert [a.split(":")[0] for a in result["actions"]] == ["stop", "delete", "create", "start"], result["actions"]
    assert container_state.observe(state_root, p["id"])[0]["status"] == "running"
    address = address_of(state_root, p["id"])
    assert address.startswith(new["subnet"].rsplit(".", 1)[0] + ".")
    assert http_get("http://%s/" % address).strip() == "hello-from-%s" % p["id"]
    assert bridge_addresses(new["interface_name"]) == ["%s/24" % new["gateway"]]
    assert nothing_left_of(old, network["name"]) == []
    answer = subprocess.run(["busybox", "nslookup", "%s.dns.oci" % p["id"], new["gateway"]],
                            capture_output=True, text=True, check=False).stdout
    assert "Address: %s" % address in answer, answer  # dnsmasq answers on the new gateway
    assert container_state.run(p)["changed"] is False


def test_containers_of_a_changed_subnet_converge_one_by_one_and_the_others_keep_working_meanwhile(
        params, net, make_bundle, state_root):
    """The first container recreated while another still holds an address of the old subnet: both
    addresses on the bridge (the new one first, which bridge's ADD wants); the old goes with its last user."""
    network = net()
    old = network["subnet"]
    first = params(bundle=make_bundle(["sh", "-c", HTTPD]), network=[network["name"]], id="a-" + uuid.uuid4().hex[:6])
    second = params(bundle=make_bundle(["sh", "-c", HTTPD]), network=[network["name"]],
                    id="b-" + uuid.uuid4().hex[:6])
    container_state.run(first)
    container_state.run(second)
    second_old = address_of(state_root, second["id"])
    new = net.change(network["name"], subnet=other_subnet(network))["network"]
    container_state.run(first)
    first_new = address_of(state_root, first["id"])
    assert first_new.startswith(new["subnet"].rsplit(".", 1)[0] + ".")
    assert http_get("http://%s/" % first_new).strip() == "hello-from-%s" % first["id"]
    assert http_get("http://%s/" % second_old).strip() == "hello-from-%s" % second["id"]
    assert bridge_addresses(new["interface_name"]) == ["%s/24" % new["gateway"], "%s/24" % network["gateway"]]
    container_state.run(second)
    second_new = address_of(state_root, second["id"])
    assert second_new.startswith(new["subnet"].rsplit(".", 1)[0] + ".")
    assert bridge_addresses(new["interface_name"]) == ["%s/24" % new["gateway"]]
    assert nothing_left_of(old, network["name"]) == []
    job = run_job(params, ["sh", "-c", FETCH % second_new], make_bundle, network=[network["name"]])
    assert job["exit_code"] == 0 and job["logs_lines"] == ["hello-from-%s" % second["id"]], job["logs_lines"]


def test_a_renamed_bridge_goes_with_its_last_container_or_at_once_when_it_has_none(
        params, net, make_bundle, state_root):
    used, unused = net(), net()
    p = params(bundle=make_bundle(["sleep", "1000"]), network=[used["name"]])
    container_state.run(p)
    attach_bare(state_root, net, "bare", network=[unused["name"]])
    attachment.release(state_root, "bare")
    assert bridge_addresses(unused["interface_name"]) == ["%s/24" % unused["gateway"]]
    changed = net.change(unused["name"], subnet=other_subnet(unused))
    assert changed["changed"] and changed["users"] == []
    assert not os.path.exists(os.path.join("/sys/class/net", unused["interface_name"]))  # no one on it: gone
    renamed = "ocr" + uuid.uuid4().hex[:8]
    net.change(used["name"], interface_name=renamed)
    assert os.path.exists(os.path.join("/sys/class/net", used["interface_name"]))  # still p's
    container_state.run(p)
    assert not os.path.exists(os.path.join("/sys/class/net", used["interface_name"]))
    assert bridge_addresses(renamed) == ["%s/24" % used["gateway"]]


def test_the_role_puts_its_container_on_a_network_of_another_config_dir(net, state_root, role_run):  # noqa: F811
    """container_network_config_dir and container_cni_path reach the deploy: a network oci_network made in
    its own config_dir (not /etc/cni/net.d) is usable from the role."""
    from runner_events import describe
    network = net()
    ran = role_run(container_network=[network["name"]], container_network_config_dir=net.config_dir,
                   container_cni_path=CNI_BIN, container_install_network_packages=False,
                   container_install_cli=False)
    assert ran.status == "successful", describe(ran)
    import ipaddress
    address = address_of(state_root, role_run.name)
    assert ipaddress.ip_address(address) in ipaddress.ip_network(network["subnet"]), (address, network)


@pytest.fixture
def routed_block():
    """A bridge (this kernel has no dummy links) whose address makes the host route 10.89.0.0/24, the first
    automatic subnet."""
    name = "tdum" + uuid.uuid4().hex[:8]
    subprocess.run(["ip", "link", "add", name, "type", "bridge"], check=True)
    try:
        subprocess.run(["ip", "addr", "add", "10.89.0.250/24", "dev", name], check=True)
        subprocess.run(["ip", "link", "set", name, "up"], check=True)
        yield "10.89.0.0/24"
    finally:
        subprocess.run(["ip", "link", "del", name], check=True)


def test_an_automatic_subnet_avoids_a_block_the_host_already_routes(net, routed_block):
    import ipaddress
    chosen = ipaddress.ip_network(net(subnet=None)["subnet"])
    routes = conflist.host_routes()
    assert routed_block in routes.values(), routes
    assert not any(chosen.overlaps(ipaddress.ip_network(block)) for block in routes.values()), (chosen, routes)
