"""Legibility of the widget as drawn by a real host: WCAG contrast of every piece of text.

Measured in the page (computed styles), so it checks what the host's theme and the
widget's CSS produce together, not what the CSS file says.
"""

from __future__ import annotations

WCAG_AA = 4.5  # normal-size text

# Colour arithmetic shared by the measurements below (the body of an arrow function):
# rgba() parts, WCAG luminance and contrast ratio, a colour drawn over another, and the
# first opaque background behind an element (walking up ancestors, across shadow roots).
_COLOUR_JS = """
  const rgba = (s) => (s.match(/[\\d.]+/g) || []).map(Number);
  const lum = ([r, g, b]) => {
    const c = [r, g, b].map((v) => v / 255)
      .map((v) => (v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4));
    return 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2];
  };
  const over = (fg, bg) => {
    const a = fg.length > 3 ? fg[3] : 1;
    return [0, 1, 2].map((i) => fg[i] * a + bg[i] * (1 - a));
  };
  const ratio = (a, b) => (Math.max(lum(a), lum(b)) + 0.05) / (Math.min(lum(a), lum(b)) + 0.05);
  const parent = (el) => el.parentElement || (el.getRootNode() && el.getRootNode().host) || null;
  const background = (el) => {
    const layers = [];
    for (let e = el; e; e = parent(e)) {
      const c = rgba(getComputedStyle(e).backgroundColor);
      if (c.length >= 3 && (c.length === 3 || c[3] > 0)) {
        layers.push(c);
        if (c.length === 3 || c[3] >= 1) break;
      }
    }
    let bg = [255, 255, 255];  // the canvas behind everything
    for (const c of layers.reverse()) bg = over(c, bg);
    return bg;
  };
"""

# For each visible element of the widget that holds text of its own: its colour drawn
# over the first opaque background behind it, and the contrast ratio of the two. Also
# the widget's own effective background.
CONTRAST_JS = """
(root) => {""" + _COLOUR_JS + """
  const texts = [];
  for (const el of [root, ...root.querySelectorAll("*")]) {
    const own = [...el.childNodes].filter((n) => n.nodeType === 3)
      .map((n) => n.textContent.trim()).join(" ").trim();
    if (!own || el.tagName === "OPTION") continue;
    const r = el.getBoundingClientRect(), s = getComputedStyle(el);
    if (r.width === 0 || r.height === 0 || s.visibility === "hidden") continue;
    const bg = background(el);
    texts.push({ cls: el.className, text: own.slice(0, 40),
                 ratio: Math.round(ratio(over(rgba(s.color), bg), bg) * 100) / 100 });
  }
  return { background: background(root).map(Math.round),
           backgroundLuminance: lum(background(root)), texts };
}
"""

# The focus ring of the focused element: its outline, and the contrast of the outline's
# colour against what surrounds it (the background behind the element's parent, which an
# outline with a positive offset is drawn on) and against the element's own fill.
FOCUS_RING_JS = """
(el) => {""" + _COLOUR_JS + """
  const s = getComputedStyle(el);
  const around = background(parent(el));
  const ring = over(rgba(s.outlineColor), around);
  return { focused: document.activeElement === el, style: s.outlineStyle,
           width: parseFloat(s.outlineWidth), offset: parseFloat(s.outlineOffset),
           color: s.outlineColor,
           vsSurroundings: Math.round(ratio(ring, around) * 100) / 100,
           vsFill: Math.round(ratio(ring, background(el)) * 100) / 100 };
}
"""


def contrast_report(element) -> dict:
    """CONTRAST_JS run on a Playwright element handle (the ``.soniox-recorder`` root)."""
    return element.evaluate(CONTRAST_JS)


def too_faint(report: dict, minimum: float = WCAG_AA) -> list[dict]:
    """The texts below ``minimum``: an empty list means every text is legible."""
    return [t for t in report["texts"] if t["ratio"] < minimum]


def change_theme(page, theme: str, light: bool) -> None:
    """Switch JupyterLab or Notebook 7 to ``theme`` and wait until the page says so."""
    page.evaluate("(t) => window.jupyterapp.commands.execute('apputils:change-theme',"
                  " {theme: t})", theme)
    page.wait_for_function(
        "(light) => document.body.dataset.jpThemeLight === String(light)", arg=light,
        timeout=30_000)


def wait_widget_theme(page, element, light: bool) -> None:
    """Wait until the widget ``element`` has taken the theme's colours (measured)."""
    page.wait_for_function(
        f"([el, light]) => {{ const lum = ({CONTRAST_JS})(el).backgroundLuminance;"
        " return light ? lum > 0.5 : lum < 0.5; }",
        arg=[element, light], timeout=10_000)
