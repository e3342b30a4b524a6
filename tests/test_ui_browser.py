"""``chromaflow ui`` in a real browser: Debian's headless chromium, driven by selenium through chromium-driver.

The server runs as a user starts it (``chromaflow ui --port N``, on
127.0.0.1) with a small working size; the browser uploads a small synthetic
clip with audio, previews the keyframes, colorizes it, and downloads the
result, which is checked (frames, audio, gray levels, colour).  Skipped, with
the reason, where chromium, chromium-driver, selenium or gradio is missing
(``.ci/run`` installs them).  No browser or driver is ever downloaded: both
paths are given to selenium.

``scripts/ui_screenshot.py`` uses the helpers here for ``docs/ui.png``.
"""

from __future__ import annotations

import importlib.util
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")


def _missing() -> str | None:
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not path.exists():
            return f"{path} not found (apt-get install {package})"
    for module in ("selenium", "gradio"):
        if importlib.util.find_spec(module) is None:
            return f"the Python package {module} is not installed (pip install -e '.[test]')"
    return None


pytestmark = pytest.mark.skipif(_missing() is not None, reason=str(_missing()))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(tmp: Path, work_size: int, timeout: float = 120.0) -> tuple[subprocess.Popen, str]:
    """``chromaflow ui`` on a free port of 127.0.0.1, its temporary files in ``tmp``; ``(process, url)``."""
    port = free_port()
    config = tmp / "run.toml"
    config.write_text(f"[engine]\nwork_max_side = {work_size}\n")
    env = {**os.environ, "TMPDIR": str(tmp), "GRADIO_ANALYTICS_ENABLED": "False"}
    log = open(tmp / "server.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "chromaflow.cli", "ui", "--port", str(port), "-c", str(config)],
                            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"chromaflow ui exited: {(tmp / 'server.log').read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return proc, url
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError(f"chromaflow ui did not answer in {timeout:.0f} s")


def stop_server(proc: subprocess.Popen) -> int:
    """SIGTERM (as a service manager stops it); its exit code."""
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


def make_driver(downloads: Path, width: int = 1400, height: int = 1500):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                f"--window-size={width},{height}", "--lang=en-US"):
        options.add_argument(arg)
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                              "download.prompt_for_download": False})
    return webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)


def wait_for(fn, timeout: float, what: str, poll: float = 0.25):
    """``fn()`` once it is truthy (its value); a clear failure after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def status(driver) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.ID, "status").text


def upload(driver, elem_id: str, *paths: Path) -> None:
    from selenium.webdriver.common.by import By

    field = driver.find_element(By.CSS_SELECTOR, f"#{elem_id} input[type=file]")
    field.send_keys("\n".join(str(p) for p in paths))


def run_and_follow(driver, button: str, done: str, timeout: float) -> list[str]:
    """Click ``button``, then every status text seen until one starts with ``done`` (or an error shows)."""
    from selenium.webdriver.common.by import By

    before = status(driver)
    driver.find_element(By.ID, button).click()
    seen: list[str] = []

    def finished():
        text = status(driver)
        if not seen or seen[-1] != text:
            seen.append(text)
        if text == before and len(seen) == 1:  # the page has not answered the click yet
            return False
        return text.startswith(done) or "error" in text.lower()

    wait_for(finished, timeout, f"{done!r} (seen: {seen})", poll=0.1)
    assert "error" not in seen[-1].lower(), seen
    return seen


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ui_server")
    proc, url = start_server(tmp, work_size=96)
    yield url, tmp
    stop_server(proc)


def test_preview_colorize_and_download_in_chromium(server, tmp_path: Path) -> None:
    from conftest import audio_packets, make_clip_frames, read_frames, square_box, to_gray_rgb, write_png, write_video
    from selenium.webdriver.common.by import By

    url, tmp = server
    n = 16
    color = make_clip_frames(n)
    gray = [to_gray_rgb(f) for f in color]
    clip = write_video(tmp_path / "old film.mp4", gray, audio=True)
    reference = write_png(tmp_path / "frame0.png", color[0])
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    t0 = time.perf_counter()
    driver = make_driver(downloads)
    try:
        driver.get(url)
        wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, "#upload input[type=file]"), 60, "the page")
        upload(driver, "upload", clip)
        about = wait_for(lambda: driver.find_element(By.ID, "about").text, 30, "the upload's description")
        assert about == f"video 96×64, {n} frames at 12 fps (1 s), 1 audio stream (kept)"

        seen = run_and_follow(driver, "preview-btn", "Preview: done", 180)
        assert re.match(r"Preview: done · \d+ keyframes of 1 shot in [\d.]+ s$", seen[-1]), seen
        sheet = driver.find_elements(By.CSS_SELECTOR, "#sheet img")
        assert sheet and sheet[0].get_attribute("src"), "no preview sheet shown"

        # the full run from a reference: the color version of frame 0
        driver.find_element(By.XPATH, "//*[@id='mode']//label[contains(., 'references')]").click()
        wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, "#refs input[type=file]"), 10, "the references")
        upload(driver, "refs", reference)
        driver.find_element(By.CSS_SELECTOR, "#ref-frames textarea").send_keys("0")
        wait_for(lambda: "frame0" in driver.find_element(By.ID, "refs").text, 30, "the reference upload")

        seen = run_and_follow(driver, "run-btn", "Colorize: done", 300)
        assert re.fullmatch(rf"Colorize: done · {n} frames in [\d.]+ s \([\d.]+ frames/s\) · shots 1/1", seen[-1]), seen
        assert any("colorizing" in s or "waiting" in s or "analysing" in s for s in seen[:-1]), seen
        pair = wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, "#compare img"), 30, "the comparison")
        assert len(pair) == 2  # gray | color under the slider

        link = wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, "#result a"), 30, "the download link")[0]
        assert link.text.startswith("old_film_color.mp4") or "old_film_color.mp4" in link.get_attribute("href")
        link.click()
        out = wait_for(lambda: [p for p in downloads.glob("*.mp4")], 60, "the downloaded file")[0]
        wait_for(lambda: not list(downloads.glob("*.crdownload")), 30, "the download to finish")
    finally:
        driver.quit()
    seconds = time.perf_counter() - t0
    print(f"browser test: upload, preview, colorize and download in {seconds:.1f} s")

    frames = read_frames(out)
    assert len(frames) == n
    assert audio_packets(out) == audio_packets(clip)  # the audio is kept
    lum = [np.abs(f.astype(np.float32) @ np.float32([0.299, 0.587, 0.114]) - g[..., 0]).mean()
           for f, g in zip(frames, gray)]
    assert max(lum) < 3.0, lum  # the gray levels are kept (H.264 4:2:0 rounding)
    x0, y0, x1, y1 = square_box(n - 1)  # the red square, moved since frame 0, is still red
    r, g, b = frames[-1][y0 + 3:y1 - 3, x0 + 3:x1 - 3].reshape(-1, 3).mean(axis=0)
    assert r > g + 40 and r > b + 40, (r, g, b)


def test_cancel_a_run_in_chromium(server, tmp_path: Path) -> None:
    from conftest import make_clip_frames, to_gray_rgb, write_video
    from selenium.webdriver.common.by import By

    url, tmp = server
    base = [to_gray_rgb(f) for f in make_clip_frames(16)]
    clip = write_video(tmp_path / "long.mp4", (base + base[::-1]) * 4, audio=True)  # 128 frames, ~10 s of work
    driver = make_driver(tmp_path)
    try:
        driver.get(url)
        wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, "#upload input[type=file]"), 60, "the page")
        upload(driver, "upload", clip)
        wait_for(lambda: "128 frames" in driver.find_element(By.ID, "about").text, 30, "the upload's description")
        driver.find_element(By.ID, "run-btn").click()
        wait_for(lambda: "Colorize: colorizing · frames" in status(driver), 120, "the run to start")
        driver.find_element(By.ID, "cancel-btn").click()
        wait_for(lambda: status(driver) == "Colorize: cancelled; nothing was written", 60, "the cancel")
        assert not driver.find_elements(By.CSS_SELECTOR, "#result a")
    finally:
        driver.quit()
    root = next(tmp.glob("chromaflow-ui-*"))
    # the cancelled job's folder is gone, and the earlier test's session (closed) took its jobs with it
    wait_for(lambda: not list(root.glob("colorize-*")) and not list(root.glob("preview-*")), 30,
             f"the job folders to go (left: {sorted(p.name for p in root.iterdir())})")


def test_server_removes_its_files_when_stopped(tmp_path: Path) -> None:
    proc, url = start_server(tmp_path, work_size=96)
    roots = list(tmp_path.glob("chromaflow-ui-*"))
    assert len(roots) == 1 and roots[0].is_dir()
    code = stop_server(proc)
    assert code in (0, 130), (tmp_path / "server.log").read_text()[-2000:]
    assert not list(tmp_path.glob("chromaflow-ui-*"))
