"""Durable transfers (StorageService.StartTransfer): copy, move, sync between endpoints."""
