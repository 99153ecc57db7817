"""Predicates, routers and triggers: what matches, why, who gets the case and when it is due."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from closeloop import InvalidInput, Priority, StoreError, SurveyResponse
from closeloop.triggers import (
    MAX_DEPTH,
    AllOf,
    AnyOf,
    FirstOf,
    FromAnswer,
    FunctionPredicate,
    FunctionRouter,
    Match,
    Not,
    Predicate,
    RotationState,
    RoundRobin,
    ToUser,
    Trigger,
    TriggerSet,
    all_of,
    answer_equals,
    answer_in,
    any_of,
    comment_contains,
    contact_requested,
    due_at,
    evaluate,
    explain,
    first_of,
    from_answer,
    not_,
    nps_between,
    predicate,
    round_robin,
    score_missing,
    to_router,
)
from memory_rotation import MemoryRotation


def response(**fields: Any) -> SurveyResponse:
    """A survey response with sensible defaults for the fields a test does not care about."""
    fields.setdefault("id", "r-1")
    fields.setdefault("customer_id", "c-1")
    return SurveyResponse(**fields)


NOW = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)

# ---------------------------------------------------------------------------------------------
# Hypothesis strategies: responses, and predicate trees built from every constructor.

ANSWERS = st.sampled_from(["free", "pro", "enterprise", 1, 2.5, True, False, None, ["pro", "sms"], []])
COMMENTS = st.one_of(
    st.none(),
    st.lists(
        st.sampled_from(["slow", "Refund", "REFUND!", "refunded", "late", "chocolate", "ok", "c++"]),
        max_size=4,
    ).map(" ".join),
    st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=20),
)

responses = st.builds(
    response,
    score=st.none() | st.integers(0, 10),
    contact_requested=st.booleans(),
    comment=COMMENTS,
    answers=st.dictionaries(st.sampled_from(["plan", "channel"]), ANSWERS, max_size=2),
)


def _custom(r: SurveyResponse) -> bool:
    return r.answers.get("plan") == "pro" and r.score != 10


@st.composite
def nps_ranges(draw: st.DrawFn) -> tuple[int, int]:
    """A pair lo <= hi in 0..10."""
    lo = draw(st.integers(0, 10))
    return lo, draw(st.integers(lo, 10))


leaves: st.SearchStrategy[Predicate] = st.one_of(
    nps_ranges().map(lambda bounds: nps_between(*bounds)),
    st.just(contact_requested()),
    st.just(score_missing()),
    st.builds(answer_equals, st.sampled_from(["plan", "channel"]), ANSWERS.filter(
        lambda v: v is not None and not isinstance(v, list)
    )),
    st.builds(answer_in, st.sampled_from(["plan", "channel"]), st.lists(
        st.sampled_from(["pro", "sms", "free", 1, True]), min_size=1, max_size=3
    )),
    st.lists(st.sampled_from(["refund", "late", "c++", "slow down"]), min_size=1, max_size=3).map(
        lambda words: comment_contains(*words)
    ),
    st.just(predicate(_custom)),
)

predicates: st.SearchStrategy[Predicate] = st.recursive(
    leaves,
    lambda children: st.one_of(
        st.lists(children, min_size=1, max_size=3).map(lambda ps: all_of(*ps)),
        st.lists(children, min_size=1, max_size=3).map(lambda ps: any_of(*ps)),
        children.map(not_),
        st.tuples(children, children).map(lambda pq: pq[0] & pq[1]),
        st.tuples(children, children).map(lambda pq: pq[0] | pq[1]),
        children.map(lambda p: ~p),
    ),
    max_leaves=8,
)


class TestNpsBetween:
    """nps_between(lo, hi): score answered and within lo..hi inclusive."""

    @given(nps_ranges(), st.none() | st.integers(0, 10))
    def test_matches_exactly_the_scores_in_range(self, bounds: tuple[int, int], score: int | None) -> None:
        """For every lo <= hi in 0..10, a score matches iff it is answered and lo <= score <= hi."""
        lo, hi = bounds
        p = nps_between(lo, hi)
        expected = score is not None and lo <= score <= hi
        assert p(response(score=score)) is expected
        assert p.explain(response(score=score)).matched is expected

    def test_describes_and_explains_itself(self) -> None:
        """The description names the range; why says where the score fell."""
        p = nps_between(0, 6)
        assert p.description == "score in 0..6"
        assert p.explain(response(score=3)).why == "score 3 is in 0..6"
        assert p.explain(response(score=8)).why == "score 8 is not in 0..6"
        assert p.explain(response()).why == "score is missing"

    @pytest.mark.parametrize(
        ("lo", "hi", "field"),
        [(11, 3, "lo"), (7, 3, "lo"), (-1, 5, "lo"), (0, 11, "hi"), (True, 5, "lo"),
         (0, 6.0, "hi"), ("0", 6, "lo"), (None, 6, "lo")],
    )
    def test_refuses_bad_bounds(self, lo: Any, hi: Any, field: str) -> None:
        """Bounds must be ints (not bools) in 0..10 with lo <= hi; the error names the bound."""
        with pytest.raises(InvalidInput) as caught:
            nps_between(lo, hi)
        assert caught.value.field == field


class TestSimplePredicates:
    """contact_requested() and score_missing()."""

    def test_contact_requested(self) -> None:
        """contact_requested matches the ticked box only, and says so."""
        p = contact_requested()
        assert p(response(contact_requested=True)) is True
        assert p(response()) is False
        assert p.description == "contact requested"
        assert p.explain(response()).why == "contact was not requested"

    def test_score_missing(self) -> None:
        """score_missing matches a skipped score only; why gives the score otherwise."""
        p = score_missing()
        assert p(response()) is True
        assert p(response(score=0)) is False
        assert p.explain(response(score=0)).why == "score is 0"


class TestAnswerEquals:
    """answer_equals(key, value): one answer, exactly."""

    def test_matches_the_value(self) -> None:
        """A string answer matches the same string only; a missing answer never matches."""
        p = answer_equals("plan", "pro")
        assert p(response(answers={"plan": "pro"})) is True
        assert p(response(answers={"plan": "Pro"})) is False
        assert p(response()) is False
        assert p.explain(response()).why == "answer 'plan' is missing"
        assert p.explain(response(answers={"plan": "free"})).why == "answer 'plan' is 'free', not 'pro'"

    @pytest.mark.parametrize(
        ("value", "answer", "expected"),
        [(True, True, True), (True, 1, False), (1, True, False), (1, 1.0, True), (0, False, False),
         (2.5, 2.5, True), ("1", 1, False), ("pro", ["pro"], False), (1, None, False)],
    )
    def test_is_strict_about_types(self, value: Any, answer: Any, expected: bool) -> None:
        """True is not 1, a list never equals a scalar, but 1 equals 1.0."""
        p = answer_equals("k", value)
        r = response(answers={"k": answer})
        assert p(r) is expected
        assert p.explain(r).matched is expected

    @pytest.mark.parametrize(
        ("key", "value", "field"),
        [("", "x", "key"), (3, "x", "key"), ("k", None, "value"), ("k", float("nan"), "value"),
         ("k", ["a"], "value"), ("k", {"a": 1}, "value")],
    )
    def test_refuses_bad_arguments(self, key: Any, value: Any, field: str) -> None:
        """The key must be an id and the value a finite scalar."""
        with pytest.raises(InvalidInput) as caught:
            answer_equals(key, value)
        assert caught.value.field == field


class TestAnswerIn:
    """answer_in(key, values): one of several values; any item of a multi-choice answer."""

    def test_matches_listed_values(self) -> None:
        """A listed answer matches, an unlisted one does not, and the description lists them."""
        p = answer_in("plan", ["pro", "enterprise"])
        assert p(response(answers={"plan": "enterprise"})) is True
        assert p(response(answers={"plan": "free"})) is False
        assert p(response()) is False
        assert p.description == "answer 'plan' is one of 'pro', 'enterprise'"

    def test_multi_choice_answers_match_on_any_item(self) -> None:
        """A list answer matches when any of its items is listed."""
        p = answer_in("channel", ["sms"])
        assert p(response(answers={"channel": ["email", "sms"]})) is True
        assert p(response(answers={"channel": ["email"]})) is False

    @pytest.mark.parametrize(
        ("values", "answer", "expected"),
        [([1], True, False), ([True], 1, False), ([True], True, True), ([1, "a"], 1.0, True),
         (["1"], 1, False), ([1], [True], False), (["a"], None, False)],
    )
    def test_is_strict_about_types(self, values: list[Any], answer: Any, expected: bool) -> None:
        """Booleans and numbers do not stand in for each other."""
        p = answer_in("k", values)
        assert p(response(answers={"k": answer})) is expected
        assert p.explain(response(answers={"k": answer})).matched is expected

    @pytest.mark.parametrize(
        ("values", "field"),
        [("pro", "values"), ([], "values"), ([["a"]], "values[0]"), ([None], "values[0]"), (3, "values")],
    )
    def test_refuses_bad_values(self, values: Any, field: str) -> None:
        """Values must be a non-empty list of scalars (a string is not a list)."""
        with pytest.raises(InvalidInput) as caught:
            answer_in("k", values)
        assert caught.value.field == field


class TestCommentContains:
    """comment_contains(*words): whole words, case-insensitively."""

    @pytest.mark.parametrize(
        ("words", "comment", "expected"),
        [
            (("refund",), "I want a REFUND!", True),
            (("refund",), "refunded already", False),
            (("late",), "chocolate cake", False),
            (("late", "slow"), "Slow delivery", True),
            (("straße",), "STRASSE gesperrt", True),
            (("not happy",), "I am not\n  happy", True),
            (("not happy",), "not unhappy", False),
            (("c++",), "your c++ SDK", True),
            (("a.b",), "axb", False),
            (("refund",), "", False),
        ],
    )
    def test_matches_whole_words_ignoring_case(
        self, words: tuple[str, ...], comment: str, expected: bool
    ) -> None:
        """Words match whole, casefolded, with regex characters taken literally."""
        p = comment_contains(*words)
        assert p(response(comment=comment)) is expected
        assert p.explain(response(comment=comment)).matched is expected

    def test_explains_which_word(self) -> None:
        """why names the word found, all the words when none is, or the missing comment."""
        p = comment_contains("refund", "cancel")
        assert p.description == "comment mentions 'refund' or 'cancel'"
        assert p.explain(response(comment="please CANCEL")).why == "comment mentions 'cancel'"
        assert p.explain(response(comment="fine")).why == "comment does not mention 'refund' or 'cancel'"
        assert p.explain(response()).why == "there is no comment"
        assert p(response()) is False

    @pytest.mark.parametrize("words", [(), ("",), ("  ",), (3,), ("ok", None)])
    def test_refuses_bad_words(self, words: tuple[Any, ...]) -> None:
        """At least one non-blank string word is needed."""
        with pytest.raises(InvalidInput):
            comment_contains(*words)


class TestComposition:
    """all_of / any_of / not_ and the & | ~ operators."""

    def test_operators_build_flat_composites(self) -> None:
        """& and | flatten chains; ~ negates; descriptions read as sentences."""
        a, b, c = nps_between(0, 6), contact_requested(), score_missing()
        both = a & b & c
        assert isinstance(both, AllOf) and both.predicates == (a, b, c)
        either = a | b | c
        assert isinstance(either, AnyOf) and either.predicates == (a, b, c)
        assert isinstance(~a, Not)
        assert (a & b).description == "score in 0..6 and contact requested"
        assert ((a | c) & b).description == "(score in 0..6 or score missing) and contact requested"
        assert (~(a & b)).description == "not (score in 0..6 and contact requested)"

    def test_plain_functions_compose(self) -> None:
        """A function (response) -> bool combines with predicates on either side of & and |."""

        def is_vip(r: SurveyResponse) -> bool:
            return r.answers.get("tier") == "vip"

        p = is_vip & nps_between(0, 6)
        q = contact_requested() | is_vip
        vip = response(score=3, answers={"tier": "vip"})
        assert p(vip) is True and q(vip) is True
        assert p.description == "is_vip and score in 0..6"
        assert all_of(is_vip)(response()) is False

    def test_failed_all_of_names_the_failing_part(self) -> None:
        """A failed all_of explains only the parts that failed."""
        p = nps_between(0, 6) & contact_requested()
        why = p.explain(response(score=8, contact_requested=True))
        assert not why.matched
        assert why.why == "score 8 is not in 0..6"
        assert [part.matched for part in why.parts] == [False, True]

    def test_matched_any_of_names_the_matching_part(self) -> None:
        """A matched any_of explains only the parts that matched."""
        p = nps_between(0, 6) | contact_requested()
        assert p.explain(response(score=9, contact_requested=True)).why == "contact was requested"

    def test_not_explains_its_part(self) -> None:
        """not_ inverts the verdict and keeps the part's reason."""
        why = (~contact_requested()).explain(response())
        assert why.matched is True
        assert why.why == "contact was not requested"

    @pytest.mark.parametrize(
        "build",
        [lambda: all_of(), lambda: any_of(), lambda: all_of(contact_requested(), 3),  # type: ignore[arg-type]
         lambda: not_("x"), lambda: AllOf([]), lambda: Not(3)],  # type: ignore[arg-type]
    )
    def test_refuses_bad_parts(self, build: Callable[[], object]) -> None:
        """Composites need at least one part, each a predicate or a function."""
        with pytest.raises(InvalidInput):
            build()

    def test_operator_with_a_non_predicate_is_a_type_error(self) -> None:
        """p & 3 is a TypeError, as for any unsupported operand."""
        with pytest.raises(TypeError):
            contact_requested() & 3  # type: ignore[operator]

    def test_nesting_is_limited(self) -> None:
        """Nesting deeper than MAX_DEPTH is refused rather than risking the stack."""
        p: Predicate = contact_requested()
        for _ in range(MAX_DEPTH - 1):
            p = not_(p)
        with pytest.raises(InvalidInput, match="nest at most"):
            not_(p)
        with pytest.raises(InvalidInput, match="nest at most"):
            all_of(p, score_missing())

    @given(predicates, responses)
    def test_not_is_the_complement(self, p: Predicate, r: SurveyResponse) -> None:
        """not_(p) matches exactly the responses p does not."""
        assert not_(p)(r) is (not p(r))
        assert (~p)(r) is (not p(r))

    @given(predicates, responses)
    def test_evaluation_and_explanation_agree(self, p: Predicate, r: SurveyResponse) -> None:
        """p(r) is always p.explain(r).matched, and always a bool."""
        verdict = p(r)
        assert verdict is True or verdict is False
        assert p.explain(r).matched is verdict

    @given(predicates, predicates, responses)
    def test_operators_follow_boolean_logic(self, p: Predicate, q: Predicate, r: SurveyResponse) -> None:
        """(p & q), (p | q) and De Morgan behave like Python's and/or/not."""
        assert (p & q)(r) is (p(r) and q(r))
        assert (p | q)(r) is (p(r) or q(r))
        assert (~(p & q))(r) is (~p | ~q)(r)


class TestPredicateWrapper:
    """predicate(fn, description): your own conditions."""

    def test_description_defaults_to_the_function_name(self) -> None:
        """Without a description, the function's name describes it; with one, that does."""
        assert predicate(_custom).description == "_custom"
        assert predicate(_custom, "pro customer").description == "pro customer"
        assert predicate(_custom, "pro customer").explain(response()).why == "pro customer returned False"

    def test_a_predicate_is_returned_unchanged(self) -> None:
        """Wrapping a predicate without a new description is a no-op; with one, it relabels."""
        p = nps_between(0, 6)
        assert predicate(p) is p
        relabelled = predicate(p, "detractor")
        assert relabelled(response(score=2)) is True
        assert relabelled.explain(response(score=9)).why == "score 9 is not in 0..6"

    def test_non_bool_result_is_refused(self) -> None:
        """A function returning something other than True/False raises TypeError when called."""
        p = predicate(lambda r: r.comment, "has comment")  # type: ignore[arg-type,return-value]
        with pytest.raises(TypeError, match="must return True or False"):
            p(response(comment="hi"))

    @pytest.mark.parametrize(("function", "description"), [(3, None), (_custom, ""), (_custom, 5)])
    def test_refuses_bad_arguments(self, function: Any, description: Any) -> None:
        """The function must be callable and a description a non-blank string."""
        with pytest.raises(InvalidInput):
            predicate(function, description)

    def test_is_a_function_predicate(self) -> None:
        """Wrapped functions compare equal when function and description match."""
        assert predicate(_custom) == FunctionPredicate(_custom, "_custom")


class TestRouters:
    """Who a case is assigned to: a user, an answer, a rotation, the first that answers."""

    def test_a_user_id_is_a_router(self) -> None:
        """A plain string routes to that user."""
        router = to_router("alice")
        assert router == ToUser("alice")
        assert router is not None and router.route(response(), MemoryRotation()) == "alice"

    @pytest.mark.parametrize(
        ("answers", "expected"),
        [({"am": "bob"}, "bob"), ({}, None), ({"am": 7}, None), ({"am": "  "}, None),
         ({"am": None}, None), ({"am": "x\ny"}, None), ({"am": ["bob"]}, None)],
    )
    def test_from_answer_takes_a_usable_id_or_nothing(
        self, answers: dict[str, Any], expected: str | None
    ) -> None:
        """from_answer returns the answer only if it is a usable user id."""
        assert from_answer("am").route(response(answers=answers), MemoryRotation()) == expected

    def test_round_robin_takes_turns(self) -> None:
        """round_robin cycles through its users in order, the turn kept in the rotation state."""
        router = round_robin(["a", "b", "c"])
        rotation = MemoryRotation()
        assert [router.route(response(), rotation) for _ in range(7)] == list("abcabca")
        assert rotation.turns == {"round_robin:a,b,c": 7}

    def test_round_robin_key(self) -> None:
        """The default key comes from the users (so equal lists share turns); a key can be given."""
        assert round_robin(["a", "b"]).key == round_robin(["a", "b"]).key == "round_robin:a,b"
        assert round_robin(["a", "b"], key="support").key == "support"
        many = round_robin([f"user-{i:03}" for i in range(100)])
        assert len(many.key) <= 200 and many.key.startswith("round_robin:sha256:")
        assert isinstance(RotationState, type) and isinstance(MemoryRotation(), RotationState)

    @pytest.mark.parametrize("users", ["alice", [], ["a", ""], None, ["a", 3]])
    def test_round_robin_refuses_bad_users(self, users: Any) -> None:
        """Users must be a non-empty list of ids (a bare string is not a list)."""
        with pytest.raises(InvalidInput):
            round_robin(users)

    @pytest.mark.parametrize("turn", [-1, 2, True, "0"])
    def test_round_robin_refuses_an_impossible_turn(self, turn: Any) -> None:
        """A rotation state returning an index outside 0..size-1 is a store failure."""

        class Broken:
            def next_in_rotation(self, key: str, size: int) -> int:
                return turn  # type: ignore[no-any-return]

        with pytest.raises(StoreError):
            round_robin(["a", "b"]).route(response(), Broken())

    def test_first_of_falls_through_to_the_fallback(self) -> None:
        """first_of asks routers in order and uses the fallback when none names anyone."""
        router = first_of(from_answer("am"), fallback="cx-team")
        assert router.route(response(answers={"am": "bob"}), MemoryRotation()) == "bob"
        assert router.route(response(), MemoryRotation()) == "cx-team"
        assert first_of(from_answer("am")).route(response(), MemoryRotation()) is None

    def test_first_of_does_not_advance_unused_rotations(self) -> None:
        """A rotation after a router that answered is not consulted, so its turn is not spent."""
        rotation = MemoryRotation()
        router = first_of(from_answer("am"), round_robin(["a", "b"]))
        assert router.route(response(answers={"am": "bob"}), rotation) == "bob"
        assert router.route(response(), rotation) == "a"
        assert rotation.turns == {"round_robin:a,b": 1}

    def test_functions_route(self) -> None:
        """A function (response) -> user id | None is a router; its result is checked."""
        router = to_router(lambda r: "eu-team" if r.answers.get("region") == "eu" else None)
        assert isinstance(router, FunctionRouter)
        assert router.route(response(answers={"region": "eu"}), MemoryRotation()) == "eu-team"
        assert router.route(response(), MemoryRotation()) is None
        with pytest.raises(InvalidInput, match="must return a user id"):
            FunctionRouter(lambda r: "").route(response(), MemoryRotation())

    @pytest.mark.parametrize("value", ["", 3, ["a"], {"user": "a"}])
    def test_to_router_refuses_other_values(self, value: Any) -> None:
        """assign_to must be a user id, a router, a function or None."""
        with pytest.raises(InvalidInput) as caught:
            to_router(value)
        assert caught.value.field == "assign_to"

    @pytest.mark.parametrize(
        "build",
        [lambda: first_of(), lambda: first_of(None), lambda: first_of("a", fallback=""),
         lambda: FromAnswer(""), lambda: RoundRobin(["a"], key="")],
    )
    def test_refuses_bad_router_arguments(self, build: Callable[[], object]) -> None:
        """first_of needs routers; fallbacks, answer keys and rotation keys must be ids."""
        with pytest.raises(InvalidInput):
            build()

    def test_first_of_nesting_is_limited(self) -> None:
        """first_of nested deeper than MAX_DEPTH is refused."""
        router: FirstOf = first_of("a")  # two levels: first_of, then the user
        for _ in range(MAX_DEPTH - 2):
            router = first_of(router)
        with pytest.raises(InvalidInput, match="nest at most"):
            first_of(router)


class TestTrigger:
    """Trigger(name, when, *, priority, assign_to, due_in, reason)."""

    def test_defaults(self) -> None:
        """A trigger is normal priority, unassigned, without SLA, its reason its name."""
        t = Trigger("detractor", nps_between(0, 6))
        assert (t.priority, t.assign_to, t.due_in, t.reason) == (Priority.NORMAL, None, None, "detractor")

    def test_normalises_its_arguments(self) -> None:
        """Priority may be given by value, assign_to as a user id, when as a plain function."""
        t = Trigger("vip", _custom, priority="high", assign_to="alice", reason="vip-customer")
        assert t.priority is Priority.HIGH
        assert t.assign_to == ToUser("alice")
        assert t.when == predicate(_custom)
        assert t.reason == "vip-customer"

    @pytest.mark.parametrize(
        ("kwargs", "field"),
        [
            ({"name": ""}, "name"),
            ({"name": 3}, "name"),
            ({"when": "score"}, "when"),
            ({"priority": "asap"}, "priority"),
            ({"assign_to": 3}, "assign_to"),
            ({"due_in": timedelta(0)}, "due_in"),
            ({"due_in": timedelta(hours=-1)}, "due_in"),
            ({"due_in": 3600}, "due_in"),
            ({"reason": ""}, "reason"),
        ],
    )
    def test_refuses_bad_arguments(self, kwargs: dict[str, Any], field: str) -> None:
        """Each bad argument raises InvalidInput naming it."""
        arguments: dict[str, Any] = {"name": "t", "when": contact_requested(), **kwargs}
        with pytest.raises(InvalidInput) as caught:
            Trigger(**arguments)
        assert caught.value.field == field

    def test_route_names_the_trigger_when_routing_fails(self) -> None:
        """A routing function that raises becomes InvalidInput naming the trigger, cause chained."""

        def broken(r: SurveyResponse) -> str:
            raise KeyError("region")

        t = Trigger("regional", contact_requested(), assign_to=broken)
        with pytest.raises(InvalidInput, match="trigger 'regional'") as caught:
            t.route(response(), MemoryRotation())
        assert isinstance(caught.value.__cause__, KeyError)
        bad = Trigger("bad", contact_requested(), assign_to=lambda r: 42)
        with pytest.raises(InvalidInput, match="trigger 'bad'"):
            bad.route(response(), MemoryRotation())
        assert Trigger("nobody", contact_requested()).route(response(), MemoryRotation()) is None


class TestEvaluate:
    """evaluate(triggers, response): the first match routes, every match is a reason."""

    TRIGGERS = (
        Trigger("detractor", nps_between(0, 6), priority="high", assign_to="alice",
                due_in=timedelta(hours=48)),
        Trigger("contact-request", contact_requested(), assign_to="bob"),
        Trigger("refund", comment_contains("refund"), reason="detractor"),
    )

    def test_no_match_is_none(self) -> None:
        """A response no trigger matches gives None."""
        assert evaluate(self.TRIGGERS, response(score=9)) is None
        assert evaluate([], response(score=0)) is None

    def test_first_match_routes_and_all_matches_are_reasons(self) -> None:
        """The first matching trigger is the Match's trigger; reasons list every match once."""
        match = evaluate(self.TRIGGERS, response(score=3, contact_requested=True, comment="Refund!"))
        assert isinstance(match, Match)
        assert match.trigger.name == "detractor"
        assert match.priority is Priority.HIGH
        assert [t.name for t in match.triggers] == ["detractor", "contact-request", "refund"]
        assert match.reasons == ("detractor", "contact-request")

    def test_order_decides_the_routing(self) -> None:
        """When a later trigger is the only one matching, it routes."""
        match = evaluate(self.TRIGGERS, response(score=9, contact_requested=True))
        assert match is not None and match.trigger.name == "contact-request"
        assert match.trigger.route(response(), MemoryRotation()) == "bob"

    def test_a_trigger_set_gives_the_same_answers(self) -> None:
        """A compiled TriggerSet and a plain list evaluate and explain alike."""
        compiled = TriggerSet(self.TRIGGERS)
        r = response(score=1, comment="refund")
        assert compiled.evaluate(r) == evaluate(list(self.TRIGGERS), r)
        assert compiled.explain(r) == explain(self.TRIGGERS, r)
        assert len(compiled) == 3 and [t.name for t in compiled] == ["detractor", "contact-request", "refund"]

    @pytest.mark.parametrize(
        ("triggers", "field"),
        [
            ([Trigger("a", score_missing()), Trigger("a", contact_requested())], "triggers[1].name"),
            ([Trigger("a", score_missing()), "b"], "triggers[1]"),
            (Trigger("a", score_missing()), "triggers"),
            (3, "triggers"),
        ],
    )
    def test_refuses_bad_trigger_lists(self, triggers: Any, field: str) -> None:
        """Triggers must be a list of Trigger objects with distinct names."""
        with pytest.raises(InvalidInput) as caught:
            TriggerSet(triggers)
        assert caught.value.field == field
        with pytest.raises(InvalidInput):
            evaluate(triggers, response())

    def test_refuses_a_non_response(self) -> None:
        """Only a SurveyResponse can be evaluated or explained."""
        with pytest.raises(InvalidInput, match="response"):
            evaluate(self.TRIGGERS, {"score": 3})  # type: ignore[arg-type]
        with pytest.raises(InvalidInput, match="response"):
            explain(self.TRIGGERS, {"score": 3})  # type: ignore[arg-type]

    @pytest.mark.parametrize("how", ["raises", "returns None"])
    def test_a_broken_condition_names_its_trigger(self, how: str) -> None:
        """A condition that raises or returns a non-bool is InvalidInput naming the trigger."""

        def fragile(r: SurveyResponse) -> bool:
            if how == "raises":
                raise ZeroDivisionError("oops")
            return None  # type: ignore[return-value]

        triggers = [Trigger("fine", score_missing()), Trigger("fragile", fragile & contact_requested())]
        for run in (lambda: evaluate(triggers, response(score=1)), lambda: explain(triggers, response())):
            with pytest.raises(InvalidInput, match="trigger 'fragile'") as caught:
                run()
            assert isinstance(caught.value.__cause__, ZeroDivisionError | TypeError)

    @given(st.lists(predicates, max_size=5), responses)
    def test_compiled_evaluation_agrees_with_each_trigger(
        self, conditions: list[Predicate], r: SurveyResponse
    ) -> None:
        """The Match lists exactly the triggers whose predicate matches, in order."""
        triggers = [Trigger(f"t{i}", p, reason=f"reason-{i % 2}") for i, p in enumerate(conditions)]
        expected = [t for t in triggers if t.when(r)]
        match = evaluate(TriggerSet(triggers), r)
        if not expected:
            assert match is None
        else:
            assert match is not None
            assert list(match.triggers) == expected
            assert match.reasons == tuple(dict.fromkeys(t.reason for t in expected))
        assert [e.matched for e in explain(triggers, r)] == [t in expected for t in triggers]


class TestExplain:
    """explain(triggers, response): every trigger, matched or not, and why."""

    def test_explains_every_trigger(self) -> None:
        """Each trigger gets matched yes/no, the reason and the description of its condition."""
        triggers = [
            Trigger("urgent", nps_between(0, 6) & contact_requested()),
            Trigger("silent", score_missing()),
        ]
        first, second = explain(triggers, response(score=8, contact_requested=True))
        assert (first.name, first.matched, first.why) == ("urgent", False, "score 8 is not in 0..6")
        assert first.description == "score in 0..6 and contact requested"
        assert (second.name, second.matched, second.why) == ("silent", False, "score is 8")
        assert Trigger("silent", score_missing()).explain(response()).matched is True


class TestDueAt:
    """due_at(trigger, response, now): the SLA runs from the response's submission."""

    def test_from_the_submitted_time(self) -> None:
        """due_in is added to submitted_at when the response has one, else to now."""
        t = Trigger("detractor", nps_between(0, 6), due_in=timedelta(hours=48))
        submitted = NOW - timedelta(hours=5)
        assert due_at(t, response(submitted_at=submitted), NOW) == submitted + timedelta(hours=48)
        assert due_at(t, response(), NOW) == NOW + timedelta(hours=48)

    def test_none_without_an_sla(self) -> None:
        """A trigger without due_in sets no due date."""
        assert due_at(Trigger("t", score_missing()), response(), NOW) is None

    def test_refuses_a_naive_now(self) -> None:
        """now must be timezone-aware."""
        t = Trigger("t", score_missing(), due_in=timedelta(hours=1))
        with pytest.raises(InvalidInput, match="now"):
            due_at(t, response(), datetime(2026, 1, 1))


def test_equal_looking_trigger_lists_are_not_confused() -> None:
    """A list with answer_equals("plan", True) is not evaluated with a cached list for 1."""
    from closeloop.triggers import answer_equals, explain

    response = SurveyResponse(id="r-1", customer_id="c-1", answers={"plan": True})
    assert not explain([Trigger("t0", answer_equals("plan", 1))], response)[0].matched
    assert explain([Trigger("t0", answer_equals("plan", True))], response)[0].matched
