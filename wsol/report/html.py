"""Self-contained HTML reports: one page that links only files beside it, opened with no server.

On load, a small script counts the images that failed to load and shows a banner if any did
(e.g. a report copied without its ``figures/`` folder); ``<body data-images=… data-broken=…>``
records the counts.
"""

from __future__ import annotations

import html

__all__ = ["page", "figure", "section"]

_STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 24px auto; max-width: 1400px; padding: 0 16px; color: #222; }
h1 { font-size: 22px; } h2 { font-size: 17px; margin-top: 28px; border-bottom: 1px solid #ddd; }
table.metrics { border-collapse: collapse; font-size: 13px; margin: 8px 0; }
table.metrics th, table.metrics td { border: 1px solid #ccc; padding: 3px 8px; }
table.metrics td.num { text-align: right; font-variant-numeric: tabular-nums; }
table.metrics caption { caption-side: bottom; color: #666; font-size: 12px; padding-top: 4px; }
.gallery { display: flex; flex-wrap: wrap; gap: 10px; }
figure { margin: 0; } figure img { display: block; max-width: 100%; }
figcaption { font-size: 12px; color: #444; max-width: 224px; overflow-wrap: anywhere; }
.meta { color: #555; } .legend span { padding: 0 6px; font-weight: 600; }
#broken { display: none; background: #fee; border: 1px solid #c00; padding: 8px; }
"""

_SCRIPT = """
window.addEventListener("load", function () {
  var images = Array.prototype.slice.call(document.images);
  var broken = images.filter(function (img) { return !(img.complete && img.naturalWidth > 0); });
  document.body.dataset.images = images.length;
  document.body.dataset.broken = broken.length;
  if (broken.length) {
    var banner = document.getElementById("broken");
    banner.textContent = broken.length + " of " + images.length + " images failed to load: " +
      broken.map(function (img) { return img.getAttribute("src"); }).join(", ");
    banner.style.display = "block";
  }
});
"""


def figure(src: str, caption: str = "", width: int | None = None) -> str:
    """An ``<img>`` (relative ``src``) with an optional caption."""
    size = f' width="{width}"' if width else ""
    cap = f"<figcaption>{html.escape(caption)}</figcaption>" if caption else ""
    return f'<figure><img src="{html.escape(src)}" alt="{html.escape(caption or src)}"{size}>{cap}</figure>'


def section(title: str, body: str) -> str:
    return f"<h2>{html.escape(title)}</h2>\n{body}\n"


def page(title: str, meta: str, body: str) -> str:
    """A whole HTML document: ``title``, a line of run facts, then ``body`` (already HTML)."""
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>\n"
        f'<body data-images="" data-broken=""><div id="broken"></div>\n<h1>{html.escape(title)}</h1>\n'
        f'<p class="meta">{html.escape(meta)}</p>\n{body}<script>{_SCRIPT}</script>\n</body></html>\n'
    )
