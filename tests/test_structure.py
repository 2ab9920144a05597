"""The code base stays easy to change: no import cycle in the package or the benchmarks, no module over 500 lines, no
function over 80 lines, and every harness option declared once (in CompareConfig, from which the CLI is built)."""
from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "trainact"
BENCHMARKS = SRC.parents[1] / "benchmarks"


def _modules(root: Path = SRC) -> dict[str, Path]:
    return {".".join(p.relative_to(root.parent).with_suffix("").parts).removesuffix(".__init__"): p
            for p in sorted(root.rglob("*.py"))}


def _entry_point(node) -> bool:
    """`if __name__ == "__main__":` runs only in the program itself, whose module is `__main__`: no cycle there."""
    test = getattr(node, "test", None)
    return (isinstance(node, ast.If) and isinstance(test, ast.Compare) and isinstance(test.left, ast.Name)
            and test.left.id == "__name__" and [getattr(c, "value", None) for c in test.comparators] == ["__main__"])


def _walk(node):
    yield node
    for child in ast.iter_child_nodes(node):
        if not _entry_point(child):
            yield from _walk(child)


def _imports(name: str, path: Path, known: set) -> set:
    """The project modules `name` imports, at module level or inside functions (a lazy import is still a cycle)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in _walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            for alias in node.names:
                full = f"{base}.{alias.name}"
                out.add(full if full in known else base)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return {m for m in out if m in known and m != name}


def test_no_import_cycle_in_the_package_or_the_benchmarks():
    mods = {**_modules(SRC), **_modules(BENCHMARKS)}
    graph = {name: _imports(name, path, set(mods)) for name, path in mods.items()}
    # a package's __init__ re-exports its modules: an edge from a module to its own package is not a cycle
    graph = {n: {m for m in deps if not n.startswith(m + ".")} for n, deps in graph.items()}
    state: dict = {}

    def visit(n, stack):
        state[n] = "open"
        for m in sorted(graph[n]):
            assert state.get(m) != "open", f"import cycle: {' -> '.join(stack + [n, m])}"
            if m not in state:
                visit(m, stack + [n])
        state[n] = "done"

    for n in sorted(graph):
        if n not in state:
            visit(n, [])


def test_modules_and_functions_stay_short():
    long_modules, long_functions = [], []
    for name, path in _modules().items():
        text = path.read_text()
        if text.count("\n") > 500:
            long_modules.append(f"{name} ({text.count(chr(10))} lines)")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > 80:
                    long_functions.append(f"{name}.{node.name} ({length} lines)")
    assert not long_modules, f"modules over 500 lines: {long_modules}"
    assert not long_functions, f"functions over 80 lines: {long_functions}"


def test_every_harness_option_is_declared_once():
    """Each CompareConfig field is declared with its flag, help and check in config.py, and the CLI takes its
    `compare` options from those declarations alone: no `add_argument` in the package names a config option's flag
    or field, and the parser's options are exactly the declared ones, each stored under its field's name."""
    import dataclasses

    from trainact.harness.cli import build_parser
    from trainact.harness.config import CompareConfig
    from trainact.harness.options import declarations

    declared = {d.name: d.flag for d in declarations(CompareConfig)}  # TypeError if a field is not declared
    assert list(declared) == [f.name for f in dataclasses.fields(CompareConfig)]
    spelled = set(declared) | set(declared.values())
    for name, path in _modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "add_argument":
                words = {a.value for a in [*node.args, *(k.value for k in node.keywords)]
                         if isinstance(a, ast.Constant) and isinstance(a.value, str)}
                assert not words & spelled, f"{name}:{node.lineno} declares option {words & spelled} again"

    compare = build_parser()._subparsers._group_actions[0].choices["compare"]
    actions = [a for a in compare._actions if a.dest not in ("help", "debug")]
    assert sorted(a.dest for a in actions) == sorted(declared)  # each field once, nothing else
    assert {a.dest: a.option_strings for a in actions} == {n: [flag] for n, flag in declared.items()}


ROOT = SRC.parents[1]
PROJECT = ("trainact", "benchmarks", "tests", "helpers", "oracle", "multiproc")  # the test helper modules too


def _python_files(*folders: str) -> list[Path]:
    return [p for f in folders for p in sorted((ROOT / f).rglob("*.py"))]


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def test_no_module_imports_another_modules_private_names():
    """Modules meet at public names: no `from x import _y` across modules, and (outside the white-box tests) no
    `module._y` on an imported project module."""
    found = []
    for path in _python_files("src", "benchmarks", "tests"):
        tree = ast.parse(path.read_text())
        modules = set()  # local names bound to project modules
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module != "__future__":
                project = node.level > 0 or (node.module or "").split(".")[0] in PROJECT
                found += [f"{path.relative_to(ROOT)}:{node.lineno} imports {a.name}" for a in node.names
                          if _private(a.name)]
                modules |= {a.asname or a.name for a in node.names if project and not _private(a.name)}
            elif isinstance(node, ast.Import):
                modules |= {a.asname or a.name.split(".")[0] for a in node.names if a.name.split(".")[0] in PROJECT}
        if "tests" in path.relative_to(ROOT).parts[:1]:  # white-box tests may read private names
            continue
        found += [f"{path.relative_to(ROOT)}:{n.lineno} reads {n.value.id}.{n.attr}" for n in ast.walk(tree)
                  if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id in modules
                  and _private(n.attr)]
    assert not found, "private names used across modules:\n" + "\n".join(found)


def test_benchmarks_are_a_package_without_path_edits():
    edits = [f"{p.relative_to(ROOT)}:{i}" for p in _python_files("benchmarks", "tests")
             for i, line in enumerate(p.read_text().splitlines(), 1)
             if p.name != "test_structure.py" and ("sys.path.insert" in line or "sys.path.append" in line)]
    assert (ROOT / "benchmarks" / "__init__.py").is_file()
    assert not edits, f"sys.path edits (run benchmarks as `python -m benchmarks.X`): {edits}"
