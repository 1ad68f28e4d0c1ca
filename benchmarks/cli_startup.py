"""How long `ifguide --help` takes, against the floor of `python -c "import typer"`.

Prints the median wall time of N runs of each and their ratio (measured in one run).
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time


def median_seconds(cmd: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(runs: int = 7) -> None:
    floor = median_seconds([sys.executable, "-c", "import typer"], runs)
    help_s = median_seconds([sys.executable, "-m", "ifguide_cli", "--help"], runs)
    sub_s = median_seconds([sys.executable, "-m", "ifguide_cli", "eval", "--help"], runs)
    print(f"python -c 'import typer'   {floor * 1000:7.1f} ms")
    print(f"ifguide --help             {help_s * 1000:7.1f} ms   ({help_s / floor:.2f}x the typer import)")
    print(f"ifguide eval --help        {sub_s * 1000:7.1f} ms   ({sub_s / floor:.2f}x the typer import)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 7)
