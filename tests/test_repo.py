"""The repository itself: no large files tracked (audio, packages and weights stay out of git)."""
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAX_BYTES = 5 * 1024 * 1024


def tracked_files_over(limit: int, root: Path = ROOT) -> list[str]:
    """Tracked files (as in the working tree) larger than `limit` bytes."""
    names = subprocess.run(["git", "ls-files", "-z"], cwd=root, check=True, capture_output=True).stdout
    out = []
    for name in filter(None, names.decode().split("\0")):
        p = root / name
        if p.is_file() and p.stat().st_size > limit:
            out.append(f"{name} ({p.stat().st_size / 1e6:.1f} MB)")
    return out


def test_no_tracked_file_exceeds_5_mb():
    big = tracked_files_over(MAX_BYTES)
    assert not big, "tracked files over 5 MB: " + ", ".join(big)


def test_the_size_check_sees_a_big_file(tmp_path):
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    (tmp_path / "big.bin").write_bytes(b"\0" * 2048)
    (tmp_path / "small.txt").write_text("x")
    subprocess.run(["git", "add", "."], cwd=tmp_path, check=True)
    assert tracked_files_over(1024, tmp_path) == ["big.bin (0.0 MB)"]
