"""The built site as a reader sees it: no markup left as text, no cross-reference unresolved.

Built once, in the ``docs`` session (marker ``docs``; it needs the ``docs``
extra): the check is of the text, the same on every Python.
"""

from __future__ import annotations

import html
import re
from pathlib import Path

import pytest

from .commands import run_python

#: Sphinx/RST markup that Markdown leaves as text
LEFTOVERS = [
    re.compile(r":(?:py:)?(?:class|func|meth|mod|attr|exc|data|obj|const|ref):`?\S"),
    re.compile(r"^\s*={4,}(?:\s+={4,})+\s*$", re.M),  # an RST table rule
    re.compile(r"\w::\s*$", re.M),  # an RST literal-block marker
    re.compile(r"^\s*:[a-z]+(?: [\w.]+)?:(?!\S)", re.M),  # a field the parser did not take
]
#: a reference-style link that autorefs could not resolve, left as ``[text][id]``
UNRESOLVED = re.compile(r"\[[^\]\n]+\]\[[\w.]*\]")


def _text(page: str, *, code: bool = True) -> str:
    """The prose a reader sees: tags and code blocks dropped (inline code too unless ``code``)."""
    page = re.sub(r"<pre.*?</pre>", "", page, flags=re.S)
    if not code:
        page = re.sub(r"<code.*?</code>", "", page, flags=re.S)
    return html.unescape(re.sub(r"<[^>]+>", "", page))


@pytest.mark.docs
def test_site_builds_strict_and_renders_every_docstring(tmp_path: Path) -> None:
    pytest.importorskip("mkdocs", reason="the docs extra builds the site (nox -s docs)")
    site = tmp_path / "site"
    done = run_python(
        "-m",
        "mkdocs",
        "build",
        "--strict",
        "--site-dir",
        str(site),
        timeout=300,
        env={"NO_MKDOCS_2_WARNING": "1"},
    )
    assert done.returncode == 0, f"mkdocs build --strict failed:\n{done.stderr}"
    problems = []
    pages = sorted(site.glob("**/index.html"))
    assert pages, "the build wrote no pages"
    for path in pages:
        page = path.read_text()
        # autorefs marks what it could not resolve
        if "<autoref" in page:
            problems.append(f"{path.relative_to(site)}: an unresolved cross-reference")
        for pattern, text in [
            *((p, _text(page)) for p in LEFTOVERS),
            (UNRESOLVED, _text(page, code=False)),
        ]:
            problems.extend(
                f"{path.relative_to(site)}: {m.group(0).strip()!r}" for m in pattern.finditer(text)
            )
    reference = (site / "reference" / "index.html").read_text()
    # every field of Stats is documented under its own anchor
    for field in ("buffered", "high_water", "delivered", "dropped", "capacity"):
        assert f'id="bridges.Stats.{field}"' in reference, f"Stats.{field} is not rendered"
    # the broker spokes' server classes show what they inherit
    for spoke in ("nats", "redis"):
        for member in ("url", "start", "stop", "kill", "restart"):
            anchor = f'id="bridges.{spoke}.LocalServer.{member}"'
            assert anchor in reference, f"{spoke}.LocalServer.{member} is not rendered"
    # no private name shows in a signature
    signatures = re.findall(r'class="doc-signature[^"]*".*?</code>', reference, flags=re.S)
    assert signatures
    private = {m for s in signatures for m in re.findall(r"\b_[A-Z][A-Z_]+\b", html.unescape(s))}
    assert not private, f"private names in signatures: {private}"
    assert not problems, "\n".join(problems)
