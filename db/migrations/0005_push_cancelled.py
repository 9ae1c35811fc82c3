from tortoise import migrations
from tortoise.migrations import operations as ops
from db.models.push import DeliveryStatus
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('models', '0004_push')]

    initial = False

    operations = [
        ops.AlterField(
            model_name='DeliveryAttempt',
            name='status',
            field=fields.CharEnumField(default=DeliveryStatus.PENDING, description='PENDING: pending\nSENT: sent\nFAILED: failed\nGONE: gone\nDEAD: dead\nCANCELLED: cancelled', enum_type=DeliveryStatus, max_length=10),
        ),
    ]
