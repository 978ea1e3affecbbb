import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from cluster import Cluster  # noqa: E402


@pytest.fixture
def make_cluster(tmp_path):
    made = []

    def make(**kw):
        c = Cluster(tmp_path / ("c%d" % len(made)), **kw)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


@pytest.fixture
def cluster3(make_cluster):
    return make_cluster(n=3).start()
