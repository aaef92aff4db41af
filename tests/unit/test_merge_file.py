"""The per-file 3-way merge behind update, add-service and remove-service (updater._merge_file)."""

from __future__ import annotations

import pytest

from opea_new.updater import _merge_file

LINES = "".join(f"line {i}\n" for i in range(1, 21))


@pytest.fixture
def sides(tmp_path):
    for side in ("ours", "base", "theirs"):
        (tmp_path / side).mkdir()

    def write(ours: str | bytes | None, base: str | bytes | None, theirs: str | bytes | None):
        for side, content in (("ours", ours), ("base", base), ("theirs", theirs)):
            if content is not None:
                path = tmp_path / side / "f"
                path.write_bytes(content.encode() if isinstance(content, str) else content)
        return tmp_path / "ours" / "f", tmp_path / "base" / "f", tmp_path / "theirs" / "f"

    return write


def merge(paths, *, user_owned=False, answers=False):
    return _merge_file(*paths, answers=answers, user_owned=user_owned)


def test_untouched_file_takes_the_template(sides):
    paths = sides(LINES, LINES, LINES + "new\n")
    assert merge(paths) == "updated"
    assert paths[0].read_text() == LINES + "new\n"


def test_only_the_user_changed_it(sides):
    paths = sides("mine\n" + LINES, LINES, LINES)
    assert merge(paths) is None
    assert paths[0].read_text() == "mine\n" + LINES


def test_both_changed_different_places_merges(sides):
    paths = sides("mine\n" + LINES, LINES, LINES + "theirs\n")
    assert merge(paths) == "merged"
    assert paths[0].read_text() == "mine\n" + LINES + "theirs\n"


def test_both_changed_the_same_place_is_a_conflict_with_copiers_markers(sides):
    paths = sides(LINES + "mine\n", LINES, LINES + "theirs\n")
    assert merge(paths) == "conflict"
    text = paths[0].read_text()
    assert "<<<<<<< before updating\nmine\n=======\ntheirs\n>>>>>>> after updating\n" in text


def test_a_user_owned_file_is_never_written_over(sides):
    paths = sides("my backend\n", "stub\n", "better stub\n")
    assert merge(paths, user_owned=True) is None
    assert paths[0].read_text() == "my backend\n"


def test_a_missing_user_owned_file_is_created(sides):
    paths = sides(None, "stub\n", "stub\n")
    assert merge(paths, user_owned=True) == "new"


def test_a_file_the_user_deleted_stays_deleted(sides):
    paths = sides(None, LINES, LINES + "theirs\n")
    assert merge(paths) is None and not paths[0].exists()


def test_a_file_the_template_dropped_is_deleted_unless_edited(sides, tmp_path):
    paths = sides(LINES, LINES, None)
    assert merge(paths) == "deleted" and not paths[0].exists()
    paths = sides("mine\n" + LINES, LINES, None)
    assert merge(paths) == "conflict"
    assert "<<<<<<< before updating" in paths[0].read_text() and "mine" in paths[0].read_text()


def test_a_file_added_on_both_sides(sides):
    same = sides("x\n", None, "x\n")
    assert merge(same) is None
    (same[0]).write_text("mine\n")
    assert merge(same) == "conflict"


def test_the_answers_file_always_takes_the_template(sides):
    paths = sides("_commit: v1\nhand: edit\n", "_commit: v1\n", "_commit: v2\n")
    assert merge(paths, answers=True) == "updated"
    assert paths[0].read_text() == "_commit: v2\n"


def test_binary_files_that_both_changed_keep_the_users_copy(sides):
    paths = sides(b"\x00mine", b"\x00base", b"\x00theirs")
    assert merge(paths) == "conflict"
    assert paths[0].read_bytes() == b"\x00mine"


def test_the_template_makes_a_script_executable_unless_the_user_changed_the_mode(sides):
    paths = sides(LINES, LINES, LINES)
    paths[2].chmod(0o755)
    merge(paths)
    assert paths[0].stat().st_mode & 0o777 == 0o755
