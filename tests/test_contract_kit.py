"""The contract kit as a store author uses it: the plugin, the protocol check, the helpers,
the extra, and a report contract strong enough to catch a store with one wrong rule.

The kit is exercised the way an author runs it: test files written to a scratch
directory and run by pytest in a subprocess.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
import xml.etree.ElementTree as ET
from collections import defaultdict
from importlib.metadata import entry_points
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from closeloop import CloseLoop, InvalidInput
from closeloop.storage import MemoryStore, Store
from closeloop.testing import protocol_problems
from report_mutants import MUTANTS  # tests/ is on sys.path

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests"


def run_pytest(
    directory: Path, *args: str, autoload: bool = True, timeout: float = 900
) -> subprocess.CompletedProcess[str]:
    """Run pytest in ``directory`` as a store author would (closeloop and tests/ importable)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(TESTS)])}
    env.pop("PYTEST_DISABLE_PLUGIN_AUTOLOAD", None)
    if not autoload:
        env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *args],
        cwd=directory, capture_output=True, text=True, timeout=timeout, check=False, env=env,
    )


# -- the protocol check ---------------------------------------------------------------


class MisSignedStore(MemoryStore):
    """A store whose ``history`` takes its argument under another name."""

    def history(self, case):  # type: ignore[no-untyped-def]
        """The wrong signature on purpose."""
        return super().history(case)


class StoreWithoutHistory:
    """Every Store method but ``history`` (borrowed from a MemoryStore)."""

    def __init__(self) -> None:
        self._inner = MemoryStore()

    def __getattr__(self, name: str) -> object:
        if name == "history":
            raise AttributeError(name)
        return getattr(self._inner, name)


class TestProtocolCheck:
    """protocol_problems names each method a store lacks or cannot be called as."""

    def test_a_bundled_store_has_no_problems(self) -> None:
        """MemoryStore fits the Store protocol exactly."""
        assert protocol_problems(MemoryStore(), Store) == []

    def test_names_a_missing_method(self) -> None:
        """A store without history gets one line, naming history and its parameters."""
        assert protocol_problems(StoreWithoutHistory(), Store) == ["history(case_id): missing"]

    def test_names_a_mis_signed_method(self) -> None:
        """A history whose parameter has another name is named with both signatures."""
        assert protocol_problems(MisSignedStore(), Store) == [
            "history(case_id): takes (case): parameter 1 is named case, not case_id"
        ]

    def test_each_kind_of_mismatch(self) -> None:
        """Missing, required-extra, not-optional, keyword and non-method problems are each named."""

        class Odd:
            report = 3

            def get(self, case_id: str, extra: int) -> None: ...

            def find(self, assignee: str | None = None) -> None: ...

            def claim_notices(self, *, now: object, lease: object, limit: int) -> None: ...

            def commit(self, *args: object, **kwargs: object) -> None: ...

        problems = {line.split("(")[0]: line for line in protocol_problems(Odd(), Store)}
        assert problems["get"].endswith("parameter extra is required but closeloop never passes it")
        assert "keyword parameter status is missing" in problems["find"]
        assert problems["claim_notices"].endswith(
            "parameter limit must be optional (closeloop may leave it out)")
        assert problems["report"] == "report(query): is not a method but 'int'"
        assert problems["history"] == "history(case_id): missing"
        assert "commit" not in problems  # *args and **kwargs take any call

    def test_closeloop_refuses_a_store_naming_its_problems(self) -> None:
        """CloseLoop(store=…) raises InvalidInput on the store field, naming each bad method."""
        with pytest.raises(InvalidInput) as raised:
            CloseLoop(store=MisSignedStore())
        assert raised.value.field == "store"
        assert "history(case_id): takes (case)" in str(raised.value)


# -- the kit's surface -----------------------------------------------------------------


def test_helpers_are_exported_from_closeloop_testing() -> None:
    """A store author imports the builders and contracts from closeloop.testing itself."""
    from closeloop.testing import (
        FixedClock,
        ReportContract,
        StoreContract,
        make_case,
        make_notice,
        make_record,
        opened_change,
        report_fields,
    )

    case = make_case("c-9", assignee="alice")
    change = opened_change(case, make_notice(case.id, "n-1"))
    assert (change.case, [e.kind for e in change.events], change.notices[0].id) == (
        case, ["opened"], "n-1")
    assert make_record("r-1", "c-9").outcome == "opened"
    assert issubclass(StoreContract, ReportContract)
    loop = CloseLoop(clock=FixedClock())
    assert report_fields(loop.report())["status_counts"] == loop.report().status_counts


def test_importing_the_kit_loads_no_contract_and_no_pytest() -> None:
    """`import closeloop.testing` loads no contract (the plugin registers them first) and no pytest."""
    probe = ("import sys, closeloop.testing; "
             "print(sorted(m for m in sys.modules if m.endswith('_contract') or m == 'pytest'))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            check=True, env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    assert result.stdout.strip() == "[]"


def test_the_contract_extra_pulls_only_pytest_and_hypothesis() -> None:
    """`closeloop[contract]` lists pytest and hypothesis and nothing else; the plugin is an entry point."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert {Requirement(r).name for r in project["optional-dependencies"]["contract"]} == {
        "pytest", "hypothesis"}
    assert project["entry-points"]["pytest11"] == {"closeloop": "closeloop.testing.plugin"}
    installed = {ep.name: ep.value for ep in entry_points(group="pytest11")}
    assert installed["closeloop"] == "closeloop.testing.plugin"


# -- the plugin --------------------------------------------------------------------------

MIS_SIGNED_CONTRACT = '''
import pytest
from closeloop.storage import MemoryStore
from closeloop.testing import StoreContract


class MisSignedStore(MemoryStore):
    def history(self, case):
        return super().history(case)


class TestMisSignedStore(StoreContract):
    @pytest.fixture
    def store(self):
        yield MisSignedStore()
'''


@pytest.mark.parametrize(("autoload", "plugin", "rewritten"), [
    (True, False, True),  # installed: pytest loads the plugin from its entry point
    (False, True, True),  # autoload off, loaded by name
    (False, False, False),  # without the plugin the same failure is a bare AssertionError
])
def test_plugin_makes_contract_failures_show_their_values(
    tmp_path: Path, autoload: bool, plugin: bool, rewritten: bool
) -> None:
    """With the plugin a failing contract assert shows the values it compared (the problem list)."""
    (tmp_path / "test_mis_signed.py").write_text(MIS_SIGNED_CONTRACT)
    args = ["-k", "test_satisfies_protocol", *(["-p", "closeloop.testing.plugin"] if plugin else [])]
    result = run_pytest(tmp_path, *args, autoload=autoload)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "1 failed" in result.stdout
    shown = "history(case_id): takes (case): parameter 1 is named case, not case_id"
    assert (shown in result.stdout) is rewritten, result.stdout


# -- the report contract's strength -------------------------------------------------------

MUTANT_CONTRACTS = '''
import pytest
from closeloop.storage import MemoryStore
from closeloop.testing import StoreContract
from report_mutants import MUTANTS


def contract_for(store_class):
    class Contract(StoreContract):
        @pytest.fixture
        def store(self):
            yield store_class()
    return Contract


for name, store_class in {"Control": MemoryStore, **MUTANTS}.items():
    globals()[f"Test{name}"] = contract_for(store_class)
'''

NO_SHRINKING = '''
from hypothesis import Phase, settings

# A mutant's first failing example is enough here: shrinking it would only cost time.
settings.register_profile("mutants", phases=[Phase.explicit, Phase.generate], database=None,
                          derandomize=True)
'''


#: The mutants the generated-history test catches by itself in the derandomized run.
SEEN_BY_GENERATED_HISTORIES = (
    "AgingOffByOne", "AgingCountsClosedCases", "OverdueStrictlyBefore", "OverdueCountsClosedCases",
    "SlaOverEveryClosedCase", "FirstActionIgnoresComments", "FirstActionByTheOpener",
    "FirstActionOfAnyKind", "RepeatedReasonCountsTwice", "RecoveryCountsAResponseAtTheCloseAsAfter",
    "SinceExclusive", "UntilInclusive", "FactsWithoutComments", "FactsOneEventBehind",
)


@pytest.mark.slow
def test_the_store_contract_fails_every_report_mutant(tmp_path: Path) -> None:
    """Each store with one wrong report rule fails the StoreContract; MemoryStore passes it."""
    (tmp_path / "test_mutants.py").write_text(MUTANT_CONTRACTS)
    (tmp_path / "conftest.py").write_text(NO_SHRINKING)
    result = run_pytest(tmp_path, "--hypothesis-profile=mutants", "--junitxml=results.xml")
    outcomes: defaultdict[str, dict[str, bool]] = defaultdict(dict)
    # the XML is the report our own pytest run just wrote
    for case in ET.parse(tmp_path / "results.xml").iter("testcase"):  # noqa: S314
        failed = case.find("failure") is not None or case.find("error") is not None
        outcomes[case.attrib["classname"].rsplit(".", 1)[-1]][case.attrib["name"]] = failed
    control = outcomes.pop("TestControl")
    assert control and not any(control.values()), result.stdout[-3000:]
    assert sorted(outcomes) == sorted(f"Test{name}" for name in MUTANTS)
    survivors = [name for name, tests in outcomes.items() if not any(tests.values())]
    assert survivors == []
    # Each mutant's bug is in its report alone: only tests of report figures fail (the
    # report contract's, and the lifecycle contract's "an erasure keeps every figure").
    elsewhere = {name: [test for test, failed in tests.items()
                        if failed and "report" not in test]
                 for name, tests in outcomes.items()}
    assert {name: tests for name, tests in elsewhere.items() if tests} == {}
    # The generated-history check on its own (100 derandomized examples) catches these
    # mutants too; the others differ only on exact boundary values (a close at the very
    # microsecond of the due date, an even number of close times, a score of exactly 7)
    # that the hand-computed tests above pin.
    seen = sorted(name for name, tests in outcomes.items()
                  if tests["test_report_matches_the_reference_on_generated_histories"])
    assert seen == sorted(f"Test{name}" for name in SEEN_BY_GENERATED_HISTORIES)

