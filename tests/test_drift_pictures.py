"""The drift picture is drawn from the sketches the tests compared: shares per bin and per value."""

from __future__ import annotations

import numpy as np
import pytest

from lakeloop.settings import DriftSettings
from tasks.data.drift import detect_drift
from tasks.data.drift_pictures import drift_figure_png, inline_image
from tasks.data.profiling import profile_frame
from tasks.data.whylogs_compat import frequent_values, numeric_histograms
from tests.test_drift import SPEC, frame

PNG = b"\x89PNG\r\n\x1a\n"


def test_histograms_share_one_range_and_follow_the_shift() -> None:
    ref, cur = profile_frame(frame(1), SPEC), profile_frame(frame(2, amount_shift=0.5), SPEC)
    hist = numeric_histograms([ref, cur], "amount", bins=10)
    assert hist is not None
    edges, (ref_mass, cur_mass) = hist
    assert len(edges) == 11 and len(ref_mass) == len(cur_mass) == 10
    assert sum(ref_mass) == pytest.approx(1.0) and sum(cur_mass) == pytest.approx(1.0)
    centres = (np.array(edges[:-1]) + np.array(edges[1:])) / 2
    assert float(np.dot(centres, cur_mass)) > float(np.dot(centres, ref_mass)) * 1.3  # shifted up by e^0.5
    assert numeric_histograms([ref], "no-such-column") is None


def test_frequent_values_count_each_category() -> None:
    counts = frequent_values(profile_frame(frame(3, plan_p=(0.1, 0.1, 0.8)), SPEC), "plan")
    assert set(counts) == {"a", "b", "c"} and sum(counts.values()) == 5000 and counts["c"] > 3500


def test_a_picture_for_drift_and_none_without() -> None:
    ref = profile_frame(frame(1), SPEC)
    drifted = profile_frame(frame(5, amount_shift=0.3, plan_p=(0.3, 0.3, 0.4)), SPEC)
    report = detect_drift(drifted, ref, SPEC, DriftSettings())
    assert {"amount", "plan"} <= set(report.drifted)
    png = drift_figure_png(drifted, ref, SPEC, report)
    assert png is not None and png.startswith(PNG) and len(png) > 5000
    assert inline_image(png, "x").startswith("![x](data:image/png;base64,iVBORw0KGgo")
    same = profile_frame(frame(6), SPEC)
    assert drift_figure_png(same, ref, SPEC, detect_drift(same, ref, SPEC, DriftSettings())) is None
