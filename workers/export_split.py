"""The split by user, decided in bounded memory however many users there are.

The rule (unchanged from the in-memory version it replaces): valid gets round(users x (1 -
split)) users, at least one and never all of them when there are two or more, spread over strata
(each user's dominant intent) by largest remainder and taken within a stratum in seeded-hash
order. If train would then hold fewer than MIN_EXAMPLES examples, valid users move back to train,
fewest examples first, until it does (OpenAI refuses smaller files).

Taking "the k smallest hashes of a stratum" needs no list of the stratum's users: a first pass
counts each stratum's users per hash bin (the hash's top bits; users spread evenly over them, the
hash being seeded blake2b), which fixes the bin where the k-th smallest falls. A second pass then
decides every user below that bin (valid) or above it (train) on sight, and keeps only the users
of that one boundary bin (~users / BINS of them) to sort exactly. Users moved back are the fewest
examples first, at most MIN_EXAMPLES of them (each has at least one example): a bounded heap.
So the planner holds strata x BINS counters and two small lists, never one entry per user.
"""

from __future__ import annotations

import hashlib
import heapq

MIN_EXAMPLES = 10      # OpenAI refuses a training file with fewer
BIN_BITS = 12
BINS = 1 << BIN_BITS


def user_hash(seed: int, pseudonym: str) -> int:
    """The seeded hash that orders users for the split (stable across runs and machines)."""
    return int.from_bytes(hashlib.blake2b(f"{seed}:{pseudonym}".encode(), digest_size=8).digest(), "big")


class SplitPlanner:
    """Feed every user twice, in the same order: :meth:`count` (pass 1), then :meth:`plan`, then
    :meth:`decide` (pass 2, each user's side as far as it is known), then :meth:`finish` (the
    users whose side the second pass could not settle, and the warnings).

    A user is (index, stratum, seeded hash, examples); the index is the user's position in the
    feed and breaks ties of equal hashes, as a stable sort would.
    """

    def __init__(self, split: float, seed: int) -> None:
        self.frac = 1.0 - split
        self.seed = seed
        self.n = 0
        self.examples = 0
        self.bins: dict[int, list[int]] = {}      # stratum -> users per hash bin
        self.cut: dict[int, tuple[int, int]] = {}    # stratum -> (boundary bin, users to take from it)
        self.edge: dict[int, list[tuple[int, int, int]]] = {}   # stratum -> boundary users (hash, index, ex)
        # the MIN_EXAMPLES valid users that would move back first (fewest examples, then hash,
        # then index), as a heap of negated keys: its top is the one to drop for a better one
        self.back: list[tuple[int, int, int]] = []
        self.valid_users = 0
        self.valid_examples = 0
        self.warnings: list[str] = []

    # -- pass 1
    def count(self, stratum: int, h: int, examples: int) -> None:
        b = self.bins.get(stratum)
        if b is None:
            b = self.bins[stratum] = [0] * BINS
        b[h >> (64 - BIN_BITS)] += 1
        self.n += 1
        self.examples += examples

    def plan(self) -> None:
        """Quotas per stratum, as the in-memory rule computes them, and where each one ends."""
        n, frac = self.n, self.frac
        if n == 0 or frac <= 0:
            return
        if n == 1:
            self.warnings.append("the valid split is empty: only one user contributed, and a user is never "
                                 "on both sides")
            return
        target = min(max(round(n * frac), 1), n - 1)
        size = {s: sum(b) for s, b in self.bins.items()}
        quota = {s: m * frac for s, m in size.items()}
        take = {s: int(q) for s, q in quota.items()}
        rest = target - sum(take.values())
        order = sorted(size, key=lambda s: (-(quota[s] - take[s]), user_hash(self.seed, f"stratum:{s}")))
        while rest > 0:
            moved = False
            for s in order:
                if rest > 0 and take[s] < size[s]:
                    take[s] += 1
                    rest -= 1
                    moved = True
            if not moved:
                break
        for s, k in take.items():
            if k == 0:
                continue
            below = 0
            for b, c in enumerate(self.bins[s]):
                if below + c >= k:
                    self.cut[s] = (b, k - below)
                    self.edge[s] = []
                    break
                below += c

    # -- pass 2
    def decide(self, index: int, stratum: int, h: int, examples: int) -> int:
        """1: valid; 0: train, or not known yet (then :meth:`finish` may say valid)."""
        cut = self.cut.get(stratum)
        if cut is None:
            return 0
        b = h >> (64 - BIN_BITS)
        if b > cut[0]:
            return 0
        if b == cut[0]:
            self.edge[stratum].append((h, index, examples))
            return 0
        self._valid(index, h, examples)
        return 1

    def _valid(self, index: int, h: int, examples: int) -> None:
        self.valid_users += 1
        self.valid_examples += examples
        # keep the MIN_EXAMPLES valid users that would move back first: fewest examples, then hash
        item = (-examples, -h, -index)
        if len(self.back) < MIN_EXAMPLES:
            heapq.heappush(self.back, item)
        elif item > self.back[0]:
            heapq.heapreplace(self.back, item)

    def finish(self) -> list[tuple[int, int]]:
        """(index, side) for the users whose side differs from what :meth:`decide` returned."""
        flips: list[tuple[int, int]] = []
        for s, (_, k) in self.cut.items():
            for h, index, examples in sorted(self.edge[s])[:k]:
                self._valid(index, h, examples)
                flips.append((index, 1))
        self.edge.clear()
        train_n = self.examples - self.valid_examples
        if train_n < MIN_EXAMPLES and self.examples >= MIN_EXAMPLES and self.valid_users:
            moved = 0
            for neg_ex, _, neg_index in sorted(self.back, reverse=True):
                if train_n >= MIN_EXAMPLES:
                    break
                flips.append((-neg_index, 0))
                train_n -= neg_ex
                self.valid_users -= 1
                self.valid_examples += neg_ex
                moved += 1
            self.warnings.append(f"moved {moved} user(s) from valid to train so that train holds at least "
                                 f"{MIN_EXAMPLES} examples")
        if not self.valid_users and self.n > 1 and self.frac > 0:
            self.warnings.append(f"the valid split is empty: too few users ({self.n}) to hold out one without "
                                 f"leaving train under {MIN_EXAMPLES} examples; a user is never on both sides")
        return flips


def assign_valid(users: list[str], strata: list[int], examples: list[int], split: float,
                 seed: int) -> tuple[bytearray, list[str]]:
    """The planner over lists: which users go to valid (1) or train (0), and warnings."""
    planner = SplitPlanner(split, seed)
    hashes = [user_hash(seed, u) for u in users]
    for s, h, e in zip(strata, hashes, examples, strict=True):
        planner.count(s, h, e)
    planner.plan()
    valid = bytearray(planner.decide(i, s, h, e) for i, (s, h, e) in enumerate(zip(strata, hashes, examples, strict=True)))
    for i, side in planner.finish():
        valid[i] = side
    return valid, planner.warnings

