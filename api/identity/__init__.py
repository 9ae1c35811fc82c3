"""Identity and access: accounts, tokens, roles."""
