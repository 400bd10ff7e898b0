"""The report's arithmetic: what counts as survived, lost or clear, and when it fails the build."""

from __future__ import annotations

from tests.reliability.report import render, summarise, verdict


def _results(outcomes: dict[str, tuple[str, str]], lost: int = 0, lost_in: str | None = None) -> dict:
    tests = {node: {"kind": kind, "what": "", "outcome": outcome, "reason": "r", "lost": lost if node == lost_in else 0}
             for node, (kind, outcome) in outcomes.items()}
    return {"reliability": {"tests": tests, "ledger": {"ticks": 3, "records": 3, "lost": lost}}}


def test_all_survived_and_clear_passes():
    s = summarise(_results({"a": ("fault", "passed"), "b": ("bad_input", "passed"), "c": ("security", "passed")}))
    assert (s["faults_injected"], s["faults_survived"], s["bad_inputs_tried"], s["clear_errors_given"]) == (1, 1, 1, 1)
    assert verdict(s, allow_known_gaps=False) == 0
    assert "| records lost" in render(s, 1.0)


def test_a_lost_record_fails_even_when_gaps_are_allowed():
    s = summarise(_results({"a": ("fault", "passed")}, lost=1))
    assert verdict(s, allow_known_gaps=True) == 1


def test_records_lost_inside_a_known_gap_fail_unless_gaps_are_allowed():
    s = summarise(_results({"a": ("fault", "xfailed")}, lost=2, lost_in="a"))
    assert s["records_lost_in_known_gaps"] == 2
    assert verdict(s, allow_known_gaps=False) == 1 and verdict(s, allow_known_gaps=True) == 0


def test_a_known_gap_fails_unless_allowed_and_a_failure_always_fails():
    gap = summarise(_results({"a": ("fault", "xfailed"), "b": ("bad_input", "passed")}))
    assert verdict(gap, allow_known_gaps=False) == 1 and verdict(gap, allow_known_gaps=True) == 0
    failed = summarise(_results({"a": ("bad_input", "failed")}))
    assert verdict(failed, allow_known_gaps=True) == 1
    assert "FAILED a" in render(failed, 1.0)


def test_skipped_cases_are_not_counted_as_tried():
    s = summarise(_results({"a": ("security", "skipped"), "b": ("security", "passed")}))
    assert s["security_checks"] == 1 and verdict(s, allow_known_gaps=False) == 0


def test_each_case_is_listed_by_what_it_is_with_survived_of_tried():
    results = _results({"a[1]": ("fault", "passed"), "a[2]": ("fault", "failed")})
    for node in ("a[1]", "a[2]"):
        results["reliability"]["tests"][node]["what"] = "NaN metrics"
    text = render(summarise(results), 1.0)
    assert "fault: NaN metrics (1/2 NOT survived)" in text
