"""A package registered without running its ``__init__``, completed on first need.

Some packages' ``__init__`` imports everything they hold (kubernetes_asyncio's
client: every API and model, some 850 modules and 35 MB), while a program uses a
few of their submodules. :func:`light_package` puts the package in
``sys.modules`` as a bare module whose ``__path__`` is the real directory, so its
submodules import on demand as usual (reading one as an attribute imports it).
Nothing that uses the whole package breaks: the first read of any other
attribute the bare module lacks (``client.CoreV1Api``, ``from
kubernetes_asyncio.client import V1Pod``) runs the real ``__init__`` in the same
module object, then answers; after that the module is the ordinary one.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import sys
import threading
from importlib.abc import Loader
from importlib.machinery import PathFinder
from types import ModuleType
from typing import Any

# The attribute that marks a module as light; holds its completion.
_MARK = "__lazypkg_completion__"


class _Completion:
    """Runs a light package's real ``__init__`` once, on the first missing attribute."""

    def __init__(self, module: ModuleType) -> None:
        self.module = module
        # Re-entrant: the real __init__'s own imports read the package's attributes
        # (``from pkg import submodule``) while it runs, on the same thread.
        self.lock = threading.RLock()
        self.running = False

    def getattr(self, name: str) -> Any:
        """The module-level ``__getattr__`` (PEP 562) of the light package."""
        package = self.module.__name__
        missing = AttributeError(f"module {package!r} has no attribute {name!r}")
        if self.submodule(name):
            # A submodule is no reason to run __init__: one that imports a sibling
            # (``from pkg import sibling``) while the package is light would otherwise
            # run __init__ in the middle of its own import, which imports it back.
            return importlib.import_module(f"{package}.{name}")
        with self.lock:
            ns = vars(self.module)
            if self.running or ns.get(_MARK) is not self:
                # The real __init__ runs on this thread (or ran on another): answer as
                # the ordinary package does, present or missing.
                if name in ns:
                    return ns[name]
                raise missing
            self.complete()
        if name in vars(self.module):
            return vars(self.module)[name]
        raise missing

    def submodule(self, name: str) -> bool:
        path = vars(self.module).get("__path__")
        return PathFinder.find_spec(f"{self.module.__name__}.{name}", path) is not None

    def complete(self) -> None:
        spec = self.module.__spec__
        assert spec is not None and spec.loader is not None
        self.running = True
        try:
            spec.loader.exec_module(self.module)
        finally:
            self.running = False
        # The ordinary package from now on: missing attributes raise as usual.
        vars(self.module).pop("__getattr__", None)
        vars(self.module).pop(_MARK, None)


def light_package(name: str) -> ModuleType:
    """The package ``name`` as imported, or registered light (its parents too) if it
    is not imported yet. Raises :class:`ModuleNotFoundError` when it is not a package.

    Call it before anything imports the package or its submodules; a package already
    imported (whole or light) is returned as it is.
    """
    if (existing := sys.modules.get(name)) is not None:
        return existing
    parent_name, _, child = name.rpartition(".")
    parent = light_package(parent_name) if parent_name else None
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None or spec.submodule_search_locations is None:
        raise ModuleNotFoundError(f"no package named {name!r}", name=name)
    module = importlib.util.module_from_spec(spec)
    _run_leading_constants(module, spec.loader)
    completion = _Completion(module)
    vars(module)[_MARK] = completion
    vars(module)["__getattr__"] = completion.getattr
    sys.modules[name] = module
    if parent is not None:
        # What the import system does for a submodule: the parent names it.
        setattr(parent, child, module)
    return module


def _run_leading_constants(module: ModuleType, loader: Loader) -> None:
    """Run the literal assignments that open the package's ``__init__`` (``__version__ =
    "1.0"``), up to its first other statement.

    Submodules read such constants from their package while they load (kubernetes_asyncio's
    dynamic.discovery imports ``__version__``); reading them must not run ``__init__``
    then, in the middle of that submodule's import, which ``__init__`` imports again.
    """
    get_source = getattr(loader, "get_source", None)
    source = get_source(module.__name__) if get_source is not None else None
    if not source:
        return
    # Only the head of the source is parsed: a generated __init__ can be thousands of
    # import lines, which take longer to parse than the package's modules to load.
    head = []
    for line in source.splitlines():
        if line.startswith(("import ", "from ")) and not line.startswith("from __future__"):
            break
        head.append(line)
    try:
        tree = ast.parse("\n".join(head))
    except SyntaxError:  # the head cut a statement: no constants then
        return
    leading: list[ast.stmt] = []
    for stmt in tree.body:
        if isinstance(stmt, ast.Expr | ast.Assign) and isinstance(stmt.value, ast.Constant):
            leading.append(stmt)
        elif not (isinstance(stmt, ast.ImportFrom) and stmt.module == "__future__"):
            break
    code = compile(ast.Module(body=leading, type_ignores=[]), module.__file__ or "<init>", "exec")
    exec(code, vars(module))


def is_light(module: ModuleType) -> bool:
    """Whether ``module`` is a light package whose ``__init__`` has not run yet."""
    return _MARK in vars(module)
