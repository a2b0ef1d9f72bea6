"""Layered configuration: sources, deep merge with provenance, typed values, hot reload.

```python
from microstd import config
cfg = config.load(AppConfig, sources=[config.file("app.toml"), config.env(prefix="APP_"),
                                      config.args()])
cfg.value.db.host; cfg.get("db.host"); print(cfg.explain("db.host"))
async for change in cfg.watch(): ...
```

See docs/config.md for the merge rules and every source.
"""

from __future__ import annotations

from microstd.config.core import Config, load, load_async
from microstd.config.durations import parse_duration
from microstd.config.provenance import Explanation
from microstd.config.reload import Change
from microstd.config.secrets import Secret
from microstd.config.sources import (
    Source,
    args,
    consul,
    dotenv,
    env,
    etcd,
    file,
    mapping,
    nats,
    postgres,
    redis,
    secrets_dir,
    vault,
)
from microstd.errors import ConfigError

__all__ = [
    "Change",
    "Config",
    "ConfigError",
    "Explanation",
    "Secret",
    "Source",
    "args",
    "consul",
    "dotenv",
    "env",
    "etcd",
    "file",
    "load",
    "load_async",
    "mapping",
    "nats",
    "parse_duration",
    "postgres",
    "redis",
    "secrets_dir",
    "vault",
]
