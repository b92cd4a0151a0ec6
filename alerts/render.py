"""Rendering alerts with Jinja2 templates, one set per channel kind, safely escaped.

Packaged defaults live in ``alerts/templates/``; a channel's ``template`` setting names
a directory whose files of the same names override them. Escaping is not left to the
template author: HTML templates (``*.html.j2``) autoescape, and Slack templates
(``*.mrkdwn.j2``) pass every ``{{ value }}`` through :func:`mrkdwn_escape`, so a headline
with ``<script>`` or ``<!channel>`` in it is shown, not obeyed. In a Slack template the
output of a macro is already escaped: write ``{{ macro(x)|safe }}`` to keep it as it is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2
import markupsafe

SLACK_SECTION_MAX = 3000
SLACK_BLOCKS_MAX = 50
SLACK_HEADER_MAX = 150
SLACK_TEXT_MAX = 3000


def mrkdwn_escape(text: str) -> str:
    """Escape the three characters Slack's mrkdwn gives meaning to (``&``, ``<``, ``>``)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class SlackSafe(str):
    """Text already in mrkdwn (a link built by the ``slack_link`` filter): not escaped again."""


def _slack_finalize(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, SlackSafe | markupsafe.Markup):
        return value
    return mrkdwn_escape(str(value))


def slack_link(url: str | None, text: str) -> SlackSafe:
    """``<url|text>`` with both parts escaped; a ``|`` in the text would end the link."""
    label = mrkdwn_escape(" ".join(str(text).split()).replace("|", "¦")) or "link"
    if not url or not url.startswith(("http://", "https://")):
        return SlackSafe(label)
    return SlackSafe(f"<{mrkdwn_escape(url).replace('|', '%7C')}|{label}>")


def _when(value: Any, fmt: str = "%Y-%m-%d %H:%M UTC") -> str:
    return value.strftime(fmt) if value is not None else ""


class Renderer:
    """Renders named templates for one channel (its override directory first)."""

    def __init__(self, override_dir: Path | None = None):
        loaders: list[jinja2.BaseLoader] = []
        if override_dir is not None:
            loaders.append(jinja2.FileSystemLoader(str(override_dir)))
        loaders.append(jinja2.PackageLoader("alerts", "templates"))
        loader = jinja2.ChoiceLoader(loaders)
        common: dict[str, Any] = {
            "loader": loader,
            "undefined": jinja2.StrictUndefined,
            "trim_blocks": True,
            "lstrip_blocks": True,
            "keep_trailing_newline": False,
        }
        self._html = jinja2.Environment(autoescape=True, **common)
        self._slack = jinja2.Environment(autoescape=False, finalize=_slack_finalize, **common)
        self._plain = jinja2.Environment(autoescape=False, **common)
        for env in (self._html, self._slack, self._plain):
            env.filters["when"] = _when
        self._slack.filters["slack_link"] = slack_link

    def render(self, name: str, **context: Any) -> str:
        """Render template ``name`` (``email.html.j2``, ``slack.mrkdwn.j2``, ...)."""
        if name.endswith(".html.j2"):
            env = self._html
        elif name.endswith(".mrkdwn.j2"):
            env = self._slack
        else:
            env = self._plain
        return env.get_template(name).render(**context).strip()


def _split_long(text: str, limit: int) -> list[str]:
    """Pieces of ``text`` of at most ``limit`` characters, cut at a line or a space."""
    out = []
    while len(text) > limit:
        cut = text.rfind("\n", 0, limit)
        if cut < limit // 2:
            cut = text.rfind(" ", 0, limit)
        if cut < limit // 2:
            cut = limit
        out.append(text[:cut].rstrip())
        text = text[cut:].lstrip()
    if text:
        out.append(text)
    return out


def slack_blocks(header: str, body: str, context: str) -> list[dict[str, Any]]:
    """Block Kit for one alert within Slack's limits: a header (150 characters, plain
    text), sections of at most 3000 characters (paragraphs of ``body`` packed together),
    a context line, and no more than 50 blocks in all."""
    blocks: list[dict[str, Any]] = []
    head = " ".join(header.split())
    if len(head) > SLACK_HEADER_MAX:
        head = head[: SLACK_HEADER_MAX - 1] + "…"
    if head:
        blocks.append({"type": "header", "text": {"type": "plain_text", "text": head, "emoji": False}})
    sections: list[str] = []
    for para in (p.strip() for p in body.split("\n\n")):
        if not para:
            continue
        for piece in _split_long(para, SLACK_SECTION_MAX):
            if sections and len(sections[-1]) + 2 + len(piece) <= SLACK_SECTION_MAX:
                sections[-1] += "\n\n" + piece
            else:
                sections.append(piece)
    room = SLACK_BLOCKS_MAX - len(blocks) - (1 if context else 0)
    if len(sections) > room:
        dropped = len(sections) - room + 1
        sections = [*sections[: room - 1], f"_… {dropped} more sections not shown_"]
    blocks.extend({"type": "section", "text": {"type": "mrkdwn", "text": s}} for s in sections)
    if context:
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": context[:SLACK_SECTION_MAX]}]})
    return blocks
