# -*- coding: utf-8 -*-
# Copyright: daemonless.oci contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The last exec into the container's program goes through a tiny sealed in-memory binary.

Until that exec, the container's process is the host's Python interpreter.
If it exec'd the image's program directly and that program were a script
starting `#!/proc/self/exe`, the kernel would run the host interpreter again
inside the container, whose /proc/self/exe then names the host's binary: a
handle through which the container could overwrite it (CVE-2019-5736). So
the process first execs a trampoline from a sealed memfd (nothing on any
filesystem, not writable), and the trampoline execs the program: what
/proc/self/exe names at that moment is the sealed trampoline. This is the
idea of runc's "dmz" binary, in a few dozen bytes of machine code written here.

The trampoline takes argv = [path, arg0, arg1, ...] and calls
execve(path, [arg0, ...], envp), exiting 127 if that fails. Machine code is
given for x86_64 and aarch64; elsewhere `available()` is False and the
runtime execs directly (documented as a known gap).
"""
import fcntl
import os
import struct

from ansible_collections.daemonless.oci.plugins.module_utils._runtime.linux import syscalls

# x86_64: refuse argc < 2; rdi = argv[0]; rsi = &argv[1]; rdx = envp = rsp + 8 * (argc + 2);
# execve; exit_group(127). The argc check ends the loop a `#!/proc/self/exe` script would
# otherwise make: each round through the script drops one argument until none is left.
_X86_64 = bytes.fromhex(
    "488b0424"        # mov rax, [rsp]            argc
    "4883f802"        # cmp rax, 2
    "7c16"            # jl fail
    "488b7c2408"      # mov rdi, [rsp+8]
    "488d742410"      # lea rsi, [rsp+16]
    "488d54c410"      # lea rdx, [rsp+rax*8+16]
    "b83b000000"      # mov eax, 59 (execve)
    "0f05"            # syscall
    "bf7f000000"      # fail: mov edi, 127
    "b8e7000000"      # mov eax, 231 (exit_group)
    "0f05")           # syscall

# aarch64: the same, with execve 221 and exit_group 94.
_AARCH64 = struct.pack(
    "<12I",
    0xF94003E2,       # ldr x2, [sp]              argc
    0xF100085F,       # cmp x2, #2
    0x540000EB,       # b.lt fail
    0xF94007E0,       # ldr x0, [sp, #8]
    0x910043E1,       # add x1, sp, #16
    0x8B226FE2,       # add x2, sp, x2, uxtx #3
    0x91004042,       # add x2, x2, #16
    0xD2801BA8,       # mov x8, #221
    0xD4000001,       # svc #0
    0xD2800FE0,       # fail: mov x0, #127
    0xD2800BC8,       # mov x8, #94
    0xD4000001)       # svc #0

# machine -> (ELF e_machine, code)
_CODE = {"x86_64": (62, _X86_64), "aarch64": (183, _AARCH64)}
_LOAD_ADDRESS = 0x400000
_HEADERS = 64 + 56


def _elf(machine, code):
    """A static ELF64 executable: one read+execute PT_LOAD segment holding the headers and CODE."""
    entry = _LOAD_ADDRESS + _HEADERS
    size = _HEADERS + len(code)
    header = struct.pack("<4sBBBBB7sHHIQQQIHHHHHH", b"\x7fELF", 2, 1, 1, 0, 0, b"\0" * 7,
                         2, machine, 1, entry, 64, 0, 0, 64, 56, 1, 0, 0, 0)
    program = struct.pack("<IIQQQQQQ", 1, 5, 0, _LOAD_ADDRESS, _LOAD_ADDRESS, size, size, 0x1000)
    return header + program + code


def available():
    return os.uname().machine in _CODE and hasattr(os, "memfd_create")


def sealed_fd():
    """The trampoline in a sealed, close-on-exec memfd; None where there is none for this machine."""
    if not available():
        return None
    machine, code = _CODE[os.uname().machine]
    fd = os.memfd_create("ocirt-trampoline", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    try:
        image = _elf(machine, code)
        view = memoryview(image)
        while view:
            view = view[os.write(fd, view):]
        os.fchmod(fd, 0o555)
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS,
                    fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE)
    except OSError:
        os.close(fd)
        raise
    return fd


def execute(trampoline_fd, path, args, env):
    """Exec ARGS from PATH through the trampoline (or directly without one). Returns only on failure."""
    if trampoline_fd is None:
        syscalls.execve(path, args, env)
    # fexecve: execveat(fd, "", ..., AT_EMPTY_PATH) needs no /proc, and the close-on-exec memfd is
    # fine for an ELF (only a script would need its fd after exec).
    syscalls.execve(trampoline_fd, [path] + list(args), env)
