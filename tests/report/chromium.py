"""Load a report page in headless Chromium and read back the natural width of every image."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from pathlib import Path

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
BROKEN_CONTROL = "figures/not-there.png"
"""An image the probe adds that cannot load, so that a check on the widths can fail."""


def image_widths(report_dir: Path, profile_dir: Path) -> dict[str, int]:
    """{src: naturalWidth} of every image of `report_dir/index.html` once the page has loaded.

    The probe page is a copy beside the original (same relative paths), removed afterwards. It adds
    `BROKEN_CONTROL`, an image that cannot load: the check asserts that it reads width 0 (so a
    width above 0 means the image really loaded) and leaves it out of the result."""
    page = (report_dir / "index.html").read_text()
    probe = (f'<img src="{BROKEN_CONTROL}" id="broken-control">\n<script>window.addEventListener("load", () => {{'
             'const out = document.createElement("pre"); out.id = "image-widths";'
             'out.textContent = JSON.stringify([...document.images].map(i => [i.getAttribute("src"), i.naturalWidth]));'
             'document.body.appendChild(out);});</script>\n</body>')
    check_page = report_dir / "_image_check.html"
    check_page.write_text(page.replace("</body>", probe))
    try:
        done = subprocess.run([CHROMIUM, "--headless", "--disable-gpu", "--no-sandbox", f"--user-data-dir={profile_dir}",
                               "--virtual-time-budget=10000", "--dump-dom", check_page.as_uri()],
                              capture_output=True, text=True, timeout=120)
    finally:
        check_page.unlink()
    match = re.search(r'<pre id="image-widths">(.*?)</pre>', done.stdout, re.S)
    assert match, f"no image report in chromium's DOM dump: {done.stdout[-500:]} {done.stderr[-500:]}"
    widths = dict(json.loads(html.unescape(match.group(1))))
    assert widths.pop(BROKEN_CONTROL) == 0, "the deliberately broken image loaded: the width check cannot fail"
    return widths
