"""Typed HTTP clients for the vendor APIs (Zapmail, PlusVibe, HeyReach) and the Stripe wrapper.

Clients classify errors (``clients.errors``) and never retry; the Prefect tasks decide.
"""
