"""Run as a child process by `test_typed_inline_values_stress.py` (under
PYTHONMALLOC=debug, so that a write past a values array aborts it): every way
user code or earlier instances can leave a class's shared keys and an
instance's inline values while a decode is filling that instance. Prints
"ok" when every decoded instance holds what was sent."""

from __future__ import annotations

import ctypes
import dataclasses
import gc
import platform
import random
import sys
import threading
from typing import Any

from microstd import codec

FORMATS = ["msgpack", "cbor", "json"]


def decoders(tp: Any) -> list[tuple[Any, Any]]:
    return [(getattr(codec, f).Decoder(tp).decode, getattr(codec, f).dumps) for f in FORMATS]


def holds(obj: Any, tp: Any, sent: dict[str, Any]) -> None:
    assert type(obj) is tp, type(obj)
    got = {k: v for k, v in vars(obj).items() if k in sent}
    assert got == sent, (got, sent)


def wide(n: int, factory: Any = None) -> Any:
    fields: list[Any] = [(f"f{i}", int, dataclasses.field(default=i)) for i in range(n)]
    if factory is not None:
        fields.append(("late", list, dataclasses.field(default_factory=factory)))
    return dataclasses.make_dataclass(f"Wide{n}", fields)


def keys_grown_while_filling() -> None:
    """Instances made before (each shrinks the values arrays of later ones),
    then, from a default factory run mid-decode, the shared keys filled to
    the brim by another instance."""
    for n in (1, 5, 29, 30, 31, 45):
        box: dict[str, Any] = {}

        def grow(box: dict[str, Any] = box) -> list[int]:
            tp = box["tp"]
            for _ in range(40):
                object.__new__(tp)
            other = object.__new__(tp)
            for i in range(60):
                setattr(other, f"f{i}", -i)
                setattr(other, f"x{i}", i)
            return [1]

        tp = box["tp"] = wide(n, grow)
        for round_ in range(4):
            for decode, dumps in decoders(tp):
                sent: dict[str, Any] = {f"f{i}": i * 7 for i in reversed(range(n))}
                if round_ % 2:
                    sent = {"late": [1], **sent}
                obj = decode(dumps(sent))
                holds(obj, tp, {"late": [1], **sent})
        gc.collect()


def values_of_one_slot() -> None:
    """Many instances made before any field name is stored: later instances
    get values arrays of a single slot."""
    for n in (3, 30, 33):
        tp = wide(n)
        early = [object.__new__(tp) for _ in range(50)]
        for decode, dumps in decoders(tp):
            for _ in range(3):
                sent = {f"f{i}": i for i in range(n)}
                holds(decode(dumps(sent)), tp, sent)
        for e in early:
            e.f0, e.f1 = 1, 2
        gc.collect()


@dataclasses.dataclass
class _Meddler:
    how: int = 0

    def __post_init__(self) -> None:
        for obj in gc.get_objects():
            if type(obj) is not _Outer:
                continue
            if self.how == 1:
                vars(obj)  # its __dict__ made
            elif self.how == 2:
                obj.__class__ = _OuterTwin  # its __dict__ made, its class another
            elif self.how == 3 and "a" in vars(obj):
                del obj.a


@dataclasses.dataclass
class _Outer:
    a: int = 0
    m: _Meddler = dataclasses.field(default_factory=_Meddler)
    b: int = 0
    c: int = 0


class _OuterTwin(_Outer):
    pass


def instance_changed_while_filling() -> None:
    for decode, dumps in decoders(_Outer):
        for how in (0, 1, 2, 3):
            for _ in range(3):
                obj = decode(dumps({"a": 1, "m": {"how": how}, "b": 2, "c": 3}))
                assert (obj.b, obj.c) == (2, 3)
                assert how == 3 or obj.a == 1
    gc.collect()


@dataclasses.dataclass
class _Base:
    a: int = 0
    b: int = 0


class _Sub(_Base):
    pass


def an_instance_of_a_subclass() -> None:
    """`__new__` hands back a subclass's instance: its own shared keys, and a
    values array of one slot, while the fields sit at 28 and 29 in the
    class's keys."""
    junk = object.__new__(_Base)
    for i in range(28):
        setattr(junk, f"j{i}", i)
    _Base(a=1, b=2)
    for _ in range(40):
        object.__new__(_Sub)
    _Base.__new__ = lambda cls, *a, **k: object.__new__(_Sub)  # type: ignore[method-assign]
    try:
        for decode, dumps in decoders(_Base):
            for _ in range(3):
                obj = decode(dumps({"a": 5, "b": 6}))
                assert type(obj) is _Sub
                assert (obj.a, obj.b) == (5, 6)
    finally:
        del _Base.__new__
    gc.collect()


def threads_growing_the_keys() -> None:
    """Decodes on three threads whose default factories let the others run,
    while a fourth makes instances and grows the same class's shared keys."""
    tp = wide(12, lambda: (threading.Event().wait(0.0001), [1])[1])
    stop = threading.Event()
    errors: list[BaseException] = []

    def meddle() -> None:
        i = 0
        while not stop.is_set():
            o = object.__new__(tp)
            setattr(o, f"f{i % 12}", i)
            setattr(o, f"y{i % 40}", i)
            i += 1

    def decode_many() -> None:
        try:
            for decode, dumps in decoders(tp):
                for _ in range(150):
                    sent = {f"f{i}": i for i in range(12)}
                    holds(decode(dumps(sent)), tp, sent)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    meddler = threading.Thread(target=meddle)
    workers = [threading.Thread(target=decode_many) for _ in range(3)]
    sys.setswitchinterval(1e-6)
    meddler.start()
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    stop.set()
    meddler.join()
    assert not errors, errors
    gc.collect()


def shared_keys_never_outgrow_values() -> None:
    """The invariant the store's SAFETY rests on, watched in CPython 3.11's own
    structures: `dk_nentries + dk_usable` of a class's shared keys never grows
    (each new instance's values array is sized to it, so every live one holds
    at least `dk_nentries` slots), whatever is done to the instances."""
    if platform.python_implementation() != "CPython" or sys.version_info[:2] != (3, 11):
        return
    # PyHeapTypeObject (3.11 cpython/object.h) ends: ht_cached_keys, ht_module,
    # _ht_tpname, _spec_cache {getitem}; `struct _dictkeysobject`: dk_refcnt,
    # 4 bytes of sizes/kind + dk_version, dk_usable (+16), dk_nentries (+24).
    at = type.__basicsize__ - 4 * 8
    rnd = random.Random(1)
    for _ in range(50):

        class Free:
            pass

        keys = ctypes.c_void_p.from_address(id(Free) + at).value
        assert keys is not None
        assert ctypes.c_uint8.from_address(keys + 10).value == 2  # DICT_KEYS_SPLIT

        def room(keys: int = keys) -> tuple[int, int]:
            usable = ctypes.c_ssize_t.from_address(keys + 16).value
            return usable, ctypes.c_ssize_t.from_address(keys + 24).value

        assert room() == (30, 0)
        total = 30
        objs: list[Any] = []
        for step in range(300):
            if rnd.random() < 0.3 or not objs:
                objs.append(Free())
            else:
                o, name, how = rnd.choice(objs), f"a{rnd.randint(0, 45)}", rnd.random()
                if how < 0.5:
                    setattr(o, name, step)
                elif how < 0.7:
                    vars(o)[name] = step  # through the materialized split dict
                elif how < 0.85:
                    vars(o).pop(name, None)
                else:
                    o.__dict__ = {name: step}
            usable, used = room()
            assert 0 <= used <= 30
            assert usable >= 0
            assert usable + used <= total, (usable, used, total)
            total = usable + used


if __name__ == "__main__":
    shared_keys_never_outgrow_values()
    keys_grown_while_filling()
    values_of_one_slot()
    instance_changed_while_filling()
    an_instance_of_a_subclass()
    threads_growing_the_keys()
    print("ok")
