"""The paper's reproduction: the reference's fixed subsets, recipe, run plan, leakage check and metrics.

- `indexfile`: the packaged index bundle (the authors' .npy index files, losslessly compressed).
- `subsets`: the named subsets (hub id, rows, loader that selects the reference's rows in its order).
- `recipe`: every setting of the reference run as data, each with the script line it comes from.
- `plan`: per-stage token counts, GPU-hours on an H100 from measured anchors, disk needs.
- `leakage`: evaluation prompts that are also influence queries.
- `metrics`: LAMBADA last-token accuracy, the reference's fluency metric.
"""
