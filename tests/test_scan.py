"""What VIDEOS means: folders (symlinked ones followed, unreadable ones a failure) and VIDEOS text
files, whose every line is one video or an error."""
import json
import shutil
import subprocess
import unicodedata
from contextlib import contextmanager

from tsn_core.store import Store

from .conftest import VIDEOS, cli, cli_subprocess, unprivileged

QUICK = ("--max-frames", 2, "--size", "32x24", "--quiet")


def prep_unprivileged(*args) -> subprocess.CompletedProcess:
    """tsn-prep as a process that permission bits apply to, even when the tests run as root."""
    return cli_subprocess(*args, prefix=unprivileged())


@contextmanager
def locked(folder, mode=0):
    """``folder`` with permissions ``mode`` inside the block, open again after it."""
    folder.chmod(mode)
    try:
        yield
    finally:
        folder.chmod(0o755)


def test_symlinked_folders_are_followed_and_a_loop_is_not(tmp_path):
    elsewhere = tmp_path / "elsewhere" / "clips"
    elsewhere.mkdir(parents=True)
    shutil.copy(VIDEOS / "carphone.mp4", elsewhere / "car.mp4")
    dataset = tmp_path / "dataset"
    (dataset / "own").mkdir(parents=True)
    shutil.copy(VIDEOS / "tree.avi", dataset / "own" / "tree.avi")
    (dataset / "linked").symlink_to(elsewhere, target_is_directory=True)  # a dataset linked in
    (dataset / "own" / "up").symlink_to(dataset, target_is_directory=True)  # a loop
    r = cli("extract-frames", dataset, tmp_path / "out", *QUICK)
    assert Store(tmp_path / "out").videos("rgb") == ["linked/car", "own/tree"]
    assert f"note: {dataset / 'own' / 'up'}: links back to a folder above it" in r.stderr
    assert "2 extracted, 0 already complete, 0 failed, of 2 videos" in r.stderr


def test_a_folder_that_cannot_be_listed_fails_the_run_until_it_can(tmp_path):
    dataset = tmp_path / "dataset"
    (dataset / "open").mkdir(parents=True)
    (dataset / "locked").mkdir()
    shutil.copy(VIDEOS / "carphone.mp4", dataset / "open" / "car.mp4")
    shutil.copy(VIDEOS / "tree.avi", dataset / "locked" / "tree.avi")
    out = tmp_path / "out"
    run = prep_unprivileged
    with locked(dataset / "locked"):
        r = run("extract-frames", dataset, out, *QUICK)
        v = run("verify", out, "--quiet")
    assert r.returncode == 1, r.stderr
    assert (f"error: {dataset / 'locked'}: folder cannot be listed (Permission denied); its videos "
            "were not extracted") in r.stderr
    assert "1 folder(s) could not be listed" in r.stderr
    assert Store(out).videos("rgb") == ["open/car"]
    assert v.returncode == 3 and v.stdout.strip().endswith("1 recorded failures: FAILURES RECORDED, no damage")
    assert f"failed extraction: {dataset / 'locked'} [rgb]: folder cannot be listed" in v.stderr

    r = run("extract-frames", dataset, out, *QUICK)  # readable again: its video is done, the record gone
    assert r.returncode == 0, r.stderr
    assert Store(out).videos("rgb") == ["locked/tree", "open/car"]
    assert run("verify", out, "--quiet").returncode == 0


def test_videos_without_any_video_is_an_error(tmp_path):
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    (empty / "notes.txt").write_text("no videos here\n")
    r = cli("extract-frames", empty, tmp_path / "out", "--quiet", expect=1)
    assert r.output.startswith(f"Error: {empty}: no video files under it (extensions: .3gp .avi")
    listed = tmp_path / "list.txt"
    listed.write_text("# nothing yet\n\n")
    r = cli("extract-frames", listed, tmp_path / "out", "--quiet", expect=1)
    assert r.output == f"Error: {listed}: lists no video\n"
    assert not (tmp_path / "out").exists()  # no empty store left behind


def test_a_videos_list_line_is_one_file_or_an_error(tmp_path):
    d = tmp_path / "videos"
    d.mkdir()
    for name in ("car.mp4", "#1.mp4", "a.mp4", " a.mp4", unicodedata.normalize("NFD", "café.mp4")):
        shutil.copy(VIDEOS / "carphone.mp4", d / name)
    listed = d / "list.txt"
    nfc = unicodedata.normalize("NFC", "café.mp4")
    # BOM first; a trailing space that names no file; a '#' line naming a file; a comment; the
    # same file twice; a line two files answer to; a name in the other Unicode normalisation
    listed.write_text("car.mp4 \n#1.mp4\n# a.mp4 is left out\ncar.mp4\n\n a.mp4\n" + nfc + "\n",
                      encoding="utf-8-sig")
    r = cli("extract-frames", listed, tmp_path / "out", *QUICK, expect=1)
    assert Store(tmp_path / "out").videos("rgb") == ["#1", "car"]
    assert f"note: {listed}:4: the same file as line 1; it is one video" in r.stderr
    assert f"{listed}:6: could be read as ' a.mp4' or 'a.mp4', and both are files; rename one" in r.stderr
    assert (f"{listed}:7: no such file, but {unicodedata.normalize('NFD', 'café.mp4')!r} is there, "
            "the same name in another Unicode normalisation (NFD)") in r.stderr
    assert "2 extracted, 0 already complete, 2 failed, of 4 videos" in r.stderr
    failures = {f["video_id"] for f in json.loads(cli("info", tmp_path / "out", "--json").stdout)["failures"]}
    assert failures == {"a", "café"}


def test_import_frames_follows_linked_folders_and_fails_on_unlistable_ones(tmp_path):
    from .conftest import DATA

    tree = tmp_path / "frames"
    (tree / "locked" / "v2").mkdir(parents=True)
    (tree / "linked").symlink_to(DATA / "tsn_frames", target_is_directory=True)  # a tree linked in
    out = tmp_path / "out"
    run = lambda: prep_unprivileged("import-frames", tree, out, "--quiet")  # noqa: E731
    with locked(tree / "locked"):
        r = run()
    assert r.returncode == 1, r.stderr
    assert (f"error: {tree / 'locked'}: folder cannot be listed (Permission denied); the video "
            "folders in it were not imported") in r.stderr
    assert "imported 1 videos, 1 failed" in r.stderr
    store = Store(out)
    assert store.videos("rgb") == store.videos("flow") == ["linked"]
    assert [(f.video_id, f.kind) for f in store.failures()] == [("locked", "folder")]
    shutil.copytree(DATA / "tsn_frames", tree / "locked" / "v2", dirs_exist_ok=True)
    assert run().returncode == 0  # listable now: its video comes in, the record goes
    assert Store(out).videos("rgb") == ["linked", "locked/v2"] and Store(out).failures() == []


def test_one_video_file_is_one_video_and_a_binary_list_is_an_error(tmp_path):
    clip = tmp_path / "my clip.avi"
    shutil.copy(VIDEOS / "tree.avi", clip)
    r = cli("extract-frames", clip, tmp_path / "out", *QUICK)
    assert Store(tmp_path / "out").videos("rgb") == ["my clip"]
    assert "1 extracted, 0 already complete, 0 failed, of 1 videos" in r.stderr

    binary = tmp_path / "clips.lst"  # a file with no video extension is read as a list
    binary.write_bytes((VIDEOS / "tree.avi").read_bytes())
    r = cli("extract-frames", binary, tmp_path / "out2", *QUICK, expect=None)
    assert r.exit_code != 0
    assert r.stderr.strip().splitlines()[-1] == (
        f"Error: {binary}: not a text list (it holds NUL bytes): VIDEOS is a folder, a video file, "
        "or a text file with one path per line")
    assert not (tmp_path / "out2").exists()


def test_a_folder_the_system_refuses_is_one_line_naming_it(tmp_path):
    out = tmp_path / "out"
    cli("extract-frames", VIDEOS / "tree.avi", out, *QUICK)
    ro = tmp_path / "ro"
    ro.mkdir()
    with locked(ro, 0o555):
        r = prep_unprivileged("export", out, ro / "frames", "--quiet")
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == [f"Error: {ro / 'frames'}: Permission denied"]
