"""linux.seccomp without containers: validation, and the compiled BPF run through an interpreter.

The interpreter below executes the classic BPF opcodes seccomp.py emits
(and refuses any other, and any jump that leaves the program), so each test
states decisions as the kernel would take them for (architecture, syscall
number, arguments). A few tests install real filters in forked children
(no_new_privs first, so no privilege is needed) to show the kernel accepts
what we build.
"""
import errno
import os
import struct
import sys

import pytest

from ansible_collections.daemonless.oci.plugins.module_utils._runtime.setup import seccomp
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.linux import syscalls
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.linux._syscall_table import OTHER_ARCH_NAMES, TABLES
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.errors import OCIError

import gen_syscall_table  # tools/, put on sys.path by conftest

X86_64 = seccomp.AUDIT_ARCH_X86_64
I386 = seccomp.AUDIT_ARCH_I386
AARCH64 = seccomp.AUDIT_ARCH_AARCH64
ARM = seccomp.AUDIT_ARCH_ARM
ALLOW = seccomp.ACTIONS["SCMP_ACT_ALLOW"]
KILL_PROCESS = seccomp.ACTIONS["SCMP_ACT_KILL_PROCESS"]
BAD_ARCH = seccomp.BAD_ARCH
U64 = (1 << 64) - 1


def errno_ret(number):
    return seccomp.ACTIONS["SCMP_ACT_ERRNO"] | number


# --------------------------------------------------------------------------
# a classic BPF interpreter for the opcodes seccomp.py emits


def run_bpf(program, nr, arch, args=(), ip=0):
    """The filter's return value for one syscall (seccomp_data little-endian, as on every arch we filter)."""
    args = list(args) + [0] * (6 - len(args))
    data = struct.pack("<iIQ6Q", nr, arch, ip, *args)
    acc = 0
    pc = 0
    steps = 0
    while True:
        assert 0 <= pc < len(program), "jump out of the program at %d" % pc
        code, jt, jf, k = program[pc]
        assert 0 <= jt <= 255 and 0 <= jf <= 255 and 0 <= k <= 0xFFFFFFFF
        steps += 1
        assert steps <= len(program), "more steps than instructions: a loop?"
        if code == 0x20:  # BPF_LD | BPF_W | BPF_ABS
            assert k % 4 == 0 and k + 4 <= len(data)
            acc = struct.unpack_from("<I", data, k)[0]
            pc += 1
        elif code == 0x54:  # BPF_ALU | BPF_AND | BPF_K
            acc &= k
            pc += 1
        elif code == 0x05:  # BPF_JMP | BPF_JA
            pc += 1 + k
        elif code in (0x15, 0x25, 0x35, 0x45):  # JEQ, JGT, JGE, JSET with K
            taken = {0x15: acc == k, 0x25: acc > k, 0x35: acc >= k, 0x45: bool(acc & k)}[code]
            pc += 1 + (jt if taken else jf)
        elif code == 0x06:  # BPF_RET | BPF_K
            return k
        else:
            raise AssertionError("opcode 0x%x at %d is not one seccomp.py should emit" % (code, pc))


def decide(profile, nr, arch=X86_64, args=(), native="x86_64"):
    return run_bpf(seccomp.compile(profile, native), nr, arch, args)


def nr(name, arch="x86_64"):
    return TABLES[arch][name]


def profile(rules=(), default="SCMP_ACT_ALLOW", **extra):
    result = {"defaultAction": default, "syscalls": list(rules)}
    result.update(extra)
    return result


def rule(names, action="SCMP_ACT_ERRNO", **extra):
    result = {"names": list(names) if not isinstance(names, str) else [names], "action": action}
    result.update(extra)
    return result


def arg(index, op, value, value_two=None):
    result = {"index": index, "op": op, "value": value}
    if value_two is not None:
        result["valueTwo"] = value_two
    return result


# --------------------------------------------------------------------------
# actions and errno


def test_a_named_syscall_gets_its_action_and_the_rest_the_default():
    program = profile([rule(["mkdir", "mkdirat"], errnoRet=errno.ENOSYS)])
    assert decide(program, nr("mkdir")) == errno_ret(errno.ENOSYS)
    assert decide(program, nr("mkdirat")) == errno_ret(errno.ENOSYS)
    assert decide(program, nr("read")) == ALLOW
    assert decide(program, nr("rmdir")) == ALLOW


@pytest.mark.parametrize("action, value", [
    ("SCMP_ACT_KILL", 0), ("SCMP_ACT_KILL_THREAD", 0), ("SCMP_ACT_KILL_PROCESS", 0x80000000),
    ("SCMP_ACT_TRAP", 0x00030000), ("SCMP_ACT_ERRNO", 0x00050001), ("SCMP_ACT_TRACE", 0x7ff00001),
    ("SCMP_ACT_LOG", 0x7ffc0000), ("SCMP_ACT_ALLOW", 0x7fff0000),
])
def test_each_action_returns_the_kernels_value(action, value):
    default = "SCMP_ACT_LOG" if action == "SCMP_ACT_ALLOW" else "SCMP_ACT_ALLOW"
    program = profile([rule("uname", action)], default=default)
    assert decide(program, nr("uname")) == value


def test_notify_returns_user_notif():
    program = profile([rule("mknod", "SCMP_ACT_NOTIFY")], listenerPath="/run/agent.sock")
    assert decide(program, nr("mknod")) == 0x7fc00000


def test_errno_and_trace_data_and_their_defaults():
    program = profile([rule("mkdir", errnoRet=38), rule("rmdir"), rule("uname", "SCMP_ACT_TRACE", errnoRet=4242),
                       rule("getpid", "SCMP_ACT_TRACE"), rule("chdir", errnoRet=0)])
    assert decide(program, nr("mkdir")) == errno_ret(38)
    assert decide(program, nr("rmdir")) == errno_ret(errno.EPERM)
    assert decide(program, nr("uname")) == 0x7ff00000 | 4242
    assert decide(program, nr("getpid")) == 0x7ff00000 | errno.EPERM
    assert decide(program, nr("chdir")) == errno_ret(0)


def test_default_errno_ret_applies_to_the_default_action_only():
    program = profile([rule("read", "SCMP_ACT_ALLOW"), rule("mkdir")], default="SCMP_ACT_ERRNO",
                      defaultErrnoRet=errno.EACCES)
    assert decide(program, nr("read")) == ALLOW
    assert decide(program, nr("write")) == errno_ret(errno.EACCES)
    assert decide(program, nr("mkdir")) == errno_ret(errno.EPERM)


def test_default_errno_is_eperm():
    assert decide(profile(default="SCMP_ACT_ERRNO"), nr("read")) == errno_ret(errno.EPERM)


# --------------------------------------------------------------------------
# architectures


def test_the_native_architecture_is_always_filtered_and_others_killed():
    program = profile([rule("mkdir")])
    assert decide(program, nr("mkdir")) == errno_ret(1)
    assert decide(program, nr("mkdir", "x86"), arch=I386) == BAD_ARCH
    assert decide(program, 39, arch=AARCH64) == BAD_ARCH
    assert decide(program, 0, arch=0) == BAD_ARCH


def test_listed_compat_architectures_use_their_own_numbers():
    program = profile([rule("mkdir")], architectures=["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"])
    assert decide(program, nr("mkdir", "x86"), arch=I386) == errno_ret(1)  # 39 on i386
    assert nr("mkdir", "x86") == 39 and nr("getpid") == 39
    assert decide(program, 39, arch=X86_64) == ALLOW  # getpid on x86_64
    assert decide(program, nr("mkdir"), arch=I386) == ALLOW  # 83 is not mkdir on i386


def test_x32_syscalls_are_a_bad_arch_unless_listed():
    x32_mkdir = nr("mkdir", "x32")
    assert x32_mkdir == seccomp.X32_SYSCALL_BIT + nr("mkdir")
    without = profile([rule("mkdir")])
    assert decide(without, x32_mkdir) == BAD_ARCH
    assert decide(without, seccomp.X32_SYSCALL_BIT + nr("read")) == BAD_ARCH
    with_x32 = profile([rule("mkdir")], architectures=["SCMP_ARCH_X86_64", "SCMP_ARCH_X32"])
    assert decide(with_x32, x32_mkdir) == errno_ret(1)
    assert decide(with_x32, seccomp.X32_SYSCALL_BIT + nr("read")) == ALLOW
    assert decide(with_x32, nr("mkdir")) == errno_ret(1)
    # x32's own numbers from 512 (its rt_sigaction differs from x86_64's 13)
    x32_only = profile([rule("rt_sigaction")], architectures=["SCMP_ARCH_X32"])
    assert decide(x32_only, nr("rt_sigaction", "x32")) == errno_ret(1)
    assert nr("rt_sigaction", "x32") == seccomp.X32_SYSCALL_BIT + 512
    assert decide(x32_only, seccomp.X32_SYSCALL_BIT + 13) == ALLOW


def test_syscall_minus_one_is_not_taken_for_x32():
    # A tracer skips a syscall by setting its number to -1: the default applies, not a kill.
    assert decide(profile([rule("mkdir")]), -1) == ALLOW
    assert decide(profile(default="SCMP_ACT_ERRNO"), -1) == errno_ret(1)


def test_aarch64_with_arm():
    program = profile([rule(["mkdirat", "mkdir"], errnoRet=13)], architectures=["SCMP_ARCH_ARM"])
    assert "mkdir" not in TABLES["aarch64"]  # skipped there, not an error
    assert decide(program, nr("mkdirat", "aarch64"), AARCH64, native="aarch64") == errno_ret(13)
    assert decide(program, nr("mkdir", "arm"), ARM, native="aarch64") == errno_ret(13)
    assert decide(program, nr("mkdirat", "arm"), ARM, native="aarch64") == errno_ret(13)
    assert decide(program, nr("mkdirat"), X86_64, native="aarch64") == BAD_ARCH
    arm_unlisted = profile([rule("mkdirat")])
    assert decide(arm_unlisted, nr("mkdirat", "arm"), ARM, native="aarch64") == BAD_ARCH


def test_architectures_a_host_cannot_run_cost_nothing():
    listed = profile([rule("mkdir")], architectures=["SCMP_ARCH_PPC64LE", "SCMP_ARCH_S390X", "SCMP_ARCH_AARCH64"])
    assert seccomp.compile(listed, "x86_64") == seccomp.compile(profile([rule("mkdir")]), "x86_64")


def test_names_of_other_architectures_are_skipped():
    program = profile([rule(["s390_runtime_instr", "arm_fadvise64_64", "arch_prctl", "mkdir"])])
    assert "s390_runtime_instr" in OTHER_ARCH_NAMES
    assert decide(program, nr("mkdir")) == errno_ret(1)
    assert decide(program, nr("arch_prctl")) == errno_ret(1)
    assert decide(program, nr("mkdirat", "aarch64"), AARCH64, native="aarch64") == ALLOW


# --------------------------------------------------------------------------
# arguments


BOUNDARIES = [0, 1, 2, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFE, 0xFFFFFFFF, 1 << 32, (1 << 32) + 1, (1 << 32) + 0xFFFFFFFF,
              0x1FFFFFFFF, 0x100000000FFFFFFFF & U64, 1 << 63, U64 - 1, U64]

PREDICATES = {
    "SCMP_CMP_EQ": lambda a, v: a == v,
    "SCMP_CMP_NE": lambda a, v: a != v,
    "SCMP_CMP_LT": lambda a, v: a < v,
    "SCMP_CMP_LE": lambda a, v: a <= v,
    "SCMP_CMP_GT": lambda a, v: a > v,
    "SCMP_CMP_GE": lambda a, v: a >= v,
}


@pytest.mark.parametrize("op", sorted(PREDICATES))
def test_64_bit_comparisons_around_the_word_boundaries(op):
    for value in BOUNDARIES:
        program = seccomp.compile(profile([rule("ftruncate", args=[arg(1, op, value)])]), "x86_64")
        for candidate in set(BOUNDARIES + [value - 1, value, value + 1]):
            if not 0 <= candidate <= U64:
                continue
            expected = errno_ret(1) if PREDICATES[op](candidate, value) else ALLOW
            got = run_bpf(program, nr("ftruncate"), X86_64, [0, candidate])
            assert got == expected, "%s: arg 0x%x vs value 0x%x gave 0x%x" % (op, candidate, value, got)


@pytest.mark.parametrize("op", sorted(PREDICATES))
def test_32_bit_architectures_compare_the_low_words(op):
    for value in BOUNDARIES:
        program = seccomp.compile(profile([rule("ftruncate", args=[arg(1, op, value)])],
                                          architectures=["SCMP_ARCH_X86"]), "x86_64")
        for candidate in (0, 1, 0xFFFFFFFE, 0xFFFFFFFF, value & 0xFFFFFFFF, (value - 1) & 0xFFFFFFFF):
            expected = errno_ret(1) if PREDICATES[op](candidate, value & 0xFFFFFFFF) else ALLOW
            got = run_bpf(program, nr("ftruncate", "x86"), I386, [0, candidate])
            assert got == expected, "%s: arg 0x%x vs value 0x%x gave 0x%x" % (op, candidate, value, got)


def test_x32_compares_64_bit_arguments():
    program = seccomp.compile(profile([rule("ftruncate", args=[arg(1, "SCMP_CMP_GT", 0xFFFFFFFF)])],
                                      architectures=["SCMP_ARCH_X32"]), "x86_64")
    assert run_bpf(program, nr("ftruncate", "x32"), X86_64, [0, 1 << 32]) == errno_ret(1)
    assert run_bpf(program, nr("ftruncate", "x32"), X86_64, [0, 0xFFFFFFFF]) == ALLOW


def test_masked_eq_compares_both_words_under_the_mask():
    mask = 0xF0000000000000FF
    program = profile([rule("clone", args=[arg(0, "SCMP_CMP_MASKED_EQ", mask, 0x1000000000000011)])])
    assert decide(program, nr("clone"), args=[0x1000000000000011]) == errno_ret(1)
    assert decide(program, nr("clone"), args=[0x1ABCDEF012345611]) == errno_ret(1)
    assert decide(program, nr("clone"), args=[0x2000000000000011]) == ALLOW
    assert decide(program, nr("clone"), args=[0x1000000000000012]) == ALLOW
    # Docker's clone rule: no namespace flag set (valueTwo 0), whatever else is.
    docker = profile([rule("clone", "SCMP_ACT_ALLOW", args=[arg(0, "SCMP_CMP_MASKED_EQ", 2114060288, 0)])],
                     default="SCMP_ACT_ERRNO")
    assert decide(docker, nr("clone"), args=[0x3D0F00]) == ALLOW  # threads
    assert decide(docker, nr("clone"), args=[0x20000000 | 0x11]) == errno_ret(1)  # CLONE_NEWUTS


def test_masked_eq_without_value_two_wants_zero():
    program = profile([rule("clone", args=[arg(0, "SCMP_CMP_MASKED_EQ", 0x10)])])
    assert decide(program, nr("clone"), args=[0x20]) == errno_ret(1)
    assert decide(program, nr("clone"), args=[0x30]) == ALLOW


def test_args_of_a_rule_are_anded():
    program = profile([rule("socket", args=[arg(0, "SCMP_CMP_EQ", 2), arg(1, "SCMP_CMP_EQ", 1)])])
    assert decide(program, nr("socket"), args=[2, 1]) == errno_ret(1)
    assert decide(program, nr("socket"), args=[2, 2]) == ALLOW
    assert decide(program, nr("socket"), args=[1, 1]) == ALLOW


def test_a_repeated_index_is_a_range():
    program = profile([rule("personality", args=[arg(0, "SCMP_CMP_GE", 8), arg(0, "SCMP_CMP_LE", 0x10)])])
    assert [decide(program, nr("personality"), args=[value]) == errno_ret(1) for value in (7, 8, 9, 0x10, 0x11)] \
        == [False, True, True, True, False]


def test_every_argument_index_reads_its_own_words():
    for index in range(6):
        program = profile([rule("mmap", args=[arg(index, "SCMP_CMP_EQ", 0x1234567800000009)])])
        args = [0] * 6
        args[index] = 0x1234567800000009
        assert decide(program, nr("mmap"), args=args) == errno_ret(1)
        args[index] = 0x0000000900000009  # same low word
        assert decide(program, nr("mmap"), args=args) == ALLOW


# --------------------------------------------------------------------------
# several rules for one syscall


def test_the_first_matching_rule_wins():
    program = profile([
        rule("kill", errnoRet=13, args=[arg(1, "SCMP_CMP_EQ", 10)]),
        rule("kill", errnoRet=22, args=[arg(1, "SCMP_CMP_GE", 10)]),
        rule("kill", "SCMP_ACT_LOG"),
        rule("kill", errnoRet=99),  # never reached: the rule above always matches
    ])
    assert decide(program, nr("kill"), args=[1, 10]) == errno_ret(13)
    assert decide(program, nr("kill"), args=[1, 11]) == errno_ret(22)
    assert decide(program, nr("kill"), args=[1, 9]) == 0x7ffc0000


def test_rules_with_the_default_action_are_dropped():
    # As runc/libseccomp: the first rule (= the default) does not shadow the second.
    program = profile([rule("personality"), rule("personality", "SCMP_ACT_ALLOW", args=[arg(0, "SCMP_CMP_EQ", 0)])],
                      default="SCMP_ACT_ERRNO")
    assert decide(program, nr("personality"), args=[0]) == ALLOW
    assert decide(program, nr("personality"), args=[8]) == errno_ret(1)
    # A different errno is a different action: kept.
    other = profile([rule("personality", errnoRet=38), rule("personality", "SCMP_ACT_ALLOW")], default="SCMP_ACT_ERRNO")
    assert decide(other, nr("personality")) == errno_ret(38)


def test_one_name_in_several_rules_and_twice_in_one():
    program = profile([rule(["mkdir", "mkdir", "rmdir"], errnoRet=5), rule(["rmdir", "mkdir"], errnoRet=6)])
    assert decide(program, nr("mkdir")) == errno_ret(5)
    assert decide(program, nr("rmdir")) == errno_ret(5)


# --------------------------------------------------------------------------
# big programs: binary search and jumps beyond 255 instructions


def allow_list(native, extra_rules=()):
    names = sorted(TABLES[native])
    return profile([rule(names, "SCMP_ACT_ALLOW")] + list(extra_rules), default="SCMP_ACT_ERRNO", defaultErrnoRet=38)


@pytest.mark.parametrize("native, arch", [("x86_64", X86_64), ("aarch64", AARCH64)])
def test_an_allow_list_of_every_syscall(native, arch):
    program = seccomp.compile(allow_list(native), native)
    assert len(program) <= seccomp.MAX_INSTRUCTIONS
    for name, number in TABLES[native].items():
        assert run_bpf(program, number, arch) == ALLOW, name
    for number in (max(TABLES[native].values()) + 1, 1000, 0x3FFFFFFF):
        assert run_bpf(program, number, arch) == errno_ret(38)


def test_far_jumps_go_through_trampolines():
    # Long argument chains put the rule bodies far from the search tree.
    names = sorted(TABLES["x86_64"])[:50]
    rules = [rule(name, errnoRet=7, args=[arg(i, "SCMP_CMP_LE", 0x100000100) for i in range(3)]) for name in names]
    assert len(seccomp.compile(profile(rules), "x86_64")) > 256 * 2
    program = seccomp.compile(profile(rules, architectures=["SCMP_ARCH_X86", "SCMP_ARCH_X32"]), "x86_64")
    assert any(code == 0x05 for code, _jt, _jf, _k in program), "expected BPF_JA trampolines"
    for name in names:
        assert run_bpf(program, nr(name), X86_64, [1] * 6) == errno_ret(7), name
        assert run_bpf(program, nr(name), X86_64, [0x200000000] * 6) == ALLOW, name
        if name in TABLES["x86"]:
            assert run_bpf(program, nr(name, "x86"), I386, [1] * 6) == errno_ret(7), name
    assert run_bpf(program, 999, X86_64) == ALLOW


def test_a_program_over_the_kernel_limit_is_refused():
    rules = [rule(name, errnoRet=7, args=[arg(i, "SCMP_CMP_GT", 1 << 40) for i in range(6)])
             for name in sorted(TABLES["x86_64"])]
    with pytest.raises(OCIError) as caught:
        seccomp.compile(profile(rules, architectures=["SCMP_ARCH_X86", "SCMP_ARCH_X32"]), "x86_64")
    assert "4096" in str(caught.value) and "linux.seccomp" in str(caught.value)


# --------------------------------------------------------------------------
# validation: the field at fault


BAD_PROFILES = [
    ("not an object", ["SCMP_ACT_ALLOW"], "linux.seccomp: must be an object"),
    ("no default", {"syscalls": []}, "linux.seccomp.defaultAction: is required"),
    ("unknown default", {"defaultAction": "SCMP_ACT_MAYBE"}, "linux.seccomp.defaultAction: must be one of"),
    ("notify default", {"defaultAction": "SCMP_ACT_NOTIFY", "listenerPath": "/x"}, "linux.seccomp.defaultAction: SCMP_ACT_NOTIFY"),
    ("default errno with allow", {"defaultAction": "SCMP_ACT_ALLOW", "defaultErrnoRet": 1}, "linux.seccomp.defaultErrnoRet: only"),
    ("default errno too big", {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 65536}, "linux.seccomp.defaultErrnoRet: must be at most"),
    ("architectures not a list", profile(architectures="SCMP_ARCH_X86"), "linux.seccomp.architectures: must be a list"),
    ("bad arch", profile(architectures=["SCMP_ARCH_X86_64", "SCMP_ARCH_Z80"]), "linux.seccomp.architectures[1]: must be one of"),
    ("bad flag", profile(flags=["SECCOMP_FILTER_FLAG_FAST"]), "linux.seccomp.flags[0]: must be one of"),
    ("relative listener", profile(listenerPath="agent.sock"), "linux.seccomp.listenerPath: must be an absolute path"),
    ("metadata without listener", profile(listenerMetadata="x"), "linux.seccomp.listenerMetadata: must not be set without listenerPath"),
    ("syscalls not a list", profile(syscalls={"names": ["read"]}), "linux.seccomp.syscalls: must be a list"),
    ("no names", profile([{"action": "SCMP_ACT_ERRNO"}]), "linux.seccomp.syscalls[0].names: must be a non-empty list"),
    ("empty names", profile([rule([])]), "linux.seccomp.syscalls[0].names: must be a non-empty list"),
    ("unknown name", profile([rule("read", "SCMP_ACT_LOG"), rule(["mkdir", "mkdri"])]),
     "linux.seccomp.syscalls[1].names[1]: unknown syscall 'mkdri' (did you mean 'mkdir'?)"),
    ("no action", profile([{"names": ["read"]}]), "linux.seccomp.syscalls[0].action: is required"),
    ("unknown action", profile([rule("read", "SCMP_ACT_KILL_EVERYONE")]), "linux.seccomp.syscalls[0].action: must be one of"),
    ("errno with kill", profile([rule("read", "SCMP_ACT_KILL", errnoRet=1)]), "linux.seccomp.syscalls[0].errnoRet: only SCMP_ACT_ERRNO"),
    ("negative errno", profile([rule("read", errnoRet=-1)]), "linux.seccomp.syscalls[0].errnoRet: must be at least 0"),
    ("bad op", profile([rule("read", args=[arg(0, "SCMP_CMP_ABOUT", 1)])]), "linux.seccomp.syscalls[0].args[0].op: must be one of"),
    ("no op", profile([rule("read", args=[{"index": 0, "value": 1}])]), "linux.seccomp.syscalls[0].args[0].op: is required"),
    ("index 6", profile([rule("read", args=[arg(6, "SCMP_CMP_EQ", 1)])]), "linux.seccomp.syscalls[0].args[0].index: must be at most 5"),
    ("no value", profile([rule("read", args=[{"index": 0, "op": "SCMP_CMP_EQ"}])]), "linux.seccomp.syscalls[0].args[0].value: is required"),
    ("value too big", profile([rule("read", args=[arg(0, "SCMP_CMP_EQ", 1 << 64)])]), "linux.seccomp.syscalls[0].args[0].value: must be at most"),
    ("negative value two", profile([rule("read", args=[arg(0, "SCMP_CMP_MASKED_EQ", 1, -1)])]),
     "linux.seccomp.syscalls[0].args[0].valueTwo: must be at least 0"),
    ("bool value", profile([rule("read", args=[arg(0, "SCMP_CMP_EQ", True)])]), "linux.seccomp.syscalls[0].args[0].value: must be an integer"),
    ("notify without listener", profile([rule("mknod", "SCMP_ACT_NOTIFY")]), "linux.seccomp.listenerPath: is required"),
    ("notify on sendmsg", profile([rule(["mknod", "sendmsg"], "SCMP_ACT_NOTIFY")], listenerPath="/a"),
     "linux.seccomp.syscalls[0].names[1]: SCMP_ACT_NOTIFY cannot apply to sendmsg"),
]


@pytest.mark.parametrize("bad, message", [case[1:] for case in BAD_PROFILES], ids=[case[0] for case in BAD_PROFILES])
def test_bad_profiles_name_the_field(bad, message):
    with pytest.raises(OCIError) as caught:
        seccomp.validate(bad)
    assert message in str(caught.value)
    with pytest.raises(OCIError):
        seccomp.compile(bad, "x86_64")


def test_good_profiles_validate():
    seccomp.validate(None)
    seccomp.validate(profile())
    seccomp.validate({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 1, "architectures": sorted(seccomp.ARCHITECTURES),
                      "flags": sorted(seccomp.FLAGS), "listenerPath": "/run/a.sock", "listenerMetadata": "m",
                      "syscalls": [rule("mknod", "SCMP_ACT_NOTIFY"), rule("read", "SCMP_ACT_ALLOW"),
                                   rule("kill", "SCMP_ACT_TRACE", errnoRet=65535,
                                        args=[arg(5, op, U64, U64) for op in seccomp.OPERATORS])]})


# --------------------------------------------------------------------------
# flags and features


def test_flags():
    assert seccomp.filter_flags(profile()) == 0
    assert seccomp.filter_flags(profile(flags=["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW"])) == 2 | 4
    # WAIT_KILLABLE_RECV qualifies notifications: dropped without them (the kernel refuses it alone).
    assert seccomp.filter_flags(profile(flags=["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"])) == 0
    notify = profile([rule("mknod", "SCMP_ACT_NOTIFY")], listenerPath="/a",
                     flags=["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"])
    assert seccomp.filter_flags(notify) == 1 | 8 | 16 | 32  # NEW_LISTENER, and TSYNC_ESRCH for TSYNC with it


def test_features_document():
    document = seccomp.features()
    assert document["enabled"] is True
    assert "SCMP_ACT_NOTIFY" in document["actions"] and "SCMP_CMP_MASKED_EQ" in document["operators"]
    assert "SCMP_ARCH_X86_64" in document["archs"] and "SCMP_ARCH_AARCH64" in document["archs"]
    assert document["knownFlags"] == sorted(seccomp.FLAGS)
    assert set(document["supportedFlags"]) <= set(document["knownFlags"])
    if os.uname().machine == "x86_64":
        assert "SECCOMP_FILTER_FLAG_LOG" in document["supportedFlags"]


# --------------------------------------------------------------------------
# the tables


def test_tables_know_the_numbers_the_runtime_uses():
    for machine, table in (("x86_64", "x86_64"), ("aarch64", "aarch64"), ("i686", "x86"), ("armv7l", "arm")):
        assert TABLES[table]["seccomp"] == syscalls.SYS_SECCOMP[machine]
    assert TABLES["x86_64"]["openat2"] == syscalls.SYS_OPENAT2 == TABLES["aarch64"]["openat2"]
    assert TABLES["x86_64"]["mkdir"] == 83 and TABLES["aarch64"]["mkdirat"] == 34 and TABLES["x86"]["socketcall"] == 102
    assert TABLES["arm"]["cacheflush"] == 0x0F0002  # ARM private syscalls are named too
    assert all(number >= seccomp.X32_SYSCALL_BIT for number in TABLES["x32"].values())
    assert not OTHER_ARCH_NAMES & set().union(*TABLES.values())


def test_syscalls_newer_than_the_headers_are_known():
    for name in ("cachestat", "fchmodat2", "futex_wait", "mseal", "listmount", "file_setattr"):
        for table in TABLES.values():
            assert name in table, name
    assert TABLES["x32"]["fchmodat2"] == seccomp.X32_SYSCALL_BIT + 452


@pytest.mark.skipif(not all(os.path.exists(path) for path in
                            ["/usr/include/x86_64-linux-gnu/asm/unistd_64.h", gen_syscall_table.ARM_INCLUDE[0]]
                            + [directory for directory, _package in gen_syscall_table.NAME_ONLY_DIRS]),
                    reason="the kernel headers tools/gen_syscall_table.py reads are not installed")
def test_generated_table_is_committed_unchanged(tmp_path):
    target = str(tmp_path / "_syscall_table.py")
    gen_syscall_table.generate(target)
    with open(target) as handle:
        generated = handle.read()
    committed = os.path.join(os.path.dirname(syscalls.__file__), "_syscall_table.py")  # beside it in linux/
    with open(committed) as handle:
        assert generated == handle.read(), "run tools/gen_syscall_table.py"


def test_the_preprocessor_follows_conditionals(tmp_path):
    header = tmp_path / "h.h"
    header.write_text("#define A 1\n#if defined(A) && !defined(B)\n#define __NR_one (A + 1)\n#elif 1\n#define __NR_two 2\n"
                      "#else\n#define __NR_three 3\n#endif\n#ifdef B\n#define __NR_four 4\n#else\n# define __NR_five 0x5UL\n"
                      "#endif\n#define __NR_fn(x) x\n#define __NR_Linux 4000\n")
    assert gen_syscall_table.syscall_numbers("h.h", [str(tmp_path)], {}) == {"one": 2, "five": 5}


# --------------------------------------------------------------------------
# the kernel accepts what we build (forked children; no_new_privs, so no privilege needed)


def in_child(body):
    """Run BODY() in a forked child; return its exit status (BODY's return value, or 100+ on an exception)."""
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        code = 100
        try:
            code = body()
        except BaseException as exc:  # the child must never return into pytest
            os.write(2, ("child: %r\n" % (exc,)).encode())
        os._exit(code)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def errno_of(call):
    try:
        call()
    except OSError as exc:
        return exc.errno
    return 0


@pytest.mark.skipif(os.uname().machine not in ("x86_64", "aarch64"), reason="syscall tables for x86_64 and aarch64")
def test_the_kernel_runs_our_filters(tmp_path):
    target = str(tmp_path / "made")
    rules = [rule(["mkdir", "mkdirat"], errnoRet=errno.ENOSYS),
             rule("ftruncate", errnoRet=errno.EFBIG, args=[arg(1, "SCMP_CMP_GT", 0xFFFFFFFF)])]
    handle = open(str(tmp_path / "file"), "w")

    def body():
        syscalls.prctl(syscalls.PR_SET_NO_NEW_PRIVS, 1)
        seccomp.load(profile(rules, architectures=["SCMP_ARCH_X86", "SCMP_ARCH_X32"],
                             flags=["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_TSYNC"]))
        if errno_of(lambda: os.mkdir(target)) != errno.ENOSYS:
            return 1
        if errno_of(lambda: os.ftruncate(handle.fileno(), 1 << 32)) != errno.EFBIG:
            return 2
        if errno_of(lambda: os.ftruncate(handle.fileno(), 0xFFFFFFFF)) != 0:
            return 3
        return 0
    try:
        assert in_child(body) == 0
    finally:
        handle.close()
    assert not os.path.exists(target)


@pytest.mark.skipif(os.uname().machine not in ("x86_64", "aarch64"), reason="syscall tables for x86_64 and aarch64")
def test_the_kernel_takes_the_biggest_allow_list(tmp_path):
    names = sorted(set(TABLES[seccomp.native_arch()]) - set(["mkdir", "mkdirat"]))
    allowed = profile([rule(names, "SCMP_ACT_ALLOW")], default="SCMP_ACT_ERRNO", defaultErrnoRet=errno.EROFS,
                      architectures=["SCMP_ARCH_X86", "SCMP_ARCH_X32", "SCMP_ARCH_ARM"])

    def body():
        syscalls.prctl(syscalls.PR_SET_NO_NEW_PRIVS, 1)
        seccomp.load(allowed)
        return 0 if errno_of(lambda: os.mkdir(str(tmp_path / "x"))) == errno.EROFS else 1
    assert in_child(body) == 0


def test_kill_process_kills_with_sigsys():
    def body():
        syscalls.prctl(syscalls.PR_SET_NO_NEW_PRIVS, 1)
        seccomp.load(profile([rule("getppid", "SCMP_ACT_KILL_PROCESS")]))
        os.getppid()
        return 0
    assert in_child(body) == -31  # SIGSYS


def test_notify_needs_the_container_state():
    with pytest.raises(OCIError) as caught:
        seccomp.prepare(profile([rule("mknod", "SCMP_ACT_NOTIFY")], listenerPath="/nonexistent/agent.sock"))
    assert "linux.seccomp.listenerPath" in str(caught.value)


def seccomp_status():
    with open("/proc/self/status") as handle:
        return [line for line in handle if line.startswith("Seccomp")]


def test_an_unreachable_listener_is_an_error_before_anything_is_installed():
    before = seccomp_status()
    with pytest.raises(OCIError) as caught:
        seccomp.prepare(profile([rule("mknod", "SCMP_ACT_NOTIFY")], listenerPath="/nonexistent/agent.sock"),
                        {"ociVersion": "1.0.2", "id": "x", "status": "creating", "pid": 1, "bundle": "/b"})
    assert "linux.seccomp.listenerPath /nonexistent/agent.sock: cannot connect" in str(caught.value)
    assert seccomp_status() == before


def test_ffi_gives_the_kernel_filter_layouts():
    ffi = syscalls.ffi
    assert ffi.sizeof("struct ocirt_sock_filter") == 8  # struct sock_filter
    assert ffi.offsetof("struct ocirt_sock_filter", "k") == 4
    assert ffi.offsetof("struct ocirt_sock_fprog", "filter") == ffi.sizeof("void *")  # struct sock_fprog, padded
