"""The mail templates: Jinja2, one text and one HTML file per template, locale and variant.

Layout on disk (package data, `hub/email/templates/`):
- `shared/_layout.html`, `shared/_layout.txt`: the base layout (greeting, signature, footer
  with the settings and unsubscribe links, the open pixel); locale strings are in the layout.
- `<locale>/<name>.txt`: the `subject` block and the text `body`; `<locale>/<name>.html`: the
  HTML `body` (autoescaped: every value is escaped unless marked safe).
- A/B variants: `<locale>/<name>.<variant>.txt|html`; a part a variant lacks is the base's.
  Variant `a` is the base itself.

A locale without a template falls back to English. `track(url)` in a template makes a click
tracked link (a no-op when the composer gives no tracker).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

from jinja2 import (
    Environment,
    FileSystemLoader,
    StrictUndefined,
    Template,
    TemplateNotFound,
    select_autoescape,
)

from hub.preferences import DEFAULT_LOCALE, LOCALES

BASE_VARIANT = "a"
_VARIANT_FILE = re.compile(r"^(?P<name>[a-z_]+)\.(?P<variant>[a-z0-9]+)\.(?:txt|html)$")

# Every transactional mail, and what its context carries (besides name, locale, subject).
TEMPLATES: dict[str, tuple[str, ...]] = {
    "verify_email": ("url",),
    "password_reset": ("url",),
    "chat_new_message": ("body", "link_url"),
    "render_completed": ("title", "body", "link_url"),
    "order_updated": ("title", "body", "link_url"),
    "file_shared": ("title", "body", "link_url"),
    "notification": ("title", "body", "link_url"),
    "digest": ("items",),
}

# Which template mails a notification of each type (others: the generic `notification`).
TYPE_TEMPLATES: dict[str, str] = {
    "chat.new_message": "chat_new_message",
    "render.completed": "render_completed",
    "order.updated": "order_updated",
    "order.shipped": "order_updated",
    "file.shared": "file_shared",
}


def template_for_type(type: str) -> str:
    """The template of a notification type; every `order.*` type is an order update."""
    if type in TYPE_TEMPLATES:
        return TYPE_TEMPLATES[type]
    return "order_updated" if type.startswith("order.") else "notification"


@dataclass(frozen=True, slots=True)
class RenderedMail:
    subject: str
    text: str
    html: str


def template_directory() -> Path:
    return Path(str(files("hub.email").joinpath("templates")))


class MailTemplates:
    def __init__(self, directory: Path | None = None) -> None:
        self.directory = directory or template_directory()
        self._env = Environment(
            loader=FileSystemLoader(self.directory),
            autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False),
            undefined=StrictUndefined,
            keep_trailing_newline=False,
            auto_reload=False,
        )
        self._variants = self._find_variants()

    def _find_variants(self) -> dict[str, tuple[str, ...]]:
        found: dict[str, set[str]] = {name: {BASE_VARIANT} for name in TEMPLATES}
        for locale in LOCALES:
            folder = self.directory / locale
            if not folder.is_dir():
                continue
            for path in folder.iterdir():
                match = _VARIANT_FILE.match(path.name)
                if match and match["name"] in found:
                    found[match["name"]].add(match["variant"])
        return {name: tuple(sorted(variants)) for name, variants in found.items()}

    def variants(self, name: str) -> tuple[str, ...]:
        """The A/B variants of `name` (`("a",)` when it has none)."""
        return self._variants.get(name, (BASE_VARIANT,))

    def _template(self, name: str, locale: str, variant: str, extension: str) -> Template:
        candidates = []
        for loc in dict.fromkeys((locale, DEFAULT_LOCALE)):
            if variant != BASE_VARIANT:
                candidates.append(f"{loc}/{name}.{variant}.{extension}")
            candidates.append(f"{loc}/{name}.{extension}")
        return self._env.select_template(candidates)

    def render(
        self,
        name: str,
        *,
        locale: str,
        variant: str = BASE_VARIANT,
        context: Mapping[str, Any],
        track: Callable[[str], str] | None = None,
    ) -> RenderedMail:
        """Subject, text and HTML of one mail. Raises `KeyError` for an unknown template and
        jinja2's `UndefinedError` when the context lacks what the template uses."""
        if name not in TEMPLATES:
            raise KeyError(name)
        if locale not in LOCALES:
            locale = DEFAULT_LOCALE
        values: dict[str, Any] = {
            "name": "",
            "settings_url": "",
            "unsubscribe_url": "",
            "open_pixel_url": "",
            **context,
            "locale": locale,
            "track": track or (lambda url: url),
        }
        try:
            text_template = self._template(name, locale, variant, "txt")
            html_template = self._template(name, locale, variant, "html")
        except TemplateNotFound as exc:  # pragma: no cover - every template ships both parts
            raise KeyError(name) from exc
        subject_block = text_template.blocks["subject"]
        subject = "".join(subject_block(text_template.new_context(values))).strip()
        subject = " ".join(subject.split())  # one line, whatever the context held
        values["subject"] = subject
        text = text_template.render(values).strip() + "\n"
        html = html_template.render(values).strip() + "\n"
        return RenderedMail(subject=subject, text=text, html=html)
