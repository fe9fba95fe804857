"""`petseg predict` on a folder through a cluster's nginx (two instances): the photos spread over
both, and the run gives what it gives against one TorchServe. nginx's access log names the
instance that answered each request."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest

from petseg.fleet import cluster as fleet
from tests.support.cli import petseg
from tests.support.photos import coco_images, mask_path, photo_tree, report
from tests.support.stack import running_cluster


@pytest.fixture(scope="module")
def cluster(model_store, tmp_path_factory):
    with running_cluster(model_store, tmp_path_factory.mktemp("bulk-cluster")) as running:
        yield running


def answered_by(cluster: fleet.Cluster, since: float) -> Counter:
    """The instance (web proxy address) that answered each upload nginx got since then."""
    counts = Counter()
    for line in (Path(cluster.root) / "nginx" / "access.log").read_text().splitlines():
        ended, status, duration, upstreams, _ = line.split("|")
        if float(ended) - float(duration) >= since and status == "200":
            counts[upstreams.split(",")[-1].strip()] += 1
    return counts


def test_a_folder_through_the_balancer_is_spread_over_both_instances(cluster, tmp_path):
    photos, out = tmp_path / "photos", tmp_path / "labels"
    names = photo_tree(photos, 24)
    since = time.time()
    done = petseg(
        "predict",
        str(photos),
        "--url",
        cluster.url,
        "--out-dir",
        str(out),
        "--overlay",
        "--coco",
        str(out / "coco.json"),
        "--concurrency",
        "4",
    )
    assert done.returncode == 0, done.stderr
    assert report(out)["segmented"] == 24 and report(out)["target"] == cluster.url
    assert sorted(coco_images(out)) == names
    assert all(mask_path(out, name).is_file() for name in names)
    served = answered_by(cluster, since)
    instances = {f"127.0.0.1:{member.web_port}" for member in cluster.members}
    assert set(served) == instances and sum(served.values()) == 24 + 1  # and the model card
