"""harness.errors: the one OSError → usage error rule and the one-line exception text."""

from __future__ import annotations

import pytest

from harness.errors import UsageError, describe, os_errors_as_usage


def test_an_os_error_becomes_one_usage_line():
    with pytest.raises(UsageError) as e, os_errors_as_usage("write '/x/y.csv'"):
        raise PermissionError(13, "Permission denied")
    assert str(e.value) == "cannot write '/x/y.csv': Permission denied"


def test_other_errors_pass_through():
    with pytest.raises(KeyError), os_errors_as_usage("read something"):
        raise KeyError("not an OSError")


def test_a_real_missing_directory(tmp_path):
    with pytest.raises(UsageError, match=r"^cannot write '.*nowhere/f.txt': No such file"), \
            os_errors_as_usage(f"write {str(tmp_path / 'nowhere' / 'f.txt')!r}"):
        (tmp_path / "nowhere" / "f.txt").write_text("x")


def test_describe_names_type_message_and_frame():
    try:
        raise ValueError("bad thing\nsecond line")
    except ValueError as exc:
        text = describe(exc)
    assert text.startswith("ValueError: bad thing (at test_errors.py:")
    assert "second line" not in text
