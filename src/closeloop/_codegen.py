"""Code generation: predicates become Python source, compiled once.

Why evaluation generates code: the facade runs every trigger against every
response, and a rule set should cost about what the equivalent hand-written
``if`` chain costs. Each built-in predicate (:mod:`closeloop.predicates`)
therefore emits a small Python expression over the response ``r``; a
:class:`~closeloop.triggers.TriggerSet` joins them into one function, compiled
once, and a predicate called on its own compiles its expression on first use.

The generated source contains only names chosen by the emitters (the
``_emit`` methods of the predicates, and :class:`~closeloop.triggers.TriggerSet`)
and validated integers; every other value (answer keys, words, user functions)
is passed in a namespace, never spliced into the source. :class:`_Source`
holds that namespace and makes the package's only ``exec`` call.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class _Source:
    """The constants a generated expression refers to, under the names it uses."""

    def __init__(self) -> None:
        # No builtins: generated code may only use what is put here.
        self.namespace: dict[str, Any] = {"__builtins__": {}, "bool": bool, "str": str}

    def constant(self, value: Any) -> str:
        name = f"_k{len(self.namespace)}"
        self.namespace[name] = value
        return name

    def compile(self, lines: list[str], name: str) -> Callable[..., Any]:
        code = compile("\n".join(lines), f"<closeloop.triggers {name}>", "exec")
        # The source holds only names made here and validated ints (see module docstring).
        exec(code, self.namespace)  # noqa: S102
        function: Callable[..., Any] = self.namespace[name]
        return function
