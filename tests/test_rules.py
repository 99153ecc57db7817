"""Declarative triggers: plain data (JSON, TOML) in, triggers out, every mistake named by its path."""

from __future__ import annotations

import json
import tomllib
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from closeloop import InvalidInput, Priority, SurveyResponse
from closeloop.rules import (
    MAX_DATA_DEPTH,
    PredicateRegistry,
    default_registry,
    load_triggers,
    parse_duration,
)
from closeloop.triggers import (
    MAX_DEPTH,
    FirstOf,
    Predicate,
    Trigger,
    all_of,
    answer_equals,
    answer_in,
    any_of,
    comment_contains,
    contact_requested,
    first_of,
    from_answer,
    not_,
    nps_between,
    predicate,
    round_robin,
    score_missing,
)
from memory_rotation import MemoryRotation


def when(condition: Any) -> Predicate:
    """The predicate a one-trigger configuration with this ``when`` loads to."""
    return load_triggers([{"name": "t", "when": condition}])[0].when


def assign_to(router: Any) -> Any:
    """The router a one-trigger configuration with this ``assign_to`` loads to."""
    return load_triggers([{"name": "t", "when": "score_missing", "assign_to": router}])[0].assign_to


def error(data: Any, registry: PredicateRegistry | None = None) -> InvalidInput:
    """The one InvalidInput loading ``data`` raises."""
    with pytest.raises(InvalidInput) as caught:
        load_triggers(data, registry=registry)
    return caught.value


def trigger(**fields: Any) -> dict[str, Any]:
    """A valid trigger mapping, with ``fields`` changed."""
    return {"name": "t", "when": "contact_requested", **fields}


class TestLoading:
    """Configurations that load."""

    def test_the_issue_example(self) -> None:
        """The example from the issue loads to the trigger one would write in Python."""
        [loaded] = load_triggers([{
            "name": "detractor",
            "when": {"nps_between": [0, 6]},
            "assign_to": {"from_answer": "account_manager", "fallback": "cx-team"},
            "due_in": "PT48H",
        }])
        assert loaded == Trigger(
            "detractor", nps_between(0, 6),
            assign_to=first_of(from_answer("account_manager"), fallback="cx-team"),
            due_in=timedelta(hours=48),
        )

    def test_toml_array_of_tables(self) -> None:
        """A TOML file of [[triggers]] tables loads as it is parsed."""
        data = tomllib.loads("""
            [[triggers]]
            name = "detractor"
            when = { nps_between = [0, 6] }
            priority = "high"
            reason = "unhappy"

            [[triggers]]
            name = "angry-enterprise"
            when = { all_of = [{ answer_equals = ["plan", "enterprise"] },
                               { any_of = [{ nps_between = [0, 4] }, { comment_contains = ["cancel"] }] }] }
            assign_to = { round_robin = ["alice", "bob"] }
            due_in = "P1DT12H"
        """)
        first, second = load_triggers(data)
        assert (first.priority, first.reason) == (Priority.HIGH, "unhappy")
        assert second.when == answer_equals("plan", "enterprise") & (
            nps_between(0, 4) | comment_contains("cancel")
        )
        assert second.assign_to == round_robin(["alice", "bob"])
        assert second.due_in == timedelta(days=1, hours=12)

    def test_json(self) -> None:
        """JSON text loads the same way, and the loaded triggers work."""
        data = json.loads("""[
            {"name": "contact", "when": {"contact_requested": true}, "assign_to": "alice",
             "priority": "urgent", "due_in": 3600}
        ]""")
        [loaded] = load_triggers(data)
        assert loaded == Trigger("contact", contact_requested(), assign_to="alice",
                                 priority=Priority.URGENT, due_in=timedelta(hours=1))
        r = SurveyResponse(id="r", customer_id="c", contact_requested=True)
        assert loaded.when(r) is True
        assert loaded.route(r, MemoryRotation()) == "alice"

    def test_empty_list(self) -> None:
        """No triggers is a valid configuration."""
        assert load_triggers([]) == []
        assert load_triggers({"triggers": []}) == []

    @pytest.mark.parametrize(
        ("config", "expected"),
        [
            ({"nps_between": [0, 6]}, nps_between(0, 6)),
            ({"nps_between": {"lo": 9, "hi": 10}}, nps_between(9, 10)),
            ("contact_requested", contact_requested()),
            ({"contact_requested": True}, contact_requested()),
            ({"contact_requested": {}}, contact_requested()),
            ({"contact_requested": None}, contact_requested()),
            ({"score_missing": []}, score_missing()),
            ({"answer_equals": {"key": "plan", "value": "pro"}}, answer_equals("plan", "pro")),
            ({"answer_equals": ["vip", True]}, answer_equals("vip", True)),
            ({"answer_in": {"key": "plan", "values": ["a", "b"]}}, answer_in("plan", ["a", "b"])),
            ({"answer_in": ["plan", ["a"]]}, answer_in("plan", ["a"])),
            ({"comment_contains": ["refund", "cancel"]}, comment_contains("refund", "cancel")),
            ({"comment_contains": "refund"}, comment_contains("refund")),
            ({"all_of": ["contact_requested", "score_missing"]}, contact_requested() & score_missing()),
            ({"any_of": [{"nps_between": [0, 6]}]}, any_of(nps_between(0, 6))),
            ({"not": "contact_requested"}, not_(contact_requested())),
            ({"not": {"any_of": ["score_missing", {"nps_between": [0, 2]}]}},
             ~(score_missing() | nps_between(0, 2))),
        ],
    )
    def test_every_predicate_form(self, config: Any, expected: Predicate) -> None:
        """Each built-in and combinator loads from its documented forms."""
        assert when(config) == expected

    @pytest.mark.parametrize(
        ("config", "expected"),
        [
            (None, None),
            ("alice", first_of("alice").routers[0]),
            ({"from_answer": "am"}, from_answer("am")),
            ({"from_answer": "am", "fallback": "cx"}, first_of(from_answer("am"), fallback="cx")),
            ({"round_robin": ["a", "b"]}, round_robin(["a", "b"])),
            ({"round_robin": ["a", "b"], "key": "support"}, round_robin(["a", "b"], key="support")),
            ({"first_of": [{"from_answer": "am"}, {"round_robin": ["a"]}], "fallback": "x"},
             first_of(from_answer("am"), round_robin(["a"]), fallback="x")),
            ({"first_of": ["a"]}, first_of("a")),
        ],
    )
    def test_every_router_form(self, config: Any, expected: Any) -> None:
        """Each router loads from its documented form."""
        assert assign_to(config) == expected

    def test_round_robin_from_config_takes_turns(self) -> None:
        """A configured round robin routes through the rotation state."""
        router = assign_to({"round_robin": ["a", "b"]})
        rotation = MemoryRotation()
        r = SurveyResponse(id="r", customer_id="c")
        assert [router.route(r, rotation) for _ in range(3)] == ["a", "b", "a"]


class TestDurations:
    """due_in: ISO 8601 durations or seconds."""

    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            ("PT48H", timedelta(hours=48)),
            ("P2D", timedelta(days=2)),
            ("P1DT12H", timedelta(days=1, hours=12)),
            ("PT30M", timedelta(minutes=30)),
            ("PT90S", timedelta(seconds=90)),
            ("P1W", timedelta(weeks=1)),
            ("P1DT2H3M4S", timedelta(days=1, hours=2, minutes=3, seconds=4)),
            (3600, timedelta(hours=1)),
            (timedelta(minutes=5), timedelta(minutes=5)),
        ],
    )
    def test_accepted(self, value: Any, expected: timedelta) -> None:
        """Weeks, days, hours, minutes and seconds, or whole seconds, give a timedelta."""
        assert parse_duration(value) == expected

    @pytest.mark.parametrize(
        "value",
        ["P", "PT", "P1M", "P1Y", "48h", "PT48h", "pt48h", "PT-1H", "PT1.5H", "P1H", "T1H", " PT1H",
         "PT1H ", "P1DT", "", "PT0S", 0, -5, True, 1.5, None, ["PT1H"], "P999999999W"],
    )
    def test_refused(self, value: Any) -> None:
        """Anything else, zero, negatives and overflowing values are refused, naming the field."""
        with pytest.raises(InvalidInput) as caught:
            parse_duration(value, "triggers[0].due_in")
        assert caught.value.field == "triggers[0].due_in"


class TestErrors:
    """Every mistake is one InvalidInput whose field is the path to it."""

    def test_unknown_predicate_deep_inside(self) -> None:
        """A typo deep in the tree is reported at its path, with a suggestion."""
        data = [
            trigger(name="a"), trigger(name="b"),
            trigger(name="c", when={"all_of": ["contact_requested",
                                               {"any_of": ["score_missing", {"nps_betwen": [0, 6]}]}]}),
        ]
        exc = error(data)
        assert exc.field == "triggers[2].when.all_of[1].any_of[1]"
        assert str(exc).startswith(
            "triggers[2].when.all_of[1].any_of[1]: unknown predicate 'nps_betwen'; "
            "did you mean 'nps_between'?"
        )
        assert error([trigger(when={"any_of": ["score_missing", {"nps_betwen": [0, 6]}]})]).field == (
            "triggers[0].when.any_of[1]"
        )

    @pytest.mark.parametrize(
        ("data", "field", "words"),
        [
            # the trigger mapping itself
            ([trigger(prority="high")], "triggers[0]", "unknown key 'prority'"),
            ([{"when": "score_missing"}], "triggers[0]", "missing required key 'name'"),
            ([{"name": "t"}], "triggers[0]", "missing required key 'when'"),
            ([trigger(name=3)], "triggers[0].name", "must be a string"),
            ([trigger(name="")], "triggers[0].name", "must not be empty"),
            ([trigger(reason=["x"])], "triggers[0].reason", "must be a string"),
            ([trigger(priority="asap")], "triggers[0].priority", "unknown priority"),
            ([trigger(priority=2)], "triggers[0].priority", "unknown priority"),
            ([trigger(due_in="2 days")], "triggers[0].due_in", "ISO 8601"),
            ([trigger(due_in=-60)], "triggers[0].due_in", "positive"),
            ([trigger(), trigger()], "triggers[1].name", "duplicate trigger name"),
            (["detractor"], "triggers[0]", "must be a mapping"),
            ({"trigger": []}, "triggers", "only key is 'triggers'"),
            ("triggers", "triggers", "must be a list"),
            (None, "triggers", "must be a list"),
            # when
            ([trigger(when=None)], "triggers[0].when", "predicate name or a mapping"),
            ([trigger(when=6)], "triggers[0].when", "predicate name or a mapping"),
            ([trigger(when={})], "triggers[0].when", "exactly one key"),
            ([trigger(when={"nps_between": [0, 6], "contact_requested": True})],
             "triggers[0].when", "exactly one key"),
            ([trigger(when={"nps_between": [7, 6]})], "triggers[0].when.nps_between",
             "lo must not be greater"),
            ([trigger(when={"nps_between": [0, 11]})], "triggers[0].when.nps_between", "from 0 to 10"),
            ([trigger(when={"nps_between": [-1, 6]})], "triggers[0].when.nps_between", "from 0 to 10"),
            ([trigger(when={"nps_between": ["0", "6"]})], "triggers[0].when.nps_between", "integer"),
            ([trigger(when={"nps_between": [0.0, 6]})], "triggers[0].when.nps_between", "integer"),
            ([trigger(when={"nps_between": [0]})], "triggers[0].when.nps_between", "missing a required"),
            ([trigger(when={"nps_between": {"low": 0, "hi": 6}})], "triggers[0].when.nps_between",
             "wrong arguments"),
            ([trigger(when={"contact_requested": False})], "triggers[0].when.contact_requested", "not"),
            ([trigger(when={"contact_requested": [1]})], "triggers[0].when.contact_requested",
             "wrong arguments"),
            ([trigger(when={"answer_in": ["plan", "pro"]})], "triggers[0].when.answer_in", "values"),
            ([trigger(when={"answer_equals": {"key": "", "value": 1}})], "triggers[0].when.answer_equals",
             "key"),
            ([trigger(when={"comment_contains": []})], "triggers[0].when.comment_contains", "at least one"),
            ([trigger(when={"all_of": []})], "triggers[0].when.all_of", "non-empty list"),
            ([trigger(when={"any_of": "score_missing"})], "triggers[0].when.any_of", "non-empty list"),
            ([trigger(when={"not": ["score_missing"]})], "triggers[0].when.not", "predicate name"),
            ([trigger(when={"all_of": [{"not": {"nps_between": [3, 1]}}]})],
             "triggers[0].when.all_of[0].not.nps_between", "lo must not be greater"),
            ([trigger(when={3: "x"})], "triggers[0].when", "must be a string"),
            # assign_to
            ([trigger(assign_to={"round_robn": ["a"]})], "triggers[0].assign_to",
             "unknown router 'round_robn'"),
            ([trigger(assign_to={"fallback": "a"})], "triggers[0].assign_to", "exactly one of"),
            ([trigger(assign_to={"from_answer": "am", "round_robin": ["a"]})], "triggers[0].assign_to",
             "exactly one of"),
            ([trigger(assign_to={"round_robin": ["a"], "fallback": "b"})], "triggers[0].assign_to",
             "unknown key 'fallback' for round_robin"),
            ([trigger(assign_to={"round_robin": "alice"})], "triggers[0].assign_to.round_robin",
             "list of user ids"),
            ([trigger(assign_to={"round_robin": []})], "triggers[0].assign_to.round_robin", "at least one"),
            ([trigger(assign_to={"round_robin": ["a", 3]})], "triggers[0].assign_to.round_robin[1]",
             "must be a string"),
            ([trigger(assign_to={"from_answer": 3})], "triggers[0].assign_to.from_answer", "string"),
            ([trigger(assign_to={"from_answer": "am", "fallback": ""})], "triggers[0].assign_to.fallback",
             "empty"),
            ([trigger(assign_to={"first_of": []})], "triggers[0].assign_to.first_of", "non-empty"),
            ([trigger(assign_to={"first_of": [None]})], "triggers[0].assign_to.first_of[0]", "not null"),
            ([trigger(assign_to={"first_of": [{"from_anser": "am"}]})],
             "triggers[0].assign_to.first_of[0]", "did you mean 'from_answer'"),
            ([trigger(assign_to=["alice"])], "triggers[0].assign_to", "user id or a router"),
            ([trigger(assign_to="")], "triggers[0].assign_to", "empty"),
        ],
    )
    def test_bad_configurations(self, data: Any, field: str, words: str) -> None:
        """Each bad configuration raises one InvalidInput naming its path and what is wrong."""
        exc = error(data)
        assert exc.field == field
        assert words in str(exc)
        assert str(exc).startswith(f"{field}: ")

    def test_a_deep_tree_is_refused_without_recursion_error(self) -> None:
        """10,000 nested levels give InvalidInput, never RecursionError."""
        deep: Any = {"contact_requested": True}
        for _ in range(10_000):
            deep = {"not": deep}
        assert "nested more than" in str(error([trigger(when=deep)]))
        deep_list: Any = 0
        for _ in range(10_000):
            deep_list = [deep_list]
        assert error([trigger(when={"nps_between": deep_list})]).field == "triggers[0]"

    def test_nesting_beyond_max_depth_names_the_path(self) -> None:
        """A condition nested past MAX_DEPTH (but within the data limit) names where it went too deep."""
        nested: Any = "contact_requested"
        for _ in range(MAX_DEPTH + 5):
            nested = {"not": nested}
        assert MAX_DEPTH + 5 < MAX_DATA_DEPTH
        exc = error([trigger(when=nested)])
        assert exc.field == "triggers[0].when" + ".not" * MAX_DEPTH
        assert "at most" in str(exc)

    def test_a_cycle_is_refused(self) -> None:
        """Data that contains itself is refused like any too-deep data."""
        loop: list[Any] = ["score_missing"]
        loop.append({"any_of": loop})
        assert error([trigger(when={"any_of": loop})]).field == "triggers[0]"


class TestRegistry:
    """Custom predicates, registered by name, usable from configuration."""

    def test_a_registered_factory_is_usable(self) -> None:
        """register(name, factory): config arguments are passed to the factory."""
        registry = default_registry.copy()

        def answer_at_least(key: str, minimum: float) -> Predicate:
            return predicate(lambda r: (r.answers.get(key) or 0) >= minimum, f"{key} >= {minimum}")

        registry.register("answer_at_least", answer_at_least)
        [loaded] = load_triggers([trigger(when={"answer_at_least": ["spend", 100]})], registry=registry)
        assert loaded.when.description == "spend >= 100"
        assert loaded.when(SurveyResponse(id="r", customer_id="c", answers={"spend": 120})) is True

    def test_decorator_and_fixed_predicates(self) -> None:
        """register works as a decorator, and a ready Predicate is used by bare name."""
        registry = PredicateRegistry()

        @registry.register("promoter")
        def promoter() -> Predicate:
            return nps_between(9, 10)

        vip = predicate(lambda r: r.answers.get("tier") == "vip", "VIP")
        assert registry.register("vip", vip) is vip
        assert when_with(registry, "promoter") == nps_between(9, 10)
        assert when_with(registry, {"vip": True}) is vip
        assert when_with(registry, {"all_of": ["vip", "promoter"]}) == all_of(vip, nps_between(9, 10))
        assert registry.names() == ["promoter", "vip"]
        assert "vip" in registry and "nps_between" not in registry

    def test_a_factory_returning_a_function_is_wrapped(self) -> None:
        """A factory may return a plain function; its registered name describes it."""
        registry = PredicateRegistry({"always": lambda: (lambda r: True)})
        loaded = when_with(registry, "always")
        assert loaded.description == "always"

    def test_copies_are_independent(self) -> None:
        """Registering on a copy leaves the default registry as it was."""
        registry = default_registry.copy()
        registry.register("mine", contact_requested())
        assert "mine" in registry and "mine" not in default_registry
        assert default_registry.names() == [
            "answer_equals", "answer_in", "comment_contains", "contact_requested", "nps_between",
            "score_missing",
        ]
        assert error([trigger(when="mine")]).field == "triggers[0].when"

    @pytest.mark.parametrize(
        ("name", "factory", "field"),
        [("all_of", contact_requested(), "name"), ("not", contact_requested(), "name"),
         ("nps_between", contact_requested(), "name"), ("has space", contact_requested(), "name"),
         ("", contact_requested(), "name"), (3, contact_requested(), "name"), ("x", 3, "factory")],
    )
    def test_refuses_bad_registrations(self, name: Any, factory: Any, field: str) -> None:
        """Reserved, taken or malformed names and non-callable factories are refused."""
        registry = default_registry.copy()
        with pytest.raises(InvalidInput) as caught:
            registry.register(name, factory)
        assert caught.value.field == field

    def test_replace_allows_overriding(self) -> None:
        """replace=True swaps a registered name's factory."""
        registry = default_registry.copy()
        registry.register("score_missing", contact_requested(), replace=True)
        assert when_with(registry, "score_missing") == contact_requested()

    @pytest.mark.parametrize(
        ("factory", "words"),
        [
            (lambda: 3, "must return a predicate"),
            (lambda: int("x"), "ValueError"),
            (lambda: nps_between(5, 1), "lo must not be greater"),
        ],
    )
    def test_factory_failures_name_the_path(self, factory: Any, words: str) -> None:
        """Whatever a factory raises or returns wrongly becomes InvalidInput at the config path."""
        registry = PredicateRegistry({"broken": factory})
        exc = error([trigger(when={"any_of": ["broken"]})], registry)
        assert exc.field == "triggers[0].when.any_of[0].broken"
        assert words in str(exc)


def when_with(registry: PredicateRegistry, condition: Any) -> Predicate:
    """The predicate ``condition`` loads to with ``registry``."""
    return load_triggers([{"name": "t", "when": condition}], registry=registry)[0].when


@st.composite
def condition_trees(draw: st.DrawFn, depth: int = 0) -> tuple[Any, Predicate]:
    """A configured condition and the predicate the Python API builds for it."""
    kinds = ["nps", "contact", "missing", "equals", "in", "words"]
    if depth < 3:
        kinds += ["all", "any", "not"]
    kind = draw(st.sampled_from(kinds))
    if kind == "nps":
        lo = draw(st.integers(0, 10))
        hi = draw(st.integers(lo, 10))
        return {"nps_between": [lo, hi]}, nps_between(lo, hi)
    if kind == "contact":
        return draw(st.sampled_from(["contact_requested", {"contact_requested": True}])), contact_requested()
    if kind == "missing":
        return {"score_missing": None}, score_missing()
    if kind == "equals":
        value = draw(st.one_of(st.text(max_size=5), st.integers(), st.booleans()))
        return {"answer_equals": {"key": "plan", "value": value}}, answer_equals("plan", value)
    if kind == "in":
        values: list[str | int | bool] = draw(
            st.lists(st.sampled_from(["a", "b", 1, False]), min_size=1, max_size=3)
        )
        return {"answer_in": ["plan", values]}, answer_in("plan", values)
    if kind == "words":
        words = draw(st.lists(st.sampled_from(["refund", "late", "not happy"]), min_size=1, max_size=3))
        return {"comment_contains": words}, comment_contains(*words)
    if kind == "not":
        config, expected = draw(condition_trees(depth + 1))
        return {"not": config}, not_(expected)
    parts = draw(st.lists(condition_trees(depth + 1), min_size=1, max_size=3))
    combine = all_of if kind == "all" else any_of
    return {f"{kind}_of": [c for c, _ in parts]}, combine(*(p for _, p in parts))


@given(condition_trees())
def test_configuration_matches_the_python_api(tree: tuple[Any, Predicate]) -> None:
    """Any configured condition loads to the same predicate the Python API builds."""
    config, expected = tree
    assert when(config) == expected


@given(st.lists(st.sampled_from(["alice", "bob", "carol"]), min_size=1, max_size=3), st.booleans())
def test_configured_routers_match_the_python_api(users: list[str], with_fallback: bool) -> None:
    """first_of over from_answer and round_robin loads like the Python API builds it."""
    config: dict[str, Any] = {"first_of": [{"from_answer": "am"}, {"round_robin": users}]}
    fallback = "cx" if with_fallback else None
    if with_fallback:
        config["fallback"] = "cx"
    loaded = assign_to(config)
    assert isinstance(loaded, FirstOf)
    assert loaded == first_of(from_answer("am"), round_robin(users), fallback=fallback)
