"""spec: default_config, validate and load_bundle.

Every rejected config must name the exact field at fault, as
"<field>: <reason>", so that a user can find it in config.json.
"""
import copy
import json
import os
import shutil
import subprocess

import pytest

from ansible_collections.daemonless.oci.plugins.module_utils._runtime import spec
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.errors import OCIError

RUNC = "/usr/sbin/runc"


def config_with(mutate):
    config = spec.default_config(["sh", "-c", "true"])
    mutate(config)
    return config


def setter(path, value):
    """A mutator setting the dotted PATH (list indexes as ints) to VALUE."""
    def mutate(config):
        node = config
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = copy.deepcopy(value)
    return mutate


def deleter(path):
    def mutate(config):
        node = config
        for key in path[:-1]:
            node = node[key]
        del node[path[-1]]
    return mutate


def appender(path, value):
    def mutate(config):
        node = config
        for key in path:
            node = node.setdefault(key, []) if isinstance(node, dict) else node[key]
        node.append(copy.deepcopy(value))
    return mutate


def combine(*mutators):
    def mutate(config):
        for mutator in mutators:
            mutator(config)
    return mutate


USERNS = appender(("linux", "namespaces"), {"type": "user"})
MAPPING = [{"containerID": 0, "hostID": 100000, "size": 65536}]

# (id, mutator, expected message prefix: "<field>: <reason>")
BAD_CONFIGS = [
    # process.args
    ("args-missing", deleter(("process", "args")), "process.args: must be a non-empty list of strings"),
    ("args-empty", setter(("process", "args"), []), "process.args: must be a non-empty list of strings"),
    ("args-string", setter(("process", "args"), "sh"), "process.args: must be a non-empty list of strings"),
    ("args-int-item", setter(("process", "args"), ["sh", 1]), "process.args: must be a non-empty list of strings"),
    ("args-null-item", setter(("process", "args"), [None]), "process.args: must be a non-empty list of strings"),
    ("args-nul-byte", setter(("process", "args"), ["sh", "a\0b"]), "process.args[1]: must not contain NUL"),
    ("env-int-item", setter(("process", "env"), ["A=1", 2]), "process.env: must be a list of strings"),
    # process.cwd
    ("cwd-relative", setter(("process", "cwd"), "tmp"), "process.cwd: must be an absolute path"),
    ("cwd-missing", deleter(("process", "cwd")), "process.cwd: is required"),
    ("cwd-int", setter(("process", "cwd"), 0), "process.cwd: must be a string"),
    # process.user
    ("uid-negative", setter(("process", "user", "uid"), -1), "process.user.uid: must be at least 0"),
    ("uid-string", setter(("process", "user", "uid"), "0"), "process.user.uid: must be an integer"),
    ("uid-bool", setter(("process", "user", "uid"), True), "process.user.uid: must be an integer"),
    ("uid-float", setter(("process", "user", "uid"), 1.0), "process.user.uid: must be an integer"),
    ("uid-too-big", setter(("process", "user", "uid"), 2 ** 32), "process.user.uid: must be at most"),
    ("gid-bool", setter(("process", "user", "gid"), False), "process.user.gid: must be an integer"),
    ("gid-negative", setter(("process", "user", "gid"), -5), "process.user.gid: must be at least 0"),
    ("umask-bool", setter(("process", "user", "umask"), True), "process.user.umask: must be an integer"),
    ("additional-gids-item", setter(("process", "user", "additionalGids"), [1, "2"]),
     "process.user.additionalGids[1]: must be an integer"),
    ("additional-gids-not-list", setter(("process", "user", "additionalGids"), 5),
     "process.user.additionalGids: must be a list of integers"),
    ("user-not-object", setter(("process", "user"), "root"), "process.user: must be an object"),
    ("terminal-string", setter(("process", "terminal"), "yes"), "process.terminal: must be a boolean"),
    ("nnp-int", setter(("process", "noNewPrivileges"), 1), "process.noNewPrivileges: must be a boolean"),
    ("oom-too-big", setter(("process", "oomScoreAdj"), 1001), "process.oomScoreAdj: must be at most 1000"),
    ("oom-bool", setter(("process", "oomScoreAdj"), True), "process.oomScoreAdj: must be an integer"),
    ("process-missing", deleter(("process",)), "process: is required"),
    ("process-list", setter(("process",), []), "process: must be an object"),
] + [
    # capabilities: an unknown name in every set
    ("cap-unknown-" + name, setter(("process", "capabilities", name), ["CAP_KILL", "CAP_BOGUS"]),
     "process.capabilities.%s[1]: unknown capability 'CAP_BOGUS'" % name)
    for name in spec.CAPABILITY_SETS
] + [
    ("cap-set-string", setter(("process", "capabilities", "effective"), "CAP_KILL"),
     "process.capabilities.effective: must be a list of strings"),
    ("cap-lowercase", setter(("process", "capabilities", "bounding"), ["cap_kill"]),
     "process.capabilities.bounding[0]: unknown capability 'cap_kill'"),
    # rlimits
    ("rlimit-unknown-type", setter(("process", "rlimits"), [{"type": "RLIMIT_BOGUS", "soft": 1, "hard": 1}]),
     "process.rlimits[0].type: must be one of"),
    ("rlimit-type-missing", setter(("process", "rlimits"), [{"soft": 1, "hard": 1}]),
     "process.rlimits[0].type: is required"),
    ("rlimit-soft-above-hard", setter(("process", "rlimits"),
                                      [{"type": "RLIMIT_NOFILE", "soft": 2048, "hard": 1024}]),
     "process.rlimits[0]: soft limit 2048 is above the hard limit 1024"),
    ("rlimit-duplicate", setter(("process", "rlimits"),
                                [{"type": "RLIMIT_NOFILE", "soft": 1, "hard": 1},
                                 {"type": "RLIMIT_CORE", "soft": 0, "hard": 0},
                                 {"type": "RLIMIT_NOFILE", "soft": 2, "hard": 2}]),
     "process.rlimits[2].type: RLIMIT_NOFILE is given twice"),
    ("rlimit-soft-missing", setter(("process", "rlimits"), [{"type": "RLIMIT_CORE", "hard": 1}]),
     "process.rlimits[0].soft: is required"),
    ("rlimit-hard-string", setter(("process", "rlimits"), [{"type": "RLIMIT_CORE", "soft": 1, "hard": "1"}]),
     "process.rlimits[0].hard: must be an integer"),
    ("rlimit-not-object", setter(("process", "rlimits"), ["RLIMIT_CORE"]), "process.rlimits[0]: must be an object"),
    ("rlimits-not-list", setter(("process", "rlimits"), {"type": "RLIMIT_CORE"}), "process.rlimits: must be a list"),
    # linux.namespaces
    ("ns-unknown-type", appender(("linux", "namespaces"), {"type": "bogus"}),
     "linux.namespaces[5].type: must be one of"),
    ("ns-type-missing", appender(("linux", "namespaces"), {"path": "/proc/1/ns/net"}),
     "linux.namespaces[5].type: is required"),
    ("ns-duplicate", appender(("linux", "namespaces"), {"type": "pid"}),
     "linux.namespaces[5].type: namespace pid is given twice"),
    ("ns-relative-path", setter(("linux", "namespaces", 1), {"type": "network", "path": "proc/1/ns/net"}),
     "linux.namespaces[1].path: must be an absolute path"),
    ("ns-not-list", setter(("linux", "namespaces"), {"type": "pid"}), "linux.namespaces: must be a list"),
    # id mappings
    ("uid-mappings-without-userns", setter(("linux", "uidMappings"), MAPPING),
     "linux.uidMappings: mappings need a user namespace"),
    ("gid-mappings-without-userns", setter(("linux", "gidMappings"), MAPPING),
     "linux.gidMappings: mappings need a user namespace"),
    ("mapping-size-missing", combine(USERNS, setter(("linux", "uidMappings"), [{"containerID": 0, "hostID": 1}])),
     "linux.uidMappings[0].size: is required"),
    ("mapping-negative-host", combine(USERNS, setter(("linux", "gidMappings"),
                                                     [{"containerID": 0, "hostID": -1, "size": 1}])),
     "linux.gidMappings[0].hostID: must be at least 0"),
    # linux.devices
    ("device-bad-type", setter(("linux", "devices"), [{"type": "x", "path": "/dev/x", "major": 1, "minor": 3}]),
     "linux.devices[0].type: must be one of"),
    ("device-major-missing", setter(("linux", "devices"), [{"type": "c", "path": "/dev/x", "minor": 3}]),
     "linux.devices[0].major: is required"),
    ("device-minor-missing", setter(("linux", "devices"),
                                    [{"type": "c", "path": "/dev/null", "major": 1, "minor": 3},
                                     {"type": "b", "path": "/dev/x", "major": 1}]),
     "linux.devices[1].minor: is required"),
    ("device-relative-path", setter(("linux", "devices"), [{"type": "c", "path": "dev/x", "major": 1, "minor": 3}]),
     "linux.devices[0].path: must be an absolute path"),
    ("device-path-missing", setter(("linux", "devices"), [{"type": "c", "major": 1, "minor": 3}]),
     "linux.devices[0].path: is required"),
    ("device-mode-too-big", setter(("linux", "devices"),
                                   [{"type": "c", "path": "/dev/x", "major": 1, "minor": 3, "fileMode": 0o10000}]),
     "linux.devices[0].fileMode: must be at most"),
    # mounts
    ("mount-dest-relative", setter(("mounts", 2, "destination"), "dev/pts"),
     "mounts[2].destination: must be an absolute path"),
    ("mount-dest-missing", deleter(("mounts", 2, "destination")), "mounts[2].destination: is required"),
    ("mount-not-object", setter(("mounts", 2), "/dev/pts"), "mounts[2]: must be an object"),
    ("mount-options-string", setter(("mounts", 2, "options"), "ro"), "mounts[2].options: must be a list of strings"),
    ("mount-type-int", setter(("mounts", 0, "type"), 1), "mounts[0].type: must be a string"),
    ("mounts-not-list", setter(("mounts",), {"destination": "/x"}), "mounts: must be a list"),
    # masked and read-only paths
    ("masked-not-list", setter(("linux", "maskedPaths"), "/proc/kcore"), "linux.maskedPaths: must be a list of strings"),
    ("masked-relative", setter(("linux", "maskedPaths"), ["/proc/acpi", "proc/kcore"]),
     "linux.maskedPaths[1]: must be an absolute path"),
    ("readonly-not-list", setter(("linux", "readonlyPaths"), {"/proc": True}),
     "linux.readonlyPaths: must be a list of strings"),
    # root
    ("root-missing", deleter(("root",)), "root: is required"),
    ("root-string", setter(("root",), "rootfs"), "root: must be an object"),
    ("root-path-missing", deleter(("root", "path")), "root.path: is required"),
    ("root-path-empty", setter(("root", "path"), ""), "root.path: must not be empty"),
    ("root-path-int", setter(("root", "path"), 1), "root.path: must be a string"),
    ("root-readonly-string", setter(("root", "readonly"), "true"), "root.readonly: must be a boolean"),
    # string maps
    ("sysctl-int-value", setter(("linux", "sysctl"), {"net.ipv4.ip_forward": 1}),
     "linux.sysctl.net.ipv4.ip_forward: must be a string"),
    ("sysctl-not-object", setter(("linux", "sysctl"), ["net.ipv4.ip_forward=1"]), "linux.sysctl: must be an object"),
    ("annotation-int-value", setter(("annotations",), {"org.example/ok": "x", "org.example/n": 1}),
     "annotations.org.example/n: must be a string"),
    ("annotation-null-value", setter(("annotations",), {"k": None}), "annotations.k: must be a string"),
    # misc
    ("propagation-bad", setter(("linux", "rootfsPropagation"), "bogus"), "linux.rootfsPropagation: must be one of"),
    ("oci-version-missing", deleter(("ociVersion",)), "ociVersion: is required"),
    ("oci-version-number", setter(("ociVersion",), 1.0), "ociVersion: must be a string"),
    ("hostname-int", setter(("hostname",), 5), "hostname: must be a string"),
    ("linux-string", setter(("linux",), "yes"), "linux: must be an object"),
    ("resources-list", setter(("linux", "resources"), []), "linux.resources: must be an object"),
]


@pytest.mark.parametrize("mutate,expected", [case[1:] for case in BAD_CONFIGS],
                         ids=[case[0] for case in BAD_CONFIGS])
def test_validate_names_the_field(mutate, expected):
    config = config_with(mutate)
    with pytest.raises(OCIError) as caught:
        spec.validate(config)
    message = str(caught.value)
    assert message.startswith(expected), message


@pytest.mark.parametrize("value", [[], "config", None, 1])
def test_validate_rejects_a_config_that_is_not_an_object(value):
    with pytest.raises(OCIError, match=r"^config\.json: "):
        spec.validate(value)


GOOD_CONFIGS = [
    ("default", lambda config: None),
    ("unknown-top-level", setter(("x-vendor-extension",), {"anything": [1, 2, {"deep": True}]})),
    ("unknown-top-level-null", setter(("solaris",), None)),
    ("unknown-in-process", setter(("process", "x-unknown"), 42)),
    ("unknown-in-user", setter(("process", "user", "username"), "root")),
    ("unknown-in-root", setter(("root", "x-unknown"), [])),
    ("unknown-in-mount", setter(("mounts", 0, "uidMappings"), "whatever")),
    ("unknown-in-linux", setter(("linux", "seccomp"), {"defaultAction": "SCMP_ACT_ALLOW"})),
    ("unknown-in-namespace", setter(("linux", "namespaces", 0, "x-unknown"), 1)),
    ("unknown-in-rlimit", setter(("process", "rlimits", 0, "x-unknown"), "y")),
    ("unknown-capability-set", setter(("process", "capabilities", "x-set"), ["CAP_NOT_A_THING"])),
    ("all-capabilities", setter(("process", "capabilities", "bounding"), list(spec.CAPABILITIES))),
    ("fifo-device-without-numbers", setter(("linux", "devices"), [{"type": "p", "path": "/dev/fifo"}])),
    ("device-with-numbers", setter(("linux", "devices"),
                                   [{"type": "c", "path": "/dev/fuse", "major": 10, "minor": 229,
                                     "fileMode": 0o666, "uid": 0, "gid": 0}])),
    ("user-namespace-with-mappings", combine(USERNS, setter(("linux", "uidMappings"), MAPPING),
                                             setter(("linux", "gidMappings"), MAPPING))),
    ("namespace-with-path", setter(("linux", "namespaces", 1), {"type": "network", "path": "/proc/1/ns/net"})),
    ("strings-in-maps", combine(setter(("annotations",), {"a": "b"}),
                                setter(("linux", "sysctl"), {"net.ipv4.ip_forward": "1"}))),
    ("uid-max", setter(("process", "user", "uid"), 2 ** 32 - 2)),  # 2**32-1 is (uid_t)-1: "unchanged"
    ("rlimit-soft-equals-hard", setter(("process", "rlimits"), [{"type": "RLIMIT_CORE", "soft": 0, "hard": 0}])),
    ("no-mounts-no-linux", combine(deleter(("mounts",)), deleter(("linux",)))),
] + [("propagation-" + value, setter(("linux", "rootfsPropagation"), value)) for value in spec.PROPAGATIONS]


@pytest.mark.parametrize("mutate", [case[1] for case in GOOD_CONFIGS], ids=[case[0] for case in GOOD_CONFIGS])
def test_validate_accepts_and_leaves_config_untouched(mutate):
    config = config_with(mutate)
    before = copy.deepcopy(config)
    assert spec.validate(config) is None
    assert config == before


# -- default_config -------------------------------------------------------------


def test_default_config_is_valid_and_takes_args():
    config = spec.default_config(["echo", "hi"])
    spec.validate(config)
    assert config["process"]["args"] == ["echo", "hi"]
    assert config["root"] == {"path": "rootfs", "readonly": True}
    assert spec.default_config()["process"]["args"] == ["sh"]
    assert spec.default_config(terminal=True)["process"]["terminal"] is True


def test_default_config_returns_independent_copies():
    first = spec.default_config()
    first["process"]["capabilities"]["bounding"].append("CAP_SYS_ADMIN")
    first["mounts"].pop()
    first["linux"]["maskedPaths"].clear()
    second = spec.default_config()
    assert "CAP_SYS_ADMIN" not in second["process"]["capabilities"]["bounding"]
    assert "CAP_SYS_ADMIN" not in second["process"]["capabilities"]["effective"]
    assert len(second["mounts"]) == 7
    assert second["linux"]["maskedPaths"]


@pytest.fixture(scope="module")
def runc_spec(tmp_path_factory):
    if not os.path.exists(RUNC):
        pytest.skip("%s is not installed: nothing to compare default_config() with" % RUNC)
    where = str(tmp_path_factory.mktemp("runc-spec"))
    subprocess.run([RUNC, "spec"], cwd=where, check=True, capture_output=True)
    with open(os.path.join(where, "config.json")) as handle:
        return json.load(handle)


def test_default_config_matches_runc_spec(runc_spec):
    ours = spec.default_config()
    assert sorted(ours) == sorted(runc_spec)
    assert [m["destination"] for m in ours["mounts"]] == [m["destination"] for m in runc_spec["mounts"]]
    assert ours["mounts"] == runc_spec["mounts"]
    assert sorted(ours["linux"]) == sorted(runc_spec["linux"])
    for key in ("namespaces", "maskedPaths", "readonlyPaths", "resources"):
        assert ours["linux"][key] == runc_spec["linux"][key], key
    assert ours["root"] == runc_spec["root"]
    assert sorted(ours["process"]) == sorted(runc_spec["process"])
    # terminal differs on purpose: runc spec says true, ocirt has no terminal support yet.
    for key in ("user", "env", "cwd", "rlimits", "noNewPrivileges"):
        assert ours["process"][key] == runc_spec["process"][key], key
    for name, caps in ours["process"]["capabilities"].items():
        assert caps == runc_spec["process"]["capabilities"][name], name
    spec.validate(runc_spec)


# -- load_bundle ------------------------------------------------------------------


def write_bundle(path, config=None, raw=None, rootfs=True):
    os.makedirs(path, exist_ok=True)
    if rootfs:
        os.makedirs(os.path.join(path, "rootfs"), exist_ok=True)
    data = raw if raw is not None else json.dumps(config or spec.default_config()).encode()
    with open(os.path.join(path, "config.json"), "wb") as handle:
        handle.write(data)
    return path


def test_load_bundle_returns_config_and_rootfs(tmp_path):
    bundle = write_bundle(str(tmp_path / "b"))
    config, rootfs = spec.load_bundle(bundle)
    assert config == spec.default_config()
    assert rootfs == os.path.realpath(os.path.join(bundle, "rootfs"))


def test_load_bundle_resolves_relative_bundle(tmp_path, monkeypatch):
    write_bundle(str(tmp_path / "b"))
    monkeypatch.chdir(str(tmp_path))
    rootfs = spec.load_bundle("b")[1]
    assert rootfs == os.path.realpath(str(tmp_path / "b" / "rootfs"))


def test_load_bundle_resolves_a_rootfs_symlink(tmp_path):
    bundle = write_bundle(str(tmp_path / "b"), rootfs=False)
    real = tmp_path / "elsewhere" / "real-rootfs"
    real.mkdir(parents=True)
    os.symlink("../elsewhere/real-rootfs", os.path.join(bundle, "rootfs"))
    rootfs = spec.load_bundle(bundle)[1]
    assert rootfs == os.path.realpath(str(real))
    assert not os.path.islink(rootfs)


def test_load_bundle_accepts_an_absolute_root_path(tmp_path):
    real = tmp_path / "abs-rootfs"
    real.mkdir()
    config = spec.default_config()
    config["root"]["path"] = str(real)
    bundle = write_bundle(str(tmp_path / "b"), config=config, rootfs=False)
    assert spec.load_bundle(bundle)[1] == os.path.realpath(str(real))


def test_load_bundle_missing_config(tmp_path):
    bundle = str(tmp_path / "empty")
    os.makedirs(os.path.join(bundle, "rootfs"))
    with pytest.raises(OCIError) as caught:
        spec.load_bundle(bundle)
    assert os.path.join(bundle, "config.json") in str(caught.value)
    assert "No such file" in str(caught.value)


def test_load_bundle_config_is_a_directory(tmp_path):
    bundle = str(tmp_path / "b")
    os.makedirs(os.path.join(bundle, "config.json"))
    os.makedirs(os.path.join(bundle, "rootfs"))
    with pytest.raises(OCIError, match="config.json"):
        spec.load_bundle(bundle)


def test_load_bundle_missing_bundle_directory(tmp_path):
    with pytest.raises(OCIError, match="config.json"):
        spec.load_bundle(str(tmp_path / "no-such-bundle"))


@pytest.mark.parametrize("raw", [
    b"this is {not json",
    b"",
    b"{\"ociVersion\": \"1.0.2\",",
    b"{'single': 'quotes'}",
    b"\xff\xfe\x00garbage",
    b"\x00" * 64,
], ids=["garbage", "empty", "truncated", "single-quotes", "bad-utf", "nul-bytes"])
def test_load_bundle_malformed_json(tmp_path, raw):
    bundle = write_bundle(str(tmp_path / "b"), raw=raw)
    with pytest.raises(OCIError) as caught:
        spec.load_bundle(bundle)
    message = str(caught.value)
    assert os.path.join(bundle, "config.json") in message
    assert "malformed JSON" in message


def test_load_bundle_deeply_nested_json_is_an_error_not_a_crash(tmp_path):
    # Hostile input: json raises RecursionError (not a ValueError) on this.
    bundle = write_bundle(str(tmp_path / "b"), raw=b"[" * 100000 + b"]" * 100000)
    with pytest.raises(OCIError) as caught:
        spec.load_bundle(bundle)
    assert os.path.join(bundle, "config.json") in str(caught.value)


def test_load_bundle_validates(tmp_path):
    config = spec.default_config()
    config["process"]["args"] = "sh"
    bundle = write_bundle(str(tmp_path / "b"), config=config)
    with pytest.raises(OCIError, match=r"^process\.args: must be a non-empty list of strings"):
        spec.load_bundle(bundle)


def test_load_bundle_json_array(tmp_path):
    bundle = write_bundle(str(tmp_path / "b"), raw=b"[]")
    with pytest.raises(OCIError, match=r"^config\.json: must be an object"):
        spec.load_bundle(bundle)


@pytest.mark.parametrize("make_root", ["missing", "file", "dangling-symlink", "symlink-to-file"])
def test_load_bundle_root_path_not_a_directory(tmp_path, make_root):
    bundle = write_bundle(str(tmp_path / "b"), rootfs=False)
    rootfs = os.path.join(bundle, "rootfs")
    if make_root == "file":
        with open(rootfs, "w") as handle:
            handle.write("not a dir")
    elif make_root == "dangling-symlink":
        os.symlink("nowhere", rootfs)
    elif make_root == "symlink-to-file":
        with open(os.path.join(bundle, "afile"), "w"):
            pass
        os.symlink("afile", rootfs)
    with pytest.raises(OCIError) as caught:
        spec.load_bundle(bundle)
    message = str(caught.value)
    assert message.startswith("root.path: ")
    assert rootfs in message
    assert "not a directory" in message


def test_load_bundle_creates_nothing_and_rechecks_rootfs(tmp_path):
    bundle = write_bundle(str(tmp_path / "b"))
    before = sorted(os.listdir(bundle))
    spec.load_bundle(bundle)
    assert sorted(os.listdir(bundle)) == before
    shutil.rmtree(os.path.join(bundle, "rootfs"))
    with pytest.raises(OCIError, match="^root.path: "):
        spec.load_bundle(bundle)
