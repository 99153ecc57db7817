"""A throwaway RotationState for the trigger and rule tests."""

from __future__ import annotations


class MemoryRotation:
    """A RotationState kept in a dict: each key counts its turns."""

    def __init__(self) -> None:
        self.turns: dict[str, int] = {}

    def next_in_rotation(self, key: str, size: int) -> int:
        turn = self.turns.get(key, 0)
        self.turns[key] = turn + 1
        return turn % size
