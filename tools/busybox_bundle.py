"""Build a busybox OCI bundle for the demo and the tests.

Usage: busybox_bundle.py PATH [ARG...]

Writes PATH/rootfs (Debian's static /bin/busybox plus one symlink per applet,
a minimal /etc) and PATH/config.json whose process.args are ARG... (default
``sh``).  Run it with the development virtualenv's Python after `make venv`.

As a library::

    build_rootfs(dest)                      # just the root filesystem
    build_bundle(path, args=None, config={...})  # rootfs + config.json
    deep_merge(base, overlay)               # dicts merged, the rest replaced
"""
import copy
import json
import os
import shutil
import struct
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_COLLECTIONS = os.path.join(REPO, ".venv", "collections")
if _COLLECTIONS not in sys.path:
    sys.path.insert(0, _COLLECTIONS)

BUSYBOX = "/bin/busybox"

PASSWD = """\
root:x:0:0:root:/root:/bin/sh
app:x:1000:1000:app:/home/app:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
"""

GROUP = """\
root:x:0:
tty:x:5:
app:x:1000:
nogroup:x:65534:
"""

HOSTNAME = "busybox\n"

# Directories of the rootfs and their modes (umask is bypassed with chmod).
DIRS = (
    ("bin", 0o755), ("proc", 0o555), ("sys", 0o555), ("dev", 0o755),
    ("tmp", 0o1777), ("etc", 0o755), ("root", 0o700), ("home", 0o755),
    ("home/app", 0o755), ("var", 0o755), ("run", 0o755), ("usr", 0o755),
    ("usr/bin", 0o755),
)


def _unescape_mountinfo(field):
    # /proc/self/mountinfo writes space, tab, newline and backslash as \ooo.
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and i + 3 < len(field) and field[i + 1:i + 4].isdigit():
            out.append(chr(int(field[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def _mounts_under(path):
    """Mount points at or below path (an absolute, symlink-free path)."""
    prefix = path.rstrip("/") + "/"
    found = []
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                point = _unescape_mountinfo(line.split()[4])
                if point == path or point.startswith(prefix):
                    found.append(point)
    except OSError:
        pass
    return found


def _remove(dest):
    """Remove dest without following symlinks and without crossing mounts."""
    if os.path.islink(dest) or (os.path.exists(dest) and not os.path.isdir(dest)):
        os.unlink(dest)
        return
    if not os.path.exists(dest):
        return
    mounts = _mounts_under(os.path.realpath(dest))
    if mounts:
        raise RuntimeError("refusing to remove %s: still mounted: %s"
                           % (dest, ", ".join(mounts)))
    # rmtree never follows symlinks: it unlinks them (fd-based where available).
    shutil.rmtree(dest)


def _is_static_elf(path):
    """True when path is an ELF executable without a PT_INTERP header."""
    with open(path, "rb") as f:
        ident = f.read(16)
        if ident[:4] != b"\x7fELF":
            return False
        is64 = ident[4] == 2
        end = "<" if ident[5] == 1 else ">"
        if is64:
            f.seek(0x20)
            (phoff,) = struct.unpack(end + "Q", f.read(8))
            f.seek(0x36)
        else:
            f.seek(0x1C)
            (phoff,) = struct.unpack(end + "I", f.read(4))
            f.seek(0x2A)
        phentsize, phnum = struct.unpack(end + "HH", f.read(4))
        for n in range(phnum):
            f.seek(phoff + n * phentsize)
            (p_type,) = struct.unpack(end + "I", f.read(4))
            if p_type == 3:  # PT_INTERP
                return False
    return True


def _applets(busybox):
    out = subprocess.run([busybox, "--list"], check=True,
                         stdout=subprocess.PIPE, universal_newlines=True).stdout
    return sorted(set(name for name in out.split() if name and name != "busybox"
                      and "/" not in name))


def _write(path, text, mode=0o644):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)


def build_rootfs(dest, busybox=BUSYBOX):
    """Create (or re-create) a busybox root filesystem at dest; return dest."""
    if not os.path.isfile(busybox):
        raise RuntimeError("%s not found: install Debian's busybox-static" % busybox)
    if not _is_static_elf(busybox):
        raise RuntimeError("%s is dynamically linked: install Debian's busybox-static"
                           % busybox)
    _remove(dest)
    os.makedirs(dest)
    os.chmod(dest, 0o755)
    for name, mode in DIRS:
        path = os.path.join(dest, name)
        os.makedirs(path, exist_ok=True)
        os.chmod(path, mode)
    if os.geteuid() == 0:
        os.chown(os.path.join(dest, "home", "app"), 1000, 1000)

    bindir = os.path.join(dest, "bin")
    shutil.copyfile(busybox, os.path.join(bindir, "busybox"))
    os.chmod(os.path.join(bindir, "busybox"), 0o755)
    for name in _applets(busybox):
        os.symlink("busybox", os.path.join(bindir, name))

    etc = os.path.join(dest, "etc")
    _write(os.path.join(etc, "passwd"), PASSWD)
    _write(os.path.join(etc, "group"), GROUP)
    _write(os.path.join(etc, "hostname"), HOSTNAME)
    return dest


def deep_merge(base, overlay):
    """Return base updated with overlay: dicts merge recursively, anything
    else (lists included) is replaced.  Neither argument is modified."""
    if not isinstance(base, dict) or not isinstance(overlay, dict):
        return copy.deepcopy(overlay)
    merged = copy.deepcopy(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def build_bundle(path, args=None, **overrides):
    """Create a bundle at path: path/rootfs and path/config.json; return path.

    config.json is spec.default_config(args=args) with process.terminal
    false, deep-merged with overrides["config"] when given.
    """
    from ansible_collections.daemonless.oci.plugins.module_utils._runtime.spec import default_config

    unknown = set(overrides) - {"config"}
    if unknown:
        raise TypeError("build_bundle: unknown keyword(s): %s" % ", ".join(sorted(unknown)))
    os.makedirs(path, exist_ok=True)
    build_rootfs(os.path.join(path, "rootfs"))
    config = default_config(args=args)
    config["process"]["terminal"] = False
    config = deep_merge(config, overrides.get("config", {}))
    tmp = os.path.join(path, "config.json.tmp")
    with open(tmp, "w") as f:
        json.dump(config, f, indent=2)
        f.write("\n")
    os.replace(tmp, os.path.join(path, "config.json"))
    return path


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        sys.stderr.write("usage: busybox_bundle.py PATH [ARG...]\n")
        return 0 if argv else 2
    path, args = argv[0], argv[1:]
    if args and args[0] == "--":
        args = args[1:]
    print(build_bundle(path, args=args or ["sh"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
