"""The built web pages (portal at `/`, staff dashboard at `/dashboard`), served as static files."""
