"""The hpcgate server: an asyncio gRPC gateway in front of Slurm."""
