"""Text corpus versions: `genlab data clean` on a corpus writes data.jsonl with each record's split (so the parent's
test documents stay the test split) and manifest.json (parent fingerprint, each operation and the ids it removed)."""

from __future__ import annotations

import json
from pathlib import Path

from genlab.config import DataConfig
from genlab.core.errors import GenlabError
from genlab.core.items import drop_operation, read_drop_ids
from genlab.core.runs import atomic_write_bytes, atomic_write_json
from genlab.core.versions import new_version_folder, refuse_existing, removal_plan
from genlab.modalities.text.audit import audit_text, read_corpus
from genlab.modalities.text.data import corpus_from_splits, split_corpus

TEXT_CLEAN_OPERATIONS = ("exact", "near", "empty", "corrupt", "boilerplate", "outliers")


def _findings(records: list[str]) -> dict[str, list[int]]:
    """Per clean operation, the ids the audit finds for it."""
    report = audit_text(records, listed=None)
    return {"exact": [i for g in report["exact_duplicates"]["first_groups"] for i in g[1:]],
            "near": [j for _, j, _ in report["near_duplicates"]["first_pairs"]],
            "empty": report["empty_records"]["ids"], "corrupt": report["corrupt_records"]["ids"],
            "boilerplate": report["boilerplate"]["mostly_boilerplate_ids"],
            "outliers": report["length"]["long_outliers"] + report["length"]["short_outliers"]}


def clean_text_version(data_cfg: DataConfig, operations: list[str], out: str | Path,
                       drop_ids: str | Path | None = None) -> dict:
    """Audit a text corpus, drop the chosen findings and the records the file `drop_ids` lists (places as the
    audit prints them, or ids) from its training and validation records (test records are never touched) and
    write data.jsonl (each record with its split) + manifest.json. Record ids are positions in reading order,
    as in the audit. Returns the manifest."""
    unknown = [op for op in operations if op not in TEXT_CLEAN_OPERATIONS]
    if unknown or not (operations or drop_ids):
        raise GenlabError(f"unknown clean operation {(unknown or [''])[0]!r} for text; choose from: "
                          + ", ".join(TEXT_CLEAN_OPERATIONS))
    out = Path(out)
    refuse_existing(out)
    if data_cfg.limit is not None:
        raise GenlabError("genlab data clean works on the whole corpus; drop data.limit")
    wheres: list[str] = []
    records = read_corpus(data_cfg, wheres)[0]
    listed = None if drop_ids is None else read_drop_ids(drop_ids, wheres, len(records))
    present = [i for i, r in enumerate(records) if r.strip()]  # what the training loader reads
    if len(present) < 2:
        raise GenlabError("a corpus of one document is split by position, not by record: nothing to clean")
    parent = split_corpus([records[i] for i in present], data_cfg.val_fraction, data_cfg.test_fraction,
                          data_cfg.split_seed)
    split_of = {present[d]: name for name, ids in parent.splits.items() for d in ids}
    test = {i for i, s in split_of.items() if s == "test"}
    removed = removal_plan(_findings(records) if operations else {}, operations, protected=test)
    ops = [{"op": op, "removed_ids": ids, "count": len(ids)} for op, ids in removed.items()]
    if listed is not None:
        ops.append(drop_operation(drop_ids, listed, test, set().union(*removed.values()), wheres))
    gone = {i for o in ops for i in o["removed_ids"]}
    kept = [i for i in present if i not in gone]
    lines = "".join(json.dumps({"text": records[i], "split": split_of[i]}, ensure_ascii=False) + "\n" for i in kept)
    child = corpus_from_splits([records[i] for i in kept], [split_of[i] for i in kept])
    manifest = {"parent": {"source": data_cfg.source, "path": data_cfg.path, "fingerprint": parent.fingerprint,
                           "items": len(records)},
                "operations": ops, "fingerprint": child.fingerprint, "items": len(kept),
                "splits": {k: int(len(v)) for k, v in child.splits.items()},
                "train_with": {"data.source": "jsonl", "data.path": str(out / "data.jsonl")}}
    with new_version_folder(out) as tmp:
        atomic_write_bytes(tmp / "data.jsonl", lines.encode("utf-8"))
        atomic_write_json(tmp / "manifest.json", manifest)
    return manifest
