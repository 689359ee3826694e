from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("claims", "0004_trails_into_audit")]
    operations = [
        migrations.DeleteModel(name="ClaimTransition"),
        migrations.DeleteModel(name="IncidentSettingsChange"),
        migrations.DeleteModel(name="ItemEvent"),
    ]
