"""The project dock widget: store, classes and band settings."""
