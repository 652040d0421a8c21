"""The learning-rate schedule and the accumulation groups the training loop steps through."""
import math

import pytest

from mtakd.schedule import lr_factor, step_groups


def test_lr_warms_up_linearly_then_decays_to_the_floor():
    warm, total, floor = 10, 110, 0.05
    assert [lr_factor(s, warm, total, floor) for s in range(warm)] == pytest.approx([(s + 1) / warm for s in range(warm)])
    assert lr_factor(warm, warm, total, floor) == pytest.approx(1.0)
    assert lr_factor(60, warm, total, floor) == pytest.approx(floor + (1 - floor) * 0.5)  # half-way: cosine at pi/2
    assert lr_factor(total, warm, total, floor) == pytest.approx(floor)
    assert lr_factor(total + 50, warm, total, floor) == pytest.approx(floor)  # past the end it stays at the floor
    values = [lr_factor(s, warm, total, floor) for s in range(warm, total + 1)]
    assert all(a >= b for a, b in zip(values, values[1:]))
    assert all(math.isfinite(v) for v in values)


def test_step_groups_are_consecutive_and_drop_a_short_tail():
    assert list(step_groups(range(7), 3)) == [[0, 1, 2], [3, 4, 5]]
    assert list(step_groups(range(4), 1)) == [[0], [1], [2], [3]]
    assert list(step_groups([], 2)) == []
