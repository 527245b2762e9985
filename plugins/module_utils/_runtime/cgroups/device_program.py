# -*- coding: utf-8 -*-
# Copyright: daemonless.oci contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""linux.resources.devices on cgroup v2: a BPF_PROG_TYPE_CGROUP_DEVICE program.

Applies linux.resources.devices[] (allow, type, major, minor, access), then
the runtime's default rules (plan.DEFAULT_DEVICE_RULES), on hosts without a
v1 devices controller. Cgroup v2 has no devices.allow: for every open and
mknod of a device node by a process of the cgroup (or of one below it), the
kernel runs the eBPF programs attached to it, and the access happens only if
all of them return 1.

Semantics: those of the v1 devices controller the rules were written for, as
runc gives them on v2 too. The rules are applied in order to an emulated v1
cgroup that starts as a new v1 cgroup under an unrestricted parent does,
allowing everything (runc's emulator starts denying; every config that
`runc spec`, `ocirt spec` and the engines write begins with a deny-all, where
the two agree):
- a rule of type `a` (every device) sets the default, allow or deny, and drops
  the exceptions made so far: `runc spec`'s first rule, a deny-all, makes the
  default deny;
- any other rule adds an exception to the default (its access joins that of
  an exception for exactly the same type, major and minor), or, when its
  verdict is the default's, takes its access away from that exception; a
  missing or negative major or minor is a wildcard;
- under a deny default an access is allowed when one exception matches the
  device and covers all the access asked (opening for `rw` needs one rule
  with both); under an allow default it is denied when an exception matches
  the device and any of the access asked.
A later rule therefore overrides an earlier one for the same devices. One
sequence that v1 silently gets wrong is refused, as runc refuses it: a rule
that would take access from part of a wildcard exception (deny c 1:3 after
allow c *:*), which v1 ignores, leaving c 1:3 allowed.

The program loads the request (device type, access, major, minor) into
registers, then runs one block per exception: each jumps to the next block
when the type, the access, the major or the minor does not match, and returns
the exception's verdict when all do. The default verdict ends the program.
All exceptions share one verdict (the default's opposite), so their order is
free. Numbers no Linux device can have (majors above 4095, minors above
2^20-1) can never match: their exceptions are left out.

Loaded with bpf(BPF_PROG_LOAD) under the name PROGRAM_NAME, attached with
BPF_F_ALLOW_MULTI to the container's directory of the unified hierarchy. A
replacement (`update`) is attached before the programs it replaces are
detached: while both are attached the kernel allows only what both allow,
so there is no moment when more is allowed than either set of rules allows.
rmdir of the cgroup releases whatever is attached to it.
"""
import errno
import os
import sys

from ansible_collections.daemonless.oci.plugins.module_utils._runtime.errors import OCIError
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.linux import syscalls

FIELD = "linux.resources.devices"

# bpf(2) commands, program and attach types, flags (uapi linux/bpf.h).
BPF_PROG_LOAD = 5
BPF_PROG_ATTACH = 8
BPF_PROG_DETACH = 9
BPF_PROG_GET_FD_BY_ID = 13
BPF_OBJ_GET_INFO_BY_FD = 15
BPF_PROG_QUERY = 16
BPF_PROG_TYPE_CGROUP_DEVICE = 15
BPF_CGROUP_DEVICE = 6
BPF_F_ALLOW_MULTI = 2
BPF_CGROUP_MAX_PROGS = 64  # per cgroup and attach type

# struct bpf_cgroup_dev_ctx { u32 access_type (access << 16 | type); u32 major; u32 minor; }
ACCESS = {"m": 1, "r": 2, "w": 4}  # BPF_DEVCG_ACC_MKNOD, _READ, _WRITE
ALL_ACCESS = 7
TYPES = {"b": 1, "c": 2}  # BPF_DEVCG_DEV_BLOCK, _CHAR
MAX_MAJOR = (1 << 12) - 1
MAX_MINOR = (1 << 20) - 1

# How update tells the programs it attached from any other on the same cgroup.
PROGRAM_NAME = b"ocirt_devices"
# No GPL-only helper is called, so the license is only a label: the collection's own.
LICENSE = b"GPL-3.0-or-later\0"
LOG_SIZE = 1 << 16

# eBPF opcodes (uapi linux/bpf_common.h, linux/bpf.h): class | operation | source.
LDX_MEM_W = 0x61    # dst = *(u32 *)(src + off)
ALU32_AND_K = 0x54  # dst &= imm
ALU32_RSH_K = 0x74  # dst >>= imm
ALU32_MOV_K = 0xb4  # dst = imm
ALU32_MOV_X = 0xbc  # dst = src
JNE_K = 0x55        # if dst != imm: pc += off
JNE_X = 0x5d        # if dst != src: pc += off
JEQ_K = 0x15        # if dst == imm: pc += off
EXIT = 0x95         # return r0
R0, R1, R2, R3, R4, R5 = range(6)


class ExceptionRule:
    """One exception to the default: access bits for (type, major, minor), None a wildcard number."""

    def __init__(self, kind, major, minor, access, field):
        self.kind = kind
        self.major = major
        self.minor = minor
        self.access = access
        self.field = field

    def text(self):
        return "%s %s:%s %s" % (self.kind, "*" if self.major is None else self.major,
                                "*" if self.minor is None else self.minor, _access_text(self.access))


def _access_text(bits):
    return "".join(letter for letter in "rwm" if bits & ACCESS[letter])


def _access_bits(text):
    bits = 0
    for letter in text:
        bits |= ACCESS[letter]
    return bits


def _number(value):
    return None if value is None or value < 0 else value


def emulate(rules):
    """(default allows, [ExceptionRule]) after RULES, checked rule dicts (allow, type, major, minor,
    access, field), in order, as the v1 devices controller would hold them."""
    default_allow = True
    exceptions = {}  # (type, major, minor) -> ExceptionRule, in the order they were made
    for rule in rules:
        if rule["type"] == "a":
            default_allow = rule["allow"]
            exceptions = {}
            continue
        key = (rule["type"], _number(rule.get("major")), _number(rule.get("minor")))
        bits = _access_bits(rule["access"])
        if rule["allow"] != default_allow:
            if key in exceptions:
                exceptions[key].access |= bits
            else:
                exceptions[key] = ExceptionRule(key[0], key[1], key[2], bits, rule["field"])
            continue
        _refuse_partial_removal(exceptions, key, bits, rule, default_allow)
        if key in exceptions:
            exceptions[key].access &= ~bits
            if not exceptions[key].access:
                del exceptions[key]
    return default_allow, list(exceptions.values())


def _refuse_partial_removal(exceptions, key, bits, rule, default_allow):
    """v1 removes access from an exact match only: from part of a wildcard it silently removes nothing."""
    kind, major, minor = key
    for wider in ((kind, None, minor), (kind, major, None), (kind, None, None)):
        exception = exceptions.get(wider)
        if wider == key or exception is None or not exception.access & bits:
            continue
        raise OCIError(
            "%s: %s %s:%s %s cannot take access from part of the wider rule %s (%s %s), which the v1 "
            "devices controller silently ignores (the devices stay %s); this runtime refuses it, as "
            "runc does: list the devices one by one instead of the wildcard"
            % (rule["field"], "allow" if rule["allow"] else "deny", "*" if major is None else major,
               "*" if minor is None else minor, rule["access"], exception.field,
               "deny" if default_allow else "allow", exception.text(), "denied" if default_allow else "allowed"))


class Program:
    """The compiled program: eBPF instructions (code, dst, src, off, imm) and, for each, the
    field of the rule it checks (None for the prologue and the default)."""

    def __init__(self, default_allow, exceptions):
        self.default_allow = default_allow
        self.exceptions = exceptions
        self.instructions = []
        self.origins = []
        self._emit(None, [
            (LDX_MEM_W, R2, R1, 0, 0), (ALU32_AND_K, R2, 0, 0, 0xFFFF),  # r2 = device type
            (LDX_MEM_W, R3, R1, 0, 0), (ALU32_RSH_K, R3, 0, 0, 16),      # r3 = access asked
            (LDX_MEM_W, R4, R1, 4, 0),                                  # r4 = major
            (LDX_MEM_W, R5, R1, 8, 0),                                  # r5 = minor
        ])
        for exception in exceptions:
            if (exception.major or 0) > MAX_MAJOR or (exception.minor or 0) > MAX_MINOR:
                continue
            self._emit(exception.field, _block(exception, 0 if default_allow else 1))
        self._emit(None, [(ALU32_MOV_K, R0, 0, 0, 1 if default_allow else 0), (EXIT, 0, 0, 0, 0)])

    def _emit(self, origin, instructions):
        self.instructions.extend(instructions)
        self.origins.extend([origin] * len(instructions))

    def encode(self):
        """struct bpf_insn[]: u8 code; u8 dst_reg:4, src_reg:4 (bit order follows the byte order); s16 off; s32 imm."""
        order = sys.byteorder
        out = bytearray()
        for code, dst, src, off, imm in self.instructions:
            out.append(code)
            out.append((dst << 4 | src) if order == "big" else (src << 4 | dst))
            out += off.to_bytes(2, order, signed=True) + imm.to_bytes(4, order, signed=True)
        return bytes(out)

    def describe(self):
        verdict = "deny" if self.default_allow else "allow"
        rules = ["%s %s" % (verdict, e.text()) for e in self.exceptions]
        return "; ".join(["default %s" % ("allow" if self.default_allow else "deny")] + rules)


def _block(exception, verdict):
    """The instructions for one exception; a jump to len(block) goes on to the next block."""
    steps = [(JNE_K, R2, 0, TYPES[exception.kind])]
    if exception.access != ALL_ACCESS:
        steps += [(ALU32_MOV_X, R1, R3, 0), (ALU32_AND_K, R1, 0, exception.access)]
        if verdict:
            steps.append((JNE_X, R1, R3, 0))  # some of the access asked is not covered
        else:
            steps.append((JEQ_K, R1, 0, 0))   # none of the access asked is denied
    if exception.major is not None:
        steps.append((JNE_K, R4, 0, exception.major))
    if exception.minor is not None:
        steps.append((JNE_K, R5, 0, exception.minor))
    size = len(steps) + 2
    block = []
    for index, (code, dst, src, imm) in enumerate(steps):
        jump = size - index - 1 if code in (JNE_K, JNE_X, JEQ_K) else 0
        block.append((code, dst, src, jump, imm))
    return block + [(ALU32_MOV_K, R0, 0, 0, verdict), (EXIT, 0, 0, 0, 0)]


class DeviceProgram:
    """linux.resources.devices planned for cgroup v2: applied (Cgroup.apply) by installing the
    program on the container's directory of the unified hierarchy, like a Write to it."""

    controller = "unified"
    filename = "(BPF_CGROUP_DEVICE program)"

    def __init__(self, program):
        self.program = program
        self.value = program.describe()
        self.field = FIELD

    def __repr__(self):
        return "DeviceProgram(%s)" % self.value

    def __eq__(self, other):
        return isinstance(other, DeviceProgram) and self.program.instructions == other.program.instructions

    def install(self, directory):
        install(directory, self.program)


def plan(rules):
    """A DeviceProgram for RULES (checked, in order, the default rules last)."""
    default_allow, exceptions = emulate(rules)
    return DeviceProgram(Program(default_allow, exceptions))


# -- the kernel side ---------------------------------------------------------------------

def load(program):
    """bpf(BPF_PROG_LOAD): the program's fd. A refusal is asked again with the verifier's log,
    which names the instruction it stopped at, and so the rule."""
    values = {0: BPF_PROG_TYPE_CGROUP_DEVICE, 4: len(program.instructions), 48: PROGRAM_NAME}
    inputs = {8: program.encode(), 16: LICENSE}
    try:
        return syscalls.bpf(BPF_PROG_LOAD, 72, values, "bpf(BPF_PROG_LOAD)", inputs)[0]
    except OSError as exc:
        if exc.errno == errno.EPERM:
            raise OCIError("%s: loading the cgroup v2 device program needs CAP_SYS_ADMIN (or CAP_BPF): %s"
                           % (FIELD, exc.strerror))
        refusal = exc
    # The log costs verifier time, so only a refused program is loaded with one.
    values.update({24: 1, 28: LOG_SIZE})
    try:
        return syscalls.bpf(BPF_PROG_LOAD, 72, values, "bpf(BPF_PROG_LOAD)", inputs, {32: LOG_SIZE})[0]
    except OSError as exc:
        log = getattr(exc, "outputs", {}).get(32, b"").split(b"\0", 1)[0].decode("utf-8", "replace")
    field = _origin(program, log)
    raise OCIError("%s: the kernel refused the cgroup v2 device program%s: %s: %s"
                   % (field or FIELD, "" if field else " (at no rule's instructions)", refusal.strerror,
                      _log_tail(log)))


def _origin(program, log):
    """The field of the rule whose instruction the verifier log stopped at, or None."""
    index = None
    for line in log.splitlines():
        head = line.split(":", 1)[0]
        if head.isdigit() and ":" in line:
            index = int(head)
    if index is None or index >= len(program.origins):
        return None
    return program.origins[index]


def _log_tail(log):
    lines = [line for line in log.splitlines() if line.strip()]
    return " / ".join(lines[-3:]) or "(no verifier log)"


def _open_directory(directory):
    try:
        return os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise OCIError("%s: cgroup %s: %s" % (FIELD, directory, exc.strerror))


def attached(directory):
    """[(id, name)] of the device programs attached to DIRECTORY itself (not inherited)."""
    fd = _open_directory(directory)
    try:
        return [(prog_id, _program_name(prog_id)) for prog_id in _query(fd, directory)]
    finally:
        os.close(fd)


def _query(cgroup_fd, directory):
    try:
        attr, out = syscalls.bpf(BPF_PROG_QUERY, 28, {0: cgroup_fd, 4: BPF_CGROUP_DEVICE, 24: BPF_CGROUP_MAX_PROGS},
                                 "bpf(BPF_PROG_QUERY) %s" % directory, outputs={16: 4 * BPF_CGROUP_MAX_PROGS})[1:]
    except OSError as exc:
        raise OCIError("%s: cannot list the device programs of cgroup %s: %s" % (FIELD, directory, exc.strerror))
    count = int.from_bytes(attr[24:28], sys.byteorder)
    ids = out[16]
    return [int.from_bytes(ids[4 * i:4 * i + 4], sys.byteorder) for i in range(count)]


def _program_fd(prog_id):
    """An fd of the loaded program PROG_ID, or None when it is gone."""
    try:
        return syscalls.bpf(BPF_PROG_GET_FD_BY_ID, 12, {0: prog_id}, "bpf(BPF_PROG_GET_FD_BY_ID %d)" % prog_id)[0]
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return None
        raise OCIError("%s: cannot open device program %d: %s" % (FIELD, prog_id, exc.strerror))


def _program_name(prog_id):
    fd = _program_fd(prog_id)
    if fd is None:
        return None
    try:
        # struct bpf_prog_info: char name[16] at offset 64.
        out = syscalls.bpf(BPF_OBJ_GET_INFO_BY_FD, 16, {0: fd, 4: 80}, "bpf(BPF_OBJ_GET_INFO_BY_FD)",
                           outputs={8: 80})[2]
    except OSError as exc:
        raise OCIError("%s: cannot read device program %d: %s" % (FIELD, prog_id, exc.strerror))
    finally:
        os.close(fd)
    return out[8][64:80].split(b"\0", 1)[0]


def program_exists(prog_id):
    fd = _program_fd(prog_id)
    if fd is None:
        return False
    os.close(fd)
    return True


def install(directory, program):
    """Attach PROGRAM to DIRECTORY, then detach the device programs this runtime attached there before."""
    prog_fd = load(program)
    try:
        cgroup_fd = _open_directory(directory)
        try:
            previous = [prog_id for prog_id in _query(cgroup_fd, directory)
                        if _program_name(prog_id) == PROGRAM_NAME]
            try:
                syscalls.bpf(BPF_PROG_ATTACH, 20, {0: cgroup_fd, 4: prog_fd, 8: BPF_CGROUP_DEVICE,
                                                   12: BPF_F_ALLOW_MULTI}, "bpf(BPF_PROG_ATTACH)")
            except OSError as exc:
                raise OCIError("%s: cannot attach the device program to cgroup %s: %s"
                               % (FIELD, directory, exc.strerror))
            for prog_id in previous:
                _detach(cgroup_fd, directory, prog_id)
        finally:
            os.close(cgroup_fd)
    finally:
        os.close(prog_fd)


def _detach(cgroup_fd, directory, prog_id):
    fd = _program_fd(prog_id)
    if fd is None:
        return
    try:
        syscalls.bpf(BPF_PROG_DETACH, 20, {0: cgroup_fd, 4: fd, 8: BPF_CGROUP_DEVICE}, "bpf(BPF_PROG_DETACH)")
    except OSError as exc:
        if exc.errno != errno.ENOENT:
            raise OCIError("%s: cannot detach the replaced device program %d from cgroup %s: %s"
                           % (FIELD, prog_id, directory, exc.strerror))
    finally:
        os.close(fd)
