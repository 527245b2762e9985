"""oci_container_exec's backend (_ansible/container_exec.py) on real running containers, without Ansible.

The module only hands its parameters to run() and reports what comes back,
so these are the module's behaviours: rc/stdout/stderr, stdin, env, user
names through the container's own /etc files, workdir, tty, detach, check
mode, and the errors for an unknown or stopped container.
"""
import os

import pytest

import busybox_bundle
from helpers import create_and_start, new_id, proc_start_time, wait_stopped, write_file
from ansible_collections.daemonless.oci.plugins.module_utils._ansible import container_exec
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.errors import OCIError

GROUP = busybox_bundle.GROUP + "www-data:x:33:\nextra:x:5151:app\n"
PASSWD = busybox_bundle.PASSWD + "www-data:x:33:33:www-data:/var/www:/bin/false\n"


@pytest.fixture
def running(ocirt, make_bundle):
    """A running busybox container (sleep 1000) whose image has www-data and app in group extra; its id."""
    bundle = make_bundle(["sleep", "1000"], config={"process": {"env": ["PATH=/bin:/usr/bin", "FROM_IMAGE=yes"]}})
    rootfs = os.path.join(bundle, "rootfs")
    write_file(os.path.join(rootfs, "etc", "passwd"), PASSWD)
    write_file(os.path.join(rootfs, "etc", "group"), GROUP)
    container_id = new_id("exec")
    create_and_start(ocirt, bundle, container_id)
    return container_id


def params(state_root, container_id, **overrides):
    result = dict(id=container_id, argv=None, command=None, env={}, user=None, workdir=None, stdin=None,
                  stdin_add_newline=True, strip_empty_ends=True, tty=False, detach=False, state_root=state_root)
    result.update(overrides)
    return result


def test_rc_stdout_and_stderr_come_back_and_a_nonzero_rc_is_no_failure(state_root, running):
    result = container_exec.run(params(state_root, running,
                                       argv=["sh", "-c", "echo out1; echo out2; echo err1 >&2; exit 7"]))
    assert result["changed"] is True
    assert result["rc"] == 7
    assert result["stdout"] == "out1\nout2" and result["stdout_lines"] == ["out1", "out2"]
    assert result["stderr"] == "err1" and result["stderr_lines"] == ["err1"]
    assert "exited with 7" in result["msg"]


def test_command_is_split_as_a_shell_would_but_no_shell_runs_it(state_root, running):
    result = container_exec.run(params(state_root, running, command="echo 'two words' $HOME \"a;b\""))
    assert result["argv"] == ["echo", "two words", "$HOME", "a;b"]
    assert result["stdout"] == "two words $HOME a;b" and result["rc"] == 0


def test_stdin_reaches_the_command(state_root, running):
    result = container_exec.run(params(state_root, running, argv=["sh"], stdin="echo from-stdin\nexit 3"))
    assert result["rc"] == 3 and result["stdout"] == "from-stdin"
    raw = container_exec.run(params(state_root, running, argv=["od", "-c"], stdin="ab",
                                    stdin_add_newline=False, strip_empty_ends=False))
    assert raw["stdout"].startswith("0000000   a   b\n") and raw["stdout"].endswith("\n")


def test_env_is_added_to_the_containers_own(state_root, running):
    result = container_exec.run(params(state_root, running, argv=["env"], env={"GREETING": "hi there", "N": 5}))
    lines = result["stdout_lines"]
    assert "GREETING=hi there" in lines and "N=5" in lines and "FROM_IMAGE=yes" in lines


def status_ids(result):
    status = dict(line.split(":", 1) for line in result["stdout_lines"])
    return (status["Uid"].split()[0], status["Gid"].split()[0], sorted(status["Groups"].split()))


@pytest.mark.parametrize("user, wanted", [
    ("www-data", ("33", "33", [])),
    ("app", ("1000", "1000", ["5151"])),
    ("app:www-data", ("1000", "33", [])),
    ("4321:77", ("4321", "77", [])),
])
def test_user_names_resolve_through_the_containers_own_files(state_root, running, user, wanted):
    result = container_exec.run(params(state_root, running, user=user,
                                       argv=["grep", "-E", "^(Uid|Gid|Groups):", "/proc/self/status"]))
    assert result["rc"] == 0, result
    assert status_ids(result) == wanted


def test_an_unknown_user_name_is_an_error_naming_user(state_root, running):
    with pytest.raises(OCIError, match=r"^user: 'nosuch': the image has no user 'nosuch'"):
        container_exec.run(params(state_root, running, argv=["id"], user="nosuch"))


def test_workdir_is_the_commands_cwd(state_root, running):
    result = container_exec.run(params(state_root, running, argv=["pwd"], workdir="/etc"))
    assert result["stdout"] == "/etc"
    with pytest.raises(OCIError, match="^workdir: must be an absolute path"):
        container_exec.run(params(state_root, running, argv=["pwd"], workdir="etc"))


def test_tty_gives_the_command_a_terminal(state_root, running):
    result = container_exec.run(params(state_root, running, argv=["sh", "-c", "test -t 1 && echo tty"], tty=True))
    assert result["rc"] == 0 and result["stdout"] == "tty"
    plain = container_exec.run(params(state_root, running, argv=["sh", "-c", "test -t 1 || echo notty"]))
    assert plain["stdout"] == "notty"


def test_detach_returns_the_pid_of_a_process_that_keeps_running(state_root, running, ocirt):
    result = container_exec.run(params(state_root, running, argv=["sleep", "1000"], detach=True))
    pid = result["pid"]
    assert "rc" not in result and "stdout" not in result
    assert proc_start_time(pid) is not None
    with open("/proc/%d/cmdline" % pid, "rb") as handle:
        assert handle.read().split(b"\0")[:2] == [b"sleep", b"1000"]
    container_pid = ocirt.state(running)["pid"]
    assert os.readlink("/proc/%d/ns/pid" % pid) == os.readlink("/proc/%d/ns/pid" % container_pid)
    with pytest.raises(OCIError, match="^stdin: cannot be given with detach"):
        container_exec.run(params(state_root, running, argv=["cat"], detach=True, stdin="x"))


def test_check_mode_runs_nothing_and_says_so(state_root, running, scratch):
    marker = "/tmp/" + new_id("marker")
    result = container_exec.run(params(state_root, running, argv=["touch", marker]), check_mode=True)
    assert result["changed"] is True and "rc" not in result
    assert result["msg"].startswith("check mode: would run touch %s in container %s" % (marker, running))
    assert "nothing ran" in result["msg"]
    probe = container_exec.run(params(state_root, running, argv=["ls", marker]))
    assert probe["rc"] != 0
    # A container that a check-mode task before would have made does not exist yet: not a failure here.
    missing = container_exec.run(params(state_root, "not-made-yet", argv=["true"]), check_mode=True)
    assert missing["changed"] and "no such container" in missing["msg"]


def test_an_unknown_container_is_an_error_naming_it(state_root):
    with pytest.raises(OCIError, match=r"^container nosuch-\w+: no such container"):
        container_exec.run(params(state_root, new_id("nosuch"), argv=["true"]))


def test_a_stopped_container_is_an_error_naming_it(state_root, ocirt, make_bundle):
    container_id = new_id("stopped")
    create_and_start(ocirt, make_bundle(["true"]), container_id, running=False)
    wait_stopped(ocirt, container_id)
    with pytest.raises(OCIError, match=r"^container %s: is stopped, not running" % container_id):
        container_exec.run(params(state_root, container_id, argv=["true"]))


def test_a_missing_program_is_an_error_with_the_reason(state_root, running):
    with pytest.raises(OCIError, match="nosuchprogram"):
        container_exec.run(params(state_root, running, argv=["nosuchprogram"]))


@pytest.mark.parametrize("field, value, needle", [
    ("argv", [], "argv: must name a program"),
    ("command", "   ", "command: must name a program"),
    ("command", "echo 'unterminated", "command: cannot split"),
    ("argv", ["echo", "a\0b"], "argv: an argument holds a NUL byte"),
    ("env", {"A=B": "x"}, "env: 'A=B' is not a valid variable name"),
    ("env", {"": "x"}, "env: '' is not a valid variable name"),
])
def test_bad_options_fail_naming_the_option_before_anything_runs(state_root, running, field, value, needle):
    with pytest.raises(OCIError) as caught:
        # argv ["true"] makes the other options the only bad one (command replaces it).
        base = {} if field == "command" else {"argv": ["true"]}
        container_exec.run(params(state_root, running, **dict(base, **{field: value})))
    assert needle in str(caught.value)


def test_a_command_that_leaves_a_background_child_does_not_block(state_root, running):
    # The child keeps the command's stdout open: with pipes the module would wait for it.
    result = container_exec.run(params(state_root, running, argv=["sh", "-c", "sleep 1000 & echo started"]))
    assert result["rc"] == 0 and result["stdout"] == "started"


def test_the_module_process_keeps_its_own_stdio_and_signal_handlers(state_root, running):
    import signal
    before = (os.fstat(1).st_ino, os.fstat(2).st_ino, signal.getsignal(signal.SIGTERM))
    container_exec.run(params(state_root, running, argv=["echo", "x"]))
    assert (os.fstat(1).st_ino, os.fstat(2).st_ino, signal.getsignal(signal.SIGTERM)) == before
