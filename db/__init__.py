"""Floor 2: Tortoise ORM models, configuration and migrations."""
