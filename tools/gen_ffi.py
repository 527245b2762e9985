#!/usr/bin/env python3
"""Generate plugins/module_utils/_libc_ffi.py: cffi's out-of-line ABI module for libc.

The generated module is pure Python (serialized type tables plus an import of
_cffi_backend), so managed hosts need neither a C compiler nor pycparser, and
no process pays for parsing C declarations at start-up.

Run with `make ffi` after changing CDEF; a unit test checks that the committed
module matches what this script produces.
"""
import os
import sys

CDEF = """
struct ocirt_open_how {
    uint64_t flags;
    uint64_t mode;
    uint64_t resolve;
};
struct ocirt_cap_header {
    uint32_t version;
    int pid;
};
struct ocirt_cap_data {
    uint32_t effective;
    uint32_t permitted;
    uint32_t inheritable;
};

int unshare(int flags);
int setns(int fd, int nstype);
int mount(const char *source, const char *target, const char *fstype,
          unsigned long flags, const void *data);
int umount2(const char *target, int flags);
int pivot_root(const char *new_root, const char *put_old);
int sethostname(const char *name, size_t len);
int setdomainname(const char *name, size_t len);
int prctl(int option, unsigned long arg2, unsigned long arg3,
          unsigned long arg4, unsigned long arg5);
int capget(struct ocirt_cap_header *header, struct ocirt_cap_data *data);
int capset(struct ocirt_cap_header *header, const struct ocirt_cap_data *data);
long syscall(long number, long a1, long a2, long a3, long a4, long a5);
"""

MODULE_NAME = "_libc_ffi"
TARGET = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                      "plugins", "module_utils", MODULE_NAME + ".py")


def generate(target=TARGET):
    from cffi import FFI
    builder = FFI()
    builder.cdef(CDEF)
    builder.set_source(MODULE_NAME, None)
    builder.emit_python_code(target)
    return target


if __name__ == "__main__":
    print(generate(sys.argv[1] if len(sys.argv) > 1 else TARGET))
