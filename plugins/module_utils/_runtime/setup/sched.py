# -*- coding: utf-8 -*-
# Copyright: daemonless.oci contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""process.ioPriority, process.scheduler, process.execCPUAffinity, linux.personality, linux.memoryPolicy.

Applied in the container's process (and exec's): the initial CPU affinity as
its setup starts, the rest while it still holds its privileges (a real-time
policy or a negative nice needs CAP_SYS_NICE), the final CPU affinity right
before exec. spec.py has validated the fields; a kernel that lacks a call
or refuses a value fails the process with the field named.
"""
import struct

from ansible_collections.daemonless.oci.plugins.module_utils._runtime.linux import syscalls
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.errors import OCIError
from ansible_collections.daemonless.oci.plugins.module_utils._runtime.spec import (
    IOPRIO_CLASSES, MEMORY_POLICY_FLAGS, MEMORY_POLICY_MODES, PERSONALITY_DOMAINS, SCHED_FLAGS, SCHED_POLICIES,
    parse_cpu_list)

IOPRIO_CLASS_SHIFT = 13
# struct sched_attr (SCHED_ATTR_SIZE_VER1): size, policy, flags, nice, priority,
# runtime, deadline, period, util_min, util_max.
_SCHED_ATTR = struct.Struct("=IIQiIQQQII")


def _error(field, exc):
    return OCIError("%s: %s" % (field, getattr(exc, "strerror", None) or exc))


def set_affinity(proc, which):
    """process.execCPUAffinity.WHICH ("initial" or "final"), if given."""
    cpus = (proc.get("execCPUAffinity") or {}).get(which)
    if not cpus:
        return
    field = "process.execCPUAffinity." + which
    try:
        syscalls.sched_setaffinity(parse_cpu_list(cpus, field))
    except OSError as exc:
        raise _error("%s %r" % (field, cpus), exc)


def sched_attr(scheduler):
    """The packed struct sched_attr for process.scheduler."""
    flags = 0
    for name in scheduler.get("flags") or []:
        flags |= SCHED_FLAGS[name]
    return _SCHED_ATTR.pack(_SCHED_ATTR.size, SCHED_POLICIES[scheduler["policy"]], flags,
                            scheduler.get("nice") or 0, scheduler.get("priority") or 0,
                            scheduler.get("runtime") or 0, scheduler.get("deadline") or 0,
                            scheduler.get("period") or 0, 0, 0)


def apply(proc, linux):
    """ioPriority, scheduler, personality and memoryPolicy, each only when configured."""
    io = proc.get("ioPriority")
    if io:
        value = (IOPRIO_CLASSES[io["class"]] << IOPRIO_CLASS_SHIFT) | (io.get("priority") or 0)
        try:
            syscalls.ioprio_set(value)
        except OSError as exc:
            raise _error("process.ioPriority (%s, priority %d)" % (io["class"], io.get("priority") or 0), exc)
    scheduler = proc.get("scheduler")
    if scheduler:
        try:
            syscalls.sched_setattr(sched_attr(scheduler))
        except OSError as exc:
            raise _error("process.scheduler (policy %s)" % scheduler["policy"], exc)
    linux = linux or {}
    persona = linux.get("personality")
    if persona:
        try:
            syscalls.personality(PERSONALITY_DOMAINS[persona["domain"]])
        except OSError as exc:
            raise _error("linux.personality.domain %s" % persona["domain"], exc)
    policy = linux.get("memoryPolicy")
    if policy:
        mode = MEMORY_POLICY_MODES[policy["mode"]]
        for name in policy.get("flags") or []:
            mode |= MEMORY_POLICY_FLAGS[name]
        nodes = parse_cpu_list(policy["nodes"], "linux.memoryPolicy.nodes") if policy.get("nodes") else set()
        try:
            syscalls.set_mempolicy(mode, nodes)
        except OSError as exc:
            raise _error("linux.memoryPolicy (mode %s, nodes %r)" % (policy["mode"], policy.get("nodes") or ""), exc)
