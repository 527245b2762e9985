"""Property-based tests (hypothesis) of what the core reads from a config.json.

The properties:

* spec.validate, given any JSON-shaped value grown from a real config by a
  few hypothesis-drawn edits (wrong types, huge and negative numbers,
  floats, NaN, unicode with lone surrogates, deep nesting, empty strings,
  absurd paths, keys removed, nulls), raises nothing but OCIError, and the
  message starts with the field at fault;
* spec.load_bundle, given those configs serialized to config.json (sometimes
  with damaged bytes), raises nothing but OCIError;
* a config validate accepts can be consumed (test_fuzz_spec.consume: the
  namespace plan, kernel settings, mount options, environment, the strings
  handed to the kernel) without any other exception;
* plan_resources and plan_devices, on a cgroup v1 and a v2
  layout, raise nothing but OCIError, naming a linux.resources field.

test_fuzz_spec.py does the same with a hand-written mutator and the standard
library's random; here hypothesis draws the edits (and shrinks a failure to
a minimal one). Runs are derandomized and use no example database, so a
failure reproduces exactly.
"""
import copy
import os
import re
import reprlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ansible_collections.daemonless.oci.plugins.module_utils._runtime.cgroups.plan import plan_devices, plan_resources
from ansible_collections.daemonless.oci.plugins.module_utils._runtime import spec
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.errors import OCIError
from test_fuzz_spec import (  # tests/unit is on sys.path under pytest
    RESOURCE_SHAPES, consume, get, layouts, paths_of, retyped, serialize)

# Thousands of drawn configs per property, minutes in all: `make check` leaves these out (-m "not slow").
pytestmark = pytest.mark.slow

MAIN_EXAMPLES = 10000
HEAVY_EXAMPLES = 2000  # load_bundle writes a file per example; the planners run twice per example


def properties(examples):
    return settings(max_examples=examples, deadline=None, derandomize=True, database=None,
                    suppress_health_check=list(HealthCheck))


# -- values ---------------------------------------------------------------------------------

SURROGATES = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF, categories=["Cs"])
ANY_CHARACTER = st.one_of(st.characters(codec=None), SURROGATES, st.sampled_from("\0/.\\\u2028\ufeff\U0010ffff"))
TEXT = st.one_of(
    st.text(ANY_CHARACTER, max_size=12),
    st.sampled_from(["", " ", "/", "//", "/..", "../../..", "/proc/self/fd/3", "/proc/self/exe", "a\0b",
                     "\ud800", "\udcff", "-1", "max", "0", "CAP_SYS_ADMIN", "RLIMIT_NOFILE", "rbind", "tmpfs",
                     "user", "pid", "c", "rwm", "x" * 5000, "/" + "a/" * 2000, "/a/../../../../etc/passwd"]),
)
INTEGERS = st.one_of(
    st.integers(),
    st.integers(min_value=-2 ** 70, max_value=2 ** 70),
    st.sampled_from([0, 1, -1, 2 ** 31 - 1, 2 ** 31, 2 ** 32 - 2, 2 ** 32 - 1, 2 ** 32, 2 ** 63 - 1, 2 ** 63,
                     2 ** 64 - 1, 2 ** 64, -2 ** 63, 10 ** 30, 2 ** 1000]),
)
SCALARS = st.one_of(st.none(), st.booleans(), INTEGERS, st.floats(allow_nan=True, allow_infinity=True), TEXT)
KEYS = ["type", "path", "destination", "source", "options", "uid", "gid", "size", "hostID", "containerID",
        "soft", "hard", "major", "minor", "allow", "access", "limit", "args", "env", "cwd", "devices",
        "namespaces", "x-unknown", "", "\0", "\ud800"]


def nested(depth, leaf):
    value = leaf
    for dummy in range(depth):
        value = [value] if depth % 2 else {"a": value}
    return value


DEEP = st.builds(nested, st.integers(min_value=1, max_value=3000), SCALARS)
JSON_VALUES = st.one_of(
    st.recursive(SCALARS,
                 lambda children: st.one_of(st.lists(children, max_size=4),
                                            st.dictionaries(st.one_of(TEXT, st.sampled_from(KEYS)), children,
                                                            max_size=4)),
                 max_leaves=12),
    DEEP,
)


# -- configs --------------------------------------------------------------------------------

def base_config():
    """A config using most of what validate checks (the same start as test_fuzz_spec's)."""
    config = spec.default_config(args=["sh", "-c", "true"])
    config["hooks"] = {"prestart": [{"path": "/bin/true", "args": ["true"], "timeout": 5}]}
    config["linux"]["devices"] = [{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229}]
    config["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 1000, "size": 1}]
    config["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 1000, "size": 1}]
    config["linux"]["sysctl"] = {"net.ipv4.ip_forward": "1"}
    config["linux"]["namespaces"].append({"type": "user"})
    config["linux"]["resources"] = {"memory": {"limit": 1 << 30}, "pids": {"limit": 100},
                                    "devices": [{"allow": False, "access": "rwm"}]}
    config["process"]["user"]["additionalGids"] = [5, 10]
    config["process"]["rlimits"].append({"type": "RLIMIT_CORE", "soft": 0, "hard": 0})
    return config


BASE = base_config()
OPERATIONS = ["replace", "replace", "replace", "delete", "null", "add", "retype"]


class Drawn:
    """A drawn value, shown shortened: hypothesis prints a falsifying example with repr, and a
    value nested thousands deep would make that printing itself fail with RecursionError."""

    SHOW = reprlib.Repr()
    SHOW.maxlevel, SHOW.maxstring, SHOW.maxother, SHOW.maxlist, SHOW.maxdict = 8, 80, 80, 8, 12

    def __init__(self, value):
        self.value = value

    def __repr__(self):
        return "Drawn(%s)" % self.SHOW.repr(self.value)


def configs():
    return drawn_configs().map(Drawn)


@st.composite
def drawn_configs(draw):
    """A base config after one to four drawn edits; sometimes a whole drawn JSON value instead."""
    if draw(st.integers(min_value=0, max_value=49)) == 0:
        return draw(JSON_VALUES)
    config = copy.deepcopy(BASE)
    for dummy in range(draw(st.integers(min_value=1, max_value=4))):
        path = draw(st.sampled_from(paths_of(config, limit=12)))
        operation = draw(st.sampled_from(OPERATIONS))
        node = get(config, path)
        if not path:
            if operation == "replace":
                return draw(JSON_VALUES)
            continue
        parent, last = get(config, path[:-1]), path[-1]
        if operation == "replace":
            parent[last] = draw(JSON_VALUES)
        elif operation == "delete":
            del parent[last]
        elif operation == "null":
            parent[last] = None
        elif operation == "add" and isinstance(node, dict):
            node[draw(st.one_of(st.sampled_from(KEYS), TEXT))] = draw(JSON_VALUES)
        elif operation == "add" and isinstance(node, list):
            node.insert(draw(st.integers(min_value=0, max_value=len(node))), draw(JSON_VALUES))
        elif operation == "retype":
            parent[last] = retyped(node)
    return config


# A message names its field first: "process.args: ...", "mounts[2].destination: ...", "linux.resources...".
FIELD = re.compile(r"^(config\.json|ociVersion|root|hostname|domainname|annotations|process|mounts|linux|hooks)"
                   r"(?:[.\[ :]|$)")


def assert_names_a_field(exc, config_path=None):
    message = str(exc)
    if config_path is not None and message.startswith(config_path):
        return  # load_bundle: the file itself (unreadable, malformed JSON) is at fault
    assert FIELD.match(message), "OCIError without a field: %r" % message


def call_only_oci_error(function, *args):
    """FUNCTION(*ARGS): None when it returns, the OCIError when it refuses; any other exception propagates."""
    try:
        function(*args)
    except OCIError as exc:
        return exc
    return None


# -- properties -----------------------------------------------------------------------------

@properties(MAIN_EXAMPLES)
@given(configs())
def test_validate_raises_only_oci_error_naming_a_field(config):
    config = config.value
    refusal = call_only_oci_error(spec.validate, config)
    if refusal is not None:
        assert_names_a_field(refusal)


@properties(MAIN_EXAMPLES)
@given(configs())
def test_a_config_validate_accepts_can_be_consumed(config):
    config = config.value
    if call_only_oci_error(spec.validate, config) is None:
        call_only_oci_error(consume, config)


DAMAGE = st.one_of(
    st.none(),
    st.tuples(st.just("truncate"), st.floats(min_value=0, max_value=1)),
    st.tuples(st.just("insert"), st.floats(min_value=0, max_value=1),
              st.one_of(st.binary(max_size=8), st.sampled_from([b"\\ud800", b"\\u0000", b"NaN", b"1e999", b"[" * 3000,
                                                                b"\xed\xa0\x80", b"\xef\xbb\xbf", b"\0"]))),
)


def damaged(data, damage):
    if damage is None:
        return data
    cut = int(damage[1] * len(data))
    if damage[0] == "truncate":
        return data[:cut]
    return data[:cut] + damage[2] + data[cut:]


@properties(HEAVY_EXAMPLES)
@given(config=configs(), damage=DAMAGE)
def test_load_bundle_raises_only_oci_error_naming_a_field(tmp_path_factory, config, damage):
    config = config.value
    bundle = str(tmp_path_factory.getbasetemp() / "hypothesis-bundle")
    os.makedirs(os.path.join(bundle, "rootfs"), exist_ok=True)
    try:
        data = serialize(config)
    except (TypeError, ValueError, UnicodeError, RecursionError):
        return  # not representable as JSON: no config.json can hold it
    config_path = os.path.join(bundle, "config.json")
    with open(config_path, "wb") as handle:
        handle.write(damaged(data, damage))
    refusal = call_only_oci_error(spec.load_bundle, bundle)
    if refusal is not None:
        assert_names_a_field(refusal, config_path)


# -- linux.resources ------------------------------------------------------------------------

RESOURCE_VALUES = st.one_of(SCALARS, st.sampled_from([0, 1, 2, 100, 4096, 100000, "0-1", "2MB", "max", "eth0"]),
                            JSON_VALUES)
DEVICE_ENTRY = st.dictionaries(st.sampled_from(["major", "minor", "weight", "leafWeight", "rate", "name", "priority",
                                                "hcaHandles", "hcaObjects"]), RESOURCE_VALUES, max_size=4)


def section(name):
    keys = RESOURCE_SHAPES[name]
    entry = st.one_of(st.lists(DEVICE_ENTRY, max_size=3), DEVICE_ENTRY, RESOURCE_VALUES)
    return st.one_of(st.dictionaries(st.sampled_from(keys), entry if name in ("blockIO", "network", "rdma")
                                     else RESOURCE_VALUES, max_size=len(keys)),
                     RESOURCE_VALUES)


HUGEPAGE_LIMITS = st.lists(st.fixed_dictionaries({}, optional={"pageSize": RESOURCE_VALUES, "limit": RESOURCE_VALUES}),
                           max_size=2)
RESOURCES = st.one_of(
    st.fixed_dictionaries({}, optional=dict([(name, section(name)) for name in sorted(RESOURCE_SHAPES)]
                                            + [("hugepageLimits", HUGEPAGE_LIMITS)])),
    JSON_VALUES,
)
DEVICE_RULE = st.fixed_dictionaries({}, optional={
    "allow": st.one_of(st.booleans(), SCALARS),
    "type": st.one_of(st.sampled_from(["a", "c", "b", "u", "p", ""]), SCALARS, JSON_VALUES),
    "major": st.one_of(st.sampled_from([-1, 0, 1, 5, 2 ** 32]), SCALARS, JSON_VALUES),
    "minor": st.one_of(st.sampled_from([-1, 0, 3]), SCALARS),
    "access": st.one_of(st.sampled_from(["r", "rw", "rwm", "x", "", "mmm"]), SCALARS, JSON_VALUES),
})
DEVICE_RULES = st.one_of(st.lists(st.one_of(DEVICE_RULE, SCALARS), max_size=4), JSON_VALUES)
LAYOUTS = layouts()
RESOURCE_FIELD = re.compile(r"^(linux\.resources|default device rules)")


def check_planner(function, value, layout):
    try:
        writes = function(value, layout)
    except OCIError as exc:
        assert RESOURCE_FIELD.match(str(exc)), "OCIError without a field: %r" % str(exc)
        return
    assert all(isinstance(write.value, str) for write in writes), writes


@properties(HEAVY_EXAMPLES)
@given(resources=RESOURCES.map(Drawn), rules=DEVICE_RULES.map(Drawn))
def test_plan_resources_and_devices_raise_only_oci_error_on_v1(resources, rules):
    resources, rules = resources.value, rules.value
    check_planner(plan_resources, resources, LAYOUTS["v1"])
    check_planner(plan_devices, rules, LAYOUTS["v1"])


@properties(HEAVY_EXAMPLES)
@given(resources=RESOURCES.map(Drawn), rules=DEVICE_RULES.map(Drawn))
def test_plan_resources_and_devices_raise_only_oci_error_on_v2(resources, rules):
    resources, rules = resources.value, rules.value
    check_planner(plan_resources, resources, LAYOUTS["v2"])
    check_planner(plan_devices, rules, LAYOUTS["v2"])


VALID_DEVICE_RULE = st.fixed_dictionaries({"allow": st.booleans()}, optional={
    "type": st.sampled_from(["a", "c", "b"]),
    "major": st.sampled_from([-1, 1, 5, 8, 136]),
    "minor": st.sampled_from([-1, 0, 3, 5]),
    "access": st.sampled_from(["r", "w", "m", "rw", "wr", "rm", "wm", "rwm", "mwr"]),
})
DEVICE_ACCESS = st.tuples(st.sampled_from(["c", "b"]), st.sampled_from([1, 5, 8, 136, 4095]),
                          st.sampled_from([0, 3, 5, 7]), st.sampled_from(["r", "w", "m", "rw", "rwm"]))


def kernel_v1_decision(rules, kind, major, minor, access):
    """What the v1 devices controller (security/device_cgroup.c) decides after RULES are written in
    order to a new cgroup under an unrestricted parent: exceptions keyed by (type, major, minor),
    allow-list matching needs one exception covering all the access, deny-list matching any overlap."""
    default_allow, exceptions = True, {}
    for rule in rules:
        rule_type = rule.get("type") or "a"
        if rule_type == "a":
            default_allow, exceptions = rule["allow"], {}
            continue
        major_of, minor_of = rule.get("major"), rule.get("minor")
        key = (rule_type, None if major_of is None or major_of < 0 else major_of,
               None if minor_of is None or minor_of < 0 else minor_of)
        bits = set(rule.get("access") or "rwm")
        if rule["allow"] != default_allow:
            exceptions[key] = exceptions.get(key, set()) | bits
        elif key in exceptions:
            exceptions[key] = exceptions[key] - bits
            if not exceptions[key]:
                del exceptions[key]
    asked = set(access)
    for (ex_type, ex_major, ex_minor), ex_access in exceptions.items():
        if ex_type != kind or ex_major not in (None, major) or ex_minor not in (None, minor):
            continue
        if default_allow and asked & ex_access:
            return 0
        if not default_allow and asked <= ex_access:
            return 1
    return 1 if default_allow else 0


@properties(1000)
@given(rules=st.lists(VALID_DEVICE_RULE, max_size=5).map(Drawn), asked=st.lists(DEVICE_ACCESS, min_size=1, max_size=6))
def test_device_rules_on_v2_decide_as_the_v1_controller(rules, asked):
    """Without the v1 devices controller, device rules become an eBPF program that decides every
    open and mknod as the v1 controller would for the same rules (never a silent allow-all). The
    one difference: a rule v1 would silently ignore (taking access from part of a wildcard
    exception) is refused, naming it."""
    from test_cgroup_plan import run_ebpf  # tests/unit is on sys.path under pytest
    from ansible_collections.daemonless.oci.plugins.module_utils._runtime.cgroups.plan import DEFAULT_DEVICE_RULES
    rules = rules.value
    try:
        program = plan_devices(rules, LAYOUTS["v2"])[0].program
    except OCIError as exc:
        assert "cannot take access from part of the wider rule" in str(exc), str(exc)
        assert RESOURCE_FIELD.match(str(exc)), str(exc)
        return
    for kind, major, minor, access in asked:
        bits = sum({"m": 1, "r": 2, "w": 4}[letter] for letter in access)
        decided = run_ebpf(program.instructions, (bits << 16 | {"b": 1, "c": 2}[kind], major, minor))
        expected = kernel_v1_decision(list(rules) + list(DEFAULT_DEVICE_RULES), kind, major, minor, access)
        assert decided == expected, (rules, kind, major, minor, access, program.describe())
