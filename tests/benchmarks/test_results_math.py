"""The arithmetic behind the benchmarks' figures and the docs' table markers (no I/O)."""

from __future__ import annotations

import re

import pytest

from benchmarks.docs import BEGIN, END, replace_between
from benchmarks.results_math import budget_fraction, ratio, series, targets_verdict


def test_budget_fraction_counts_only_writes_beyond_the_starting_bucket() -> None:
    # 300 from the bucket, then 1,800 in 10 s at a 200/s budget: 90 %
    assert budget_fraction(2_100, 300, 200.0, 10.0) == pytest.approx(0.9)


def test_budget_fraction_never_negative_and_zero_without_time() -> None:
    assert budget_fraction(100, 300, 200.0, 1.0) == 0.0
    assert budget_fraction(1_000, 0, 200.0, 0.0) == 0.0
    assert budget_fraction(1_000, 0, 0.0, 5.0) == 0.0


def test_ratio_none_when_nothing_to_compare_with() -> None:
    assert ratio(300.0, 100.0) == pytest.approx(3.0)
    assert ratio(300.0, 0.0) is None


def test_series_turns_cumulative_samples_into_rates_per_bin() -> None:
    samples = [(0.0, 0, 0), (0.5, 100, 0), (1.0, 150, 10), (1.5, 350, 10), (2.0, 400, 30)]
    s = series(samples, bin_seconds=1.0)
    assert s["t"] == [1.0, 2.0]
    assert s["writes_per_second"] == [150.0, 250.0]
    assert s["throttled_per_second"] == [10.0, 20.0]


def test_series_merges_a_last_sliver_into_the_bin_before() -> None:
    samples = [(0.0, 0, 0), (1.0, 100, 0), (2.0, 200, 0), (2.1, 260, 0)]
    s = series(samples, bin_seconds=1.0)
    assert s["t"] == [1.0, 2.1]
    assert s["writes_per_second"] == [100.0, round(160 / 1.1, 2)]


def test_series_refuses_bad_input_with_a_clear_error() -> None:
    with pytest.raises(ValueError, match="bin_seconds must be positive, got 0"):
        series([(0.0, 0, 0)], bin_seconds=0)
    with pytest.raises(ValueError, match=re.escape("samples out of time order at t=0.5")):
        series([(1.0, 1, 0), (0.5, 2, 0)], bin_seconds=1.0)
    assert series([], bin_seconds=1.0) == {
        "t": [],
        "writes_per_second": [],
        "throttled_per_second": [],
    }


def test_targets_verdict_separates_missed_from_not_measured() -> None:
    v = targets_verdict({"a": True, "b": False, "c": None})
    assert v["met"] is False
    assert v["missed"] == ["b"]
    assert v["not_measured"] == ["c"]
    assert targets_verdict({"a": True})["met"] is True


def test_replace_between_keeps_the_rest_and_names_a_file_without_markers() -> None:
    text = f"head\n{BEGIN}\nold\n{END}\ntail\n"
    assert replace_between(text, "new", where="X.md") == f"head\n{BEGIN}\nnew\n{END}\ntail\n"
    with pytest.raises(ValueError, match=re.escape("README.md: the markers")):
        replace_between("no markers", "new", where="README.md")
