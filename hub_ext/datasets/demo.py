"""The local-mode demo data registry: iris and a synthetic churn table, two versions each.

Created once under the state directory on first start, so ``%dsdata pull iris@v1`` works
out of the box. It is a real DVC data registry (git + DVC + a local DVC remote).
"""

from __future__ import annotations

import csv
import io
import random
import shutil
from pathlib import Path

from hub_ext.datasets.publish import init_registry, publish_version

IRIS = Path(__file__).parent / "demo_data" / "iris.csv"


def _csv(header: list[str], rows: list[list[object]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue().encode()


def iris_split(seed: int = 7) -> dict[str, bytes]:
    """iris v2: the same 150 flowers, split 120/30 into train and test (stratified-ish)."""
    lines = IRIS.read_text().splitlines()
    header, rows = lines[0], lines[1:]
    rng = random.Random(seed)
    shuffled = rows[:]
    rng.shuffle(shuffled)
    test, train = shuffled[:30], shuffled[30:]
    return {
        "iris.csv": IRIS.read_bytes(),
        "train.csv": ("\n".join([header, *train]) + "\n").encode(),
        "test.csv": ("\n".join([header, *test]) + "\n").encode(),
    }


def churn(rows: int, seed: int, with_region: bool) -> dict[str, bytes]:
    """A synthetic customer-churn table (deterministic for a seed)."""
    rng = random.Random(seed)
    header = ["customer_id", "tenure_months", "monthly_charges", "support_calls", "contract"]
    if with_region:
        header.append("region")
    header.append("churned")
    table: list[list[object]] = []
    for i in range(rows):
        tenure = rng.randint(1, 72)
        charges = round(rng.uniform(20, 120), 2)
        calls = rng.randint(0, 9)
        contract = rng.choice(["monthly", "yearly", "two-year"])
        risk = 0.5 * (calls / 9) + 0.3 * (charges / 120) - 0.4 * (tenure / 72)
        risk += 0.2 if contract == "monthly" else 0.0
        row: list[object] = [f"C{i:06d}", tenure, charges, calls, contract]
        if with_region:
            row.append(rng.choice(["north", "south", "east", "west"]))
        row.append(int(risk + rng.gauss(0, 0.15) > 0.25))
        table.append(row)
    return {"customers.csv": _csv(header, table)}


def ensure_demo_registry(root: Path) -> Path:
    """Create the demo registry at ``root`` (with its DVC remote beside it) if missing."""
    marker = root / ".dsplatform-demo-complete"
    if marker.exists():
        return root
    shutil.rmtree(root, ignore_errors=True)  # a half-built registry from an interrupted start
    remote = root.parent / f"{root.name}-remote"
    shutil.rmtree(remote, ignore_errors=True)
    init_registry(root, remote)
    publish_version(
        root, "iris", {"iris.csv": IRIS.read_bytes()}, "v1.0.0",
        description="Fisher's iris flowers: 150 samples, 4 measurements, 3 species",
        labels=["tabular", "classification", "demo"],
    )  # fmt: skip
    publish_version(
        root, "iris", iris_split(), "v2.0.0",
        description="Iris flowers with a fixed 120/30 train/test split",
        labels=["tabular", "classification", "demo"],
    )  # fmt: skip
    publish_version(
        root, "churn", churn(1000, seed=1, with_region=False), "v1.0.0",
        description="Synthetic customer churn, 1,000 customers",
        labels=["tabular", "synthetic", "demo"],
    )  # fmt: skip
    publish_version(
        root, "churn", churn(2000, seed=2, with_region=True), "v2.0.0",
        description="Synthetic customer churn, 2,000 customers with region",
        labels=["tabular", "synthetic", "demo"],
    )  # fmt: skip
    marker.write_text("ok\n")
    return root
