"""End to end: the HTML atlas opened in headless Chromium (Debian's `chromium`, installed by .ci/run)."""

from __future__ import annotations

import re
import shutil

import pytest

import convatlas
from convatlas.compare.atlas import build_atlas

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-quic", "--disable-sync"]


@pytest.fixture(scope="module")
def atlas(tmp_path_factory):
    out = tmp_path_factory.mktemp("atlas")
    return build_atlas(out)


@pytest.fixture(scope="module")
def page(atlas):
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "headless Chromium is needed for this test: apt-get install chromium (.ci/run does)"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        pg = browser.new_page(viewport={"width": 1200, "height": 900})
        pg.goto(atlas.as_uri())
        yield pg
        browser.close()


def test_atlas_is_offline(atlas):
    for html_file in atlas.parent.rglob("*.html"):
        text = html_file.read_text()
        assert not re.search(r"""(src|href)=['"]https?://""", text), f"{html_file.name} loads from the network"


def test_index_lists_every_registered_network(page):
    names = page.locator("#zoo tbody tr td:first-child").all_inner_texts()
    assert sorted(names) == convatlas.list_models()


def test_sorting_by_parameters(page):
    page.click("#zoo th:has-text('params')")
    values = page.locator("#zoo tbody tr td:nth-child(4)").evaluate_all("els => els.map(e => parseFloat(e.dataset.value))")
    assert values == sorted(values) and values[0] < values[-1]
    page.click("#zoo th:has-text('params')")  # second click: descending
    values = page.locator("#zoo tbody tr td:nth-child(4)").evaluate_all("els => els.map(e => parseFloat(e.dataset.value))")
    assert values == sorted(values, reverse=True)


def test_filter_and_follow_link_to_network_page(page, atlas):
    page.fill("#filter", "resnet50")
    visible = [r for r in page.locator("#zoo tbody tr").all() if r.is_visible()]
    assert visible and all("resnet50" in r.inner_text() for r in visible)
    page.click("#zoo a:text-is('resnet50')")
    page.wait_for_load_state()
    assert page.title().startswith("resnet50")
    assert "Deep Residual Learning" in page.content()
    assert page.locator("svg[aria-label='block diagram'] rect").count() >= 5
    assert page.locator("svg[aria-label='top-1 accuracy against GMACs'] circle[fill='#d62728']").count() == 1
    shot = atlas.parent / "resnet50.png"
    page.screenshot(path=str(shot), full_page=False)
    assert shot.stat().st_size > 20_000
    page.go_back()
