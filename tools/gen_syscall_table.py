"""Generate the runtime's syscall numbers from the kernel's own headers, into two modules:

- plugins/module_utils/_runtime/linux/_syscall_table.py: every syscall name and
  number per architecture seccomp.py filters (large: imported only with a filter);
- plugins/module_utils/_runtime/linux/_syscall_numbers.py: the few syscalls that
  linux/syscalls.py makes by number (RUNTIME_SYSCALLS), per architecture the
  runtime may run on, and os.uname().machine -> architecture (MACHINES).
  Small, because every create imports it (close_range, openat2).

The seccomp filter (plugins/module_utils/_runtime/setup/seccomp.py) turns the names of
linux.seccomp.syscalls[].names into numbers, which differ between
architectures. This script reads the kernel's own numbering from the uapi
headers that Debian ships and writes the result as plain Python literals, so
the runtime needs neither the headers nor a C preprocessor on the managed host.

Inputs (Debian 12 packages; the numbers come from the headers, not from here):
  x86_64, x86, x32  linux-libc-dev:        /usr/include/x86_64-linux-gnu/asm/unistd.h
  aarch64           linux-libc-dev:        /usr/include/asm-generic/unistd.h, with
                                           the __ARCH_WANT_* that arm64's uapi
                                           asm/unistd.h defines
  arm (EABI)        linux-libc-dev-armhf-cross: /usr/arm-linux-gnueabihf/include/asm/unistd.h
  names only        linux-libc-dev-{ppc64el,s390x,riscv64,mips64el,mipsel,powerpc,hppa,m68k,sh4}-cross:
                    syscalls of architectures this runtime cannot filter, so that
                    a profile written for several architectures is not refused for
                    naming one of them (seccomp.py skips those names; a name in no
                    table at all is a typo and an error).

Syscalls added to the kernel after the headers were cut (Debian 12 has
6.1) are listed in LATER_SYSCALLS: since 5.1 every new syscall takes the same
number on every architecture (x32 adds its bit), so one number each suffices;
the few of a single architecture are in LATER_ARCH_SYSCALLS.

The headers are run through a small preprocessor below (#define, #undef,
#if/#ifdef/#ifndef/#elif/#else/#endif, #include <...>): enough for these files
and deterministic, with no compiler involved.

Numbers only (for _syscall_numbers.py), from the same -cross packages:
  ppc64le, s390x, riscv64 (their unistd headers; seccomp.py cannot filter them).

Run: .venv/bin/python tools/gen_syscall_table.py [TARGET [NUMBERS_TARGET]]
(apt-get install linux-libc-dev linux-libc-dev-armhf-cross and the -cross
packages above first; the script names what is missing).
"""
import glob
import os
import re
import sys

LINUX_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                         "plugins", "module_utils", "_runtime", "linux")
TARGET = os.path.join(LINUX_DIR, "_syscall_table.py")
NUMBERS_TARGET = os.path.join(LINUX_DIR, "_syscall_numbers.py")

X86_INCLUDE = ["/usr/include/x86_64-linux-gnu", "/usr/include"]
ARM_INCLUDE = ["/usr/arm-linux-gnueabihf/include"]

# arch/arm64/include/uapi/asm/unistd.h (Linux 6.1) defines these before it
# includes asm-generic/unistd.h; __BITS_PER_LONG is what arm64's
# asm/bitsperlong.h sets (the host's asm/ is x86's, so that include is skipped).
ARM64_DEFINES = {
    "__BITS_PER_LONG": "64",
    "__ARCH_WANT_RENAMEAT": "1",
    "__ARCH_WANT_NEW_STAT": "1",
    "__ARCH_WANT_SET_GET_RLIMIT": "1",
    "__ARCH_WANT_TIME32_SYSCALLS": "1",
    "__ARCH_WANT_SYS_CLONE3": "1",
    "__ARCH_WANT_MEMFD_SECRET": "1",
}

# (table name, header, include directories, predefined macros, includes to skip)
ARCHES = (
    ("x86_64", "asm/unistd.h", X86_INCLUDE, {"__x86_64__": "1"}, ()),
    ("x86", "asm/unistd.h", X86_INCLUDE, {"__i386__": "1"}, ()),
    ("x32", "asm/unistd.h", X86_INCLUDE, {"__x86_64__": "1", "__ILP32__": "1"}, ()),
    ("aarch64", "asm-generic/unistd.h", ["/usr/include"], ARM64_DEFINES, ("asm/bitsperlong.h",)),
    ("arm", "asm/unistd.h", ARM_INCLUDE, {"__arm__": "1", "__ARM_EABI__": "1"}, ()),
)

# Numbers only: architectures the runtime runs on without filtering their syscalls.
RISCV64_DEFINES = {"__BITS_PER_LONG": "64", "__LP64__": "1", "__ARCH_WANT_NEW_STAT": "1",
                   "__ARCH_WANT_SET_GET_RLIMIT": "1", "__ARCH_WANT_SYS_CLONE3": "1", "__ARCH_WANT_MEMFD_SECRET": "1"}
NUMBER_ONLY_ARCHES = (
    ("ppc64le", "asm/unistd.h", ["/usr/powerpc64le-linux-gnu/include"], {"__powerpc64__": "1"}, ()),
    ("s390x", "asm/unistd.h", ["/usr/s390x-linux-gnu/include"], {"__s390x__": "1"}, ()),
    ("riscv64", "asm-generic/unistd.h", ["/usr/riscv64-linux-gnu/include"], RISCV64_DEFINES, ("asm/bitsperlong.h",)),
)

# What linux/syscalls.py calls by number (glibc may lack a wrapper, or refuse the call, as its
# sigaction does for the signals it reserves).
RUNTIME_SYSCALLS = ("bpf", "close_range", "ioprio_get", "ioprio_set", "move_mount", "mount_setattr", "open_tree",
                    "openat2", "prlimit64", "rt_sigaction", "sched_getattr", "sched_setattr", "seccomp",
                    "set_mempolicy")

# os.uname().machine -> architecture. A 32-bit process on a 64-bit kernel reports the
# kernel's machine unless a personality says otherwise: this names the native ABI.
MACHINES = {
    "x86_64": "x86_64", "i386": "x86", "i486": "x86", "i586": "x86", "i686": "x86",
    "aarch64": "aarch64", "armv6l": "arm", "armv7l": "arm", "armv8l": "arm",
    "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64",
}

NAME_ONLY_DIRS = (
    ("/usr/powerpc64le-linux-gnu/include", "linux-libc-dev-ppc64el-cross"),
    ("/usr/s390x-linux-gnu/include", "linux-libc-dev-s390x-cross"),
    ("/usr/riscv64-linux-gnu/include", "linux-libc-dev-riscv64-cross"),
    ("/usr/mips64el-linux-gnuabi64/include", "linux-libc-dev-mips64el-cross"),
    ("/usr/mipsel-linux-gnu/include", "linux-libc-dev-mipsel-cross"),
    ("/usr/powerpc-linux-gnu/include", "linux-libc-dev-powerpc-cross"),
    ("/usr/hppa-linux-gnu/include", "linux-libc-dev-hppa-cross"),
    ("/usr/m68k-linux-gnu/include", "linux-libc-dev-m68k-cross"),
    ("/usr/sh4-linux-gnu/include", "linux-libc-dev-sh4-cross"),
)

X32_SYSCALL_BIT = 0x40000000

# Linux 6.5 and later: (number, name), the same number on all five tables.
LATER_SYSCALLS = (
    (451, "cachestat"), (452, "fchmodat2"), (453, "map_shadow_stack"), (454, "futex_wake"),
    (455, "futex_wait"), (456, "futex_requeue"), (457, "statmount"), (458, "listmount"),
    (459, "lsm_get_self_attr"), (460, "lsm_set_self_attr"), (461, "lsm_list_modules"), (462, "mseal"),
    (463, "setxattrat"), (464, "getxattrat"), (465, "listxattrat"), (466, "removexattrat"),
    (467, "open_tree_attr"), (468, "file_getattr"), (469, "file_setattr"), (470, "listns"),
    (471, "rseq_slice_yield"),
)

# Later syscalls of one architecture only: x86_64's uretprobe (6.11) and uprobe (6.15).
LATER_ARCH_SYSCALLS = {"x86_64": ((335, "uretprobe"), (336, "uprobe"))}

# __NR_* macros that are not syscalls: counts, bases, and the placeholders
# some tables keep for withdrawn numbers (reserved82, unused109, ...).
NOT_SYSCALLS = frozenset(("syscalls", "arch_specific_syscall"))
SYSCALL_NAME = re.compile(r"^(?!(reserved|unused)[0-9]+$)[a-z_][a-z0-9_]*$")


class Preprocessor:
    """Object-like macros and conditionals: what the uapi unistd headers use."""

    def __init__(self, include_dirs, defines, skip=()):
        self.include_dirs = include_dirs
        self.macros = dict(defines)
        self.skip = skip
        self.seen = []

    def run_file(self, path):
        self.seen.append(path)
        with open(path) as handle:
            text = handle.read()
        text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
        text = re.sub(r"//[^\n]*", "", text)
        text = text.replace("\\\n", " ")
        stack = []  # [active, a branch was taken, parent active]
        for line in text.splitlines():
            match = re.match(r"\s*#\s*(\w+)\s*(.*)$", line)
            if not match:
                continue
            directive, rest = match.group(1), match.group(2).strip()
            active = all(frame[0] for frame in stack)
            if directive in ("if", "ifdef", "ifndef"):
                if not active:
                    stack.append([False, True])
                    continue
                if directive == "ifdef":
                    value = rest.split()[0] in self.macros
                elif directive == "ifndef":
                    value = rest.split()[0] not in self.macros
                else:
                    value = bool(self.evaluate(rest, conditional=True))
                stack.append([value, value])
            elif directive == "elif":
                frame = stack[-1]
                parent = all(f[0] for f in stack[:-1])
                if frame[1] or not parent:
                    frame[0] = False
                else:
                    frame[0] = bool(self.evaluate(rest, conditional=True))
                    frame[1] = frame[0]
            elif directive == "else":
                frame = stack[-1]
                frame[0] = not frame[1]
                frame[1] = True
            elif directive == "endif":
                stack.pop()
            elif not active:
                continue
            elif directive == "define":
                parts = re.match(r"(\w+)(\(?)\s*(.*)$", rest)
                if parts.group(2):
                    continue  # function-like macros (__SYSCALL, __SC_COMP) carry no numbers
                self.macros[parts.group(1)] = parts.group(3).strip()
            elif directive == "undef":
                self.macros.pop(rest.split()[0], None)
            elif directive == "include":
                if rest.strip()[1:-1] not in self.skip:
                    self.run_file(self.find(rest))
        if stack:
            raise SystemExit("%s: unterminated conditional" % path)

    def find(self, spec):
        name = spec.strip()[1:-1]
        for directory in self.include_dirs:
            path = os.path.join(directory, name)
            if os.path.exists(path):
                return path
        raise SystemExit("cannot find %s in %s" % (name, self.include_dirs))

    def evaluate(self, expression, conditional=False, depth=0):
        if depth > 50:
            raise SystemExit("macro recursion in %r" % expression)
        if conditional:
            expression = re.sub(r"defined\s*\(\s*(\w+)\s*\)|defined\s+(\w+)",
                                lambda m: "1" if (m.group(1) or m.group(2)) in self.macros else "0", expression)

        def expand(match):
            word = match.group(0)
            if word in self.macros:
                return "(%s)" % self.evaluate(self.macros[word], conditional, depth + 1)
            if conditional:
                return "0"  # C: an unknown identifier in #if is 0
            raise SystemExit("undefined macro %s" % word)
        expression = re.sub(r"\b[A-Za-z_]\w*\b", expand, expression)
        expression = re.sub(r"\b(0[xX][0-9a-fA-F]+|\d+)[uUlL]+\b", r"\1", expression)
        expression = expression.replace("&&", " and ").replace("||", " or ")
        expression = re.sub(r"!(?!=)", " not ", expression)
        return eval(expression, {"__builtins__": {}})  # noqa: S307  (digits and operators only)


def syscall_numbers(header, include_dirs, defines, skip=()):
    pre = Preprocessor(include_dirs, defines, skip)
    pre.run_file(pre.find("<%s>" % header))
    table = {}
    for macro in sorted(pre.macros):
        for prefix in ("__NR_", "__ARM_NR_"):
            if macro.startswith(prefix):
                name = macro[len(prefix):]
                if SYSCALL_NAME.match(name) and name not in NOT_SYSCALLS and name != "BASE":
                    table[name] = int(pre.evaluate(pre.macros[macro]))
    return table


def build():
    needed = [("/usr/include/x86_64-linux-gnu/asm/unistd_64.h", "linux-libc-dev"),
              (ARM_INCLUDE[0], "linux-libc-dev-armhf-cross")] + list(NAME_ONLY_DIRS)
    missing = sorted(set(package for path, package in needed if not os.path.exists(path)))
    if missing:
        raise SystemExit("missing kernel headers: apt-get install -y %s" % " ".join(missing))
    tables = {}
    for arch, header, include_dirs, defines, skip in ARCHES:
        table = syscall_numbers(header, include_dirs, defines, skip)
        offset = X32_SYSCALL_BIT if arch == "x32" else 0
        for number, name in LATER_SYSCALLS:
            table.setdefault(name, number + offset)
        for number, name in LATER_ARCH_SYSCALLS.get(arch, ()):
            table.setdefault(name, number)
        tables[arch] = table
    known = set()
    for table in tables.values():
        known.update(table)
    others = set()
    for directory, _pkg in NAME_ONLY_DIRS:
        for path in glob.glob(os.path.join(directory, "asm", "unistd*.h")) + \
                glob.glob(os.path.join(directory, "asm-generic", "unistd.h")):
            with open(path) as handle:
                for name in re.findall(r"#\s*define\s+__NR_(\w+)", handle.read()):
                    if SYSCALL_NAME.match(name) and name not in NOT_SYSCALLS:
                        others.add(name)
    return tables, sorted(others - known)


HEADER = """# -*- coding: utf-8 -*-
# Generated by tools/gen_syscall_table.py from the kernel's uapi headers: do not edit.
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
\"\"\"Syscall numbers by architecture, and names known only on architectures seccomp.py cannot filter.\"\"\"
"""


def _pack(items, indent, width=159):
    lines, line = [], " " * indent
    for item in items:
        if len(line) + len(item) + 1 > width and line.strip():
            lines.append(line.rstrip())
            line = " " * indent
        line += item + " "
    if line.strip():
        lines.append(line.rstrip())
    return "\n".join(lines)


def render(built=None):
    tables, others = built or build()
    out = [HEADER, "TABLES = {"]
    for arch in sorted(tables):
        table = tables[arch]
        out.append("    %r: {" % arch)
        out.append(_pack(["%r: %d," % (name, table[name]) for name in sorted(table)], 8))
        out.append("    },")
    out.append("}")
    out.append("")
    out.append("OTHER_ARCH_NAMES = frozenset((")
    out.append(_pack(["%r," % name for name in others], 4))
    out.append("))")
    return "\n".join(out) + "\n"


NUMBERS_HEADER = """# -*- coding: utf-8 -*-
# Generated by tools/gen_syscall_table.py from the kernel's uapi headers: do not edit.
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
\"\"\"The syscalls linux/syscalls.py makes by number, per architecture; MACHINES maps os.uname().machine.\"\"\"
"""


def render_numbers(built=None):
    tables = dict((built or build())[0])
    for arch, header, include_dirs, defines, skip in NUMBER_ONLY_ARCHES:
        tables[arch] = syscall_numbers(header, include_dirs, defines, skip)
    out = [NUMBERS_HEADER, "MACHINES = {"]
    out.append(_pack(["%r: %r," % (machine, MACHINES[machine]) for machine in sorted(MACHINES)], 4))
    out.append("}")
    out.append("")
    out.append("NUMBERS = {")
    for arch in sorted(set(MACHINES.values())):
        missing = [name for name in RUNTIME_SYSCALLS if name not in tables[arch]]
        if missing:
            raise SystemExit("%s: no number for %s in its headers" % (arch, ", ".join(missing)))
        out.append("    %r: {" % arch)
        out.append(_pack(["%r: %d," % (name, tables[arch][name]) for name in RUNTIME_SYSCALLS], 8))
        out.append("    },")
    out.append("}")
    return "\n".join(out) + "\n"


def generate(target=TARGET, numbers_target=NUMBERS_TARGET):
    """Write both modules; return their paths."""
    built = build()
    for path, text in ((target, render(built)), (numbers_target, render_numbers(built))):
        with open(path, "w") as handle:
            handle.write(text)
    return target, numbers_target


if __name__ == "__main__":
    print(" ".join(generate(*sys.argv[1:3])))
