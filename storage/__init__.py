"""Floor 3: blob backends (local, S3), tus uploads, ClamAV scanning, versions, share links."""
