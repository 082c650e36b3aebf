import os
import stat

from deploy.bootstrap.private_files import is_private, make_private_dir, write_private_file


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_private_file_is_owner_only_even_with_a_permissive_umask(tmp_path):
    previous = os.umask(0)
    try:
        write_private_file(tmp_path / "nested" / "secret.json", "first")
    finally:
        os.umask(previous)

    assert _mode(tmp_path / "nested" / "secret.json") == 0o600
    assert _mode(tmp_path / "nested") == 0o700


def test_rewriting_a_private_file_replaces_it_and_leaves_no_staging_file(tmp_path):
    target = tmp_path / "secret.json"
    write_private_file(target, "first")
    write_private_file(target, "second")

    assert target.read_text() == "second"
    assert [path.name for path in tmp_path.iterdir()] == ["secret.json"]
    assert is_private(target)


def test_missing_parents_of_a_private_dir_are_owner_only_too(tmp_path):
    make_private_dir(tmp_path / "a" / "b")

    assert _mode(tmp_path / "a") == 0o700
    assert _mode(tmp_path / "a" / "b") == 0o700
