"""Rating normalisation: every scale maps to 0–1 with 1 = best."""

from __future__ import annotations

import pytest

from luodi.data.ratings import infer_scale, normalise
from luodi.errors import BadInputError


def test_stars_1_to_5() -> None:
    assert normalise([1, 3, 5, "4"]) == [0.0, 0.5, 1.0, 0.75]


def test_scores_0_to_1_and_missing() -> None:
    assert normalise([0.2, None, "", 0.9, float("nan")]) == [0.2, None, None, 0.9, None]


def test_thumbs_words_emoji_and_chinese() -> None:
    assert normalise(["👍", "👎", "up", "down", "赞", "踩", True, False]) == [
        1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0,
    ]  # fmt: skip


def test_star_strings_and_fractions() -> None:
    assert normalise(["★★★★★", "★☆☆☆☆", "★★★☆☆", "3/4"]) == [1.0, 0.0, 0.5, 0.75]


def test_wider_scales_inferred() -> None:
    assert normalise([1, 10, 4]) == [0.0, 1.0, pytest.approx(1 / 3)]
    assert normalise([0, 50, 100]) == [0.0, 0.5, 1.0]
    assert normalise([-1, 1, 0]) == [0.0, 1.0, 0.5]
    assert infer_scale([0, 7]) == "0-10"


def test_explicit_scale_and_out_of_range() -> None:
    assert normalise([1, 5], "1-10") == [0.0, pytest.approx(4 / 9)]
    assert normalise([3, 7], "1-5") == [0.5, None]  # 7 is not a 1-5 rating
    with pytest.raises(BadInputError):
        normalise([1, 500])
