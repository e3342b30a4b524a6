"""Take docs/ui.png: ``chromaflow ui`` in headless chromium after a preview and a run on the shipped sample.

Usage: python scripts/ui_screenshot.py [OUT.png]

Starts the server on a free port of 127.0.0.1 (tests/test_ui_browser.py's helpers), uploads
chromaflow/data/sample_pedestrians.mp4, chooses the reference mode with the shipped colour frame 0,
previews the keyframes, colorizes the clip, and saves a screenshot of the page; prints the times.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
os.environ.setdefault("CHROMAFLOW_OFFLINE", "1")  # the reference mode needs no download

from selenium.webdriver.common.by import By  # noqa: E402
from test_ui_browser import make_driver, run_and_follow, start_server, stop_server, upload, wait_for  # noqa: E402

from chromaflow.data import sample_clip, sample_reference  # noqa: E402


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/ui.png").absolute()
    ref, frame = sample_reference()
    with tempfile.TemporaryDirectory() as tmp:
        proc, url = start_server(Path(tmp), work_size=384)
        driver = make_driver(Path(tmp), width=1400, height=1320)
        try:
            t0 = time.perf_counter()
            driver.get(url)
            wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, "#upload input[type=file]"), 60, "the page")
            upload(driver, "upload", sample_clip())
            wait_for(lambda: driver.find_element(By.ID, "about").text, 30, "the upload's description")
            driver.find_element(By.XPATH, "//*[@id='mode']//label[contains(., 'references')]").click()
            wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, "#refs input[type=file]"), 10, "the references")
            upload(driver, "refs", ref)
            driver.find_element(By.CSS_SELECTOR, "#ref-frames textarea").send_keys(str(frame))
            time.sleep(1.0)
            preview = run_and_follow(driver, "preview-btn", "Preview: done", 300)[-1]
            t1 = time.perf_counter()
            run = run_and_follow(driver, "run-btn", "Colorize: done", 600)[-1]
            t2 = time.perf_counter()
            wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, "#compare img"), 30, "the comparison")
            time.sleep(2.0)
            driver.save_screenshot(str(out))
        finally:
            driver.quit()
            stop_server(proc)
    print(f"{preview}\n{run}\npreview {t1 - t0:.1f} s (page load and upload included), run {t2 - t1:.1f} s; "
          f"wrote {out}")


if __name__ == "__main__":
    main()
