"""The one parser of sizes, the one of signals, the one deep merge, and their callers' use of them."""
import signal

import pytest

from ansible_collections.daemonless.oci.plugins.module_utils._bundle import config as bundle_config
from ansible_collections.daemonless.oci.plugins.module_utils._runtime import cli, jsonio
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.errors import OCIError
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.values import (
    is_digits, parse_signal, parse_size)

K, M, G, T = 1 << 10, 1 << 20, 1 << 30, 1 << 40

# -- sizes ------------------------------------------------------------------------------


@pytest.mark.parametrize("value,number", [
    (268435456, 268435456), (0, 0), (-1, -1), ("-1", -1), ("0", 0), ("1048576", 1048576),
    ("256M", 256 * M), ("256m", 256 * M), ("256mb", 256 * M), ("256MB", 256 * M), ("1g", G), ("1G", G),
    ("2t", 2 * T), ("512k", 512 * K), ("512kb", 512 * K), ("100b", 100), (" 64m ", 64 * M),
    ("1.5g", 3 * G // 2), ("0.5k", 512), (".5m", M // 2), ("1.", 1), ("1.1t", 11 * T // 10),
])
def test_sizes(value, number):
    result = parse_size(value, "memory")
    assert result == number
    assert isinstance(result, int) and not isinstance(result, bool)


@pytest.mark.parametrize("value", [
    "", "m", "abc", "1x", "1kk", "-2", "-1m", "1e3", "inf", "nan", "1_000", "1.2.3", ".", "1 m", "\u00b2",
    "1,5g", True, False, 1.5, None, [], -2,
])
def test_bad_sizes_are_errors_naming_the_field(value):
    with pytest.raises(OCIError) as caught:
        parse_size(value, "memory_swap")
    assert str(caught.value).startswith("memory_swap: "), caught.value


def test_bundle_options_use_the_size_parser():
    config = bundle_config.build_config({"memory": "1.5g", "memory_swap": "-1", "memory_reservation": "512m"})
    assert config["linux"]["resources"]["memory"] == {"limit": 3 * G // 2, "swap": -1, "reservation": 512 * M}
    with pytest.raises(OCIError, match="^memory_reservation: 'lots' is not a size"):
        bundle_config.build_config({"memory_reservation": "lots"})


def test_ocirt_size_flags_use_the_size_parser(monkeypatch):
    """`ocirt update --memory 1.5g` takes what oci_bundle's memory takes; a bad size is a usage error."""
    monkeypatch.setattr("sys.stdin", None)
    _global, _command, options = cli.parse(["update", "--memory", "1.5g", "--memory-swap", "-1", "c1"])
    assert cli._update_resources(options) == {"memory": {"limit": 3 * G // 2, "swap": -1}}
    _global, _command, options = cli.parse(["update", "--memory", "12q", "c1"])
    with pytest.raises(cli.UsageError, match="--memory: '12q' is not a size"):
        cli._update_resources(options)


def test_is_digits_refuses_what_int_refuses():
    assert is_digits("0123456789")
    for text in ("", "\u00b2", "\u0663", "1 ", "-1", "+1", "1.0"):
        assert not is_digits(text), text


# -- signals ----------------------------------------------------------------------------

SIGNALS = [
    ("9", signal.SIGKILL), ("KILL", signal.SIGKILL), ("SIGKILL", signal.SIGKILL), ("kill", signal.SIGKILL),
    ("sigkill", signal.SIGKILL), ("sigterm", signal.SIGTERM), ("TERM", signal.SIGTERM), ("Hup", signal.SIGHUP),
    ("15", signal.SIGTERM), ("1", 1), ("64", 64), ("usr1", signal.SIGUSR1), ("SIGWINCH", signal.SIGWINCH),
    ("RTMIN", signal.SIGRTMIN), ("SIGIOT", signal.SIGABRT), (9, signal.SIGKILL),
]


@pytest.mark.parametrize("value,number", SIGNALS, ids=[str(case[0]) for case in SIGNALS])
def test_signals(value, number):
    result = parse_signal(value, "kill")
    assert result == number
    assert isinstance(result, int) and not isinstance(result, bool)


@pytest.mark.parametrize("value,needle", [
    ("0", "0"), ("65", "65"), ("999", "999"), ("99999999999999999999", "99999999999999999999"),
    ("FOO", "FOO"), ("SIGFOO", "SIGFOO"), ("-9", "-9"), ("9.0", "9.0"), ("", "''"), ("SIG", "SIG"),
    ("\u00b2", "\u00b2"),  # a "digit" (superscript two) that int() refuses
    ("SIG_DFL", "SIG_DFL"), ("_DFL", "_DFL"), ("NSIG", "NSIG"), (0, "0"),
])
def test_bad_signals_are_errors_naming_the_field_and_value(value, needle):
    with pytest.raises(OCIError) as caught:
        parse_signal(value, "stop_signal")
    message = str(caught.value)
    assert message.startswith("stop_signal: ") and needle in message, message


@pytest.mark.parametrize("value", ["0", "65", "999"])
def test_signal_out_of_range_says_so(value):
    with pytest.raises(OCIError, match="out of range 1-64"):
        parse_signal(value, "kill")


def test_ocirt_kill_reports_a_bad_signal_without_touching_any_container(tmp_path, capsys):
    """The signal is parsed before the container is looked up: the message is about the signal."""
    assert cli.main(["--root", str(tmp_path), "kill", "nosuchid", "SIGNOPE"]) == 1
    assert capsys.readouterr().err == "ocirt: kill: unknown signal 'SIGNOPE'\n"
    assert cli.main(["--root", str(tmp_path), "kill", "nosuchid"]) == 1
    assert capsys.readouterr().err == "ocirt: container nosuchid: does not exist\n"


# -- the deep merge ----------------------------------------------------------------------

def test_merge_merges_objects_and_replaces_the_rest():
    base = {"a": {"b": 1, "c": [1, 2]}, "d": "x", "e": {"f": 1}}
    overlay = {"a": {"c": [3], "g": None}, "d": {"new": True}, "e": 5, "h": [{"i": 1}]}
    assert jsonio.merge(base, overlay) == {"a": {"b": 1, "c": [3], "g": None}, "d": {"new": True}, "e": 5,
                                           "h": [{"i": 1}]}


def test_merge_changes_neither_input_and_shares_nothing_with_the_overlay():
    base = {"a": {"b": [1]}}
    overlay = {"a": {"c": {"d": [1]}}, "e": [{"f": 1}]}
    merged = jsonio.merge(base, overlay)
    merged["a"]["c"]["d"].append(2)
    merged["e"][0]["f"] = 2
    merged["a"]["b"].append(2)  # base's own leaves may be shared: merge never writes into them
    assert overlay == {"a": {"c": {"d": [1]}}, "e": [{"f": 1}]}
    assert base == {"a": {"b": [1, 2]}}
    assert set(base["a"]) == {"b"}


def test_bundle_config_option_is_merged_over_everything():
    config = bundle_config.build_config({"hostname": "h", "config": {
        "hostname": "over", "process": {"env": ["ONLY=1"]}, "linux": {"sysctl": {"net.ipv4.ip_forward": "1"}}}})
    assert config["hostname"] == "over"
    assert config["process"]["env"] == ["ONLY=1"]  # lists are replaced, not appended
    assert config["process"]["args"] == ["sh"]  # the rest of process stays
    assert config["linux"]["sysctl"] == {"net.ipv4.ip_forward": "1"}
    assert config["linux"]["namespaces"]  # the rest of linux stays
