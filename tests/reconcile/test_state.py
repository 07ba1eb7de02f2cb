"""State is read without side effects."""

from __future__ import annotations

import pytest

from kaizenctl.reconcile.state import ObjectState, State


def test_reading_a_kind_changes_nothing_and_cannot_write() -> None:
    state = State()

    assert dict(state.of_kind("Agent")) == {}
    assert state.objects == {}  # the read inserted no empty kind
    with pytest.raises(TypeError):
        state.of_kind("Agent")["a"] = ObjectState("Agent", "a", {})  # type: ignore[index]

    state.add(ObjectState("Agent", "a", {}))
    assert list(state.of_kind("Agent")) == ["a"]
