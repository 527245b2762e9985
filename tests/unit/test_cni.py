"""The network layer's parsing without a network: ports, conflists (hostile files), plugin results (hostile output).

The plugins themselves run in tests/runtime/test_networks.py; here the
checks that stand between their input/output and the host.
"""
import json
import os

import pytest

from ansible_collections.daemonless.oci.plugins.module_utils._network import cni, conflist, ports
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.errors import OCIError


@pytest.mark.parametrize("entry,expected", [
    ("8080:80", [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]),
    ("127.0.0.1:8443:443/tcp", [{"hostPort": 8443, "containerPort": 443, "protocol": "tcp", "hostIP": "127.0.0.1"}]),
    ("5353:53/udp", [{"hostPort": 5353, "containerPort": 53, "protocol": "udp"}]),
    ("[::1]:8080:80", [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp", "hostIP": "::1"}]),
])
def test_port_entries_as_podman_writes_them(entry, expected):
    assert ports.parse([entry]) == expected


def test_a_range_maps_port_for_port():
    mappings = ports.parse(["8000-8009:9000-9009"])
    assert [(m["hostPort"], m["containerPort"]) for m in mappings] == [(8000 + i, 9000 + i) for i in range(10)]


@pytest.mark.parametrize("entry,needle", [
    ("99999:80", "port 99999 is outside 1-65535"), ("80:abc", "'abc' is not a port"), ("0:80", "port 0"),
    ("a:b:c:d", "write HOST_PORT"), ("80:80/icmp", "tcp or udp"),
    ("9-1:1-9", "ends before it starts"), ("1-5000:1-5000", "more than 1000"), ("x.y:80:80", "not an IP"),
    ("[::1:80:80", "IPv6"), ("", "not a port mapping"), ("80:80\n", "not a port"), ("+80:80", "not a port"),
])
def test_bad_port_entries_name_publish_and_the_entry(entry, needle):
    with pytest.raises(OCIError) as caught:
        ports.parse([entry])
    assert str(caught.value).startswith("publish: ") and needle in str(caught.value)


def test_a_host_port_published_twice_is_refused():
    with pytest.raises(OCIError, match="host port 8080/tcp is published twice"):
        ports.parse(["8080:80", "127.0.0.1:8080:81"])
    assert len(ports.parse(["8080:80", "8080:80/udp"])) == 2


def settings(**params):
    return conflist.settings_from(dict(dict(name="n1", subnet="10.9.0.0/24"), **params))


@pytest.mark.parametrize("params,needle", [
    (dict(name="a/b"), "name: 'a/b' is not a network name"), (dict(name="-x"), "not a network name"),
    (dict(name="x" * 64), "not a network name"), (dict(subnet="10.9.0.1/24"), "subnet: "),
    (dict(subnet="fd00::/64"), "only IPv4"), (dict(gateway="10.9.1.1"), "gateway: 10.9.1.1 is not a host address"),
    (dict(ip_range="10.8.0.0/25"), "ip_range: 10.8.0.0/25 is not inside"), (dict(driver="ovs"), "driver: "),
    (dict(interface_name="a" * 16), "interface_name: "), (dict(driver="macvlan"), "parent: driver macvlan needs"),
    (dict(parent="eth0"), "parent: only for driver macvlan"),
])
def test_bad_network_settings_name_the_option(params, needle):
    with pytest.raises(OCIError, match=needle.replace("(", r"\(")):
        settings(**params)


def test_a_bridge_list_chains_the_plugins_and_keeps_its_settings():
    built = conflist.build(settings(isolate=True, internal=True, ip_range="10.9.0.128/25"))
    assert [p["type"] for p in built["plugins"]] == ["bridge", "portmap", "firewall", "dnsname"]
    bridge = built["plugins"][0]
    assert bridge["ipMasq"] is False and bridge["ipam"]["routes"] == []  # internal: no way out
    assert bridge["ipam"]["ranges"] == [[{"subnet": "10.9.0.0/24", "gateway": "10.9.0.1",
                                          "rangeStart": "10.9.0.129", "rangeEnd": "10.9.0.254"}]]
    assert built["plugins"][2]["ingressPolicy"] == "same-bridge"
    assert conflist.settings_of(built)["isolate"] is True
    assert conflist.validate(json.loads(conflist.text_of(built)), "x") == built


def test_an_automatic_subnet_avoids_the_taken_ones():
    chosen = conflist.settings_from(dict(name="auto"), {"other": "10.89.0.0/23"})
    assert chosen["subnet"] == "10.89.2.0/24"


def test_overlap_names_the_network_at_fault(tmp_path):
    conflist.write(str(tmp_path), conflist.build(settings(name="first")))
    with pytest.raises(OCIError, match="subnet: 10.9.0.0/16 overlaps subnet 10.9.0.0/24 of network 'first'"):
        conflist.check_overlap(settings(name="second", subnet="10.9.0.0/16"), conflist.all_networks(str(tmp_path)))


@pytest.mark.parametrize("content,needle", [
    (b"\xff\xfe", "not JSON"), (b"[]", "not a JSON object"), (b'{"cniVersion": "9.9", "name": "h"}', "cniVersion"),
    (b'{"cniVersion": "1.0.0", "name": "h", "plugins": []}', "plugins must be a non-empty list"),
    (b'{"cniVersion": "1.0.0", "name": "h", "plugins": [{"type": "../../bin/sh"}]}', "is not a plugin name"),
    (b'{"cniVersion": "1.0.0", "name": "other", "plugins": [{"type": "bridge"}]}', "names network 'other'"),
    (b" " * (conflist.MAX_FILE + 1), "larger than"),
])
def test_a_hostile_conflist_is_refused_naming_the_file(tmp_path, content, needle):
    (tmp_path / "h.conflist").write_bytes(content)
    with pytest.raises(OCIError) as caught:
        conflist.read(str(tmp_path), "h")
    assert str(caught.value).startswith("network: ") and needle in str(caught.value)


GOOD = {"cniVersion": "1.0.0", "interfaces": [{"name": "eth0", "mac": "aa:bb:cc:dd:ee:ff", "sandbox": "/x"}],
        "ips": [{"address": "10.9.0.2/24", "gateway": "10.9.0.1", "interface": 0}], "routes": [], "dns": {}}


@pytest.mark.parametrize("change,needle", [
    (lambda r: r.update(cniVersion="2.0.0"), "cniVersion"), (lambda r: r.update(ips="x"), "ips is not a list"),
    (lambda r: r["ips"][0].update(address="10.9.0.300/24"), "bad address"),
    (lambda r: r["ips"][0].update(interface=5), "not an index"),
    (lambda r: r["ips"][0].update(interface=True), "not an index"),
    (lambda r: r["interfaces"][0].pop("name"), "has no name"),
    (lambda r: r.update(dns={"nameservers": [1]}), "dns.nameservers"),
])
def test_a_hostile_plugin_result_is_refused(change, needle):
    result = json.loads(json.dumps(GOOD))
    change(result)
    with pytest.raises(cni.CNIError, match=needle):
        cni.parse_result(json.dumps(result).encode(), "network n: plugin p")
    assert cni.parse_result(json.dumps(GOOD).encode(), "w") == GOOD
    with pytest.raises(cni.CNIError, match="larger than"):
        cni.parse_result(b" " * (cni.MAX_OUTPUT + 1), "w")


def test_a_plugin_that_fails_is_reported_with_its_cni_error(tmp_path):
    plugin = tmp_path / "liar"
    plugin.write_text('#!/bin/sh\ncat >/dev/null\necho \'{"cniVersion":"1.0.0","code":7,"msg":"no way"}\'\nexit 1\n')
    plugin.chmod(0o755)
    network = {"cniVersion": "1.0.0", "name": "n", "plugins": [{"type": "liar"}]}
    with pytest.raises(cni.CNIError, match="network n: CNI ADD of plugin liar failed: error 7: no way"):
        cni.invoke("ADD", network["plugins"][0], network, "c1", "/nonexistent", "eth0", cni_path=str(tmp_path))


def test_the_plugin_gets_a_clean_environment_and_its_capabilities_only(tmp_path):
    plugin = tmp_path / "spy"
    plugin.write_text('#!/bin/sh\ncat > "%s/stdin"\nenv > "%s/env"\n' % (tmp_path, tmp_path))
    plugin.chmod(0o755)
    os.environ["SECRET_OF_THE_CALLER"] = "x"
    try:
        network = {"cniVersion": "1.0.0", "name": "n", "plugins": [{"type": "spy", "capabilities": {"portMappings": True}}]}
        cni.invoke("DEL", network["plugins"][0], network, "c1", "/ns", "eth0", cni_args="A=1", cni_path=str(tmp_path),
                   prev_result=GOOD, runtime_config={"portMappings": [1], "aliases": {}})
    finally:
        del os.environ["SECRET_OF_THE_CALLER"]
    conf = json.loads((tmp_path / "stdin").read_text())
    assert conf["name"] == "n" and conf["prevResult"] == GOOD and conf["runtimeConfig"] == {"portMappings": [1]}
    env = dict(line.split("=", 1) for line in (tmp_path / "env").read_text().splitlines())
    assert env["CNI_COMMAND"] == "DEL" and env["CNI_NETNS"] == "/ns" and env["CNI_ARGS"] == "A=1"
    assert "SECRET_OF_THE_CALLER" not in env


def test_a_missing_plugin_names_its_package(tmp_path):
    with pytest.raises(cni.CNIError, match="CNI plugin 'dnsname' not found in .*: install the Debian package "
                                           "golang-github-containernetworking-plugin-dnsname"):
        cni.find_plugin("dnsname", str(tmp_path), "n")


@pytest.mark.parametrize("entry,expected", [
    ("80", [{"hostPort": 0, "containerPort": 80, "protocol": "tcp"}]),
    (":53/udp", [{"hostPort": 0, "containerPort": 53, "protocol": "udp"}]),
    ("127.0.0.1::80", [{"hostPort": 0, "containerPort": 80, "protocol": "tcp", "hostIP": "127.0.0.1"}]),
    ("9000-9001", [{"hostPort": 0, "containerPort": 9000, "protocol": "tcp"},
                   {"hostPort": 0, "containerPort": 9001, "protocol": "tcp"}]),
])
def test_a_container_port_alone_asks_for_any_host_port(entry, expected):
    assert ports.parse([entry]) == expected


def test_a_chosen_port_avoids_the_ports_other_containers_publish():
    """assign_free takes the kernel's free port, but never one another container of the state root holds."""
    wanted = ports.parse(["80", "8080:81"])
    taken = []
    for _attempt in range(20):  # whatever the kernel hands out, a port in TAKEN is never chosen
        chosen = ports.assign_free(wanted, taken)
        assert chosen[1] == wanted[1] and chosen[0]["hostPort"] not in [m["hostPort"] for m in taken]
        taken.append(dict(chosen[0]))


@pytest.mark.parametrize("pidfile,addnhosts,needle", [
    (None, None, "dnsmasq is not running"),
    (b"not a pid\n", b"", "dnsmasq is not running"),
    (b"1\n", b"", "dnsmasq is not running"),  # a live process, but not a dnsmasq
    (b"99999999999999999999999999\n", b"", "dnsmasq is not running"),
])
def test_dnsnames_files_are_hostile_input(tmp_path, monkeypatch, pidfile, addnhosts, needle):
    """drift reads dnsname's pidfile and addnhosts (a plugin's output): garbage reads as 'not in place'."""
    from ansible_collections.daemonless.oci.plugins.module_utils._network import drift
    monkeypatch.setattr(drift, "DNSNAME_DIR", str(tmp_path))
    directory = tmp_path / "net1"
    directory.mkdir()
    if pidfile is not None:
        (directory / "pidfile").write_bytes(pidfile)
    if addnhosts is not None:
        (directory / "addnhosts").write_bytes(addnhosts)
    attachment = {"result": {"cniVersion": "1.0.0", "ips": [{"address": "10.1.2.3/24"}]}}
    assert needle in drift._dnsname_problem({"name": "net1"}, attachment, "c1")


ROUTES = """Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0
eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
wg0\t0000590A\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0
bad\tnot-hex\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
"""


def test_host_routes_but_the_default_one_are_read_from_the_kernels_table(tmp_path):
    table = tmp_path / "route"
    table.write_text(ROUTES)
    assert conflist.host_routes(str(table)) == {"route on eth0": "192.0.2.0/24", "route on wg0": "10.89.0.0/16"}
    assert conflist.host_routes(str(tmp_path / "missing")) == {}


def test_an_automatic_subnet_skips_what_a_host_route_reaches(tmp_path):
    table = tmp_path / "route"
    table.write_text(ROUTES.replace("0000FFFF", "00FFFFFF"))  # wg0: 10.89.0.0/24 only
    settings = conflist.settings_from(dict(name="auto"), conflist.host_routes(str(table)))
    assert settings["subnet"] == "10.89.1.0/24", settings
