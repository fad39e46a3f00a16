"""Declaring flows: typed steps chained in a module that reads like data.

::

    class Order(BaseModel):
        order_id: str

    @step(retries=5, backoff=2.0, timeout=30)
    def fetch(ctx: StepContext, data: Order) -> OrderDoc: ...

    order_sync = Flow("order_sync", [
        fetch,
        ForEach(push_line, items=lambda doc: doc.lines),
        Branch(on=lambda results: "big" if len(results) > 10 else "small",
               cases={"big": [notify_team], "small": []}),
        Parallel(erp=[post_erp], crm=[post_crm]),
        SubFlow("archive"),
    ])

Each node's input is the previous node's output (the first node gets the
run's input). A node's output:

- ``step``: what the function returns, validated against its return annotation;
- ``ForEach``: the list of its items' outputs, in item order (skipped items left out);
- ``Parallel``: a dict of each branch's last output, keyed by branch name;
- ``Branch``: the chosen case's last output (its input when the case is empty);
- ``SubFlow``: the child run's output.

Mistakes are reported when the module is imported, as ``FlowDefinitionError``
naming the flow, the node and the fix.
"""

from __future__ import annotations

import difflib
import inspect
import math
import re
import typing
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from pydantic import TypeAdapter, ValidationError
from pydantic_core import PydanticSerializationError, to_jsonable_python

from hub.errors import FlowDefinitionError, InvalidInput

STEP_OPTIONS = {
    "name": "the step's name in its flow (default: the function's name)",
    "retries": "extra attempts after a transient or application error (default 3)",
    "backoff": "seconds before the first retry; doubles each time, with jitter (default 1.0)",
    "backoff_max": "longest wait between attempts, in seconds (default 600)",
    "timeout": "seconds one attempt may run before it counts as a transient failure",
    "queue": "worker queue: default, browser, desktop or your own (default 'default')",
    "max_losses": "worker losses (crash, kill) before the step goes to review (default: setting)",
}
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]*$")


def _where(fn: Callable[..., Any]) -> str:
    code = getattr(fn, "__code__", None)
    if code is None:
        return getattr(fn, "__qualname__", repr(fn))
    return f"{code.co_filename}:{code.co_firstlineno}"


class Node:
    """Base of everything a flow can chain. ``name`` is unique within a flow."""

    name: str
    kind: str = "node"
    queue: str = "default"

    def children(self) -> dict[str, list[Node]]:
        """Named sequences of nested nodes (empty for leaves)."""
        return {}


class Step(Node):
    """A typed Python function run by a worker; made by :func:`step`."""

    kind = "step"

    def __init__(self, fn: Callable[..., Any], **options: Any) -> None:
        unknown = sorted(set(options) - set(STEP_OPTIONS))
        if unknown:
            bad = unknown[0]
            close = difflib.get_close_matches(bad, STEP_OPTIONS, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise FlowDefinitionError(
                f"unknown step option {bad!r} on step {fn.__name__!r} ({_where(fn)}); "
                f"{hint}known options: {', '.join(sorted(STEP_OPTIONS))}"
            )
        self.fn = fn
        self.name = options.get("name") or fn.__name__
        self.retries = _number(options, "retries", 3, int, fn)
        self.backoff = _number(options, "backoff", 1.0, float, fn)
        self.backoff_max = _number(options, "backoff_max", 600.0, float, fn)
        self.timeout = _number(options, "timeout", None, float, fn)
        self.max_losses = _number(options, "max_losses", None, int, fn)
        self.queue = str(options.get("queue", "default"))
        if not _NAME.match(self.name):
            raise FlowDefinitionError(
                f"step name {self.name!r} ({_where(fn)}) must be letters, digits, _ or -"
            )
        self._inspect_signature()
        self.__doc__ = fn.__doc__
        self.__name__ = self.name

    def _inspect_signature(self) -> None:
        fn = self.fn
        try:
            hints = typing.get_type_hints(fn)
        except Exception as exc:  # a NameError in an annotation, most often
            raise FlowDefinitionError(
                f"step {self.name!r} ({_where(fn)}): cannot read its type hints: {exc}"
            ) from exc
        params = list(inspect.signature(fn).parameters.values())
        self.takes_ctx = bool(params) and params[0].name == "ctx"
        data_params = params[1:] if self.takes_ctx else params
        if len(data_params) > 1:
            raise FlowDefinitionError(
                f"step {self.name!r} ({_where(fn)}) takes {len(data_params)} data arguments; "
                "a step takes one (its input) and optionally `ctx` first"
            )
        self.takes_data = bool(data_params)
        in_type = hints.get(data_params[0].name, Any) if data_params else Any
        out_type = hints.get("return", Any)
        self.input_type = in_type
        self.output_type = Any if out_type is type(None) else out_type
        self.input_adapter: TypeAdapter[Any] = TypeAdapter(in_type)
        self.output_adapter: TypeAdapter[Any] = TypeAdapter(self.output_type)
        self.is_async = inspect.iscoroutinefunction(fn)

    def validate_input(self, data: Any) -> Any:
        """Validate JSON-like ``data`` against the input model; raise ``InvalidInput``."""
        return validate(self.input_adapter, data, f"input of step {self.name!r}")

    def validate_output(self, data: Any) -> Any:
        return validate(self.output_adapter, data, f"output of step {self.name!r}")

    def dump_output(self, value: Any) -> Any:
        """Turn what the step returned into JSON, validating it against the annotation."""
        value = self.validate_output(
            value if not hasattr(value, "model_dump") else value.model_dump(mode="json")
        )
        return self.output_adapter.dump_python(value, mode="json")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the function directly (unit tests of a step)."""
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<step {self.name}>"


def _number(options: dict[str, Any], key: str, default: Any, cast: type, fn: Any) -> Any:
    value = options.get(key, default)
    if value is None and default is None:
        return None
    whole = cast is int
    usable = (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and (not whole or value == int(value))
    )
    if not usable:
        raise FlowDefinitionError(
            f"step option {key}={value!r} on {fn.__name__!r} ({_where(fn)}) must be "
            f"{'a whole number' if whole else 'a number'}"
        )
    if value < 0:
        raise FlowDefinitionError(
            f"step option {key}={value!r} on {fn.__name__!r} ({_where(fn)}) must not be negative"
        )
    return cast(value)


def validate(adapter: TypeAdapter[Any], data: Any, what: str) -> Any:
    try:
        return adapter.validate_python(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_context=False, include_input=False)
        first = errors[0] if errors else {"loc": (), "msg": str(exc)}
        loc = ".".join(str(p) for p in first["loc"]) or "(root)"
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise InvalidInput(
            f"{what}: {loc}: {first['msg']}{more}", errors=[dict(e) for e in errors]
        ) from None


@typing.overload
def step(fn: Callable[..., Any], /) -> Step: ...
@typing.overload
def step(**options: Any) -> Callable[[Callable[..., Any]], Step]: ...
def step(fn: Callable[..., Any] | None = None, /, **options: Any) -> Any:
    """Declare a step. Use bare (``@step``) or with options (``@step(retries=5)``).

    The function takes its input as one argument, annotated with its type
    (usually a pydantic model), and optionally ``ctx: StepContext`` first.
    Its return annotation is the output type. Options: see ``STEP_OPTIONS``;
    an unknown option raises ``FlowDefinitionError`` at import time.
    """
    if fn is not None:
        return Step(fn, **options)
    return lambda f: Step(f, **options)


def _as_seq(what: Any, owner: str) -> list[Node]:
    if isinstance(what, Node):
        return [what]
    if isinstance(what, (list, tuple)):
        for n in what:
            if not isinstance(n, Node):
                raise FlowDefinitionError(
                    f"{owner}: {n!r} is not a step or flow node; decorate functions with @step"
                )
        return list(what)
    raise FlowDefinitionError(f"{owner}: expected a step or a list of steps, got {what!r}")


class ForEach(Node):
    """Run ``do`` once per item of ``items(input)``; each item is tracked and retried alone.

    ``items`` is a function of this node's input returning a list (default:
    the input itself). ``do`` is a step or a :class:`SubFlow`.
    """

    kind = "foreach"

    def __init__(
        self,
        do: Step | SubFlow,
        *,
        items: Callable[[Any], Iterable[Any]] | None = None,
        name: str | None = None,
    ) -> None:
        if not isinstance(do, (Step, SubFlow)):
            raise FlowDefinitionError(f"ForEach: `do` must be a step or SubFlow, got {do!r}")
        self.do = do
        self.items = items
        self.name = name or do.name
        self.queue = "default"

    def item_queue(self) -> str:
        return self.do.queue


class Parallel(Node):
    """Run branches side by side; the output maps each branch name to its last output.

    ``Parallel(a, b)`` makes one branch per step, named after it;
    ``Parallel(erp=[post_erp], crm=[map_crm, post_crm])`` names them.
    """

    kind = "parallel"

    def __init__(self, *steps: Node, name: str | None = None, **branches: Any) -> None:
        self.branches: dict[str, list[Node]] = {}
        for s in steps:
            if not isinstance(s, Node):
                raise FlowDefinitionError(f"Parallel: {s!r} is not a step")
            self.branches[s.name] = [s]
        for key, seq in branches.items():
            self.branches[key] = _as_seq(seq, f"Parallel branch {key!r}")
        if not self.branches or any(not seq for seq in self.branches.values()):
            raise FlowDefinitionError("Parallel needs at least one branch, none of them empty")
        self.name = name or "parallel_" + "_".join(self.branches)

    def children(self) -> dict[str, list[Node]]:
        return self.branches


class Branch(Node):
    """Choose one sequence by a value: ``cases[on(input)]``, else ``default``.

    A value with no case and no default pauses the run for review.
    """

    kind = "branch"

    def __init__(
        self,
        *,
        on: Callable[[Any], Any],
        cases: dict[Any, Any],
        default: Any = None,
        name: str | None = None,
    ) -> None:
        self.on = on
        self.cases = {str(k): _as_seq(v, f"Branch case {k!r}") for k, v in cases.items()}
        self.default = None if default is None else _as_seq(default, "Branch default")
        self.name = name or "branch_" + getattr(on, "__name__", "on").strip("<>")

    def children(self) -> dict[str, list[Node]]:
        out = dict(self.cases)
        if self.default is not None:
            out["__default__"] = self.default
        return out

    def choose(self, value: Any) -> str | None:
        key = str(value.value if hasattr(value, "value") else value)
        if key in self.cases:
            return key
        return "__default__" if self.default is not None else None


class SubFlow(Node):
    """Start another flow as a child run and wait for it; its output is this node's.

    ``input`` maps this node's input to the child's (default: passed as is).
    """

    kind = "subflow"

    def __init__(
        self, flow: str, *, input: Callable[[Any], Any] | None = None, name: str | None = None
    ) -> None:
        self.flow = flow
        self.input = input
        self.name = name or flow


class AttrDict(dict[str, Any]):
    """A dict that also answers attribute access, so ``lambda o: o.lines`` works on JSON."""

    def __getattr__(self, name: str) -> Any:
        try:
            return AttrDict.wrap(self[name])
        except KeyError:
            raise AttributeError(name) from None

    @staticmethod
    def wrap(value: Any) -> Any:
        if isinstance(value, dict) and not isinstance(value, AttrDict):
            return AttrDict(value)
        return value


@dataclass
class Place:
    """Where a node sits: its container (None at top level), branch, and next sibling."""

    container: str | None
    branch: str | None
    next: str | None
    prev: str | None


_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_ADDRESS = re.compile(r"^[^@\s,;<>]+@[^@\s,;<>]+\.[^@\s,;<>]+$")
TARGET_FORMS = "an https:// (or http://) URL, mailto:someone@example.com, or env:VARIABLE"


def parse_target(text: str, *, env: bool = True) -> tuple[str, str]:
    """Split a notification target into its kind and address; ``ValueError`` says why not.

    Kinds: ``webhook`` (an http or https URL), ``email`` (``mailto:`` one
    address) and, when ``env`` is true, ``env`` (the name of an environment
    variable that holds one of the other two when the escalation is sent).
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"{text!r} is not a target; give {TARGET_FORMS}")
    scheme = text.split(":", 1)[0].lower() if ":" in text else ""
    if scheme == "env" and env:
        name = text[4:]
        if not _ENV_NAME.match(name):
            raise ValueError(
                f"{text!r}: {name!r} is not an environment variable name "
                "(letters, digits and _, not starting with a digit)"
            )
        return "env", name
    if scheme == "mailto":
        address = text[7:]
        if not _ADDRESS.match(address):
            raise ValueError(
                f"{text!r} is not one email address; write mailto:someone@example.com "
                "(one address per target)"
            )
        return "email", address
    if scheme in ("http", "https"):
        parts = urlsplit(text)
        if not parts.hostname or any(c.isspace() for c in text):
            raise ValueError(f"{text!r} is not a URL with a host, e.g. https://ops.example/hooks")
        if env and (parts.username or parts.password):
            raise ValueError(
                f"{parts.scheme}://{parts.hostname}/…: a URL with credentials belongs in the "
                "environment; write env:VARIABLE and set the variable to the URL"
            )
        return "webhook", text
    kinds = TARGET_FORMS if env else TARGET_FORMS.removesuffix(", or env:VARIABLE")
    raise ValueError(
        f"{text!r} has {f'scheme {scheme!r}' if scheme else 'no scheme'}; give {kinds}"
    )


def _seconds(value: Any) -> float | None:
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None


@dataclass
class Escalate:
    """What the hub does when a review item of the flow passes its due time.

    ::

        Flow("invoice_batch", [...], team="finance", review_due=timedelta(hours=4),
             escalate=Escalate(notify=["env:OPS_HOOK_URL", "mailto:lead@example.com"],
                               assign="lead", repeat=timedelta(hours=1)))

    - ``notify``: targets told about the overdue item: a webhook (``https://…``,
      a signed JSON POST), an email (``mailto:…``, through the SMTP settings),
      or ``env:VARIABLE``, read when the escalation is sent, so URLs with
      tokens stay out of code (unset: the target is skipped and the skip
      recorded).
    - ``assign``: the name of the user the item is handed to: an active
      reviewer of the item's team, or an operator. When the user does not
      qualify, the item stays with whoever had it and the escalation records why.
    - ``repeat``: tell the targets again this long after each escalation
      while the item stays open (seconds or a timedelta, at least a minute;
      None: once).

    The scheduler's tick escalates (see :mod:`hub.escalation`); mistakes
    here raise ``FlowDefinitionError`` when the module is imported.
    """

    notify: Sequence[str] | str | None = None
    assign: str | None = None
    repeat: float | timedelta | None = None

    def __post_init__(self) -> None:
        notify = (self.notify,) if isinstance(self.notify, str) else self.notify
        if notify is not None and not isinstance(notify, (list, tuple)):
            raise FlowDefinitionError(
                f"Escalate: notify={self.notify!r} must be a list of targets: {TARGET_FORMS}"
            )
        if notify is not None and not notify:
            raise FlowDefinitionError(
                "Escalate: notify=[] names no one; list at least one target "
                f"({TARGET_FORMS}) or leave notify out"
            )
        notify = tuple(notify or ())
        for target in notify:
            try:
                parse_target(target)
            except ValueError as exc:
                raise FlowDefinitionError(f"Escalate: notify target {exc}") from None
        twice = sorted({t for t in notify if notify.count(t) > 1})
        if twice:
            raise FlowDefinitionError(f"Escalate: notify names {twice[0]!r} twice; list it once")
        self.notify = notify
        if self.assign is not None and (
            not isinstance(self.assign, str) or not self.assign.strip()
        ):
            raise FlowDefinitionError(
                f"Escalate: assign={self.assign!r} must be a user name (text) or None"
            )
        if not self.notify and self.assign is None:
            raise FlowDefinitionError(
                "Escalate() does nothing; give notify=[...] targets, assign='user', or both"
            )
        self._check_repeat()

    @property
    def targets(self) -> tuple[str, ...]:
        """The notification targets, as declared."""
        return tuple(self.notify or ())

    def _check_repeat(self) -> None:
        if self.repeat is None:
            return
        seconds = _seconds(self.repeat)
        if seconds is None or not math.isfinite(seconds) or seconds <= 0:
            raise FlowDefinitionError(
                f"Escalate: repeat={self.repeat!r} must be a positive time in seconds or a "
                "datetime.timedelta (e.g. repeat=timedelta(hours=1)), or None to tell once"
            )
        if seconds < 60:
            raise FlowDefinitionError(
                f"Escalate: repeat={self.repeat!r} is under a minute and would flood the "
                "targets; use e.g. repeat=timedelta(hours=1)"
            )
        if not self.notify:
            raise FlowDefinitionError(
                "Escalate: repeat=... needs notify targets; assigning the same person "
                "again does nothing"
            )
        self.repeat = timedelta(seconds=seconds)


@dataclass
class Flow:
    """A named chain of nodes plus the triggers that start it."""

    name: str
    steps: Sequence[Node]
    triggers: Sequence[Any] = ()
    description: str = ""
    #: review policy: the team whose reviewers see this flow's review items
    #: (None: every reviewer), and how long after an item opens it is due
    #: (seconds or a timedelta; None: no due time)
    team: str | None = None
    review_due: float | timedelta | None = None
    #: what happens when an item passes its due time (needs ``review_due``)
    escalate: Escalate | None = None
    nodes: dict[str, Node] = field(init=False, repr=False)
    places: dict[str, Place] = field(init=False, repr=False)
    module: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise FlowDefinitionError(
                f"flow name {self.name!r} must be letters, digits, _ or - (no spaces)"
            )
        self.steps = _as_seq(list(self.steps), f"flow {self.name!r}")
        if not self.steps:
            raise FlowDefinitionError(
                f"flow {self.name!r} has no steps; give it a list of at least one step"
            )
        self.nodes = {}
        self.places = {}
        self._index(self.steps, None, None)
        self.triggers = tuple(self.triggers)
        from hub.triggers import Schedule, Webhook

        for t in self.triggers:
            if not isinstance(t, (Schedule, Webhook)):
                raise FlowDefinitionError(
                    f"flow {self.name!r}: trigger {t!r} is not a Schedule or Webhook"
                )
        self._check_review_policy()
        frame = inspect.currentframe()
        caller = frame.f_back.f_back if frame and frame.f_back else None
        self.module = caller.f_globals.get("__name__") if caller else None

    def _check_review_policy(self) -> None:
        if self.team is not None and (not isinstance(self.team, str) or not self.team.strip()):
            raise FlowDefinitionError(
                f"flow {self.name!r}: team={self.team!r} must be a team name (text) or None"
            )
        self._check_escalation()
        due = self.review_due
        if due is None:
            return
        seconds = _seconds(due)
        if seconds is None:
            raise FlowDefinitionError(
                f"flow {self.name!r}: review_due={due!r} must be seconds (a number), "
                "a datetime.timedelta, or None"
            )
        if not math.isfinite(seconds) or seconds <= 0:
            raise FlowDefinitionError(
                f"flow {self.name!r}: review_due={due!r} must be a positive time, "
                "e.g. review_due=timedelta(hours=4)"
            )
        self.review_due = timedelta(seconds=seconds)

    def _check_escalation(self) -> None:
        if self.escalate is None:
            return
        if not isinstance(self.escalate, Escalate):
            raise FlowDefinitionError(
                f"flow {self.name!r}: escalate={self.escalate!r} must be "
                "Escalate(notify=[...], assign=..., repeat=...) or None"
            )
        if self.review_due is None:
            raise FlowDefinitionError(
                f"flow {self.name!r}: escalate=... needs review_due, since an item escalates "
                "when its due time passes; add e.g. review_due=timedelta(hours=4)"
            )

    def _index(self, seq: list[Node], container: str | None, branch: str | None) -> None:
        for i, node in enumerate(seq):
            if not isinstance(node.name, str) or not _NAME.match(node.name):
                raise FlowDefinitionError(
                    f"flow {self.name!r}: {node.kind} name {node.name!r} must be letters, "
                    "digits, _ or - (it is part of the step keys); pass name=... to set one"
                )
            if node.name in self.nodes:
                raise FlowDefinitionError(
                    f"flow {self.name!r}: two nodes are named {node.name!r}; "
                    "give one of them name=... to tell them apart"
                )
            self.nodes[node.name] = node
            nxt = seq[i + 1].name if i + 1 < len(seq) else None
            prev = seq[i - 1].name if i > 0 else None
            self.places[node.name] = Place(container, branch, nxt, prev)
            for key, sub in node.children().items():
                self._index(sub, node.name, key)

    @property
    def first(self) -> Node:
        return self.steps[0]

    def entry_step(self) -> Step | None:
        """The step that validates the run's input, if the flow starts with one."""
        node = self.first
        if isinstance(node, ForEach):
            return None
        return node if isinstance(node, Step) else None

    def validate_input(self, data: Any) -> Any:
        """Check a run's input against the first step's model; raise ``InvalidInput``."""
        entry = self.entry_step()
        if entry is None:
            try:
                return to_jsonable_python(data)
            except PydanticSerializationError as exc:
                raise InvalidInput(f"flow {self.name!r}: input is not JSON: {exc}") from None
        try:
            value = entry.validate_input(data)
        except InvalidInput as exc:
            raise InvalidInput(f"flow {self.name!r}: {exc}", exc.errors) from None
        return entry.input_adapter.dump_python(value, mode="json")

    def typed_input(self, name: str, data: Any) -> Any:
        """A node's JSON input as the previous step's output type, for user functions.

        ``ForEach(items=...)``, ``Branch(on=...)`` and ``SubFlow(input=...)`` get
        the typed value (``lambda doc: doc.lines``); when the type is not known,
        a dict that also answers attribute access.
        """
        place = self.places.get(name)
        prev = self.nodes.get(place.prev or "") if place else None
        if isinstance(prev, Step) and prev.output_type is not Any:
            try:
                return prev.output_adapter.validate_python(data)
            except ValidationError:
                pass
        return AttrDict.wrap(data)

    def describe(self) -> list[dict[str, Any]]:
        """Nodes in order with their kind and options, for `hub flows` and the API."""
        out = []
        for name, node in self.nodes.items():
            row: dict[str, Any] = {"name": name, "kind": node.kind, "queue": node.queue}
            place = self.places[name]
            if place.container:
                row["in"] = place.container
            if isinstance(node, Step):
                row.update(retries=node.retries, timeout=node.timeout)
            out.append(row)
        return out
