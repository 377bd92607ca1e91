"""ComputeService's data layer: reading jobs (queue merged with accounting), converting
them to the API's messages, and describing partitions, nodes and reservations."""
