"""The payment provider stand-in: Stripe-style checkout sessions and signed webhooks."""
