"""What runs outside the services: the app's binding client, the `hash7` command line and the trading library."""
