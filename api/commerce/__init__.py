"""Commerce: catalog, inventory, carts, checkout with Stripe, orders, refunds, tax, discounts,
the ledger and webhooks. Services here are called by `routes.py` and directly by tests."""
