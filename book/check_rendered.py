"""Look at the built book in a real browser, as a reader would, and fail when a page lets them down.

    python book/check_rendered.py [_build/html]

Each page is opened in headless Chromium (the system's `chromium`: Debian's package) at a 1280-px
wide window. A small probe script measures, in the laid-out page:

- broken images (not loaded, or loaded with no pixels); images from other sites (the Colab badge)
  are counted, not checked, as the check runs offline;
- figures shown below 0.6 of their drawn width, or distorted (shown with another height/width ratio
  than the image's own, by more than 2 %). The drawn width is the width in CSS pixels the figure was
  made for: the pixel width in the image's inline style or `width` attribute when it has one (myst-nb
  writes retina outputs so), otherwise its pixel width at 96 CSS pixels per inch of the dpi recorded in
  the PNG (a 9-inch matplotlib figure is 864 px);
- tables wider than the column they sit in (they scroll or are clipped);
- code and output blocks whose lines are wider than the block (they scroll sideways).

The first three fail the check; the scrolling blocks are counted, listed, and fail it only above
MAX_SCROLLING_BLOCKS. A screenshot of every page goes to _build/browser/ (a CI artefact, not
committed). Exit status 0 when the book passes, 1 when it does not, 2 when no browser is found.
"""
from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import unquote, urlparse

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
WINDOW_WIDTH = 1280
MIN_SHOWN_FRACTION = 0.6
MAX_DISTORTION = 0.02
# None allowed: a code or output line wider than its block is a page to mend, not to scroll.
MAX_SCROLLING_BLOCKS = 0
SKIPPED_PAGES = {"genindex.html", "search.html"}

# Runs in the page once everything has loaded; writes its findings into the DOM as JSON, which
# `chromium --dump-dom` returns. Lazy images are made eager and waited for first.
PROBE = """
<script>
window.addEventListener("load", async () => {
  // Images of the page's content, not the hidden ones of the theme's menus.
  const content = document.querySelector("main article") || document.querySelector("main");
  const images = content ? [...content.querySelectorAll("img")] : [];
  images.forEach(img => { img.loading = "eager"; });
  await Promise.all(images.map(img => img.complete ? null : new Promise(done => {
    img.addEventListener("load", done); img.addEventListener("error", done);
    setTimeout(done, 5000);
  })));
  const found = {images: [], tables: [], blocks: [], column: content ? content.clientWidth : 0};
  for (const img of images) {
    if (img.getClientRects().length === 0) continue;  // not displayed
    // The width the page asks for, in pixels: inline style first, then the attribute ("50%": none).
    const asked = [img.style.width, img.getAttribute("width") || ""]
      .map(w => /^\\s*[\\d.]+(px)?\\s*$/.test(w) ? parseFloat(w) : null).find(w => w);
    const box = img.getBoundingClientRect();
    found.images.push({src: img.getAttribute("src"), natural: img.naturalWidth,
                       naturalHeight: img.naturalHeight, asked: asked || null,
                       shown: box.width, shownHeight: box.height, complete: img.complete});
  }
  for (const table of document.querySelectorAll("main table")) {
    const box = table.parentElement;
    const room = Math.min(box.clientWidth, found.column || box.clientWidth);
    found.tables.push({wide: table.scrollWidth, room: room,
                       head: (table.querySelector("tr") || table).innerText.slice(0, 60)});
  }
  for (const pre of document.querySelectorAll("main pre")) {
    // Inside a collapsed cell: not shown until the reader opens it.
    if (pre.getClientRects().length === 0 || !pre.innerText.trim()) continue;
    if (pre.scrollWidth > pre.clientWidth + 1) {
      const line = pre.innerText.split("\\n").reduce((a, b) => b.length > a.length ? b : a, "");
      found.blocks.push({wide: pre.scrollWidth, room: pre.clientWidth, line: line.slice(0, 100)});
    }
  }
  const out = document.createElement("div");
  out.id = "rendered-check";
  out.textContent = JSON.stringify(found);
  document.body.appendChild(out);
});
</script>
"""


def find_browser() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


def chromium(browser: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           "--disable-dev-shm-usage", *args], capture_output=True, text=True,
                          timeout=120)


def probe_page(browser: str, page: Path) -> dict:
    """The probe's findings for one page (opened from a copy with the probe script added)."""
    text = page.read_text(encoding="utf-8")
    with tempfile.NamedTemporaryFile("w", suffix=".html", dir=page.parent, delete=False,
                                     prefix=".probe-", encoding="utf-8") as copy:
        copy.write(text.replace("</body>", PROBE + "</body>", 1))
    try:
        done = chromium(browser, f"--window-size={WINDOW_WIDTH},1000", "--virtual-time-budget=20000",
                        "--dump-dom", Path(copy.name).as_uri())
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"{page.name}: the browser did not finish the page in 120 s") from None
    finally:
        Path(copy.name).unlink()
    match = re.search(r'<div id="rendered-check">(.*?)</div>', done.stdout, re.DOTALL)
    if not match:
        raise RuntimeError(f"{page.name}: the probe returned nothing ({done.stderr.strip()[-300:]})")
    return json.loads(html.unescape(match.group(1)))


def drawn_width(page: Path, image: dict) -> float | None:
    """The width in CSS pixels the figure was drawn for (None for an image that is not a local PNG)."""
    if image["asked"]:
        return image["asked"]
    src = urlparse(image["src"] or "")
    if src.scheme or not src.path.lower().endswith(".png"):
        return None
    with Image.open(page.parent / unquote(src.path)) as png:
        dpi = png.info.get("dpi", (96, 96))[0] or 96
    return image["natural"] * 96 / dpi


def main(build: Path) -> int:
    browser = find_browser()
    if browser is None:
        print("error: no chromium found; install Debian's package: apt-get install -y chromium")
        return 2
    shots = build.parent / "browser"
    shots.mkdir(parents=True, exist_ok=True)
    pages = sorted(p for p in build.rglob("*.html")
                   if p.name not in SKIPPED_PAGES and not p.name.startswith(".")
                   and "_static" not in p.parts and "_sources" not in p.parts
                   and "<main" in p.read_text(encoding="utf-8"))  # not a redirect
    if not pages:
        print(f"error: no pages under {build}: build the book first")
        return 1
    failures, scrolling, external = [], 0, 0
    for page in pages:
        name = page.relative_to(build).as_posix()
        try:
            found = probe_page(browser, page)
        except RuntimeError as err:
            failures.append(str(err))
            continue
        for image in found["images"]:
            if urlparse(image["src"] or "").scheme in ("http", "https"):
                external += 1  # a badge from another site: not checkable offline
                continue
            if not image["complete"] or image["natural"] == 0:
                failures.append(f"{name}: broken image {image['src']}")
                continue
            drawn = drawn_width(page, image)
            if drawn and image["shown"] < MIN_SHOWN_FRACTION * drawn:
                failures.append(f"{name}: figure {image['src']} shown at {image['shown']:.0f} px, "
                                f"{image['shown'] / drawn:.2f} of its drawn {drawn:.0f} px")
            own = image["naturalHeight"] / image["natural"]
            shown = image["shownHeight"] / max(image["shown"], 1)
            if abs(shown / own - 1) > MAX_DISTORTION:
                failures.append(f"{name}: figure {image['src']} distorted: shown "
                                f"{image['shown']:.0f} x {image['shownHeight']:.0f} px, its own ratio "
                                f"is {image['natural']} x {image['naturalHeight']}")
        for table in found["tables"]:
            if table["wide"] > table["room"] + 1:
                failures.append(f"{name}: table '{table['head'].splitlines()[0]}' is "
                                f"{table['wide']} px wide in a {table['room']} px column")
        for block in found["blocks"]:
            print(f"  scrolls: {name}: {block['wide']} px in {block['room']} px: {block['line']!r}")
        scrolling += len(found["blocks"])
        try:
            chromium(browser, f"--window-size={WINDOW_WIDTH},{4000}",
                     f"--screenshot={shots / (name.replace('/', '_') + '.png')}", page.as_uri())
        except subprocess.TimeoutExpired:
            print(f"  no screenshot of {name}: the browser took over 120 s")
        print(f"{name}: {len(found['images'])} images, {len(found['tables'])} tables, "
              f"{len(found['blocks'])} scrolling blocks (column {found['column']} px)")
    print(f"\n{len(pages)} pages; {scrolling} code/output blocks scroll sideways "
          f"(goal 0, allowed {MAX_SCROLLING_BLOCKS}); {external} images from other sites not "
          f"checked; screenshots in {shots.relative_to(ROOT) if shots.is_relative_to(ROOT) else shots}")
    if scrolling > MAX_SCROLLING_BLOCKS:
        failures.append(f"{scrolling} scrolling blocks, more than {MAX_SCROLLING_BLOCKS}")
    for failure in failures:
        print(f"FAIL {failure}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "_build" / "html"))
