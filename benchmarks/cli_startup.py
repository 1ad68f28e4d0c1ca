"""How long `ifguide --help` takes, against the floor of `python -c "import typer"` (measured in one run).

For each command: the median wall time of N runs and the median CPU time (user + system of the child
process). The CPU time is the steadier figure on a busy machine; the ratios to the typer import are the
numbers to compare (the goal: `ifguide --help` under ~2.5× `import typer`).

    python benchmarks/cli_startup.py [RUNS]
"""

from __future__ import annotations

import resource
import statistics
import subprocess
import sys
import time

COMMANDS = {
    "python -c 'import typer'": ["-c", "import typer"],
    "ifguide --help": ["-m", "ifguide_cli", "--help"],
    "ifguide eval --help": ["-m", "ifguide_cli", "eval", "--help"],
    "ifguide workspace ls": ["-m", "ifguide_cli", "workspace", "ls"],
}


def measure(args: list[str], runs: int) -> tuple[float, float]:
    """(median wall seconds, median CPU seconds) of `python ARGS`."""
    walls, cpus = [], []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        subprocess.run([sys.executable, *args], check=True, capture_output=True)
        walls.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return statistics.median(walls), statistics.median(cpus)


def main(runs: int = 7) -> None:
    results = {label: measure(args, runs) for label, args in COMMANDS.items()}
    floor_wall, floor_cpu = results["python -c 'import typer'"]
    print(f"{'':28} {'wall':>9} {'ratio':>6}   {'cpu':>9} {'ratio':>6}   (median of {runs})")
    for label, (wall, cpu) in results.items():
        print(f"{label:28} {wall * 1000:7.1f}ms {wall / floor_wall:5.2f}x   {cpu * 1000:7.1f}ms {cpu / floor_cpu:5.2f}x")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 7)
