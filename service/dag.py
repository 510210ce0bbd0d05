"""Graph checks for a batch of jobs submitted together: cycle detection and a parents-first order.

A single submission may only depend on jobs that already exist, so no cycle can form through it; a
batch may point forward inside itself, so a batch is checked here before anything is written.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence


def find_cycle(edges: Mapping[str, Sequence[str]]) -> list[str] | None:
    """A cycle among `edges` (job -> the jobs it depends on, within the batch), as a closed path
    `[a, c, b, a]` meaning a depends on c, c on b, b on a; or None. Iterative: batches can be deep."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = finished
    for root in edges:
        if state.get(root):
            continue
        path: list[str] = [root]
        iterators = [iter(edges.get(root, ()))]
        state[root] = 1
        while iterators:
            dep = next(iterators[-1], None)
            if dep is None:
                state[path.pop()] = 2
                iterators.pop()
                continue
            if dep not in edges:
                continue  # an existing job outside the batch: it cannot point back into the batch
            if state.get(dep) == 1:
                return [*path[path.index(dep) :], dep]
            if not state.get(dep):
                state[dep] = 1
                path.append(dep)
                iterators.append(iter(edges.get(dep, ())))
    return None


def parents_first(order: Sequence[str], edges: Mapping[str, Sequence[str]]) -> list[str]:
    """`order` rearranged so every job comes after the batch jobs it depends on (stable otherwise).
    Assumes no cycle."""
    placed: set[str] = set()
    result: list[str] = []
    for root in order:
        stack = [(root, iter(edges.get(root, ())))]
        while stack:
            node, deps = stack[-1]
            dep = next(deps, None)
            if dep is None:
                stack.pop()
                if node not in placed:
                    placed.add(node)
                    result.append(node)
            elif dep in edges and dep not in placed:
                stack.append((dep, iter(edges.get(dep, ()))))
    return result
