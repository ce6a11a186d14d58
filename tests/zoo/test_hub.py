"""`hf://owner/repo[@revision]` handles (`cnnzoo/zoo/hub.py`) against a stand-in for the Hugging Face Hub on
127.0.0.1 (`HF_ENDPOINT`): the endpoints huggingface_hub's `snapshot_download` and `model_info` call, serving preset
directories `cnnzoo.save_preset` wrote. Nothing reaches the internet."""

import hashlib
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import numpy as np
import pytest

import cnnzoo
from cnnzoo.errors import ConfigError, MissingExtraError, WeightsDownloadError, WeightsNotFoundError


class StandInHub:
    """Model repositories served as the Hub serves them, to huggingface_hub:

    - `GET /api/models/{repo}` and `/api/models/{repo}/revision/{rev}`: the model info (`sha`, `siblings`);
    - `GET /api/models/{repo}/tree/{rev}`: the file list (`type`, `path`, `size`, `oid`);
    - `HEAD`/`GET /{repo}/resolve/{rev}/{path}`: a file, with `X-Repo-Commit` and `ETag`;
    - 404s with the Hub's `X-Error-Code` (`RepoNotFound`, `RevisionNotFound`, `EntryNotFound`).

    A revision is a branch or tag (`publish(..., revision=)`) or a commit sha. `requests` records each path asked.
    """

    def __init__(self):
        self.repos, self.requests = {}, []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def do_HEAD(self):
                hub.answer(self, body=False)

            def do_GET(self):
                hub.answer(self, body=True)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    def publish(self, repo_id, directory, revision="main"):
        """Commits every file under `directory` to `repo_id` and points `revision` at it; returns the commit sha."""
        files = {p.relative_to(directory).as_posix(): p.read_bytes() for p in sorted(Path(directory).rglob("*"))}
        files = {name: data for name, data in files.items() if not (Path(directory) / name).is_dir()}
        listing = sorted((name, hashlib.sha1(data).hexdigest()) for name, data in files.items())
        sha = hashlib.sha1(json.dumps([repo_id, listing]).encode()).hexdigest()
        repo = self.repos.setdefault(repo_id, {"refs": {}, "commits": {}})
        repo["commits"][sha] = files
        repo["refs"][revision] = sha
        return sha

    def answer(self, handler, body):
        path = unquote(urlsplit(handler.path).path)
        self.requests.append(path)
        parts = path.strip("/").split("/")
        if parts[:2] == ["api", "models"] and (
            len(parts) == 4 or (len(parts) >= 6 and parts[4] in ("revision", "tree"))
        ):
            repo_id, kind, revision = "/".join(parts[2:4]), (parts + ["revision"])[4], "/".join(parts[5:]) or "main"
            files, sha = self.resolve(handler, repo_id, revision, body)
            if files is None:
                return
            if kind == "revision":
                info = {"id": repo_id, "modelId": repo_id, "sha": sha, "private": False, "tags": []}
                payload = {**info, "siblings": [{"rfilename": name} for name in sorted(files)]}
            else:
                payload = [
                    {"type": "file", "path": n, "size": len(d), "oid": hashlib.sha1(d).hexdigest()}
                    for n, d in sorted(files.items())
                ]
            return self.send(handler, 200, json.dumps(payload).encode(), body, {"Content-Type": "application/json"})
        if len(parts) >= 5 and parts[2] == "resolve":
            files, sha = self.resolve(handler, "/".join(parts[:2]), parts[3], body)
            if files is None:
                return
            name = "/".join(parts[4:])
            if name not in files:
                return self.send(handler, 404, b"{}", body, {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": sha})
            etag = f'"{hashlib.sha1(files[name]).hexdigest()}"'
            return self.send(handler, 200, files[name], body, {"X-Repo-Commit": sha, "ETag": etag})
        self.send(handler, 404, b"{}", body, {})

    def resolve(self, handler, repo_id, revision, body):
        """`(files, sha)` of a repository at a revision, or `(None, None)` after answering 404."""
        repo = self.repos.get(repo_id)
        if repo is None:
            self.send(handler, 404, b'{"error": "Repository not found"}', body, {"X-Error-Code": "RepoNotFound"})
            return None, None
        sha = repo["refs"].get(revision, revision)
        if sha not in repo["commits"]:
            self.send(handler, 404, b'{"error": "Invalid rev id"}', body, {"X-Error-Code": "RevisionNotFound"})
            return None, None
        return repo["commits"][sha], sha

    def send(self, handler, status, data, body, headers):
        handler.send_response(status)
        for key, value in {**headers, "Content-Length": str(len(data))}.items():
            handler.send_header(key, value)
        handler.end_headers()
        if body:
            handler.wfile.write(data)


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """A running stand-in, `HF_ENDPOINT` pointing at it and an empty Hugging Face cache under `HF_HOME`."""
    stand_in = StandInHub()
    monkeypatch.setenv("HF_ENDPOINT", stand_in.url)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    for name in ("HF_HUB_CACHE", "HF_HUB_OFFLINE", "HUGGINGFACE_HUB_CACHE"):
        monkeypatch.delenv(name, raising=False)
    yield stand_in
    stand_in.stop()


def _cached(tmp_path, repo="someone--digits"):
    root = tmp_path / "hf_home" / "hub" / f"models--{repo}"
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()) if root.exists() else []


def test_a_finetuned_model_round_trips_through_the_hub_stand_in(hub, tmp_path, monkeypatch):
    digits = cnnzoo.data.digits()
    shipped = cnnzoo.get("digits_cnn", weights="digits")
    first = hub.publish("someone/digits", cnnzoo.save_preset(shipped, tmp_path / "v1"), revision="v1")
    # finetune takes the handle (revision v1), and its model goes back to the Hub as the default branch
    result = cnnzoo.finetune(
        "hf://someone/digits@v1", digits, stages=["all:1:1e-3"], out=tmp_path / "run", plots=False, verbose=0
    )
    assert result.model.name == "digits_cnn" and result.best_val_accuracy > 0.5
    assert any(p.endswith("/revision/v1") for p in hub.requests)
    second = hub.publish("someone/digits", cnnzoo.save_preset(result.model, tmp_path / "v2"))
    x = digits.x_test[:32]
    v1, v2 = shipped.predict(x, verbose=0), result.model.predict(x, verbose=0)
    main = cnnzoo.get("hf://someone/digits")  # the default branch: the fine-tuned commit
    np.testing.assert_array_equal(main.predict(x, verbose=0), v2)
    assert main.name == "digits_cnn" and main.compiled  # a cnnzoo preset keeps the name it was saved with
    np.testing.assert_array_equal(cnnzoo.load(f"hf://someone/digits@{first}").predict(x, verbose=0), v1)
    assert not np.array_equal(v1, v2)
    files = ["config.json", "image_converter.json", "metadata.json", "model.weights.h5"]
    assert [f.split("/", 2)[2] for f in _cached(tmp_path) if f.startswith(f"snapshots/{second}/")] == files
    assert {"refs/main", "refs/v1"} <= set(_cached(tmp_path))
    hub.stop()  # offline: the cache serves what was fetched, and nothing else
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # set after huggingface_hub was imported: read when cnnzoo fetches
    np.testing.assert_array_equal(cnnzoo.get("hf://someone/digits@v1").predict(x, verbose=0), v1)
    with pytest.raises(WeightsNotFoundError, match="offline mode is on"):
        cnnzoo.get("hf://someone/never-fetched")
    monkeypatch.delenv("HF_HUB_OFFLINE")
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # as set before huggingface_hub was imported
    np.testing.assert_array_equal(cnnzoo.load("hf://someone/digits").predict(x, verbose=0), v2)


def test_a_repository_that_holds_no_preset_is_refused_before_any_download(hub, tmp_path):
    other = tmp_path / "bert"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"model_type": "bert"}))
    (other / "pytorch_model.bin").write_bytes(b"\0" * 64)
    hub.publish("someone/bert", other)
    for load in (cnnzoo.get, cnnzoo.load):
        with pytest.raises(ConfigError, match=r"must be a cnnzoo or keras-hub preset.*pytorch_model\.bin"):
            load("hf://someone/bert")
    assert not any("/resolve/" in p for p in hub.requests) and _cached(tmp_path, "someone--bert") == []
    with pytest.raises(WeightsNotFoundError, match="does not exist or needs a token"):
        cnnzoo.get("hf://someone/nothing")
    with pytest.raises(WeightsNotFoundError, match="has no such branch, tag or commit"):
        cnnzoo.get("hf://someone/bert@v9")
    assert not (tmp_path / "hf_home" / "hub" / "models--someone--nothing" / "snapshots").exists()


def test_malformed_handles_are_clear_errors_without_a_request(hub):
    for handle in ("hf://onlyowner", "hf://a/b/c", "hf://someone/birds@", "hf://-x/birds", "hf://some..one/birds"):
        with pytest.raises(ConfigError, match=r"`name` must be an hf://owner/repo handle") as raised:
            cnnzoo.get(handle)
        assert f"Received: name={handle!r}" in str(raised.value)
    with pytest.raises(ConfigError, match="`path` must be a zoo name, a preset directory or an hf://"):
        cnnzoo.load("kaggle://keras/resnet/keras/tiny")
    with pytest.raises(ConfigError, match="`model` must be an hf://owner/repo handle"):
        cnnzoo.finetune("hf://onlyowner", cnnzoo.data.digits(), epochs=1, plots=False, verbose=0)
    assert hub.requests == []


def test_an_unreachable_hub_and_a_missing_extra_are_named(hub, monkeypatch):
    hub.stop()
    with pytest.raises(WeightsDownloadError, match="not in the Hugging Face cache"):
        cnnzoo.get("hf://someone/digits")
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # import huggingface_hub -> ImportError
    with pytest.raises(MissingExtraError, match=r"pip install 'cnnzoo\[hub\]'"):
        cnnzoo.get("hf://someone/digits")
