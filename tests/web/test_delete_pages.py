"""Permanent delete and "empty Trash/Junk": a confirmation that says what it means, then the
messages and their bytes are gone from the server (SQLite and PostgreSQL)."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from tayori.core.errors import NotFoundError
from tayori.storage.records import SpecialUse
from tests.web.conftest import WebEnv, csrf_from, login

RAW = b"From: a@remote.test\r\nTo: taro@example.test\r\nSubject: old\r\n\r\nbody\r\n"


def _blob_gone(env: WebEnv, ref: str) -> bool:
    try:
        env.stores.blobs.open(ref).close()
    except NotFoundError:
        return True
    return False


def test_delete_permanently_asks_first_then_removes(client: TestClient, web_env: WebEnv) -> None:
    keep = web_env.put(RAW)
    doomed = web_env.put(RAW.replace(b"old", b"doomed"))
    login(client, web_env)
    listing = client.get(f"/folder/{doomed.mailbox_id}")
    token = csrf_from(listing.text)
    asked = client.post(
        "/messages/act",
        data={"csrf_token": token, "action": "delete", "ids": [str(doomed.id)], "back": "/"},
        headers={"accept-language": "en"},
    )
    assert asked.status_code == 200
    assert "cannot be restored" in asked.text and "will not be able to download" in asked.text
    # Asking deleted nothing.
    assert web_env.stores.metadata.get_message(web_env.account.id, doomed.id) is not None
    done = client.post(
        "/messages/act",
        data={
            "csrf_token": csrf_from(asked.text),
            "action": "delete-confirmed",
            "ids": [str(doomed.id)],
            "back": f"/folder/{doomed.mailbox_id}",
        },
        follow_redirects=False,
    )
    assert done.status_code == 303
    assert "done=delete-confirmed:1" in done.headers["location"]
    assert web_env.stores.metadata.get_message(web_env.account.id, doomed.id) is None
    assert web_env.stores.metadata.get_message(web_env.account.id, keep.id) is not None
    assert _blob_gone(web_env, doomed.blob_ref)
    assert web_env.refresh().used_bytes == keep.size


def test_empty_junk_confirms_and_leaves_other_folders(client: TestClient, web_env: WebEnv) -> None:
    inbox = web_env.put(RAW)
    junk = [web_env.put(RAW, mailbox=SpecialUse.JUNK) for _ in range(3)]
    login(client, web_env)
    folder = client.get(f"/folder/{junk[0].mailbox_id}", headers={"accept-language": "ja"})
    assert "迷惑メールフォルダを空にする" in folder.text
    asked = client.post(
        f"/folder/{junk[0].mailbox_id}/empty",
        data={"csrf_token": csrf_from(folder.text)},
        headers={"accept-language": "ja"},
    )
    assert asked.status_code == 200 and "元に戻せません" in asked.text
    assert len(web_env.stores.metadata.list_messages(junk[0].mailbox_id)) == 3
    done = client.post(
        f"/folder/{junk[0].mailbox_id}/empty",
        data={"csrf_token": csrf_from(asked.text), "confirmed": "yes"},
        follow_redirects=False,
    )
    assert done.status_code == 303
    assert web_env.stores.metadata.list_messages(junk[0].mailbox_id) == []
    assert all(_blob_gone(web_env, m.blob_ref) for m in junk)
    assert web_env.stores.metadata.get_message(web_env.account.id, inbox.id) is not None


def test_inbox_cannot_be_emptied_in_one_click(client: TestClient, web_env: WebEnv) -> None:
    stored = web_env.put(RAW)
    login(client, web_env)
    page = client.get(f"/folder/{stored.mailbox_id}")
    assert 'id="empty-folder"' not in page.text
    response = client.post(
        f"/folder/{stored.mailbox_id}/empty",
        data={"csrf_token": csrf_from(page.text), "confirmed": "yes"},
        follow_redirects=False,
    )
    assert response.status_code == 303
    assert web_env.stores.metadata.get_message(web_env.account.id, stored.id) is not None


@pytest.mark.parametrize("action", ["delete-confirmed"])
def test_other_members_messages_cannot_be_deleted(
    client: TestClient, web_env: WebEnv, action: str
) -> None:
    other = web_env.stores.metadata.add_account("jiro@example.test", "x", 0)
    stranger = web_env.put(RAW, account=other)
    login(client, web_env)
    token = csrf_from(client.get("/").text)
    client.post(
        "/messages/act",
        data={"csrf_token": token, "action": action, "ids": [str(stranger.id)], "back": "/"},
        follow_redirects=False,
    )
    assert web_env.stores.metadata.get_message(other.id, stranger.id) is not None
