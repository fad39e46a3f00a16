"""Declaring flows: every mistake is one clear line naming the step or flow and the fix."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from hub import Branch, Flow, ForEach, Parallel, SubFlow, step
from hub.errors import FlowDefinitionError, InvalidInput
from hub.registry import Registry


class Order(BaseModel):
    order_id: str
    qty: int = 1


def _message(exc: pytest.ExceptionInfo[FlowDefinitionError]) -> str:
    text = str(exc.value)
    assert "\n" not in text, f"not one line: {text!r}"
    return text


@step
def first(data: Order) -> Order:
    return data


@step
def second(data: Order) -> Order:
    return data


def fetch_order(data: Order) -> Order:
    return data


# ------------------------------------------------------------------ step options
def test_an_unknown_step_option_is_rejected_with_a_did_you_mean() -> None:
    with pytest.raises(FlowDefinitionError) as err:
        step(retrys=3)(fetch_order)
    text = _message(err)
    assert "'retrys'" in text
    assert "'fetch_order'" in text
    assert "did you mean 'retries'?" in text
    assert "test_flow.py:" in text  # where the step is declared


def test_an_unknown_step_option_without_a_close_match_lists_the_known_ones() -> None:
    with pytest.raises(FlowDefinitionError) as err:
        step(colour="red")(fetch_order)
    text = _message(err)
    assert "'colour'" in text
    assert "did you mean" not in text
    assert "known options: backoff, backoff_max, max_losses, name, queue, retries, timeout" in text


@pytest.mark.parametrize("option", ["retries", "backoff", "backoff_max", "timeout", "max_losses"])
def test_a_negative_step_option_is_rejected(option: str) -> None:
    with pytest.raises(FlowDefinitionError) as err:
        step(**{option: -1})(fetch_order)
    text = _message(err)
    assert f"{option}=-1" in text
    assert "'fetch_order'" in text
    assert "must not be negative" in text


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("retries", "many"),
        ("backoff", "fast"),
        ("timeout", [30]),
        ("retries", None),
        ("backoff", None),
        ("retries", True),
        ("retries", 2.5),
        ("backoff", float("nan")),
    ],
)
def test_a_step_option_that_is_not_a_usable_number_is_rejected(option: str, value: Any) -> None:
    with pytest.raises(FlowDefinitionError) as err:
        step(**{option: value})(fetch_order)
    text = _message(err)
    assert f"{option}={value!r}" in text
    assert "'fetch_order'" in text
    assert "number" in text


def test_step_options_are_kept_on_the_step() -> None:
    s = step(retries=5, backoff=2, backoff_max=60, timeout=30, queue="browser", max_losses=2)(
        fetch_order
    )
    assert (s.retries, s.backoff, s.backoff_max, s.timeout, s.queue, s.max_losses) == (
        5,
        2.0,
        60.0,
        30.0,
        "browser",
        2,
    )
    assert s.name == "fetch_order"
    assert step(name="fetch-v2")(fetch_order).name == "fetch-v2"


def test_a_step_with_a_bad_name_is_rejected() -> None:
    with pytest.raises(FlowDefinitionError) as err:
        step(name="fetch order")(fetch_order)
    text = _message(err)
    assert "'fetch order'" in text
    assert "letters, digits, _ or -" in text


def test_a_step_with_two_data_arguments_is_rejected() -> None:
    def merge(left: Order, right: Order) -> Order:
        return left

    with pytest.raises(FlowDefinitionError) as err:
        step(merge)
    text = _message(err)
    assert "'merge'" in text
    assert "2 data arguments" in text
    assert "a step takes one (its input) and optionally `ctx` first" in text


def test_a_step_whose_annotation_does_not_resolve_is_rejected() -> None:
    def load(data: NoSuchModel) -> Order:  # type: ignore[name-defined]  # noqa: F821
        return data

    with pytest.raises(FlowDefinitionError) as err:
        step(load)
    text = _message(err)
    assert "'load'" in text
    assert "NoSuchModel" in text


def test_a_step_called_directly_runs_its_function() -> None:
    assert first(Order(order_id="A-1")) == Order(order_id="A-1")


def test_a_step_validates_its_input_and_names_the_field() -> None:
    with pytest.raises(InvalidInput) as err:
        first.validate_input({"qty": 2})
    assert "order_id" in str(err.value)
    assert [e["loc"] for e in err.value.errors] == [("order_id",)]


# ------------------------------------------------------------------------ flows
def test_two_nodes_with_one_name_are_rejected() -> None:
    with pytest.raises(FlowDefinitionError) as err:
        Flow("orders", [first, second, first])
    text = _message(err)
    assert "flow 'orders'" in text
    assert "'first'" in text
    assert "name=" in text  # the fix


def test_a_name_used_inside_a_container_and_outside_it_is_rejected() -> None:
    with pytest.raises(FlowDefinitionError) as err:
        Flow("orders", [first, Parallel(a=[second], b=[first])])
    text = _message(err)
    assert "flow 'orders'" in text
    assert "'first'" in text


def test_an_empty_flow_is_rejected() -> None:
    with pytest.raises(FlowDefinitionError) as err:
        Flow("orders", [])
    text = _message(err)
    assert "flow 'orders'" in text
    assert "no steps" in text
    assert "at least one step" in text  # the fix


@pytest.mark.parametrize("name", ["order sync", "", "1orders", "orders/sync", 42])
def test_a_bad_flow_name_is_rejected(name: Any) -> None:
    with pytest.raises(FlowDefinitionError) as err:
        Flow(name, [first])
    text = _message(err)
    assert repr(name) in text
    assert "letters, digits, _ or -" in text


def test_a_plain_function_in_a_flow_is_rejected_with_the_fix() -> None:
    with pytest.raises(FlowDefinitionError) as err:
        Flow("orders", [first, fetch_order])  # type: ignore[list-item]
    text = _message(err)
    assert "flow 'orders'" in text
    assert "fetch_order" in text
    assert "@step" in text


def test_a_for_each_over_a_plain_function_is_rejected() -> None:
    with pytest.raises(FlowDefinitionError) as err:
        ForEach(fetch_order)  # type: ignore[arg-type]
    text = _message(err)
    assert "ForEach" in text
    assert "fetch_order" in text


def test_a_parallel_with_an_empty_branch_is_rejected() -> None:
    with pytest.raises(FlowDefinitionError) as err:
        Parallel(erp=[first], crm=[])
    assert "none of them empty" in _message(err)


def test_a_flow_indexes_nested_nodes_with_their_container() -> None:
    @step
    def route(data: Order) -> Order:
        return data

    flow = Flow(
        "orders",
        [
            first,
            Branch(on=lambda o: o.qty > 1, cases={True: [route], False: []}, name="size"),
            Parallel(erp=[second]),
            SubFlow("archive"),
        ],
    )
    assert list(flow.nodes) == ["first", "size", "route", "parallel_erp", "second", "archive"]
    assert flow.places["route"].container == "size"
    assert flow.places["route"].branch == "True"
    assert flow.places["second"].container == "parallel_erp"
    assert flow.places["size"].next == "parallel_erp"
    assert flow.places["archive"].next is None


def test_a_subflow_to_an_unknown_flow_fails_the_registry_check() -> None:
    parent = Flow("orders", [first, SubFlow("archive")])
    other = Flow("billing", [second])
    registry = Registry([parent, other])
    with pytest.raises(FlowDefinitionError) as err:
        registry.check()
    text = _message(err)
    assert "flow 'orders'" in text
    assert "node 'archive'" in text
    assert "unknown flow 'archive'" in text
    assert "billing, orders" in text  # the known flows, to pick the right name


def test_a_subflow_inside_a_for_each_to_an_unknown_flow_fails_the_registry_check() -> None:
    parent = Flow("orders", [first, ForEach(SubFlow("archive"), name="archive_each")])
    with pytest.raises(FlowDefinitionError) as err:
        Registry([parent]).check()
    assert "unknown flow 'archive'" in _message(err)


def test_a_registry_with_every_subflow_target_passes_the_check() -> None:
    archive = Flow("archive", [second])
    parent = Flow("orders", [first, SubFlow("archive")])
    Registry([parent, archive]).check()


@pytest.mark.parametrize(
    "node",
    [
        ForEach(first, name="each line"),
        Branch(on=lambda o: o.qty, cases={1: [second]}, name="route/1"),
        SubFlow("archive", name="archive[0]"),
        Parallel(second, name="fan out"),
    ],
    ids=["foreach", "branch", "subflow", "parallel"],
)
def test_a_container_with_a_bad_name_is_rejected(node: Any) -> None:
    with pytest.raises(FlowDefinitionError) as err:
        Flow("orders", [node])
    text = _message(err)
    assert "flow 'orders'" in text
    assert repr(node.name) in text
    assert "letters, digits, _ or -" in text
