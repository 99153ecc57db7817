"""Rule checks: closeloop.rules.check and the ``closeloop rules check|backtest`` commands."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from closeloop import CloseLoop, SurveyResponse
from closeloop.rules import check, load_and_check, load_triggers
from closeloop.triggers import (
    Trigger,
    all_of,
    answer_equals,
    answer_in,
    any_of,
    comment_contains,
    contact_requested,
    not_,
    nps_between,
    predicate,
    score_missing,
)
from test_cli import closeloop

ROOT = Path(__file__).resolve().parent.parent

BAD_RULES = """
[[triggers]]
name = "detractor"
when = { nps_between = [0, 6] }

[[triggers]]
name = "impossible"
when = { nps_between = [7, 6] }

[[triggers]]
name = "angry-detractor"
when = { all_of = [{ nps_between = [0, 3] }, "contact_requested"] }

[[triggers]]
name = "enterprise"
when = { answer_equals = ["plna", "enterprise"] }
"""

EXPORT = (
    '{"id": "r1", "customer_id": "c1", "score": 2, "answers": {"plan": "enterprise"}}\n'
    '{"id": "r2", "customer_id": "c2", "score": 9, "contact_requested": true}\n'
)


class TestCheck:
    def test_empty_range_and_contradiction_never_match(self) -> None:
        """nps_between [7, 6] and an all_of of disjoint scores are findings of kind never_matches."""
        findings = check([
            {"name": "backwards", "when": {"nps_between": [7, 6]}},
            {"name": "both", "when": {"all_of": [{"nps_between": [0, 3]}, {"nps_between": [8, 10]}]}},
            {"name": "fine", "when": "contact_requested"},
        ])
        assert [(f.kind, f.trigger, f.index) for f in findings] == [
            ("never_matches", "backwards", 0), ("never_matches", "both", 1)]
        assert "empty range" in findings[0].message
        assert "'score in 0..3' and 'score in 8..10' cannot both hold" in str(findings[1])

    def test_shadowed_by_an_earlier_rule(self) -> None:
        """A rule whose every match is an earlier rule's match names the rule that shadows it."""
        (finding,) = check([Trigger("detractor", nps_between(0, 6)),
                            Trigger("angry", nps_between(0, 3) & contact_requested())])
        assert (finding.kind, finding.trigger, finding.by) == ("shadowed", "angry", ("detractor",))

    def test_shadowed_by_earlier_rules_together(self) -> None:
        """Covered by two earlier rules only together: shadowed by both."""
        (finding,) = check([Trigger("low", nps_between(0, 4)), Trigger("mid", nps_between(5, 6)),
                            Trigger("detractor", nps_between(0, 6))])
        assert (finding.kind, finding.by) == ("shadowed", ("low", "mid"))

    def test_clean_sets(self) -> None:
        """Specific rules before general ones, multi-choice answers and opaque functions: no findings."""
        vip = predicate(lambda r: r.answers.get("tier") == "vip", "VIP")
        assert check([
            Trigger("urgent", nps_between(0, 6) & contact_requested()),
            Trigger("detractor", nps_between(0, 6)),
            Trigger("both-plans", answer_in("plan", ["a"]) & answer_in("plan", ["b"])),
            Trigger("vip-detractor", vip & nps_between(0, 8)),
            Trigger("vip", vip),
            Trigger("silent", score_missing() & ~comment_contains("fine")),
        ]) == []

    def test_opaque_functions_are_never_called_shadowed_wrongly(self) -> None:
        """Two different functions are independent: neither shadows the other."""
        first, second = predicate(lambda r: True, "first"), predicate(lambda r: False, "second")
        assert check([Trigger("a", first), Trigger("b", second)]) == []
        assert [f.kind for f in check([Trigger("a", first), Trigger("b", first & second)])] == ["shadowed"]

    def test_equal_answers_conflict_but_numbers_and_bools_differ(self) -> None:
        """answer 'x' is 1 and is 1.0 agree; is True and is 1 cannot both hold."""
        assert check([Trigger("n", answer_equals("x", 1) & answer_equals("x", 1.0))]) == []
        (finding,) = check([Trigger("b", answer_equals("x", True) & answer_equals("x", 1))])
        assert finding.kind == "never_matches"

    def test_unknown_answer_against_a_sample(self) -> None:
        """With a sample, an answer name no response has is reported with the closest one."""
        sample = [SurveyResponse(id="r", customer_id="c", answers={"plan": {"label": "Pro"}})]
        findings = check([Trigger("pro", answer_equals("plan.lable", "Pro")),
                          Trigger("ok", answer_equals("plan.label", "Pro"))], sample=sample)
        assert [(f.kind, f.answer) for f in findings] == [("unknown_answer", "plan.lable")]
        assert "did you mean 'plan.label'?" in findings[0].message

    def test_unreadable_rule_is_a_finding_the_rest_still_checked(self) -> None:
        """A typo makes an "invalid" finding; the other rules load and are checked."""
        triggers, findings = load_and_check({"triggers": [
            {"name": "typo", "when": {"nps_betwen": [0, 6]}},
            {"name": "x", "when": {"nps_between": [0, 6]}},
            {"name": "x", "when": "contact_requested"},
        ]})
        assert [t.name for t in triggers] == ["x"]
        assert [(f.kind, f.index) for f in findings] == [("invalid", 0), ("invalid", 2)]
        assert "did you mean 'nps_between'?" in findings[0].message


SCORES = st.integers(0, 10)
LEAVES = st.one_of(
    st.builds(lambda a, b: nps_between(min(a, b), max(a, b)), SCORES, SCORES),
    st.just(contact_requested()), st.just(score_missing()),
    st.sampled_from(["late", "cancel"]).map(comment_contains),
    st.sampled_from(["a", "b", 1]).map(lambda v: answer_equals("plan", v)),
    st.lists(st.sampled_from(["a", "b", 1]), min_size=1, max_size=2).map(lambda vs: answer_in("plan", vs)),
)
CONDITIONS = st.recursive(LEAVES, lambda inner: st.one_of(
    st.lists(inner, min_size=1, max_size=3).map(lambda ps: all_of(*ps)),
    st.lists(inner, min_size=1, max_size=3).map(lambda ps: any_of(*ps)),
    inner.map(not_),
), max_leaves=5)
RESPONSES = st.builds(
    lambda score, contact, comment, plan: SurveyResponse(
        id="r", customer_id="c", score=score, contact_requested=contact, comment=comment,
        answers={} if plan is None else {"plan": plan}),
    st.none() | SCORES, st.booleans(), st.sampled_from([None, "late again", "I cancel", "fine"]),
    st.none() | st.sampled_from(["a", "b", 1, True, ["a", "b"], ["b"], "c"]),
)


@settings(max_examples=200, deadline=None)
@given(first=CONDITIONS, second=CONDITIONS, responses=st.lists(RESPONSES, max_size=20))
def test_findings_are_never_contradicted_by_a_response(
    first: object, second: object, responses: list[SurveyResponse]
) -> None:
    """No response matches a "never matches" trigger, or matches a shadowed one but not its shadow."""
    triggers = [Trigger("first", first), Trigger("second", second)]  # type: ignore[arg-type]
    for finding in check(triggers):
        for response in responses:
            if finding.kind == "never_matches":
                assert not triggers[finding.index].matches(response)
            elif finding.kind == "shadowed" and triggers[1].matches(response):
                assert triggers[0].matches(response)


class TestCommand:
    @pytest.fixture
    def bad(self, tmp_path: Path) -> Path:
        """A rules file with a never-matching, a shadowed and a misspelt-answer rule."""
        path = tmp_path / "rules.toml"
        path.write_text(BAD_RULES)
        return path

    def test_check_flags_never_matching_and_shadowed(self, bad: Path) -> None:
        """`rules check` lists the never-matching and the shadowed rule and exits 1."""
        run = closeloop("rules", "check", str(bad))
        assert run.returncode == 1, run.stderr
        assert "impossible       never matches" in run.stdout
        assert "angry-detractor  shadowed" in run.stdout and "by 'detractor'" in run.stdout
        assert "enterprise" not in run.stdout  # no sample, no answer check

    def test_check_with_responses_flags_unknown_answers(self, bad: Path, tmp_path: Path) -> None:
        """With --responses (CSV here), an answer name no response has is a finding, as JSON too."""
        export = tmp_path / "export.csv"
        export.write_text("id,customer_id,score,contact_requested,plan\nr1,c1,2,no,enterprise\n")
        run = closeloop("rules", "check", str(bad), "--responses", str(export), "--format", "json")
        assert run.returncode == 1, run.stderr
        findings = json.loads(run.stdout)["findings"]
        assert [(f["trigger"], f["kind"]) for f in findings] == [
            ("impossible", "never_matches"), ("angry-detractor", "shadowed"),
            ("enterprise", "unknown_answer")]

    def test_examples_rules_are_clean(self) -> None:
        """The rules the examples ship pass the check: exit 0."""
        run = closeloop("rules", "check", str(ROOT / "examples" / "rules.toml"))
        assert run.returncode == 0, run.stdout + run.stderr
        assert "4 trigger(s): no findings" in run.stdout

    def test_backtest_prints_what_backtest_finds(self, bad: Path, tmp_path: Path) -> None:
        """`rules backtest` prints loop.backtest's counts for the export, then the findings."""
        export = tmp_path / "export.jsonl"
        export.write_text(EXPORT)
        run = closeloop("rules", "backtest", str(bad), "--responses", str(export))
        assert run.returncode == 1, run.stderr
        triggers, _ = load_and_check(tomllib.loads(BAD_RULES))
        expected = CloseLoop(triggers=triggers).backtest(
            [SurveyResponse(id="r1", customer_id="c1", score=2, answers={"plan": "enterprise"}),
             SurveyResponse(id="r2", customer_id="c2", score=9, contact_requested=True)])
        assert f"would open a case          {expected.would_open}" in run.stdout
        assert f"matches no trigger         {expected.ignored}" in run.stdout
        assert "matched      detractor                  1" in run.stdout
        assert "enterprise       unknown answer" in run.stdout

    def test_backtest_of_clean_rules_exits_0(self, tmp_path: Path) -> None:
        """A clean rule set on an export that has every answer it reads: exit 0, JSON summary."""
        rules = tmp_path / "rules.json"
        rules.write_text(json.dumps([{"name": "detractor", "when": {"nps_between": [0, 6]}}]))
        export = tmp_path / "export.jsonl"
        export.write_text(EXPORT)
        run = closeloop("rules", "backtest", str(rules), "--responses", str(export), "--format", "json")
        assert run.returncode == 0, run.stderr
        summary = json.loads(run.stdout)["summary"]
        assert (summary["would_open"], summary["ignored"]) == (1, 1)
        assert load_triggers(json.loads(rules.read_text()))[0].name == "detractor"

    @pytest.mark.parametrize("args", [
        ("rules",), ("rules", "check"), ("rules", "check", "{tmp}/missing.toml"),
        ("rules", "check", "{tmp}/rules.yaml"), ("rules", "backtest", "{tmp}/r.toml"),
    ])
    def test_usage_errors_exit_2(self, args: tuple[str, ...], tmp_path: Path) -> None:
        """A missing action, file, or --responses, or an unknown suffix, is a usage error: exit 2."""
        (tmp_path / "rules.yaml").write_text("x")
        (tmp_path / "r.toml").write_text("")
        run = closeloop(*(arg.format(tmp=tmp_path) for arg in args))
        assert run.returncode == 2, run.stdout + run.stderr

    def test_bad_line_in_export_names_it(self, bad: Path, tmp_path: Path) -> None:
        """A response line with a bad score names FILE:LINE and exits 1."""
        export = tmp_path / "export.jsonl"
        export.write_text(EXPORT + '{"id": "r3", "customer_id": "c3", "score": 11}\n')
        run = closeloop("rules", "backtest", str(bad), "--responses", str(export))
        assert run.returncode == 1 and f"{export}:3" in run.stderr

