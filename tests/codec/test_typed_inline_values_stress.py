"""The CPython 3.11 inline-values store (`rust/src/codec/typed/inline_values.rs`)
under every state of the class's shared keys and the instance's values that
user code can bring about while a decode fills the instance, in a child
process under PYTHONMALLOC=debug: a write past a values array, a bad
reference count or a wrong slot aborts or fails the child, not pytest."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import microstd
from microstd import _accel

pytestmark = pytest.mark.skipif(_accel.core is None, reason="needs the Rust core")


def test_inline_store_survives_keys_and_instances_changed_under_it() -> None:
    child = Path(__file__).with_name("_inline_values_stress.py")
    package_root = str(Path(microstd.__file__).resolve().parent.parent)
    env = dict(os.environ, PYTHONMALLOC="debug")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
    done = subprocess.run(
        [sys.executable, "-X", "dev", str(child)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert done.stdout.strip() == "ok", done.stdout[-2000:]
