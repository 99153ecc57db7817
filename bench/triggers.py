"""Trigger evaluation per second: a compiled ``TriggerSet`` of 20 rules vs a hand-written if-chain.

``size × 50`` responses are generated up front (the default size, 2,000, gives the
issue's 100 000) with a fixed seed, so every run sees the same data: scores with
a few skipped, "contact me" ticks, comments from a pool of sentences, and
answers a CRM sends along (plan, region, a multi-choice "topics", stage, a
renewal flag, seat band, account manager).

- closeloop: ``TriggerSet(RULES).evaluate(response)`` for every response – which
  returns the :class:`~closeloop.triggers.Match` (every matching trigger, in
  order) or ``None``.
- baseline: :func:`hand_written`, the same 20 checks as a plain ``if`` chain
  over the response's attributes, returning a bit mask of the matching rules.
  It lower-cases the comment once and knows the data's shapes (``topics`` is a
  list), as code written for one data source would.

Before anything is timed, both are run over all responses and must agree on
every response (the same set of matching rules), so the comparison is between
two programs that compute the same thing. :func:`make_responses` is also used
by :mod:`bench.ingest`.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from functools import partial

from bench.common import Row, peak_traced_kib, rate
from closeloop import SurveyResponse
from closeloop.triggers import (
    Trigger,
    TriggerSet,
    answer_equals,
    answer_in,
    comment_contains,
    contact_requested,
    nps_between,
    score_missing,
)

__all__ = ["RULES", "hand_written", "make_responses", "run"]

#: Each side is timed this many times, taking turns; the best rate counts.
REPEATS = 3
TARGET = 0.5
#: Responses per unit of ``size``: the default size 2,000 gives 100 000 responses.
RESPONSES_PER_SIZE = 50
SEED = 20261123

ACCOUNT_MANAGERS = ("ana", "ben", "chloe", "dev", "emil", "fatima", "goran", "hana")
COMMENTS = (
    "Great service, thanks",
    "All good",
    "Delivery was late again",
    "The shipping took two weeks",
    "Support was slow but friendly",
    "Thinking about switching to a competitor",
    "Please cancel my subscription",
    "I am cancelling at the end of the month",
    "Invoice was wrong, I want a refund",
    "I want my money back",
    "Not happy with the new pricing",
    "The new dashboard is confusing",
    "Found a bug in the export",
    "There is an issue with login",
    "Where is my data stored? GDPR matters to us",
    "Your privacy policy is unclear",
    "My lawyer will be in touch",
    "We are considering legal action",
    "Chocolate in the welcome pack was lovely",
    "Onboarding call was very helpful",
)

#: The rule set both sides evaluate. Order matters only for which trigger routes a case.
RULES: tuple[Trigger, ...] = (
    Trigger("detractor", nps_between(0, 6), priority="high"),
    Trigger("passive-complaint", nps_between(7, 8) & comment_contains("slow", "confusing", "pricing"),
            priority="low"),
    Trigger("promoter-with-issue", nps_between(9, 10) & comment_contains("bug", "issue")),
    Trigger("contact-request", contact_requested()),
    Trigger("angry-contact", nps_between(0, 4) & contact_requested(), priority="urgent"),
    Trigger("no-score", score_missing(), priority="low"),
    Trigger("no-score-complaint", score_missing() & comment_contains("cancel", "refund")),
    Trigger("churn-words", comment_contains("cancel", "cancelling", "switching", "competitor"),
            priority="high"),
    Trigger("refund", comment_contains("refund", "money back")),
    Trigger("enterprise-detractor", answer_equals("plan", "enterprise") & nps_between(0, 6),
            priority="urgent"),
    Trigger("paid-passive", answer_in("plan", ["business", "enterprise"]) & nps_between(7, 8)),
    Trigger("eu-privacy", answer_equals("region", "eu") & comment_contains("gdpr", "privacy", "data")),
    Trigger("unhappy-billing", answer_in("topics", ["billing", "invoice"]) & ~nps_between(9, 10)),
    Trigger("support-detractor", answer_in("topics", ["support"]) & nps_between(0, 6)),
    Trigger("delivery", comment_contains("late", "delivery", "shipping")),
    Trigger("onboarding", answer_equals("stage", "onboarding")
            & (nps_between(0, 7) | contact_requested())),
    Trigger("renewal-risk", answer_equals("renewal_due", True) & ~nps_between(9, 10),
            priority="high"),
    Trigger("large-account", answer_in("seats_band", ["500+", "1000+"])
            & (nps_between(0, 6) | comment_contains("cancel"))),
    Trigger("legal", comment_contains("lawyer", "legal action", "sue"), priority="urgent"),
    Trigger("quiet-free-detractor", answer_equals("plan", "free") & nps_between(0, 3)
            & ~contact_requested(), priority="low"),
)

_PASSIVE = re.compile(r"\b(?:slow|confusing|pricing)\b")
_CHURN = re.compile(r"\b(?:cancel|cancelling|switching|competitor)\b")
_REFUND = re.compile(r"\b(?:refund|money\s+back)\b")
_ISSUE = re.compile(r"\b(?:bug|issue)\b")
_NO_SCORE_COMPLAINT = re.compile(r"\b(?:cancel|refund)\b")
_PRIVACY = re.compile(r"\b(?:gdpr|privacy|data)\b")
_DELIVERY = re.compile(r"\b(?:late|delivery|shipping)\b")
_LEGAL = re.compile(r"\b(?:lawyer|legal\s+action|sue)\b")
_CANCEL = re.compile(r"\bcancel\b")
_PAID = frozenset(("business", "enterprise"))
_LARGE = frozenset(("500+", "1000+"))


def hand_written(r: SurveyResponse) -> int:
    """The 20 rules of :data:`RULES` as an if-chain; bit ``i`` set when rule ``i`` matches."""
    s = r.score
    a = r.answers
    text = r.comment.casefold() if r.comment is not None else ""
    contact = r.contact_requested
    plan = a.get("plan")
    topics = a.get("topics", ())
    h = 0
    if s is not None and s <= 6:
        h |= 1 << 0
    if s is not None and 7 <= s <= 8 and _PASSIVE.search(text):
        h |= 1 << 1
    if s is not None and s >= 9 and _ISSUE.search(text):
        h |= 1 << 2
    if contact:
        h |= 1 << 3
    if s is not None and s <= 4 and contact:
        h |= 1 << 4
    if s is None:
        h |= 1 << 5
        if _NO_SCORE_COMPLAINT.search(text):
            h |= 1 << 6
    if _CHURN.search(text):
        h |= 1 << 7
    if _REFUND.search(text):
        h |= 1 << 8
    if plan == "enterprise" and s is not None and s <= 6:
        h |= 1 << 9
    if plan in _PAID and s is not None and 7 <= s <= 8:
        h |= 1 << 10
    if a.get("region") == "eu" and _PRIVACY.search(text):
        h |= 1 << 11
    if ("billing" in topics or "invoice" in topics) and not (s is not None and s >= 9):
        h |= 1 << 12
    if "support" in topics and s is not None and s <= 6:
        h |= 1 << 13
    if _DELIVERY.search(text):
        h |= 1 << 14
    if a.get("stage") == "onboarding" and ((s is not None and s <= 7) or contact):
        h |= 1 << 15
    if a.get("renewal_due") is True and not (s is not None and s >= 9):
        h |= 1 << 16
    if a.get("seats_band") in _LARGE and ((s is not None and s <= 6) or _CANCEL.search(text)):
        h |= 1 << 17
    if _LEGAL.search(text):
        h |= 1 << 18
    if plan == "free" and s is not None and s <= 3 and not contact:
        h |= 1 << 19
    return h


def make_responses(count: int, *, seed: int = SEED, customers: int | None = None,
                   duplicates: float = 0.0) -> list[SurveyResponse]:
    """``count`` varied survey responses, the same for the same arguments.

    Args:
        customers: how many distinct customers answer (default ``count // 3``, so
            many customers answer more than once).
        duplicates: the share of responses that repeat an earlier response id, as a
            survey tool's retried webhook would.
    """
    rng = random.Random(seed)
    customers = max(1, count // 3 if customers is None else customers)
    plans = rng.choices(("free", "pro", "business", "enterprise"), weights=(4, 3, 2, 1), k=customers)
    regions = rng.choices(("eu", "us", "apac"), weights=(4, 4, 2), k=customers)
    seats = rng.choices(("1-10", "11-100", "101-500", "500+", "1000+"), weights=(5, 4, 3, 2, 1),
                        k=customers)
    start = datetime(2026, 10, 1, tzinfo=UTC)
    responses: list[SurveyResponse] = []
    for n in range(count):
        if responses and rng.random() < duplicates:
            responses.append(rng.choice(responses))
            continue
        c = rng.randrange(customers)
        answers: dict[str, object] = {
            "plan": plans[c],
            "region": regions[c],
            "seats_band": seats[c],
            "stage": rng.choices(("onboarding", "active", "renewal"), weights=(1, 6, 1))[0],
            "renewal_due": rng.random() < 0.1,
            "topics": rng.sample(("billing", "support", "product", "invoice", "onboarding"),
                                 k=rng.choice((0, 0, 0, 1, 1, 2))),
        }
        if plans[c] in _PAID:
            answers["account_manager"] = ACCOUNT_MANAGERS[c % len(ACCOUNT_MANAGERS)]
        responses.append(SurveyResponse(
            id=f"r-{n:07}",
            customer_id=f"c-{c:06}",
            score=None if rng.random() < 0.05 else rng.choices(
                range(11), weights=(2, 1, 1, 2, 2, 3, 4, 8, 10, 12, 10))[0],
            contact_requested=rng.random() < 0.1,
            comment=rng.choice(COMMENTS) if rng.random() < 0.45 else None,
            answers=answers,
            submitted_at=start + timedelta(seconds=rng.randrange(60 * 24 * 3600)),
        ))
    return responses


def run(size: int) -> list[Row]:
    """Evaluate ``size × 50`` responses against the 20 rules both ways."""
    responses = make_responses(size * RESPONSES_PER_SIZE)
    trigger_set = TriggerSet(RULES)
    matched = check_agreement(trigger_set, responses)
    closeloop_side = partial(count_closeloop, trigger_set.evaluate, responses)
    baseline_side = partial(count_baseline, hand_written, responses)
    best_closeloop = best_baseline = 0.0
    for _ in range(REPEATS):
        best_closeloop = max(best_closeloop, rate(len(responses), closeloop_side))
        best_baseline = max(best_baseline, rate(len(responses), baseline_side))
    baseline_peak = peak_traced_kib(baseline_side)
    return [Row(
        operation=f"evaluate 20 triggers ({len(responses):,} responses, {matched:,} match)",
        closeloop_rate=best_closeloop,
        baseline_rate=best_baseline,
        baseline=("hand-written if-chain of the same 20 checks returning a bit mask, checked "
                  f"to agree on every response; its peak heap {baseline_peak:,.0f} KiB"),
        peak_kib=peak_traced_kib(closeloop_side),
        target=TARGET,
    )]


def count_closeloop(evaluate: Callable[[SurveyResponse], object],
                    responses: Sequence[SurveyResponse]) -> int:
    """How many responses match at least one trigger, through ``TriggerSet.evaluate``."""
    return sum(1 for r in responses if evaluate(r) is not None)


def count_baseline(check: Callable[[SurveyResponse], int], responses: Sequence[SurveyResponse]) -> int:
    """How many responses match at least one rule, through the if-chain."""
    return sum(1 for r in responses if check(r))


def check_agreement(trigger_set: TriggerSet, responses: Sequence[SurveyResponse]) -> int:
    """Fail unless both sides find the same rules for every response; return how many match."""
    bit = {trigger.name: 1 << index for index, trigger in enumerate(trigger_set)}
    matched = 0
    for response in responses:
        match = trigger_set.evaluate(response)
        mask = 0 if match is None else sum(bit[t.name] for t in match.triggers)
        if mask != hand_written(response):
            raise AssertionError(f"if-chain and TriggerSet disagree on {response!r}: "
                                 f"{mask:#x} vs {hand_written(response):#x}")
        matched += mask != 0
    every_rule = sum(bit.values())
    seen = 0
    for response in responses:
        seen |= hand_written(response)
    if seen != every_rule:
        missing = [name for name, b in bit.items() if not seen & b]
        raise AssertionError(f"the generated data never matches {missing}: add data that does")
    return matched
