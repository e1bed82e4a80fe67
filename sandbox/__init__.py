"""Stateful simulators of the vendor HTTP APIs (Zapmail, PlusVibe, HeyReach, Stripe) on loopback."""
