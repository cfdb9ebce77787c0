"""The platform's MLflow: the tracking server as a hub service, and its UI behind the hub login."""
