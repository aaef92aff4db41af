"""The condition language of flow edges (the same file generated megaservices run)."""

from __future__ import annotations

import pytest

from opea_new import conditions

ConditionError = conditions.condition_error()


@pytest.mark.parametrize(
    ("text", "output", "failed", "expected"),
    [
        ("success", {}, False, True),
        ("success", {}, True, False),
        (None, {}, False, True),
        ("", {}, True, False),
        ("error", {"error": {}}, True, True),
        ("error", {}, False, False),
        ("blocked == true", {"blocked": True}, False, True),
        ("blocked == true", {"blocked": False}, False, False),
        ("blocked == true", {"blocked": 1}, False, False),  # JSON comparison: true is not 1
        ("blocked == true", {"blocked": True}, True, False),  # comparisons need success
        ("!blocked", {"blocked": False}, False, True),
        ("!blocked", {}, False, True),  # a missing key reads as null
        ("blocked", {"blocked": "yes"}, False, True),
        ("blocked", {"blocked": []}, False, False),
        ("label != \"toxic\"", {"label": "ok"}, False, True),
        ("label != \"toxic\"", {"label": "toxic"}, False, False),
        ("scores.0 == 3", {"scores": [3, 1]}, False, True),
        ("scores.5 == null", {"scores": [3]}, False, True),
        ("result.\"odd key\" == [1, 2]", {"result": {"odd key": [1, 2]}}, False, True),
        ("a.b.c == 1.5", {"a": {"b": {"c": 1.5}}}, False, True),
        ("count == 2", {"count": 2.0}, False, True),
    ],
)
def test_conditions_hold_as_documented(text, output, failed, expected):
    assert conditions.parse(text).holds(output, failed=failed) is expected


@pytest.mark.parametrize("text", ["blocked == true", "!blocked", "scores.0 != 3", 'a."odd key" == "x"', "error",
                                  "success", "label"])
def test_str_is_canonical_and_round_trips(text):
    parsed = conditions.parse(text)
    assert conditions.parse(str(parsed)) == parsed


@pytest.mark.parametrize(
    ("text", "position", "reason"),
    [
        ("blocked ==", 11, "expected a JSON literal"),
        ("label == toxic", 10, "expected a JSON literal"),
        ("a b", 3, "expected '==', '!='"),
        ("== 3", 1, "expected a field name"),
        ("!", 2, "expected a field name"),
        ("a == 1 extra", 8, "unexpected text"),
        ("a.", 3, "expected a field name"),
        ('a."unterminated == 1', 3, "unterminated quoted key"),
        ("__import__('os').system('x')", 11, "expected '==', '!='"),
    ],
)
def test_bad_conditions_say_what_and_where(text, position, reason):
    with pytest.raises(ConditionError) as caught:
        conditions.parse(text)
    assert reason in caught.value.reason
    assert caught.value.position + 1 == position
