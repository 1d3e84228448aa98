"""The report in a real browser: headless Chromium loads the page, every image decodes, nothing is
scripted, and the full-page screenshot shows a page (not a blank one).

Chromium is the Debian package ``chromium`` (``make system-deps`` installs it where it runs as root,
as CI does); the test is skipped only where no Chromium is installed.
"""

import base64

import numpy as np
import pytest

from spikeflow.report import write_report
from tests.report.chromium import find_chromium, render
from tests.report.test_report import FULL_SECTIONS, Page, png_size

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def chromium():
    if find_chromium() is None:
        pytest.skip("Chromium is not installed: install the Debian package 'chromium' (`make system-deps` does, as root)")


def test_the_page_renders_in_headless_chromium(chromium, real_run, tmp_path):
    from PIL import Image

    page = write_report(real_run, tmp_path / "report", strict=True)
    html_images = Page(page.read_text(encoding="utf-8")).images
    shot = tmp_path / "screenshot.png"
    seen = render(page, shot)

    assert seen["title"] == "spikeflow run: report-test <run> & co"  # escaped in the source, the real name on screen
    assert seen["scripts"] == 0
    assert [s["id"] for s in seen["sections"]] == FULL_SECTIONS and all(s["text"] > 20 for s in seen["sections"])
    assert len(seen["images"]) == len(html_images) >= 12
    for img, src in zip(seen["images"], html_images):  # decoded by the browser at the size of the PNG: no broken image
        assert img["complete"] and img["w"] > 0 and img["h"] > 0, img
        assert (img["w"], img["h"]) == png_size(base64.b64decode(src["src"].split(",", 1)[1]))
        assert img["shown_w"] > 0.5 * min(img["w"], 1100), img  # laid out, not collapsed
    assert seen["height"] > 5000  # a long page of figures, not an error page

    with Image.open(shot) as im:
        pixels = np.asarray(im.convert("RGB"), dtype=np.float64)
    assert pixels.shape[0] >= seen["height"] - 2 and pixels.shape[1] >= 1200  # the whole page was captured
    assert pixels.std() > 20 and len(np.unique(pixels.reshape(-1, 3)[::97], axis=0)) > 200  # drawn, in many colours
    header = pixels[8:20, -300:-20]  # the dark blue title bar right of the title: the stylesheet was applied
    assert abs(header.mean(axis=(0, 1)) - [29, 53, 87]).max() < 40


def test_a_partial_page_renders_without_images(chromium, tmp_path):
    page = write_report({"name": "partial", "data": {"dataset": "digit-saccades"}}, tmp_path / "report", strict=True)
    seen = render(page, tmp_path / "screenshot.png")
    assert seen["images"] == [] and len(seen["sections"]) == 10
