from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('models', '0009_commerce')]

    initial = False

    operations = [
        ops.AddIndex(
            model_name='Conversation',
            index=Index(fields=['customer_id', 'created_at']),
        ),
        ops.AddIndex(
            model_name='Conversation',
            index=Index(fields=['assignee_id', 'created_at']),
        ),
    ]
