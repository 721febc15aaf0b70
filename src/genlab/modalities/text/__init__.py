"""Text: corpora split by document (.txt, JSONL, fortune files), char and byte-level BPE tokenizers, the corpus
audit and clean, likelihood / memorisation / diversity / reference metrics, streaming text output and /text."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from genlab.core.errors import GenlabError
from genlab.core.options import option
from genlab.core.runs import atomic_write_bytes
from genlab.core.validate import positive
from genlab.modalities.text.data import TEXT_FORMATS


@dataclass
class TextEval:
    n_samples: int = 20  # unprompted samples for memorisation and diversity; held-out documents continued
    sample_tokens: int = 200  # new tokens per unprompted sample
    seed: int = 0

    def validate(self) -> None:
        positive("eval", {"n_samples": self.n_samples, "sample_tokens": self.sample_tokens})


@dataclass
class TextSampling:
    prompt: str = option("", "the start of each sample")
    stop: list[str] = option([], "end a sample at this string (repeatable)", max_items=4)


class TextModality:
    name = "text"
    sources = TEXT_FORMATS
    folder_contents = ".txt documents"
    eval_options = TextEval
    sample_options = TextSampling
    output_suffixes = (".txt", ".jsonl")
    model_noun = "a language model"  # what a run of this modality is, in messages
    endpoint = "text"

    @property
    def max_samples(self) -> int:
        from genlab.modalities.text.generate import MAX_TEXTS

        return MAX_TEXTS

    def check_data(self, data) -> None:
        if isinstance(data.path, list) and not data.path:
            raise GenlabError("data.path lists no files")
        if data.augment.active:
            raise GenlabError("data.augment applies to images; for text see data.token_noise")
        for key, value, default in (("train_on", data.train_on, "assistant"), ("packing", data.packing, True),
                                    ("chat_template", data.chat_template, None),
                                    ("retrieval.index", data.retrieval.index, None)):
            if value != default:
                raise GenlabError(f"data.{key} applies to conversations (data.source=chat)")

    def load(self, data, run_dir: Path | None = None):
        from genlab.modalities.text.data import load_text_dataset

        return load_text_dataset(data, run_dir)

    def infer(self, target: str) -> dict | None:
        path = Path(target).expanduser()
        if path.is_dir():
            return {"source": "txt", "path": str(path)} if any(p.suffix == ".txt" for p in path.rglob("*")
                                                                if p.is_file()) else None
        if not path.is_file():
            return None
        if path.suffix.lower() == ".jsonl":
            return {"source": "jsonl", "path": str(path)}
        try:
            with path.open("rb") as f:
                head = f.read(1 << 20)
        except OSError as exc:
            raise GenlabError(f"cannot read {path}: {exc.strerror or exc}") from None
        if b"\n%\n" in head or head.startswith(b"%\n"):
            return {"source": "fortune", "path": str(path)}
        return {"source": "txt", "path": str(path)}  # any other file is read as plain text

    def audit(self, data, out: Path, eval_options: Any, quiet: bool = True) -> dict:
        from genlab.core.items import names_of
        from genlab.modalities.text.audit import audit_text, finding_ids, read_corpus, write_text_audit

        wheres: list[str] = []
        records, problems = read_corpus(data, wheres)
        report = audit_text(records, problems)
        report["names"] = names_of(finding_ids(report), wheres)
        write_text_audit(report, out, records)
        return {"records": report["records"], "unreadable": report["unreadable"]["count"],
                "empty records": report["empty_records"]["count"],
                "exact duplicate copies": report["exact_duplicates"]["extra_copies"],
                "near-duplicate pairs": report["near_duplicates"]["pairs"],
                "mostly boilerplate": report["boilerplate"]["mostly_boilerplate"],
                "scripts": report["scripts"]["dominant"]}

    def clean(self, data, operations: list[str], out: Path, drop_ids: Path | None = None) -> dict:
        from genlab.modalities.text.versions import clean_text_version

        return clean_text_version(data, operations, out, drop_ids)

    def generate(self, run, n: int, seed: int, options: TextSampling, family_options: Any) -> list[str]:
        from genlab.modalities.text.generate import generate_text

        return generate_text(run, options.prompt, n, seed, stop=options.stop, **vars(family_options))

    def print_samples(self, run, n: int, seed: int, options: TextSampling, family_options: Any, echo) -> None:
        """Stream each sample to the terminal as it is generated."""
        from genlab.modalities.text.generate import stream_text

        for i in range(n):
            echo(options.prompt, nl=False)
            for pieces in stream_text(run, options.prompt, seed + i, 1, options.stop, **vars(family_options)):
                echo(pieces[0], nl=False)
            echo("\n" + "-" * 40 if i < n - 1 else "")

    def write_samples(self, run, samples: list[str], out: Path, options: TextSampling) -> None:
        prompt = options.prompt
        if out.suffix == ".jsonl":
            body = "".join(json.dumps({"prompt": prompt, "text": t}, ensure_ascii=False) + "\n" for t in samples)
        elif out.suffix == ".txt":
            body = "\n%\n".join(prompt + t for t in samples) + "\n"
        else:
            raise GenlabError(f"--out must end in .txt or .jsonl for text, got {out.name}")
        atomic_write_bytes(out, body.encode())

    def evaluate(self, run, options: TextEval, quiet: bool = True) -> dict:
        from genlab.modalities.text.evaluate import evaluate_text_run

        return evaluate_text_run(run, options, quiet)

    def headline(self, metrics: dict) -> dict:
        out = {}
        if "memorisation" in metrics:
            memo = metrics["memorisation"]
            out["memorisation"] = memo["verdict"]
            out["longest overlap with training text, median chars (samples / held-out)"] = [
                memo["longest_overlap_chars"]["median"], memo["held_out_longest_overlap_chars"]["median"]]
        if "continuations" in metrics:
            c = metrics["continuations"]
            out[f"continuations BLEU / ROUGE-L ({c['n']} held-out documents)"] = [round(c["bleu"], 2),
                                                                                   round(c["rouge_l_f1"], 3)]
        if "diversity" in metrics:
            out["distinct-1 / distinct-2"] = [round(metrics["diversity"]["distinct_1"], 3),
                                              round(metrics["diversity"]["distinct_2"], 3)]
        return out

    def add_routes(self, app, server) -> None:
        from genlab.modalities.text.routes import add_text_routes

        add_text_routes(app, server, self)
