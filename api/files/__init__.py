"""Files: tus uploads, file and folder routes, share links, and the scan worker."""
