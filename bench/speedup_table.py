"""Print the speed-up table of a pytest-benchmark JSON file (docs/fast-path.md#speed).

Usage: ``python bench/speedup_table.py RESULTS.json``, where the JSON comes from
``pytest bench --benchmark-only --benchmark-json=RESULTS.json``. Within each benchmark group the baseline is
the implementation named ``reference`` (or ``python`` for the sampler, ``h5-loop`` for the data pipeline,
``window-loop`` and ``raw-splice`` for label refinement);
every ratio is baseline median / implementation median, both measured in the same run. Where a group has a
``compile`` row (``torch.compile(reference)``), a second ratio compares each fast row (``fast``,
``fast+compile``) with it: the fastest thing a user could run without this package.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

BASELINES = ("reference", "python", "h5-loop", "window-loop", "raw-splice")
COMPILED_REFERENCE = "compile"


def speedup_rows(results: dict) -> list[tuple[str, str, str, float, float | None, float | None]]:
    """``(group, impl, baseline, median seconds, speed-up or None, speed-up over compile(reference) or None)``
    for every benchmark, sorted by group."""
    medians: dict[str, dict[str, float]] = defaultdict(dict)
    for bench in results["benchmarks"]:
        impl = bench.get("extra_info", {}).get("impl", bench["name"])
        medians[bench["group"] or bench["name"]][impl] = bench["stats"]["median"]
    rows = []
    for group in sorted(medians):
        impls = medians[group]
        baseline = next((name for name in BASELINES if name in impls), None)
        for impl, median in sorted(impls.items(), key=lambda item: -item[1]):
            ratio = impls[baseline] / median if baseline is not None else None
            compiled = impls.get(COMPILED_REFERENCE) if impl.startswith("fast") else None
            rows.append((group, impl, baseline or "-", median, ratio, compiled / median if compiled else None))
    return rows


def format_seconds(seconds: float) -> str:
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, help="pytest-benchmark JSON file")
    args = parser.parse_args(argv)
    try:
        results = json.loads(args.results.read_text())
        rows = speedup_rows(results)
    except (OSError, ValueError, KeyError) as err:
        print(f"error: cannot read benchmark results from {args.results}: {err}", file=sys.stderr)
        return 1
    machine = results.get("machine_info", {})
    device = machine.get("gpu") or machine.get("cpu", {}).get("brand_raw", machine.get("processor", "?"))
    print(f"# {args.results.name}: {device}, "
          f"{results.get('datetime', '')}")
    print(f"{'group':<28} {'impl':<12} {'median':>10}  speed-up vs baseline")
    for group, impl, baseline, median, ratio, over_compiled in rows:
        speedup = "" if ratio is None or impl == baseline else f"{ratio:6.2f}x vs {baseline}"
        if over_compiled is not None:
            speedup += f", {over_compiled:.2f}x vs {COMPILED_REFERENCE}"
        print(f"{group:<28} {impl:<12} {format_seconds(median):>10}  {speedup}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
