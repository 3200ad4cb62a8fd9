"""A light package loads its submodules on demand without its ``__init__``, and becomes
the ordinary package on the first read of anything else."""

from __future__ import annotations

import importlib
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from lasched.kube import lazypkg

INIT = """\
'''A package whose __init__ is expensive.'''
from __future__ import annotations
__version__ = "1.2"
import {name}_runs
{name}_runs.RUNS.append(__name__)
from {name}.heavy import Heavy
from {name} import sibling
"""


@pytest.fixture
def pkg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh package ``name`` on sys.path; its __init__ counts its runs in ``name_runs``."""
    name = f"lazypkg_probe_{uuid.uuid4().hex[:8]}"
    root = tmp_path / name
    (root / "sub").mkdir(parents=True)
    (root / "__init__.py").write_text(INIT.format(name=name))
    (root / "heavy.py").write_text("class Heavy:\n    pass\n")
    # A submodule that imports a sibling and reads the package's version while it loads.
    (root / "light.py").write_text(
        f"from {name} import sibling\nfrom {name} import __version__\nVALUE = sibling.X\n"
    )
    (root / "sibling.py").write_text("X = 42\n")
    (root / "sub" / "__init__.py").write_text(
        f"import {name}_runs\n{name}_runs.RUNS.append(__name__)\n"
    )
    (root / "sub" / "leaf.py").write_text("LEAF = True\n")
    (tmp_path / f"{name}_runs.py").write_text("RUNS: list[str] = []\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    yield name
    for m in [m for m in sys.modules if m == name or m.startswith((f"{name}.", f"{name}_"))]:
        del sys.modules[m]


def runs(name: str) -> list[str]:
    runs: list[str] = importlib.import_module(f"{name}_runs").RUNS
    return runs


def test_a_light_package_runs_no_init_and_keeps_its_constants(pkg: str) -> None:
    module = lazypkg.light_package(pkg)
    assert sys.modules[pkg] is module
    assert lazypkg.is_light(module)
    assert module.__version__ == "1.2"
    assert module.__doc__ == "A package whose __init__ is expensive."
    assert runs(pkg) == []


def test_its_submodules_load_on_demand_without_init(pkg: str) -> None:
    module = lazypkg.light_package(pkg)
    light = importlib.import_module(f"{pkg}.light")
    assert light.VALUE == 42
    assert module.light is light
    assert module.sibling.X == 42  # read as an attribute: imported, still light
    assert runs(pkg) == []
    assert lazypkg.is_light(module)


def test_any_other_attribute_completes_it_once(pkg: str) -> None:
    module = lazypkg.light_package(pkg)
    importlib.import_module(f"{pkg}.light")
    heavy = module.Heavy
    assert heavy is sys.modules[f"{pkg}.heavy"].Heavy
    assert runs(pkg) == [pkg]
    assert not lazypkg.is_light(module)
    assert "__getattr__" not in vars(module)
    assert sys.modules[pkg] is module
    with pytest.raises(AttributeError):
        _ = module.missing
    assert runs(pkg) == [pkg]


def test_from_import_completes_it(pkg: str) -> None:
    lazypkg.light_package(pkg)
    exec(f"from {pkg} import Heavy", {})
    assert runs(pkg) == [pkg]


def test_a_missing_name_still_raises_after_completing(pkg: str) -> None:
    module = lazypkg.light_package(pkg)
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        _ = module.nothing
    assert runs(pkg) == [pkg]
    assert not lazypkg.is_light(module)


def test_a_light_subpackage_makes_its_parents_light(pkg: str) -> None:
    sub = lazypkg.light_package(f"{pkg}.sub")
    parent = sys.modules[pkg]
    assert lazypkg.is_light(sub) and lazypkg.is_light(parent)
    assert parent.sub is sub
    assert importlib.import_module(f"{pkg}.sub.leaf").LEAF
    assert runs(pkg) == []


def test_an_imported_package_is_left_as_it_is(pkg: str) -> None:
    whole = importlib.import_module(pkg)
    assert lazypkg.light_package(pkg) is whole
    assert not lazypkg.is_light(whole)
    assert runs(pkg) == [pkg]


def test_a_module_is_not_a_package(pkg: str) -> None:
    with pytest.raises(ModuleNotFoundError):
        lazypkg.light_package(f"{pkg}_runs")
    with pytest.raises(ModuleNotFoundError):
        lazypkg.light_package(f"{pkg}_absent")
