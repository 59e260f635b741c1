"""Every registered model that can run here passes the one embedder contract."""
import pytest

import embedders
from tests.contract import assert_contract

READY = [a.name for a in embedders.available() if a.ready]


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
