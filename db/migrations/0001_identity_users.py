from tortoise import migrations
from tortoise.migrations import operations as ops
from core.ids import new_id
from db.models.identity import Role
from tortoise import fields

class Migration(migrations.Migration):
    initial = True

    operations = [
        ops.CreateModel(
            name='User',
            fields=[
                ('id', fields.UUIDField(primary_key=True, default=new_id, unique=True, db_index=True)),
                ('email', fields.CharField(unique=True, description='Lower-cased address', max_length=320)),
                ('password_hash', fields.CharField(null=True, description='argon2id hash, null when the account has no password', max_length=255)),
                ('display_name', fields.CharField(default='', max_length=120)),
                ('role', fields.CharEnumField(default=Role.CUSTOMER, description='CUSTOMER: customer\nEDITOR: editor\nADMIN: admin\nSUPER_ADMIN: super_admin', enum_type=Role, max_length=20)),
                ('is_active', fields.BooleanField(default=True)),
                ('email_verified_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('last_login_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={'table': 'users', 'app': 'models', 'pk_attr': 'id'},
            bases=['Model'],
        ),
    ]
