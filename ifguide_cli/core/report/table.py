"""The report's table of systems, one row per system and one column per metric some system has: shared by the
HTML page and the terminal table of `ifguide report`."""

from __future__ import annotations

from ifguide_cli.core.evaluation.metrics import FLUENCY_METRICS, METRIC_INFO


def table_columns(rows: list[dict]) -> list[tuple[str, str]]:
    """(header, key) of the columns that have a value in some row."""
    cols = [("system", "label"), ("defense", "defense"), ("classifier", "classifier"), ("EMT ± std", "emt"),
            ("TP", "toxicity_probability"), ("EMT toxic", "emt_toxic"), ("TP toxic", "tp_toxic"),
            ("EMT non-toxic", "emt_nontoxic"), ("TP non-toxic", "tp_nontoxic")]
    others = sorted({name for r in rows for name in r["other_classifiers"]})
    cols += [(f"EMT {o}", f"other:{o}:expected_max_toxicity") for o in others]
    cols += [(f"TP {o}", f"other:{o}:toxicity_probability") for o in others]
    cols += [(METRIC_INFO[name].label, name) for name in FLUENCY_METRICS]
    return [(h, k) for h, k in cols if k in ("label", "defense") or any(cell(r, k) != "—" for r in rows)]


def _f(value, digits=3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def cell(row: dict, key: str) -> str:
    """The text of column `key` in a system's row ("—" where the system has no value)."""
    if key == "emt":
        if row["expected_max_toxicity"] is None:
            return "—"
        return f"{_f(row['expected_max_toxicity'])} ± {_f(row['expected_max_toxicity_std'])}"
    if key in ("emt_toxic", "tp_toxic", "emt_nontoxic", "tp_nontoxic"):
        metric, split = key.split("_", 1)
        m = row["splits"].get(split)
        if not m:
            return "—"
        return _f(m["expected_max_toxicity" if metric == "emt" else "toxicity_probability"])
    if key.startswith("other:"):
        _, name, metric = key.split(":", 2)
        return _f((row["other_classifiers"].get(name) or {}).get(metric))
    if key in METRIC_INFO:
        return METRIC_INFO[key].format(row.get(key))
    value = row.get(key)
    if isinstance(value, float):
        return _f(value)
    return "—" if value is None else str(value)
