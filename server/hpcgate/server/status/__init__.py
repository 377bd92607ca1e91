"""System status: background probers, the state they compute, and the hub that fans it out."""
