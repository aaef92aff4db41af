"""Every file in tests/specs/invalid is refused with the message its first line expects."""

from __future__ import annotations

from pathlib import Path

import pytest

from opea_new.spec import SpecError, load_pipeline

INVALID = Path(__file__).resolve().parents[1] / "specs" / "invalid"
CASES = sorted(path for path in INVALID.iterdir() if path.suffix in (".yaml", ".json"))


def expected_message(path: Path) -> str:
    if path.suffix == ".json":
        return path.with_name(path.name + ".expect").read_text().strip()
    first = path.read_text().splitlines()[0]
    assert first.startswith("# expect: "), f"{path.name} has no '# expect:' line"
    return first.removeprefix("# expect: ")


@pytest.mark.parametrize("path", CASES, ids=[path.name for path in CASES])
def test_invalid_spec_is_refused_with_its_message(path):
    with pytest.raises(SpecError) as caught:
        load_pipeline(path)
    assert expected_message(path) in str(caught.value)


def test_the_corpus_covers_the_design_list():
    assert len(CASES) >= 40
