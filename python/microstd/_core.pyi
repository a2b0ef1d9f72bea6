# Types of the Rust extension `microstd._core`, checked by `python -m mypy.stubtest microstd._core`.
# Each area adds its functions and classes here as it lands in Rust.

from collections.abc import Callable

__version__: str
MAX_DEPTH: int

def msgpack_dumps(
    obj: object, *, default: Callable[[object], object] | None = None, sort_keys: bool = False
) -> bytes: ...
def msgpack_loads(data: bytes | bytearray | memoryview) -> object: ...
def cbor_dumps(
    obj: object, *, canonical: bool = False, default: Callable[[object], object] | None = None
) -> bytes: ...
def cbor_loads(data: bytes | bytearray | memoryview) -> object: ...
