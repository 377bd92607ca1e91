"""UtilitiesService building blocks: paths, file access as the caller, streams, commands."""
