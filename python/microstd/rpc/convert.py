"""Handler arguments and results: dicts, dataclasses and pydantic models, sync or async.

A handler declares what it takes with the annotation of its first parameter:
a pydantic model, or any type typed decoding knows (nested dataclasses,
TypedDict, `list[Item]`...: `microstd.codec.convert`), is built and checked
from the decoded body, a mismatch being a 400 whose detail names the path;
anything else gets the decoded body as is. What it returns is turned back
into plain data (dataclasses with `asdict`, pydantic models with
`model_dump(mode="json")`) and, when its return annotation is such a type,
checked against it (a mismatch is the handler's bug: a 500).
"""

from __future__ import annotations

import asyncio
import collections.abc
import dataclasses
import functools
import inspect
import typing
from collections.abc import Awaitable, Callable
from typing import Any

from microstd.codec._plan import Plan, plan_for
from microstd.codec.typed import run_plan
from microstd.errors import ServiceError, ValidationError
from microstd.rpc.pool import HandlerPool

__all__ = ["Endpoint", "bad_request", "build", "to_plain", "typed_plan"]


def bad_request(service: str, detail: str) -> ServiceError:
    return ServiceError(service, 400, detail, "Bad Request")


def _is_pydantic(tp: object) -> bool:
    return isinstance(tp, type) and hasattr(tp, "model_validate") and hasattr(tp, "model_dump")


def build(tp: object, data: object, service: str = "") -> object:
    """`data` as an instance of `tp`: a pydantic model, or any type typed decoding
    knows (dataclasses, nested; TypedDict, NamedTuple, `list[Item]`...; see
    `microstd.codec.convert`); other annotations leave the data unchanged.

    Raises a 400 `ServiceError` whose detail names the path when the data does not fit.
    """
    if _is_pydantic(tp):
        try:
            return tp.model_validate(data)  # type: ignore[attr-defined]
        except ValueError as exc:  # pydantic's ValidationError is a ValueError
            raise bad_request(service, f"invalid request: {exc}") from exc
    plan = typed_plan(tp)
    if plan is None:
        return data
    try:
        return run_plan(plan, data, strings=True)
    except ValidationError as exc:
        raise bad_request(service, f"invalid request: {exc}") from exc


# Annotations that mean "whatever was sent": no plan, no conversion.
_UNTYPED: frozenset[object] = frozenset(
    {None, object, Any, dict, list, str, int, float, bool, bytes}
)


def typed_plan(tp: object) -> Plan | None:
    """The decoder plan for an annotation, or None when there is nothing to convert
    (no annotation, `Any`, plain containers, or a type typed decoding does not know)."""
    try:
        if tp in _UNTYPED or isinstance(tp, str):
            return None
    except TypeError:  # an unhashable annotation
        pass
    try:
        return plan_for(tp)
    except TypeError:
        return None


def to_plain(obj: object) -> object:
    """A handler's result as codec-friendly data."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    if _is_pydantic(type(obj)):
        return obj.model_dump(mode="json")  # type: ignore[attr-defined]
    return obj


# Results that are already plain data (exact types: a subclass may be a model).
_PLAIN: frozenset[type] = frozenset({dict, list, str, int, float, bool, bytes, type(None)})


class Endpoint:
    """A registered handler, adapted to `await endpoint(body) -> plain result`."""

    def __init__(self, name: str, fn: Callable[..., Any], pool: HandlerPool | None = None) -> None:
        self.name = name
        self.fn = fn
        #: Where a sync handler runs (the server's own threads); None: asyncio.to_thread.
        self.pool = pool
        self.is_async = inspect.iscoroutinefunction(fn)
        params = [
            p
            for p in inspect.signature(fn).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
        if len(params) > 1 and all(p.default is p.empty for p in params[1:]):
            raise TypeError(f"handler {name!r} must take at most one argument (the request)")
        self.takes_body = bool(params)
        self.arg_type: object = None
        if params:
            try:
                hints = typing.get_type_hints(fn)
            except (NameError, TypeError):
                hints = {}
            self.arg_type = hints.get(params[0].name)
        if inspect.isgeneratorfunction(fn):
            raise TypeError(
                f"handler {name!r} is a sync generator: streaming handlers are async"
                " generators (async def ... yield)"
            )
        streams_out = inspect.isasyncgenfunction(fn)
        streams_in = _is_stream(self.arg_type)
        if streams_in and not (self.is_async or streams_out):
            raise TypeError(f"handler {name!r} takes a stream of requests: it must be async")
        #: "unary", "server" (yields replies), "client" (takes a stream of requests,
        #: returns one reply) or "bidi" (both).
        self.kind = _KINDS[streams_in, streams_out]
        #: For a stream of requests, the type each item is built into (its
        #: `AsyncIterator[T]` annotation's T).
        self.item_type: object = None
        if streams_in:
            self.item_type = (typing.get_args(self.arg_type) or (None,))[0]
            self.arg_type = None
        # The request's plan, looked up once here rather than on every call.
        self._plan = None if _is_pydantic(self.arg_type) else typed_plan(self.arg_type)
        self._builds = self._plan is not None or _is_pydantic(self.arg_type)
        # A return annotation typed decoding knows is checked on every result
        # (a stream's replies are not: its annotation is the iterator's).
        try:
            returns = None if streams_out else typing.get_type_hints(fn).get("return")
        except (NameError, TypeError):
            returns = None
        self._returns = None if _is_pydantic(returns) else typed_plan(returns)
        # The Rust core's converters of those plans, called directly on every call
        # (run_plan's dispatch, two Python frames, is a fifth of a small call's work).
        self._build_core = _core_convert(self._plan)
        self._check_core = _core_convert(self._returns)
        #: True for every kind but unary.
        self.streams = self.kind != "unary"
        #: The handler itself when calling it is all `__call__` would do (an async
        #: unary handler taking the body as decoded, no return annotation to check):
        #: the server then calls it directly, one coroutine frame fewer per call,
        #: and hands a result that is not plain data to `plain()`.
        self.direct: Callable[[object], Awaitable[object]] | None = None
        if (
            self.is_async
            and not self.streams
            and self.takes_body
            and not self._builds
            and self._returns is None
        ):
            self.direct = fn

    def __repr__(self) -> str:
        return f"Endpoint({self.name!r}, {getattr(self.fn, '__qualname__', self.fn)!r})"

    def build_item(self, item: object, service: str) -> object:
        """A request item of a stream, as the handler's annotation asks."""
        return build(self.item_type, item, service) if self.item_type is not None else item

    async def __call__(self, body: object, service: str) -> object:
        """Run the handler on `body` and return its plain result.

        For a streaming endpoint `body` is the request (server streaming) or an
        async iterator of requests (client, bidi), and a handler that yields
        returns its async iterator of replies, not yet iterated.
        """
        if self.streams:
            return await self._open(body, service)
        if not self.takes_body:
            args: tuple[object, ...] = ()
        elif not self._builds:
            args = (body,)  # no model to build: skip build()'s type checks on every call
        elif self._build_core is not None:
            try:
                args = (self._build_core(body, True, False),)
            except ValidationError as exc:
                raise bad_request(service, f"invalid request: {exc}") from exc
        else:
            args = (self._build(body, service),)
        if self.is_async:
            result = await self.fn(*args)
        elif self.pool is not None:
            # Sync handlers run on the server's threads so they never block the event
            # loop; the pool copies the context, so current_context() works inside them.
            result = await self.pool.run(self.fn, *args)
        else:
            result = await asyncio.to_thread(functools.partial(self.fn, *args))
        if type(result) in _PLAIN:
            plain = result  # the common case: nothing to await or convert
        else:
            plain = await self.plain(result)
        if self._returns is not None:
            check = self._check_core
            if check is None:
                self._check_result(plain, service)
            else:
                try:
                    check(plain, True, False)
                except ValidationError as exc:
                    raise self._misfit(service, exc) from exc
        return plain

    async def plain(self, result: object) -> object:
        """A handler's result that is not plain data already, as plain data."""
        if inspect.isawaitable(result):
            result = await typing.cast(Awaitable[object], result)
        return to_plain(result)

    def _build(self, body: object, service: str) -> object:
        """`build(self.arg_type, body)` with the plan found at registration."""
        plan = self._plan
        if plan is None:  # a pydantic model
            return build(self.arg_type, body, service)
        try:
            return run_plan(plan, body, strings=True)
        except ValidationError as exc:
            raise bad_request(service, f"invalid request: {exc}") from exc

    def _check_result(self, plain: object, service: str) -> None:
        try:
            run_plan(self._returns, plain, strings=True)  # type: ignore[arg-type]
        except ValidationError as exc:
            raise self._misfit(service, exc) from exc

    def _misfit(self, service: str, exc: ValidationError) -> ServiceError:
        return ServiceError(
            service,
            500,
            f"handler {self.name!r} returned a value that does not fit its return "
            f"annotation: {exc}",
            "Internal Server Error",
        )

    async def _open(self, body: object, service: str) -> object:
        if self.kind == "server":
            args: tuple[object, ...] = ()
            if self.takes_body:
                args = (self._build(body, service) if self._builds else body,)
            return self.fn(*args)
        result = self.fn(body)
        if self.kind == "bidi":
            return result
        plain = to_plain(await result)
        if self._returns is not None:
            self._check_result(plain, service)
        return plain


def _core_convert(plan: Plan | None) -> Callable[[object, bool, bool], object] | None:
    """`plan`'s converter in the Rust core (`run_plan` without its dispatch), or None."""
    core = plan.core if plan is not None else None
    return core.convert if core is not None else None


_STREAM_TYPES: frozenset[object] = frozenset(
    {
        collections.abc.AsyncIterator,
        collections.abc.AsyncIterable,
        collections.abc.AsyncGenerator,
        typing.AsyncIterator,
        typing.AsyncIterable,
        typing.AsyncGenerator,
    }
)

_KINDS = {
    (False, False): "unary",
    (False, True): "server",
    (True, False): "client",
    (True, True): "bidi",
}


def _is_stream(hint: object) -> bool:
    """Whether an annotation asks for a stream of requests (`AsyncIterator[T]` and kin)."""
    return hint in _STREAM_TYPES or typing.get_origin(hint) in _STREAM_TYPES
