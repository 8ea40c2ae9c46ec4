"""The README's picture of the app, taken by headless Chromium (Debian's ``chromium`` + ``chromium-driver``):

    python -m imaginate.serve.screenshot --run runs/bench_ufo2/budget_boxes_450_seed1 --out docs/serve.png

It serves the app on a free local port (on a copy of the one wsod run given, or on --runs), opens the wsod
tab, uploads a procedural test scene (64 px, enlarged 4x), presses Detect, waits for the boxes and saves
the window as a PNG.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def take(runs: Path, out: Path, run: Path | None = None, width: int = 1280, height: int = 1100,
         timeout: float = 120) -> Path:
    """Serve ``runs`` (or a folder holding a copy of ``run``), detect boxes on a scene in the wsod tab and save
    the browser window to ``out``."""
    import numpy as np
    from PIL import Image
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from imaginate.data.scenes import SceneDataset
    from imaginate.serve.app import build_app, launch

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if not (chromium and driver_path):
        raise SystemExit("screenshot: needs chromium and chromedriver (make chromium)")
    scene = SceneDataset(1, 64, seed=11).render(0)["image"]  # [3, 64, 64] in [0, 1]
    folder = Path(tempfile.mkdtemp(prefix="imaginate-shot-"))
    picture = folder / "scene.png"
    Image.fromarray((scene.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)).resize(
        (256, 256), Image.Resampling.NEAREST).save(picture)
    if run is not None:
        runs = folder / "runs"
        shutil.copytree(run, runs / run.name, ignore=shutil.ignore_patterns("tb"))
    blocks, _ = build_app(runs, folder / "work", device="cpu")
    port = _free_port()
    launch(blocks, "127.0.0.1", port, block=False)
    options = webdriver.ChromeOptions()
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", f"--window-size={width},{height}",
                 "--enable-unsafe-swiftshader", "--hide-scrollbars"):
        options.add_argument(flag)
    options.binary_location = chromium
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    wait = WebDriverWait(driver, timeout, poll_frequency=0.25)
    try:
        driver.get(f"http://127.0.0.1:{port}/")
        tab = wait.until(lambda d: [b for b in d.find_elements(By.CSS_SELECTOR, "button[role=tab]")
                                    if b.text.strip() == "wsod"])[0]
        tab.click()
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#wsod-upload input[type=file]"))[0].send_keys(
            str(picture))
        wait.until(lambda d: picture.stem in d.find_element(By.ID, "wsod-upload").text)
        driver.find_element(By.ID, "wsod-run").click()
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#wsod-picture img"))
        time.sleep(1.0)  # let the image and table paint
        out.parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(out))
    finally:
        driver.quit()
        blocks.close()
    with Image.open(out) as shot:  # palette PNG: a screenshot of flat colours stays well under 1 MB
        shot.convert("RGB").quantize(colors=128).save(out, optimize=True)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default="runs", help="runs folder (default: runs)")
    parser.add_argument("--run", default=None, help="serve a copy of this one wsod run instead of --runs")
    parser.add_argument("--out", default="docs/serve.png", help="the PNG to write (default: docs/serve.png)")
    args = parser.parse_args(argv)
    path = take(Path(args.runs), Path(args.out), Path(args.run) if args.run else None)
    print(f"wrote {path} ({path.stat().st_size / 1e3:.0f} kB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
