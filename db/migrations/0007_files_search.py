from tortoise import migrations
from tortoise.migrations import operations as ops


class Migration(migrations.Migration):
    """Full-text search over files (placeholder: filled by the files search work)."""

    dependencies = [('models', '0006_files_render')]

    initial = False

    operations = [
        ops.RunPython(ops.RunPython.noop, ops.RunPython.noop),
    ]
