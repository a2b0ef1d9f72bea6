"""Types the typed-decoding tests decode into (module level, so forward
references and recursive annotations resolve)."""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Annotated, Literal, NamedTuple, Optional, TypedDict, Union

from typing_extensions import NotRequired, Required

from microstd.codec import Timestamp


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


@dataclass
class Price:
    amount: float
    currency: str = "EUR"


@dataclass
class Item:
    sku: str
    qty: int
    price: Price
    tags: list[str] = field(default_factory=list)
    color: Optional[Color] = None  # noqa: UP045 (the typing form is what is tested)


@dataclass(frozen=True, slots=True)
class Frozen:
    a: int
    b: tuple[int, ...] = ()


@dataclass(kw_only=True)
class Base:
    id: int


@dataclass(kw_only=True)
class Child(Base):
    name: str
    level: Level = Level.LOW


@dataclass
class Node:
    value: int
    children: list[Node] = field(default_factory=list)


@dataclass
class Checked:
    n: int
    doubled: int = 0

    def __post_init__(self) -> None:
        self.doubled = self.n * 2


class Movie(TypedDict, total=False):
    title: Required[str]
    year: int


class Book(TypedDict):
    title: str
    pages: NotRequired[int]


class Point(NamedTuple):
    x: int
    y: int
    label: str = ""


@dataclass
class Stamped:
    at: dt.datetime
    day: dt.date
    id: uuid.UUID
    cost: Decimal
    blob: bytes


@dataclass
class Bounded:
    age: Annotated[int, {"ge": 0, "le": 150}]
    code: Annotated[str, {"min_length": 2, "max_length": 4, "pattern": "^[A-Z]+$"}]


@dataclass
class Shapes:
    kind: Literal["a", "b"]
    value: Union[int, str, None]  # noqa: UP007
    pair: tuple[int, str]
    bag: set[int]
    frozen: frozenset[str]
    table: dict[str, list[int]]
    by_id: dict[int, str]


@dataclass
class Stamp:
    at: Timestamp
    maybe: Timestamp | None = None
