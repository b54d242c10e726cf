"""book/check_rendered.py finds what a reader would see as broken, on hand-made pages."""
import importlib.util
import shutil
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("check_rendered", ROOT / "book" / "check_rendered.py")
check_rendered = importlib.util.module_from_spec(spec)
spec.loader.exec_module(check_rendered)

pytestmark = pytest.mark.skipif(check_rendered.find_browser() is None, reason="no chromium")
PAGE = """<!DOCTYPE html><html><body><main><article style="width: 700px">{}</article></main>
</body></html>"""


def build(tmp_path: Path, content: str) -> Path:
    html = tmp_path / "html"
    html.mkdir()
    # 900 px at 100 dpi: drawn for 9 inches, 864 CSS px.
    Image.new("RGB", (900, 300), "white").save(html / "figure.png", dpi=(100, 100))
    (html / "page.html").write_text(PAGE.format(content))
    return html


def test_a_good_page_passes(tmp_path, capsys):
    html = build(tmp_path, '<img src="figure.png" style="max-width: 100%"><table><tr><td>a</td>'
                           '</tr></table><pre>short line</pre>')
    assert check_rendered.main(html) == 0
    assert "0 code/output blocks scroll" in capsys.readouterr().out


def test_broken_image_shrunken_figure_wide_table_and_scrolling_code_are_found(tmp_path, capsys):
    html = build(tmp_path, '<img src="missing.png"><div style="width: 400px">'
                           '<img src="figure.png" style="max-width: 100%"></div>'
                           '<img src="figure.png" style="width: 900px; height: 300px; max-width: 100%">'
                           '<table><tr><td style="min-width: 1500px">wide</td></tr></table>'
                           f'<pre style="overflow: auto">{"x" * 300}</pre>')
    assert check_rendered.main(html) == 1
    out = capsys.readouterr().out
    assert "broken image missing.png" in out
    assert "figure figure.png shown at 400 px, 0.46 of its drawn 864 px" in out
    # A fixed height with the width capped by the column: squashed sideways.
    assert "figure figure.png distorted: shown 700 x 300 px, its own ratio is 900 x 300" in out
    assert "table 'wide' is" in out
    assert "1 code/output blocks scroll sideways" in out
    shutil.rmtree(tmp_path / "browser")
