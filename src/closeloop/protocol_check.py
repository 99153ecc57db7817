"""Check an object against a port Protocol, naming each missing or mis-signed method.

``isinstance(store, Store)`` on a runtime-checkable Protocol only says *whether*
every method exists. :func:`protocol_problems` says *which* method is missing,
and which one cannot be called the way closeloop calls it (a parameter renamed,
made required, or keyword-only where closeloop passes it by position). The
facade uses it to refuse a bad store with a message that names the method; the
contract suites (:mod:`closeloop.testing`) assert that it finds nothing.

Example::

    >>> from closeloop.storage import Store
    >>> class HalfAStore:
    ...     def history(self, case): ...
    >>> [p for p in protocol_problems(HalfAStore(), Store) if p.startswith("history")]
    ['history(case_id): takes (case): parameter 1 is named case, not case_id']
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from typing_extensions import get_protocol_members

__all__ = ["protocol_problems"]

_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
_VARIADIC = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)


def protocol_problems(obj: object, protocol: type) -> list[str]:
    """One line per method of ``protocol`` that ``obj`` lacks or cannot be called as.

    A method fits when every call the protocol's signature allows also works on
    ``obj``'s method: each positional parameter at the same place and with the same
    name, each keyword-only parameter accepted by name, each optional parameter
    optional, and no extra required parameter. Extra optional parameters,
    ``*args`` and ``**kwargs`` are fine. An empty list means ``obj`` fits.

    Args:
        obj: the object to check (a store, a notifier).
        protocol: a :class:`typing.Protocol` class.
    """
    problems = []
    for name in sorted(get_protocol_members(protocol)):
        wanted = getattr(protocol, name)
        if not callable(wanted):
            continue  # a data member: nothing to call
        wanted_signature = _signature(wanted, bound=False)
        shown = f"{name}{_plain(wanted_signature)}"
        method = getattr(obj, name, None)
        if method is None:
            problems.append(f"{shown}: missing")
            continue
        if not callable(method):
            problems.append(f"{shown}: is not a method but {type(method).__name__!r}")
            continue
        try:
            actual = _signature(method, bound=True)
        except (TypeError, ValueError):  # no signature to read (some builtins): trust it
            continue
        mismatches = _mismatches(wanted_signature, actual)
        if mismatches:
            problems.append(f"{shown}: takes {_plain(actual)}: {'; '.join(mismatches)}")
    return problems


def _signature(function: Callable[..., Any], *, bound: bool) -> inspect.Signature:
    signature = inspect.signature(function)
    if bound:
        return signature
    parameters = list(signature.parameters.values())[1:]  # the protocol's own ``self``
    return signature.replace(parameters=parameters)


def _plain(signature: inspect.Signature) -> str:
    """The signature without annotations: what a reader compares."""
    return str(signature.replace(
        parameters=[p.replace(annotation=inspect.Parameter.empty)
                    for p in signature.parameters.values()],
        return_annotation=inspect.Signature.empty,
    ))


def _mismatches(wanted: inspect.Signature, actual: inspect.Signature) -> list[str]:
    params = list(actual.parameters.values())
    positional = [p for p in params if p.kind in _POSITIONAL]
    by_name = {p.name: p for p in params if p.kind not in _VARIADIC}
    takes_args = any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params)
    takes_kwargs = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params)
    found: list[str] = []
    used: set[str] = set()
    index = 0
    for param in wanted.parameters.values():
        if param.kind in _VARIADIC:
            continue
        if param.kind in _POSITIONAL:
            index += 1
            match = positional[index - 1] if index <= len(positional) else None
            if match is None:
                if not takes_args:
                    found.append(f"parameter {index} ({param.name}) is missing")
                continue
            used.add(match.name)
            if match.name != param.name:
                found.append(f"parameter {index} is named {match.name}, not {param.name}")
        else:
            match = by_name.get(param.name)
            if match is None or match.kind is inspect.Parameter.POSITIONAL_ONLY:
                if not takes_kwargs:
                    found.append(f"keyword parameter {param.name} is missing")
                continue
            used.add(match.name)
        if param.default is not inspect.Parameter.empty and match.default is inspect.Parameter.empty:
            found.append(f"parameter {param.name} must be optional (closeloop may leave it out)")
    found.extend(
        f"parameter {p.name} is required but closeloop never passes it"
        for p in params
        if p.kind not in _VARIADIC and p.name not in used and p.default is inspect.Parameter.empty
    )
    return found
