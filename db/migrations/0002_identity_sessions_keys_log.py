from tortoise import migrations
from tortoise.migrations import operations as ops
import functools
from core.ids import new_id
from db.models.identity import TokenPurpose
from json import dumps, loads
from tortoise.fields.base import OnDelete
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('models', '0001_identity_users')]

    initial = False

    operations = [
        ops.CreateModel(
            name='ApiKey',
            fields=[
                ('id', fields.UUIDField(primary_key=True, default=new_id, unique=True, db_index=True)),
                ('owner', fields.ForeignKeyField('models.User', source_field='owner_id', db_constraint=True, to_field='id', related_name='api_keys', on_delete=OnDelete.CASCADE)),
                ('name', fields.CharField(max_length=100)),
                ('prefix', fields.CharField(unique=True, description='Shown to tell keys apart', max_length=16)),
                ('key_hash', fields.CharField(unique=True, max_length=64)),
                ('scopes', fields.JSONField(default=list, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('expires_at', fields.DatetimeField(null=True, description='Set on rotation: the grace period', auto_now=False, auto_now_add=False)),
                ('revoked_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('last_used_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('last_used_ip', fields.CharField(default='', max_length=64)),
            ],
            options={'table': 'api_keys', 'app': 'models', 'pk_attr': 'id', 'table_description': 'A key for third-party integrations, acting as its owner within its scopes.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='AuthSession',
            fields=[
                ('id', fields.UUIDField(primary_key=True, default=new_id, unique=True, db_index=True)),
                ('user', fields.ForeignKeyField('models.User', source_field='user_id', db_constraint=True, to_field='id', related_name='sessions', on_delete=OnDelete.CASCADE)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('last_used_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('expires_at', fields.DatetimeField(description='Absolute end, however often it is refreshed', auto_now=False, auto_now_add=False)),
                ('revoked_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('revoke_reason', fields.CharField(default='', max_length=40)),
                ('ip', fields.CharField(default='', max_length=64)),
                ('user_agent', fields.CharField(default='', max_length=300)),
            ],
            options={'table': 'auth_sessions', 'app': 'models', 'pk_attr': 'id', 'table_description': 'A signed-in device: the family of refresh tokens issued to it (`sid` in access tokens).'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='OAuthAccount',
            fields=[
                ('id', fields.UUIDField(primary_key=True, default=new_id, unique=True, db_index=True)),
                ('user', fields.ForeignKeyField('models.User', source_field='user_id', db_constraint=True, to_field='id', related_name='oauth_accounts', on_delete=OnDelete.CASCADE)),
                ('provider', fields.CharField(max_length=40)),
                ('subject', fields.CharField(max_length=255)),
                ('email', fields.CharField(default='', max_length=320)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'oauth_accounts', 'app': 'models', 'unique_together': (('provider', 'subject'),), 'pk_attr': 'id', 'table_description': 'An identity at an OpenID provider, linked to a local account.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='OneTimeToken',
            fields=[
                ('id', fields.UUIDField(primary_key=True, default=new_id, unique=True, db_index=True)),
                ('user', fields.ForeignKeyField('models.User', source_field='user_id', db_constraint=True, to_field='id', related_name='one_time_tokens', on_delete=OnDelete.CASCADE)),
                ('purpose', fields.CharEnumField(description='VERIFY_EMAIL: verify_email\nRESET_PASSWORD: reset_password', enum_type=TokenPurpose, max_length=20)),
                ('token_hash', fields.CharField(unique=True, max_length=64)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('expires_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('used_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'one_time_tokens', 'app': 'models', 'pk_attr': 'id', 'table_description': 'Email verification and password reset links: expiring, single use.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='RefreshToken',
            fields=[
                ('id', fields.UUIDField(primary_key=True, default=new_id, unique=True, db_index=True)),
                ('session', fields.ForeignKeyField('models.AuthSession', source_field='session_id', db_constraint=True, to_field='id', related_name='refresh_tokens', on_delete=OnDelete.CASCADE)),
                ('token_hash', fields.CharField(unique=True, max_length=64)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('expires_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('used_at', fields.DatetimeField(null=True, description='Set when rotated, a second use is reuse', auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'refresh_tokens', 'app': 'models', 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='SecurityEvent',
            fields=[
                ('id', fields.UUIDField(primary_key=True, default=new_id, unique=True, db_index=True)),
                ('kind', fields.CharField(db_index=True, max_length=40)),
                ('user', fields.ForeignKeyField('models.User', source_field='user_id', null=True, db_constraint=True, to_field='id', related_name='security_events', on_delete=OnDelete.SET_NULL)),
                ('actor_id', fields.UUIDField(null=True)),
                ('email', fields.CharField(default='', description='As typed, for failures', max_length=320)),
                ('ip', fields.CharField(default='', max_length=64)),
                ('user_agent', fields.CharField(default='', max_length=300)),
                ('data', fields.JSONField(default=dict, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('created_at', fields.DatetimeField(db_index=True, auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'security_events', 'app': 'models', 'pk_attr': 'id'},
            bases=['Model'],
        ),
    ]
