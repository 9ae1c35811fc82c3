"""The mail templates: every one renders in every locale with both parts; HTML escapes what
users wrote; variants are found on disk; an unknown locale falls back to English."""

from __future__ import annotations

import pytest
from jinja2 import UndefinedError

from hub.email.loader import TEMPLATES, MailTemplates
from hub.preferences import LOCALES

CONTEXT = {
    "name": "Jane",
    "url": "https://hub.example/verify?t=1",
    "title": "bracket.step",
    "body": "4 views",
    "link_url": "https://hub.example/files/1",
    "items": [{"title": "One", "body": "", "link_url": "https://hub.example/1"}],
}

templates = MailTemplates()


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_every_template_renders_in_every_locale(name: str, locale: str) -> None:
    mail = templates.render(name, locale=locale, context=CONTEXT)

    assert mail.subject
    assert "\n" not in mail.subject
    assert mail.text.startswith("Hello Jane," if locale == "en" else "Hallo Jane,")
    assert mail.html.startswith("<!DOCTYPE html>")
    assert f'<html lang="{locale}">' in mail.html


def test_html_escapes_what_users_wrote_and_text_keeps_it() -> None:
    context = {**CONTEXT, "name": "<b>Eve</b>", "body": "<script>alert(1)</script> & more"}

    mail = templates.render("chat_new_message", locale="en", context=context)

    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; more" in mail.html
    assert "<script>" not in mail.html
    assert "&lt;b&gt;Eve&lt;/b&gt;" in mail.html
    assert "<script>alert(1)</script> & more" in mail.text


def test_footer_links_and_pixel_only_when_given() -> None:
    plain = templates.render("render_completed", locale="en", context=CONTEXT)
    tracked = templates.render(
        "render_completed",
        locale="de",
        context={
            **CONTEXT,
            "unsubscribe_url": "https://hub.example/u/t",
            "open_pixel_url": "https://hub.example/o/t.gif",
        },
        track=lambda url: "https://hub.example/c?" + url,
    )

    assert "Unsubscribe" not in plain.text
    assert "<img" not in plain.html
    assert "Diese E-Mails abbestellen: https://hub.example/u/t" in tracked.text
    assert '<img src="https://hub.example/o/t.gif"' in tracked.html
    assert 'href="https://hub.example/c?https://hub.example/files/1"' in tracked.html
    assert tracked.subject == "Ihr Rendering ist fertig: bracket.step"


def test_variants_are_found_and_fall_back_part_by_part() -> None:
    assert templates.variants("chat_new_message") == ("a", "b")
    assert templates.variants("digest") == ("a",)

    b = templates.render("chat_new_message", locale="en", variant="b", context=CONTEXT)
    b_de = templates.render("chat_new_message", locale="de", variant="b", context=CONTEXT)

    assert b.subject == "Jane, our team answered you"
    assert "<blockquote" in b.html  # no b HTML: the base's
    assert b_de.subject == "Neue Nachricht von IdEinstein"  # no German b: the German base


def test_unknown_locale_falls_back_to_english_and_missing_values_fail() -> None:
    mail = templates.render("password_reset", locale="fr", context=CONTEXT)
    assert mail.subject == "Reset your password"

    with pytest.raises(UndefinedError):
        templates.render("password_reset", locale="en", context={"name": "x"})
    with pytest.raises(KeyError):
        templates.render("newsletter", locale="en", context=CONTEXT)


def test_every_order_notification_is_mailed_as_an_order_update() -> None:
    from hub.email.loader import template_for_type

    assert template_for_type("order.paid") == "order_updated"
    assert template_for_type("order.refunded") == "order_updated"
    assert template_for_type("file.shared") == "file_shared"
    assert template_for_type("security.event") == "notification"
