"""Pieces every platform service shares: settings first."""
