"""The architecture's two promises: imports point one way (no cycle, at module level or inside functions), and a
new modality costs one package plus registry entries (a toy one is added here, from the test suite alone)."""

import ast
import dataclasses
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

import genlab
from genlab import registry
from genlab.core.batch import BatchStream, fixed_batches
from genlab.core.errors import GenlabError
from genlab.core.options import option
from genlab.core.runs import atomic_write_bytes
from genlab.core.spec import DataSpec
from genlab.core.splits import make_splits
from genlab.models.base import GenerativeModel, Phase

SRC = Path(genlab.__file__).parent


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """genlab module -> the genlab modules it imports anywhere in its body (`from a import b` counts as a.b
    when b is a module, else as a)."""
    modules = {module_name(p): p for p in SRC.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                edges |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + [base]).strip(".")
                for alias in node.names:
                    edges.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
        graph[name] = {e for e in edges if e in modules and e != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_cycle_finder_finds_a_planted_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle_in_genlab():
    graph = import_graph()
    assert len(graph) > 60 and graph["genlab.pipeline"]  # the walk really read the package
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_core_imports_nothing_else_of_genlab():
    graph = import_graph()
    for name, edges in graph.items():
        if name.startswith("genlab.core"):
            assert all(e.startswith("genlab.core") for e in edges), (name, edges)


# -- a fourth modality, from the test suite alone: 2-D points and a Gaussian family --------------------------------

@dataclass
class PointsDataset:
    points: torch.Tensor  # N x 2 float32
    splits: dict
    fingerprint: str
    modality = "points"

    def spec(self) -> DataSpec:
        return DataSpec(channels=2)

    def describe(self) -> dict:
        return {"source": "points", "fingerprint": self.fingerprint, "points": int(self.points.shape[0]),
                "mean": self.points.mean(0).tolist()}

    def train_stream(self, batch_size: int, seed: int, binarize: bool = False):
        return BatchStream(self.points[self.splits["train"]], None, batch_size, seed)

    def validation_batches(self, batch_size: int, binarize_seed=None):
        return self.batches("val", batch_size)

    def batches(self, split: str, batch_size: int, binarize_seed=None, limit=None):
        return fixed_batches(self.points[self.splits[split]][:limit], None, batch_size)

    def save_artifacts(self, folder: Path) -> None:
        pass


@dataclass
class PointsEval:
    n_samples: int = 200


@dataclass
class PointsSampling:
    scale: float = option(1.0, "spread of the samples around the learned mean", ge=0, le=10)


class PointsModality:
    name = "points"
    sources = ("points",)
    folder_contents = None
    eval_options = PointsEval
    sample_options = PointsSampling
    output_suffixes = (".json",)
    model_noun = "a point cloud model"
    endpoint = "points"
    max_samples = 10_000

    def check_data(self, data) -> None:
        if not data.path:
            raise GenlabError("data.source=points needs data.path: a .npy file of N x 2 points")

    def load(self, data, run_dir=None):
        points = torch.from_numpy(np.load(data.path, allow_pickle=False)).float()
        splits = make_splits(points.shape[0], 0, data.val_fraction, data.test_fraction, data.split_seed)
        return PointsDataset(points, splits, f"points-{points.shape[0]}-{float(points.sum()):.3f}")

    def infer(self, target: str):
        return {"source": "points", "path": target} if target.endswith(".npy") else None

    def audit(self, data, out, eval_options, quiet=True):
        return {"points": int(self.load(data).points.shape[0])}

    def clean(self, data, operations, out):
        raise GenlabError("points have nothing to clean")

    def generate(self, run, n, seed, options, family_options):
        return run.model.sample(n, None, torch.Generator().manual_seed(seed)) * options.scale

    def print_samples(self, run, n, seed, options, family_options, echo):
        for p in self.generate(run, n, seed, options, family_options).tolist():
            echo(f"{p[0]:.4f} {p[1]:.4f}")

    def write_samples(self, run, samples, out, options):
        atomic_write_bytes(out, json.dumps(samples.tolist()).encode())

    def evaluate(self, run, options, quiet=True):
        fake = run.model.sample(options.n_samples, None, torch.Generator().manual_seed(0))
        real = run.dataset.points[run.dataset.splits["test"]]
        return {"mean_distance": float((fake.mean(0) - real.mean(0)).norm())}

    def headline(self, metrics):
        return {"distance between sample and test means": round(metrics["mean_distance"], 4)}

    def add_routes(self, app, server):
        from pydantic import Field

        request = server.request_model(self, "PointsRequest", {"n": (int, Field(10, ge=1, le=1000))})

        def points(name: str, req: request, key_id: str = __import__("fastapi").Depends(server.caller)):
            served = server.model(name, self)
            mine, family = server.options(served, req)
            return {"points": self.generate(served.run, req.n, 0, mine, family).tolist()}

        app.post("/v1/models/{name}/points")(points)


@dataclass
class GaussConfig:
    init: float = 0.0


class Gauss(GenerativeModel):
    """A diagonal Gaussian fitted by maximum likelihood: the smallest family that trains."""

    config_class = GaussConfig

    def __init__(self, config, spec):
        super().__init__(config, spec)
        self.mean = torch.nn.Parameter(torch.full((spec.channels,), config.init))
        self.log_std = torch.nn.Parameter(torch.zeros(spec.channels))

    def phases(self):
        return [Phase("fit", [self])]

    def nll(self, x):
        return (self.log_std + 0.5 * ((x - self.mean) / self.log_std.exp()) ** 2).sum(1)

    def phase_loss(self, phase, batch, noise):
        loss = self.nll(batch.x).mean()
        return loss, {"nll": loss}

    @torch.no_grad()
    def validation_metrics(self, batch, noise):
        return {"nll": self.nll(batch.x).mean()}

    @torch.no_grad()
    def sample(self, n, labels=None, noise=None):
        return self.mean + self.log_std.exp() * torch.randn(n, self.mean.numel(), generator=noise)


@pytest.fixture
def points_modality(tmp_path):
    registry.register("modality", "points", PointsModality)
    registry.register("family", "gauss", Gauss)
    yield
    registry.unregister("modality", "points")
    registry.unregister("family", "gauss")


def test_a_new_modality_is_one_package_and_registry_entries(points_modality, tmp_path, run_cli):
    data = np.random.default_rng(0).normal([3.0, -1.0], [0.5, 2.0], size=(600, 2)).astype(np.float32)
    np.save(tmp_path / "points.npy", data)
    recipe = tmp_path / "points.yaml"
    recipe.write_text(f"name: pts\nfamily: gauss\ndata: {{source: points, path: {tmp_path / 'points.npy'}}}\n"
                      "train: {steps: 300, batch_size: 64, lr: 0.05, val_every: 100, checkpoint_every: 100}\n"
                      "eval: {n_samples: 500}\n")
    runs = tmp_path / "runs"
    code, out, err = run_cli("train", recipe, "--runs-dir", runs)
    assert code == 0, err
    code, out, err = run_cli("sample", runs / "pts", "--n", "400", "--scale", "1", "--out", tmp_path / "s.json")
    assert code == 0, err
    samples = np.array(json.loads((tmp_path / "s.json").read_text()))
    assert samples.shape == (400, 2) and np.abs(samples.mean(0) - [3.0, -1.0]).max() < 0.4  # it learned the data
    code, _, err = run_cli("sample", runs / "pts", "--steps", "3", "--out", tmp_path / "x.json")
    assert code == 2 and "--steps does not apply" in err  # another family's option, refused by name
    code, out, err = run_cli("eval", runs / "pts", "eval.n_samples=300")
    assert code == 0, err
    metrics = json.loads((runs / "pts" / "metrics.json").read_text())
    assert metrics["mean_distance"] < 0.5 and metrics["eval"]["n_samples"] == 300
    code, out, err = run_cli("report", runs / "pts")
    assert code == 0 and (runs / "pts" / "report.html").is_file()

    from genlab.serve.app import create_app
    from genlab.serve.keys import KeyStore

    store = KeyStore(tmp_path / "keys.json")
    token = store.add("t")[1]
    client = TestClient(create_app([runs / "pts"], store))
    auth = {"Authorization": f"Bearer {token}"}
    listed = client.get("/v1/models").json()["data"][0]
    assert listed["modality"] == "points" and listed["endpoint"] == "/v1/models/pts/points"
    r = client.post("/v1/models/pts/points", json={"n": 5, "scale": 2.0}, headers=auth)
    assert r.status_code == 200 and len(r.json()["points"]) == 5
    assert client.post("/v1/models/pts/points", json={"n": 5, "scale": 99}, headers=auth).status_code == 422
    r = client.post("/v1/models/pts/images", json={"n": 2}, headers=auth)
    assert r.status_code == 400 and "/v1/models/pts/points" in r.json()["detail"]
    assert dataclasses.is_dataclass(PointsSampling) and io  # the options were declared once, above


def test_python_m_genlab_works_like_genlab():
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "genlab", "sample", "--help"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0 and "Which options apply" in done.stdout and "--guidance" in done.stdout


def test_docs_config_md_is_the_generated_reference(run_cli):
    """docs/config.md lists every config key; it is generated from the dataclasses and must match them."""
    from genlab.reference import markdown

    doc = (SRC.parents[1] / "docs" / "config.md").read_text()
    assert doc == markdown(), "docs/config.md is stale: genlab config keys --markdown > docs/config.md"
    for key in ("`train.weight_decay_scope`", "`data.missing_values`", "`eval.iwae_k`", "`eval.vlb_steps`",
                "`model.prediction`", "`eval.target`"):
        assert key in doc
    code, out, err = run_cli("config", "keys", "vae")
    assert code == 0 and "eval.iwae_k" in out and "eval.vlb_steps" not in out and "model.latent_dim" in out
    code, _, err = run_cli("config", "keys", "flow")
    assert code == 2 and "unknown model family 'flow'" in err


def test_every_registered_modality_has_every_member_of_the_protocol():
    from genlab.core.protocols import Modality

    members = set(Modality.__annotations__) | {k for k, v in vars(Modality).items()
                                               if callable(v) and not k.startswith("_")}
    assert {"load", "evaluate", "add_routes", "endpoint", "sample_options"} <= members
    for name in registry.names("modality"):
        found = registry.modality(name)
        assert not [m for m in members if not hasattr(found, m)], name
    assert not [m for m in members if not hasattr(PointsModality, m)]  # the toy one too
