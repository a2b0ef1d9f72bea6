"""Content-type driven encoding of Python objects: msgpack, CBOR and JSON.

Use the format modules directly (`codec.msgpack.dumps(obj)`), or look a codec
up by content type (`codec.get("application/cbor").loads(data)`).
"""

from __future__ import annotations

from microstd.codec import cbor, json, msgpack
from microstd.codec._cbor_simple import Simple
from microstd.codec._ext import Ext, Tag
from microstd.codec._timestamp import Timestamp
from microstd.codec.base import Codec
from microstd.codec.registry import get, known, register
from microstd.codec.typed import convert

__all__ = [
    "Codec",
    "Ext",
    "Simple",
    "Tag",
    "Timestamp",
    "cbor",
    "convert",
    "get",
    "json",
    "known",
    "msgpack",
    "register",
]
