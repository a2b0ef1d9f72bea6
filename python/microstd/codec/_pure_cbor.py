"""The pure baseline for CBOR: the `cbor2` package, configured to give the
same bytes and the same values as the Rust codec on the whole type model.

What it adds to plain `cbor2`:

- encoding: datetimes as epoch timestamps (tag 1), dates as tag 100,
  memoryview as a byte string, enums by value, dataclasses as maps,
  `Tag` / `Simple` as themselves, and every type outside the model (cbor2
  natively writes fractions, IP addresses, regexes...) through `default=`
  or an `EncodeError`;
- `canonical=True`: cbor2 sorts map keys length-first (RFC 7049 canonical
  CBOR); RFC 8949 section 4.2.1 sorts by the encoded bytes alone, so maps
  and sets are sorted here before cbor2 writes them;
- decoding: our own decoders for tags 0-5, 37, 100, 258 and 1004 (exact
  bigfloats, the same checks as the Rust codec), `Tag` for every other tag
  (cbor2 would turn some into fractions, regexes...), `undefined` as None,
  other simple values as `Simple`, trailing bytes rejected;
- errors: cbor2's exceptions become `EncodeError` / `DecodeError` (the
  decode offset is where cbor2 stopped reading, as near as it tells).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import functools
import io
import itertools
import math
import re
from collections.abc import Callable, Iterator, Mapping
from decimal import Decimal
from enum import Enum
from typing import Any

from microstd.codec._cbor_simple import Simple
from microstd.codec._deps import require
from microstd.codec._depth import TOO_DEEP, deep_path, nesting
from microstd.codec._ext import Tag
from microstd.codec._limits import Limits
from microstd.codec._paths import RELEASED
from microstd.codec._timestamp import Timestamp
from microstd.errors import DecodeError, EncodeError

__all__ = ["MAX_DEPTH", "MAX_EXPONENT", "MAX_MANTISSA_BITS", "dumps", "loads"]

# Must equal the Rust core's crate::codec::MAX_DEPTH.
MAX_DEPTH = 256
_ORDINAL_OF_EPOCH = 719_163
# Must equal MAX_EXPONENT and MAX_MANTISSA_BITS in rust/src/codec/cbor/tags.rs
# (the reasons are there): caps on tags 4 and 5, so a few input bytes cannot ask
# for a huge exact Decimal or a quadratic int -> Decimal conversion.
MAX_EXPONENT = 4096
MAX_MANTISSA_BITS = 16384
_TAG_NAMES = {4: "decimal fraction (tag 4)", 5: "bigfloat (tag 5)"}
_DUPLICATE = "two keys (or set members) encode to the same bytes: canonical CBOR forbids duplicates"
# 10^d < 2^(3.33 d): a mantissa of this many digits fits in MAX_MANTISSA_BITS.
_MAX_DIGITS = int(MAX_MANTISSA_BITS * math.log10(2))
_DATETIME_RE = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[T ]([0-9]{2}):([0-9]{2}):([0-9]{2})"
    r"(?:\.([0-9]+))?(Z|[+-][0-9]{2}:[0-9]{2})",
    re.ASCII,
)
_DATE_RE = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})", re.ASCII)
# Initial bytes of simple values other than false/true/null/floats/break.
_SIMPLE_BYTES = re.compile(rb"[\xe0-\xf3\xf7\xf8]")


def _type_name(obj: object) -> str:
    t = type(obj)
    return t.__qualname__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"


def _foreign_types() -> tuple[type, ...]:
    """Types cbor2 encodes natively that are outside our type model."""
    import email.message
    import fractions
    import ipaddress

    import cbor2

    return (
        fractions.Fraction,
        complex,
        re.Pattern,
        email.message.Message,
        ipaddress.IPv4Address,
        ipaddress.IPv6Address,
        ipaddress.IPv4Network,
        ipaddress.IPv6Network,
        ipaddress.IPv4Interface,
        ipaddress.IPv6Interface,
        type(cbor2.undefined),
        cbor2.CBORSimpleValue,
        cbor2.CBORTag,
        cbor2.frozendict,
    )


class _Encoding:
    """One `dumps` call's configuration: cbor2 hooks closed over `default`."""

    def __init__(self, canonical: bool, default: Callable[[object], object] | None) -> None:
        import cbor2

        self.cbor2 = cbor2
        # The object an EncodeError was raised for, so `dumps` can find its path.
        self.culprit: object = None
        self.canonical = canonical
        self.user_default = default
        # Container levels already counted (see `_default`).
        self.levels = 0
        encoders: dict[type, Callable[[Any, Any], None]] = {
            Timestamp: self._timestamp,
            memoryview: self._memoryview,
            _dt.datetime: self._datetime,
            Decimal: self._decimal,
        }
        for t in _foreign_types():
            encoders[t] = self._outside
        if canonical:
            encoders[dict] = self._sorted_map
            encoders[set] = self._sorted_set
            encoders[frozenset] = self._sorted_set
        self.encoders = encoders

    def dumps(self, obj: object) -> bytes:
        result: bytes = self.cbor2.dumps(
            obj,
            canonical=self.canonical,
            datetime_as_timestamp=True,
            encoders=self.encoders,
            default=self._default,
        )
        return result

    def _timestamp(self, enc: Any, value: Timestamp) -> None:
        enc.encode_length(6, 1)
        if value.nanoseconds == 0:
            enc.encode(value.seconds)
        else:
            # CBOR's epoch time has no nanoseconds: the nearest double.
            enc.encode(value.seconds + value.nanoseconds / 1e9)

    def _memoryview(self, enc: Any, value: memoryview) -> None:
        try:
            data = value.tobytes()
        except ValueError:
            self.culprit = value
            raise EncodeError(RELEASED, "$") from None
        enc.encode(data)

    def _decimal(self, enc: Any, value: Decimal) -> None:
        # What the decoder refuses is refused here too, so nothing written is unreadable.
        exponent = value.as_tuple().exponent
        if isinstance(exponent, int) and (
            abs(exponent) > MAX_EXPONENT or len(value.as_tuple().digits) > _MAX_DIGITS
        ):
            self.culprit = value
            raise EncodeError(
                f"cannot encode {_type_name(value)}: a CBOR decimal fraction is limited to "
                f"exponents within +-{MAX_EXPONENT} and {_MAX_DIGITS} digits",
                "$",
            )
        enc.encode_decimal(value)

    def _datetime(self, enc: Any, value: _dt.datetime) -> None:
        if value.utcoffset() is None:
            self.culprit = value
            raise EncodeError(
                f"cannot encode a naive {_type_name(value)}: attach a tzinfo "
                "(for example datetime.timezone.utc)",
                "$",
            )
        enc.encode_datetime(value)

    def _sorted_map(self, enc: Any, value: dict[Any, Any]) -> None:
        entries = sorted(((self.dumps(k), v) for k, v in value.items()), key=lambda e: e[0])
        self._no_duplicates(value, [key for key, _ in entries])
        enc.encode_length(5, len(entries))
        for key, item in entries:
            enc.write(key)
            enc.encode(item)

    def _sorted_set(self, enc: Any, value: set[Any] | frozenset[Any]) -> None:
        members = sorted(self.dumps(m) for m in value)
        self._no_duplicates(value, members)
        enc.encode_length(6, 258)
        enc.encode_length(4, len(members))
        for member in members:
            enc.write(member)

    def _no_duplicates(self, container: object, keys: list[bytes]) -> None:
        """Canonical CBOR forbids two keys (or set members) with the same bytes,
        such as 4 and an Enum whose value is 4 (as the Rust codec does)."""
        if any(a == b for a, b in itertools.pairwise(keys)):
            self.culprit = container
            raise EncodeError(_DUPLICATE, "$")

    def _outside(self, enc: Any, value: object) -> None:
        self._default(enc, value)

    def _default(self, enc: Any, value: object) -> None:
        if isinstance(value, Tag):
            enc.encode_length(6, value.tag)
            enc.encode(value.value)
        elif isinstance(value, Simple):
            v = value.value
            enc.write(bytes((0xE0 | v,)) if v < 24 else bytes((0xF8, v)))
        elif isinstance(value, Enum):
            enc.encode(value.value)
        elif dataclasses.is_dataclass(value) and not isinstance(value, type):
            enc.encode({f.name: getattr(value, f.name) for f in dataclasses.fields(value)})
        elif self.user_default is not None:
            result = self.user_default(value)
            # What the hook returns nests below `value`, at a depth cbor2 does
            # not track: bound it by the levels already in use (an upper bound).
            levels = nesting(result, MAX_DEPTH - self.levels)
            if levels is None:
                self.culprit = value
                raise EncodeError(TOO_DEEP, "$")
            self.levels += levels
            try:
                enc.encode(result)
            finally:
                self.levels -= levels
        else:
            self.culprit = value
            raise EncodeError(
                f"cannot encode object of type {_type_name(value)} as CBOR; "
                "pass default= to convert it",
                "$",
            )


def dumps(
    obj: object, *, canonical: bool = False, default: Callable[[object], object] | None = None
) -> bytes:
    """Encode `obj` as CBOR with cbor2, byte-identical to the Rust codec."""
    cbor2 = require("cbor2")

    encoding = _Encoding(canonical, default)
    # cbor2 overflows the C stack on deep nesting: refuse it first, as the Rust codec does.
    levels = nesting(obj)
    if levels is None:
        raise EncodeError(TOO_DEEP, deep_path(obj))
    encoding.levels = levels
    try:
        return encoding.dumps(obj)
    except EncodeError as exc:
        raise _with_path(exc, obj, encoding.culprit) from None
    except cbor2.CBOREncodeError as exc:
        cause = exc.__cause__ or exc.__context__
        if isinstance(cause, EncodeError):
            raise _with_path(cause, obj, encoding.culprit) from exc
        raise EncodeError(str(exc), "$") from exc
    except UnicodeEncodeError as exc:
        culprit = exc.object if isinstance(exc.object, str) else None
        error = EncodeError(
            "cannot encode a str holding a lone surrogate: UTF-8 cannot carry it", "$"
        )
        raise _with_path(error, obj, culprit, surrogate=True) from exc
    except RecursionError as exc:
        raise EncodeError(f"nesting deeper than {MAX_DEPTH} levels", "$") from exc


def _with_path(
    error: EncodeError, root: object, culprit: object, *, surrogate: bool = False
) -> EncodeError:
    """`error` with the path of `culprit` inside `root`, in the Rust codec's
    notation (`$.items[3].price`). Runs only when encoding has failed."""
    if culprit is None and not surrogate:
        return error
    found = _find(root, culprit, surrogate, 0)
    if found is None:
        return error
    return EncodeError(error.message, "$" + "".join(reversed(found)))


def _key_segment(key: object) -> str:
    return f".{key}" if isinstance(key, str) else f"[{key!r}]"


def _find(node: object, culprit: object, surrogate: bool, depth: int) -> list[str] | None:
    """Reversed path segments from `node` to the culprit (by identity), or None."""
    if node is culprit and not surrogate:
        return []
    if surrogate and isinstance(node, str):
        try:
            node.encode()
        except UnicodeEncodeError:
            return []
        return None
    if depth > MAX_DEPTH:
        return None
    children: list[tuple[str | None, object]] = []
    if isinstance(node, (Enum, Tag)):
        children = [(None, node.value)]
    elif isinstance(node, dict):
        for k, v in node.items():
            children += [(_key_segment(k), k), (_key_segment(k), v)]
    elif isinstance(node, (list, tuple, set, frozenset)):
        children = [(f"[{i}]", v) for i, v in enumerate(node)]
    elif dataclasses.is_dataclass(node) and not isinstance(node, type):
        children = [(f".{f.name}", getattr(node, f.name, None)) for f in dataclasses.fields(node)]
    for segment, child in children:
        found = _find(child, culprit, surrogate, depth + 1)
        if found is not None:
            if segment is not None:
                found.append(segment)
            return found
    return None


# -- decoding: the semantic tags, mirroring rust/src/codec/cbor/tags.rs


def _utc_or_offset(text: str) -> _dt.tzinfo:
    if text == "Z":
        return _dt.timezone.utc
    hours, minutes = int(text[1:3]), int(text[4:6])
    if hours > 23 or minutes > 59:
        raise ValueError("offset out of range")
    seconds = (hours * 3600 + minutes * 60) * (-1 if text[0] == "-" else 1)
    return _dt.timezone.utc if seconds == 0 else _dt.timezone(_dt.timedelta(seconds=seconds))


def _datetime_string(value: object, immutable: bool) -> object:
    if not isinstance(value, str):
        raise ValueError("tag 0 (date-time string) must hold a text string")
    m = _DATETIME_RE.fullmatch(value)
    if m is None:
        raise ValueError(f"tag 0 holds {value!r}, not an RFC 3339 date-time")
    y, mo, d, h, mi, s, frac, off = m.groups()
    micro = int((frac or "0")[:6].ljust(6, "0"))
    tz = _utc_or_offset(off)
    return _dt.datetime(int(y), int(mo), int(d), int(h), int(mi), int(s), micro, tzinfo=tz)


def _epoch(value: object, immutable: bool) -> object:
    if isinstance(value, int):
        if not -(2**63) <= value < 2**63:
            raise ValueError("tag 1 (epoch date-time) is out of range")
        if not -62_135_596_800 <= value < 253_402_300_800:
            # Whole seconds outside datetime's years: a Timestamp holds them exactly.
            return Timestamp(value, 0)
        secs = float(value)
    elif isinstance(value, float):
        secs = value
        # Nanoseconds a datetime would round away: a Timestamp holds them.
        instant = _sub_microsecond(secs)
        if instant is not None:
            return Timestamp(*instant)
    else:
        raise ValueError("tag 1 (epoch date-time) must hold an integer or a float")
    if secs != secs or secs in (float("inf"), float("-inf")):
        raise ValueError("tag 1 (epoch date-time) must be finite")
    return _dt.datetime.fromtimestamp(secs, _dt.timezone.utc)


#: Beyond 2^53 microseconds from 1970 a float stays a datetime (the Rust twin's EXACT_SPAN).
_EXACT_SPAN = 9_007_199_254.0


def _sub_microsecond(secs: float) -> tuple[int, int] | None:
    """`(seconds, nanoseconds)` of an epoch float a datetime cannot hold exactly
    but a Timestamp can (the Rust core's `cbor::epoch::sub_microsecond`)."""
    if not abs(secs) < _EXACT_SPAN:
        return None
    # As datetime.fromtimestamp splits it (microseconds rounded half to even),
    # and as the encoder writes a datetime (total microseconds / 10^6).
    whole = math.trunc(secs)
    if (whole * 1_000_000 + round((secs - whole) * 1e6)) / 1e6 == secs:
        return None
    floor = math.floor(secs)
    nanos = round((secs - floor) * 1e9)
    if nanos >= 1_000_000_000:
        floor, nanos = floor + 1, nanos - 1_000_000_000
    # The encoder writes a Timestamp as seconds + nanoseconds / 10^9.
    return (floor, nanos) if floor + nanos / 1e9 == secs else None


def _bignum(negative: bool) -> Callable[[object, bool], object]:
    # Not capped, as in the Rust codec: int.from_bytes is linear; the caps are
    # where a bignum becomes a Decimal mantissa (tags 4 and 5).
    def decode(value: object, immutable: bool) -> object:
        if not isinstance(value, bytes):
            raise ValueError("a bignum (tag 2 or 3) must hold a byte string")
        n = int.from_bytes(value, "big")
        return ~n if negative else n

    return decode


def _exponent_mantissa(value: object, tag: int) -> tuple[int, int]:
    if (
        not isinstance(value, (list, tuple))
        or len(value) != 2
        or not all(isinstance(v, int) for v in value)
    ):
        raise ValueError(f"tag {tag} must hold [exponent, mantissa] integers")
    exponent, mantissa = value
    if abs(exponent) > MAX_EXPONENT:
        raise ValueError(f"{_TAG_NAMES[tag]} exponent is beyond +-{MAX_EXPONENT}")
    bits = mantissa.bit_length()
    if bits > MAX_MANTISSA_BITS:
        raise ValueError(
            f"{_TAG_NAMES[tag]} mantissa of {bits} bits is beyond {MAX_MANTISSA_BITS} bits"
        )
    return exponent, mantissa


def _exact_decimal(magnitude: int, negative: bool, exponent: int) -> Decimal:
    return Decimal((int(negative), Decimal(magnitude).as_tuple().digits, exponent))


def _decimal_fraction(value: object, immutable: bool) -> object:
    exponent, mantissa = _exponent_mantissa(value, 4)
    return _exact_decimal(abs(mantissa), mantissa < 0, exponent)


def _bigfloat(value: object, immutable: bool) -> object:
    exponent, mantissa = _exponent_mantissa(value, 5)
    if exponent >= 0:
        return _exact_decimal(abs(mantissa) << exponent, mantissa < 0, 0)
    # m * 2^-k == m * 5^k * 10^-k exactly.
    return _exact_decimal(abs(mantissa) * 5**-exponent, mantissa < 0, exponent)


def _uuid(value: object, immutable: bool) -> object:
    import uuid

    if not isinstance(value, bytes) or len(value) != 16:
        raise ValueError("tag 37 (UUID) must hold a 16-byte string")
    return uuid.UUID(bytes=value)


def _date_days(value: object, immutable: bool) -> object:
    if not isinstance(value, int):
        raise ValueError("tag 100 (date) must hold an integer")
    return _dt.date.fromordinal(value + _ORDINAL_OF_EPOCH)


def _date_string(value: object, immutable: bool) -> object:
    if not isinstance(value, str):
        raise ValueError("tag 1004 (date string) must hold a text string")
    m = _DATE_RE.fullmatch(value)
    if m is None:
        raise ValueError(f"tag 1004 holds {value!r}, not a YYYY-MM-DD date")
    return _dt.date(int(m[1]), int(m[2]), int(m[3]))


def _freeze(value: object) -> object:
    """A set member as the Rust codec decodes it: arrays as tuples, sets as frozensets."""
    if type(value) in (list, tuple):
        return tuple(_freeze(v) for v in value)  # type: ignore[attr-defined]
    if type(value) in (set, frozenset):
        return frozenset(_freeze(v) for v in value)  # type: ignore[attr-defined]
    if type(value) is dict:
        raise ValueError(
            "a map cannot be a map key or a set member: Python has no hashable mapping"
        )
    if isinstance(value, Tag):
        return Tag(value.tag, _freeze(value.value))
    return value


def _set(value: object, immutable: bool) -> object:
    if type(value) not in (list, tuple):
        raise ValueError("tag 258 (set) must hold an array")
    members = [_freeze(v) for v in value]  # type: ignore[attr-defined]
    try:
        return frozenset(members) if immutable else set(members)
    except TypeError as exc:
        raise ValueError(f"unusable set member: {exc}") from exc


_OWN: dict[int, Callable[[object, bool], object]] = {
    0: _datetime_string,
    1: _epoch,
    2: _bignum(False),
    3: _bignum(True),
    4: _decimal_fraction,
    5: _bigfloat,
    37: _uuid,
    100: _date_days,
    258: _set,
    1004: _date_string,
}


class _Semantic(Mapping[int, Callable[[object, bool], object]]):
    """cbor2's `semantic_decoders` for every tag: ours for the type model,
    `Tag` for the rest (cbor2 would decode some into fractions, regexes...,
    and gives its own tag hook only frozen content)."""

    def __init__(self, hook: Callable[[int, object], object] | None = None) -> None:
        self.hook = hook

    def __getitem__(self, number: int) -> Callable[[object, bool], object]:
        own = _OWN.get(number)
        if own is not None:
            return own
        hook = self.hook
        if hook is not None:
            return lambda value, immutable: hook(number, value)
        return lambda value, immutable: Tag(number, value)

    def __len__(self) -> int:
        return len(_OWN)

    def __iter__(self) -> Iterator[int]:
        return iter(_OWN)


_SEMANTIC = _Semantic()


def _object_hook(value: Mapping[Any, Any], immutable: bool) -> object:
    if immutable:
        raise ValueError(
            "a map cannot be a map key or a set member: Python has no hashable mapping"
        )
    return value


_LEAVES = frozenset({str, int, float, bool, type(None), bytes, Decimal, _dt.datetime, _dt.date})


def _simple_values(value: object, undefined: object, simple: type) -> object:
    """Replaces cbor2's `undefined` and `CBORSimpleValue` objects, in place
    where the container is ours; run only when the input holds one of their
    initial bytes."""
    t = type(value)
    if t in _LEAVES:
        return value
    if value is undefined:
        return None
    if t is simple:
        return Simple(value.value)  # type: ignore[attr-defined]
    if t is list:
        items: list[object] = value  # type: ignore[assignment]
        for i, item in enumerate(items):
            if type(item) not in _LEAVES:
                items[i] = _simple_values(item, undefined, simple)
        return items
    if t is dict:
        mapping: dict[object, object] = value  # type: ignore[assignment]
        if any(type(k) not in _LEAVES for k in mapping):
            return {
                _simple_values(k, undefined, simple): _simple_values(v, undefined, simple)
                for k, v in mapping.items()
            }
        for k, v in mapping.items():
            if type(v) not in _LEAVES:
                mapping[k] = _simple_values(v, undefined, simple)
        return mapping
    if t in (tuple, set, frozenset):
        return t(_simple_values(v, undefined, simple) for v in value)  # type: ignore[attr-defined]
    if t is Tag:
        tag: Tag = value  # type: ignore[assignment]
        return Tag(tag.tag, _simple_values(tag.value, undefined, simple))
    return value


def loads(
    data: bytes | bytearray | memoryview,
    *,
    tag_hook: Callable[[int, object], object] | None = None,
    limits: Limits | None = None,
) -> object:
    """Decode one CBOR data item with cbor2, as the Rust codec does.

    `tag_hook(tag, value)` builds the value of tags outside the type model
    (else they decode to `Tag`).
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(
            f"cbor_loads expects bytes, bytearray or memoryview, not {_type_name(data)}"
        )
    raw = bytes(data)
    value, end = _decode_one(raw, 0, tag_hook, limits)
    if end != len(raw):
        raise DecodeError(f"{len(raw) - end} trailing bytes after the data item", end)
    return value


def next_item(
    data: bytes,
    start: int,
    *,
    tag_hook: Callable[[int, object], object] | None = None,
    limits: Limits | None = None,
) -> tuple[object, int] | None:
    """The item of a CBOR sequence starting at `start`: `(item, end)`, or None
    when `data` ends before it does (the twin of `_core.cbor_next`)."""
    try:
        return _decode_one(data, start, tag_hook, limits)
    except _Incomplete:
        return None


class _Incomplete(DecodeError):
    """The input ended inside the item: more bytes could complete it."""


def _decode_key(
    raw: bytes, at: int, tag_hook: Callable[[int, object], object] | None
) -> tuple[object, int]:
    """The map key at `at`, as the decoder builds keys (arrays as tuples)."""
    value, end = _decode_one(raw, at, tag_hook)
    try:
        return _freeze(value), end
    except ValueError as exc:
        raise DecodeError(str(exc), at) from None


def _decode_one(
    raw: bytes,
    start: int,
    tag_hook: Callable[[int, object], object] | None,
    limits: Limits | None = None,
) -> tuple[object, int]:
    if limits is not None and limits.given:
        from microstd.codec._cbor_scan import check_limits

        check_limits(raw, start, limits, functools.partial(_decode_key, tag_hook=tag_hook))
    cbor2 = require("cbor2")
    fp = io.BytesIO(raw)
    fp.seek(start)
    semantic = _SEMANTIC if tag_hook is None else _Semantic(tag_hook)
    decoder = cbor2.CBORDecoder(
        fp,
        object_hook=_object_hook,
        semantic_decoders=semantic,
        max_depth=MAX_DEPTH,
    )
    try:
        value = decoder.decode()
    except cbor2.CBORDecodeEOF as exc:
        raise _Incomplete("truncated input: the data item is incomplete", len(raw)) from exc
    except cbor2.CBORDecodeError as exc:
        cause = exc.__cause__ or exc.__context__
        message = str(cause) if isinstance(cause, ValueError) and str(cause) else str(exc)
        raise DecodeError(message, min(fp.tell(), len(raw))) from exc
    except RecursionError as exc:
        raise DecodeError(f"nesting deeper than {MAX_DEPTH} levels", fp.tell()) from exc
    end = fp.tell()
    if _SIMPLE_BYTES.search(raw, start, end):
        value = _simple_values(value, cbor2.undefined, cbor2.CBORSimpleValue)
    return value, end
