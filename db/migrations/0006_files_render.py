from tortoise import migrations
from tortoise.migrations import operations as ops
import functools
from core.ids import new_id
from db.models.files import ScanStatus, UploadKind, UploadState
from db.models.render import RenderStatus
from json import dumps, loads
from tortoise.fields.base import OnDelete
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('models', '0005_push_cancelled')]

    initial = False

    operations = [
        ops.CreateModel(
            name='Folder',
            fields=[
                ('id', fields.UUIDField(primary_key=True, default=new_id, unique=True, db_index=True)),
                ('owner', fields.ForeignKeyField('models.User', source_field='owner_id', db_constraint=True, to_field='id', related_name='folders', on_delete=OnDelete.CASCADE)),
                ('parent', fields.ForeignKeyField('models.Folder', source_field='parent_id', null=True, db_constraint=True, to_field='id', related_name='children', on_delete=OnDelete.CASCADE)),
                ('name', fields.CharField(max_length=255)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={'table': 'folders', 'app': 'models', 'unique_together': (('owner', 'parent', 'name'),), 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='File',
            fields=[
                ('id', fields.UUIDField(primary_key=True, default=new_id, unique=True, db_index=True)),
                ('owner', fields.ForeignKeyField('models.User', source_field='owner_id', db_constraint=True, to_field='id', related_name='files', on_delete=OnDelete.CASCADE)),
                ('folder', fields.ForeignKeyField('models.Folder', source_field='folder_id', null=True, db_constraint=True, to_field='id', related_name='files', on_delete=OnDelete.CASCADE)),
                ('name', fields.CharField(max_length=255)),
                ('current_version', fields.IntField(default=0, description='0 until the first version lands')),
                ('size', fields.BigIntField(default=0, description='Size of the current version')),
                ('mime_type', fields.CharField(default='', max_length=127)),
                ('kind', fields.CharField(default='', description='Detected type, e.g. stl', max_length=20)),
                ('tags', fields.JSONField(default=list, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('search_text', fields.TextField(default='', description='Name, tags and metadata for search', unique=False)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
                ('deleted_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'files', 'app': 'models', 'indexes': [Index(fields=['owner_id', 'folder_id'])], 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='FileGrant',
            fields=[
                ('id', fields.UUIDField(primary_key=True, default=new_id, unique=True, db_index=True)),
                ('file', fields.ForeignKeyField('models.File', source_field='file_id', db_constraint=True, to_field='id', related_name='grants', on_delete=OnDelete.CASCADE)),
                ('user', fields.ForeignKeyField('models.User', source_field='user_id', db_constraint=True, to_field='id', related_name='file_grants', on_delete=OnDelete.CASCADE)),
                ('granted_by', fields.ForeignKeyField('models.User', source_field='granted_by_id', null=True, db_constraint=True, to_field='id', related_name='file_grants_given', on_delete=OnDelete.SET_NULL)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'file_grants', 'app': 'models', 'unique_together': (('file', 'user'),), 'pk_attr': 'id', 'table_description': 'A file shared with another user of the portal (read access).'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='FileVersion',
            fields=[
                ('id', fields.UUIDField(primary_key=True, default=new_id, unique=True, db_index=True)),
                ('file', fields.ForeignKeyField('models.File', source_field='file_id', db_constraint=True, to_field='id', related_name='versions', on_delete=OnDelete.CASCADE)),
                ('number', fields.IntField()),
                ('blob_key', fields.CharField(description='sha256 hex of the content', max_length=64)),
                ('size', fields.BigIntField()),
                ('mime_type', fields.CharField(default='', max_length=127)),
                ('kind', fields.CharField(default='', max_length=20)),
                ('original_name', fields.CharField(default='', max_length=255)),
                ('scan_status', fields.CharEnumField(default=ScanStatus.PENDING, description='UNSCANNED: unscanned\nPENDING: pending\nCLEAN: clean\nINFECTED: infected\nFAILED: failed', enum_type=ScanStatus, max_length=10)),
                ('scan_signature', fields.CharField(null=True, max_length=200)),
                ('scan_attempts', fields.IntField(default=0)),
                ('next_scan_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('scanned_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('metadata', fields.JSONField(default=dict, description='Geometry facts from the render farm, type facts', encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('restored_from', fields.IntField(null=True, description='The version a rollback copied')),
                ('created_by', fields.ForeignKeyField('models.User', source_field='created_by_id', null=True, db_constraint=True, to_field='id', related_name='file_versions', on_delete=OnDelete.SET_NULL)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'file_versions', 'app': 'models', 'unique_together': (('file', 'number'),), 'indexes': [Index(fields=['scan_status', 'next_scan_at']), Index(fields=['blob_key'])], 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='RenderJob',
            fields=[
                ('id', fields.UUIDField(primary_key=True, default=new_id, unique=True, db_index=True)),
                ('file', fields.ForeignKeyField('models.File', source_field='file_id', db_constraint=True, to_field='id', related_name='render_jobs', on_delete=OnDelete.CASCADE)),
                ('version', fields.ForeignKeyField('models.FileVersion', source_field='version_id', db_constraint=True, to_field='id', related_name='render_jobs', on_delete=OnDelete.CASCADE)),
                ('status', fields.CharEnumField(default=RenderStatus.QUEUED, description='QUEUED: queued\nRUNNING: running\nSUCCEEDED: succeeded\nFAILED: failed', enum_type=RenderStatus, max_length=10)),
                ('progress', fields.IntField(default=0, description='Percent, 0 to 100')),
                ('stage', fields.CharField(default='', max_length=40)),
                ('attempts', fields.IntField(default=0)),
                ('error_code', fields.CharField(default='', max_length=50)),
                ('error_message', fields.CharField(default='', max_length=500)),
                ('outputs', fields.JSONField(default=dict, description='Output name to blob key, e.g. view_iso or model_glb', encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('metadata', fields.JSONField(default=dict, description='Triangles, bounding box, volume, area, watertightness', encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('renderer', fields.CharField(default='', description='egl, osmesa or none', max_length=20)),
                ('requested_by', fields.ForeignKeyField('models.User', source_field='requested_by_id', null=True, db_constraint=True, to_field='id', related_name='render_jobs', on_delete=OnDelete.SET_NULL)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('started_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('finished_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'render_jobs', 'app': 'models', 'indexes': [Index(fields=['status', 'created_at']), Index(fields=['version_id', 'created_at'])], 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='ShareLink',
            fields=[
                ('id', fields.UUIDField(primary_key=True, default=new_id, unique=True, db_index=True)),
                ('file', fields.ForeignKeyField('models.File', source_field='file_id', db_constraint=True, to_field='id', related_name='share_links', on_delete=OnDelete.CASCADE)),
                ('version', fields.IntField(null=True, description='A fixed version, or null for the current')),
                ('token_digest', fields.CharField(unique=True, max_length=64)),
                ('created_by', fields.ForeignKeyField('models.User', source_field='created_by_id', null=True, db_constraint=True, to_field='id', related_name='share_links', on_delete=OnDelete.SET_NULL)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('expires_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('password_hash', fields.CharField(null=True, max_length=200)),
                ('max_downloads', fields.IntField(null=True)),
                ('download_count', fields.IntField(default=0)),
                ('revoked_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'share_links', 'app': 'models', 'pk_attr': 'id', 'table_description': "A public link `/s/{token}`. Only the token's sha256 is stored."},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='ShareAccess',
            fields=[
                ('id', fields.UUIDField(primary_key=True, default=new_id, unique=True, db_index=True)),
                ('link', fields.ForeignKeyField('models.ShareLink', source_field='link_id', db_constraint=True, to_field='id', related_name='accesses', on_delete=OnDelete.CASCADE)),
                ('at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('ip', fields.CharField(default='', max_length=64)),
                ('user_agent', fields.CharField(default='', max_length=300)),
                ('outcome', fields.CharField(max_length=40)),
            ],
            options={'table': 'share_accesses', 'app': 'models', 'indexes': [Index(fields=['link_id', 'at'])], 'pk_attr': 'id', 'table_description': 'One use of a share link, whatever its outcome.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Upload',
            fields=[
                ('id', fields.UUIDField(primary_key=True, default=new_id, unique=True, db_index=True)),
                ('owner', fields.ForeignKeyField('models.User', source_field='owner_id', db_constraint=True, to_field='id', related_name='uploads', on_delete=OnDelete.CASCADE)),
                ('kind', fields.CharEnumField(default=UploadKind.SINGLE, description='SINGLE: single\nPARTIAL: partial\nFINAL: final', enum_type=UploadKind, max_length=10)),
                ('state', fields.CharEnumField(default=UploadState.ACTIVE, description='ACTIVE: active\nCOMPLETE: complete\nFAILED: failed', enum_type=UploadState, max_length=10)),
                ('length', fields.BigIntField(null=True, description='Upload-Length, null while deferred')),
                ('offset', fields.BigIntField(default=0)),
                ('metadata', fields.JSONField(default=dict, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('parts', fields.JSONField(default=list, description='Partial upload ids of a final upload, in order', encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('backend_state', fields.JSONField(default=dict, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('reserved_bytes', fields.BigIntField(default=0, description='Temporary disk held')),
                ('error_code', fields.CharField(default='', max_length=50)),
                ('file_version', fields.ForeignKeyField('models.FileVersion', source_field='file_version_id', null=True, db_constraint=True, to_field='id', related_name='uploads', on_delete=OnDelete.SET_NULL)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
                ('expires_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('completed_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'uploads', 'app': 'models', 'indexes': [Index(fields=['state', 'expires_at']), Index(fields=['owner_id', 'state'])], 'pk_attr': 'id', 'table_description': 'A tus upload. `id` is the last segment of its URL.'},
            bases=['Model'],
        ),
    ]
