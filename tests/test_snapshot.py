"""The snapshot format's helpers that no loader test reaches on its own."""

from __future__ import annotations

import threading

import pyarrow as pa
import pytest

from codegen_forensics.snapshot import system_memory_pool


def test_system_memory_pool_is_used_inside_and_restored_after_an_error() -> None:
    before = pa.default_memory_pool().backend_name
    inside: list[str] = []

    def fail_inside() -> None:
        with system_memory_pool():
            inside.append(pa.default_memory_pool().backend_name)
            raise RuntimeError("inside")

    with pytest.raises(RuntimeError, match="inside"):
        fail_inside()
    assert inside == ["system"]
    assert pa.default_memory_pool().backend_name == before


def test_system_memory_pool_overlapping_threads_restore_the_first_pool() -> None:
    # Two snapshots on two threads: the first to enter leaves first, while the
    # second still runs. The second must not restore the system pool it found.
    before = pa.default_memory_pool().backend_name
    first_in, second_in, first_out = (threading.Event() for _ in range(3))
    inside: list[str] = []

    def first() -> None:
        with system_memory_pool():
            first_in.set()
            second_in.wait()
        first_out.set()

    def second() -> None:
        first_in.wait()
        with system_memory_pool():
            second_in.set()
            first_out.wait()
            inside.append(pa.default_memory_pool().backend_name)

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert inside == ["system"]
    assert pa.default_memory_pool().backend_name == before
