"""cli: argument parsing (runc's flag spellings) and main's exit codes (signal names: test_values.py)."""
import json
import os
import re

import pytest

from ansible_collections.daemonless.oci.plugins.module_utils._runtime import cli, spec
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.errors import OCIError

# (argv, global options, command, command options)
PARSES = [
    # create: every spelling of --bundle
    (["create", "--bundle", "/b", "c1"], {}, "create", {"bundle": "/b", "id": "c1"}),
    (["create", "--bundle=/b", "c1"], {}, "create", {"bundle": "/b", "id": "c1"}),
    (["create", "-b", "/b", "c1"], {}, "create", {"bundle": "/b", "id": "c1"}),
    (["create", "-b=/b", "c1"], {}, "create", {"bundle": "/b", "id": "c1"}),
    (["create", "-bundle", "/b", "c1"], {}, "create", {"bundle": "/b", "id": "c1"}),
    (["create", "c1", "--bundle", "/b"], {}, "create", {"bundle": "/b", "id": "c1"}),
    (["create", "c1"], {}, "create", {"id": "c1"}),
    (["create", "--bundle", "/b", "--pid-file", "/run/p.pid", "--preserve-fds", "3", "c1"], {}, "create",
     {"bundle": "/b", "pid_file": "/run/p.pid", "preserve_fds": "3", "id": "c1"}),
    (["create", "--pid-file=/p", "--console-socket", "/s.sock", "--no-pivot", "c1"], {}, "create",
     {"pid_file": "/p", "console_socket": "/s.sock", "no_pivot": True, "id": "c1"}),
    (["create", "--bundle", "/with space/b", "c1"], {}, "create", {"bundle": "/with space/b", "id": "c1"}),
    (["create", "--", "-dash-id"], {}, "create", {"id": "-dash-id"}),
    # run
    (["run", "-d", "--keep", "-b", "/b", "c1"], {}, "run", {"detach": True, "keep": True, "bundle": "/b", "id": "c1"}),
    (["run", "--detach", "--preserve-fds=2", "c1"], {}, "run", {"detach": True, "preserve_fds": "2", "id": "c1"}),
    (["run", "--detach=false", "c1"], {}, "run", {"detach": False, "id": "c1"}),
    (["run", "--detach=true", "c1"], {}, "run", {"detach": True, "id": "c1"}),
    (["run", "-pid-file", "/p", "c1"], {}, "run", {"pid_file": "/p", "id": "c1"}),
    # start, state
    (["start", "c1"], {}, "start", {"id": "c1"}),
    (["state", "c1"], {}, "state", {"id": "c1"}),
    # kill: signal optional, --all / -a
    (["kill", "c1"], {}, "kill", {"id": "c1"}),
    (["kill", "c1", "KILL"], {}, "kill", {"id": "c1", "signal": "KILL"}),
    (["kill", "--all", "c1", "SIGTERM"], {}, "kill", {"all": True, "id": "c1", "signal": "SIGTERM"}),
    (["kill", "-a", "c1", "9"], {}, "kill", {"all": True, "id": "c1", "signal": "9"}),
    (["kill", "c1", "9", "--all"], {}, "kill", {"all": True, "id": "c1", "signal": "9"}),
    # delete
    (["delete", "c1"], {}, "delete", {"id": "c1"}),
    (["delete", "-f", "c1"], {}, "delete", {"force": True, "id": "c1"}),
    (["delete", "--force", "c1"], {}, "delete", {"force": True, "id": "c1"}),
    (["delete", "--force=false", "c1"], {}, "delete", {"force": False, "id": "c1"}),
    # list
    (["list"], {}, "list", {}),
    (["list", "--format", "json"], {}, "list", {"format": "json"}),
    (["list", "--format=json"], {}, "list", {"format": "json"}),
    (["list", "-f", "table", "-q"], {}, "list", {"format": "table", "quiet": True}),
    # spec
    (["spec"], {}, "spec", {"args": []}),
    (["spec", "-b", "/b", "--", "sh", "-c", "echo hi"], {}, "spec", {"bundle": "/b", "args": ["sh", "-c", "echo hi"]}),
    # global options come before the command
    (["--root", "/r", "state", "c1"], {"root": "/r"}, "state", {"id": "c1"}),
    (["--root=/r", "list"], {"root": "/r"}, "list", {}),
    (["-root", "/r", "kill", "c1"], {"root": "/r"}, "kill", {"id": "c1"}),
    (["--root", "/r", "--log", "/l", "--log-format", "json", "--debug", "delete", "c1"],
     {"root": "/r", "log": "/l", "log_format": "json", "debug": True}, "delete", {"id": "c1"}),
    (["--systemd-cgroup", "list"], {"systemd_cgroup": True}, "list", {}),
    (["--version"], {"version": True}, None, {}),
    (["-v"], {"version": True}, None, {}),
    (["--help"], {"help": True}, None, {}),
    (["-h", "bogus-is-not-parsed"], {"help": True}, None, {}),
    ([], {}, None, {}),
]


@pytest.mark.parametrize("argv,global_options,command,options", PARSES,
                         ids=[" ".join(case[0]) or "<empty>" for case in PARSES])
def test_parse(argv, global_options, command, options):
    assert cli.parse(list(argv)) == (global_options, command, options)


def test_parse_does_not_modify_argv():
    argv = ["--root", "/r", "kill", "--all", "c1", "KILL"]
    cli.parse(argv)
    assert argv == ["--root", "/r", "kill", "--all", "c1", "KILL"]


# (argv, regex the UsageError message must match)
USAGE_ERRORS = [
    (["bogus"], r"unknown command 'bogus'"),
    (["--root", "/r", "bogus", "c1"], r"unknown command 'bogus'"),
    (["Create", "c1"], r"unknown command 'Create'"),
    (["state", "--bogus", "c1"], r"unknown flag --bogus"),
    (["create", "--bundel", "/b", "c1"], r"unknown flag --bundel"),
    (["--bogus", "list"], r"unknown flag --bogus"),
    (["start", "--force", "c1"], r"unknown flag --force"),
    (["state", "-b", "/b", "c1"], r"unknown flag -b"),
    (["state"], r"^state: missing ID"),
    (["start"], r"^start: missing ID"),
    (["kill"], r"^kill: missing ID"),
    (["kill", "--all"], r"^kill: missing ID"),
    (["delete", "-f"], r"^delete: missing ID"),
    (["create", "--bundle", "/b"], r"^create: missing ID"),
    (["run", "-d"], r"^run: missing ID"),
    (["state", "c1", "c2"], r"^state: unexpected arguments c2"),
    (["start", "c1", "c2", "c3"], r"^start: unexpected arguments c2 c3"),
    (["kill", "c1", "9", "extra"], r"^kill: unexpected arguments extra"),
    (["delete", "c1", "c2"], r"^delete: unexpected arguments c2"),
    (["create", "-b", "/b", "c1", "c2"], r"^create: unexpected arguments c2"),
    (["list", "c1"], r"^list: unexpected arguments c1"),
    (["create", "--bundle"], r"flag --bundle needs a value"),
    (["create", "c1", "--pid-file"], r"flag --pid-file needs a value"),
    (["run", "c1", "--preserve-fds"], r"flag --preserve-fds needs a value"),
    (["list", "--format"], r"flag --format needs a value"),
    (["--root"], r"flag --root needs a value"),
    (["--root", "/r", "--log"], r"flag --log needs a value"),
]


@pytest.mark.parametrize("argv,pattern", USAGE_ERRORS, ids=[" ".join(case[0]) for case in USAGE_ERRORS])
def test_parse_usage_errors(argv, pattern):
    with pytest.raises(cli.UsageError) as caught:
        cli.parse(list(argv))
    assert re.search(pattern, str(caught.value)), str(caught.value)


def test_missing_id_message_shows_usage():
    with pytest.raises(cli.UsageError) as caught:
        cli.parse(["kill"])
    assert "usage: ocirt kill [--all] ID [SIGNAL]" in str(caught.value)


def test_usage_error_is_an_oci_error():
    assert issubclass(cli.UsageError, OCIError)


# -- main -------------------------------------------------------------------------


def test_main_version(capsys):
    assert cli.main(["--version"]) == 0
    out, err = capsys.readouterr()
    assert re.search(r"^ocirt version \d+\.\d+\.\d+$", out, re.M), out
    from ansible_collections.daemonless.oci.plugins.module_utils._runtime.features import VERSION
    assert VERSION in out
    assert "spec: %s" % spec.OCI_VERSION in out
    assert err == ""


def test_main_unknown_command(capsys):
    assert cli.main(["bogus"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("ocirt: unknown command 'bogus'")


def test_main_help_and_no_command(capsys):
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: ocirt")
    for command in ("create", "run", "start", "state", "kill", "delete", "list", "spec"):
        assert "ocirt %s" % command in out
    assert cli.main([]) == 2
    out = capsys.readouterr().out
    assert out.startswith("usage: ocirt")


@pytest.mark.parametrize("argv,code,needle", [
    (["state"], 2, "state: missing ID"),
    (["--log-format", "xml", "list"], 2, "--log-format xml"),
    (["list", "--format", "yaml"], 2, "list --format yaml"),
    (["create", "--preserve-fds", "x", "c1"], 2, "--preserve-fds x"),
    (["create", "--preserve-fds", "-1", "c1"], 2, "--preserve-fds -1"),
    (["kill", "c1", "FOO"], 1, "FOO"),
    (["state", "no-such-id"], 1, "container no-such-id: does not exist"),
    (["start", "a/b"], 1, "'a/b'"),
])
def test_main_errors(tmp_path, capsys, argv, code, needle):
    root = str(tmp_path / "root")
    assert cli.main(["--root", root] + argv) == code
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("ocirt: ")
    assert needle in err
    assert not os.path.exists(root) or os.listdir(root) == []


def test_main_list_of_an_empty_root(tmp_path, capsys):
    assert cli.main(["--root", str(tmp_path / "none"), "list", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == []


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_main_logs_errors(tmp_path, capsys, log_format):
    log = str(tmp_path / "ocirt.log")
    argv = ["--root", str(tmp_path / "root"), "--log", log, "--log-format", log_format, "state", "nosuch"]
    assert cli.main(argv) == 1
    assert "container nosuch: does not exist" in capsys.readouterr().err
    assert cli.main(argv) == 1
    with open(log) as handle:
        lines = handle.read().splitlines()
    assert len(lines) == 2  # appended, one line per error
    if log_format == "json":
        entry = json.loads(lines[0])
        assert entry["level"] == "error"
        assert entry["msg"] == "container nosuch: does not exist"
        assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$", entry["time"])
    else:
        assert re.match(r'^time="[^"]+" level=error msg="container nosuch: does not exist"$', lines[0]), lines[0]


def test_main_spec_writes_default_config_once(tmp_path, capsys):
    bundle = str(tmp_path)
    assert cli.main(["spec", "--bundle", bundle, "--", "echo", "hi"]) == 0
    with open(os.path.join(bundle, "config.json")) as handle:
        written = json.load(handle)
    assert written == spec.default_config(["echo", "hi"])
    assert cli.main(["spec", "--bundle", bundle]) == 1
    assert "already exists" in capsys.readouterr().err
    with open(os.path.join(bundle, "config.json")) as handle:
        assert json.load(handle) == written


# -- the launcher: launch() leaves by os._exit, so what main() printed must be flushed first --------


@pytest.mark.parametrize("argv, code, stream, start", [
    (["--version"], 0, "stdout", "ocirt version "),
    (["--help"], 0, "stdout", "usage: ocirt"),
    ([], 2, "stdout", "usage: ocirt"),
    (["bogus"], 2, "stderr", "ocirt: unknown command 'bogus'"),
    (["list", "--format", "json"], 0, "stdout", "[]"),
])
def test_launcher_output_through_pipes_is_complete(tmp_path, argv, code, stream, start):
    """Pipes make stdout block-buffered: an os._exit before a flush would lose all of it."""
    import subprocess
    from helpers import OCIRT
    if not os.access(OCIRT, os.X_OK):
        pytest.skip("no %s: run make venv" % OCIRT)
    with open(OCIRT) as handle:
        assert "launch()" in handle.read(), "the launcher does not go through cli.launch (re-run make venv)"
    result = subprocess.run([OCIRT, "--root", str(tmp_path / "root")] + argv, capture_output=True, text=True,
                            stdin=subprocess.DEVNULL, timeout=60, check=False)
    assert result.returncode == code, result
    text = getattr(result, stream)
    assert text.startswith(start), result
    assert text.endswith("\n"), result
    if argv[:1] == ["--help"]:
        assert "ocirt run" in text and "ocirt update" in text, text
