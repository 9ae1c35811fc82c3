"""Email: templates, composition, DKIM, the persistent send queue, tracking, suppression."""
