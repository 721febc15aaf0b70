"""Issue 22: inputs a user can get wrong (tiny or odd data folders, empty corpora, a --runs-dir or --keys path
below a file, a full disk, broken files) end in one `error:` line with exit 2 and leave nothing half-written,
or, where the input is merely small, simply work."""

import errno
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import assert_one_line_error
from PIL import Image

from genlab.core.errors import DiskFull, GenlabError
from genlab.core.runs import atomic_save_tensors, atomic_write_bytes, load_tensors
from genlab.train.checkpoint import CheckpointStore
from genlab.train.log import RunLog, read_log

RECIPES = Path(__file__).parents[1] / "configs"
VAE = RECIPES / "digits-vae.yaml"
TINY = ["train.steps=6", "train.checkpoint_every=2", "train.val_every=3", "train.log_every=2", "train.batch_size=16",
        "train.warmup_steps=0", "model.widths=[8,16]", "model.latent_dim=4"]


def write_images(folder: Path, n: int, grey: bool = False, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        shape = (32, 32) if grey else (32, 32, 3)
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(folder / f"{'g' if grey else 'c'}{i}.png")


def files_under(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")} if folder.exists() else set()


# -- case 1: small image folders audit fine ------------------------------------------------------------------

@pytest.mark.parametrize("n", [1, 2, 5, 63])
def test_audit_of_a_folder_of_fewer_than_64_images_works(tmp_path, run_cli, n):
    write_images(tmp_path / "imgs", n)
    code, out, err = run_cli("data", "audit", tmp_path / "imgs", "--out", tmp_path / "audit")
    assert code == 0, err
    report = json.loads((tmp_path / "audit" / "audit.json").read_text())
    assert report["items"] == n and report["exact_duplicates"]["extra_copies"] == 0
    assert report["brightness"]["std"] == report["brightness"]["std"]  # no NaN, even for one image


def test_audit_of_a_small_folder_with_a_fake_png_and_grey_rgb_mix(tmp_path, run_cli):
    write_images(tmp_path / "imgs", 4)
    write_images(tmp_path / "imgs", 3, grey=True, seed=1)
    (tmp_path / "imgs" / "notes.png").write_text("not an image")
    Image.new("1", (16000, 16000)).save(tmp_path / "imgs" / "bomb.png")  # over PIL's decompression-bomb limit
    code, out, err = run_cli("data", "audit", tmp_path / "imgs", "--out", tmp_path / "audit")
    assert code == 0, err
    report = json.loads((tmp_path / "audit" / "audit.json").read_text())
    assert report["items"] == 7 and report["shape"] == [3, 32, 32]
    assert sorted(Path(u["file"]).name for u in report["unreadable"]["items"]) == ["bomb.png", "notes.png"]


def test_tiny_labelled_folder_skips_label_errors_and_clean_says_why(tmp_path, run_cli):
    write_images(tmp_path / "imgs" / "cat", 1)
    write_images(tmp_path / "imgs" / "dog", 3, seed=1)
    code, out, err = run_cli("data", "audit", tmp_path / "imgs", "--out", tmp_path / "audit")
    assert code == 0, err
    issues = json.loads((tmp_path / "audit" / "audit.json").read_text())["label_issues"]
    assert issues["count"] is None and "at least 2 items in every class" in issues["skipped"]
    code, _, err = run_cli("data", "clean", tmp_path / "imgs", "--drop", "labels", "--out", tmp_path / "v1")
    assert_one_line_error(code, err, "label errors", "at least 2 items")
    assert not (tmp_path / "v1").exists()


def test_label_errors_with_an_empty_class_folder(tmp_path, run_cli):
    for i, name in enumerate(("a", "b", "d")):
        write_images(tmp_path / "imgs" / name, 6, seed=i)
    (tmp_path / "imgs" / "c").mkdir()  # class index 2 has no images: the probabilities must not shift
    code, out, err = run_cli("data", "audit", tmp_path / "imgs", "--out", tmp_path / "audit")
    assert code == 0, err
    report = json.loads((tmp_path / "audit" / "audit.json").read_text())
    assert report["classes"]["counts"] == {"a": 6, "b": 6, "c": 0, "d": 6}
    assert all(w["given"] != "c" and w["suggested"] != "c" for w in report["label_issues"]["worst"])


# -- case 2: empty corpora ----------------------------------------------------------------------------------

def test_audit_of_an_empty_text_file(tmp_path, run_cli):
    (tmp_path / "empty.txt").write_text("")
    code, _, err = run_cli("data", "audit", tmp_path / "empty.txt", "--out", tmp_path / "audit")
    assert_one_line_error(code, err, "empty.txt", "holds no text")
    assert not (tmp_path / "audit").exists()


def test_audit_of_jsonl_without_text_fields(tmp_path, run_cli):
    (tmp_path / "a.jsonl").write_text('{"body": "one"}\n{"body": "two"}\n')
    code, _, err = run_cli("data", "audit", tmp_path / "a.jsonl", "--out", tmp_path / "audit")
    assert_one_line_error(code, err, "a.jsonl line 1", "'text'")
    assert not (tmp_path / "audit").exists()


def test_audit_of_jsonl_with_some_text_lists_the_others(tmp_path, run_cli):
    (tmp_path / "a.jsonl").write_text('[1, 2]\n{"text": 5}\n{"text": "a poem about the sea"}\n')
    code, _, err = run_cli("data", "audit", tmp_path / "a.jsonl", "--out", tmp_path / "audit")
    assert code == 0, err
    unreadable = json.loads((tmp_path / "audit" / "audit.json").read_text())["unreadable"]
    assert [u["where"].rsplit(" ", 1)[-1] for u in unreadable["items"]] == ["1", "2"]


def test_audit_of_a_binary_file_as_text(tmp_path, run_cli):
    (tmp_path / "b.txt").write_bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    code, _, err = run_cli("data", "audit", tmp_path / "b.txt", "--out", tmp_path / "audit")
    assert code == 0, err
    report = json.loads((tmp_path / "audit" / "audit.json").read_text())
    assert report["corrupt_records"]["count"] == 1 and "invalid UTF-8" in report["unreadable"]["items"][0]["reason"]


# -- case 3: --runs-dir below a regular file ----------------------------------------------------------------

@pytest.mark.parametrize("below", ["", "sub"])
def test_train_with_runs_dir_at_or_below_a_file(tmp_path, run_cli, below):
    blocker = tmp_path / "afile"
    blocker.write_text("keep me\n")
    code, _, err = run_cli("train", VAE, *TINY, "--runs-dir", blocker / below if below else blocker)
    assert_one_line_error(code, err, "run directory", f"{blocker} is a file, not a folder")
    assert blocker.read_text() == "keep me\n"


def test_train_with_a_run_name_taken_by_a_file(tmp_path, run_cli):
    (tmp_path / "digits-vae").write_text("x")
    code, _, err = run_cli("train", VAE, *TINY, "--runs-dir", tmp_path)
    assert_one_line_error(code, err, "digits-vae is a file, not a folder")


def test_finetune_with_runs_dir_below_a_file(tmp_path, run_cli):
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "config.json").write_text("{}")  # looks like a Hugging Face model folder
    (tmp_path / "afile").write_text("x")
    code, _, err = run_cli("finetune", tmp_path / "hf", RECIPES / "tang-lora.yaml", "--runs-dir", tmp_path / "afile")
    assert_one_line_error(code, err, "run directory", "is a file, not a folder")


def test_runs_dir_through_a_symlink_loop_or_read_only(tmp_path, run_cli, monkeypatch):
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    code, _, err = run_cli("train", VAE, *TINY, "--runs-dir", tmp_path / "a" / "runs")
    assert_one_line_error(code, err, "symbolic link")
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: real_access(path, mode) and Path(path) != tmp_path)
    code, _, err = run_cli("train", VAE, *TINY, "--runs-dir", tmp_path / "runs")
    assert_one_line_error(code, err, "read-only or not accessible")
    assert not (tmp_path / "runs").exists()


def test_audit_out_below_a_file(tmp_path, run_cli):
    write_images(tmp_path / "imgs", 3)
    (tmp_path / "afile").write_text("x")
    code, _, err = run_cli("data", "audit", tmp_path / "imgs", "--out", tmp_path / "afile" / "audit")
    assert_one_line_error(code, err, "audit folder", "is a file, not a folder")


# -- case 4: key files --------------------------------------------------------------------------------------

def test_keys_add_below_a_file(tmp_path, run_cli):
    (tmp_path / "afile").write_text("x")
    code, _, err = run_cli("keys", "add", "alice", "--keys", tmp_path / "afile" / "keys.json")
    assert_one_line_error(code, err, "keys.json", "afile is a file, not a folder")
    assert (tmp_path / "afile").read_text() == "x"


@pytest.mark.parametrize("entries, needle", [
    ([{"id": "ab12"}], "key 1 has no valid 'name'"),
    ([{"id": "ab12", "name": "a", "sha256": "00", "revoked": False}, 7], "key 2 has no valid 'id'"),
    ({"id": "ab12"}, '"keys" must be a list'),
])
def test_keys_list_with_a_malformed_entry(tmp_path, run_cli, entries, needle):
    path = tmp_path / "keys.json"
    path.write_text(json.dumps({"keys": entries}))
    for command in (["list"], ["add", "bob"], ["revoke", "ab12"]):
        code, _, err = run_cli("keys", *command, "--keys", path)
        assert_one_line_error(code, err, str(path), needle)
    assert json.loads(path.read_text()) == {"keys": entries}  # nothing was rewritten


# -- case 5: a full disk ------------------------------------------------------------------------------------

def enospc_when(monkeypatch, needle: str) -> None:
    """Make safetensors writes whose path contains `needle` fail as a full disk does."""
    import genlab.core.runs

    real = genlab.core.runs.save_file

    def save_file(tensors, filename, metadata=None):
        if needle in str(filename):
            with open(filename, "wb") as fh:
                fh.write(b"\0" * 100)  # a torn start, as a real full disk leaves
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(tensors, filename, metadata=metadata)

    monkeypatch.setattr(genlab.core.runs, "save_file", save_file)


def test_disk_full_while_checkpointing_keeps_the_last_checkpoint_resumable(tmp_path, run_cli, monkeypatch):
    code, _, err = run_cli("train", VAE, *TINY, "--runs-dir", tmp_path / "whole")
    assert code == 0, err
    with monkeypatch.context() as m:
        enospc_when(m, ".tmp_step_00000004")
        code, _, err = run_cli("train", VAE, *TINY, "--runs-dir", tmp_path / "full")
    checkpoints = tmp_path / "full" / "digits-vae" / "checkpoints"
    assert_one_line_error(code, err, f"no space left in {checkpoints} for checkpoint step_00000004", "needs about",
                          "--resume", "step_00000002")
    assert (checkpoints / "latest").read_text().strip() == "step_00000002"
    assert {p.name for p in checkpoints.iterdir()} == {"latest", "step_00000002", "best.safetensors"}  # no torn temp
    assert set(load_tensors(checkpoints / "step_00000002" / "weights.safetensors"))
    code, _, err = run_cli("train", VAE, *TINY, "--runs-dir", tmp_path / "full", "--resume")
    assert code == 0, err
    a = load_tensors(tmp_path / "whole" / "digits-vae" / "model.safetensors")
    b = load_tensors(tmp_path / "full" / "digits-vae" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)  # resumed exactly


def test_disk_full_while_training_writing_the_best_weights(tmp_path, run_cli, monkeypatch):
    enospc_when(monkeypatch, "best.safetensors")
    code, _, err = run_cli("train", VAE, *TINY, "--runs-dir", tmp_path)
    assert_one_line_error(code, err, "no space left in", "best.safetensors", "--resume", "step_00000002")
    assert not [p for p in (tmp_path / "digits-vae" / "checkpoints").iterdir() if p.name.startswith(".")]


def test_disk_full_before_the_first_checkpoint_leaves_no_half_made_run(tmp_path, run_cli, monkeypatch):
    import genlab.core.runs

    real = genlab.core.runs.os.fsync

    def fsync(fd):
        if Path(f"/proc/self/fd/{fd}").resolve().name.startswith(".dataset.json"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd)

    monkeypatch.setattr(genlab.core.runs.os, "fsync", fsync)
    code, _, err = run_cli("train", VAE, *TINY, "--runs-dir", tmp_path)
    assert_one_line_error(code, err, f"no space left in {tmp_path / 'digits-vae'} for dataset.json")
    assert files_under(tmp_path) == set()


def test_atomic_writes_on_a_full_disk_keep_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "data.bin"
    target.write_bytes(b"old")
    monkeypatch.setattr("genlab.core.runs.os.fsync", lambda fd: (_ for _ in ()).throw(OSError(errno.ENOSPC, "full")))
    with pytest.raises(DiskFull, match=r"no space left in .* for data\.bin: it needs about 2\.0 KiB, .* is free"):
        atomic_write_bytes(target, b"x" * 2048)
    assert target.read_bytes() == b"old" and files_under(tmp_path) == {"data.bin"}
    enospc_when(monkeypatch, "w.safetensors")
    with pytest.raises(DiskFull, match="for w.safetensors: it needs about"):
        atomic_save_tensors(tmp_path / "w.safetensors", {"a": torch.zeros(1000)})
    assert files_under(tmp_path) == {"data.bin"}


def test_training_log_on_a_full_disk(tmp_path):
    log = RunLog(tmp_path / "log.csv", None)
    log._fh.close()

    class FullFile:
        def write(self, text):
            return len(text)

        def flush(self):
            raise OSError(errno.ENOSPC, "No space left on device")

    log._fh = FullFile()
    log._writer = __import__("csv").writer(log._fh)
    with pytest.raises(DiskFull, match="for the training log log.csv"):
        log.write(3, "train", {"loss": 1.0})


# -- other hostile inputs -----------------------------------------------------------------------------------

def test_a_torn_log_row_is_skipped(tmp_path):
    (tmp_path / "log.csv").write_text("step,split,metric,value\n2,train,loss,1.5\n4,train,lo")
    assert read_log(tmp_path / "log.csv") == {("train", "loss"): ([2], [1.5])}


def test_checkpoint_state_missing_a_key_is_one_clear_error(tmp_path, run_cli):
    code, _, err = run_cli("train", VAE, *TINY, "--runs-dir", tmp_path)
    assert code == 0, err
    state = tmp_path / "digits-vae" / "checkpoints" / "step_00000006" / "state.json"
    state.write_text(json.dumps({"step": 6}))
    code, _, err = run_cli("train", VAE, *TINY, "train.steps=8", "--runs-dir", tmp_path, "--resume")
    assert_one_line_error(code, err, "step_00000006 is incomplete", "elapsed_seconds")


def test_a_bad_latest_pointer_resumes_from_the_newest_complete_checkpoint(tmp_path):
    store = CheckpointStore(tmp_path, keep_last=3)
    store.save(2, {"w": torch.zeros(2)}, {"step": 2})
    store.save(4, {"w": torch.ones(2)}, {"step": 4})
    (tmp_path / "step_00000006").mkdir()  # a folder without files is not a checkpoint
    for pointer in ("../../etc", "step_00000009", "\xff"):
        (tmp_path / "latest").write_text(pointer)
        assert store.latest() == tmp_path / "step_00000004"


def test_an_unreadable_folder_or_file_given_to_audit(tmp_path, run_cli, monkeypatch):
    write_images(tmp_path / "imgs", 3)
    monkeypatch.setattr("genlab.modalities.os.access", lambda path, mode: False)
    code, _, err = run_cli("data", "audit", tmp_path / "imgs", "--out", tmp_path / "audit")
    assert_one_line_error(code, err, f"cannot read folder {tmp_path / 'imgs'}")
    (tmp_path / "notes").write_text("x")
    real_open = Path.open

    def open_(self, *args, **kwargs):
        if self.name == "notes":  # as if it had no read permission (the tests may run as root)
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", open_)
    code, _, err = run_cli("data", "audit", tmp_path / "notes", "--out", tmp_path / "audit")
    assert_one_line_error(code, err, f"cannot read {tmp_path / 'notes'}: Permission denied")
    assert not (tmp_path / "audit").exists()


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04 not really a zip"])
def test_a_broken_npz(tmp_path, run_cli, content):
    (tmp_path / "d.npz").write_bytes(content)
    code, _, err = run_cli("data", "audit", tmp_path / "d.npz", "--out", tmp_path / "audit")
    assert_one_line_error(code, err, "d.npz", "not a readable .npz")


def test_overwrite_with_bad_data_keeps_the_old_run(tmp_path, run_cli):
    """--overwrite deletes the old run only once the new data and config have loaded."""
    from genlab.config import config_from_dict
    from genlab.pipeline import train_config

    cfg = config_from_dict({"name": "keep", "family": "vae", "data": {"source": "digits", "limit": 200},
                            "model": {"latent_dim": 2}, "train": {"steps": 2, "batch_size": 16, "val_every": 0}})
    run, _ = train_config(cfg, tmp_path)
    weights = (run.root / "model.safetensors").read_bytes()
    cfg.data.source, cfg.data.path = "folder", str(tmp_path / "missing")
    with pytest.raises(GenlabError, match="not found"):
        train_config(cfg, tmp_path, overwrite=True)
    assert (run.root / "model.safetensors").read_bytes() == weights
