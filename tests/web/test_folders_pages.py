"""Member folders from the webmail: create, rename, delete with contents to Trash; the
standard folders stay (SQLite and PostgreSQL)."""

from __future__ import annotations

from starlette.testclient import TestClient

from tayori.storage.records import SpecialUse
from tests.web.conftest import WebEnv, csrf_from, login


def _folders(env: WebEnv) -> dict[str, int]:
    return {m.name: m.id for m in env.stores.metadata.list_mailboxes(env.account.id)}


def test_create_rename_delete_keeps_messages(client: TestClient, web_env: WebEnv) -> None:
    login(client, web_env)
    page = client.get("/folders", headers={"accept-language": "ja"})
    assert "フォルダの管理" in page.text and 'id="new-folder-name"' in page.text
    created = client.post(
        "/folders", data={"csrf_token": csrf_from(page.text), "name": " 会議資料 "}
    )
    assert created.status_code == 200 and "会議資料" in created.text
    folder_id = _folders(web_env)["会議資料"]
    stored = web_env.put(b"Subject: keep me\r\n\r\nbody\r\n")
    web_env.stores.metadata.move_messages(web_env.account.id, [stored.id], folder_id)
    renamed = client.post(
        f"/folders/{folder_id}/rename",
        data={"csrf_token": csrf_from(created.text), "name": "2026年 会議"},
    )
    assert renamed.status_code == 200
    assert _folders(web_env)["2026年 会議"] == folder_id
    deleted = client.post(
        f"/folders/{folder_id}/delete", data={"csrf_token": csrf_from(renamed.text)}
    )
    assert deleted.status_code == 200
    assert "2026年 会議" not in _folders(web_env)
    trash = web_env.stores.metadata.get_mailbox(web_env.account.id, SpecialUse.TRASH)
    (moved,) = web_env.stores.metadata.list_messages(trash.id)
    assert moved.blob_ref == stored.blob_ref


def test_bad_names_and_standard_folders_are_refused(client: TestClient, web_env: WebEnv) -> None:
    login(client, web_env)
    token = csrf_from(client.get("/folders").text)
    headers = {"accept-language": "en"}
    for name in ("", "a/b", "inbox", "x" * 300):
        response = client.post(
            "/folders", data={"csrf_token": token, "name": name}, headers=headers
        )
        assert response.status_code in (400, 422), name
    client.post("/folders", data={"csrf_token": token, "name": "Work"})
    again = client.post("/folders", data={"csrf_token": token, "name": "Work"}, headers=headers)
    assert again.status_code == 400 and "already have a folder" in again.text
    inbox = web_env.stores.metadata.get_mailbox(web_env.account.id, SpecialUse.INBOX)
    refused = client.post(
        f"/folders/{inbox.id}/delete", data={"csrf_token": token}, headers=headers
    )
    assert refused.status_code == 400 and "cannot be deleted" in refused.text
    assert "INBOX" in _folders(web_env)


def test_another_members_folder_cannot_be_touched(client: TestClient, web_env: WebEnv) -> None:
    other = web_env.stores.metadata.add_account("jiro@example.test", "x", 0)
    theirs = web_env.stores.metadata.create_mailbox(other.id, "private")
    login(client, web_env)
    token = csrf_from(client.get("/folders").text)
    client.post(f"/folders/{theirs.id}/delete", data={"csrf_token": token})
    client.post(f"/folders/{theirs.id}/rename", data={"csrf_token": token, "name": "mine"})
    names = {m.name for m in web_env.stores.metadata.list_mailboxes(other.id)}
    assert "private" in names and "mine" not in names
