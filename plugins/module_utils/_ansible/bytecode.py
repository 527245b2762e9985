# -*- coding: utf-8 -*-
# Copyright: daemonless.oci contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Compiled code of the collection's module_utils kept on the managed host between module runs.

Ansible ships a module's module_utils as sources in a zip (AnsiballZ), and
zipimport never caches bytecode (and compiles each module twice: once to
name its file, once to run it): every task compiled them again, about
120 KB of source for oci_bundle, most of what an unchanged bundle cost above
a ping. An import hook installed first (install()) serves the collection's
module_utils from the zip with code objects cached in CACHE_DIR, one file
per source named by the source's sha256 and the interpreter's cache tag, so
a changed collection or interpreter never meets stale code.

What is executed as root from there must be root's alone: the directory is
used only when it is a real directory owned by the effective user and
writable by nobody else, each file only when it is a regular file with the
same owner and modes (opened without following a symlink). Anything else
falls back to compiling, as without the cache. New entries are written only
once the module allows it (persist(), never in check mode, which changes
no file), atomically.

Nothing here may import the collection's other code: it runs before it.
"""
import hashlib
import marshal
import os
import struct
import sys
import zlib

# The runtime's default state root (state.DEFAULT_ROOT, kept equal by a unit test: importing
# state.py here would compile it before the cache can serve it); "=" names are the runtime's own.
CACHE_DIR = "/run/ocirt/=bytecode"
PREFIX = "ansible_collections.daemonless.oci.plugins.module_utils."
_TAG = sys.implementation.cache_tag or "python"


def _private(st, directory):
    import stat
    kind = stat.S_ISDIR if directory else stat.S_ISREG
    return kind(st.st_mode) and st.st_uid == os.geteuid() and not st.st_mode & 0o022


class _Cache(object):
    def __init__(self, directory):
        self.directory = directory
        self.pending = {}  # file name -> code compiled while writing was not allowed yet
        self.writable = False
        self.hits = self.misses = 0

    def usable(self):
        try:
            return _private(os.lstat(self.directory), True)
        except OSError:
            return False

    def code(self, source, filename):
        name = "%s-%s.code" % (_TAG, hashlib.sha256(source).hexdigest())
        path = os.path.join(self.directory, name)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            fd = None
        if fd is not None:
            try:
                if _private(os.fstat(fd), False):
                    with os.fdopen(fd, "rb") as handle:
                        fd = None
                        code = marshal.loads(handle.read())
                    self.hits += 1
                    return code
            except (OSError, ValueError, EOFError, TypeError):
                pass  # unreadable or not code: compiled and written again
            finally:
                if fd is not None:
                    os.close(fd)
        self.misses += 1
        code = compile(source, filename, "exec", dont_inherit=True)
        self.pending[name] = code
        if self.writable:
            self.flush()
        return code

    def flush(self):
        pending, self.pending = self.pending, {}
        if not pending:
            return
        try:
            os.makedirs(self.directory, mode=0o700, exist_ok=True)
        except OSError:
            return
        if not self.usable():
            return
        for name, code in pending.items():
            temporary = os.path.join(self.directory, ".%s.%d" % (name, os.getpid()))
            try:
                fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
                with os.fdopen(fd, "wb") as handle:
                    handle.write(marshal.dumps(code))
                os.rename(temporary, os.path.join(self.directory, name))
            except OSError:
                try:
                    os.unlink(temporary)
                except OSError:
                    pass


class _Loader(object):
    """Loads one module of the payload zip, its code from the cache."""

    def __init__(self, finder, member, origin, package):
        self._finder = finder
        self._member = member
        self._origin = origin
        self._package = package

    def create_module(self, spec):
        return None

    def get_source(self, fullname):
        # create reads the monitor's source through its module's loader.
        return self._finder.read(self._member).decode("utf-8")

    def get_filename(self, fullname):
        return self._origin

    def is_package(self, fullname):
        return self._package

    def exec_module(self, module):
        code = self._finder.cache.code(self._finder.read(self._member), self._origin)
        exec(code, module.__dict__)


class _Finder(object):
    """Finds the collection's module_utils in the payload zip itself.

    Not through zipimport: its find_spec compiles the source once just to
    name the file (get_filename), then get_code compiles it again. Only the
    zip's directory is read at install (reading every source then cost more
    than the imports it served); each source is read when imported, opening
    the zip again each time, as zipimport does: no descriptor of it may stay
    open, since create's monitor closes every descriptor and then imports.
    """

    def __init__(self, cache, archive):
        import zipfile
        self.cache = cache
        self.archive = archive
        top = PREFIX.replace(".", "/")
        with zipfile.ZipFile(archive) as payload:
            self.entries = dict((info.filename, (info.header_offset, info.compress_size, info.compress_type))
                                for info in payload.infolist()
                                if info.filename.startswith(top) and info.filename.endswith(".py"))

    def read(self, member):
        """MEMBER's bytes, from its local header on (stored or deflated, as AnsiballZ writes them)."""
        offset, size, method = self.entries[member]
        with open(self.archive, "rb") as handle:
            handle.seek(offset)
            header = handle.read(30)
            if header[:4] != b"PK\x03\x04":
                raise ImportError("%s: no local header for %s" % (self.archive, member))
            name_length, extra_length = struct.unpack("<HH", header[26:30])
            handle.seek(offset + 30 + name_length + extra_length)
            data = handle.read(size)
        if method == 8:
            return zlib.decompress(data, -15)
        if method == 0:
            return data
        raise ImportError("%s: %s is compressed with method %d" % (self.archive, member, method))

    def find_spec(self, name, path=None, target=None):
        if not name.startswith(PREFIX):
            return None
        from importlib.machinery import ModuleSpec
        base = name.replace(".", "/")
        for member, package in ((base + "/__init__.py", True), (base + ".py", False)):
            if member in self.entries:
                origin = os.path.join(self.archive, member)
                spec = ModuleSpec(name, _Loader(self, member, origin, package), origin=origin, is_package=package)
                if package:
                    spec.submodule_search_locations = [os.path.join(self.archive, base)]
                spec.has_location = True
                return spec
        return None


def install(directory=CACHE_DIR, archive=None):
    """Serve the collection's module_utils from the cache from now on; return the cache, or None when
    not used: not run from a zip payload (ARCHIVE, default the one this module came from), or a cache
    directory that is not root's alone."""
    for finder in sys.meta_path:
        if isinstance(finder, _Finder):
            return finder.cache
    if archive is None:
        archive = getattr(globals().get("__loader__"), "archive", None)
        if archive is None:
            return None  # imported from files (tests, a checkout): Python's own cache applies
    cache = _Cache(directory)
    if os.path.lexists(directory) and not cache.usable():
        return None  # someone else's, or not a directory: never trust it
    sys.meta_path.insert(0, _Finder(cache, archive))
    return cache


def uninstall():
    """Remove the hook (for tests)."""
    sys.meta_path[:] = [finder for finder in sys.meta_path if not isinstance(finder, _Finder)]


def persist(cache, allowed):
    """Write what was compiled so far and from now on, when ALLOWED (not in check mode)."""
    if cache is not None and allowed:
        cache.writable = True
        cache.flush()
