"""A/B variants: random but sticky per user and template, stored, safe under concurrency."""

from __future__ import annotations

import asyncio

from db.connection import open_database
from db.models.email import EmailVariantAssignment
from db.models.identity import User
from hub.email.variants import assign_variant


async def test_each_user_keeps_the_variant_drawn_first(migrated_database_url: str) -> None:
    async with open_database(migrated_database_url):
        users = [await User.create(email=f"ab{n}@example.com") for n in range(40)]

        first = [
            await assign_variant(user_id=u.id, template="chat_new_message", variants=("a", "b"))
            for u in users
        ]
        again = [
            await assign_variant(user_id=u.id, template="chat_new_message", variants=("a", "b"))
            for u in users
        ]
        stored = await EmailVariantAssignment.all().count()

    assert again == first
    assert set(first) == {"a", "b"}  # 40 fair draws all alike: about 2 in a trillion
    assert stored == 40


async def test_concurrent_first_mails_agree_on_one_variant(migrated_database_url: str) -> None:
    async with open_database(migrated_database_url):
        user = await User.create(email="race@example.com")

        drawn = await asyncio.gather(
            *(
                assign_variant(user_id=user.id, template="chat_new_message", variants=("a", "b"))
                for _ in range(8)
            )
        )
        [row] = await EmailVariantAssignment.filter(user_id=user.id)

    assert set(drawn) == {row.variant}


async def test_one_variant_or_no_user_needs_no_draw(migrated_database_url: str) -> None:
    async with open_database(migrated_database_url):
        user = await User.create(email="single@example.com")

        only = await assign_variant(user_id=user.id, template="digest", variants=("a",))
        anonymous = await assign_variant(
            user_id=None, template="chat_new_message", variants=("a", "b")
        )
        stored = await EmailVariantAssignment.all().count()

    assert (only, anonymous, stored) == ("a", "a", 0)
