"""clickpose.io.staged_folder: a folder appears whole or not at all."""
import pytest

from clickpose.io import staged_folder


def test_a_finished_block_replaces_the_folder_and_a_failed_one_leaves_it(tmp_path):
    out = tmp_path / "pool"
    out.mkdir()
    (out / "old.txt").write_text("old")
    with pytest.raises(RuntimeError), staged_folder(out) as staging:
        (staging / "half.txt").write_text("half")
        raise RuntimeError("interrupted")
    assert [p.name for p in out.iterdir()] == ["old.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["pool"]        # no staging left behind
    with staged_folder(out) as staging:
        (staging / "new.txt").write_text("new")
    assert [p.name for p in out.iterdir()] == ["new.txt"]
    assert out.stat().st_mode & 0o777 == 0o755
