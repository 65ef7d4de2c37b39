"""The package's shape: imports point one way, functions fit on a screen, public names are documented.

These read the source as text (``ast``), so they hold for every module, also the ones no other
test imports.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "hf_vocabswap"
MAX_FUNCTION_LINES = 80
# A function-level import must say why it is not at the top: an optional dependency or start-up time.
IMPORT_REASONS = ("optional", "start-up", "startup", "child process", "lazy")


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _resolve(module: str, node: ast.ImportFrom, is_package: bool) -> list[str]:
    """Absolute module names an ``ImportFrom`` node refers to (inside the package only)."""
    if node.level == 0:
        base = node.module or ""
    else:
        parts = module.split(".")
        if not is_package:
            parts = parts[:-1]
        parts = parts[: len(parts) - (node.level - 1)]
        base = ".".join(parts + ([node.module] if node.module else []))
    names = [f"{base}.{a.name}" for a in node.names]
    return [n if n in MODULES else base for n in names if (n in MODULES or base in MODULES)]


def _top_level_imports(module: str, path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.ImportFrom):
            found.update(_resolve(module, node, path.name == "__init__.py"))
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name in MODULES)
    found.discard(module)
    return found


def _functions(tree):
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node


def _code_lines(node, source_lines: list[str]) -> int:
    """Lines of code of a function: no docstring, blank lines or comment-only lines."""
    body = node.body
    start = body[0].lineno
    if isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
        start = body[1].lineno if len(body) > 1 else node.end_lineno + 1
    lines = source_lines[start - 1 : node.end_lineno]
    return sum(1 for line in lines if line.strip() and not line.strip().startswith("#"))


def test_no_import_cycle_in_the_package():
    graph = {m: _top_level_imports(m, p) for m, p in MODULES.items()}
    # A package's __init__ re-exports its children; children importing their own package's
    # __init__ would be the cycle this test is about, so the edge parent -> child is kept.
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for dep in sorted(graph.get(m, ())):
            if state.get(dep) == 1:
                cycles.append(stack[stack.index(dep):] + [dep])
            elif dep not in state:
                visit(dep)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_no_function_longer_than_80_lines_of_code():
    long = []
    for module, path in MODULES.items():
        text = path.read_text(encoding="utf-8")
        lines = text.splitlines()
        for fn in _functions(ast.parse(text)):
            n = _code_lines(fn, lines)
            if n > MAX_FUNCTION_LINES:
                long.append(f"{module}.{fn.name}: {n}")
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines of code: {', '.join(long)}"


def test_imports_inside_functions_say_why():
    unexplained = []
    for module, path in MODULES.items():
        text = path.read_text(encoding="utf-8")
        lines = text.splitlines()
        for fn in _functions(ast.parse(text)):
            for node in ast.walk(fn):
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    here = lines[node.lineno - 1].lower()
                    above = lines[node.lineno - 2].lower() if node.lineno > 1 else ""
                    if not any(r in here or (above.strip().startswith("#") and r in above) for r in IMPORT_REASONS):
                        unexplained.append(f"{module}:{node.lineno}")
    assert not unexplained, "imports inside functions without a reason (optional dependency / start-up): " + ", ".join(unexplained)


def _public_definitions(tree):
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and not node.name.startswith("_"):
            yield node, None
            if isinstance(node, ast.ClassDef):
                for item in node.body:
                    if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) and not item.name.startswith("_"):
                        yield item, node


def _base_names(node: ast.ClassDef) -> list[str]:
    return [b.id if isinstance(b, ast.Name) else getattr(b, "attr", "") for b in node.bases]


def _documented_methods() -> dict[str, set[str]]:
    """class name -> names of the methods it or its bases (transitively) document, over the package."""
    own: dict[str, set[str]] = {}
    bases: dict[str, list[str]] = {}
    for path in MODULES.values():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef):
                own.setdefault(node.name, set()).update(
                    f.name for f in node.body if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef)) and ast.get_docstring(f)
                )
                bases.setdefault(node.name, []).extend(_base_names(node))

    def collect(name: str, seen: set[str]) -> set[str]:
        if name in seen:
            return set()
        seen.add(name)
        out = set(own.get(name, ()))
        for b in bases.get(name, ()):
            out |= collect(b, seen)
        return out

    return {name: collect(name, set()) for name in own}


def test_every_public_function_and_class_has_a_docstring():
    documented = _documented_methods()
    missing = []
    for module, path in MODULES.items():
        for node, owner in _public_definitions(ast.parse(path.read_text(encoding="utf-8"))):
            if owner is not None and any(isinstance(d, ast.Name) and d.id == "property" for d in node.decorator_list):
                continue  # properties are documented by their class's Attributes
            if owner is not None and owner.name.endswith("Config"):
                continue  # config classes document their fields once, in the class
            if owner is not None and any(node.name in documented.get(b, ()) for b in _base_names(owner)):
                continue  # an override of a documented method of its base class
            if ast.get_docstring(node) is None:
                missing.append(f"{module}.{owner.name + '.' if owner else ''}{node.name}")
    assert not missing, "public names without a docstring: " + ", ".join(missing)


@pytest.mark.parametrize("module", ["hf_vocabswap.record", "hf_vocabswap.plan", "hf_vocabswap.progress", "hf_vocabswap.errors"])
def test_bottom_modules_import_nothing_above_them(module):
    above = {"hf_vocabswap.transplant", "hf_vocabswap.result", "hf_vocabswap.card", "hf_vocabswap.hub", "hf_vocabswap.streaming", "hf_vocabswap.cli"}
    assert not (_top_level_imports(module, MODULES[module]) & above)


def test_every_progress_bar_goes_through_the_progress_module():
    """``-q`` and ``disable_progress_bars(group)`` reach a bar only if it is made by ``hf_vocabswap.progress``."""
    offenders = []
    for module, path in MODULES.items():
        if module == "hf_vocabswap.progress":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""] + [f"{node.module}.{alias.name}" for alias in node.names]
            if any(name.split(".")[0] == "tqdm" or name.endswith(".tqdm") for name in names):
                offenders.append(f"{module}:{node.lineno}")
    assert not offenders, f"tqdm imported outside hf_vocabswap.progress (use progress.progress_bar): {offenders}"
