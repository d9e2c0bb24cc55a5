"""Objects named by import path, ``package.module:Name``, as a config names a user's layer, cell
or task. Modules resolve as ``python -m`` resolves them: the working directory first, then
``PYTHONPATH`` and the installed packages.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

from forecast.config import one_line


def is_import_path(reference: str) -> bool:
    """Whether ``reference`` reads ``package.module:Name`` rather than a built-in name."""
    return ":" in reference


def import_object(reference: str) -> Any:
    """The object ``reference`` (``package.module:Name``) names.

    Raises:
        ImportError: the module cannot be imported, or has no such name; the message is one
            line that names both.
    """
    module_name, _, attribute = reference.partition(":")
    if not module_name or not attribute:
        raise ImportError(f"{reference!r} is not an import path; write package.module:Name")
    cwd = str(Path.cwd())
    if cwd not in sys.path:  # as `python -m` puts it first; a console script does not
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except Exception as error:  # a missing module, or one that fails as it is imported
        raise ImportError(f"cannot import {module_name!r}: {one_line(error)}") from None
    try:
        value = module
        for part in attribute.split("."):
            value = getattr(value, part)
    except AttributeError:
        raise ImportError(f"module {module_name!r} has no {attribute!r}") from None
    return value


def resolve(reference: str, built_in: dict[str, Any], kind: str) -> Any:
    """``built_in[reference]``, or the object an import path names.

    Raises:
        ValueError: an unknown name (listing the built-in ones) or an import path that does not
            import; one line.
    """
    if not is_import_path(reference):
        if reference not in built_in:
            raise ValueError(
                f"unknown {kind} {reference!r}; choose one of {sorted(built_in)} "
                "or give an import path, package.module:Name"
            )
        return built_in[reference]
    try:
        return import_object(reference)
    except ImportError as error:
        raise ValueError(str(error)) from None


def public_objects(module_names: list[str]) -> dict[str, Any]:
    """Every public class and function of the named modules, by name: the ``custom_objects``
    Keras needs to load a model whose config names a user's layer, cell or activation."""
    found: dict[str, Any] = {}
    for module_name in module_names:
        module = importlib.import_module(module_name)
        found.update(
            (name, value)
            for name, value in vars(module).items()
            if not name.startswith("_") and callable(value)
        )
    return found
