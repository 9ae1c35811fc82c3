from tortoise import migrations
from tortoise.migrations import operations as ops
from core.ids import new_id
from db.models.push import DeliveryChannel, DeliveryStatus
from tortoise.fields.base import OnDelete
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('models', '0003_chat_inbox')]

    initial = False

    operations = [
        ops.CreateModel(
            name='PushSubscription',
            fields=[
                ('id', fields.UUIDField(primary_key=True, default=new_id, unique=True, db_index=True)),
                ('user', fields.ForeignKeyField('models.User', source_field='user_id', db_constraint=True, to_field='id', related_name='push_subscriptions', on_delete=OnDelete.CASCADE)),
                ('endpoint', fields.CharField(unique=True, max_length=2000)),
                ('p256dh', fields.CharField(max_length=100)),
                ('auth', fields.CharField(max_length=50)),
                ('user_agent', fields.CharField(default='', max_length=300)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('last_success_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('failure_count', fields.IntField(default=0)),
            ],
            options={'table': 'push_subscriptions', 'app': 'models', 'pk_attr': 'id', 'table_description': "A browser's PushSubscription (endpoint and keys), bound to the user who registered it."},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='DeliveryAttempt',
            fields=[
                ('id', fields.UUIDField(primary_key=True, default=new_id, unique=True, db_index=True)),
                ('notification', fields.ForeignKeyField('models.Notification', source_field='notification_id', null=True, db_constraint=True, to_field='id', related_name='delivery_attempts', on_delete=OnDelete.SET_NULL)),
                ('user', fields.ForeignKeyField('models.User', source_field='user_id', db_constraint=True, to_field='id', related_name='delivery_attempts', on_delete=OnDelete.CASCADE)),
                ('subscription', fields.ForeignKeyField('models.PushSubscription', source_field='subscription_id', null=True, db_constraint=True, to_field='id', related_name='delivery_attempts', on_delete=OnDelete.SET_NULL)),
                ('channel', fields.CharEnumField(description='WEB_PUSH: web_push\nEMAIL: email', enum_type=DeliveryChannel, max_length=20)),
                ('status', fields.CharEnumField(default=DeliveryStatus.PENDING, description='PENDING: pending\nSENT: sent\nFAILED: failed\nGONE: gone\nDEAD: dead', enum_type=DeliveryStatus, max_length=10)),
                ('attempts', fields.IntField(default=0)),
                ('last_error', fields.CharField(default='', max_length=500)),
                ('next_attempt_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={'table': 'delivery_attempts', 'app': 'models', 'indexes': [Index(fields=['status', 'next_attempt_at']), Index(fields=['notification_id', 'channel'])], 'pk_attr': 'id', 'table_description': 'One notification to one destination over one channel, with the state of its tries.'},
            bases=['Model'],
        ),
    ]
