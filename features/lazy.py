"""A package's public names, imported from their modules on first use.

A package ``__init__`` names its API in ``__all__`` (as LightGBM's does) without importing every
module up front: MLflow, LightGBM and BentoML take seconds to import, and a light entry point
(``import training.settings``, the CLI's start) should not pay for them."""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module
from typing import Any


def public_names(
    package: str, modules: dict[str, tuple[str, ...]]
) -> tuple[list[str], Callable[[str], Any]]:
    """``__all__`` and a module-level ``__getattr__`` for ``package``, whose public names are
    given by the module (within the package) that holds each."""
    module_of = {name: module for module, names in modules.items() for name in names}

    def attribute(name: str) -> Any:
        if name not in module_of:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(import_module(f"{package}.{module_of[name]}"), name)

    return list(module_of), attribute
