"""Floor 4: Celery workers turning CAD uploads into previews, reporting progress on the bus."""
