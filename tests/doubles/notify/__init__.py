"""Peers of the notifier: a real SMTP server (aiosmtpd, STARTTLS + AUTH) and a chat-webhook receiver that
checks each product's documented payload rules and refuses what the product refuses."""
