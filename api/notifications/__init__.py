"""The notification inbox over REST, and the browser's web push subscriptions."""
