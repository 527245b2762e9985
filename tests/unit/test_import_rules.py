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
  collection on its path. (To give memory back it loads cffi's backend and
  the `_libc_ffi` tables from files the runtime names, by path, not by
  import: without them it runs the same, only bigger.)
- `_bundle/` (bundles and images) never imports `_ansible/` (the glue that
  knows AnsibleModule).
- `_network/` (CNI networks) imports the standard library and `_runtime/`:
  never Ansible, `_bundle/` or `_ansible/`; its `cni.py` the standard library
  only (it runs alone as a container's poststop hook, like the monitor).
- `_image/` (the registry client and the image store) imports Ansible's
  `ansible.module_utils.urls` and `_runtime/`, never `_bundle/` (which
  builds root filesystems from the store) nor `_ansible/`.

The last tests run the same checks on the sources with one bad import added,
so a rule that stopped seeing its violation would fail here too.
"""
import ast
import os
import sys

import pytest

from helpers import REPO

PACKAGE = "ansible_collections.daemonless.oci.plugins.module_utils"
MODULE_UTILS = os.path.join(REPO, "plugins", "module_utils")
RUNTIME = PACKAGE + "._runtime"
BUNDLE = PACKAGE + "._bundle"
ANSIBLE_GLUE = PACKAGE + "._ansible"
IMAGE = PACKAGE + "._image"
MONITOR = RUNTIME + ".monitor.monitor"
NETWORK = PACKAGE + "._network"
NETWORK_CNI = NETWORK + ".cni"
# What a managed host has besides the standard library: cffi, in ABI mode.
RUNTIME_THIRD_PARTY = frozenset(["_cffi_backend", "cffi"])
STDLIB = frozenset(sys.stdlib_module_names)

# Cycles accepted for now, each with its reason: {frozenset of the modules on it: why}. Keep it empty.
ACCEPTED_CYCLES = {}


LAZY = " (inside a function)"
HINTS = " (for type hints, under TYPE_CHECKING)"


class Import:
    """One imported name: RAW as written (the module of a `from` import), TARGET the module of ours it
    loads (None for anything outside plugins/module_utils), where it is, and how: at module level (""),
    LAZY or for HINTS only. Every kind counts: each is a dependency a reader has to follow."""

    def __init__(self, raw, target, path, line, how):
        self.raw, self.target, self.path, self.line, self.how = raw, target, path, line, how

    @property
    def lazy(self):
        return self.how == LAZY

    def __str__(self):
        where = "%s:%d" % (os.path.relpath(self.path, REPO), self.line)
        name = self.target[len(PACKAGE) + 1:] if self.target else self.raw
        return "%s imports %s%s" % (where, name, self.how)


def module_name(relative):
    """The dotted name of the module in RELATIVE, a path under plugins/module_utils (__init__.py names its package)."""
    parts = relative[:-len(".py")].split(os.sep)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join([PACKAGE] + parts)


def read_sources(root=MODULE_UTILS):
    """{path relative to ROOT: source bytes} of every module under ROOT."""
    sources = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        for filename in sorted(filenames):
            if filename.endswith(".py"):
                path = os.path.join(dirpath, filename)
                with open(path, "rb") as handle:
                    sources[os.path.relpath(path, root)] = handle.read()
    return sources


def raw_imports(tree, name, is_package):
    """[(module as written, [candidate modules it loads, best first], line, how)] of TREE, the module NAME.

    `from P import N` loads P.N when that is a module, else P; how: "" at
    module level, LAZY inside a function (or a lambda) at any depth, HINTS
    under `if TYPE_CHECKING:`."""
    found = []

    def visit(node, how):
        for child in ast.iter_child_nodes(node):
            inner = how
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                inner = LAZY
            elif isinstance(node, ast.If) and child in node.body and isinstance(node.test, ast.Name) \
                    and node.test.id == "TYPE_CHECKING" and not how:
                inner = HINTS
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
    visit(tree, "")
    return found


_PARSED = {}  # (relative path, source) -> raw_imports(...): each test parses only what it changed


def load_imports(sources):
    """{module name: [Import]} for SOURCES, {path relative to plugins/module_utils: source}."""
    parsed = {}
    for relative, source in sources.items():
        name = module_name(relative)
        if (relative, source) not in _PARSED:
            tree = ast.parse(source, relative)
            _PARSED[(relative, source)] = raw_imports(tree, name, relative.endswith("__init__.py"))
        parsed[name] = (os.path.join(MODULE_UTILS, relative), _PARSED[(relative, source)])
    imports = {}
    for name, (path, found) in parsed.items():
        imports[name] = [Import(raw, next((c for c in candidates if c in parsed), None), path, line, how)
                         for raw, candidates, line, how in found]
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
            elif name == NETWORK_CNI and (imp.target is not None or top not in STDLIB):
                problems.append("%s: cni.py runs alone (a poststop hook) and may import the standard library only"
                                % imp)
            elif within(name, NETWORK):
                if imp.target is not None and not (within(imp.target, NETWORK) or within(imp.target, RUNTIME)):
                    problems.append("%s: _network imports only _network and _runtime (never _bundle or _ansible)"
                                    % imp)
                elif imp.target is None and top not in STDLIB and top not in RUNTIME_THIRD_PARTY:
                    problems.append("%s: _network imports only the standard library and _runtime (never Ansible)"
                                    % imp)
            elif within(name, RUNTIME):
                if imp.target is not None and not within(imp.target, RUNTIME):
                    problems.append("%s: _runtime never imports _bundle or _ansible (or anything of ours "
                                    "outside _runtime)" % imp)
                elif imp.target is None and top not in STDLIB and top not in RUNTIME_THIRD_PARTY:
                    problems.append("%s: _runtime imports only the standard library, cffi and _runtime "
                                    "(never Ansible)" % imp)
            elif within(name, BUNDLE) and imp.target is not None and within(imp.target, ANSIBLE_GLUE):
                problems.append("%s: _bundle never imports _ansible" % imp)
            elif within(name, IMAGE) and imp.target is not None and (within(imp.target, BUNDLE)
                                                                     or within(imp.target, ANSIBLE_GLUE)):
                problems.append("%s: _image never imports _bundle or _ansible" % imp)
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
    """One shortest cycle through COMPONENT's first module, as the imports that make it, one per line."""
    first = min(component)
    # Breadth-first from FIRST, inside the component, until an import leads back to FIRST.
    came_by = {}
    frontier = [first]
    while frontier:
        following = []
        for name in frontier:
            for imp in imports[name]:
                if imp.target == first:
                    chain = [imp]
                    while name != first:
                        chain.append(came_by[name])
                        name = module_of(came_by[name], imports)
                    return "\n  ".join(str(link) for link in reversed(chain))
                if imp.target in component and imp.target not in came_by and imp.target != first:
                    came_by[imp.target] = imp
                    following.append(imp.target)
        frontier = following
    raise AssertionError("no cycle through %s" % first)


def module_of(imp, imports):
    """The module whose import IMP is."""
    return next(name for name, found in imports.items() if imp in found)


@pytest.fixture(scope="module")
def sources():
    return read_sources()


@pytest.fixture(scope="module")
def imports(sources):
    return load_imports(sources)


def test_every_module_is_read(imports):
    """The walk finds the layers and the modules the rules name (a moved file must move the rules too)."""
    for name in (MONITOR, NETWORK_CNI, NETWORK + ".attachment", RUNTIME + ".cli", RUNTIME + ".spec", RUNTIME + ".state", BUNDLE + ".bundle",
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
# the checks themselves, on the sources with one bad import added


def tree_with(sources, relative, line, inside_function=False):
    """SOURCES with the file RELATIVE ending in LINE, at module level or inside a function."""
    if inside_function:
        added = "\n\ndef _added_for_the_test():\n    %s\n" % line
    else:
        added = "\n%s\n" % line
    changed = dict(sources)
    changed[relative] = sources[relative] + added.encode()
    return changed


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
    ("_network/attachment.py", "from ansible.module_utils.basic import AnsibleModule", True, "never Ansible"),
    ("_network/conflist.py",
     "from ansible_collections.daemonless.oci.plugins.module_utils._ansible import networks", True,
     "never _bundle or _ansible"),
    ("_network/cni.py",
     "from ansible_collections.daemonless.oci.plugins.module_utils._runtime import jsonio", True,
     "standard library only"),
    ("_image/store.py",
     "from ansible_collections.daemonless.oci.plugins.module_utils._bundle import writer", True,
     "_image never imports _bundle or _ansible"),
    ("_image/client.py",
     "from ansible_collections.daemonless.oci.plugins.module_utils._ansible import module_support", False,
     "_image never imports _bundle or _ansible"),
], ids=["runtime-ansible", "runtime-other-collection", "runtime-bundle", "runtime-glue", "runtime-third-party",
        "monitor-cffi", "monitor-runtime", "bundle-glue", "network-ansible", "network-glue", "network-cni-runtime",
        "image-bundle", "image-glue"])
def test_a_forbidden_import_is_reported(sources, relative, line, inside_function, needle):
    problems = rule_violations(load_imports(tree_with(sources, relative, line, inside_function)))
    assert [p for p in problems if relative in p and needle in p], problems


@pytest.mark.parametrize("inside_function", [False, True], ids=["module-level", "lazy"])
def test_an_added_cycle_is_reported(sources, inside_function):
    # errors.py is imported by nearly every runtime module: it importing one of them closes a cycle.
    line = "from ansible_collections.daemonless.oci.plugins.module_utils._runtime import spec"
    found = import_cycles(load_imports(tree_with(sources, "_runtime/errors.py", line, inside_function)))
    assert any(RUNTIME + ".errors" in component and RUNTIME + ".spec" in component for component in found), found


def test_relative_imports_are_resolved(sources):
    line = "from ..state import Container"  # from _runtime/setup/ up to _runtime/state.py
    imports = load_imports(tree_with(sources, "_runtime/setup/hooks.py", line, inside_function=True))
    assert RUNTIME + ".state" in [imp.target for imp in imports[RUNTIME + ".setup.hooks"]]


def test_an_import_for_type_hints_is_an_edge_too(sources):
    line = "if TYPE_CHECKING:\n    from .state import Container"
    imports = load_imports(tree_with(sources, "_runtime/errors.py", line))
    found = import_cycles(imports)
    cycle = [describe_cycle(imports, component) for component in found if RUNTIME + ".errors" in component]
    assert cycle and "imports _runtime.state" + HINTS in cycle[0], found
