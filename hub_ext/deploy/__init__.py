"""Deployment inputs turned into hub configuration: Helm chart values and OAuth variables."""
