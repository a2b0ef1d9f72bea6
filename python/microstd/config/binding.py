"""Typed binding of a merged tree to a schema: dataclasses, or pydantic models.

Strings (from the environment, the command line, `.env` files and remote
key-value stores) are coerced to the field's type: `"8080"` to `int`,
`"true"` to `bool`, `"5s"` to `timedelta`, `'["a","b"]'` or `"a,b"` to a
list. Every mismatch is collected, then one `ConfigError` names each key,
the source that set it, the expected type and the value received (masked
when secret).
"""

from __future__ import annotations

import dataclasses
import json
import sys
import types
import typing
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any, Literal, Union

from microstd.config._scalars import FALSE, SCALARS, SUBCLASS_SCALARS, TRUE, to_bool
from microstd.config.durations import parse_duration
from microstd.config.provenance import Path, Provenance, join_path
from microstd.config.secrets import Secret, mask
from microstd.errors import ConfigError

__all__ = ["bind", "looks_like_json", "parse_textual", "type_name"]


class _Mismatch(Exception):
    def __init__(self, path: Path, expected: str, value: Any, reason: str = "") -> None:
        super().__init__(path, expected)
        self.path = path
        self.expected = expected
        self.value = value
        self.reason = reason


def type_name(tp: Any) -> str:
    """A short readable name for a type annotation."""
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "").replace("datetime.", "")


def looks_like_json(text: str) -> bool:
    """Whether a text value is meant as JSON (an object, array, number or literal)."""
    s = text.strip()
    if not s:
        return False
    if s[0] in "[{":
        return True
    if s in {"true", "false", "null"}:
        return True
    try:
        float(s)
    except ValueError:
        return False
    return s[0] not in "+." and not s.lower().startswith(("nan", "inf", "-nan", "-inf"))


def parse_textual(value: Any) -> Any:
    """Without a schema, a text value that looks like JSON is parsed as JSON (else kept)."""
    if isinstance(value, dict):
        return {k: parse_textual(v) for k, v in value.items()}
    if isinstance(value, str) and not isinstance(value, Secret) and looks_like_json(value):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def bind(schema: Any, data: dict[str, Any], prov: Provenance) -> Any:
    """Build `schema` from `data`; `None` as schema returns the tree itself."""
    if schema is None:
        return data
    if _is_pydantic_model(schema):
        return _bind_pydantic(schema, data, prov)
    binder = _Binder(prov)
    result = binder.coerce(schema, data, ())
    if binder.errors:
        raise ConfigError(_describe(binder.errors, prov)) from None
    return result


def _describe(errors: list[_Mismatch], prov: Provenance) -> str:
    lines = []
    for err in errors:
        key = join_path(err.path) or "<root>"
        if err.reason == "missing":
            lines.append(f"{key}: required ({err.expected}) but no source set it")
            continue
        source = prov.source_of(err.path) or "no source"
        got = mask(err.value, prov.is_secret(err.path))
        extra = f" ({err.reason})" if err.reason else ""
        lines.append(
            f"{key}: expected {err.expected}, got {got} "
            f"({type(err.value).__name__}) from {source}{extra}"
        )
    head = "invalid configuration" if len(lines) == 1 else f"{len(lines)} configuration errors"
    return head + ":\n  " + "\n  ".join(lines)


class _Binder:
    def __init__(self, prov: Provenance) -> None:
        self.prov = prov
        self.errors: list[_Mismatch] = []

    def coerce(self, tp: Any, value: Any, path: Path) -> Any:
        """Coerce, recording the mismatch and returning None when it fails."""
        try:
            return self._coerce(tp, value, path)
        except _Mismatch as err:
            self.errors.append(err)
            return None

    def _coerce(self, tp: Any, value: Any, path: Path) -> Any:
        if tp is Any or tp is object:
            return value
        origin = typing.get_origin(tp)
        args = typing.get_args(tp)
        if origin is typing.Annotated:
            return self._coerce(args[0], value, path)
        if origin is Union or (sys.version_info >= (3, 10) and origin is types.UnionType):
            return self._union(tp, args, value, path)
        if origin is Literal:
            return self._literal(tp, args, value, path)
        if value is None:
            raise _Mismatch(path, type_name(tp), value)
        if origin in (list, Sequence, tuple, set, frozenset) or tp in (list, tuple, set, frozenset):
            return self._sequence(tp, origin or tp, args, value, path)
        if origin in (dict, Mapping) or tp is dict:
            return self._mapping(tp, args, value, path)
        if isinstance(tp, type):
            if dataclasses.is_dataclass(tp):
                return self._dataclass(tp, value, path)
            if _is_pydantic_model(tp):
                return self._pydantic_nested(tp, value, path)
            scalar = SCALARS.get(tp)
            if scalar is None:
                for base, conv in SUBCLASS_SCALARS:
                    if issubclass(tp, base):
                        scalar = conv
                        break
            if scalar is not None:
                try:
                    return scalar(tp, value)
                except (ValueError, TypeError, OverflowError, KeyError) as exc:
                    # The converter's message may quote the value: only the mismatch is reported.
                    raise _Mismatch(path, type_name(tp), value) from exc
            if isinstance(value, tp):
                return value
        raise _Mismatch(path, type_name(tp), value)

    def _union(self, tp: Any, args: tuple[Any, ...], value: Any, path: Path) -> Any:
        if value is None and type(None) in args:
            return None
        members = [a for a in args if a is not type(None)]
        # An exact type match wins over coercion, so `int | str` keeps "8" a str.
        for member in members:
            if isinstance(member, type) and type(value) is member:
                return value
        for member in members:
            try:
                return self._coerce(member, value, path)
            except _Mismatch:
                continue
        raise _Mismatch(path, type_name(tp), value)

    def _literal(self, tp: Any, args: tuple[Any, ...], value: Any, path: Path) -> Any:
        for allowed in args:
            if value == allowed and type(value) is type(allowed):
                return allowed
        if isinstance(value, str):
            for allowed in args:
                if str(allowed) == value or (
                    isinstance(allowed, bool)
                    and value.strip().lower() in (TRUE | FALSE)
                    and to_bool(bool, value) is allowed
                ):
                    return allowed
        raise _Mismatch(path, type_name(tp), value)

    def _sequence(self, tp: Any, origin: Any, args: tuple[Any, ...], value: Any, path: Path) -> Any:
        if isinstance(value, str):
            value = _text_to_list(value, tp, path)
        if not isinstance(value, (list, tuple, set, frozenset)):
            raise _Mismatch(path, type_name(tp), value)
        if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            if len(args) != len(value):
                raise _Mismatch(path, type_name(tp), value, f"needs {len(args)} items")
            return tuple(
                self.coerce(a, v, (*path, str(i)))
                for i, (a, v) in enumerate(zip(args, value, strict=True))
            )
        item = args[0] if args else Any
        items = [self.coerce(item, v, (*path, str(i))) for i, v in enumerate(value)]
        if origin in (tuple,):
            return tuple(items)
        if origin in (set, frozenset):
            return origin(items)
        return items

    def _mapping(self, tp: Any, args: tuple[Any, ...], value: Any, path: Path) -> Any:
        if isinstance(value, str):
            value = _text_to_obj(value, tp, path)
        if not isinstance(value, Mapping):
            raise _Mismatch(path, type_name(tp), value)
        ktype, vtype = args if len(args) == 2 else (Any, Any)
        return {
            self.coerce(ktype, k, (*path, str(k))): self.coerce(vtype, v, (*path, str(k)))
            for k, v in value.items()
        }

    def _dataclass(self, tp: type, value: Any, path: Path) -> Any:
        if isinstance(value, tp):
            return value
        if isinstance(value, str):
            value = _text_to_obj(value, tp, path)
        if not isinstance(value, Mapping):
            raise _Mismatch(path, type_name(tp), value)
        try:
            hints = typing.get_type_hints(tp)
        except (NameError, TypeError) as exc:
            raise ConfigError(f"cannot resolve the type hints of {tp.__name__}: {exc}") from exc
        kwargs: dict[str, Any] = {}
        before = len(self.errors)
        for f in dataclasses.fields(tp):
            if not f.init:
                continue
            fpath = (*path, f.name)
            if f.name in value:
                kwargs[f.name] = self.coerce(hints.get(f.name, Any), value[f.name], fpath)
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                ftype = hints.get(f.name, Any)
                if _accepts_none(ftype):
                    kwargs[f.name] = None
                else:
                    self.errors.append(_Mismatch(fpath, type_name(ftype), None, "missing"))
        if len(self.errors) > before:
            return None
        try:
            return tp(**kwargs)
        except (ValueError, TypeError) as exc:
            # __post_init__ validation; its message may quote values, so only its type is kept
            # when the subtree holds a secret.
            detail = type(exc).__name__ if self.prov.is_secret(path) else str(exc)
            raise _Mismatch(path, type_name(tp), value, f"rejected: {detail}") from None

    def _pydantic_nested(self, tp: Any, value: Any, path: Path) -> Any:
        if isinstance(value, tp):
            return value
        if isinstance(value, str):
            value = _text_to_obj(value, tp, path)
        return _bind_pydantic(tp, value, self.prov, path)


def _accepts_none(tp: Any) -> bool:
    origin = typing.get_origin(tp)
    if origin is Union or (sys.version_info >= (3, 10) and origin is types.UnionType):
        return type(None) in typing.get_args(tp)
    return tp is Any


def _text_to_list(text: str, tp: Any, path: Path) -> list[Any]:
    s = text.strip()
    if s.startswith("["):
        try:
            loaded = json.loads(s)
        except ValueError:
            raise _Mismatch(path, type_name(tp), text, "invalid JSON array") from None
        if isinstance(loaded, list):
            return loaded
        raise _Mismatch(path, type_name(tp), text)
    if not s:
        return []
    return [part.strip() for part in s.split(",")]


def _text_to_obj(text: str, tp: Any, path: Path) -> Any:
    try:
        loaded = json.loads(text)
    except ValueError:
        raise _Mismatch(path, type_name(tp), text, "expected a JSON object") from None
    if not isinstance(loaded, dict):
        raise _Mismatch(path, type_name(tp), text)
    return loaded


# --- pydantic --------------------------------------------------------------------------------


def _is_pydantic_model(tp: Any) -> bool:
    module = sys.modules.get("pydantic")
    if module is None or not isinstance(tp, type):
        return False
    base = getattr(module, "BaseModel", None)
    return base is not None and issubclass(tp, base)


def _bind_pydantic(model: Any, data: Any, prov: Provenance, base: Path = ()) -> Any:
    import pydantic

    prepared = _prep_for_pydantic(model, data)
    try:
        return model.model_validate(prepared)
    except pydantic.ValidationError as exc:
        lines = []
        for err in exc.errors(include_url=False, include_input=True):
            path = (*base, *(str(p) for p in err["loc"]))
            key = join_path(path) or "<root>"
            if err["type"] == "missing":
                lines.append(f"{key}: required but no source set it")
                continue
            source = prov.source_of(path) or "no source"
            got = mask(err.get("input"), prov.is_secret(path))
            lines.append(f"{key}: {err['msg']}, got {got} from {source}")
        # `from None`: pydantic's own message quotes inputs, secrets included.
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(lines)) from None


def _prep_for_pydantic(model: Any, data: Any) -> Any:
    """Do what pydantic does not: durations like "5s" and JSON text for nested fields."""
    if not isinstance(data, Mapping):
        return data
    out = dict(data)
    for name, info in model.model_fields.items():
        key = info.alias or name
        if key not in out:
            continue
        out[key] = _prep_value(info.annotation, out[key])
    return out


def _prep_value(tp: Any, value: Any) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is Union or (sys.version_info >= (3, 10) and origin is types.UnionType):
        members = [a for a in args if a is not type(None)]
        return _prep_value(members[0], value) if len(members) == 1 else value
    if tp is timedelta and isinstance(value, str):
        try:
            return parse_duration(value)
        except ValueError:
            return value
    if isinstance(value, str) and (
        origin in (list, tuple, set, frozenset, dict) or _is_pydantic_model(tp)
    ):
        s = value.strip()
        if s[:1] in ("[", "{"):
            try:
                return json.loads(s)
            except ValueError:
                return value
        if origin in (list, tuple, set, frozenset):
            return [p.strip() for p in s.split(",")] if s else []
    if _is_pydantic_model(tp):
        return _prep_for_pydantic(tp, value)
    if origin in (list, tuple, set, frozenset) and args and isinstance(value, list):
        return [_prep_value(args[0], v) for v in value]
    if origin is dict and len(args) == 2 and isinstance(value, Mapping):
        return {k: _prep_value(args[1], v) for k, v in value.items()}
    return value
