"""Support chat over REST (the socket is the main road; this serves forms and integrations)."""
