"""Inputs that crashed the interpreter (issue #11), each run in a child process
so a regression fails its test instead of killing pytest.

Every snippet must end with a clear `microstd.errors` exception or a correct
result, and print "OK".
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest


def _run(code: str, *, pure: bool = False) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if pure:
        env["MICROSTD_PURE"] = "1"
    else:
        env.pop("MICROSTD_PURE", None)
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )


def _assert_ok(result: subprocess.CompletedProcess[str]) -> None:
    # A negative return code is a signal: -11 is the segfault this guards against.
    assert result.returncode == 0, (result.returncode, result.stderr[-2000:])
    assert result.stdout.strip().endswith("OK"), result.stdout[-2000:]


MUTATING_LIST = """
    from microstd.codec import json
    class Thing: pass
    data = [Thing() for _ in range(50)] + [str(i) * 3 for i in range(1000)]
    junk = []
    def hook(obj):
        data.clear()  # frees the items orjson is iterating
        junk.append([object() for _ in range(2000)])  # and reuses their memory
        return 1
    out = json.dumps(data, default=hook)
    assert json.loads(out) == [1] * 50 + [str(i) * 3 for i in range(1000)]
    print("OK")
"""

MUTATING_DICT = """
    from microstd.codec import json
    class Thing: pass
    data = {str(i): Thing() for i in range(100)}
    junk = []
    def hook(obj):
        data.clear()
        junk.append({str(i): object() for i in range(200)})
        return [1] * 100
    out = json.loads(json.dumps(data, default=hook))
    assert list(out) == [str(i) for i in range(100)] and out["7"] == [1] * 100
    print("OK")
"""

MUTATING_RETURNED = """
    from microstd.codec import json
    class Thing: pass
    top = [Thing(), Thing()]
    shared = [Thing() for _ in range(20)]
    def hook(obj):
        if obj in top:
            return {"shared": shared}
        shared.clear()  # mutates the list an earlier call returned, while it is encoded
        return 0
    out = json.loads(json.dumps(top, default=hook))
    assert out == [{"shared": [0] * 20}, {"shared": []}], out
    print("OK")
"""


@pytest.mark.parametrize(
    "code", [MUTATING_LIST, MUTATING_DICT, MUTATING_RETURNED], ids=["list", "dict", "returned"]
)
@pytest.mark.parametrize("pure", [False, True], ids=["core", "pure"])
def test_json_default_hook_mutating_the_container(code: str, pure: bool) -> None:
    _assert_ok(_run(code, pure=pure))


DEEP_TUPLES = """
    from microstd.codec import json
    from microstd.errors import EncodeError
    x = 1
    for i in range({depth}):
        x = (x,) if i % 2 else [x]
    try:
        json.dumps(x)
    except EncodeError as exc:
        assert "nesting deeper than 256 levels" in exc.message, exc
        assert exc.path.startswith("$[0][0]")
    else:
        raise AssertionError("no error")
    print("OK")
"""


@pytest.mark.parametrize("depth", [5000, 100_000])
@pytest.mark.parametrize("pure", [False, True], ids=["core", "pure"])
def test_json_deep_tuples_are_an_encode_error(depth: int, pure: bool) -> None:
    # orjson does not count tuples against its recursion limit: 5,000 corrupted the heap.
    _assert_ok(_run(DEEP_TUPLES.format(depth=depth), pure=pure))


def test_json_nesting_within_the_limit_still_encodes() -> None:
    from microstd.codec import json

    x: object = 1
    for _ in range(200):
        x = (x,)
    assert json.dumps(x) == b"[" * 200 + b"1" + b"]" * 200


RELEASED_VIEW = """
    from microstd.codec import json
    view = memoryview(bytearray(b'["' + b"x" * 100_000 + b'"]'))
    view.release()
    try:
        json.loads(view)
    except ValueError as exc:
        assert "released" in str(exc), exc
    else:
        raise AssertionError("a released memoryview was decoded")
    live = memoryview(b'{"a": [1, 2]}')
    assert json.loads(live) == {"a": [1, 2]}
    assert json.loads(live[6:12]) == [1, 2]
    print("OK")
"""


def test_json_loads_of_a_released_memoryview_is_refused() -> None:
    # orjson read the released (freed) buffer and decoded it.
    _assert_ok(_run(RELEASED_VIEW))


DEEP_CBOR_TWIN = """
    from microstd.codec import _pure_cbor
    from microstd.errors import EncodeError
    x = []
    for _ in range({depth}):
        x = [x]
    for obj in (x, {{"a": x}}):
        try:
            _pure_cbor.dumps(obj)
        except EncodeError as exc:
            assert exc.message == "nesting deeper than 256 levels", exc
            assert exc.path.startswith("$"), exc
        else:
            raise AssertionError("no error")
    print("OK")
"""


@pytest.mark.parametrize("depth", [10_000, 100_000])
def test_cbor_twin_deep_input_is_an_encode_error(depth: int) -> None:
    # cbor2 has no depth limit on arrays and maps: it overflowed the C stack.
    _assert_ok(_run(DEEP_CBOR_TWIN.format(depth=depth)))


DEEP_CBOR_HOOK = """
    from microstd.codec import _pure_cbor
    from microstd.errors import EncodeError
    class Thing: pass
    def deep(obj):
        x = []
        for _ in range(100_000):
            x = [x]
        return x
    try:
        _pure_cbor.dumps({"a": [Thing()]}, default=deep)
    except EncodeError as exc:
        assert exc.message == "nesting deeper than 256 levels", exc
        assert exc.path == "$.a[0]", exc.path
    else:
        raise AssertionError("no error")
    print("OK")
"""


def test_cbor_twin_deep_default_result_is_an_encode_error() -> None:
    _assert_ok(_run(DEEP_CBOR_HOOK))


def test_cbor_twin_refuses_at_the_rust_codecs_depth() -> None:
    from microstd import _core
    from microstd.codec import _pure_cbor
    from microstd.errors import EncodeError

    for lists in (256, 257):
        x: object = []
        for _ in range(lists - 1):
            x = [x]
        outcomes = []
        for dumps in (_core.cbor_dumps, _pure_cbor.dumps):
            try:
                outcomes.append(dumps(x))
            except EncodeError as exc:
                outcomes.append((exc.message, exc.path))
        assert outcomes[0] == outcomes[1], lists


MISSING_PACKAGES = """
    import sys
    sys.modules["msgpack"] = None  # as if the package were not installed
    sys.modules["cbor2"] = None
    from microstd import codec, store
    for name, fmt in (("msgpack", codec.msgpack), ("cbor2", codec.cbor)):
        for call in (lambda: fmt.dumps({"a": 1}), lambda: fmt.loads(b"\\x01")):
            try:
                call()
            except ImportError as exc:
                assert f"need the {name!r} package" in str(exc), exc
                assert f"pip install {name}" in str(exc), exc
            else:
                raise AssertionError("no error")
    s = store.open_sync("memory://?impl=python")
    try:
        s.write("k", {"a": 1})
    except ImportError as exc:
        assert "'msgpack' package" in str(exc), exc
    else:
        raise AssertionError("no error")
    print("OK")
"""


def test_missing_twin_packages_give_a_clear_import_error() -> None:
    # Before: the store reported `EncodeError: cannot encode dict: import of msgpack halted`.
    _assert_ok(_run(MISSING_PACKAGES, pure=True))


def test_the_twins_packages_are_declared_dependencies() -> None:
    from importlib.metadata import requires

    declared = {
        r.split(">")[0].split("=")[0].split(";")[0].strip()
        for r in requires("microstd") or []
        if "extra ==" not in r
    }
    assert {"msgpack", "cbor2", "orjson"} <= declared, declared


DEEP_TWIN_SORTED = """
    from microstd.codec import _pure_msgpack, json
    from microstd.errors import EncodeError
    x = []
    for _ in range(100_000):
        x = [{"a": x}]
    for encode in (
        lambda: _pure_msgpack.dumps({1: x}, sort_keys=True),
        lambda: json.pure_dumps(x, sort_keys=True),
    ):
        try:
            encode()
        except EncodeError as exc:
            assert "nesting deeper than" in exc.message, exc
        else:
            raise AssertionError("no error")
    print("OK")
"""


def test_twins_sorting_deep_input_is_an_encode_error() -> None:
    # A raw RecursionError escaped from the msgpack twin's key sorting.
    _assert_ok(_run(DEEP_TWIN_SORTED))
