"""Micro-batching of image requests: requests for the same model that arrive within `max_wait` seconds are
sampled in one forward pass (up to `max_batch` images). Each request keeps its own seeded generator through
`RowNoise`, so a request's images are the same batched or alone."""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field

import torch

from genlab.nn.noise import RowNoise


@dataclass
class ImageJob:
    n: int
    seed: int
    label: int | None
    options: dict
    future: Future = field(default_factory=Future)

    def key(self) -> tuple:
        """Jobs that can share a forward pass: the same sampling options, and labels given or drawn alike."""
        return tuple(sorted(self.options.items())), self.label is None


class ImageBatcher:
    def __init__(self, served, max_batch: int = 64, max_wait: float = 0.01, on_batch=None):
        self.served, self.max_batch, self.max_wait = served, max_batch, max_wait
        self.on_batch = on_batch  # called with the number of jobs in each batch run (metrics)
        self.jobs: queue.Queue[ImageJob] = queue.Queue()
        self.waiting: list[ImageJob] = []  # taken from the queue, not compatible with the batch being built
        threading.Thread(target=self._work, daemon=True, name="genlab-batcher").start()

    @property
    def depth(self) -> int:
        return self.jobs.qsize() + len(self.waiting)

    def submit(self, n: int, seed: int, label: int | None, options: dict) -> torch.Tensor:
        job = ImageJob(n, seed, label, options)
        self.jobs.put(job)
        return job.future.result()

    def _next(self, timeout: float | None) -> ImageJob | None:
        if self.waiting:
            return self.waiting.pop(0)
        try:
            return self.jobs.get(timeout=timeout)
        except queue.Empty:
            return None

    def _work(self) -> None:
        while True:
            first = self._next(None)
            batch, total = [first], first.n
            deadline = time.monotonic() + self.max_wait
            passed_over = []
            while total < self.max_batch and (left := deadline - time.monotonic()) > 0:
                job = self._next(left)
                if job is None:
                    break
                if job.key() == first.key() and total + job.n <= self.max_batch:
                    batch.append(job)
                    total += job.n
                else:
                    passed_over.append(job)
            self.waiting = passed_over + self.waiting
            self._run(batch, total)

    def _run(self, batch: list[ImageJob], total: int) -> None:
        first = batch[0]
        labels = None if first.label is None else torch.cat([torch.full((j.n,), j.label) for j in batch])
        noise = RowNoise([(j.n, torch.Generator().manual_seed(j.seed)) for j in batch])
        try:
            with self.served.lock, torch.inference_mode():
                images = self.served.run.model.sample(total, labels, noise, **first.options)
        except Exception as exc:  # each request gets the error, the worker lives on
            for job in batch:
                job.future.set_exception(exc)
            return
        if self.on_batch is not None:
            self.on_batch(len(batch))
        start = 0
        for job in batch:
            job.future.set_result(images[start: start + job.n])
            start += job.n
