"""Typed decoding: decoded data checked and built into the program's own types.

    codec.convert({"id": 7, "tags": ["a"]}, Item)        # data already decoded
    codec.msgpack.loads(data, type=Item)                  # decode and convert
    decode = codec.msgpack.Decoder(list[Item]).decode     # reuse on a hot path

The type is compiled once into a plan (`_plan.py`), cached per type, and run
by the Rust core (or by the pure twin `_convert.py`, which behaves the same).
A mismatch raises `microstd.errors.ValidationError` naming the path, the
expected type and what was found. See docs/codec.md, "Typed decoding".
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, Generic, TypeVar, overload

from microstd.codec import _convert
from microstd.codec._limits import Limits
from microstd.codec._plan import Plan, plan_for

__all__ = [
    "Decoder",
    "convert",
    "convert_decoded",
    "converter",
    "decode_as",
    "format_decoder",
    "run_plan",
]

T = TypeVar("T")


def run_plan(
    plan: Plan,
    value: object,
    *,
    strings: bool,
    forbid_unknown_fields: bool = False,
    impl: str | None = None,
) -> Any:
    """Convert `value` with `plan`: in the Rust core unless `impl="python"`."""
    if plan.core is not None and impl != "python":
        return plan.core.convert(value, strings, forbid_unknown_fields)
    return _convert.convert(
        plan, value, strings=strings, forbid_unknown_fields=forbid_unknown_fields
    )


@overload
def convert(obj: object, type: type[T], *, forbid_unknown_fields: bool = ...) -> T: ...
@overload
def convert(obj: object, type: Any, *, forbid_unknown_fields: bool = ...) -> Any: ...
def convert(obj: object, type: Any, *, forbid_unknown_fields: bool = False) -> Any:
    """`obj` (dicts, lists and scalars, as any decoder gives them) as an instance of `type`.

    Strings stand for what JSON writes them for (RFC 3339 datetimes, base64
    bytes), so config values and JSON-shaped dicts convert as they are.
    """
    return run_plan(plan_for(type), obj, strings=True, forbid_unknown_fields=forbid_unknown_fields)


def converter(
    type: Any, *, strings: bool, forbid_unknown_fields: bool = False
) -> Callable[[object], Any] | None:
    """A function converting decoded values into `type` (None without a type)."""
    if type is None:
        return None
    plan = plan_for(type)

    def convert_one(value: object) -> Any:
        return run_plan(plan, value, strings=strings, forbid_unknown_fields=forbid_unknown_fields)

    return convert_one


_BINARY = frozenset({"application/msgpack", "application/x-msgpack", "application/cbor"})


def convert_decoded(value: object, type: Any, content_type: str | None = None) -> Any:
    """`value`, decoded from `content_type`, as a `type`: strings stand for
    datetimes and bytes unless the format carries those itself (msgpack, CBOR).
    What stores, messages and RPC use; `ValidationError` on a mismatch."""
    from microstd.codec.registry import normalize

    strings = content_type is None or normalize(content_type) not in _BINARY
    return run_plan(plan_for(type), value, strings=strings)


def decode_as(content_type: str, data: bytes, type: Any) -> Any:
    """`data` of `content_type` decoded into `type`, with the format's own typed
    decoding where it has one (msgpack in one pass), else decode, then convert."""
    from microstd import codec
    from microstd.codec.registry import normalize

    ct = normalize(content_type)
    if ct in ("application/msgpack", "application/x-msgpack"):
        return codec.msgpack.loads(data, type=type)
    if ct == "application/cbor":
        return codec.cbor.loads(data, type=type)
    if ct == "application/json":
        return codec.json.loads(data, type=type)
    return convert_decoded(codec.get(ct).loads(data), type, ct)


class Decoder(Generic[T]):
    """A reusable typed decoder for one format: `Decoder(T).decode(data)`.

    Built by each format module (`codec.msgpack.Decoder(T)`); the type is
    compiled when the decoder is made, so an unsupported or ambiguous type
    fails there, not on the first message.
    """

    __slots__ = ("_forbid", "_impl", "_loads", "_plan", "_strings", "decode", "type")

    def __init__(
        self,
        type: Any,
        *,
        loads: Callable[[Any], object],
        strings: bool,
        forbid_unknown_fields: bool = False,
        impl: str | None = None,
        direct: str | None = None,
    ) -> None:
        self.type = type
        self._plan = plan_for(type)
        self._loads = loads
        self._strings = strings
        self._forbid = forbid_unknown_fields
        self._impl = impl
        self.decode: Callable[[bytes | bytearray | memoryview], T]
        core = self._plan.core
        if direct is not None and core is not None and impl != "python":
            # The core reads the format straight into the type: one call, no
            # Python frame between the caller and Rust.
            method = getattr(core, direct)
            self.decode = (
                functools.partial(method, forbid_unknown_fields=True)
                if forbid_unknown_fields
                else method
            )
        elif core is not None and impl != "python":
            # Decode, then convert in the core: no Python frame between the two.
            convert_in_core = core.convert

            def decode(data: bytes | bytearray | memoryview) -> T:
                result: T = convert_in_core(loads(data), strings, forbid_unknown_fields)
                return result

            self.decode = decode
        else:
            self.decode = self._decode

    def _decode(self, data: bytes | bytearray | memoryview) -> T:
        """Decode one message into the decoder's type."""
        value = self._loads(data)
        result: T = run_plan(
            self._plan,
            value,
            strings=self._strings,
            forbid_unknown_fields=self._forbid,
            impl=self._impl,
        )
        return result

    def __repr__(self) -> str:
        return f"Decoder({self._plan.name})"


def format_decoder(
    type: Any,
    *,
    untyped: Callable[..., object],
    direct: str,
    forbid_unknown_fields: bool,
    limits: Limits,
    hooks: dict[str, object],
) -> Decoder[Any]:
    """A format's `Decoder(T, ...)` (msgpack, CBOR): the core reads straight into
    `T` when no hook (`hooks`: the format's hook keyword and its value) and no
    limit is set; otherwise each message is decoded by `untyped` with them
    checked, then built as a `T` (two passes, as `loads(type=T, ...)` takes)."""
    given = {name: hook for name, hook in hooks.items() if hook is not None}
    if not given and not limits.given:
        return Decoder(
            type,
            loads=untyped,
            strings=False,
            forbid_unknown_fields=forbid_unknown_fields,
            direct=direct,
        )
    return Decoder(
        type,
        loads=functools.partial(untyped, **given, limits=limits if limits.given else None),
        strings=False,
        forbid_unknown_fields=forbid_unknown_fields,
    )
