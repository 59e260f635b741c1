"""Every registered model that can run here passes the one embedder contract."""
import pytest

import embedders
from tests.contract import assert_contract

# crepe-full runs at ~0.2x real time on 2 CPU cores; tests/test_crepe.py runs this same
# contract on it (and on crepe-tiny), so it is not run twice.
SEPARATE = {"crepe-full"}
READY = [a.name for a in embedders.available() if a.ready and a.name not in SEPARATE]


def test_registry_lists_every_family_without_loading():
    names = [a.name for a in embedders.available()]
    assert "dsp" in names
    assert len(names) == len(set(names))
    for a in embedders.available():
        assert a.status in ("ready", "downloadable", "unavailable")
        if a.status != "ready":
            assert a.reason and "\n" not in a.reason


def test_unknown_model_is_one_line_error():
    with pytest.raises(embedders.EmbedderError) as exc:
        embedders.load("no-such-model")
    assert "unknown model 'no-such-model'" in str(exc.value) and "\n" not in str(exc.value)


@pytest.mark.parametrize("name", READY)
def test_contract(name, tmp_path):
    assert_contract(embedders.load(name))
