"""The registry imports flow modules by name and reports what is wrong in one line."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from hub import Flow, step
from hub.errors import FlowDefinitionError, FlowNotFound
from hub.registry import FlowLoadError, Registry

MODS = "tests.hub.flowmods"
HERE = Path(__file__).parent / "flowmods"


def _line_of(path: Path, text: str) -> int:
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if text in line:
            return number
    raise AssertionError(f"{text!r} not in {path}")


@step
def noop(data: int) -> int:
    return data


def test_a_module_is_loaded_with_every_flow_it_defines() -> None:
    registry = Registry.load([f"{MODS}.good"])
    assert [f.name for f in registry] == ["doubler", "pipeline"]
    assert registry.get("pipeline").module == f"{MODS}.good"
    assert "doubler" in registry


def test_a_package_is_loaded_with_its_public_modules_only() -> None:
    registry = Registry.load([f"{MODS}.pack"])
    assert [f.name for f in registry] == ["alpha", "beta"]
    assert f"{MODS}.pack._private" not in sys.modules


def test_a_module_that_does_not_import_is_reported_with_its_file_and_line() -> None:
    with pytest.raises(FlowLoadError) as err:
        Registry.load([f"{MODS}.good", f"{MODS}.broken_import"])
    text = str(err.value)
    assert "\n" not in text
    path = HERE / "broken_import.py"
    assert f"{path}:{_line_of(path, 'LIMIT =')}" in text
    assert f"'{MODS}.broken_import'" in text
    assert "ValueError" in text
    assert "not a number" in text


def test_a_module_with_a_syntax_error_is_reported_with_its_file_and_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = tmp_path / "hub_syntax_broken.py"
    module.write_text("from hub import step\n\n\ndef oops(:\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(FlowLoadError) as err:
        Registry.load(["hub_syntax_broken"])
    text = str(err.value)
    assert "\n" not in text
    assert f"{module}:4" in text
    assert "SyntaxError" in text


def test_a_step_declared_wrongly_stops_loading_with_the_declaration_error() -> None:
    with pytest.raises(FlowDefinitionError) as err:
        Registry.load([f"{MODS}.bad_option"])
    text = str(err.value)
    assert "\n" not in text
    assert "'retires'" in text
    assert "did you mean 'retries'?" in text
    path = HERE / "bad_option.py"
    assert f"{path}:" in text


def test_a_missing_module_name_is_reported_as_not_found() -> None:
    with pytest.raises(FlowLoadError) as err:
        Registry.load([f"{MODS}.no_such_module"])
    text = str(err.value)
    assert "\n" not in text
    assert f"'{MODS}.no_such_module' not found" in text
    assert "HUB_FLOWS" in text


def test_a_missing_top_level_package_is_reported_as_not_found() -> None:
    with pytest.raises(FlowLoadError) as err:
        Registry.load(["hub_flows_nowhere.orders"])
    assert "'hub_flows_nowhere.orders' not found" in str(err.value)


def test_a_module_whose_own_import_is_missing_names_the_missing_package() -> None:
    with pytest.raises(FlowLoadError) as err:
        Registry.load([f"{MODS}.missing_dependency"])
    text = str(err.value)
    assert "\n" not in text
    assert "hub_no_such_package" in text
    assert "does not import" in text  # not "module not found": the module itself exists
    path = HERE / "missing_dependency.py"
    assert f"{path}:{_line_of(path, 'import hub_no_such_package')}" in text


def test_loading_checks_that_every_subflow_target_is_loaded() -> None:
    with pytest.raises(FlowDefinitionError) as err:
        Registry.load([f"{MODS}.dangling_subflow"])
    text = str(err.value)
    assert "flow 'orphan'" in text
    assert "unknown flow 'nowhere'" in text


def test_an_unknown_flow_name_lists_the_known_flows() -> None:
    registry = Registry([Flow("billing", [noop]), Flow("archive", [noop])])
    with pytest.raises(FlowNotFound) as err:
        registry.get("biling")
    text = str(err.value)
    assert "'biling'" in text
    assert "known flows: archive, billing" in text


def test_an_empty_registry_says_no_flows_are_loaded() -> None:
    with pytest.raises(FlowNotFound) as err:
        Registry().get("billing")
    assert "none loaded" in str(err.value)


def test_two_different_flows_with_one_name_are_rejected() -> None:
    registry = Registry([Flow("billing", [noop])])
    with pytest.raises(FlowDefinitionError) as err:
        registry.add(Flow("billing", [noop]))
    assert "two flows are named 'billing'" in str(err.value)


def test_adding_the_same_flow_twice_is_harmless() -> None:
    flow = Flow("billing", [noop])
    registry = Registry([flow])
    registry.add(flow)
    assert [f.name for f in registry] == ["billing"]


@pytest.mark.parametrize("same_flow", [True, False])
def test_one_webhook_name_declared_twice_is_rejected(same_flow: bool) -> None:
    from hub import Webhook

    @step
    def take(data: dict) -> dict:  # type: ignore[type-arg]
        return data

    hook = Webhook("orders", verify="github", secret="env:ORDERS_SECRET")
    if same_flow:
        flows = [Flow("intake", [take], triggers=[hook, hook])]
        where = "twice by flow 'intake'"
    else:
        flows = [Flow("a", [take], triggers=[hook]), Flow("b", [take], triggers=[hook])]
        where = "by flows 'a' and 'b'"
    with pytest.raises(FlowDefinitionError, match=f"webhook 'orders' is declared {where}"):
        Registry(flows).check()
