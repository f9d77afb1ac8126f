"""Batches of stored pixels for the trainer, gathered ahead of the step by worker threads.

A set that fits on the GPU (distill.loader_device_max_mb) is copied there whole and gathered there (no loader at
all). A larger one stays where it is, typically a memory-mapped uint8 cache of decoded JPEGs (edgekd/data/loaders.py),
and worker threads gather the next batches' rows (numpy releases the GIL while it copies), pin them and start their
copy to the device while the current step runs. Pixels stay uint8 until they are on the device: scaling,
normalization and augmentation happen there, in the trainer.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import torch


class Batches:
    """x[idx], y[idx] on the device; `prefetch` queues upcoming index batches for the workers."""

    def __init__(self, x: np.ndarray, y: np.ndarray, device: torch.device, workers: int, device_max_mb: float):
        self.device, self.cuda = device, device.type == "cuda"
        self.y = torch.from_numpy(np.ascontiguousarray(y))
        self.on_device = self.cuda and x.nbytes < device_max_mb * 2 ** 20
        if self.on_device or not self.cuda:  # CPU training reads the array in place: nothing to overlap with
            self.x = torch.from_numpy(np.array(x, copy=not x.flags.writeable or not x.flags.c_contiguous))
            self.x, self.y = self.x.to(device), self.y.to(device)
            self.host = None
        else:
            self.x, self.host = None, x  # a (memory-mapped) array, gathered by the workers
            self.y = self.y.pin_memory()
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="edgekd-loader") if self.host is not None \
            and workers > 0 else None
        self.ahead: dict[tuple[int, ...], Future] = {}

    def _gather(self, idx: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(self.host[np.sort(idx)][np.argsort(np.argsort(idx))]).pin_memory()

    def prefetch(self, batches: list[torch.Tensor]) -> None:
        """Start gathering these index batches (in order) on the workers."""
        if self.pool is None:
            return
        for idx in batches:
            key = tuple(idx.tolist())
            if key not in self.ahead:
                self.ahead[key] = self.pool.submit(self._gather, idx.numpy())

    def get(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(uint8 or float pixels, labels) of rows idx, on the device."""
        if self.host is None:
            i = idx.to(self.x.device)
            return self.x[i], self.y[i]
        key = tuple(idx.tolist())
        future = self.ahead.pop(key, None)
        xb = future.result() if future is not None else self._gather(idx.numpy())
        return xb.to(self.device, non_blocking=True), self.y[idx].to(self.device, non_blocking=True)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
        self.ahead.clear()
