"""Floor 4: the Socket.IO gateway (presence, chat, sync, notifications, dashboard feeds)."""
