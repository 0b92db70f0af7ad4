"""Plan: what to apply and keep, the pre-checks, the estimate."""
