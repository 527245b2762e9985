"""Install the ``ocirt`` launcher into the development virtualenv.

Usage: install_launcher.py [REPO [VENV]]

REPO defaults to the parent of this script's directory, VENV to REPO/.venv.

The collection is made importable as ``ansible_collections.daemonless.oci``
through a symlink VENV/collections/ansible_collections/daemonless/oci -> REPO,
and VENV/bin/ocirt becomes a three-line Python stub:

    #!VENV/bin/python -IS
    import sys; sys.path[0:0] = [VENV/collections, <venv site-packages>]
    from ansible_collections.daemonless.oci.plugins.module_utils._runtime.cli import launch; launch()

``-I`` (isolated: no PYTHON* variables, no script dir, no user site) and
``-S`` (no ``site`` import) keep start-up short; the stub therefore adds the
venv's site-packages (for cffi's ``_cffi_backend``) itself.
"""
import os
import subprocess
import sys

# Linux >= 5.1 (Debian 12 ships 6.1) reads at most 256 bytes of a "#!" line.
SHEBANG_MAX = 254


def _purelib(python):
    out = subprocess.run(
        [python, "-c", 'import sysconfig; print(sysconfig.get_paths()["purelib"])'],
        check=True, stdout=subprocess.PIPE, universal_newlines=True,
    )
    return out.stdout.strip()


def _replace_symlink(target, link):
    if os.path.islink(link):
        if os.readlink(link) == target:
            return
        os.unlink(link)
    elif os.path.exists(link):
        raise SystemExit("%s exists and is not a symlink; remove it first" % link)
    os.symlink(target, link)


def install(repo, venv):
    repo = os.path.abspath(repo)
    venv = os.path.abspath(venv)
    python = os.path.join(venv, "bin", "python")
    if not os.access(python, os.X_OK):
        raise SystemExit("no virtualenv interpreter at %s" % python)

    collections = os.path.join(venv, "collections")
    ns_dir = os.path.join(collections, "ansible_collections", "daemonless")
    os.makedirs(ns_dir, exist_ok=True)
    _replace_symlink(repo, os.path.join(ns_dir, "oci"))

    shebang = "#!%s -IS" % python
    # The kernel splits the interpreter from its single argument at the first
    # blank, so the path itself must not contain any.
    if any(c.isspace() for c in python):
        raise SystemExit("virtualenv path contains whitespace: %r" % python)
    if len(shebang) > SHEBANG_MAX:
        raise SystemExit("launcher #! line longer than %d bytes: %s" % (SHEBANG_MAX, shebang))

    lines = [
        shebang,
        "import sys; sys.path[0:0] = [%r, %r]" % (collections, _purelib(python)),
        # launch() leaves by os._exit: the interpreter's teardown would cost every command ~1.5 ms.
        "from ansible_collections.daemonless.oci.plugins.module_utils._runtime.cli import launch; launch()",
    ]
    launcher = os.path.join(venv, "bin", "ocirt")
    tmp = launcher + ".tmp"
    with open(tmp, "w") as f:
        f.write("\n".join(lines) + "\n")
    os.chmod(tmp, 0o755)
    os.replace(tmp, launcher)
    return launcher


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) > 2 or any(a.startswith("-") for a in argv):
        sys.stderr.write("usage: install_launcher.py [REPO [VENV]]\n")
        return 2
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    repo = argv[0] if argv else here
    venv = argv[1] if len(argv) > 1 else os.path.join(repo, ".venv")
    print("installed %s" % install(repo, venv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
