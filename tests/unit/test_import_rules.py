"""The import rules of plugins/module_utils, read from the source with `ast` (nothing is imported).

- No import cycles, counting the imports inside functions (the lazy ones
  that keep `ocirt`'s start-up cheap): a lazy import hides a cycle from
  Python at start-up, not from a reader, who must understand both modules
  before either.
- `_runtime/` (the runtime and `ocirt`: what runs on a managed host) imports
  the standard library, cffi's backend and `_runtime/` itself: never Ansible
  (`ansible`, any other `ansible_collections` package), `_bundle/` or
  `_ansible/`.
- `_runtime/monitor/monitor.py` imports the standard library only: the
  monitor runs its source alone with `python -I -S`, nothing of the
  collection on its path.
- `_bundle/` (bundles and images) never imports `_ansible/` (the glue that
  knows AnsibleModule).

The last tests run the same checks on a copy of the tree with one bad import
added, so a rule that stopped seeing its violation would fail here too.
"""
import ast
import os
import shutil
import sys

import pytest

from helpers import REPO

PACKAGE = "ansible_collections.daemonless.oci.plugins.module_utils"
MODULE_UTILS = os.path.join(REPO, "plugins", "module_utils")
RUNTIME = PACKAGE + "._runtime"
BUNDLE = PACKAGE + "._bundle"
ANSIBLE_GLUE = PACKAGE + "._ansible"
MONITOR = RUNTIME + ".monitor.monitor"
# What a managed host has besides the standard library: cffi, in ABI mode.
RUNTIME_THIRD_PARTY = frozenset(["_cffi_backend", "cffi"])
STDLIB = frozenset(sys.stdlib_module_names)

# Cycles accepted for now, each with its reason: {frozenset of the modules on it: why}. Keep it empty.
ACCEPTED_CYCLES = {}


class Import:
    """One imported name: RAW as written (the module of a `from` import), TARGET the module of ours it
    loads (None for anything outside plugins/module_utils), where it is, and whether it is lazy."""

    def __init__(self, raw, target, path, line, lazy):
        self.raw, self.target, self.path, self.line, self.lazy = raw, target, path, line, lazy

    def __str__(self):
        where = "%s:%d" % (os.path.relpath(self.path, REPO), self.line)
        name = self.target[len(PACKAGE) + 1:] if self.target else self.raw
        return "%s imports %s%s" % (where, name, " (inside a function)" if self.lazy else "")


def module_name(root, path):
    """The dotted name of the module in PATH under ROOT (a package's __init__.py names the package)."""
    parts = os.path.relpath(path, root)[:-len(".py")].split(os.sep)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join([PACKAGE] + parts)


def source_files(root):
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        for filename in sorted(filenames):
            if filename.endswith(".py"):
                yield os.path.join(dirpath, filename)


def raw_imports(tree, name, is_package):
    """[(module as written, [candidate modules it loads, best first], line, lazy)] of TREE, the module NAME.

    `from P import N` loads P.N when that is a module, else P; lazy: inside a
    function (or a lambda), at any depth."""
    found = []

    def visit(node, lazy):
        for child in ast.iter_child_nodes(node):
            inner = lazy or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                found.extend((alias.name, [alias.name], child.lineno, inner) for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                parent = child.module or ""
                if child.level:
                    base = name.split(".") if is_package else name.split(".")[:-1]
                    base = base[:len(base) - (child.level - 1)]
                    parent = ".".join(base + ([child.module] if child.module else []))
                found.extend((parent, ["%s.%s" % (parent, alias.name), parent], child.lineno, inner)
                             for alias in child.names)
            visit(child, inner)
    visit(tree, False)
    return found


def load_imports(root=MODULE_UTILS):
    """{module name: [Import]} for every module under ROOT."""
    parsed = {}
    for path in source_files(root):
        with open(path, "rb") as handle:
            tree = ast.parse(handle.read(), path)
        name = module_name(root, path)
        parsed[name] = (path, raw_imports(tree, name, path.endswith("__init__.py")))
    imports = {}
    for name, (path, found) in parsed.items():
        imports[name] = [Import(raw, next((c for c in candidates if c in parsed), None), path, line, lazy)
                         for raw, candidates, line, lazy in found]
    return imports


def within(name, package):
    return name == package or name.startswith(package + ".")


def rule_violations(imports):
    """Every import that breaks a layer rule, as a sentence naming the file, the line and the rule."""
    problems = []
    for name, found in sorted(imports.items()):
        for imp in found:
            top = imp.raw.split(".")[0]
            if name == MONITOR and (imp.target is not None or top not in STDLIB):
                problems.append("%s: the monitor runs alone and may import the standard library only" % imp)
            elif within(name, RUNTIME):
                if imp.target is not None and not within(imp.target, RUNTIME):
                    problems.append("%s: _runtime never imports _bundle or _ansible (or anything of ours "
                                    "outside _runtime)" % imp)
                elif imp.target is None and top not in STDLIB and top not in RUNTIME_THIRD_PARTY:
                    problems.append("%s: _runtime imports only the standard library, cffi and _runtime "
                                    "(never Ansible)" % imp)
            elif within(name, BUNDLE) and imp.target is not None and within(imp.target, ANSIBLE_GLUE):
                problems.append("%s: _bundle never imports _ansible" % imp)
    return problems


def import_cycles(imports):
    """Every strongly connected component of the import graph that holds a cycle, as a frozenset of modules."""
    graph = dict((name, sorted(set(imp.target for imp in found if imp.target is not None and imp.target != name)))
                 for name, found in imports.items())
    index, low, stack, on_stack, components = {}, {}, [], set(), []

    def connect(node):
        # Tarjan's algorithm, iteratively: the graph is small, but recursion depth is not worth reasoning about.
        work = [(node, iter(graph[node]))]
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        while work:
            current, targets = work[-1]
            for target in targets:
                if target not in index:
                    index[target] = low[target] = len(index)
                    stack.append(target)
                    on_stack.add(target)
                    work.append((target, iter(graph[target])))
                    break
                if target in on_stack:
                    low[current] = min(low[current], index[target])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[current])
                if low[current] == index[current]:
                    component = set()
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.add(member)
                        if member == current:
                            break
                    if len(component) > 1:
                        components.append(frozenset(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return components


def describe_cycle(imports, component):
    """The imports that tie COMPONENT's modules together, one per line."""
    lines = [str(imp) for name in sorted(component) for imp in imports[name]
             if imp.target in component and imp.target != name]
    return "\n  ".join(sorted(set(lines), key=lines.index))


@pytest.fixture(scope="module")
def imports():
    return load_imports()


def test_every_module_is_read(imports):
    """The walk finds the layers and the modules the rules name (a moved file must move the rules too)."""
    for name in (MONITOR, RUNTIME + ".cli", RUNTIME + ".spec", RUNTIME + ".state", BUNDLE + ".bundle",
                 ANSIBLE_GLUE + ".module_support"):
        assert name in imports, name
    runtime_edges = [imp for name in imports if within(name, RUNTIME) for imp in imports[name] if imp.target]
    assert any(imp.lazy for imp in runtime_edges), "no lazy import found: the walk misses function bodies"


def test_no_import_cycles(imports):
    found = import_cycles(imports)
    unexplained = [component for component in found if component not in ACCEPTED_CYCLES]
    assert not unexplained, "import cycles (lazy imports count), each with the imports that close it:\n" + "\n".join(
        "- " + describe_cycle(imports, component) for component in unexplained)
    stale = [sorted(component) for component in ACCEPTED_CYCLES if component not in found]
    assert not stale, "accepted cycles that no longer exist, remove them: %s" % stale


def test_layers_import_only_what_they_may(imports):
    problems = rule_violations(imports)
    assert not problems, "\n".join(problems)


# --------------------------------------------------------------------------
# the checks themselves, on a copy of the tree with one bad import added


def tree_with(tmp_path, relative, line, inside_function=False):
    """A copy of plugins/module_utils whose file RELATIVE ends with LINE, at module level or in a function."""
    root = str(tmp_path / "module_utils")
    shutil.copytree(MODULE_UTILS, root, ignore=shutil.ignore_patterns("__pycache__"))
    with open(os.path.join(root, relative), "a") as handle:
        if inside_function:
            handle.write("\n\ndef _added_for_the_test():\n    %s\n" % line)
        else:
            handle.write("\n%s\n" % line)
    return root


@pytest.mark.parametrize("relative,line,inside_function,needle", [
    ("_runtime/spec.py", "from ansible.module_utils.basic import AnsibleModule", True, "never Ansible"),
    ("_runtime/cli.py", "import ansible_collections.community.general.plugins.module_utils.version", False,
     "never Ansible"),
    ("_runtime/state.py", "from ansible_collections.daemonless.oci.plugins.module_utils._bundle import bundle",
     True, "never imports _bundle or _ansible"),
    ("_runtime/operations/create.py",
     "from ansible_collections.daemonless.oci.plugins.module_utils._ansible.reconcile import plan", False,
     "never imports _bundle or _ansible"),
    ("_runtime/setup/mounts.py", "import yaml", True, "only the standard library, cffi and _runtime"),
    ("_runtime/monitor/monitor.py", "import _cffi_backend", True, "standard library only"),
    ("_runtime/monitor/monitor.py",
     "from ansible_collections.daemonless.oci.plugins.module_utils._runtime import jsonio", True,
     "standard library only"),
    ("_bundle/writer.py",
     "from ansible_collections.daemonless.oci.plugins.module_utils._ansible import module_support", True,
     "_bundle never imports _ansible"),
], ids=["runtime-ansible", "runtime-other-collection", "runtime-bundle", "runtime-glue", "runtime-third-party",
        "monitor-cffi", "monitor-runtime", "bundle-glue"])
def test_a_forbidden_import_is_reported(tmp_path, relative, line, inside_function, needle):
    problems = rule_violations(load_imports(tree_with(tmp_path, relative, line, inside_function)))
    assert [p for p in problems if relative in p and needle in p], problems


@pytest.mark.parametrize("inside_function", [False, True], ids=["module-level", "lazy"])
def test_an_added_cycle_is_reported(tmp_path, inside_function):
    # errors.py is imported by nearly every runtime module: it importing one of them closes a cycle.
    line = "from ansible_collections.daemonless.oci.plugins.module_utils._runtime import spec"
    found = import_cycles(load_imports(tree_with(tmp_path, "_runtime/errors.py", line, inside_function)))
    assert any(RUNTIME + ".errors" in component and RUNTIME + ".spec" in component for component in found), found


def test_relative_imports_are_resolved(tmp_path):
    line = "from ..state import Container"  # from _runtime/setup/ up to _runtime/state.py
    imports = load_imports(tree_with(tmp_path, "_runtime/setup/hooks.py", line, inside_function=True))
    assert RUNTIME + ".state" in [imp.target for imp in imports[RUNTIME + ".setup.hooks"]]
