"""The flow registry: imports flow modules explicitly and indexes their flows.

``HUB_FLOWS`` names modules or packages (comma-separated, default ``flows``).
A package is imported with every module inside it. A module that fails to
import stops loading with a one-line error naming the file and line.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
import traceback
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import ModuleType

from hub.errors import FlowDefinitionError, FlowNotFound
from hub.flow import Flow, SubFlow


class FlowLoadError(FlowDefinitionError):
    """A flow module could not be imported."""


class Registry:
    """Flows by name. Build with :meth:`load` or from ``Flow`` objects (tests)."""

    def __init__(self, flows: Iterable[Flow] = ()) -> None:
        self._flows: dict[str, Flow] = {}
        for f in flows:
            self.add(f)

    def add(self, flow: Flow) -> None:
        other = self._flows.get(flow.name)
        if other is not None and other is not flow:
            raise FlowDefinitionError(
                f"two flows are named {flow.name!r} (modules {other.module} and {flow.module})"
            )
        self._flows[flow.name] = flow

    def get(self, name: str) -> Flow:
        try:
            return self._flows[name]
        except KeyError:
            known = ", ".join(sorted(self._flows)) or "none loaded"
            raise FlowNotFound(f"unknown flow {name!r}; known flows: {known}") from None

    def __iter__(self) -> Iterator[Flow]:
        return iter(sorted(self._flows.values(), key=lambda f: f.name))

    def __contains__(self, name: object) -> bool:
        return name in self._flows

    def check(self) -> None:
        """Fail if a SubFlow names an unknown flow, or one webhook name is declared twice."""
        from hub.triggers import Webhook

        hooks: dict[str, str] = {}
        for f in self._flows.values():
            for t in f.triggers:
                if isinstance(t, Webhook):
                    if t.name in hooks:
                        where = (
                            f"twice by flow {f.name!r}"
                            if hooks[t.name] == f.name
                            else f"by flows {hooks[t.name]!r} and {f.name!r}"
                        )
                        raise FlowDefinitionError(
                            f"webhook {t.name!r} is declared {where}; webhook names must be "
                            "unique, as each is the URL /hooks/{name}"
                        )
                    hooks[t.name] = f.name
        for f in self._flows.values():
            for node in f.nodes.values():
                target = node.do if hasattr(node, "do") else node
                if isinstance(target, SubFlow) and target.flow not in self._flows:
                    known = ", ".join(sorted(self._flows))
                    raise FlowDefinitionError(
                        f"flow {f.name!r}: node {node.name!r} calls unknown flow {target.flow!r}; "
                        f"load its module (HUB_FLOWS) or use a known flow: {known}"
                    )

    @classmethod
    def load(cls, modules: Iterable[str]) -> Registry:
        """Import each module or package and register every ``Flow`` it defines."""
        reg = cls()
        if "" not in sys.path and str(Path.cwd()) not in sys.path:
            sys.path.insert(0, str(Path.cwd()))
        for name in modules:
            for module in _import_tree(name):
                for value in vars(module).values():
                    if isinstance(value, Flow):
                        reg.add(value)
        reg.check()
        return reg


def _import(name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except FlowDefinitionError:
        raise
    except ModuleNotFoundError as exc:
        if exc.name == name or name.startswith(f"{exc.name}."):
            raise FlowLoadError(
                f"flow module {name!r} not found; check HUB_FLOWS and the working folder"
            ) from exc
        raise FlowLoadError(_describe(name, exc)) from exc
    except Exception as exc:
        raise FlowLoadError(_describe(name, exc)) from exc


def _describe(name: str, exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    if isinstance(exc, SyntaxError) and exc.filename:
        where = f"{exc.filename}:{exc.lineno}"
    elif frames:
        last = frames[-1]
        where = f"{last.filename}:{last.lineno}"
    else:
        where = name
    return f"flow module {name!r} does not import ({where}): {type(exc).__name__}: {exc}"


def _import_tree(name: str) -> Iterator[ModuleType]:
    module = _import(name)
    yield module
    path = getattr(module, "__path__", None)
    if path is None:
        return
    for info in sorted(pkgutil.iter_modules(path), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        yield from _import_tree(f"{name}.{info.name}")
