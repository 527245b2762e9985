# -*- coding: utf-8 -*-
# Copyright: daemonless.oci contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""linux.seccomp: check a profile, compile it to classic BPF, install it.

We build the BPF program ourselves rather than load libseccomp through cffi:
the runtime then needs nothing on a managed host beyond cffi (no libseccomp2
package to install, no API levels of the library to probe), and the program
is plain data, so the unit tests run it through a small interpreter and check
decisions for (architecture, syscall, arguments) without root. The price is a
syscall table per architecture, generated from the kernel's uapi headers by
tools/gen_syscall_table.py into _syscall_table.py.

The program, in order:

    load arch; one jeq per filtered architecture to its section; else BAD_ARCH
    section: load nr
             [x86_64: nr >= 0x40000000 is x32 (its section, or BAD_ARCH when
              SCMP_ARCH_X32 is not listed), except -1, a tracer's skipped call]
             a binary search over the numbers the rules name, each leading
             to its rules; a number no rule names gets defaultAction
             each syscall's rules, in profile order: the first rule whose
             argument tests all hold (AND) decides; when none holds,
             defaultAction

Semantics, and where they differ from runc (libseccomp):
- Filtered architectures: the host's own always (as libseccomp's native
  arch), plus those listed in `architectures` that its kernel can run
  (x86 and x32 on x86_64, arm on aarch64). Listed architectures a process
  here can never use are accepted and cost nothing. A syscall made with an
  architecture that is not filtered kills the process (BAD_ARCH below).
- Several rules for one syscall: the first matching one in profile order
  wins; put narrower rules (with args) before broader ones. Rules whose
  action equals defaultAction (with the same errno) are dropped, as runc and
  libseccomp drop them, so they cannot shadow a later rule.
- A rule's args are ANDed, even when an index repeats (runc, for
  libseccomp's sake, splits such a rule into one rule per arg, which ORs
  them); `GE a` and `LE b` on one index therefore express a range.
- 64-bit arguments are compared as two 32-bit words (high, then low) on
  x86_64, x32 and aarch64; on x86 and arm, whose arguments are 32 bits,
  only the low words of the argument and of value/valueTwo are compared.
- SCMP_CMP_MASKED_EQ: (arg & value) == valueTwo.
- errnoRet applies to SCMP_ACT_ERRNO (the errno, default EPERM) and
  SCMP_ACT_TRACE (the data the tracer sees, default EPERM); defaultErrnoRet
  to defaultAction only. Given with any other action it is an error, as the
  spec requires ("the runtime MUST print and error and fail").
- SCMP_ACT_KILL is SCMP_ACT_KILL_THREAD, as in libseccomp.
- Unknown syscall names are errors: runc ignores names libseccomp cannot
  resolve, so that one profile serves many kernels, but a misspelt name
  then silently leaves its syscall unfiltered. We know the names of every
  architecture's table (_syscall_table: numbers for x86_64, x86, x32,
  aarch64 and arm, names for nine more architectures, and the syscalls
  added since Linux 6.1): a name that exists anywhere is accepted, and
  skipped where it does not exist; only a name that no Linux architecture
  has is refused, naming linux.seccomp.syscalls[N].names[M].
- SCMP_ACT_NOTIFY needs listenerPath (absolute: it is connected from the
  container's first process, whose working directory is no contract); it
  may not be defaultAction nor apply to sendmsg/socketcall: the runtime
  itself calls sendmsg, under the new filter, to hand the notification fd
  to the listener, and would wait forever on a listener that has no fd yet.
  The message is the spec's container process state, its `state` the one
  create recorded (status "creating", even when noNewPrivileges defers the
  filter, and so the message, to `start`).

When: prepare() runs in the container's first process before the root
switch (the profile is checked, compiled and the kernel asked about its
actions and flags while create can still fail cleanly; the listener socket,
a host path, is connected while reachable). load() then installs the filter:
with process.noNewPrivileges as late as a failure can still reach `start`
(after it opened the exec fifo and the startContainer hooks ran; only the
answer on the fifo, the signal resets and execve follow); without it, before the capabilities are dropped, since
installing a filter then needs CAP_SYS_ADMIN; the runtime's remaining steps
(setgroups, setresuid, capset, the exec fifo, execve) then run under the
filter and must be allowed by it (the order is finalize.py's). The cwd
check walks '..' rather than calling getcwd, a call profiles deny.
"""
import os
import socket
import struct

from ansible_collections.daemonless.oci.plugins.module_utils._runtime import jsonio
from ansible_collections.daemonless.oci.plugins.module_utils._runtime import spec
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.linux import syscalls
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.linux._syscall_table import OTHER_ARCH_NAMES, TABLES
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.errors import OCIError

FIELD = "linux.seccomp"
UINT64_MAX = (1 << 64) - 1
EPERM = 1

# Filter return values (uapi linux/seccomp.h); ERRNO and TRACE carry 16 bits of data.
ACTIONS = {
    "SCMP_ACT_KILL": 0x00000000,
    "SCMP_ACT_KILL_THREAD": 0x00000000,
    "SCMP_ACT_KILL_PROCESS": 0x80000000,
    "SCMP_ACT_TRAP": 0x00030000,
    "SCMP_ACT_ERRNO": 0x00050000,
    "SCMP_ACT_NOTIFY": 0x7fc00000,
    "SCMP_ACT_TRACE": 0x7ff00000,
    "SCMP_ACT_LOG": 0x7ffc0000,
    "SCMP_ACT_ALLOW": 0x7fff0000,
}
ACTIONS_WITH_DATA = ("SCMP_ACT_ERRNO", "SCMP_ACT_TRACE")
RET_DATA = 0xFFFF
NOTIFY = "SCMP_ACT_NOTIFY"
# A syscall of an architecture the filter does not cover.
BAD_ARCH = ACTIONS["SCMP_ACT_KILL_PROCESS"]
# What the runtime calls between installing a notifying filter and handing its fd over.
RUNTIME_SENDS = ("sendmsg", "socketcall")

OPERATORS = ("SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT",
             "SCMP_CMP_MASKED_EQ")

FLAGS = {
    "SECCOMP_FILTER_FLAG_TSYNC": 1 << 0,
    "SECCOMP_FILTER_FLAG_LOG": 1 << 1,
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW": 1 << 2,
    "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV": 1 << 5,
}
FLAG_TSYNC = FLAGS["SECCOMP_FILTER_FLAG_TSYNC"]
FLAG_WAIT_KILLABLE_RECV = FLAGS["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"]
FLAG_NEW_LISTENER = 1 << 3
FLAG_TSYNC_ESRCH = 1 << 4  # the kernel refuses TSYNC with NEW_LISTENER without it

AUDIT_ARCH_X86_64 = 0xC000003E
AUDIT_ARCH_I386 = 0x40000003
AUDIT_ARCH_AARCH64 = 0xC00000B7
AUDIT_ARCH_ARM = 0x40000028
X32_SYSCALL_BIT = 0x40000000

# Table name -> (AUDIT_ARCH_*, bits of an argument). x32 shares x86_64's
# AUDIT_ARCH and passes 64-bit registers; its numbers carry X32_SYSCALL_BIT.
ARCH_INFO = {
    "x86_64": (AUDIT_ARCH_X86_64, 64),
    "x32": (AUDIT_ARCH_X86_64, 64),
    "x86": (AUDIT_ARCH_I386, 32),
    "aarch64": (AUDIT_ARCH_AARCH64, 64),
    "arm": (AUDIT_ARCH_ARM, 32),
}

# Every architecture the spec names -> our table, or None: recognized, but no
# process on a host this runtime filters can make its syscalls.
ARCHITECTURES = {
    "SCMP_ARCH_X86": "x86", "SCMP_ARCH_X86_64": "x86_64", "SCMP_ARCH_X32": "x32",
    "SCMP_ARCH_ARM": "arm", "SCMP_ARCH_AARCH64": "aarch64",
    "SCMP_ARCH_MIPS": None, "SCMP_ARCH_MIPS64": None, "SCMP_ARCH_MIPS64N32": None, "SCMP_ARCH_MIPSEL": None,
    "SCMP_ARCH_MIPSEL64": None, "SCMP_ARCH_MIPSEL64N32": None, "SCMP_ARCH_PPC": None, "SCMP_ARCH_PPC64": None,
    "SCMP_ARCH_PPC64LE": None, "SCMP_ARCH_S390": None, "SCMP_ARCH_S390X": None, "SCMP_ARCH_PARISC": None,
    "SCMP_ARCH_PARISC64": None, "SCMP_ARCH_RISCV64": None, "SCMP_ARCH_LOONGARCH64": None, "SCMP_ARCH_M68K": None,
    "SCMP_ARCH_SH": None, "SCMP_ARCH_SHEB": None,
}

# os.uname().machine -> the host's own table; and what else its kernel runs.
NATIVE = {"x86_64": "x86_64", "aarch64": "aarch64", "i686": "x86", "i386": "x86", "armv7l": "arm"}
COMPAT = {"x86_64": ("x86", "x32"), "aarch64": ("arm",)}

# struct seccomp_data: int nr; __u32 arch; __u64 instruction_pointer; __u64 args[6];
# (little-endian on every architecture above: the low word of args[i] first).
OFFSET_NR = 0
OFFSET_ARCH = 4
OFFSET_ARGS = 16
MAX_INSTRUCTIONS = 4096  # BPF_MAXINSNS

# Classic BPF opcodes (uapi linux/filter.h).
BPF_LD_W_ABS = 0x20
BPF_ALU_AND_K = 0x54
BPF_JA = 0x05
BPF_JEQ_K = 0x15
BPF_JGT_K = 0x25
BPF_JGE_K = 0x35
BPF_RET_K = 0x06


def _known_names():
    names = set(OTHER_ARCH_NAMES)
    for table in TABLES.values():
        names.update(table)
    return names


KNOWN_NAMES = frozenset(_known_names())


def native_arch():
    """The host's syscall table name; OCIError where this runtime has none."""
    machine = os.uname().machine
    if machine not in NATIVE:
        raise OCIError("%s: this runtime cannot build seccomp filters on %s (it knows %s)"
                       % (FIELD, machine, ", ".join(sorted(NATIVE))))
    return NATIVE[machine]


# --------------------------------------------------------------------------
# validation


def validate(seccomp):
    """Raise OCIError naming the first field of linux.seccomp (SECCOMP) that cannot be applied."""
    if seccomp is None:
        return
    check = spec.Checker()
    seccomp = check.obj(seccomp, FIELD)
    default = seccomp.get("defaultAction")
    check.string(default, FIELD + ".defaultAction", required=True)
    check.choice(default, FIELD + ".defaultAction", sorted(ACTIONS))
    if default == NOTIFY:
        check.fail(FIELD + ".defaultAction", "SCMP_ACT_NOTIFY cannot be the default action (every syscall, "
                   "the runtime's own included, would wait for the listener)")
    _check_errno(check, seccomp.get("defaultErrnoRet"), FIELD + ".defaultErrnoRet", default, "defaultAction")
    for index, arch in enumerate(check.strings(seccomp.get("architectures"), FIELD + ".architectures")):
        check.choice(arch, "%s.architectures[%d]" % (FIELD, index), sorted(ARCHITECTURES))
    for index, flag in enumerate(check.strings(seccomp.get("flags"), FIELD + ".flags")):
        check.choice(flag, "%s.flags[%d]" % (FIELD, index), sorted(FLAGS))
    check.string(seccomp.get("listenerPath"), FIELD + ".listenerPath", absolute=True)
    if seccomp.get("listenerPath") == "":
        check.fail(FIELD + ".listenerPath", "must not be empty")
    check.string(seccomp.get("listenerMetadata"), FIELD + ".listenerMetadata")
    if seccomp.get("listenerMetadata") and not seccomp.get("listenerPath"):
        check.fail(FIELD + ".listenerMetadata", "must not be set without listenerPath")
    notify = None
    for index, rule in enumerate(check.objects(seccomp.get("syscalls"), FIELD + ".syscalls")):
        field = "%s.syscalls[%d]" % (FIELD, index)
        names = check.strings(rule.get("names"), field + ".names", non_empty=True)
        for position, name in enumerate(names):
            if name not in KNOWN_NAMES:
                check.fail("%s.names[%d]" % (field, position), "unknown syscall %r%s" % (name, _suggestion(name)))
        action = rule.get("action")
        check.string(action, field + ".action", required=True)
        check.choice(action, field + ".action", sorted(ACTIONS))
        _check_errno(check, rule.get("errnoRet"), field + ".errnoRet", action, "action")
        for position, arg in enumerate(check.objects(rule.get("args"), field + ".args")):
            where = "%s.args[%d]" % (field, position)
            check.integer(arg.get("index"), where + ".index", required=True, minimum=0, maximum=5)
            check.integer(arg.get("value"), where + ".value", required=True, minimum=0, maximum=UINT64_MAX)
            check.integer(arg.get("valueTwo"), where + ".valueTwo", minimum=0, maximum=UINT64_MAX)
            check.string(arg.get("op"), where + ".op", required=True)
            check.choice(arg.get("op"), where + ".op", OPERATORS)
        if action == NOTIFY:
            notify = notify or field
            for position, name in enumerate(names):
                if name in RUNTIME_SENDS:
                    check.fail("%s.names[%d]" % (field, position),
                               "SCMP_ACT_NOTIFY cannot apply to %s: the runtime sends the listener its fd with it" % name)
    if notify and not seccomp.get("listenerPath"):
        check.fail(FIELD + ".listenerPath", "is required: %s.action is SCMP_ACT_NOTIFY" % notify)


def _check_errno(check, value, field, action, action_field):
    check.integer(value, field, minimum=0, maximum=RET_DATA)
    if value is not None and action not in ACTIONS_WITH_DATA:
        check.fail(field, "only SCMP_ACT_ERRNO and SCMP_ACT_TRACE take an errno (%s is %s)" % (action_field, action))


def _suggestion(name):
    import difflib
    close = difflib.get_close_matches(name, KNOWN_NAMES, n=1)
    return " (did you mean %r?)" % close[0] if close else ""


def uses_notify(seccomp):
    return any(rule.get("action") == NOTIFY for rule in seccomp.get("syscalls") or [])


# --------------------------------------------------------------------------
# compilation


class _Assembler:
    """Builds a classic BPF program backwards, so every jump target exists when the jump is made.

    Labels are positions counted from the end of the program; BPF jumps only
    forward, which is exactly "to something already emitted". A conditional
    jump reaches 255 instructions at most: farther targets get a BPF_JA
    (32-bit offset) right after the conditional.
    """

    def __init__(self):
        self.backwards = []

    def here(self):
        """The label of the last emitted instruction: the one that follows whatever is emitted next."""
        return len(self.backwards) - 1

    def _emit(self, code, jt, jf, k):
        self.backwards.append((code, jt, jf, k))
        return self.here()

    def ret(self, value):
        return self._emit(BPF_RET_K, 0, 0, value)

    def load(self, offset):
        return self._emit(BPF_LD_W_ABS, 0, 0, offset)

    def and_k(self, mask):
        return self._emit(BPF_ALU_AND_K, 0, 0, mask)

    def goto(self, label):
        return self._emit(BPF_JA, 0, 0, len(self.backwards) - label - 1)

    def jump(self, code, k, on_true, on_false):
        while True:
            position = len(self.backwards)
            if position - on_false - 1 > 255:
                on_false = self.goto(on_false)
            elif position - on_true - 1 > 255:
                on_true = self.goto(on_true)
            else:
                return self._emit(code, position - on_true - 1, position - on_false - 1, k)

    def program(self):
        return list(reversed(self.backwards))


def _action_value(action, errno_ret):
    value = ACTIONS[action]
    if action in ACTIONS_WITH_DATA:
        value |= EPERM if errno_ret is None else errno_ret
    return value


def _arg_test(arg, bits):
    """The tests of one condition in program order: ("ld", offset), ("and", mask), or
    ("jmp", code, k, on_true, on_false) with targets "next", "pass" or "fail"."""
    op = arg["op"]
    value = arg["value"]
    low_at = OFFSET_ARGS + 8 * arg["index"]
    halves = [(low_at, value & 0xFFFFFFFF)]
    if bits == 64:
        halves.insert(0, (low_at + 4, value >> 32))
    if op == "SCMP_CMP_MASKED_EQ":
        want = arg.get("valueTwo") or 0
        wanted = {low_at: want & 0xFFFFFFFF, low_at + 4: want >> 32}
        tests = []
        for offset, mask in halves:
            last = offset == low_at
            tests += [("ld", offset), ("and", mask),
                      ("jmp", BPF_JEQ_K, wanted[offset], "pass" if last else "next", "fail")]
        return tests
    # For each op: the jumps on the high word, then the one on the low word.
    high_jumps, low_jump = {
        "SCMP_CMP_EQ": ([(BPF_JEQ_K, "next", "fail")], (BPF_JEQ_K, "pass", "fail")),
        "SCMP_CMP_NE": ([(BPF_JEQ_K, "next", "pass")], (BPF_JEQ_K, "fail", "pass")),
        "SCMP_CMP_GT": ([(BPF_JGT_K, "pass", "next"), (BPF_JEQ_K, "next", "fail")], (BPF_JGT_K, "pass", "fail")),
        "SCMP_CMP_GE": ([(BPF_JGT_K, "pass", "next"), (BPF_JEQ_K, "next", "fail")], (BPF_JGE_K, "pass", "fail")),
        "SCMP_CMP_LT": ([(BPF_JGT_K, "fail", "next"), (BPF_JEQ_K, "next", "pass")], (BPF_JGE_K, "fail", "pass")),
        "SCMP_CMP_LE": ([(BPF_JGT_K, "fail", "next"), (BPF_JEQ_K, "next", "pass")], (BPF_JGT_K, "fail", "pass")),
    }[op]
    tests = []
    if bits == 64:
        offset, high = halves[0]
        tests.append(("ld", offset))
        tests += [("jmp", code, high, on_true, on_false) for code, on_true, on_false in high_jumps]
    tests += [("ld", low_at), ("jmp", low_jump[0], value & 0xFFFFFFFF, low_jump[1], low_jump[2])]
    return tests


def _emit_tests(asm, tests, fail):
    """Emit TESTS (program order) so that they fall through when they hold and jump to FAIL when not."""
    passed = asm.here()
    for test in reversed(tests):
        if test[0] == "ld":
            asm.load(test[1])
        elif test[0] == "and":
            asm.and_k(test[1])
        else:
            targets = {"next": asm.here(), "pass": passed, "fail": fail}
            asm.jump(test[1], test[2], targets[test[3]], targets[test[4]])


def _emit_rules(asm, rules, bits, fail):
    """Emit one syscall's rules, first match wins; return the label of the first test."""
    reachable = []
    for rule in rules:
        reachable.append(rule)
        if not rule[1]:
            break  # an unconditional rule: the ones after it never decide
    start = fail
    for action, args in reversed(reachable):
        asm.ret(action)
        for arg in reversed(args):
            _emit_tests(asm, _arg_test(arg, bits), start)
        start = asm.here()
    return start


def _emit_search(asm, numbers, bodies, nomatch):
    """A binary search over NUMBERS (sorted), A holding the syscall number."""
    if len(numbers) <= 4:
        label = nomatch
        for number in reversed(numbers):
            label = asm.jump(BPF_JEQ_K, number, bodies[number], label)
        return label
    middle = len(numbers) // 2
    upper = _emit_search(asm, numbers[middle:], bodies, nomatch)
    lower = _emit_search(asm, numbers[:middle], bodies, nomatch)
    return asm.jump(BPF_JGE_K, numbers[middle], upper, lower)


def _emit_section(asm, arch, rules, default, x32_start, bad_arch):
    """One architecture's part; RULES are [(names, action value, args)] in profile order."""
    bits = ARCH_INFO[arch][1]
    table = TABLES[arch]
    chains = {}  # syscall number -> the indexes of the rules naming it
    for index, (names, action, args) in enumerate(rules):
        for number in set(table[name] for name in names if name in table):
            chains.setdefault(number, []).append(index)
    fail = asm.ret(default)
    # Syscalls with the same rules share their code: an allow list of 400
    # names is one BPF_RET, not 400.
    shared = {}
    for chain in sorted(set(tuple(chain) for chain in chains.values()), reverse=True):
        shared[chain] = _emit_rules(asm, [rules[index][1:] for index in chain], bits, fail)
    bodies = dict((number, shared[tuple(chain)]) for number, chain in chains.items())
    nomatch = asm.ret(default)
    start = _emit_search(asm, sorted(bodies), bodies, nomatch)
    if arch == "x86_64":
        other = asm.jump(BPF_JEQ_K, 0xFFFFFFFF, nomatch, bad_arch if x32_start is None else x32_start)
        asm.jump(BPF_JGE_K, X32_SYSCALL_BIT, other, start)
    return asm.load(OFFSET_NR)


def sections(seccomp, native):
    """The tables the filter covers, the host's own first."""
    listed = set(ARCHITECTURES[name] for name in seccomp.get("architectures") or [])
    return [native] + [arch for arch in COMPAT.get(native, ()) if arch in listed]


def compile(seccomp, native=None):
    """linux.seccomp (validated here) as a classic BPF program [(code, jt, jf, k)] for NATIVE's kernel.

    NATIVE, a table name ("x86_64", "aarch64", ...), defaults to this host's.
    """
    validate(seccomp)
    if native is None:
        native = native_arch()
    if native not in ARCH_INFO:
        raise OCIError("%s: no syscall table for %r" % (FIELD, native))
    default = _action_value(seccomp["defaultAction"], seccomp.get("defaultErrnoRet"))
    rules = []
    for rule in seccomp.get("syscalls") or []:
        action = _action_value(rule["action"], rule.get("errnoRet"))
        if action != default:
            rules.append((rule["names"], action, rule.get("args") or []))
    covered = sections(seccomp, native)
    asm = _Assembler()
    bad_arch = asm.ret(BAD_ARCH)
    starts = {}
    # Emitted backwards: x32's section must follow x86_64's, which jumps to it.
    for arch in reversed(covered):
        starts[arch] = _emit_section(asm, arch, rules, default, starts.get("x32"), bad_arch)
    label = bad_arch
    for arch in reversed([arch for arch in covered if arch != "x32"]):
        label = asm.jump(BPF_JEQ_K, ARCH_INFO[arch][0], starts[arch], label)
    asm.load(OFFSET_ARCH)
    program = asm.program()
    if len(program) > MAX_INSTRUCTIONS:
        raise OCIError("%s: the filter needs %d BPF instructions; the kernel takes at most %d"
                       % (FIELD, len(program), MAX_INSTRUCTIONS))
    return program


# --------------------------------------------------------------------------
# installation


class Filter:
    """A compiled filter, ready to install; with a notify listener, connected to it."""

    def __init__(self, program, flags, listener=None, message=None):
        self.program = program
        self.flags = flags
        self.listener = listener
        self.message = message

    def load(self):
        """Install the filter in this process; hand a notify fd to the listener. Once only."""
        try:
            try:
                fd = syscalls.seccomp_set_mode_filter(self.program, self.flags)
            except OSError as exc:
                raise OCIError("%s: cannot install the filter (%d instructions, flags 0x%x): %s"
                               % (FIELD, len(self.program), self.flags, exc.strerror))
            if self.listener is not None:
                try:
                    self._send(fd)
                finally:
                    os.close(fd)
        finally:
            self.close()

    def _send(self, fd):
        path = self.listener.getpeername()
        try:
            # The fd travels with the first bytes; the spec allows the rest in more sendmsg calls.
            sent = self.listener.sendmsg([self.message], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("i", fd))])
            if sent < len(self.message):
                self.listener.sendall(self.message[sent:])
        except OSError as exc:
            raise OCIError("%s.listenerPath %s: cannot send the seccomp fd: %s" % (FIELD, path, exc.strerror or exc))

    def close(self):
        if self.listener is not None:
            self.listener.close()
            self.listener = None


def filter_flags(seccomp):
    """The seccomp(2) flags for SECCOMP: those listed, plus what notification needs."""
    flags = 0
    for name in seccomp.get("flags") or []:
        flags |= FLAGS[name]
    if uses_notify(seccomp):
        flags |= FLAG_NEW_LISTENER
        if flags & FLAG_TSYNC:
            flags |= FLAG_TSYNC_ESRCH
    else:
        flags &= ~FLAG_WAIT_KILLABLE_RECV  # it qualifies notifications only; the kernel refuses it alone
    return flags


def _check_kernel(seccomp, flags):
    """Refuse, naming the field, what this kernel's seccomp lacks: better at create than at start."""
    try:
        if syscalls.seccomp_action_available(ACTIONS["SCMP_ACT_ALLOW"]):  # else: no SECCOMP_GET_ACTION_AVAIL (< 4.14)
            used = {}  # action -> the first field naming it
            for index, rule in reversed(list(enumerate(seccomp.get("syscalls") or []))):
                used[rule["action"]] = "%s.syscalls[%d].action" % (FIELD, index)
            used[seccomp["defaultAction"]] = FIELD + ".defaultAction"
            for action, field in sorted(used.items()):
                if not syscalls.seccomp_action_available(ACTIONS[action]):
                    raise OCIError("%s: %s is not supported by this kernel" % (field, action))
        for index, name in enumerate(seccomp.get("flags") or []):
            probe = FLAGS[name] | (FLAG_NEW_LISTENER if FLAGS[name] == FLAG_WAIT_KILLABLE_RECV else 0)
            if not syscalls.seccomp_flags_supported(probe):
                raise OCIError("%s.flags[%d]: %s is not supported by this kernel" % (FIELD, index, name))
        if flags and not syscalls.seccomp_flags_supported(flags):
            raise OCIError("%s: this kernel cannot combine the filter flags 0x%x%s"
                           % (FIELD, flags, " (SCMP_ACT_NOTIFY needs a listener)" if flags & FLAG_NEW_LISTENER else ""))
    except OSError as exc:
        raise OCIError("%s: this kernel has no seccomp filters: %s" % (FIELD, exc.strerror or exc))


def _message(seccomp, state):
    """The container process state the spec sends with the notify fd ("seccomp state")."""
    if isinstance(state, (bytes, str)):
        state = jsonio.loads(state)
    message = {"ociVersion": spec.OCI_VERSION, "fds": ["seccompFd"], "pid": state.get("pid"), "state": state}
    if seccomp.get("listenerMetadata"):
        message["metadata"] = seccomp["listenerMetadata"]
    return jsonio.dumps(message).encode("utf-8")


def prepare(seccomp, state=None, native=None):
    """Check and compile linux.seccomp, ask the kernel about it, connect its listener: a Filter to load().

    STATE (the container's state, a dict or its JSON) goes to the listener
    with the notify fd; it is required when a rule uses SCMP_ACT_NOTIFY.
    """
    program = compile(seccomp, native)
    flags = filter_flags(seccomp)
    _check_kernel(seccomp, flags)
    if not flags & FLAG_NEW_LISTENER:
        return Filter(program, flags)
    path = seccomp["listenerPath"]
    if state is None:
        raise OCIError("%s.listenerPath: SCMP_ACT_NOTIFY needs the container's state to send to %s"
                       % (FIELD, path))
    message = _message(seccomp, state)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.connect(path)
    except OSError as exc:
        listener.close()
        raise OCIError("%s.listenerPath %s: cannot connect: %s" % (FIELD, path, exc.strerror or exc))
    return Filter(program, flags, listener, message)


def load(seccomp, state_json=None):
    """Check, compile and install linux.seccomp in this process (see prepare() for STATE_JSON)."""
    prepare(seccomp, state_json).load()


def features():
    """The `seccomp` object of the runtime-spec features document."""
    supported = []
    for name in sorted(FLAGS):
        probe = FLAGS[name] | (FLAG_NEW_LISTENER if FLAGS[name] == FLAG_WAIT_KILLABLE_RECV else 0)
        try:
            if syscalls.seccomp_flags_supported(probe):
                supported.append(name)
        except (OSError, OCIError):
            break
    return {
        "enabled": True,
        "actions": sorted(ACTIONS),
        "operators": sorted(OPERATORS),
        "archs": sorted(ARCHITECTURES),
        "knownFlags": sorted(FLAGS),
        "supportedFlags": supported,
    }
