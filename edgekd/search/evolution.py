"""The search loop: the smallest network of every space, random samples, then aging evolution (Real et
al. 2019: tournament selection, crossover + mutation, the oldest member leaves) among the candidates
that fit the budgets. Every random choice comes from one seeded generator, so a seed and the same
inputs give the same candidates in the same order, and the same pick."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from edgekd.search.spaces import Space, arch_key


@dataclass(frozen=True)
class Candidate:
    index: int
    space: str
    origin: str  # smallest | random | evolved
    arch: dict
    params: int
    flops: float  # per sample
    latency_ms: float  # predicted for the target
    latency_interval: tuple[float, float]
    memory_mb: float  # predicted for the target
    fits: bool
    reason: str  # why it was dropped ("" when it fits)
    violations: tuple[str, ...]  # which limits it breaks: latency_ms, memory_mb, speedup
    score: float | None  # the search score; None when not scored (over budget)
    scores: dict[str, float] = field(default_factory=dict)  # every score computed for it
    memory_interval: tuple[float, float] | None = None  # the memory prediction's band
    # teacher / candidate latency predicted at the runtime's float precision, before any correction
    predicted_speedup: float | None = None


# (space, arch, origin, index) -> Candidate
Evaluate = Callable[[Space, dict, str, int], Candidate]


def _tournament(pool: list[Candidate], size: int, rng: np.random.Generator) -> Candidate:
    picks = rng.choice(len(pool), size=min(size, len(pool)), replace=False)
    return max((pool[int(i)] for i in sorted(picks)), key=lambda c: c.score)


def evolve(spaces: list[Space], evaluate: Evaluate, seed: int, max_candidates: int, population: int,
           tournament: int = 4, priced_per_scored: int = 10) -> list[Candidate]:
    """Score up to `max_candidates` distinct archs that fit; returns every priced arch in evaluation order.

    Pricing is cheap and scoring is not, so archs over budget are priced, recorded and not scored; at most
    `priced_per_scored` archs are priced per scored one. When no arch of the random phase fits, the search
    stops there: the smallest network of each space has been priced, so the caller can say what the
    fastest one would need.
    """
    rng = np.random.default_rng(seed)
    by_name = {s.name: s for s in spaces}
    seen: set[str] = set()
    out: list[Candidate] = []
    pool: list[Candidate] = []  # the living population of fitting candidates, oldest first
    scored = [0]

    def add(space: Space, arch: dict, origin: str) -> None:
        key = arch_key(arch)
        if key in seen:
            return
        seen.add(key)
        out.append(evaluate(space, arch, origin, len(out)))
        if out[-1].fits:
            scored[0] += 1
            pool.append(out[-1])
            if len(pool) > population:
                pool.pop(0)

    for space in spaces:
        add(space, space.minimal(), "smallest")
    if not pool:  # each space's cheapest network is over a limit: no other will fit
        return out
    tries = 0
    while scored[0] < min(population, max_candidates) and len(out) < priced_per_scored * population \
            and tries < 100 * population:
        tries += 1
        space = spaces[int(rng.integers(len(spaces)))]
        add(space, space.sample(rng), "random")
    if not pool:
        return out
    tries = 0
    while scored[0] < max_candidates and len(out) < priced_per_scored * max_candidates \
            and tries < 100 * max_candidates:
        tries += 1
        first = _tournament(pool, tournament, rng)
        space = by_name[first.space]
        mates = [c for c in pool if c.space == first.space and c.index != first.index]
        child = first.arch
        if mates:
            child = space.crossover(first.arch, _tournament(mates, tournament, rng).arch, rng)
        add(space, space.mutate(child, rng), "evolved")
    return out


def pareto_front(candidates: list[Candidate]) -> list[Candidate]:
    """Scored candidates that fit and that no other beats on both score (higher) and predicted latency
    (lower), fastest first."""
    scored = sorted((c for c in candidates if c.fits and c.score is not None),
                    key=lambda c: (c.latency_ms, -c.score, c.index))
    front, best = [], float("-inf")
    for c in scored:
        if c.score > best:
            front.append(c)
            best = c.score
    return front
