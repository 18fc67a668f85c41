"""Webhooks: endpoints an account registers, and signed, retried deliveries of task endings.

A delivery row is written in the transaction that ends its task (outbox.py, called from
tasks/transitions.py), so an ending is never lost and never sent twice by two ends; the
delivery loop (delivery.py) claims due rows with a lease and POSTs them (sender.py).
"""
