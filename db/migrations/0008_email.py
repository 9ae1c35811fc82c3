from tortoise import migrations
from tortoise.migrations import operations as ops
import functools
from core.ids import new_id
from db.models.email import EmailEventKind, EmailStatus
from json import dumps, loads
from tortoise.fields.base import OnDelete
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('models', '0007_files_search')]

    initial = False

    operations = [
        ops.CreateModel(
            name='EmailMessage',
            fields=[
                ('id', fields.UUIDField(primary_key=True, default=new_id, unique=True, db_index=True)),
                ('user', fields.ForeignKeyField('models.User', source_field='user_id', null=True, db_constraint=True, to_field='id', related_name='email_messages', on_delete=OnDelete.SET_NULL)),
                ('to_address', fields.CharField(max_length=320)),
                ('template', fields.CharField(max_length=60)),
                ('category', fields.CharField(default='', max_length=60)),
                ('locale', fields.CharField(default='en', max_length=10)),
                ('variant', fields.CharField(default='a', max_length=20)),
                ('context', fields.JSONField(default=dict, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('notification_ids', fields.JSONField(default=list, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('status', fields.CharEnumField(default=EmailStatus.QUEUED, description='QUEUED: queued\nSENDING: sending\nSENT: sent\nFAILED: failed\nDEAD: dead\nSUPPRESSED: suppressed\nCANCELLED: cancelled', enum_type=EmailStatus, max_length=12)),
                ('attempts', fields.IntField(default=0)),
                ('next_attempt_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('claimed_until', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('last_error', fields.CharField(default='', max_length=500)),
                ('smtp_message_id', fields.CharField(default='', max_length=300)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('sent_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('opened_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('clicked_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'email_messages', 'app': 'models', 'indexes': [Index(fields=['status', 'next_attempt_at']), Index(fields=['template', 'variant'])], 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='EmailEvent',
            fields=[
                ('id', fields.UUIDField(primary_key=True, default=new_id, unique=True, db_index=True)),
                ('message', fields.ForeignKeyField('models.EmailMessage', source_field='message_id', null=True, db_constraint=True, to_field='id', related_name='events', on_delete=OnDelete.CASCADE)),
                ('kind', fields.CharEnumField(description='OPEN: open\nCLICK: click\nBOUNCE: bounce\nCOMPLAINT: complaint\nUNSUBSCRIBE: unsubscribe', enum_type=EmailEventKind, max_length=12)),
                ('address', fields.CharField(default='', max_length=320)),
                ('detail', fields.CharField(default='', max_length=500)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'email_events', 'app': 'models', 'indexes': [Index(fields=['message_id', 'kind'])], 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='EmailSuppression',
            fields=[
                ('id', fields.UUIDField(primary_key=True, default=new_id, unique=True, db_index=True)),
                ('address', fields.CharField(max_length=320)),
                ('scope', fields.CharField(default='*', max_length=60)),
                ('reason', fields.CharField(max_length=20)),
                ('detail', fields.CharField(default='', max_length=500)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'email_suppressions', 'app': 'models', 'unique_together': (('address', 'scope'),), 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='EmailVariantAssignment',
            fields=[
                ('id', fields.UUIDField(primary_key=True, default=new_id, unique=True, db_index=True)),
                ('user', fields.ForeignKeyField('models.User', source_field='user_id', db_constraint=True, to_field='id', related_name='email_variants', on_delete=OnDelete.CASCADE)),
                ('template', fields.CharField(max_length=60)),
                ('variant', fields.CharField(max_length=20)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'email_variant_assignments', 'app': 'models', 'unique_together': (('user', 'template'),), 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='NotificationPreference',
            fields=[
                ('id', fields.UUIDField(primary_key=True, default=new_id, unique=True, db_index=True)),
                ('user', fields.OneToOneField('models.User', source_field='user_id', db_constraint=True, to_field='id', related_name='notification_preference', on_delete=OnDelete.CASCADE)),
                ('channels', fields.JSONField(default=dict, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('quiet_start', fields.CharField(null=True, max_length=5)),
                ('quiet_end', fields.CharField(null=True, max_length=5)),
                ('timezone', fields.CharField(default='UTC', max_length=64)),
                ('digest_minutes', fields.IntField(default=0)),
                ('locale', fields.CharField(default='en', max_length=10)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={'table': 'notification_preferences', 'app': 'models', 'pk_attr': 'id'},
            bases=['Model'],
        ),
    ]
