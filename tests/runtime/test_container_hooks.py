"""startContainer hooks run as the container's process runs (issue 15, item 1; runc 1.1.5 does the same).

They are exec'd inside the container after the root switch: through the
sealed trampoline, so that a hook file starting `#!/proc/self/exe` cannot
reach the host's interpreter (the CVE-2019-5736 class), and after the
container's seccomp filter is loaded, so that a hook runs filtered like the
process it precedes, with or without noNewPrivileges.
"""
import errno
import os
import re
import uuid

import pytest

from helpers import edit_config, write_file
from test_hostile import HostSnapshot, host_interpreter, in_root, self_exe_bundle

pytestmark = pytest.mark.skipif(os.uname().machine not in ("x86_64", "aarch64"),
                                reason="the sealed trampoline and the seccomp tables exist for x86_64 and aarch64")

# The hook: a Python script whose interpreter line names /proc/self/exe. If the host's interpreter
# runs it, it says on stderr (which start reports) whether it holds the host binary through a
# writable mount, then fails. It opens for writing without writing: nothing changes.
SELF_EXE_HOOK = """#!/proc/self/exe
import errno, os, sys
fd = os.open("/proc/self/exe", os.O_PATH)
st = os.fstat(fd)
readonly = bool(os.fstatvfs(fd).f_flag & os.ST_RDONLY)
try:
    os.close(os.open("/proc/self/fd/%d" % fd, os.O_WRONLY))
    opened = "opened"
except OSError as exc:
    opened = errno.errorcode.get(exc.errno, str(exc.errno))
sys.stderr.write("SELF-EXE %d %d %s %s\\n" % (st.st_dev, st.st_ino, "ro" if readonly else "rw", opened))
sys.exit(1)
"""


def new_id(prefix="chook"):
    return "%s-%s" % (prefix, uuid.uuid4().hex[:12])


def with_hooks(bundle, start_hooks):
    edit_config(bundle, lambda config: config.setdefault("hooks", {}).update(startContainer=start_hooks))


def test_a_start_container_hook_naming_proc_self_exe_never_runs_the_host_interpreter(ocirt, make_bundle):
    python = host_interpreter()
    host = HostSnapshot(python)
    # Control: the image (the host's /usr, bound read-only) can run a Python hook at all.
    control = self_exe_bundle(make_bundle, ["true"])
    write_file(in_root(control, "/bin/py-hook"), "#!%s\nimport sys\nsys.stderr.write('PY-HOOK ran\\n')\n"
               "sys.exit(3)\n" % python, 0o755)
    with_hooks(control, [{"path": "/bin/py-hook"}])
    cid = new_id()
    ocirt("create", "--bundle", control, cid)
    result = ocirt("start", cid, check=False)
    ocirt("delete", "--force", cid)
    assert result.returncode != 0 and "exited with 3: PY-HOOK ran" in result.stderr, result

    bundle = self_exe_bundle(make_bundle, ["true"])
    write_file(in_root(bundle, "/bin/evil-hook"), SELF_EXE_HOOK, 0o755)
    with_hooks(bundle, [{"path": "/bin/evil-hook"}])
    cid = new_id()
    ocirt("create", "--bundle", bundle, cid)
    result = ocirt("start", cid, check=False)
    ocirt("delete", "--force", cid)
    # Its interpreter is the sealed trampoline, which runs out of arguments: the hook fails.
    assert result.returncode != 0 and "hooks.startContainer[0]" in result.stderr, result
    python_stat = os.stat(python)
    for dev, ino, mode, opened in re.findall(r"SELF-EXE (\d+) (\d+) (\w+) (\w+)", result.stderr):
        escaped = (int(dev), int(ino)) == (python_stat.st_dev, python_stat.st_ino) and mode == "rw"
        assert not escaped, ("the startContainer hook ran the host's interpreter %s and held it through a "
                             "writable mount (open for writing: %s)" % (python, opened))
    assert "SELF-EXE" not in result.stderr, result.stderr
    host.assert_untouched()


@pytest.mark.parametrize("no_new_privileges", [True, False])
def test_a_start_container_hook_runs_under_the_containers_seccomp_filter(ocirt, make_bundle, no_new_privileges):
    profile = {"defaultAction": "SCMP_ACT_ALLOW",
               "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.ENOSYS}]}
    bundle = make_bundle(["sh", "-c", "cat /hook-report"],
                         config={"root": {"readonly": False}, "linux": {"seccomp": profile},
                                 "process": {"noNewPrivileges": no_new_privileges}})
    with_hooks(bundle, [{"path": "/bin/sh", "args": [
        "sh", "-c", "mkdir /hook-dir 2>/hook-report; echo rc=$? >> /hook-report; "
                    "grep -E '^(Seccomp|NoNewPrivs):' /proc/self/status >> /hook-report"]}])
    result = ocirt.run(bundle)
    assert result.returncode == 0, result
    report = result.stdout
    assert "Function not implemented" in report and "rc=1" in report, report
    assert "Seccomp:\t2" in report, report
    assert ("NoNewPrivs:\t1" if no_new_privileges else "NoNewPrivs:\t0") in report, report
    assert not os.path.exists(in_root(bundle, "/hook-dir"))
