"""``cover subline --html``: the page, rendered by a real headless Chromium
(Playwright), marks each branch point where it sits in the line, in the
colour of what ran; checked on the page's layout and on a screenshot's
pixels.  The expectations are those of test_subline.py, read off the
program by hand.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from .helpers import copy_programs, python

sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is in the test extra")
Image = pytest.importorskip("PIL.Image", reason="Pillow is in the test extra")

FULL, PARTIAL = (0xB8, 0xEC, 0xB8), (0xFF, 0xE0, 0x8A)   # subline_html's colours


def chromium_executable(playwright) -> str:
    """Playwright's own Chromium when `playwright install chromium` could
    fetch it, else the system's headless Chromium."""
    own = playwright.chromium.executable_path
    if os.path.exists(own):
        return own
    for name in ("chromium-headless-shell", "chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    pytest.skip("no headless Chromium: `playwright install chromium` needs its download "
                "server, and no chromium(-headless-shell) is installed")


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("html")
    programs = copy_programs(tmp_path)
    python(["-m", "lowimpact", "cover", "run", "--branch", "subline_cases.py"], programs)
    python(["-m", "lowimpact", "cover", "subline", "--all", "--html", "sublinecov"], programs)
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_executable(playwright),
                                             args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 900, "height": 700})
            page.goto((programs / "sublinecov" / "index.html").as_uri())
            page.screenshot(path=str(tmp_path / "subline.png"), full_page=True)
            yield page, tmp_path
        finally:
            browser.close()


def marks(page, line: int) -> list:
    spans = page[0].locator("#L%d pre .point" % line)
    return [(spans.nth(i).inner_text(), spans.nth(i).get_attribute("class").split()[1])
            for i in range(spans.count())]


def test_points_are_marked_in_the_line(page) -> None:
    assert marks(page, 2) == [("a", "full"), ("b", "partial")]
    assert marks(page, 8) == [("a", "partial"), ("b", "partial")]
    assert marks(page, 12) == [("items", "partial"), ("items[0]", "full")]
    assert marks(page, 23) == [("c", "partial")]


def test_marks_sit_over_their_text(page) -> None:
    # "    if a and b:" in monospace: "a" is column 8, "b" column 14; the
    # marks' boxes are where those characters are drawn.
    line = page[0].locator("#L2 pre")
    a, b = (line.locator(".point").nth(i).bounding_box() for i in (0, 1))
    box = line.bounding_box()
    char = a["width"]
    assert 4 < char < 20 and abs(b["width"] - char) < 0.5
    assert abs((a["x"] - box["x"]) - 7 * char) < 1
    assert abs((b["x"] - box["x"]) - 13 * char) < 1
    assert a["y"] == b["y"]


def test_screenshot_shows_the_colours(page) -> None:
    # The marks' pixels in the full-page screenshot: the commonest colour is
    # that of what ran (the glyph's pixels aside).
    image = Image.open(page[1] / "subline.png").convert("RGB")
    for index, colour in ((0, FULL), (1, PARTIAL)):
        box = page[0].locator("#L2 pre .point").nth(index).bounding_box()
        region = image.crop((int(box["x"]) + 1, int(box["y"]) + 1,
                             int(box["x"] + box["width"]) - 1, int(box["y"] + box["height"]) - 1))
        counts = dict((c, n) for n, c in region.getcolors(region.width * region.height))
        assert max(counts, key=counts.get) == colour, (index, counts)


def test_missed_directions_are_listed(page) -> None:
    items = page[0].locator("#L2 ul.directions li")
    assert items.nth(1).locator(".missed").inner_text() == "true"
    assert items.nth(1).locator(".ran").inner_text() == "false"
