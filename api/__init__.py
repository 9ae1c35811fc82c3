"""Floor 5: the composition root, middleware, REST routes, OpenAPI and the command line."""
