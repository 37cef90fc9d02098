"""The evaluation reads as stages in the order data flows; no module imports from a later stage."""

from __future__ import annotations

import ast
import os

from conftest import REPO

# earliest first; a module may import from its own layer and the ones before it
LAYERS = [
    ("bottom", ("wsol.errors", "wsol.registry", "wsol.io", "wsol.ops", "wsol.progress", "wsol.schema",
                "wsol.extras", "wsol.allocator", "wsol.conf", "wsol.version")),
    ("data", ("wsol.data",)),
    ("scoring", ("wsol.models", "wsol.cams", "wsol.scoring")),
    ("maps", ("wsol.maps", "wsol.faithfulness")),
    ("localize", ("wsol.localize",)),
    ("config", ("wsol.config",)),
    ("metrics", ("wsol.metrics",)),
    ("state", ("wsol.state", "wsol.identity", "wsol.cache", "wsol.keys")),
    ("stages", ("wsol.stages",)),
    ("loop", ("wsol.pipeline",)),
    ("outputs", ("wsol.report",)),
    ("api", ("wsol", "wsol.api", "wsol.datasets")),  # "wsol": the package's own __init__ only
    ("entry points", ("wsol.run", "wsol.aggregate", "wsol.select", "wsol.merge", "wsol.callbacks", "wsol.cli")),
]


def _layer(module: str) -> int:
    best = None
    for i, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if prefix == "wsol" and module != "wsol":  # the package itself, not everything in it
                continue
            if (module == prefix or module.startswith(prefix + ".")) and (best is None or len(prefix) > best[1]):
                best = (i, len(prefix))
    assert best is not None, f"{module} belongs to no layer"
    return best[0]


def _modules():
    root = os.path.join(REPO, "wsol")
    for folder, _, files in os.walk(root):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                parts = os.path.relpath(path, REPO)[:-3].split(os.sep)
                yield ".".join(parts[:-1] if parts[-1] == "__init__" else parts), path, parts[-1] == "__init__"


def _imports(module: str, path: str, package: bool) -> set[str]:
    """Every wsol module ``path`` imports, at the top or inside a function."""
    with open(path) as f:
        tree = ast.parse(f.read())
    here = module.split(".") if package else module.split(".")[:-1]
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("wsol")}
        elif isinstance(node, ast.ImportFrom):
            base = (here[: len(here) - node.level + 1] if node.level else []) + (node.module or "").split(".")
            name = ".".join(p for p in base if p)
            if name.startswith("wsol"):
                out.add(name)
    return out


def test_no_import_from_a_later_stage():
    backwards = []
    for module, path, package in _modules():
        for imported in _imports(module, path, package):
            if _layer(imported) > _layer(module):
                backwards.append(f"{module} ({LAYERS[_layer(module)][0]}) imports {imported} "
                                 f"({LAYERS[_layer(imported)][0]})")
    assert not backwards, backwards


def test_every_module_has_a_layer():
    assert all(_layer(module) is not None for module, _, _ in _modules())
