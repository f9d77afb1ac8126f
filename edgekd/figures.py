"""An artifact's latency and memory as the report's budget fields, whoever produced them: timed here
(edgekd/interleave.py), probed in fresh processes (runtimes/memprobe.py), measured on a --remote device
(edgekd/remote.py) or predicted by the cost model (edgekd/measurable.py). Light on purpose: the memory probe's
child process imports it."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Figure:
    value: float
    source: str  # measured | predicted
    interval: tuple[float, float] | None = None  # 95% (timing), min..max (memory probes), or the model's band
    detail: str | None = None

    def as_dict(self) -> dict:
        """A figure with a record of its own in the report (a speed-up: value, interval, source, detail)."""
        return {"value": self.value} | ({"interval": list(self.interval)} if self.interval else {}) | {
            "source": self.source} | ({"detail": self.detail} if self.detail is not None else {})

    @classmethod
    def from_dict(cls, d: dict) -> Figure:
        interval = d.get("interval")
        return cls(d["value"], d["source"], tuple(interval) if interval else None, d.get("detail"))

    @property
    def bounds(self) -> tuple[float, float]:
        """The interval, or the value at both ends where there is none (a prediction compared as a point)."""
        return self.interval or (self.value, self.value)


@dataclass(frozen=True)
class Figures:
    """Latency and memory of one artifact, serialised as the report's budget fields (`latency_ms`,
    `latency_interval`, `latency_source`, `latency_detail`, and the same for `memory_mb`); `extra` holds the
    fields that explain them (timing statistics, memory probes, the device's state)."""

    latency: Figure | None = None
    memory: Figure | None = None
    extra: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        out: dict = {}
        for key, unit, f in (("latency", "ms", self.latency), ("memory", "mb", self.memory)):
            if f is None:
                continue
            out[f"{key}_{unit}"] = f.value
            if f.interval is not None:
                out[f"{key}_interval"] = list(f.interval)
            out[f"{key}_source"] = f.source
            if f.detail is not None:
                out[f"{key}_detail"] = f.detail
        return out | self.extra

    def __or__(self, other: Figures) -> Figures:
        """Both, `other`'s figures where both have one."""
        return Figures(other.latency or self.latency, other.memory or self.memory, self.extra | other.extra)

    @classmethod
    def from_dict(cls, d: dict) -> Figures:
        """The figures in a report record (the inverse of as_dict for the two figures)."""
        def one(key: str, unit: str) -> Figure | None:
            if d.get(f"{key}_{unit}") is None:
                return None
            interval = d.get(f"{key}_interval")
            return Figure(d[f"{key}_{unit}"], d.get(f"{key}_source", "predicted"),
                          tuple(interval) if interval else None, d.get(f"{key}_detail"))

        return cls(one("latency", "ms"), one("memory", "mb"))
