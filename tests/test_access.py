"""Public mode: who may change what, checked in the callbacks themselves (hiding is not
protection), a visitor's scratch library with quotas and expiry; the warnings when serving."""
from __future__ import annotations

import shutil

import pytest

from app.access import Access, AccessError, Quota
from app.errors import AppError
from app.server import exposure_warning, is_loopback
from app.services import Services
from app.views import api, curate, library, selection

TOKEN = "s3cret-token"


class Req:
    """What the callbacks read of a gr.Request."""

    def __init__(self, session_hash: str):
        self.session_hash = session_hash


@pytest.fixture()
def public(tmp_path, demo_folder):
    folder = tmp_path / "lib"
    shutil.copytree(demo_folder, folder)
    svc = Services(tmp_path / "data", access=Access(public=True, token=TOKEN, quota=Quota(files=5)))
    svc.libs.index("demo", folder=str(folder), models=["dsp"])
    return svc, folder


def test_mode_from_the_environment(monkeypatch):
    for k in ("AUDIO_EXPLORER_MODE", "SPACE_ID", "AUDIO_EXPLORER_ADMIN_TOKEN"):
        monkeypatch.delenv(k, raising=False)
    assert Access.from_env().mode == "local"
    monkeypatch.setenv("SPACE_ID", "someone/explorer")
    assert Access.from_env().mode == "public"  # the default on a Space
    monkeypatch.setenv("AUDIO_EXPLORER_MODE", "local")
    assert Access.from_env().mode == "local"
    monkeypatch.setenv("AUDIO_EXPLORER_MODE", "public")
    monkeypatch.setenv("AUDIO_EXPLORER_ADMIN_TOKEN", TOKEN)
    a = Access.from_env()
    assert a.public and a.token_ok(TOKEN) and not a.token_ok("nope") and not a.token_ok("")
    monkeypatch.setenv("AUDIO_EXPLORER_MODE", "open")
    with pytest.raises(AppError, match="must be 'public' or 'local'"):
        Access.from_env()


def test_visitors_cannot_change_shared_libraries(public):
    svc, folder = public
    v = Req("visitor-session")
    ids = svc.vectors.read("demo", "dsp")[0][:3]
    out = library.run_index(svc, "demo", str(folder), None, ["dsp"], request=v)
    assert out.startswith("**Error:** refused: indexing a server folder needs the admin token")
    assert library.delete(svc, "demo", True, request=v) == (
        "**Error:** refused: deleting library 'demo' needs the admin token in this public deployment")
    assert svc.libs.names() == ["demo"]
    status, _ = selection.tag(svc, "demo", "dsp", ids, "x", request=v)
    assert status.startswith("**Error:** refused: editing the tags of library 'demo' needs the admin token")
    assert selection.relabel(svc, "demo", "dsp", ids, "y", request=v)[0].startswith("**Error:** refused")
    assert selection.undo(svc, "demo", "dsp", ids, request=v)[0].startswith("**Error:** refused")
    assert curate.keep_one(svc, "demo", "dsp", 0.5, True, request=v)[1].startswith("**Error:** refused")
    with pytest.raises(AccessError, match="refused: tagging clips of library 'demo'"):
        api.tag_clips(svc, "demo", ids, ["x"], request=v)
    assert svc.curation.tag_counts("demo", "dsp") == {}
    # reading, searching, maps, clusters, exports stay open
    assert api.search_by_id(svc, "demo", "dsp", ids[0], 2)[0]["id"] == ids[0]
    assert curate.keep_one(svc, "demo", "dsp", 0.5, False, request=v)[0].endswith(".csv")
    assert selection.export(svc, "demo", "dsp", ids)[0].endswith(".zip")
    banner, folder_box, delete_group, admin_group = library.rights(svc, request=v)
    assert banner.startswith("**Public mode:**") and folder_box["visible"] is False
    assert delete_group["visible"] is False and admin_group["visible"] is True
    assert selection.edit_rights(svc, "demo", request=v)["visible"] is False


def test_the_admin_token_unlocks_a_session_or_one_api_call(public):
    svc, _ = public
    ids = svc.vectors.read("demo", "dsp")[0][:2]
    assert api.tag_clips(svc, "demo", ids, ["by-api"], admin_token=TOKEN, request=Req("client"))["changed"] == 2
    admin = Req("admin-session")
    msg, _, _ = library.unlock(svc, "wrong", request=admin)
    assert msg == "**Error:** wrong admin token." and not svc.access.is_admin(admin)
    msg, folder_box, _ = library.unlock(svc, TOKEN, request=admin)
    assert msg.startswith("Unlocked") and folder_box["visible"] is True
    assert selection.tag(svc, "demo", "dsp", ids, "by-admin", request=admin)[0].startswith("Tag by-admin added")
    assert selection.edit_rights(svc, "demo", request=admin)["visible"] is True
    assert not svc.access.is_admin(Req("someone-else"))


def test_a_visitors_uploads_go_to_their_own_library_within_quotas(public, tmp_path):
    svc, folder = public
    v = Req("uploader")
    own = svc.access.scratch_library(v)
    files = [str(p) for p in sorted((folder / "kick").glob("*.wav"))]
    out = library.run_index(svc, "demo", "", files, ["dsp"], request=v)
    assert "4 added" in out and own in out
    assert set(svc.libs.names()) == {"demo", own}
    ids = svc.vectors.read(own, "dsp")[0]
    assert selection.tag(svc, own, "dsp", ids, "mine", request=v)[0].startswith("Tag mine added")
    assert selection.edit_rights(svc, own, request=v)["visible"] is True
    more = [str(p) for p in sorted((folder / "pad").glob("*.wav"))]
    assert library.run_index(svc, "demo", "", more, ["dsp"], request=v).startswith(
        "**Error:** quota: a visitor's library holds at most 5 files (8 with these)")
    assert library.delete(svc, own, True, request=v).startswith(f"Deleted library '{own}'")
    library.run_index(svc, "x", "", files[:1], ["dsp"], request=v)
    assert svc.libs.expire_scratch(now=10**12) == [own] and svc.libs.names() == ["demo"]


def test_local_mode_allows_everything(tmp_path, demo_folder):
    svc = Services(tmp_path / "data", access=Access(public=False))
    assert "added" in library.run_index(svc, "k", str(demo_folder / "kick"), None, ["dsp"], request=Req("any"))
    assert library.rights(svc, request=Req("any"))[0] == ""


def test_warnings_when_serving_beyond_this_machine():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.2")
    assert exposure_warning("127.0.0.1", Access(public=False)) is None
    assert "anyone on the network can index, delete and retag" in exposure_warning("0.0.0.0", Access(public=False))
    assert exposure_warning("0.0.0.0", Access(public=True, token=TOKEN)) is None
    assert "read-only for everyone" in exposure_warning("0.0.0.0", Access(public=True))
