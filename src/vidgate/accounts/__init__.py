"""Accounts as an operator manages them: states, credits, keys, and the audit log of it all."""
