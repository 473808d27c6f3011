"""Offline checks of the deployment files; run through deploy/validate.sh."""
