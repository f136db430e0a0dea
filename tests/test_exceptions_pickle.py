"""Every exception a flow can raise survives pickling: Prefect persists a failed run's exception, and the
demo (or any reader of the result) unpickles it. One whose __init__ takes other arguments than its
message breaks that silently, so this walks lakeloop/, tasks/ and flows/ and tries each one."""

from __future__ import annotations

import importlib
import inspect
import pickle
import pkgutil
from typing import Any

import pytest

PACKAGES = ("lakeloop", "tasks", "flows")


def _exception_classes() -> list[type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for package_name in PACKAGES:
        package = importlib.import_module(package_name)
        modules = [package, *(importlib.import_module(m.name)
                              for m in pkgutil.walk_packages(package.__path__, prefix=f"{package_name}."))]
        for module in modules:
            for _, obj in inspect.getmembers(module, inspect.isclass):
                if issubclass(obj, BaseException) and obj.__module__ == module.__name__:
                    found[f"{obj.__module__}.{obj.__qualname__}"] = obj
    return [found[k] for k in sorted(found)]


def _sample_args(cls: type[BaseException]) -> tuple[list[Any], dict[str, Any]]:
    """A string for every required parameter (positional or keyword-only), nothing for the optional ones."""
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]
    if not params or all(p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in params):
        return ["something went wrong"], {}
    for p in params:
        if p.default is not p.empty or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        value = f"sample {p.name}"
        if p.kind == p.KEYWORD_ONLY:
            kwargs[p.name] = value
        else:
            args.append(value)
    return args, kwargs


CLASSES = _exception_classes()


def test_the_walk_finds_the_exceptions_flows_raise() -> None:
    names = {c.__name__ for c in CLASSES}
    assert {"SchemaError", "SpecError", "LeaseLost", "LakeError", "TrainError"} <= names


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: f"{c.__module__}.{c.__qualname__}")
def test_exception_survives_pickling(cls: type[BaseException]) -> None:
    args, kwargs = _sample_args(cls)
    original = cls(*args, **kwargs)
    copy = pickle.loads(pickle.dumps(original))
    assert type(copy) is cls
    assert str(copy) == str(original)
    assert copy.args == original.args
    assert vars(copy) == vars(original)


def test_schema_error_keeps_source_and_column() -> None:
    from tasks.data.validate import SchemaError

    e = pickle.loads(pickle.dumps(SchemaError("x.csv: missing column 'a'", source="x.csv", column="a")))
    assert (str(e), e.source, e.column) == ("x.csv: missing column 'a'", "x.csv", "a")
