"""How the systems of one arm trained at several seeds are told apart by name, shared by the pipeline (which names
them `NAME-seedN` and refuses an arm name that already ends like that) and the report (which strips the suffix to
group an arm's seeds into one arm)."""

import re

SEED_SUFFIX = re.compile(r"[-_.]?seed[-_]?\d+$|[-_.]s\d+$")  # `-seed3`, `_seed_3`, `.s3`: one arm over seeds
