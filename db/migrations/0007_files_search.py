from tortoise import migrations
from tortoise.migrations import operations as ops

# Full-text search over files.search_text (maintained by storage/documents.py).
# PostgreSQL: a GIN expression index; queries must use the same expression to hit it:
#   to_tsvector('simple'::regconfig, search_text) @@ to_tsquery('simple'::regconfig, ...)
# SQLite: an FTS5 table with the file id beside the text, kept in sync by triggers (not an
# external-content table: `files` has no INTEGER PRIMARY KEY, so its rowids may change on VACUUM).

PG_FORWARD = [
    "CREATE INDEX IF NOT EXISTS files_search_idx ON files "
    "USING GIN (to_tsvector('simple'::regconfig, search_text))",
]
PG_BACKWARD = ["DROP INDEX IF EXISTS files_search_idx"]

SQLITE_FORWARD = [
    "CREATE VIRTUAL TABLE IF NOT EXISTS files_fts USING fts5("
    "file_id UNINDEXED, search_text, tokenize = 'unicode61 remove_diacritics 2')",
    "INSERT INTO files_fts (file_id, search_text) SELECT id, search_text FROM files",
    "CREATE TRIGGER IF NOT EXISTS files_fts_insert AFTER INSERT ON files BEGIN "
    "INSERT INTO files_fts (file_id, search_text) VALUES (new.id, new.search_text); END",
    "CREATE TRIGGER IF NOT EXISTS files_fts_update AFTER UPDATE OF search_text ON files "
    "WHEN old.search_text IS NOT new.search_text BEGIN "
    "DELETE FROM files_fts WHERE file_id = old.id; "
    "INSERT INTO files_fts (file_id, search_text) VALUES (new.id, new.search_text); END",
    "CREATE TRIGGER IF NOT EXISTS files_fts_delete AFTER DELETE ON files BEGIN "
    "DELETE FROM files_fts WHERE file_id = old.id; END",
]
SQLITE_BACKWARD = [
    "DROP TRIGGER IF EXISTS files_fts_delete",
    "DROP TRIGGER IF EXISTS files_fts_update",
    "DROP TRIGGER IF EXISTS files_fts_insert",
    "DROP TABLE IF EXISTS files_fts",
]


async def _run(schema_editor, statements_by_dialect) -> None:
    client = schema_editor.client
    statements = statements_by_dialect.get(client.capabilities.dialect)
    if statements is None:
        raise RuntimeError(f"no search index for dialect {client.capabilities.dialect!r}")
    for statement in statements:
        await client.execute_script(statement)


async def forward(apps, schema_editor) -> None:
    await _run(schema_editor, {"postgres": PG_FORWARD, "sqlite": SQLITE_FORWARD})


async def backward(apps, schema_editor) -> None:
    await _run(schema_editor, {"postgres": PG_BACKWARD, "sqlite": SQLITE_BACKWARD})


class Migration(migrations.Migration):
    """Full-text search over files: a GIN index (PostgreSQL) or an FTS5 table (SQLite)."""

    dependencies = [("models", "0006_files_render")]

    initial = False

    operations = [
        ops.RunPython(forward, backward),
    ]
